//! chatd: an event-sourced support-chat backend. Requests become commands, the domain in
//! `events/` decides, the event store appends, projectors fold the log into read tables.

pub mod analytics;
pub mod app;
pub mod assignment;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod files;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod presence;
pub mod problems;
pub mod push;
pub mod realtime;
pub mod redis;
pub mod retention;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod wire;
