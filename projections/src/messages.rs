//! The `messages` table: one row per message, with the read flag that read receipts set.
//! Consecutive messages are inserted with one multi-row statement. An archived conversation's
//! messages move to `messages_archive`; those of a conversation archived later in the same batch
//! (a replay) go there directly.

use std::collections::HashSet;

use async_trait::async_trait;
use events::{ConversationEvent, Role};

use crate::archive::{Deferred, archive_of, move_rows};
use crate::batch::BatchInsert;
use crate::{LoggedEvent, ProjectionError, Projector, SqlTxn, SqlValue, Tables};

/// Rows per multi-row insert (18 parameters each; SQLite allows 32,766 in one statement).
const INSERT_CHUNK: usize = 400;
/// Ids per `update ... where id in (...)` statement.
const READ_CHUNK: usize = 500;

const COLUMNS: &str = "id, conversation_id, user_id, admin_id, sender_role, sender_identifier, \
     message_type, content, file_id, file_url, file_name, file_size, mime_type, width, height, \
     client_msg_id, metadata, is_read, read_at, timestamp, position";
/// Every column, in the order of the table's definition, for moving rows to the archive.
const ALL_COLUMNS: &str = "id, conversation_id, user_id, admin_id, sender_role, sender_identifier, \
     message_type, content, file_id, file_url, client_msg_id, metadata, is_read, read_at, timestamp, \
     position, file_name, file_size, mime_type, width, height, erased, edited_at, deleted_by";
// `file_url` holds the file's stored path; the API puts the public base and a signature on it.
const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, null, 0, null, ?, ?)";

#[derive(Default)]
pub struct MessagesProjector {
    /// Conversations archived during a replay whose earlier rows are still in the rebuilt live
    /// table: the copy has no index by conversation, so they move once the swap has built it.
    deferred_moves: Deferred,
    /// Conversations erased during a replay, marked once the swap has built that index.
    deferred_erasures: Deferred,
}

#[async_trait]
impl Projector for MessagesProjector {
    fn name(&self) -> &'static str {
        "messages"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["messages", "messages_archive"]
    }

    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError> {
        let live = tables.name("messages");
        let archive = archive_of(tables, "messages");
        let archived_here: HashSet<&str> = events
            .iter()
            .filter(|e| {
                matches!(
                    e.decode(),
                    Ok(ConversationEvent::ConversationArchived { .. })
                )
            })
            .map(|e| e.stream_id.as_str())
            .collect();
        let mut pending = BatchInsert::new(live.clone(), COLUMNS, ROW, INSERT_CHUNK);
        let mut pending_archived = BatchInsert::new(archive.clone(), COLUMNS, ROW, INSERT_CHUNK);
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
                    if archived_here.contains(event.stream_id.as_str()) {
                        pending_archived.push(txn, event.position, row).await?;
                    } else {
                        pending.push(txn, event.position, row).await?;
                    }
                }
                ConversationEvent::MessagesRead { message_ids, .. } => {
                    // The messages read may be among those still pending.
                    pending.flush(txn).await?;
                    pending_archived.flush(txn).await?;
                    mark_read(txn, [&live, &archive], event, message_ids).await?;
                }
                ConversationEvent::MessageEdited {
                    message_id,
                    content,
                    ..
                } => {
                    // The message may be among those still pending.
                    pending.flush(txn).await?;
                    pending_archived.flush(txn).await?;
                    let change = "content = ?, edited_at = ?";
                    let values = [content.into(), SqlValue::Int(event.recorded_at_micros)];
                    change_message(txn, [&live, &archive], event, *message_id, change, values)
                        .await?;
                }
                ConversationEvent::MessageDeleted { message_id, by, .. } => {
                    pending.flush(txn).await?;
                    pending_archived.flush(txn).await?;
                    // A tombstone: what it said is left to the log (and its auditors).
                    let change = "content = '', file_name = case when file_name is null then null \
                                  else '' end, deleted_by = ?";
                    let values = [by.role.as_str().into()];
                    change_message(txn, [&live, &archive], event, *message_id, change, values)
                        .await?;
                }
                ConversationEvent::ConversationErased { .. } => {
                    let id = event.conversation_id()?;
                    if *tables == Tables::REBUILD {
                        self.deferred_erasures.push(id)?;
                    } else {
                        pending.flush(txn).await?;
                        pending_archived.flush(txn).await?;
                        erase(txn, [&live, &archive], id).await?;
                    }
                }
                ConversationEvent::ConversationArchived { .. } => {
                    // Rows of earlier batches; this batch's are queued for the archive.
                    let id = event.conversation_id()?;
                    if *tables == Tables::REBUILD {
                        self.deferred_moves.push(id)?;
                    } else {
                        // This conversation's rows of this batch are not in `pending`.
                        move_rows(txn, &live, &archive, ALL_COLUMNS, "conversation_id", id).await?;
                    }
                }
                _ => {}
            }
        }
        pending.flush(txn).await?;
        pending_archived.flush(txn).await
    }

    async fn finish_rebuild(&self, txn: &mut dyn SqlTxn) -> Result<(), ProjectionError> {
        let (live, archive) = (
            Tables::LIVE.name("messages"),
            archive_of(&Tables::LIVE, "messages"),
        );
        for id in self.deferred_moves.take()? {
            move_rows(txn, &live, &archive, ALL_COLUMNS, "conversation_id", id).await?;
        }
        for id in self.deferred_erasures.take()? {
            erase(txn, [&live, &archive], id).await?;
        }
        Ok(())
    }
}

/// What a replay folds from the erased events themselves: empty text and names, every row
/// marked, wherever the conversation is.
async fn erase(
    txn: &mut dyn SqlTxn,
    tables: [&str; 2],
    conversation_id: u64,
) -> Result<(), ProjectionError> {
    for table in tables {
        let sql = format!(
            "update {table} set content = '', erased = 1, file_name = \
             case when file_name is null then null else '' end where conversation_id = ?"
        );
        txn.execute(&sql, &[conversation_id.into()]).await?;
    }
    Ok(())
}

/// Changes one message's row, in the live table or, for an archived conversation, the archive.
async fn change_message<const N: usize>(
    txn: &mut dyn SqlTxn,
    tables: [&str; 2],
    event: &LoggedEvent,
    message_id: u64,
    change: &str,
    values: [SqlValue; N],
) -> Result<(), ProjectionError> {
    let mut params = values.to_vec();
    params.push(event.conversation_id()?.into());
    params.push(message_id.into());
    for table in tables {
        let sql = format!("update {table} set {change} where conversation_id = ? and id = ?");
        if txn.execute(&sql, &params).await? == 1 {
            return Ok(());
        }
    }
    Err(ProjectionError::Apply {
        position: event.position,
        reason: format!("message {message_id} of the change is in neither {tables:?}"),
    })
}

/// Marks the messages read, in the live table or, for an archived conversation, the archive.
async fn mark_read(
    txn: &mut dyn SqlTxn,
    [live, archive]: [&str; 2],
    event: &LoggedEvent,
    ids: &[u64],
) -> Result<(), ProjectionError> {
    for chunk in ids.chunks(READ_CHUNK) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let mut params = vec![
            SqlValue::Int(event.recorded_at_micros),
            event.conversation_id()?.into(),
        ];
        params.extend(chunk.iter().map(|id| SqlValue::from(*id)));
        let mut changed = 0;
        for table in [live, archive] {
            let sql = format!(
                "update {table} set is_read = 1, read_at = ? where conversation_id = ? and id in ({placeholders})"
            );
            changed += txn.execute(&sql, &params).await?;
            if changed == chunk.len() as u64 {
                break;
            }
        }
        if changed != chunk.len() as u64 {
            return Err(ProjectionError::Apply {
                position: event.position,
                reason: format!(
                    "read receipt for {} messages, {changed} found unread in {live} and {archive}",
                    chunk.len()
                ),
            });
        }
    }
    Ok(())
}
