//! Read receipts: the caller marks the other side's messages read.

use events::ConversationCommand;

use super::ids::wire_id;
use super::{App, AppError, Origin};
use crate::auth::Session;
use crate::commands::Intent;

/// Marks `message_ids` of conversation `conversation_id` read; how many were newly marked. Every
/// id is checked before anything is written.
pub async fn mark_read(
    app: &App,
    origin: &Origin,
    session: &Session,
    conversation_id: u64,
    message_ids: Vec<u64>,
) -> Result<usize, AppError> {
    let conversation_id = wire_id(conversation_id, "conversation_id")?;
    for id in &message_ids {
        wire_id(*id, "message_ids")?;
    }
    let command = ConversationCommand::MarkMessagesRead {
        actor: session.actor(),
        message_ids,
    };
    let committed = app
        .execute(origin, session, Intent::On(conversation_id, command), None)
        .await?;
    Ok(committed.messages_marked_read())
}
