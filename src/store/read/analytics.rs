//! Reads the `analytics` projection's facts for the report. Reads only: the tables belong to
//! the projector.

use projections::{AnalyticsFact, FactKind};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use crate::store::{EventStore, SqlStore, StoreError, on_backend};

impl EventStore {
    /// The facts recorded in `[from, to)` (µs since the epoch), in position order.
    pub async fn analytics_facts(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<AnalyticsFact>, StoreError> {
        on_backend!(self, s => s.analytics_facts(from, to).await)
    }
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    Option<i64>: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    async fn analytics_facts(&self, from: i64, to: i64) -> Result<Vec<AnalyticsFact>, StoreError> {
        let rows = sqlx::query(
            "select position, kind, conversation_id, recorded_at, admin_id, value \
             from analytics_facts where recorded_at >= ? and recorded_at < ? \
             order by position, kind",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        let unsigned = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| StoreError::Invalid(format!("negative {what}: {v}")))
        };
        rows.iter()
            .map(|row| {
                let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
                let kind = int(1)?;
                Ok(AnalyticsFact {
                    position: unsigned(int(0)?, "position")?,
                    kind: FactKind::from_code(kind).ok_or_else(|| {
                        StoreError::Invalid(format!("unknown analytics fact kind {kind}"))
                    })?,
                    conversation_id: unsigned(int(2)?, "conversation id")?,
                    at: int(3)?,
                    admin_id: row
                        .try_get::<Option<i64>, _>(4)
                        .map_err(StoreError::from_sqlx)?
                        .map(|v| unsigned(v, "admin id"))
                        .transpose()?,
                    value: int(5)?,
                })
            })
            .collect()
    }
}
