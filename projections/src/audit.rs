//! The audit read model: a conversation as it stood at some instant, folded in memory from its
//! own events (no tables: an auditor asks about one conversation at a time, and the log is the
//! only witness that cannot drift from itself).

use std::collections::BTreeMap;

use events::{Actor, ConversationEvent};

/// One message as it stood: the read flag is whether a receipt had covered it by then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAsOf {
    pub id: u64,
    pub sender: Actor,
    pub message_type: String,
    pub content: String,
    pub file_id: Option<String>,
    pub file_path: Option<String>,
    pub attachment: Option<events::AttachedFile>,
    pub client_msg_id: Option<String>,
    pub is_read: bool,
    pub sent_at_micros: i64,
    /// Its text went with its person's erasure.
    pub erased: bool,
    /// What it said before each edit, oldest first (`content` is the newest).
    pub earlier_versions: Vec<MessageVersion>,
    pub edited_at_micros: Option<i64>,
    /// Withdrawn or removed; auditors still read what it said.
    pub deletion: Option<MessageDeletion>,
}

/// A message's text as it read until an edit replaced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageVersion {
    pub content: String,
    /// When this text was written (sent, or the edit that wrote it).
    pub written_at_micros: i64,
}

/// Who deleted a message, when, and (staff) why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageDeletion {
    pub by: Actor,
    pub reason: Option<String>,
    pub at_micros: i64,
}

/// The conversation as its events up to some instant made it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationAsOf {
    pub conversation_id: Option<u64>,
    pub user: Option<Actor>,
    /// `active`, `closed` or `archived`; None before the conversation was opened.
    pub status: Option<&'static str>,
    pub admin_id: Option<u64>,
    pub feedback: Option<(u8, Option<String>)>,
    /// What its person typed was erased.
    pub erased: bool,
    pub opened_at_micros: Option<i64>,
    pub updated_at_micros: Option<i64>,
    /// The sequence of the last event folded in.
    pub sequence: u64,
    /// By id, so oldest first.
    pub messages: BTreeMap<u64, MessageAsOf>,
}

impl ConversationAsOf {
    /// Folds one event (in sequence order) recorded at `recorded_at_micros`.
    pub fn apply(&mut self, sequence: u64, recorded_at_micros: i64, event: ConversationEvent) {
        self.sequence = sequence;
        self.updated_at_micros = Some(recorded_at_micros);
        match event {
            ConversationEvent::ConversationOpened {
                conversation_id,
                user,
            } => {
                self.conversation_id = Some(conversation_id);
                self.user = Some(user);
                self.status = Some("active");
                self.opened_at_micros = Some(recorded_at_micros);
            }
            ConversationEvent::MessageSent {
                message_id,
                sender,
                message_type,
                content,
                file_id,
                client_msg_id,
                file_path,
                attachment,
            } => {
                self.messages.insert(
                    message_id,
                    MessageAsOf {
                        id: message_id,
                        sender,
                        message_type: message_type.as_str().to_string(),
                        content,
                        file_id,
                        file_path,
                        attachment,
                        client_msg_id,
                        is_read: false,
                        sent_at_micros: recorded_at_micros,
                        erased: false,
                        earlier_versions: Vec::new(),
                        edited_at_micros: None,
                        deletion: None,
                    },
                );
            }
            ConversationEvent::MessageEdited {
                message_id,
                content,
                ..
            } => {
                if let Some(message) = self.messages.get_mut(&message_id) {
                    let written_at_micros =
                        message.edited_at_micros.unwrap_or(message.sent_at_micros);
                    let earlier = std::mem::replace(&mut message.content, content);
                    message.earlier_versions.push(MessageVersion {
                        content: earlier,
                        written_at_micros,
                    });
                    message.edited_at_micros = Some(recorded_at_micros);
                }
            }
            ConversationEvent::MessageDeleted {
                message_id,
                by,
                reason,
            } => {
                if let Some(message) = self.messages.get_mut(&message_id) {
                    message.deletion = Some(MessageDeletion {
                        by,
                        reason,
                        at_micros: recorded_at_micros,
                    });
                }
            }
            ConversationEvent::MessagesRead { message_ids, .. } => {
                for id in message_ids {
                    if let Some(message) = self.messages.get_mut(&id) {
                        message.is_read = true;
                    }
                }
            }
            ConversationEvent::ConversationClosed { .. } => self.status = Some("closed"),
            ConversationEvent::ConversationReopened { .. } => self.status = Some("active"),
            ConversationEvent::ConversationArchived { .. } => self.status = Some("archived"),
            ConversationEvent::ConversationAssigned { admin_id, .. } => {
                self.admin_id = Some(admin_id);
            }
            ConversationEvent::FeedbackGiven {
                rating, comment, ..
            } => self.feedback = Some((rating, comment)),
            ConversationEvent::FileUploaded { .. } => {}
            ConversationEvent::ConversationErased { .. } => {
                self.erased = true;
                for message in self.messages.values_mut() {
                    message.erased = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{MessageType, Role};

    fn actor(id: u64, role: Role) -> Actor {
        Actor {
            id,
            role,
            identifier: format!("{}_{id}", role.as_str()),
        }
    }

    fn sent(id: u64, sender: Actor) -> ConversationEvent {
        ConversationEvent::MessageSent {
            message_id: id,
            sender,
            message_type: MessageType::Text,
            content: format!("message {id}"),
            file_id: None,
            client_msg_id: None,
            file_path: None,
            attachment: None,
        }
    }

    #[test]
    fn a_fold_shows_status_assignee_feedback_and_read_flags_as_they_were() {
        let user = actor(1, Role::User);
        let admin = actor(2, Role::Admin);
        let mut state = ConversationAsOf::default();

        state.apply(
            1,
            10,
            ConversationEvent::ConversationOpened {
                conversation_id: 7,
                user: user.clone(),
            },
        );
        state.apply(2, 11, sent(100, user.clone()));
        state.apply(3, 12, sent(101, user.clone()));
        let before_read = state.clone();
        state.apply(
            4,
            13,
            ConversationEvent::MessagesRead {
                message_ids: vec![100],
                reader: admin.clone(),
            },
        );
        state.apply(
            5,
            14,
            ConversationEvent::ConversationAssigned {
                admin_id: 2,
                by: admin.clone(),
            },
        );
        state.apply(6, 15, ConversationEvent::ConversationClosed { by: admin });
        state.apply(
            7,
            16,
            ConversationEvent::FeedbackGiven {
                rating: 5,
                comment: None,
                by: user,
            },
        );

        assert!(before_read.messages.values().all(|m| !m.is_read));
        assert!(state.messages[&100].is_read && !state.messages[&101].is_read);
        assert_eq!(state.status, Some("closed"));
        assert_eq!(state.admin_id, Some(2));
        assert_eq!(state.feedback, Some((5, None)));
        assert_eq!((state.conversation_id, state.sequence), (Some(7), 7));
    }
}
