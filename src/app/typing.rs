//! Typing indicators: never stored, checked like a write (auditors only read, the conversation
//! must be the caller's to read, indicators count against a limit).

use serde_json::{Value, json};

use super::access::{limit_key, limit_refusal, readable, writer};
use super::{App, AppError};
use crate::auth::Session;
use crate::limits::LimitKind;

/// The event a conversation's sockets receive.
pub const TYPING_EVENT: &str = "typing_indicator";

/// Checks that the caller may type in the conversation and is under the typing limit, and
/// builds the indicator. A stop that ends a counted start is free; any other stop counts, so
/// stops alone cannot flood a room.
pub async fn indicator(
    app: &App,
    session: &Session,
    conversation_id: u64,
    typing: bool,
) -> Result<Value, AppError> {
    writer(session)?;
    readable(app, session, conversation_id).await?;
    app.limits
        .check_typing(&limit_key(session), conversation_id, typing)
        .await
        .map_err(|limited| limit_refusal(LimitKind::Typing, limited))?;
    Ok(json!({
        "conversation_id": conversation_id,
        "sender_role": session.role.as_str(),
        "typing": typing,
        "sender_identifier": session.identifier,
    }))
}
