//! The shapes the API answers with: one message shape everywhere (REST and Socket.IO), one
//! conversation shape, timestamps as RFC 3339 UTC whole seconds.

use chrono::DateTime;
use events::ConversationEvent;
use serde::Serialize;

use crate::store::{ConversationRow, MessageRow, StoredEvent};

/// RFC 3339, UTC, whole seconds, `Z` (iOS's default ISO8601DateFormatter rejects fractions).
pub fn wire_time(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: u64,
    pub conversation_id: u64,
    /// `user`, `admin` or `system`.
    pub sender_role: String,
    pub sender_identifier: String,
    /// `text`, `image`, `file` or `system`.
    pub message_type: String,
    pub content: String,
    /// The same text as `content`, for today's client.
    pub message: String,
    pub file_id: Option<String>,
    /// A link to the file that stays the same for at least a day, so image caches hit.
    pub file_url: Option<String>,
    /// Image and file messages: the file's name as offered on download.
    #[schema(example = "invoice.pdf")]
    pub file_name: Option<String>,
    /// Image and file messages: the file's size in bytes.
    pub file_size: Option<u64>,
    /// Image and file messages: the type decided from the file's bytes.
    #[schema(example = "application/pdf")]
    pub mime_type: Option<String>,
    /// Image messages: the picture's size in pixels, to size a placeholder before it loads.
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub client_msg_id: Option<String>,
    pub is_read: bool,
    /// RFC 3339 UTC, whole seconds.
    #[schema(example = "2025-07-14T10:30:00Z")]
    pub timestamp: String,
    /// Present, and true, only when the message's text (and file name) was erased with its
    /// person: `content` and `message` are then empty.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub erased: bool,
    /// When its text was last edited (RFC 3339 UTC); absent when it never was.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "2025-07-14T10:32:00Z")]
    pub edited_at: Option<String>,
    /// Present, and true, only when the message was deleted: a tombstone whose `content`,
    /// `message` and file fields are empty.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// Who deleted it: `user` (its sender), `admin` or `system`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by: Option<String>,
    /// The audit's view only: why staff removed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_reason: Option<String>,
    /// The audit's view only: what it said before each edit, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub earlier_versions: Vec<MessageVersionView>,
}

/// A message's text until an edit replaced it (the audit's view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MessageVersionView {
    pub content: String,
    /// When this text was written: sent, or the edit that wrote it (RFC 3339 UTC).
    pub written_at: String,
}

/// The fields an image or file message shows of its file, each null when the message carries
/// none (or was recorded before messages carried them).
#[derive(Debug, Default)]
pub struct FileFields {
    pub file_name: Option<String>,
    pub file_size: Option<u64>,
    pub mime_type: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

impl From<Option<events::AttachedFile>> for FileFields {
    fn from(file: Option<events::AttachedFile>) -> Self {
        let Some(file) = file else {
            return FileFields::default();
        };
        FileFields {
            file_name: Some(file.name),
            file_size: Some(file.size),
            mime_type: Some(file.mime_type),
            width: file.width,
            height: file.height,
        }
    }
}

impl MessageView {
    /// The one way a message reaches the wire: the stored path in `file_url` becomes the signed
    /// public link the client loads.
    pub fn new(mut row: MessageRow, attachments: &crate::files::Attachments) -> Self {
        // A deleted message's file is no longer part of it.
        let deleted = row.deleted_by.is_some();
        if deleted {
            (row.file_id, row.file_url, row.attachment) = (None, None, None);
        }
        let FileFields {
            file_name,
            file_size,
            mime_type,
            width,
            height,
        } = row.attachment.into();
        MessageView {
            id: row.id,
            conversation_id: row.conversation_id,
            sender_role: row.sender_role,
            sender_identifier: row.sender_identifier,
            message_type: row.message_type,
            message: row.content.clone(),
            content: row.content,
            file_id: row.file_id,
            file_url: row.file_url.map(|path| attachments.url(&path)),
            file_name,
            file_size,
            mime_type,
            width,
            height,
            client_msg_id: row.client_msg_id,
            is_read: row.is_read,
            timestamp: wire_time(row.timestamp),
            erased: row.erased,
            edited_at: row.edited_at.map(wire_time),
            deleted,
            deleted_by: row.deleted_by,
            deletion_reason: None,
            earlier_versions: Vec::new(),
        }
    }

    /// The message a `MessageSent` event recorded, as it was accepted.
    pub fn from_event(
        conversation_id: u64,
        event: &StoredEvent,
        attachments: &crate::files::Attachments,
    ) -> Option<Self> {
        match event.decode().ok()? {
            ConversationEvent::MessageSent {
                message_id,
                sender,
                message_type,
                content,
                file_id,
                client_msg_id,
                file_path,
                attachment,
            } => Some(MessageView::new(
                MessageRow {
                    id: message_id,
                    conversation_id,
                    sender_role: sender.role.as_str().to_string(),
                    sender_id: sender.id,
                    sender_identifier: sender.identifier,
                    message_type: message_type.as_str().to_string(),
                    content,
                    file_id,
                    file_url: file_path,
                    attachment,
                    client_msg_id,
                    is_read: false,
                    timestamp: event.recorded_at_micros,
                    erased: event.payload.contains("\"erased\":true"),
                    edited_at: None,
                    deleted_by: None,
                },
                attachments,
            )),
            _ => None,
        }
    }

    /// A message as the log stood at some instant (the audit's state as of a time).
    pub fn as_of(
        conversation_id: u64,
        message: projections::MessageAsOf,
        attachments: &crate::files::Attachments,
    ) -> Self {
        let mut view = MessageView::new(
            MessageRow {
                id: message.id,
                conversation_id,
                sender_role: message.sender.role.as_str().to_string(),
                sender_id: message.sender.id,
                sender_identifier: message.sender.identifier,
                message_type: message.message_type,
                content: message.content,
                file_id: message.file_id,
                file_url: message.file_path,
                attachment: message.attachment,
                client_msg_id: message.client_msg_id,
                is_read: message.is_read,
                timestamp: message.sent_at_micros,
                erased: message.erased,
                edited_at: message.edited_at_micros,
                deleted_by: None,
            },
            attachments,
        );
        // Auditors read every version, and what a deleted message said.
        if let Some(deletion) = message.deletion {
            view.deleted = true;
            view.deleted_by = Some(deletion.by.role.as_str().to_string());
            view.deletion_reason = deletion.reason;
        }
        view.earlier_versions = message
            .earlier_versions
            .into_iter()
            .map(|version| MessageVersionView {
                content: version.content,
                written_at: wire_time(version.written_at_micros),
            })
            .collect();
        view
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LastMessageView {
    pub id: u64,
    /// The first 100 characters.
    pub content: String,
    pub sender_role: String,
    pub message_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FeedbackView {
    pub rating: u64,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConversationView {
    pub id: u64,
    pub user_id: u64,
    pub user_identifier: String,
    pub admin_id: Option<u64>,
    /// `active`, `closed` or `archived`.
    pub status: String,
    pub last_message_at: Option<String>,
    /// Messages of the other side the caller's side has not read.
    pub unread_count: u64,
    pub last_message: Option<LastMessageView>,
    pub message_count: u64,
    pub feedback: Option<FeedbackView>,
    pub created_at: String,
    pub updated_at: String,
    /// The user has a connected socket now (presence, computed when read; never in the log).
    pub user_online: bool,
    /// When the user was last connected: now while online, else when their last socket closed;
    /// null when presence has not seen them.
    pub user_last_seen_at: Option<String>,
}

impl ConversationView {
    /// Sets the user's presence (as [`crate::presence::Presence::people`] answered).
    pub fn set_presence(&mut self, presence: Option<&crate::presence::PersonPresence>) {
        if let Some(presence) = presence {
            self.user_online = presence.online;
            self.user_last_seen_at = presence.last_seen_at.map(wire_time);
        }
    }

    /// The row as the caller sees it: unread counts are the caller's side's.
    pub fn new(row: ConversationRow, caller_is_user: bool) -> Self {
        let last_message = match (
            row.last_message_id,
            row.last_message_preview,
            row.last_message_sender_role,
            row.last_message_type,
        ) {
            (Some(id), Some(content), Some(sender_role), Some(message_type)) => {
                Some(LastMessageView {
                    id,
                    content,
                    sender_role,
                    message_type,
                })
            }
            _ => None,
        };
        ConversationView {
            id: row.id,
            user_id: row.user_id,
            user_identifier: row.user_identifier,
            admin_id: row.admin_id,
            status: row.status,
            last_message_at: row.last_message_at.map(wire_time),
            unread_count: if caller_is_user {
                row.unread_for_user
            } else {
                row.unread_for_admin
            },
            last_message,
            message_count: row.message_count,
            feedback: row.feedback_rating.map(|rating| FeedbackView {
                rating,
                comment: row.feedback_comment,
            }),
            created_at: wire_time(row.created_at),
            updated_at: wire_time(row.updated_at),
            user_online: false,
            user_last_seen_at: None,
        }
    }
}

/// An admin's presence and load, for the staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdminPresenceView {
    pub admin_id: u64,
    /// At least one socket connected, on any node.
    pub online: bool,
    /// The admin said they are away: automatic assignment passes them by.
    pub away: bool,
    /// Now while online, else when their last socket closed; null when never seen.
    pub last_seen_at: Option<String>,
    /// Active conversations assigned to them.
    pub active_conversations: u64,
}

impl AdminPresenceView {
    pub fn new(
        admin_id: u64,
        presence: crate::presence::PersonPresence,
        active_conversations: u64,
    ) -> Self {
        AdminPresenceView {
            admin_id,
            online: presence.online,
            away: presence.away,
            last_seen_at: presence.last_seen_at.map(wire_time),
            active_conversations,
        }
    }
}

/// The `presence` socket event the staff receive on every change.
pub fn presence_event(change: &crate::presence::PresenceChange) -> serde_json::Value {
    let mut event = serde_json::json!({
        "user_id": change.user_id,
        "role": change.role.as_str(),
        "online": change.presence.online,
        "last_seen_at": change.presence.last_seen_at.map(wire_time),
    });
    if change.role == events::Role::Admin {
        event["away"] = serde_json::Value::Bool(change.presence.away);
    }
    event
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Pagination {
    pub page: u32,
    pub limit: u32,
    pub total: u64,
    pub pages: u64,
}

impl Pagination {
    pub fn new(page: u32, limit: u32, total: u64) -> Self {
        Pagination {
            page,
            limit,
            total,
            pages: total.div_ceil(u64::from(limit.max(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_time_is_whole_seconds_utc_with_z() {
        assert_eq!(wire_time(1_752_489_000_123_456), "2025-07-14T10:30:00Z");
    }

    #[test]
    fn pages_round_up() {
        assert_eq!(Pagination::new(1, 20, 41).pages, 3);
        assert_eq!(Pagination::new(1, 20, 0).pages, 0);
    }
}
