//! Archived conversations live in tables of their own (`conversations_archive`,
//! `messages_archive`, the same columns as the live ones), so the tables every live query reads
//! hold the open work, not the whole history. Archived is final: once moved, rows only change
//! for what may still follow an archival (read receipts, feedback, erasure).

use crate::{ProjectionError, SqlTxn, SqlValue, Tables};

/// The archive table of a live read table, under the same rebuild suffix.
pub fn archive_of(tables: &Tables, live: &str) -> String {
    tables.name(&format!("{live}_archive"))
}

/// Moves the rows whose `key` is `id` from `from` to `to` (tables with the same columns); how
/// many moved.
pub(crate) async fn move_rows(
    txn: &mut dyn SqlTxn,
    from: &str,
    to: &str,
    columns: &str,
    key: &str,
    id: u64,
) -> Result<u64, ProjectionError> {
    let id = SqlValue::from(id);
    let copied = txn
        .execute(
            &format!("insert into {to} ({columns}) select {columns} from {from} where {key} = ?"),
            std::slice::from_ref(&id),
        )
        .await?;
    let deleted = txn
        .execute(&format!("delete from {from} where {key} = ?"), &[id])
        .await?;
    if copied != deleted {
        return Err(ProjectionError::Database(format!(
            "moved {copied} rows into {to} but took {deleted} out of {from}"
        )));
    }
    Ok(copied)
}
