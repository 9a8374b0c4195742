//! Typed refusals of the domain, and the error for event payloads it cannot read.

use thiserror::Error;

/// Why a command was refused. A refused command writes no events.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConversationError {
    /// The conversation does not exist (it was never opened).
    #[error("conversation not found")]
    NotFound,
    /// The actor may not do this: wrong role, not the owner, or an auditor trying to write.
    #[error("{0}")]
    Forbidden(String),
    /// The transition is not allowed in the conversation's current state.
    #[error("{0}")]
    Conflict(String),
    /// The message content is empty after trimming.
    #[error("message content is empty")]
    EmptyMessage,
    /// Any other malformed input.
    #[error("{0}")]
    Validation(String),
}

impl ConversationError {
    /// The stable error code of the API envelope.
    pub fn code(&self) -> &'static str {
        match self {
            ConversationError::NotFound => "NOT_FOUND",
            ConversationError::Forbidden(_) => "FORBIDDEN",
            ConversationError::Conflict(_) => "CONFLICT",
            ConversationError::EmptyMessage => "EMPTY_MESSAGE",
            ConversationError::Validation(_) => "VALIDATION_ERROR",
        }
    }
}

/// A stored event this build cannot read: an unknown `event_type`, a version newer (or older)
/// than any it knows, or a payload that does not match its type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot read event `{event_type}`: {reason}")]
pub struct UnknownEvent {
    pub event_type: String,
    pub reason: String,
}

impl UnknownEvent {
    pub fn new(event_type: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            event_type: event_type.into(),
            reason: reason.into(),
        }
    }
}
