//! Reads for push notifications: several rows of integers and text (the read side's
//! transactions return one row; the push follower and sender need lists: devices, due jobs).

use projections::SqlValue;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::read::Bind;
use super::sql::SqlStore;
use super::{EventStore, StoreError, on_backend};

impl EventStore {
    /// Every row of a query; each column an integer, text or null.
    pub async fn push_rows(
        &self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        on_backend!(self, s => s.push_rows(sql, params).await)
    }
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Vec<u8>: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn push_rows(
        &self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        let binds = params
            .iter()
            .map(|p| match p {
                SqlValue::Int(v) => Bind::Int(*v),
                SqlValue::Text(v) => Bind::Text(v.clone()),
                // No statement here binds a null.
                SqlValue::Null => Bind::Text(String::new()),
            })
            .collect();
        let rows = self.fetch(sql, binds).await?;
        Ok(rows.iter().map(super::projection::row_values).collect())
    }
}
