//! The service's integration tests, through real HTTP and real Socket.IO clients: one binary with
//! a module per area, so the server is compiled and linked into a test binary once, not once per
//! area.
//!
//! Every test of every module runs in this one process, in parallel: a test owns its database,
//! its ports and its ids (`support`), and sets nothing process-wide beyond the harness's own
//! once-only subscriber; the metrics recorder is shared, so metrics are asserted by presence,
//! never by count.

mod admin;
mod analytics;
mod archive;
mod audit;
mod auth;
mod chat;
mod cli;
mod deploy;
mod encryption;
mod erasure;
mod event_store;
mod import;
mod ios_guide;
mod layers;
mod limits;
mod log_ordering;
mod message_changes;
mod metrics;
mod observability;
mod openapi_conformance;
mod outages;
mod presence;
mod push;
mod read_side;
mod realtime;
mod search;
mod server;
mod shutdown;
mod socket_auth;
mod support;
mod uploads;
