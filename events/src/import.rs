//! A conversation's history imported from the legacy Node.js system: its rows become the events
//! chatd would have recorded, under the domain's rules for what a message may be.
//!
//! The legacy tables keep only a conversation's final state: its rows in id order, each
//! message's read flag, the assigned admin and the status. The history is therefore: the
//! opening (at `created_at`), every message in id order (at its `timestamp`), the read receipts
//! its flags imply, the assignment, then the closing or archiving (at `updated_at`). Ids and
//! times are the legacy system's; a row that no event can represent is skipped with its reason,
//! never silently dropped or guessed at.

use cqrs_es::Aggregate;

use crate::actor::{Actor, Role};
use crate::aggregate::Conversation;
use crate::command::UploadedFile;
use crate::content::{
    MAX_CONTENT_CHARS, MAX_FILE_ID_CHARS, MAX_ID, MAX_READ_IDS_PER_COMMAND, sanitize_content,
    trimmed_len,
};
use crate::event::ConversationEvent;
use crate::kinds::{ConversationStatus, MessageType};

/// The legacy table a row comes from.
pub const CONVERSATIONS_TABLE: &str = "conversations";
pub const MESSAGES_TABLE: &str = "messages";

/// One row of the legacy `conversations` table, with its user's identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyConversation {
    pub id: u64,
    pub user_id: u64,
    pub user_identifier: String,
    pub admin_id: Option<u64>,
    pub status: ConversationStatus,
    /// µs since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
    /// The user has a newer active conversation: chatd keeps one active conversation per user,
    /// so this one is imported closed (and the closing reported).
    pub superseded: bool,
}

/// One row of the legacy `messages` table, as stored (nothing checked yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyMessage {
    pub id: u64,
    pub sender_role: String,
    pub user_id: Option<u64>,
    pub admin_id: Option<u64>,
    pub message_type: String,
    pub content: String,
    pub file_id: Option<String>,
    /// The link the message showed, already rewritten where the import was told to.
    pub file_url: Option<String>,
    /// The file behind that link, copied into chatd's store (of the message's kind): the
    /// message then carries it as an upload of its sender's.
    pub upload: Option<UploadedFile>,
    pub is_read: bool,
    /// µs since the epoch.
    pub timestamp: i64,
}

/// The legacy row an imported event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyRow {
    pub table: &'static str,
    pub id: u64,
}

/// A row the import did not take as it was, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowNote {
    pub row: LegacyRow,
    pub reason: String,
}

/// One event of an imported history, with the time it happened and the row it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedEvent {
    pub event: ConversationEvent,
    /// µs since the epoch; never earlier than the event before it in the conversation.
    pub at: i64,
    pub row: LegacyRow,
}

/// A legacy conversation read as chatd's history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportedHistory {
    pub events: Vec<ImportedEvent>,
    /// The conversation folded from `events`.
    pub conversation: Conversation,
    /// Messages imported.
    pub messages: u64,
    /// Read receipts written for the legacy read flags.
    pub read_receipts: u64,
    /// Rows left out, each with its reason.
    pub skipped: Vec<RowNote>,
    /// Rows imported other than they stood, each with what changed.
    pub adjusted: Vec<RowNote>,
}

/// The actor of what the import records on the support side's behalf (assignment, status).
pub fn import_actor() -> Actor {
    Actor::new(0, Role::System, "system")
}

/// Reads one legacy conversation and its messages (in id order) as chatd's history.
/// `admin_identifier` names an admin by id, or says it is unknown (`None`).
pub fn import_history(
    conversation: &LegacyConversation,
    messages: &[LegacyMessage],
    admin_identifier: &dyn Fn(u64) -> Option<String>,
) -> ImportedHistory {
    read_legacy(None, conversation, messages, admin_identifier)
}

/// What the legacy rows say beyond a conversation imported earlier, folded to `imported` with
/// its last event at `last_at`: the messages after its last one, the read flags set since, a
/// new assignment, a new status. Nothing when the legacy rows have not changed. Events start
/// from `imported` (the returned `conversation` is folded on from it).
pub fn import_changes(
    imported: &Conversation,
    last_at: i64,
    conversation: &LegacyConversation,
    messages: &[LegacyMessage],
    admin_identifier: &dyn Fn(u64) -> Option<String>,
) -> ImportedHistory {
    read_legacy(
        Some((imported, last_at)),
        conversation,
        messages,
        admin_identifier,
    )
}

fn read_legacy(
    imported: Option<(&Conversation, i64)>,
    conversation: &LegacyConversation,
    messages: &[LegacyMessage],
    admin_identifier: &dyn Fn(u64) -> Option<String>,
) -> ImportedHistory {
    let mut history = ImportedHistory::default();
    let conversation_row = LegacyRow {
        table: CONVERSATIONS_TABLE,
        id: conversation.id,
    };
    if conversation.id == 0 || conversation.id > MAX_ID {
        history.skipped.push(RowNote {
            row: conversation_row,
            reason: format!("id must be between 1 and {MAX_ID}"),
        });
        return history;
    }
    let user = Actor::new(
        conversation.user_id,
        Role::User,
        conversation.user_identifier.clone(),
    );
    let (mut recorder, last_id) = match imported {
        Some((state, last_at)) => {
            history.conversation = state.clone();
            let last_id = state.last_message_id().unwrap_or(0);
            (
                Recorder {
                    history: &mut history,
                    last_at,
                },
                last_id,
            )
        }
        None => {
            let first_message_at = messages.iter().map(|m| m.timestamp).min();
            let opened_at = match first_message_at {
                Some(first) if first < conversation.created_at => {
                    history.adjusted.push(RowNote {
                        row: conversation_row,
                        reason: "opened at its first message's time, which is before its \
                                 created_at"
                            .into(),
                    });
                    first
                }
                _ => conversation.created_at,
            };
            let mut recorder = Recorder {
                history: &mut history,
                last_at: opened_at,
            };
            recorder.record(
                ConversationEvent::ConversationOpened {
                    conversation_id: conversation.id,
                    user: user.clone(),
                },
                opened_at,
                conversation_row,
            );
            (recorder, 0)
        }
    };

    // Messages up to the last one imported were imported (or reported) by an earlier run.
    for message in messages.iter().filter(|m| m.id > last_id) {
        let row = LegacyRow {
            table: MESSAGES_TABLE,
            id: message.id,
        };
        match message_event(conversation, &user, message, admin_identifier) {
            Ok((event, note)) => {
                if let Some(reason) = note {
                    recorder.history.adjusted.push(RowNote { row, reason });
                }
                if message.timestamp < recorder.last_at {
                    recorder.history.adjusted.push(RowNote {
                        row,
                        reason: "timestamp before the message it follows: recorded at that one's"
                            .into(),
                    });
                }
                if closed_before(conversation, message) {
                    recorder.history.adjusted.push(RowNote {
                        row,
                        reason: format!(
                            "sent after the conversation was {} (its updated_at): recorded \
                             before that",
                            conversation.status
                        ),
                    });
                }
                if let (ConversationEvent::MessageSent { sender, .. }, Some(file)) =
                    (&event, &message.upload)
                {
                    recorder.record(
                        ConversationEvent::FileUploaded {
                            file: file.clone(),
                            by: sender.clone(),
                        },
                        message.timestamp,
                        row,
                    );
                }
                recorder.record(event, message.timestamp, row);
                recorder.history.messages += 1;
            }
            Err(reason) => recorder.history.skipped.push(RowNote { row, reason }),
        }
    }

    // The read flags the conversation does not show yet, as receipts by the other side.
    let staff_reader = match conversation.admin_id {
        Some(admin_id) => Actor::new(
            admin_id,
            Role::Admin,
            admin_identifier(admin_id).unwrap_or_default(),
        ),
        None => import_actor(),
    };
    let folded = &recorder.history.conversation;
    let read = |unread: &std::collections::BTreeSet<u64>| -> Vec<u64> {
        messages
            .iter()
            .filter(|m| m.is_read && unread.contains(&m.id))
            .map(|m| m.id)
            .collect()
    };
    let read_by_staff = read(folded.unread_by_staff());
    let read_by_user = read(folded.unread_by_user());
    let at = recorder.last_at;
    for (ids, reader) in [(read_by_staff, staff_reader), (read_by_user, user.clone())] {
        for chunk in ids.chunks(MAX_READ_IDS_PER_COMMAND) {
            let row = LegacyRow {
                table: MESSAGES_TABLE,
                id: chunk[0],
            };
            recorder.record(
                ConversationEvent::MessagesRead {
                    message_ids: chunk.to_vec(),
                    reader: reader.clone(),
                },
                at,
                row,
            );
            recorder.history.read_receipts += 1;
        }
    }

    let settled_at = conversation.updated_at;
    let status = recorder.history.conversation.status();
    let archived = status == Some(ConversationStatus::Archived);
    match conversation.admin_id {
        Some(admin_id) if admin_id == 0 || admin_id > MAX_ID => {
            recorder.history.adjusted.push(RowNote {
                row: conversation_row,
                reason: format!("admin_id {admin_id} is not a valid id: left unassigned"),
            });
        }
        Some(admin_id) if recorder.history.conversation.admin_id() != Some(admin_id) => {
            if archived {
                recorder.history.adjusted.push(RowNote {
                    row: conversation_row,
                    reason: format!("archived in chatd, so not assigned to {admin_id}"),
                });
            } else {
                recorder.record(
                    ConversationEvent::ConversationAssigned {
                        admin_id,
                        by: import_actor(),
                    },
                    settled_at,
                    conversation_row,
                );
            }
        }
        None if recorder.history.conversation.admin_id().is_some() => {
            recorder.history.adjusted.push(RowNote {
                row: conversation_row,
                reason: "unassigned in the legacy rows; chatd keeps its assignment".into(),
            });
        }
        _ => {}
    }

    let wanted = match conversation.status {
        ConversationStatus::Active if conversation.superseded => {
            if status != Some(ConversationStatus::Closed) {
                recorder.history.adjusted.push(RowNote {
                    row: conversation_row,
                    reason: "closed: its user has a newer active conversation (chatd keeps one)"
                        .into(),
                });
            }
            ConversationStatus::Closed
        }
        other => other,
    };
    let change = match (status, wanted) {
        (Some(now), wanted) if now == wanted => None,
        (Some(ConversationStatus::Archived), wanted) => {
            recorder.history.adjusted.push(RowNote {
                row: conversation_row,
                reason: format!(
                    "archived in chatd (archived is final), {wanted} in the legacy rows"
                ),
            });
            None
        }
        (_, ConversationStatus::Active) => {
            Some(ConversationEvent::ConversationReopened { by: import_actor() })
        }
        (_, ConversationStatus::Closed) => {
            Some(ConversationEvent::ConversationClosed { by: import_actor() })
        }
        (_, ConversationStatus::Archived) => {
            Some(ConversationEvent::ConversationArchived { by: import_actor() })
        }
    };
    if let Some(event) = change {
        recorder.record(event, settled_at, conversation_row);
    }
    history
}

/// Whether a message of a closed or archived conversation came after the conversation's row
/// last changed, that is after its closing: the legacy server moved `updated_at` with every
/// message it accepted, so a later message reached a conversation already closed.
fn closed_before(conversation: &LegacyConversation, message: &LegacyMessage) -> bool {
    conversation.status != ConversationStatus::Active && message.timestamp > conversation.updated_at
}

/// Appends events to the history, folding each and keeping times from going backwards.
struct Recorder<'a> {
    history: &'a mut ImportedHistory,
    last_at: i64,
}

impl Recorder<'_> {
    fn record(&mut self, event: ConversationEvent, at: i64, row: LegacyRow) {
        let at = at.max(self.last_at);
        self.last_at = at;
        self.history.conversation.apply(event.clone());
        self.history.events.push(ImportedEvent { event, at, row });
    }
}

/// The `MessageSent` a legacy message row stands for, with a note of what was changed to fit, or
/// why it cannot be imported.
fn message_event(
    conversation: &LegacyConversation,
    user: &Actor,
    message: &LegacyMessage,
    admin_identifier: &dyn Fn(u64) -> Option<String>,
) -> Result<(ConversationEvent, Option<String>), String> {
    if message.id > MAX_ID {
        return Err(format!("id must be at most {MAX_ID}"));
    }
    let message_type: MessageType = message
        .message_type
        .parse()
        .map_err(|_| format!("unknown message_type `{}`", message.message_type))?;
    let sender = if message_type == MessageType::System {
        // Written by the old server itself, whatever its sender columns say.
        import_actor()
    } else {
        match message.sender_role.as_str() {
            "user" => {
                if message.admin_id.is_some() {
                    return Err("sender_role is user but admin_id is set".into());
                }
                match message.user_id {
                    Some(id) if id == conversation.user_id => user.clone(),
                    Some(id) => {
                        return Err(format!(
                            "sender_role is user but user_id {id} is not the conversation's \
                             user ({})",
                            conversation.user_id
                        ));
                    }
                    None => return Err("sender_role is user but user_id is NULL".into()),
                }
            }
            "admin" => {
                if message.user_id.is_some() {
                    return Err("sender_role is admin but user_id is set".into());
                }
                match message.admin_id {
                    Some(id) if id == 0 || id > MAX_ID => {
                        return Err(format!("admin_id {id} is not a valid id"));
                    }
                    Some(id) => match admin_identifier(id) {
                        Some(identifier) => Actor::new(id, Role::Admin, identifier),
                        None => return Err(format!("unknown sender: no admin {id}")),
                    },
                    None => return Err("sender_role is admin but admin_id is NULL".into()),
                }
            }
            other => return Err(format!("unknown sender_role `{other}`")),
        }
    };

    let content = sanitize_content(&message.content);
    let length = trimmed_len(&content);
    if length > MAX_CONTENT_CHARS {
        return Err(format!(
            "content over the limit ({length} characters; at most {MAX_CONTENT_CHARS})"
        ));
    }
    let mut note = None;
    if let Some(file) = message.upload.as_ref().filter(|f| f.kind == message_type) {
        return Ok((
            ConversationEvent::MessageSent {
                message_id: message.id,
                sender,
                message_type,
                content,
                file_id: Some(file.file_id.clone()),
                client_msg_id: None,
                file_path: Some(file.path.clone()),
                attachment: Some(file.attached()),
            },
            None,
        ));
    }
    let (file_id, file_path) = if message_type.carries_file() {
        let Some(url) = message.file_url.as_ref().filter(|u| !u.trim().is_empty()) else {
            return Err(format!("{message_type} message without a file_url"));
        };
        if url.chars().any(char::is_control) {
            return Err("file_url holds control characters".into());
        }
        let file_id = match &message.file_id {
            Some(id)
                if id.trim().is_empty()
                    || id.chars().count() > MAX_FILE_ID_CHARS
                    || id.chars().any(char::is_control) =>
            {
                note = Some(
                    "file_id unusable (empty, too long or with control characters): left out"
                        .into(),
                );
                None
            }
            other => other.clone(),
        };
        (file_id, Some(url.trim().to_string()))
    } else {
        if length == 0 {
            return Err("content is empty".into());
        }
        if message.file_id.is_some() || message.file_url.is_some() {
            note = Some(format!(
                "a {message_type} message carries no file: file_id and file_url left out"
            ));
        }
        (None, None)
    };
    Ok((
        ConversationEvent::MessageSent {
            message_id: message.id,
            sender,
            message_type,
            content,
            file_id,
            client_msg_id: None,
            file_path,
            attachment: None,
        },
        note,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversation() -> LegacyConversation {
        LegacyConversation {
            id: 7,
            user_id: 42,
            user_identifier: "user_uuid_42".into(),
            admin_id: Some(3),
            status: ConversationStatus::Closed,
            created_at: 1_000_000,
            updated_at: 9_000_000,
            superseded: false,
        }
    }

    fn message(id: u64, role: &str, content: &str, at: i64) -> LegacyMessage {
        LegacyMessage {
            id,
            sender_role: role.into(),
            user_id: (role == "user").then_some(42),
            admin_id: (role == "admin").then_some(3),
            message_type: "text".into(),
            content: content.into(),
            file_id: None,
            file_url: None,
            upload: None,
            is_read: false,
            timestamp: at,
        }
    }

    fn admins(id: u64) -> Option<String> {
        (id == 3).then(|| "alice".to_string())
    }

    fn types(history: &ImportedHistory) -> Vec<&'static str> {
        history.events.iter().map(|e| e.event.type_name()).collect()
    }

    #[test]
    fn a_history_opens_sends_reads_assigns_and_closes_in_that_order() {
        let mut read = message(11, "user", "hi", 2_000_000);
        read.is_read = true;
        let messages = [read, message(15, "admin", "hello", 3_000_000)];
        let history = import_history(&conversation(), &messages, &admins);
        assert_eq!(
            types(&history),
            [
                "ConversationOpened",
                "MessageSent",
                "MessageSent",
                "MessagesRead",
                "ConversationAssigned",
                "ConversationClosed"
            ]
        );
        assert_eq!(history.messages, 2);
        assert_eq!(history.read_receipts, 1);
        let at: Vec<i64> = history.events.iter().map(|e| e.at).collect();
        assert_eq!(
            at,
            [
                1_000_000, 2_000_000, 3_000_000, 3_000_000, 9_000_000, 9_000_000
            ]
        );
        assert_eq!(
            history.conversation.status(),
            Some(ConversationStatus::Closed)
        );
        assert!(history.conversation.unread_by_staff().is_empty());
        assert_eq!(
            history
                .conversation
                .unread_by_user()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [15]
        );
        match &history.events[3].event {
            ConversationEvent::MessagesRead { reader, .. } => {
                assert_eq!((reader.role, reader.id), (Role::Admin, 3))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rows_breaking_a_rule_are_skipped_with_their_reason_and_the_rest_imported() {
        let mut wrong_user = message(11, "user", "x", 2_000_000);
        wrong_user.user_id = Some(99);
        let mut no_admin = message(12, "admin", "x", 2_000_000);
        no_admin.admin_id = None;
        let mut unknown_admin = message(13, "admin", "x", 2_000_000);
        unknown_admin.admin_id = Some(8);
        let too_long = message(14, "user", &"a".repeat(MAX_CONTENT_CHARS + 1), 2_000_000);
        let empty = message(15, "user", " \n ", 2_000_000);
        let mut image_without_file = message(16, "user", "", 2_000_000);
        image_without_file.message_type = "image".into();
        let fine = message(17, "user", "fine", 2_000_000);
        let history = import_history(
            &conversation(),
            &[
                wrong_user,
                no_admin,
                unknown_admin,
                too_long,
                empty,
                image_without_file,
                fine,
            ],
            &admins,
        );
        let skipped: Vec<u64> = history.skipped.iter().map(|n| n.row.id).collect();
        assert_eq!(skipped, [11, 12, 13, 14, 15, 16]);
        assert!(
            history.skipped[0]
                .reason
                .contains("not the conversation's user")
        );
        assert!(history.skipped[2].reason.contains("unknown sender"));
        assert!(history.skipped[3].reason.contains("over the limit"));
        assert_eq!(history.messages, 1);
    }

    #[test]
    fn system_messages_and_files_keep_what_the_old_server_showed() {
        let mut system = message(11, "admin", "Conversation closed", 2_000_000);
        system.message_type = "system".into();
        system.admin_id = None;
        let mut image = message(12, "user", "", 2_000_000);
        image.message_type = "image".into();
        image.file_id = Some("abc123".into());
        image.file_url = Some("http://47.94.108.189/uploads/chat/a.jpg".into());
        let history = import_history(&conversation(), &[system, image], &admins);
        assert!(history.skipped.is_empty(), "{:?}", history.skipped);
        match &history.events[1].event {
            ConversationEvent::MessageSent { sender, .. } => assert_eq!(sender.role, Role::System),
            other => panic!("{other:?}"),
        }
        match &history.events[2].event {
            ConversationEvent::MessageSent {
                file_id, file_path, ..
            } => {
                assert_eq!(file_id.as_deref(), Some("abc123"));
                assert_eq!(
                    file_path.as_deref(),
                    Some("http://47.94.108.189/uploads/chat/a.jpg")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_copied_file_is_uploaded_by_its_sender_before_the_message_that_carries_it() {
        let mut image = message(11, "user", "", 2_000_000);
        image.message_type = "image".into();
        image.file_url = Some("http://47.94.108.189/uploads/chat/a.jpg".into());
        image.upload = Some(UploadedFile {
            file_id: "ab".repeat(16),
            kind: MessageType::Image,
            original_name: "a.jpg".into(),
            size: 10,
            mime_type: "image/jpeg".into(),
            sha256: "00".repeat(32),
            path: "uploads/chat/1970/01/01/abab.jpg".into(),
            width: Some(2),
            height: Some(3),
        });
        let history = import_history(&conversation(), &[image], &admins);
        assert_eq!(types(&history)[1..3], ["FileUploaded", "MessageSent"]);
        match &history.events[2].event {
            ConversationEvent::MessageSent {
                file_id,
                file_path,
                attachment,
                ..
            } => {
                assert_eq!(file_id.as_deref(), Some("ab".repeat(16).as_str()));
                assert_eq!(
                    file_path.as_deref(),
                    Some("uploads/chat/1970/01/01/abab.jpg")
                );
                assert_eq!(attachment.as_ref().map(|a| a.width), Some(Some(2)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_second_reading_brings_only_what_changed_in_the_legacy_rows() {
        let mut legacy = conversation();
        legacy.status = ConversationStatus::Active;
        legacy.admin_id = None;
        let first = [
            message(11, "user", "hi", 2_000_000),
            message(12, "admin", "hello", 3_000_000),
        ];
        let imported = import_history(&legacy, &first, &admins);
        let last_at = imported.events.last().map(|e| e.at).unwrap_or_default();
        let unchanged = import_changes(&imported.conversation, last_at, &legacy, &first, &admins);
        assert!(unchanged.events.is_empty(), "{:?}", unchanged.events);

        // Since then: the user's message was read, one more came, an admin took it and closed it.
        let mut later = first.to_vec();
        later[0].is_read = true;
        later.push(message(15, "user", "thanks", 4_000_000));
        legacy.admin_id = Some(3);
        legacy.status = ConversationStatus::Closed;
        let changes = import_changes(&imported.conversation, last_at, &legacy, &later, &admins);
        assert_eq!(
            types(&changes),
            [
                "MessageSent",
                "MessagesRead",
                "ConversationAssigned",
                "ConversationClosed"
            ]
        );
        match &changes.events[1].event {
            ConversationEvent::MessagesRead {
                message_ids,
                reader,
            } => {
                assert_eq!(message_ids, &[11]);
                assert_eq!((reader.role, reader.id), (Role::Admin, 3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(changes.messages, 1);
        assert_eq!(
            changes.conversation.status(),
            Some(ConversationStatus::Closed)
        );
        assert_eq!(
            changes
                .conversation
                .unread_by_staff()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            [15]
        );

        // An archived conversation stays archived, whatever the legacy rows say now.
        let mut archived = imported.conversation.clone();
        archived.apply(ConversationEvent::ConversationArchived { by: import_actor() });
        let refused = import_changes(&archived, last_at, &legacy, &first, &admins);
        assert!(
            !refused.events.iter().any(|e| matches!(
                e.event,
                ConversationEvent::ConversationClosed { .. }
                    | ConversationEvent::ConversationAssigned { .. }
            )),
            "{:?}",
            refused.events
        );
        assert_eq!(refused.adjusted.len(), 2, "{:?}", refused.adjusted);
    }

    #[test]
    fn a_message_after_the_closing_is_imported_before_it_and_reported() {
        let late = message(11, "user", "are you there?", 10_000_000);
        let history = import_history(&conversation(), &[late], &admins);
        assert_eq!(history.messages, 1);
        assert_eq!(history.adjusted.len(), 1, "{:?}", history.adjusted);
        assert!(history.adjusted[0].reason.contains("closed"));
        let closing = history.events.last().expect("the closing");
        assert_eq!(closing.event.type_name(), "ConversationClosed");
        assert_eq!(
            closing.at, 10_000_000,
            "the closing comes after the message"
        );
    }

    #[test]
    fn times_never_go_backwards_and_a_superseded_active_conversation_is_closed() {
        let mut legacy = conversation();
        legacy.status = ConversationStatus::Active;
        legacy.superseded = true;
        legacy.created_at = 5_000_000;
        let messages = [
            message(11, "user", "early", 4_000_000),
            message(12, "user", "later", 6_000_000),
            message(13, "user", "back in time", 5_500_000),
        ];
        let history = import_history(&legacy, &messages, &admins);
        let at: Vec<i64> = history.events.iter().map(|e| e.at).take(4).collect();
        assert_eq!(at, [4_000_000, 4_000_000, 6_000_000, 6_000_000]);
        assert_eq!(history.adjusted.len(), 3, "{:?}", history.adjusted);
        assert_eq!(types(&history).last(), Some(&"ConversationClosed"));
    }
}
