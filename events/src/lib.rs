//! The conversation domain of chatd: what a support conversation is, which commands it accepts,
//! which events it records, and the rules that decide between them.
//!
//! This crate owns:
//! - the vocabulary shared by every other part: [`Actor`], [`Role`], [`ConversationStatus`],
//!   [`MessageType`];
//! - the commands ([`ConversationCommand`]), the events ([`ConversationEvent`], whose
//!   `event_type` strings never change once written) and the typed refusals
//!   ([`ConversationError`]);
//! - the [`Conversation`] aggregate (a `cqrs_es::Aggregate`), which folds events into the state
//!   a decision needs and decides each command: it either writes zero or more events, or refuses
//!   with an error and writes nothing;
//! - the [`upcast`] module, which turns payloads stored by older versions into the current shape.
//!
//! It must never do I/O (no database, network, files or sockets), read the clock, or draw
//! random numbers. Everything a decision needs from outside (the next message id, whether the
//! user already has another active conversation) is handed in as [`ConversationServices`], so a
//! decision is a pure function of (state, command, services) and replaying the log always
//! rebuilds the same state. Who/where/when of a command belong in the event metadata, which the
//! store writes, not in this crate.

mod actor;
mod aggregate;
mod command;
mod content;
mod error;
mod event;
pub mod import;
mod kinds;
pub mod upcast;

pub use actor::{Actor, Role};
pub use aggregate::Conversation;
pub use command::{
    AttachedFile, ConversationCommand, ConversationServices, NewMessage, SentMessage, UploadedFile,
};
pub use content::{
    MAX_CLIENT_MSG_ID_CHARS, MAX_CONTENT_CHARS, MAX_DELETION_REASON_CHARS,
    MAX_ERASURE_REASON_CHARS, MAX_FEEDBACK_COMMENT_CHARS, MAX_FILE_ID_CHARS, MAX_FILE_NAME_CHARS,
    MAX_ID, MAX_READ_IDS_PER_COMMAND, is_bidi_control, is_bidi_format, sanitize_content,
};
pub use error::{ConversationError, UnknownEvent};
pub use event::{ConversationEvent, EVENT_TYPES, personal_fields};
pub use kinds::{ConversationStatus, MessageType};
