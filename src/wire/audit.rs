//! The audit trail's own shape: one event of the log exactly as stored, for the audit routes and
//! `chatd audit export` alike.

use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoredEvent;
use crate::wire::wire_time;

/// One event exactly as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Global position in the log.
    pub position: u64,
    /// Position in this conversation's stream, from 1.
    pub sequence: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: String,
    /// The stored payload (a string when the stored text is not JSON).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Who did it and from where: actor_id, actor_role, request_id, remote_addr, client_msg_id.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// RFC 3339 UTC, whole seconds.
    pub recorded_at: String,
    /// The stored time, microseconds since the epoch (the hash covers this).
    pub recorded_at_micros: i64,
    /// Lowercase hex SHA-256 chaining this event to the one before it in its stream.
    pub hash: String,
}

impl From<StoredEvent> for AuditEventView {
    fn from(event: StoredEvent) -> Self {
        let json =
            |text: String| serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        AuditEventView {
            position: event.position,
            sequence: event.sequence,
            event_type: event.event_type,
            version: event.event_version,
            payload: json(event.payload),
            metadata: json(event.metadata),
            recorded_at: wire_time(event.recorded_at_micros),
            recorded_at_micros: event.recorded_at_micros,
            hash: event.hash,
        }
    }
}
