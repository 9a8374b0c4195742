//! Small closed vocabularies: conversation statuses and message types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ConversationError;

/// Where a conversation stands. Allowed moves: active -> closed, closed -> active,
/// active|closed -> archived. Archived is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationStatus {
    Active,
    Closed,
    Archived,
}

impl ConversationStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConversationStatus::Active => "active",
            ConversationStatus::Closed => "closed",
            ConversationStatus::Archived => "archived",
        }
    }
}

impl fmt::Display for ConversationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConversationStatus {
    type Err = ConversationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(ConversationStatus::Active),
            "closed" => Ok(ConversationStatus::Closed),
            "archived" => Ok(ConversationStatus::Archived),
            other => Err(ConversationError::Validation(format!(
                "unknown status `{other}` (expected active, closed or archived)"
            ))),
        }
    }
}

/// What a message carries. `Image` and `File` carry a `file_id`; `System` is sent by the
/// server only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    Text,
    Image,
    File,
    System,
}

impl MessageType {
    pub fn as_str(&self) -> &'static str {
        match self {
            MessageType::Text => "text",
            MessageType::Image => "image",
            MessageType::File => "file",
            MessageType::System => "system",
        }
    }

    /// Image and file messages point at an upload; their text is an optional caption.
    pub fn carries_file(&self) -> bool {
        matches!(self, MessageType::Image | MessageType::File)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageType {
    type Err = ConversationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(MessageType::Text),
            "image" => Ok(MessageType::Image),
            "file" => Ok(MessageType::File),
            "system" => Ok(MessageType::System),
            other => Err(ConversationError::Validation(format!(
                "unknown message_type `{other}` (expected text, image, file or system)"
            ))),
        }
    }
}
