//! What an erasure removes beside the log's own shredding (the data key goes in the append
//! transaction of `ConversationErased`): the person's conversations (and those due under the
//! retention rule) are found in the read table, and their pushes still queued and their devices
//! are deleted.

use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::read::{ARCHIVED_CONVERSATIONS, Bind, bound, int};
use super::{EventStore, RowsAffected, SqlStore, StoreError, on_backend};

impl EventStore {
    /// The ids of a user's conversations, as the read table has them.
    pub async fn conversation_ids_of_user(&self, user_id: u64) -> Result<Vec<u64>, StoreError> {
        let sql = format!(
            "select id from conversations where user_id = ? union all \
             select id from {ARCHIVED_CONVERSATIONS} where user_id = ? order by id"
        );
        on_backend!(self, s => s.ids(&sql, vec![int(user_id), int(user_id)]).await)
    }

    /// The stored paths of the files uploaded to these conversations.
    pub async fn file_paths_in(&self, conversation_ids: &[u64]) -> Result<Vec<String>, StoreError> {
        let mut paths = Vec::new();
        for chunk in conversation_ids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "select path from files where conversation_id in ({placeholders}) order by path"
            );
            let binds = chunk.iter().map(|id| int(*id)).collect();
            paths.extend(on_backend!(self, s => s.texts(&sql, binds).await)?);
        }
        Ok(paths)
    }

    /// Deletes the pushes still queued for these conversations; how many.
    pub async fn forget_pushes(&self, conversation_ids: &[u64]) -> Result<u64, StoreError> {
        let mut pushes = 0;
        for chunk in conversation_ids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!("delete from push_outbox where conversation_id in ({placeholders})");
            let binds = chunk.iter().map(|id| int(*id)).collect();
            pushes += on_backend!(self, s => s.run(&sql, binds).await)?;
        }
        Ok(pushes)
    }

    /// Deletes a user's push devices; how many.
    pub async fn forget_devices(&self, user_id: u64) -> Result<u64, StoreError> {
        on_backend!(self, s => {
            s.run(
                "delete from push_devices where role = 'user' and user_id = ?",
                vec![int(user_id)],
            )
            .await
        })
    }

    /// Conversations closed or archived before `cutoff_micros` (by when they closed, else their
    /// last change) and not erased, oldest id first, at most `limit`.
    pub async fn conversations_due_for_retention(
        &self,
        cutoff_micros: i64,
        limit: u32,
    ) -> Result<Vec<u64>, StoreError> {
        let sql = format!(
            "select id from conversations where status = 'closed' \
             and erased = 0 and coalesce(closed_at, updated_at) < ? union all \
             select id from {ARCHIVED_CONVERSATIONS} \
             where erased = 0 and coalesce(closed_at, updated_at) < ? order by id limit ?"
        );
        let binds = vec![
            Bind::Int(cutoff_micros),
            Bind::Int(cutoff_micros),
            Bind::Int(i64::from(limit)),
        ];
        on_backend!(self, s => s.ids(&sql, binds).await)
    }
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn ids(&self, sql: &str, binds: Vec<Bind>) -> Result<Vec<u64>, StoreError> {
        self.fetch(sql, binds)
            .await?
            .iter()
            .map(|row| {
                let id: i64 = row.try_get(0).map_err(StoreError::from_sqlx)?;
                Ok(u64::try_from(id).unwrap_or_default())
            })
            .collect()
    }

    async fn texts(&self, sql: &str, binds: Vec<Bind>) -> Result<Vec<String>, StoreError> {
        self.fetch(sql, binds)
            .await?
            .iter()
            .map(|row| row.try_get(0).map_err(StoreError::from_sqlx))
            .collect()
    }

    /// Runs one statement; the rows it changed.
    async fn run(&self, sql: &str, binds: Vec<Bind>) -> Result<u64, StoreError>
    where
        DB::QueryResult: RowsAffected,
    {
        let done = bound(sql, binds)
            .execute(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.changed())
    }
}
