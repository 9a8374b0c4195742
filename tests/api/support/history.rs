//! A realistic history for tests that need one: many users and admins issuing every kind of
//! command, some of which the domain refuses, from a seed so that a failure can be reproduced.

use chatd::commands::{CommandBus, Intent};
use events::{Actor, ConversationCommand, NewMessage};

use super::{admin, meta, user};

/// A small deterministic generator, so a failing history can be reproduced.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A text message of the history that may still be edited or deleted.
struct Sent {
    conversation: u64,
    message_id: u64,
    sender: Actor,
    sent_at_micros: i64,
}

/// Appends `count` mixed commands from many users and admins: every event type appears. Edits
/// and deletions are drawn from a generator of their own, so the rest of a seed's history is the
/// same with or without them.
pub async fn mixed_history(bus: &CommandBus, count: usize, seed: u64) {
    let mut rng = Rng(seed);
    let mut changes = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut texts: Vec<Sent> = Vec::new();
    let mut conversations: Vec<(u64, u64)> = Vec::new(); // (conversation, user)
    let mut messages: Vec<(u64, u64)> = Vec::new(); // (conversation, message id)
    let mut uploads: std::collections::HashMap<u64, String> = Default::default(); // conversation -> file id
    for n in 0..count {
        let admin = admin(900 + rng.below(3));
        let pick = rng.below(100);
        let (intent, actor): (Intent, Actor) = if conversations.is_empty() || pick < 25 {
            let user = user(1 + rng.below(40));
            let message = NewMessage::text(format!("user message {n} 你好 <b>"));
            (
                Intent::OpenOrContinue {
                    actor: user.clone(),
                    message: Some(message),
                },
                user,
            )
        } else {
            let (conversation, user_id) =
                conversations[rng.below(conversations.len() as u64) as usize];
            let owner = user(user_id);
            let read_ids = |rng: &mut Rng| -> Vec<u64> {
                let mine: Vec<u64> = messages
                    .iter()
                    .filter(|(c, _)| *c == conversation)
                    .map(|(_, id)| *id)
                    .collect();
                mine.into_iter().filter(|_| rng.below(2) == 0).collect()
            };
            let (command, actor) = match pick {
                25..=49 => (
                    ConversationCommand::SendMessage {
                        actor: admin.clone(),
                        message: NewMessage::text(format!("reply {n}")),
                    },
                    admin.clone(),
                ),
                50..=54 => (
                    ConversationCommand::SendMessage {
                        actor: owner.clone(),
                        message: NewMessage::text(format!("more {n}")),
                    },
                    owner.clone(),
                ),
                55..=57 => {
                    let file_id = format!("{:016x}{:016x}", rng.next(), rng.next());
                    (
                        ConversationCommand::UploadFile {
                            actor: owner.clone(),
                            file: events::UploadedFile {
                                path: format!("uploads/chat/2026/11/25/{file_id}.png"),
                                file_id,
                                kind: events::MessageType::Image,
                                original_name: format!("photo {n}.png"),
                                size: 1000 + n as u64,
                                mime_type: "image/png".into(),
                                sha256: "ab".repeat(32),
                                width: Some(640),
                                height: Some(480),
                            },
                        },
                        owner.clone(),
                    )
                }
                58..=59 => (
                    ConversationCommand::SendMessage {
                        actor: owner.clone(),
                        message: NewMessage {
                            message_type: events::MessageType::Image,
                            content: format!("caption {n}"),
                            file_id: uploads.get(&conversation).cloned(),
                            client_msg_id: None,
                        },
                    },
                    owner.clone(),
                ),
                60..=67 => (
                    ConversationCommand::MarkMessagesRead {
                        actor: owner.clone(),
                        message_ids: read_ids(&mut rng),
                    },
                    owner.clone(),
                ),
                68..=75 => (
                    ConversationCommand::MarkMessagesRead {
                        actor: admin.clone(),
                        message_ids: read_ids(&mut rng),
                    },
                    admin.clone(),
                ),
                76..=81 => (
                    ConversationCommand::CloseConversation {
                        actor: owner.clone(),
                    },
                    owner.clone(),
                ),
                82..=85 => (
                    ConversationCommand::CloseConversation {
                        actor: admin.clone(),
                    },
                    admin.clone(),
                ),
                86..=89 => (
                    ConversationCommand::ReopenConversation {
                        actor: admin.clone(),
                    },
                    admin.clone(),
                ),
                90..=91 => (
                    ConversationCommand::ArchiveConversation {
                        actor: admin.clone(),
                    },
                    admin.clone(),
                ),
                92..=95 => (
                    ConversationCommand::AssignConversation {
                        actor: admin.clone(),
                        admin_id: 900 + rng.below(3),
                    },
                    admin.clone(),
                ),
                _ => (
                    ConversationCommand::GiveFeedback {
                        actor: owner.clone(),
                        rating: 1 + rng.below(5) as u8,
                        comment: Some(format!("comment {n}")),
                    },
                    owner.clone(),
                ),
            };
            (Intent::On(conversation, command), actor)
        };
        if !texts.is_empty() && changes.below(100) < 8 {
            change_one(bus, &mut changes, &texts, n).await;
        }
        let Ok(committed) = bus.execute(intent, meta(&actor)).await else {
            continue; // refused by the domain: part of a realistic history
        };
        for event in &committed.events {
            match event.decode().unwrap() {
                events::ConversationEvent::ConversationOpened { user, .. } => {
                    conversations.push((committed.conversation_id, user.id))
                }
                events::ConversationEvent::MessageSent {
                    message_id,
                    sender,
                    message_type,
                    ..
                } => {
                    messages.push((committed.conversation_id, message_id));
                    if message_type == events::MessageType::Text {
                        texts.push(Sent {
                            conversation: committed.conversation_id,
                            message_id,
                            sender,
                            sent_at_micros: event.recorded_at_micros,
                        });
                    }
                }
                events::ConversationEvent::FileUploaded { file, .. } => {
                    uploads.insert(committed.conversation_id, file.file_id);
                }
                _ => {}
            }
        }
    }
}

/// Edits a text message (by its sender) or deletes one (by its sender, or by an admin with a
/// reason); refused ones (archived, already deleted) are part of the history too.
async fn change_one(bus: &CommandBus, rng: &mut Rng, texts: &[Sent], n: usize) {
    let sent = &texts[rng.below(texts.len() as u64) as usize];
    let message = events::SentMessage {
        message_id: sent.message_id,
        sender_role: sent.sender.role,
        sender_id: sent.sender.id,
        message_type: events::MessageType::Text,
        sent_at_micros: sent.sent_at_micros,
        now_micros: chrono::Utc::now().timestamp_micros(),
        edit_window_secs: 24 * 3600,
    };
    let (actor, command) = match rng.below(3) {
        0 | 1 => (
            sent.sender.clone(),
            ConversationCommand::EditMessage {
                actor: sent.sender.clone(),
                message,
                content: format!("edited {n} 改了"),
            },
        ),
        _ if rng.below(2) == 0 => (
            sent.sender.clone(),
            ConversationCommand::DeleteMessage {
                actor: sent.sender.clone(),
                message,
                reason: None,
            },
        ),
        _ => {
            let moderator = admin(900 + rng.below(3));
            (
                moderator.clone(),
                ConversationCommand::DeleteMessage {
                    actor: moderator,
                    message,
                    reason: Some(format!("moderated {n}")),
                },
            )
        }
    };
    let _ = bus
        .execute(Intent::On(sent.conversation, command), meta(&actor))
        .await;
}
