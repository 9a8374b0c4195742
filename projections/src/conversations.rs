//! The `conversations` table: one row per conversation with its status, assignee, unread counts
//! for each side, last message preview and time, feedback, and the stream version it reflects.

use async_trait::async_trait;
use events::{ConversationEvent, Role};

use crate::{LoggedEvent, ProjectionError, Projector, SqlTxn, SqlValue, Tables};

/// Characters of the last message kept for the conversation list.
pub const PREVIEW_CHARS: usize = 100;

pub struct ConversationsProjector;

fn preview(content: &str) -> String {
    content.trim().chars().take(PREVIEW_CHARS).collect()
}

#[async_trait]
impl Projector for ConversationsProjector {
    fn name(&self) -> &'static str {
        "conversations"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["conversations"]
    }

    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        event: &LoggedEvent,
    ) -> Result<(), ProjectionError> {
        let table = tables.name("conversations");
        let id = SqlValue::from(event.conversation_id()?);
        let at = SqlValue::Int(event.recorded_at_micros);
        let version = SqlValue::from(event.sequence);
        let (sql, params): (String, Vec<SqlValue>) = match event.decode()? {
            ConversationEvent::ConversationOpened { user, .. } => {
                let sql = format!(
                    "insert into {table} (id, user_id, user_identifier, admin_id, status, \
                     message_count, unread_for_user, unread_for_admin, created_at, updated_at, version) \
                     values (?, ?, ?, null, 'active', 0, 0, 0, ?, ?, ?)"
                );
                txn.execute(
                    &sql,
                    &[
                        id,
                        user.id.into(),
                        user.identifier.into(),
                        at.clone(),
                        at,
                        version,
                    ],
                )
                .await?;
                return Ok(());
            }
            ConversationEvent::MessageSent {
                message_id,
                sender,
                message_type,
                content,
                ..
            } => {
                let from_user = i64::from(sender.role == Role::User);
                (
                    format!(
                        "update {table} set last_message_id = ?, last_message_preview = ?, \
                         last_message_sender_role = ?, last_message_type = ?, last_message_at = ?, \
                         message_count = message_count + 1, unread_for_admin = unread_for_admin + ?, \
                         unread_for_user = unread_for_user + ?, updated_at = ?, version = ? where id = ?"
                    ),
                    vec![
                        message_id.into(),
                        preview(&content).into(),
                        sender.role.as_str().into(),
                        message_type.as_str().into(),
                        at.clone(),
                        SqlValue::Int(from_user),
                        SqlValue::Int(1 - from_user),
                        at,
                        version,
                        id,
                    ],
                )
            }
            ConversationEvent::MessagesRead {
                message_ids,
                reader,
            } => {
                let column = if reader.role == Role::User {
                    "unread_for_user"
                } else {
                    "unread_for_admin"
                };
                let read = i64::try_from(message_ids.len()).unwrap_or(i64::MAX);
                (
                    format!(
                        "update {table} set {column} = {column} - ?, updated_at = ?, version = ? where id = ?"
                    ),
                    vec![SqlValue::Int(read), at, version, id],
                )
            }
            ConversationEvent::ConversationClosed { .. } => (
                format!(
                    "update {table} set status = 'closed', closed_at = ?, updated_at = ?, version = ? where id = ?"
                ),
                vec![at.clone(), at, version, id],
            ),
            ConversationEvent::ConversationReopened { .. } => (
                format!(
                    "update {table} set status = 'active', closed_at = null, updated_at = ?, version = ? where id = ?"
                ),
                vec![at, version, id],
            ),
            ConversationEvent::ConversationArchived { .. } => (
                format!(
                    "update {table} set status = 'archived', updated_at = ?, version = ? where id = ?"
                ),
                vec![at, version, id],
            ),
            ConversationEvent::ConversationAssigned { admin_id, .. } => (
                format!(
                    "update {table} set admin_id = ?, updated_at = ?, version = ? where id = ?"
                ),
                vec![admin_id.into(), at, version, id],
            ),
            ConversationEvent::FeedbackGiven {
                rating, comment, ..
            } => (
                format!(
                    "update {table} set feedback_rating = ?, feedback_comment = ?, feedback_at = ?, \
                     updated_at = ?, version = ? where id = ?"
                ),
                vec![rating.into(), comment.into(), at.clone(), at, version, id],
            ),
        };
        let changed = txn.execute(&sql, &params).await?;
        if changed != 1 {
            return Err(ProjectionError::Apply {
                position: event.position,
                reason: format!("conversation {} is not in {table}", event.stream_id),
            });
        }
        Ok(())
    }
}
