//! The `messages` table: one row per message, with the read flag that read receipts set.
//! Consecutive messages are inserted with one multi-row statement.

use async_trait::async_trait;
use events::{ConversationEvent, Role};

use crate::batch::BatchInsert;
use crate::{LoggedEvent, ProjectionError, Projector, SqlTxn, SqlValue, Tables};

/// Rows per multi-row insert (18 parameters each; SQLite allows 32,766 in one statement).
const INSERT_CHUNK: usize = 400;
/// Ids per `update ... where id in (...)` statement.
const READ_CHUNK: usize = 500;

const COLUMNS: &str = "id, conversation_id, user_id, admin_id, sender_role, sender_identifier, \
     message_type, content, file_id, file_url, file_name, file_size, mime_type, width, height, \
     client_msg_id, metadata, is_read, read_at, timestamp, position";
// `file_url` holds the file's stored path; the API puts the public base and a signature on it.
const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null, 0, null, ?, ?)";

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
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("messages");
        let mut pending = BatchInsert::new(table.clone(), COLUMNS, ROW, INSERT_CHUNK);
        for event in events {
            match event.decode()? {
                ConversationEvent::MessageSent {
                    message_id,
                    sender,
                    message_type,
                    content,
                    file_id,
                    client_msg_id,
                    file_path,
                    attachment,
                } => {
                    let (user_id, admin_id) = match sender.role {
                        Role::User => (Some(sender.id), None),
                        Role::Admin => (None, Some(sender.id)),
                        Role::System | Role::Auditor => (None, None),
                    };
                    let row = [
                        message_id.into(),
                        event.conversation_id()?.into(),
                        user_id.into(),
                        admin_id.into(),
                        sender.role.as_str().into(),
                        (&sender.identifier).into(),
                        message_type.as_str().into(),
                        content.into(),
                        file_id.into(),
                        file_path.into(),
                        attachment.as_ref().map(|f| f.name.as_str()).into(),
                        attachment.as_ref().map(|f| f.size).into(),
                        attachment.as_ref().map(|f| f.mime_type.as_str()).into(),
                        attachment
                            .as_ref()
                            .and_then(|f| f.width)
                            .map(u64::from)
                            .into(),
                        attachment
                            .as_ref()
                            .and_then(|f| f.height)
                            .map(u64::from)
                            .into(),
                        client_msg_id.into(),
                        SqlValue::Int(event.recorded_at_micros),
                        event.position.into(),
                    ];
                    pending.push(txn, event.position, row).await?;
                }
                ConversationEvent::MessagesRead { message_ids, .. } => {
                    // The messages read may be among those still pending.
                    pending.flush(txn).await?;
                    mark_read(txn, &table, event, message_ids).await?;
                }
                ConversationEvent::ConversationErased { .. } => {
                    pending.flush(txn).await?;
                    // What a replay folds from the erased events themselves: empty text and
                    // names, every row marked.
                    let sql = format!(
                        "update {table} set content = '', erased = 1, file_name = \
                         case when file_name is null then null else '' end \
                         where conversation_id = ?"
                    );
                    txn.execute(&sql, &[event.conversation_id()?.into()])
                        .await?;
                }
                _ => {}
            }
        }
        pending.flush(txn).await
    }
}

async fn mark_read(
    txn: &mut dyn SqlTxn,
    table: &str,
    event: &LoggedEvent,
    ids: &[u64],
) -> Result<(), ProjectionError> {
    for chunk in ids.chunks(READ_CHUNK) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "update {table} set is_read = 1, read_at = ? where conversation_id = ? and id in ({placeholders})"
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
    Ok(())
}
