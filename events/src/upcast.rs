//! Upcasters: turn payloads written by older versions into the current shape on load.
//!
//! Every stored shape that was ever written keeps a sample under `events/tests/samples/` and a
//! test that loads it. This module never touches storage: it maps JSON to JSON.

use std::str::FromStr;
use std::sync::LazyLock;

use cqrs_es::persist::{
    EventUpcaster, SemanticVersion, SemanticVersionEventUpcaster, SerializedEvent,
};
use serde_json::{Map, Value};

use crate::error::UnknownEvent;
use crate::event::{ConversationEvent, EVENT_TYPES};

/// The oldest version of any event type this build can read.
const OLDEST_VERSION: &str = "1";

/// Every upcaster, oldest first (cqrs-es applies them in order).
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(SemanticVersionEventUpcaster::new(
        "MessageSent",
        "2",
        Box::new(message_sent_v1_to_v2),
    ))]
}

static UPCASTERS: LazyLock<Vec<Box<dyn EventUpcaster>>> = LazyLock::new(upcasters);

/// The version a payload of `event_type` written at `event_version` must be upcast to: `None`
/// when it is already in the current shape.
///
/// Errors for an unknown type, an unparsable version, a version newer than this build knows
/// (written by a newer deployment: refuse rather than misread), or one older than any known.
fn upcast_target(
    event_type: &str,
    event_version: &str,
) -> Result<Option<SemanticVersion>, UnknownEvent> {
    let Some(current) = ConversationEvent::current_version(event_type) else {
        return Err(UnknownEvent::new(
            event_type,
            format!(
                "unknown event type (this build knows only {})",
                EVENT_TYPES.join(", ")
            ),
        ));
    };
    let current = parse_version(event_type, current)?;
    let version = parse_version(event_type, event_version)?;
    if version > current {
        return Err(UnknownEvent::new(
            event_type,
            format!(
                "version {event_version} is newer than this build knows ({current}); \
                 upgrade before reading this log"
            ),
        ));
    }
    if version < parse_version(event_type, OLDEST_VERSION)? {
        return Err(UnknownEvent::new(
            event_type,
            format!("version {event_version} is older than any version this build knows"),
        ));
    }
    Ok((version != current).then_some(current))
}

/// The domain event a stored payload (JSON text) records, old versions upcast. A payload in the
/// current shape is read straight into the event, without an intermediate `Value`: replays and
/// the followers of the log decode every event they read.
pub fn decode_payload(
    event_type: &str,
    event_version: &str,
    payload: &str,
) -> Result<ConversationEvent, UnknownEvent> {
    if upcast_target(event_type, event_version)?.is_none() {
        return ConversationEvent::from_json(event_type, payload);
    }
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| UnknownEvent::new(event_type, format!("payload is not JSON: {e}")))?;
    ConversationEvent::from_parts(
        event_type,
        upcast_payload(event_type, event_version, payload)?,
    )
}

/// Returns `payload` in the current shape of `event_type`, upcasting older versions.
///
/// Errors as [`decode_payload`] does for the type and version.
pub fn upcast_payload(
    event_type: &str,
    event_version: &str,
    payload: Value,
) -> Result<Value, UnknownEvent> {
    let Some(current) = upcast_target(event_type, event_version)? else {
        return Ok(payload);
    };

    let event = SerializedEvent::new(
        String::new(),
        0,
        String::new(),
        event_type.to_string(),
        event_version.to_string(),
        payload,
        Value::Null,
    );
    let event = UPCASTERS.iter().fold(event, |event, upcaster| {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            upcaster.upcast(event)
        } else {
            event
        }
    });
    if parse_version(event_type, &event.event_version)? != current {
        return Err(UnknownEvent::new(
            event_type,
            format!("no upcaster brings version {event_version} to {current}"),
        ));
    }
    Ok(event.payload)
}

fn parse_version(event_type: &str, version: &str) -> Result<SemanticVersion, UnknownEvent> {
    SemanticVersion::from_str(version).map_err(|_| {
        UnknownEvent::new(
            event_type,
            format!("event version `{version}` is not a version number"),
        )
    })
}

/// MessageSent v1 (imported from the legacy Node.js system):
/// `{"message_id", "sender_role", "sender_id", "sender_identifier", "message"}`
/// -> v2: `{"message_id", "sender": {"id", "role", "identifier"}, "message_type", "content",
/// "file_id", "client_msg_id"}`.
///
/// Also accepts the payload wrapped in its type tag (`{"MessageSent": {...}}`, the shape
/// cqrs-es's own serializer writes). Anything that is not an object is returned unchanged, so
/// reading it fails later with a clear deserialization error instead of a guess.
fn message_sent_v1_to_v2(payload: Value) -> Value {
    match payload {
        Value::Object(mut map) if map.len() == 1 && map.contains_key("MessageSent") => {
            let inner = map.remove("MessageSent").unwrap_or(Value::Null);
            let mut wrapped = Map::with_capacity(1);
            wrapped.insert("MessageSent".to_string(), message_sent_v1_to_v2(inner));
            Value::Object(wrapped)
        }
        Value::Object(mut v1) => {
            let mut sender = Map::new();
            if let Some(id) = v1.remove("sender_id") {
                sender.insert("id".into(), legacy_id(id));
            }
            if let Some(role) = v1.remove("sender_role") {
                sender.insert("role".into(), role);
            }
            let identifier = match v1.remove("sender_identifier") {
                Some(Value::Null) | None => Value::String(String::new()),
                Some(identifier) => identifier,
            };
            sender.insert("identifier".into(), identifier);

            let content = v1
                .remove("message")
                .or_else(|| v1.remove("content"))
                .unwrap_or_else(|| Value::String(String::new()));

            let mut v2 = Map::new();
            if let Some(id) = v1.remove("message_id") {
                v2.insert("message_id".into(), legacy_id(id));
            }
            v2.insert("sender".into(), Value::Object(sender));
            v2.insert(
                "message_type".into(),
                v1.remove("message_type")
                    .unwrap_or_else(|| Value::String("text".into())),
            );
            v2.insert("content".into(), content);
            v2.insert(
                "file_id".into(),
                v1.remove("file_id").unwrap_or(Value::Null),
            );
            v2.insert(
                "client_msg_id".into(),
                v1.remove("client_msg_id").unwrap_or(Value::Null),
            );
            Value::Object(v2)
        }
        other => other,
    }
}

/// The legacy system sometimes wrote numeric ids as strings.
fn legacy_id(id: Value) -> Value {
    match &id {
        Value::String(s) => s.parse::<u64>().map(Value::from).unwrap_or(id),
        _ => id,
    }
}
