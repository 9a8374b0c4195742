//! The `messages` table: one row per message, with the read flag that read receipts set.

use async_trait::async_trait;
use events::{ConversationEvent, Role};

use crate::{LoggedEvent, ProjectionError, Projector, SqlTxn, SqlValue, Tables};

/// Ids per `update ... where id in (...)` statement.
const READ_CHUNK: usize = 500;

pub struct MessagesProjector;

#[async_trait]
impl Projector for MessagesProjector {
    fn name(&self) -> &'static str {
        "messages"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["messages"]
    }

    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        event: &LoggedEvent,
    ) -> Result<(), ProjectionError> {
        let table = tables.name("messages");
        match event.decode()? {
            ConversationEvent::MessageSent {
                message_id,
                sender,
                message_type,
                content,
                file_id,
                client_msg_id,
            } => {
                let (user_id, admin_id) = match sender.role {
                    Role::User => (Some(sender.id), None),
                    Role::Admin => (None, Some(sender.id)),
                    Role::System | Role::Auditor => (None, None),
                };
                let sql = format!(
                    "insert into {table} (id, conversation_id, user_id, admin_id, sender_role, \
                     sender_identifier, message_type, content, file_id, file_url, client_msg_id, metadata, \
                     is_read, read_at, timestamp, position) \
                     values (?, ?, ?, ?, ?, ?, ?, ?, ?, null, ?, null, 0, null, ?, ?)"
                );
                txn.execute(
                    &sql,
                    &[
                        message_id.into(),
                        event.conversation_id()?.into(),
                        user_id.into(),
                        admin_id.into(),
                        sender.role.as_str().into(),
                        sender.identifier.into(),
                        message_type.as_str().into(),
                        content.into(),
                        file_id.into(),
                        client_msg_id.into(),
                        SqlValue::Int(event.recorded_at_micros),
                        event.position.into(),
                    ],
                )
                .await?;
            }
            ConversationEvent::MessagesRead { message_ids, .. } => {
                for chunk in message_ids.chunks(READ_CHUNK) {
                    let placeholders = vec!["?"; chunk.len()].join(", ");
                    let sql = format!(
                        "update {table} set is_read = 1, read_at = ? \
                         where conversation_id = ? and id in ({placeholders})"
                    );
                    let mut params = vec![
                        SqlValue::Int(event.recorded_at_micros),
                        event.conversation_id()?.into(),
                    ];
                    params.extend(chunk.iter().map(|id| SqlValue::from(*id)));
                    let changed = txn.execute(&sql, &params).await?;
                    if changed != chunk.len() as u64 {
                        return Err(ProjectionError::Apply {
                            position: event.position,
                            reason: format!(
                                "read receipt for {} messages, {changed} found unread in {table}",
                                chunk.len()
                            ),
                        });
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
