//! `assignment_waiting`: the reopened conversations automatic assignment found no available
//! admin for. Only the assignment follower (`crate::assignment`) writes it, each change in its own
//! short transaction.

use projections::{ProjectionError, ProjectionStore, SqlValue};

use super::{EventStore, StoreError};

/// A reopened conversation automatic assignment found no available admin for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingConversation {
    pub conversation_id: u64,
    /// When the event that made it wait was recorded (microseconds; the queue's order).
    pub waiting_since: i64,
    /// The admin it had then, if any.
    pub admin_id: Option<u64>,
}

impl EventStore {
    /// Reopened conversations waiting for an available admin, longest waiting first.
    pub async fn waiting_for_assignment(
        &self,
        limit: u32,
    ) -> Result<Vec<WaitingConversation>, StoreError> {
        let rows = self
            .value_rows(
                "select conversation_id, waiting_since, admin_id from assignment_waiting \
                 order by waiting_since, conversation_id limit ?",
                &[SqlValue::Int(i64::from(limit))],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let int = |i: usize| row.get(i).and_then(SqlValue::as_i64);
                WaitingConversation {
                    conversation_id: unsigned(int(0).unwrap_or(0)),
                    waiting_since: int(1).unwrap_or(0),
                    admin_id: int(2).map(unsigned),
                }
            })
            .collect())
    }

    /// Puts a conversation in the queue, with the admin it has now; one already waiting keeps
    /// its place (and its time).
    pub async fn queue_for_assignment(
        &self,
        conversation_id: u64,
        since: i64,
        admin_id: Option<u64>,
    ) -> Result<(), ProjectionError> {
        let mut txn = ProjectionStore::begin(self).await?;
        let admin = admin_id.map_or(SqlValue::Null, SqlValue::from);
        let inserted = txn
            .execute(
                "insert into assignment_waiting (conversation_id, waiting_since, admin_id) \
                 values (?, ?, ?)",
                &[conversation_id.into(), SqlValue::Int(since), admin],
            )
            .await;
        match inserted {
            Ok(_) => txn.commit().await,
            Err(ProjectionError::Duplicate(_)) => txn.rollback().await,
            Err(error) => {
                let _ = txn.rollback().await;
                Err(error)
            }
        }
    }

    /// Takes a conversation out of the queue (nothing when it is not there).
    pub async fn unqueue_from_assignment(
        &self,
        conversation_id: u64,
    ) -> Result<(), ProjectionError> {
        let mut txn = ProjectionStore::begin(self).await?;
        match txn
            .execute(
                "delete from assignment_waiting where conversation_id = ?",
                &[conversation_id.into()],
            )
            .await
        {
            Ok(_) => txn.commit().await,
            Err(error) => {
                let _ = txn.rollback().await;
                Err(error)
            }
        }
    }
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
