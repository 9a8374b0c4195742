//! Shared arrangements for the domain tests: a cast of actors and event builders.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use cqrs_es::test::TestFramework;
use events::{
    Actor, Conversation, ConversationEvent, ConversationServices, MessageType, NewMessage, Role,
    UploadedFile,
};

pub const CONVERSATION: u64 = 100;

pub fn user() -> Actor {
    Actor::new(42, Role::User, "user_uuid_42")
}

pub fn other_user() -> Actor {
    Actor::new(43, Role::User, "user_uuid_43")
}

pub fn admin() -> Actor {
    Actor::new(1, Role::Admin, "alice")
}

pub fn other_admin() -> Actor {
    Actor::new(2, Role::Admin, "bob")
}

pub fn auditor() -> Actor {
    Actor::new(9, Role::Auditor, "carol")
}

pub fn system() -> Actor {
    Actor::new(0, Role::System, "system")
}

pub fn services(next_message_id: u64) -> ConversationServices {
    ConversationServices {
        next_message_id,
        other_active_conversation: None,
    }
}

pub fn services_with_other_active(next_message_id: u64) -> ConversationServices {
    ConversationServices {
        next_message_id,
        other_active_conversation: Some(CONVERSATION + 1),
    }
}

/// A framework whose next message id is `next_message_id`.
pub fn framework(next_message_id: u64) -> TestFramework<Conversation> {
    TestFramework::with(services(next_message_id))
}

pub fn opened() -> ConversationEvent {
    ConversationEvent::ConversationOpened {
        conversation_id: CONVERSATION,
        user: user(),
    }
}

pub fn sent(message_id: u64, sender: Actor, content: &str) -> ConversationEvent {
    ConversationEvent::MessageSent {
        message_id,
        sender,
        message_type: MessageType::Text,
        content: content.to_string(),
        file_id: None,
        client_msg_id: None,
        file_path: None,
        attachment: None,
    }
}

/// A file id as the service makes them: 32 hex digits (`tag` fills it, repeated).
pub fn file_id(tag: char) -> String {
    std::iter::repeat_n(tag, 32).collect()
}

/// An upload of `kind` with id `file_id(tag)`.
pub fn upload(tag: char, kind: MessageType) -> UploadedFile {
    let id = file_id(tag);
    let (mime_type, extension) = if kind == MessageType::Image {
        ("image/png", "png")
    } else {
        ("application/pdf", "pdf")
    };
    UploadedFile {
        path: format!("uploads/chat/2026/11/25/{id}.{extension}"),
        file_id: id,
        kind,
        original_name: format!("original.{extension}"),
        size: 1024,
        mime_type: mime_type.into(),
        sha256: "0".repeat(64),
        width: (kind == MessageType::Image).then_some(640),
        height: (kind == MessageType::Image).then_some(480),
    }
}

pub fn uploaded(tag: char, kind: MessageType, by: Actor) -> ConversationEvent {
    ConversationEvent::FileUploaded {
        file: upload(tag, kind),
        by,
    }
}

pub fn closed_by(by: Actor) -> ConversationEvent {
    ConversationEvent::ConversationClosed { by }
}

pub fn reopened_by(by: Actor) -> ConversationEvent {
    ConversationEvent::ConversationReopened { by }
}

pub fn archived_by(by: Actor) -> ConversationEvent {
    ConversationEvent::ConversationArchived { by }
}

pub fn read(message_ids: Vec<u64>, reader: Actor) -> ConversationEvent {
    ConversationEvent::MessagesRead {
        message_ids,
        reader,
    }
}

pub fn active() -> Vec<ConversationEvent> {
    vec![opened()]
}

pub fn closed() -> Vec<ConversationEvent> {
    vec![opened(), closed_by(user())]
}

pub fn archived() -> Vec<ConversationEvent> {
    vec![opened(), archived_by(admin())]
}

pub fn text(content: &str) -> NewMessage {
    NewMessage::text(content)
}

pub fn with_file(message_type: MessageType, content: &str, file_id: Option<&str>) -> NewMessage {
    NewMessage {
        message_type,
        content: content.to_string(),
        file_id: file_id.map(str::to_string),
        client_msg_id: None,
    }
}

/// A framework where the user already has another active conversation.
pub fn framework_with_other_active(next_message_id: u64) -> TestFramework<Conversation> {
    TestFramework::with(services_with_other_active(next_message_id))
}
