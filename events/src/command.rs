//! Commands: what a caller asks of one conversation, and the outside facts handed in with them.

use serde::{Deserialize, Serialize};

use crate::actor::{Actor, Role};
use crate::kinds::MessageType;

/// Facts the command layer hands to the pure domain for one decision (no clock, no randomness
/// inside).
#[derive(Debug, Clone, Default)]
pub struct ConversationServices {
    /// The id the next accepted message receives (the store's sequencer hands out increasing,
    /// system-wide unique ids). If one command yields several messages, it uses
    /// `next_message_id`, `next_message_id + 1`, ...
    pub next_message_id: u64,
    /// The user's active conversation other than this one, if any (a cross-stream fact looked
    /// up by the command layer).
    pub other_active_conversation: Option<u64>,
}

/// A message as the caller submitted it, not yet validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    pub message_type: MessageType,
    pub content: String,
    pub file_id: Option<String>,
    pub client_msg_id: Option<String>,
}

impl NewMessage {
    /// A plain text message without a client id.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            message_type: MessageType::Text,
            content: content.into(),
            file_id: None,
            client_msg_id: None,
        }
    }

    #[must_use]
    pub fn with_client_msg_id(mut self, client_msg_id: impl Into<String>) -> Self {
        self.client_msg_id = Some(client_msg_id.into());
        self
    }
}

/// A file the service has received, checked and stored for a conversation. Every fact here was
/// decided outside (the bytes, the random id, the storage path); the domain decides whether the
/// upload may join the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedFile {
    /// At least 128 random bits, as lowercase hex.
    pub file_id: String,
    /// `image` or `file`: the kind of message that may carry it.
    pub kind: MessageType,
    /// The client's name for it: shown and offered on download, never a path.
    pub original_name: String,
    pub size: u64,
    /// Decided from the bytes.
    pub mime_type: String,
    /// Lowercase hex SHA-256 of the bytes.
    pub sha256: String,
    /// Where it is stored, relative to the public base (`uploads/chat/YYYY/MM/DD/<file_id>.<ext>`).
    pub path: String,
    /// Images only.
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl UploadedFile {
    /// What a message that carries this file says of it.
    pub fn attached(&self) -> AttachedFile {
        AttachedFile {
            name: self.original_name.clone(),
            size: self.size,
            mime_type: self.mime_type.clone(),
            width: self.width,
            height: self.height,
        }
    }
}

/// What an image or file message says of the file it carries, as its upload recorded it: what a
/// client needs to lay the message out (a photo's placeholder, a file's bubble) before it
/// downloads anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedFile {
    /// The name the file is offered under (the upload's name, cleaned).
    pub name: String,
    pub size: u64,
    pub mime_type: String,
    /// Images only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// What the command layer looked up of a message that an edit or a deletion names: the facts
/// fixed when it was sent, and the time of the request (the domain reads no clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub message_id: u64,
    pub sender_role: Role,
    pub sender_id: u64,
    pub message_type: MessageType,
    pub sent_at_micros: i64,
    pub now_micros: i64,
    /// How long after sending its sender may still edit or delete it.
    pub edit_window_secs: u64,
}

impl SentMessage {
    /// Whether `actor` sent it.
    pub fn sent_by(&self, actor: &Actor) -> bool {
        self.sender_role == actor.role && self.sender_id == actor.id
    }

    /// Whether its sender may still change it.
    pub fn within_edit_window(&self) -> bool {
        let window =
            i64::try_from(self.edit_window_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        self.now_micros.saturating_sub(self.sent_at_micros) <= window
    }
}

/// What a caller asks of one conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationCommand {
    OpenConversation {
        actor: Actor,
        conversation_id: u64,
        initial_message: Option<NewMessage>,
    },
    SendMessage {
        actor: Actor,
        message: NewMessage,
    },
    MarkMessagesRead {
        actor: Actor,
        message_ids: Vec<u64>,
    },
    CloseConversation {
        actor: Actor,
    },
    ReopenConversation {
        actor: Actor,
    },
    ArchiveConversation {
        actor: Actor,
    },
    AssignConversation {
        actor: Actor,
        admin_id: u64,
    },
    UploadFile {
        actor: Actor,
        file: UploadedFile,
    },
    GiveFeedback {
        actor: Actor,
        rating: u8,
        comment: Option<String>,
    },
    /// Erase what the conversation's person typed, for good (the store destroys its data key).
    EraseConversation {
        actor: Actor,
        reason: String,
    },
    /// Replace the text of a message its sender sent.
    EditMessage {
        actor: Actor,
        message: SentMessage,
        content: String,
    },
    /// Withdraw a message (its sender), or remove one (staff, with a reason).
    DeleteMessage {
        actor: Actor,
        message: SentMessage,
        reason: Option<String>,
    },
}

impl ConversationCommand {
    /// Who issues the command.
    pub fn actor(&self) -> &Actor {
        match self {
            ConversationCommand::OpenConversation { actor, .. }
            | ConversationCommand::SendMessage { actor, .. }
            | ConversationCommand::MarkMessagesRead { actor, .. }
            | ConversationCommand::CloseConversation { actor }
            | ConversationCommand::ReopenConversation { actor }
            | ConversationCommand::ArchiveConversation { actor }
            | ConversationCommand::AssignConversation { actor, .. }
            | ConversationCommand::GiveFeedback { actor, .. }
            | ConversationCommand::UploadFile { actor, .. }
            | ConversationCommand::EraseConversation { actor, .. }
            | ConversationCommand::EditMessage { actor, .. }
            | ConversationCommand::DeleteMessage { actor, .. } => actor,
        }
    }

    /// The `client_msg_id` of the message the command carries, if any.
    pub fn client_msg_id(&self) -> Option<&str> {
        match self {
            ConversationCommand::OpenConversation {
                initial_message: Some(message),
                ..
            }
            | ConversationCommand::SendMessage { message, .. } => message.client_msg_id.as_deref(),
            _ => None,
        }
    }

    /// A short stable name for logs and metrics (`send_message`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            ConversationCommand::OpenConversation { .. } => "open_conversation",
            ConversationCommand::SendMessage { .. } => "send_message",
            ConversationCommand::MarkMessagesRead { .. } => "mark_messages_read",
            ConversationCommand::CloseConversation { .. } => "close_conversation",
            ConversationCommand::ReopenConversation { .. } => "reopen_conversation",
            ConversationCommand::ArchiveConversation { .. } => "archive_conversation",
            ConversationCommand::AssignConversation { .. } => "assign_conversation",
            ConversationCommand::GiveFeedback { .. } => "give_feedback",
            ConversationCommand::UploadFile { .. } => "upload_file",
            ConversationCommand::EraseConversation { .. } => "erase_conversation",
            ConversationCommand::EditMessage { .. } => "edit_message",
            ConversationCommand::DeleteMessage { .. } => "delete_message",
        }
    }
}
