//! Typing indicators: never stored, checked like a write (auditors only read, the conversation
//! must be the caller's to read, starts count against a limit).

use serde_json::{Value, json};

use super::access::{readable, within_limit, writer};
use super::{App, AppError};
use crate::auth::Session;
use crate::limits::LimitKind;

/// The event a conversation's sockets receive.
pub const TYPING_EVENT: &str = "typing_indicator";

/// Checks that the caller may type in the conversation and is under the typing limit (counted
/// on starts: a stop only clears the indicator), and builds the indicator.
pub async fn indicator(
    app: &App,
    session: &Session,
    conversation_id: u64,
    typing: bool,
) -> Result<Value, AppError> {
    writer(session)?;
    readable(app, session, conversation_id).await?;
    if typing {
        within_limit(app, session, LimitKind::Typing).await?;
    }
    Ok(json!({
        "conversation_id": conversation_id,
        "sender_role": session.role.as_str(),
        "typing": typing,
        "sender_identifier": session.identifier,
    }))
}
