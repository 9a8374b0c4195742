//! Read models folded from the event log: conversations, messages, search, analytics.
//!
//! Knows SQL and events; knows nothing of HTTP or sockets. The service implements
//! [`EventSource`] over its event store, so each projector can be tested on a log made in memory.

/// One event as the log hands it to a reader: its global position and what it recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub position: u64,
    pub stream_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at_micros: i64,
}
