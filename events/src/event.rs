//! Events: the facts a conversation records. Their `event_type` strings never change once
//! written; a shape change means a new `event_version` and an upcaster (see [`crate::upcast`]).

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::actor::Actor;
use crate::command::{AttachedFile, UploadedFile};
use crate::error::UnknownEvent;
use crate::kinds::MessageType;

/// Every `event_type` this build writes, in declaration order.
pub const EVENT_TYPES: [&str; 12] = [
    "ConversationOpened",
    "MessageSent",
    "MessagesRead",
    "ConversationClosed",
    "ConversationReopened",
    "ConversationArchived",
    "ConversationAssigned",
    "FeedbackGiven",
    "FileUploaded",
    "ConversationErased",
    "MessageEdited",
    "MessageDeleted",
];

/// Where each event type keeps the text a person typed (message text, an upload's original name,
/// a feedback comment), as JSON pointers into its payload: the store seals exactly these under
/// the conversation's data key, and erasure leaves them empty. Ids, sizes, types and times stay
/// in the clear. A new field holding free text belongs here from its first version.
pub fn personal_fields(event_type: &str) -> &'static [&'static str] {
    match event_type {
        "MessageSent" => &["/content", "/attachment/name"],
        "FileUploaded" => &["/original_name"],
        "FeedbackGiven" => &["/comment"],
        "MessageEdited" => &["/content"],
        _ => &[],
    }
}

/// A fact recorded in a conversation's stream.
///
/// Serialized externally tagged (`{"MessageSent": {...}}`), with the tag equal to
/// `event_type()`, so the store can keep the type and the inner payload apart
/// ([`ConversationEvent::payload_json`], [`ConversationEvent::from_parts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversationEvent {
    ConversationOpened {
        conversation_id: u64,
        user: Actor,
    },
    MessageSent {
        message_id: u64,
        sender: Actor,
        message_type: MessageType,
        content: String,
        file_id: Option<String>,
        client_msg_id: Option<String>,
        /// The stored path of the file an image or file message carries, as its upload recorded
        /// it (absent in messages without a file, and in those written before uploads existed).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file_path: Option<String>,
        /// The name, size, type and (images) size in pixels of that file, as its upload recorded
        /// them (absent in messages without a file, and in those written before messages carried
        /// them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attachment: Option<AttachedFile>,
    },
    /// Only the ids newly marked by this receipt, ascending.
    MessagesRead {
        message_ids: Vec<u64>,
        reader: Actor,
    },
    ConversationClosed {
        by: Actor,
    },
    ConversationReopened {
        by: Actor,
    },
    ConversationArchived {
        by: Actor,
    },
    ConversationAssigned {
        admin_id: u64,
        by: Actor,
    },
    FeedbackGiven {
        rating: u8,
        comment: Option<String>,
        by: Actor,
    },
    /// A file received for this conversation; image and file messages refer to it by `file_id`.
    FileUploaded {
        #[serde(flatten)]
        file: UploadedFile,
        by: Actor,
    },
    /// What the conversation's person typed was erased: its data key is destroyed with this
    /// event, so every earlier event of the conversation reads with that text empty. `reason`
    /// is the staff's own words for the audit trail, never the person's.
    ConversationErased {
        reason: String,
        by: Actor,
    },
    /// A text message's new content, as its sender rewrote it. The earlier versions stay in the
    /// log: the auditor's history shows each one.
    MessageEdited {
        message_id: u64,
        content: String,
        by: Actor,
    },
    /// A message withdrawn by its sender, or removed by staff (moderation, with `reason`, the
    /// staff's own words). Its text stays in the log for the audit trail; every read shows a
    /// tombstone.
    MessageDeleted {
        message_id: u64,
        by: Actor,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl ConversationEvent {
    /// The stable type name, as a static string (same as `event_type()`).
    pub fn type_name(&self) -> &'static str {
        match self {
            ConversationEvent::ConversationOpened { .. } => "ConversationOpened",
            ConversationEvent::MessageSent { .. } => "MessageSent",
            ConversationEvent::MessagesRead { .. } => "MessagesRead",
            ConversationEvent::ConversationClosed { .. } => "ConversationClosed",
            ConversationEvent::ConversationReopened { .. } => "ConversationReopened",
            ConversationEvent::ConversationArchived { .. } => "ConversationArchived",
            ConversationEvent::ConversationAssigned { .. } => "ConversationAssigned",
            ConversationEvent::FeedbackGiven { .. } => "FeedbackGiven",
            ConversationEvent::FileUploaded { .. } => "FileUploaded",
            ConversationEvent::ConversationErased { .. } => "ConversationErased",
            ConversationEvent::MessageEdited { .. } => "MessageEdited",
            ConversationEvent::MessageDeleted { .. } => "MessageDeleted",
        }
    }

    /// The current version written for `event_type`, or `None` for a type this build does not
    /// know.
    pub fn current_version(event_type: &str) -> Option<&'static str> {
        match event_type {
            "MessageSent" => Some("2"),
            t if EVENT_TYPES.contains(&t) => Some("1"),
            _ => None,
        }
    }

    /// The actor who caused the event.
    pub fn actor(&self) -> &Actor {
        match self {
            ConversationEvent::ConversationOpened { user, .. } => user,
            ConversationEvent::MessageSent { sender, .. } => sender,
            ConversationEvent::MessagesRead { reader, .. } => reader,
            ConversationEvent::ConversationClosed { by }
            | ConversationEvent::ConversationReopened { by }
            | ConversationEvent::ConversationArchived { by }
            | ConversationEvent::ConversationAssigned { by, .. }
            | ConversationEvent::FeedbackGiven { by, .. }
            | ConversationEvent::FileUploaded { by, .. }
            | ConversationEvent::ConversationErased { by, .. }
            | ConversationEvent::MessageEdited { by, .. }
            | ConversationEvent::MessageDeleted { by, .. } => by,
        }
    }

    /// The variant's fields only (the inner object, without the type tag), as the store keeps
    /// them next to `event_type`.
    pub fn payload_json(&self) -> Value {
        // Serializing these plain types (no maps with non-string keys, no custom serializers)
        // cannot fail, and the externally tagged form is always a one-entry object.
        match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged
                .remove(self.type_name())
                .unwrap_or_else(|| Value::Object(Map::new())),
            _ => Value::Object(Map::new()),
        }
    }

    /// As [`ConversationEvent::from_parts`], from the payload's JSON text.
    pub fn from_json(event_type: &str, payload: &str) -> Result<Self, UnknownEvent> {
        known_type(event_type)?;
        // The externally tagged form around the stored fields; the type is one of the known
        // names, which need no escaping.
        let tagged = format!("{{\"{event_type}\":{payload}}}");
        serde_json::from_str(&tagged).map_err(|err| shape_mismatch(event_type, err))
    }

    /// The inverse of ([`DomainEvent::event_type`], [`ConversationEvent::payload_json`]).
    /// The payload must already be in the current shape (see [`crate::upcast::upcast_payload`]).
    pub fn from_parts(event_type: &str, payload: Value) -> Result<Self, UnknownEvent> {
        known_type(event_type)?;
        let mut tagged = Map::with_capacity(1);
        tagged.insert(event_type.to_string(), payload);
        serde_json::from_value(Value::Object(tagged)).map_err(|err| shape_mismatch(event_type, err))
    }
}

/// Refuses a type this build does not know.
fn known_type(event_type: &str) -> Result<(), UnknownEvent> {
    if EVENT_TYPES.contains(&event_type) {
        return Ok(());
    }
    Err(UnknownEvent::new(
        event_type,
        "unknown event type (this build knows only ".to_string() + &EVENT_TYPES.join(", ") + ")",
    ))
}

fn shape_mismatch(event_type: &str, err: serde_json::Error) -> UnknownEvent {
    UnknownEvent::new(
        event_type,
        format!("payload does not match the current shape: {err}"),
    )
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        self.type_name().to_string()
    }

    fn event_version(&self) -> String {
        match self {
            ConversationEvent::MessageSent { .. } => "2",
            _ => "1",
        }
        .to_string()
    }
}
