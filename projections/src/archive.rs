//! Archived conversations live in tables of their own (`conversations_archive`,
//! `messages_archive`, the same columns as the live ones), so the tables every live query reads
//! hold the open work, not the whole history. Archived is final: once moved, rows only change
//! for what may still follow an archival (read receipts, feedback, erasure).
//!
//! Also here: what a replay defers of the statements that find rows by conversation, which the
//! rebuilt copies (primary keys only) could answer only by scanning.

use crate::{ProjectionError, SqlTxn, SqlValue, Tables};

/// The archive table of a live read table, under the same rebuild suffix.
pub(crate) fn archive_of(tables: &Tables, live: &str) -> String {
    tables.name(&format!("{live}_archive"))
}

/// Moves the rows whose `key` is `id` from `from` to `to` (tables with the same columns).
pub(crate) async fn move_rows(
    txn: &mut dyn SqlTxn,
    from: &str,
    to: &str,
    columns: &str,
    key: &str,
    id: u64,
) -> Result<(), ProjectionError> {
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
    Ok(())
}

/// Conversations a replay has yet to apply a statement by conversation to: kept by a projector
/// through the fold, taken in its `finish_rebuild`, once the swap has built the indexes.
#[derive(Default)]
pub(crate) struct Deferred(std::sync::Mutex<Vec<u64>>);

impl Deferred {
    pub(crate) fn push(&self, id: u64) -> Result<(), ProjectionError> {
        self.0.lock().map_err(|_| lost())?.push(id);
        Ok(())
    }

    pub(crate) fn take(&self) -> Result<Vec<u64>, ProjectionError> {
        Ok(std::mem::take(&mut *self.0.lock().map_err(|_| lost())?))
    }
}

fn lost() -> ProjectionError {
    ProjectionError::Database("a replay's deferred statements were lost".into())
}
