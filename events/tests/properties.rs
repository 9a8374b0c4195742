//! Property: whatever sequence of commands several actors throw at one conversation, the
//! aggregate keeps its invariants, and a refused command changes nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use events::{
    Actor, Conversation, ConversationCommand, ConversationEvent, ConversationServices,
    ConversationStatus, MessageType, NewMessage, Role, SentMessage,
};
use proptest::prelude::*;
use proptest::sample::Index;

/// A command before the message ids it reads are resolved against what exists.
#[derive(Debug, Clone)]
enum Step {
    Open(Option<NewMessage>),
    Send(NewMessage),
    MarkRead(Vec<Index>),
    Close,
    Reopen,
    Archive,
    Assign(u64),
    Feedback(u8, Option<String>),
    /// An upload of this kind with id `file_id(tag)`.
    Upload(char, MessageType),
    /// An erasure with this reason.
    Erase(String),
    /// An edit of a known message, this many seconds after it was sent (window 900 s).
    Edit(Index, String, i64),
    /// A deletion of a known message, with a reason, this many seconds after it was sent.
    Delete(Index, Option<String>, i64),
}

/// The edit window the property's commands carry.
const WINDOW_SECS: u64 = 900;

#[derive(Debug, Clone)]
struct Turn {
    actor: Actor,
    step: Step,
    /// The user has another active conversation (the cross-stream fact).
    other_active: bool,
    /// Ids the sequencer handed to other conversations since the last turn.
    gap: u64,
}

fn actor() -> impl Strategy<Value = Actor> {
    prop::sample::select(vec![
        user(),
        user(),
        user(),
        other_user(),
        admin(),
        other_admin(),
        auditor(),
        system(),
    ])
}

/// Mostly well-formed messages, so that the state rules get exercised, and some of anything.
fn message() -> impl Strategy<Value = NewMessage> {
    let well_formed = prop_oneof![
        3 => "[a-z ]{0,8}[a-z]".prop_map(NewMessage::text),
        1 => (prop::sample::select(vec![MessageType::Image, MessageType::File]), "[a-z ]{0,6}")
            .prop_map(|(message_type, content)| NewMessage {
                message_type,
                content,
                file_id: Some(file_id('1')),
                client_msg_id: None,
            }),
    ];
    prop_oneof![3 => well_formed, 2 => any_message()]
}

fn any_message() -> impl Strategy<Value = NewMessage> {
    let message_type = prop::sample::select(vec![
        MessageType::Text,
        MessageType::Text,
        MessageType::Text,
        MessageType::Image,
        MessageType::File,
        MessageType::System,
    ]);
    let content = prop_oneof![
        6 => "[a-z ]{1,12}",
        1 => Just(String::new()),
        1 => Just("  \n\t ".to_string()),
        1 => Just("a\u{0}b\r\nc\u{1b}".to_string()),
        1 => Just("x".repeat(5001)),
    ];
    let file_id = prop_oneof![
        3 => Just(None),
        3 => prop::sample::select(vec!['1', '2']).prop_map(|tag| Some(file_id(tag))),
        1 => Just(Some(String::new())),
    ];
    let client_msg_id = prop_oneof![
        3 => Just(None),
        2 => "[a-z0-9-]{1,8}".prop_map(Some),
        1 => Just(Some("c".repeat(65))),
    ];
    (message_type, content, file_id, client_msg_id).prop_map(
        |(message_type, content, file_id, client_msg_id)| NewMessage {
            message_type,
            content,
            file_id,
            client_msg_id,
        },
    )
}

fn step() -> impl Strategy<Value = Step> {
    // Weighted so that archiving (final) comes late enough for the rest to be exercised.
    prop_oneof![
        10 => prop::option::of(message()).prop_map(Step::Open),
        100 => message().prop_map(Step::Send),
        40 => prop::collection::vec(any::<Index>(), 0..6).prop_map(Step::MarkRead),
        20 => Just(Step::Close),
        15 => Just(Step::Reopen),
        3 => Just(Step::Archive),
        10 => (0u64..4).prop_map(Step::Assign),
        15 => (0u8..7, prop::option::of("[a-z ]{0,6}")).prop_map(|(r, c)| Step::Feedback(r, c)),
        15 => (
            prop::sample::select(vec!['1', '2']),
            prop::sample::select(vec![MessageType::Image, MessageType::File, MessageType::Text]),
        )
            .prop_map(|(tag, kind)| Step::Upload(tag, kind)),
        2 => "[a-z ]{0,4}".prop_map(Step::Erase),
        10 => (any::<Index>(), "[a-z ]{0,6}", 0i64..1200)
            .prop_map(|(i, text, age)| Step::Edit(i, text, age)),
        8 => (any::<Index>(), prop::option::of("[a-z ]{0,4}"), 0i64..1200)
            .prop_map(|(i, reason, age)| Step::Delete(i, reason, age)),
    ]
}

fn turn() -> impl Strategy<Value = Turn> {
    (actor(), step(), prop::bool::weighted(0.1), 0u64..3).prop_map(
        |(actor, step, other_active, gap)| Turn {
            actor,
            step,
            other_active,
            gap,
        },
    )
}

/// Which side of the conversation an actor speaks for (None for auditors).
fn side(role: Role) -> Option<bool> {
    match role {
        Role::User => Some(true),
        Role::Admin | Role::System => Some(false),
        Role::Auditor => None,
    }
}

fn allowed_edge(from: Option<ConversationStatus>, to: ConversationStatus) -> bool {
    use ConversationStatus::*;
    matches!(
        (from, to),
        (None, Active)
            | (Some(Active), Closed)
            | (Some(Closed), Active)
            | (Some(Active | Closed), Archived)
    )
}

/// What the test remembers independently of the aggregate.
#[derive(Default)]
struct Model {
    /// message id -> sent by the user side?
    messages: BTreeMap<u64, bool>,
    read: BTreeSet<u64>,
    feedback_count: u32,
    owner: Option<u64>,
    /// file id -> (uploader id and role, kind)
    uploads: BTreeMap<String, (u64, Role, MessageType)>,
    erased: bool,
    /// message id -> (sender id and role, type)
    senders: BTreeMap<u64, (u64, Role, MessageType)>,
    deleted: BTreeSet<u64>,
}

/// The message `index` picks among those sent (or one never sent), as the command layer would
/// hand it to the domain `age_secs` after it was sent.
fn sent_message(index: &Index, age_secs: i64, model: &Model) -> SentMessage {
    let known: Vec<(u64, (u64, Role, MessageType))> = model
        .senders
        .iter()
        .map(|(id, facts)| (*id, *facts))
        .collect();
    let (message_id, (sender_id, sender_role, message_type)) = if known.is_empty() {
        (999_999, (42, Role::User, MessageType::Text))
    } else {
        *index.get(&known)
    };
    SentMessage {
        message_id,
        sender_role,
        sender_id,
        message_type,
        sent_at_micros: 0,
        now_micros: age_secs * 1_000_000,
        edit_window_secs: WINDOW_SECS,
    }
}

fn command(actor: Actor, step: Step, model: &Model) -> ConversationCommand {
    match step {
        Step::Open(initial_message) => ConversationCommand::OpenConversation {
            actor,
            conversation_id: CONVERSATION,
            initial_message,
        },
        Step::Send(message) => ConversationCommand::SendMessage { actor, message },
        Step::MarkRead(indexes) => {
            // Known ids and a couple that never existed.
            let mut candidates: Vec<u64> = model.messages.keys().copied().collect();
            candidates.extend([0, 999_999]);
            ConversationCommand::MarkMessagesRead {
                actor,
                message_ids: indexes.iter().map(|i| *i.get(&candidates)).collect(),
            }
        }
        Step::Close => ConversationCommand::CloseConversation { actor },
        Step::Reopen => ConversationCommand::ReopenConversation { actor },
        Step::Archive => ConversationCommand::ArchiveConversation { actor },
        Step::Assign(admin_id) => ConversationCommand::AssignConversation { actor, admin_id },
        Step::Feedback(rating, comment) => ConversationCommand::GiveFeedback {
            actor,
            rating,
            comment,
        },
        Step::Upload(tag, kind) => {
            let mut file = upload(tag, MessageType::File);
            file.kind = kind;
            ConversationCommand::UploadFile { actor, file }
        }
        Step::Erase(reason) => ConversationCommand::EraseConversation { actor, reason },
        Step::Edit(index, content, age) => ConversationCommand::EditMessage {
            actor,
            message: sent_message(&index, age, model),
            content,
        },
        Step::Delete(index, reason, age) => ConversationCommand::DeleteMessage {
            actor,
            message: sent_message(&index, age, model),
            reason,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_command_sequence_keeps_the_conversation_invariants(
        open_first in prop::bool::weighted(0.9),
        rest in prop::collection::vec(turn(), 1..60)
    ) {
        // Most sequences start with the owner opening the conversation, so that the rest
        // exercises the rules rather than NotFound; some start from nothing.
        let mut turns = Vec::with_capacity(rest.len() + 1);
        if open_first {
            turns.push(Turn { actor: user(), step: Step::Open(None), other_active: false, gap: 0 });
        }
        turns.extend(rest);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut conversation = Conversation::default();
        let mut model = Model::default();
        let mut next_message_id = 1u64;

        for Turn { actor, step, other_active, gap } in turns {
            // arrange
            next_message_id += gap;
            let services = ConversationServices {
                next_message_id,
                other_active_conversation: other_active.then_some(CONVERSATION + 1),
            };
            let command = command(actor.clone(), step, &model);
            let before = conversation.clone();
            let sink = EventSink::default();

            // act
            let result = runtime.block_on(conversation.handle(command.clone(), &services, &sink));
            let events = runtime.block_on(sink.collect());

            // assert
            if result.is_err() {
                prop_assert!(events.is_empty(), "refused {command:?} emitted {events:?}");
                prop_assert_eq!(&conversation, &before, "refused {:?} changed the state", command);
                continue;
            }

            prop_assert_ne!(actor.role, Role::Auditor, "auditor's {:?} was accepted", command);
            if actor.role == Role::User && model.owner.is_some() {
                prop_assert_eq!(model.owner, Some(actor.id), "non-owner's {:?} accepted", command);
            }

            // Folding the emitted events onto the old state gives the new state (replay = live).
            let mut replayed = before.clone();
            for event in &events {
                replayed.apply(event.clone());
            }
            prop_assert_eq!(&replayed, &conversation);

            let mut status = before.status();
            let mut last_id = before.last_message_id();
            let mut expected_id = next_message_id;
            for event in &events {
                // Every event survives the store's split into type and payload.
                let back = ConversationEvent::from_parts(
                    &cqrs_es::DomainEvent::event_type(event),
                    event.payload_json(),
                );
                prop_assert_eq!(back.as_ref(), Ok(event));
                // And through the text the store keeps, read straight into the event.
                let event_type = cqrs_es::DomainEvent::event_type(event);
                let version = cqrs_es::DomainEvent::event_version(event);
                let text = event.payload_json().to_string();
                let read = events::upcast::decode_payload(&event_type, &version, &text);
                prop_assert_eq!(read.as_ref(), Ok(event));

                match event {
                    ConversationEvent::ConversationOpened { user, .. } => {
                        prop_assert!(allowed_edge(status, ConversationStatus::Active));
                        prop_assert_eq!(user.role, Role::User);
                        prop_assert!(!other_active);
                        model.owner = Some(user.id);
                        status = Some(ConversationStatus::Active);
                    }
                    ConversationEvent::MessageSent { message_id, sender, message_type, content, file_id, .. } => {
                        prop_assert_eq!(status, Some(ConversationStatus::Active));
                        prop_assert!(!model.erased, "nothing is written to an erased conversation");
                        prop_assert!(last_id.is_none_or(|last| *message_id > last), "ids must increase");
                        prop_assert_eq!(*message_id, expected_id);
                        if *message_type == MessageType::System {
                            prop_assert_eq!(sender.role, Role::System);
                        }
                        prop_assert_eq!(message_type.carries_file(), file_id.is_some());
                        if let Some(file_id) = file_id {
                            let upload = model.uploads.get(file_id).copied();
                            prop_assert_eq!(upload, Some((sender.id, sender.role, *message_type)), "a file message must carry the sender's own upload of its kind");
                        }
                        prop_assert!(content.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
                        prop_assert!(content.trim().chars().count() <= 5000);
                        let from_user = side(sender.role).expect("auditors never send");
                        model.messages.insert(*message_id, from_user);
                        model.senders.insert(*message_id, (sender.id, sender.role, *message_type));
                        last_id = Some(*message_id);
                        expected_id += 1;
                    }
                    ConversationEvent::MessagesRead { message_ids, reader } => {
                        prop_assert!(!message_ids.is_empty());
                        prop_assert!(message_ids.windows(2).all(|w| w[0] < w[1]), "ascending");
                        let reader_is_user = side(reader.role).expect("auditors never read");
                        for id in message_ids {
                            let sender_is_user = model.messages.get(id).copied();
                            prop_assert_eq!(sender_is_user, Some(!reader_is_user), "id {} is not the other side's", id);
                            prop_assert!(model.read.insert(*id), "id {} was already read", id);
                        }
                    }
                    ConversationEvent::ConversationClosed { .. } => {
                        prop_assert!(allowed_edge(status, ConversationStatus::Closed));
                        status = Some(ConversationStatus::Closed);
                    }
                    ConversationEvent::ConversationReopened { .. } => {
                        prop_assert!(allowed_edge(status, ConversationStatus::Active));
                        prop_assert!(!model.erased, "an erased conversation stays closed");
                        prop_assert!(!other_active);
                        status = Some(ConversationStatus::Active);
                    }
                    ConversationEvent::ConversationArchived { by } => {
                        prop_assert!(allowed_edge(status, ConversationStatus::Archived));
                        prop_assert!(by.role.is_staff());
                        status = Some(ConversationStatus::Archived);
                    }
                    ConversationEvent::ConversationAssigned { admin_id, by } => {
                        prop_assert_ne!(status, Some(ConversationStatus::Archived));
                        prop_assert!(*admin_id > 0);
                        prop_assert!(by.role.is_staff());
                        prop_assert_ne!(before.admin_id(), Some(*admin_id));
                    }
                    ConversationEvent::FeedbackGiven { rating, by, .. } => {
                        prop_assert_eq!(status, Some(ConversationStatus::Closed));
                        prop_assert_eq!(model.feedback_count, 0, "feedback twice");
                        prop_assert!(!model.erased);
                        prop_assert!((1..=5).contains(rating));
                        prop_assert_eq!(Some(by.id), model.owner);
                        model.feedback_count += 1;
                    }
                    ConversationEvent::FileUploaded { file, by } => {
                        prop_assert!(status.is_some());
                        prop_assert_ne!(status, Some(ConversationStatus::Archived));
                        prop_assert!(file.kind.carries_file());
                        prop_assert_ne!(by.role, Role::Auditor);
                        let first = model.uploads.insert(file.file_id.clone(), (by.id, by.role, file.kind));
                        prop_assert!(first.is_none(), "file id {} uploaded twice", file.file_id);
                        prop_assert!(!model.erased);
                    }
                    ConversationEvent::MessageEdited { message_id, content, by } => {
                        let ConversationCommand::EditMessage { message, .. } = &command else {
                            panic!("{command:?} edited");
                        };
                        prop_assert_eq!(model.senders.get(message_id), Some(&(by.id, by.role, MessageType::Text)), "only the sender edits a text");
                        prop_assert!(message.within_edit_window());
                        prop_assert!(!model.deleted.contains(message_id));
                        prop_assert!(!model.erased);
                        prop_assert!(status.is_some_and(|s| s != ConversationStatus::Archived));
                        prop_assert!(!content.trim().is_empty() && content.trim().chars().count() <= 5000);
                    }
                    ConversationEvent::MessageDeleted { message_id, by, reason } => {
                        let ConversationCommand::DeleteMessage { message, .. } = &command else {
                            panic!("{command:?} deleted");
                        };
                        let (sender_id, sender_role, _) = *model.senders.get(message_id).expect("a message sent here");
                        let own = (sender_id, sender_role) == (by.id, by.role) && message.within_edit_window();
                        prop_assert!(own || (by.role.is_staff() && reason.is_some()), "{:?} may not delete {}", by, message_id);
                        prop_assert!(by.role != Role::User || reason.is_none(), "a user's words stay out");
                        prop_assert!(model.deleted.insert(*message_id), "deleted twice");
                        prop_assert!(!model.erased);
                        prop_assert!(status.is_some_and(|s| s != ConversationStatus::Archived));
                    }
                    ConversationEvent::ConversationErased { reason, by } => {
                        prop_assert!(by.role.is_staff());
                        prop_assert!(!reason.trim().is_empty());
                        prop_assert!(!model.erased, "erased twice");
                        prop_assert_ne!(status, Some(ConversationStatus::Active), "closed first");
                        prop_assert!(status.is_some());
                        model.erased = true;
                    }
                }
            }
            prop_assert_eq!(status, conversation.status());
            if before.status() == Some(ConversationStatus::Archived) {
                prop_assert_eq!(conversation.status(), Some(ConversationStatus::Archived), "archived is final");
            }

            // The aggregate's unread sets are exactly the model's unread messages per side.
            let unread = |from_user: bool| -> BTreeSet<u64> {
                model
                    .messages
                    .iter()
                    .filter(|(id, side)| **side == from_user && !model.read.contains(id))
                    .map(|(id, _)| *id)
                    .collect()
            };
            prop_assert_eq!(conversation.unread_by_staff(), &unread(true));
            prop_assert_eq!(conversation.unread_by_user(), &unread(false));
            prop_assert_eq!(conversation.message_count(), model.messages.len() as u64);
            for id in model.senders.keys() {
                prop_assert_eq!(conversation.is_deleted(*id), model.deleted.contains(id));
            }

            // The command layer hands out the next unused id.
            next_message_id = expected_id;
        }
    }
}
