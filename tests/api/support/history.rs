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

/// Appends `count` mixed commands from many users and admins: every event type appears.
pub async fn mixed_history(bus: &CommandBus, count: usize, seed: u64) {
    let mut rng = Rng(seed);
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
        let Ok(committed) = bus.execute(intent, meta(&actor)).await else {
            continue; // refused by the domain: part of a realistic history
        };
        for event in &committed.events {
            match event.decode().unwrap() {
                events::ConversationEvent::ConversationOpened { user, .. } => {
                    conversations.push((committed.conversation_id, user.id))
                }
                events::ConversationEvent::MessageSent { message_id, .. } => {
                    messages.push((committed.conversation_id, message_id))
                }
                events::ConversationEvent::FileUploaded { file, .. } => {
                    uploads.insert(committed.conversation_id, file.file_id);
                }
                _ => {}
            }
        }
    }
}
