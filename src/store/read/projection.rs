//! The read side's view of the store: the log as `LoggedEvent`s and transactions for projectors
//! (`projections::ProjectionStore` and `SqlTxn`), on both back ends.

use async_trait::async_trait;
use projections::{LoggedEvent, ProjectionError, ProjectionStore, SqlTxn, SqlValue};
use sqlx::{Database, Row, Transaction};

use crate::store::{EventStore, StoreError, StoredEvent, on_backend};

impl From<StoreError> for ProjectionError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(e) => ProjectionError::Unavailable(e.to_string()),
            StoreError::Corrupt { position, reason } => ProjectionError::Apply { position, reason },
            other => ProjectionError::Database(other.to_string()),
        }
    }
}

fn sql_error(error: sqlx::Error) -> ProjectionError {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        return ProjectionError::Duplicate(db.message().to_string());
    }
    StoreError::from_sqlx(error).into()
}

impl From<StoredEvent> for LoggedEvent {
    fn from(event: StoredEvent) -> Self {
        LoggedEvent {
            position: event.position,
            stream_type: event.stream_type,
            stream_id: event.stream_id,
            sequence: event.sequence,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            recorded_at_micros: event.recorded_at_micros,
            decoded: Default::default(),
        }
    }
}

#[async_trait]
impl ProjectionStore for EventStore {
    async fn read_from(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>, ProjectionError> {
        Ok(EventStore::read_from(self, position, limit)
            .await?
            .into_iter()
            .map(LoggedEvent::from)
            .collect())
    }

    async fn head(&self) -> Result<u64, ProjectionError> {
        Ok(self.head_position().await?)
    }

    async fn begin(&self) -> Result<Box<dyn SqlTxn>, ProjectionError> {
        on_backend!(self, s => {
            let write_turn = s.write_turn().await;
            let tx = s.begin_write().await.map_err(sql_error)?;
            Ok(Box::new(Txn { tx: Open(Some(tx)), write_turn }) as Box<dyn SqlTxn>)
        })
    }
}

/// A transaction, holding this process's write turn where the back end needs one.
struct Txn<DB: Database> {
    tx: Open<DB>,
    write_turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// The transaction until `commit` or `rollback` takes it; both consume the `Txn`, so it is
/// always there while the `Txn` can be used.
struct Open<DB: Database>(Option<Transaction<'static, DB>>);

impl<DB: Database> Open<DB> {
    fn take(&mut self) -> Result<Transaction<'static, DB>, ProjectionError> {
        self.0
            .take()
            .ok_or_else(|| ProjectionError::Database("the transaction has ended".into()))
    }
}

impl<DB: Database> std::ops::Deref for Open<DB> {
    type Target = Transaction<'static, DB>;
    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("used after commit or rollback"))
    }
}

impl<DB: Database> std::ops::DerefMut for Open<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("used after commit or rollback"))
    }
}

impl<DB: Database> Drop for Txn<DB> {
    /// A transaction dropped unfinished (its task was cancelled) is rolled back by sqlx only
    /// once its connection is back in the pool, and until then it may hold SQLite's write lock
    /// (taken at `begin immediate`). The write turn is kept until that rollback has run, so the
    /// next writer of this process does not wait for it in SQLite's busy handler.
    fn drop(&mut self) {
        let (Some(tx), Some(turn)) = (self.tx.0.take(), self.write_turn.take()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tx.rollback().await;
                drop(turn);
            });
        }
    }
}

/// Binds projection values and reads rows back, the same way on both back ends.
macro_rules! sql_txn {
    ($db:ty) => {
        impl Txn<$db> {
            fn query<'q>(
                sql: &'q str,
                params: &'q [SqlValue],
            ) -> sqlx::query::Query<'q, $db, <$db as Database>::Arguments<'q>> {
                let mut query = sqlx::query(sql);
                for param in params {
                    query = match param {
                        SqlValue::Null => query.bind(None::<i64>),
                        SqlValue::Int(v) => query.bind(*v),
                        SqlValue::Text(v) => query.bind(v.as_str()),
                    };
                }
                query
            }
        }

        #[async_trait]
        impl SqlTxn for Txn<$db> {
            async fn execute(
                &mut self,
                sql: &str,
                params: &[SqlValue],
            ) -> Result<u64, ProjectionError> {
                let done = Self::query(sql, params)
                    .execute(&mut **self.tx)
                    .await
                    .map_err(sql_error)?;
                Ok(done.rows_affected())
            }

            async fn fetch_row(
                &mut self,
                sql: &str,
                params: &[SqlValue],
            ) -> Result<Option<Vec<SqlValue>>, ProjectionError> {
                let row = Self::query(sql, params)
                    .fetch_optional(&mut **self.tx)
                    .await
                    .map_err(sql_error)?;
                Ok(row.as_ref().map(row_values))
            }

            async fn fetch_all(
                &mut self,
                sql: &str,
                params: &[SqlValue],
            ) -> Result<Vec<Vec<SqlValue>>, ProjectionError> {
                let rows = Self::query(sql, params)
                    .fetch_all(&mut **self.tx)
                    .await
                    .map_err(sql_error)?;
                Ok(rows.iter().map(row_values).collect())
            }

            async fn create_empty_copy(
                &mut self,
                from: &str,
                to: &str,
            ) -> Result<(), ProjectionError> {
                self.copy_table(from, to).await
            }

            async fn index_copy(
                &mut self,
                live: &str,
                rebuilt: &str,
            ) -> Result<(), ProjectionError> {
                self.build_indexes(live, rebuilt).await
            }

            async fn replace_table(
                &mut self,
                live: &str,
                rebuilt: &str,
            ) -> Result<(), ProjectionError> {
                self.swap_table(live, rebuilt).await
            }

            async fn commit(mut self: Box<Self>) -> Result<(), ProjectionError> {
                self.tx.take()?.commit().await.map_err(sql_error)
            }

            async fn rollback(mut self: Box<Self>) -> Result<(), ProjectionError> {
                self.tx.take()?.rollback().await.map_err(sql_error)
            }
        }
    };
}

sql_txn!(sqlx::MySql);
sql_txn!(sqlx::Sqlite);

pub(in crate::store) fn row_values<R: Row>(row: &R) -> Vec<SqlValue>
where
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    (0..row.len())
        .map(|i| match row.try_get::<Option<i64>, _>(i) {
            Ok(Some(v)) => SqlValue::Int(v),
            Ok(None) => SqlValue::Null,
            Err(_) => match row.try_get::<Option<String>, _>(i) {
                Ok(Some(v)) => SqlValue::Text(v),
                Ok(None) => SqlValue::Null,
                // sqlx reads a MySQL text column with a binary collation (`ascii_bin`: device
                // tokens compare byte for byte) only as bytes.
                Err(_) => match row.try_get::<Option<Vec<u8>>, _>(i) {
                    Ok(Some(v)) => String::from_utf8(v).map_or(SqlValue::Null, SqlValue::Text),
                    _ => SqlValue::Null,
                },
            },
        })
        .collect()
}

impl Txn<sqlx::MySql> {
    /// The copy keeps the live table's primary and unique keys (a replayed duplicate still
    /// fails at once); its other indexes are built by [`Self::index_like`] after the bulk of
    /// the rows is in: one sorted build instead of a random insert per row into each index.
    async fn copy_table(&mut self, from: &str, to: &str) -> Result<(), ProjectionError> {
        for sql in [
            format!("drop table if exists {to}"),
            format!("create table {to} like {from}"),
        ] {
            self.run(&sql).await?;
        }
        let deferred = self.plain_indexes(to).await?;
        if !deferred.is_empty() {
            let drops: Vec<String> = deferred
                .iter()
                .map(|index| format!("drop index `{}`", index.name))
                .collect();
            self.run(&format!("alter table {to} {}", drops.join(", ")))
                .await?;
        }
        Ok(())
    }

    /// Adds to `rebuilt` the non-unique indexes of `live` that it lacks.
    async fn index_like(&mut self, live: &str, rebuilt: &str) -> Result<(), ProjectionError> {
        let present: Vec<String> = self
            .plain_indexes(rebuilt)
            .await?
            .into_iter()
            .map(|index| index.name)
            .collect();
        let additions: Vec<String> = self
            .plain_indexes(live)
            .await?
            .into_iter()
            .filter(|index| !present.contains(&index.name))
            .map(|index| index.add_clause())
            .collect();
        if additions.is_empty() {
            return Ok(());
        }
        self.run(&format!("alter table {rebuilt} {}", additions.join(", ")))
            .await
    }

    /// A table's non-unique indexes, their columns in order.
    async fn plain_indexes(&mut self, table: &str) -> Result<Vec<PlainIndex>, ProjectionError> {
        let rows: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
            "select cast(index_name as char), cast(index_type as char), \
             cast(column_name as char), cast(sub_part as signed) \
             from information_schema.statistics \
             where table_schema = database() and table_name = ? and non_unique = 1 \
             order by index_name, seq_in_index",
        )
        .bind(table)
        .fetch_all(&mut **self.tx)
        .await
        .map_err(sql_error)?;
        let mut indexes: Vec<PlainIndex> = Vec::new();
        for (name, kind, column, prefix) in rows {
            let column = match prefix {
                Some(length) => format!("`{column}`({length})"),
                None => format!("`{column}`"),
            };
            match indexes.last_mut() {
                Some(index) if index.name == name => index.columns.push(column),
                _ => indexes.push(PlainIndex {
                    name,
                    fulltext: kind.eq_ignore_ascii_case("FULLTEXT"),
                    columns: vec![column],
                }),
            }
        }
        Ok(indexes)
    }

    async fn run(&mut self, sql: &str) -> Result<(), ProjectionError> {
        sqlx::query(sql)
            .execute(&mut **self.tx)
            .await
            .map_err(sql_error)?;
        Ok(())
    }

    async fn build_indexes(&mut self, live: &str, rebuilt: &str) -> Result<(), ProjectionError> {
        self.index_like(live, rebuilt).await
    }

    async fn swap_table(&mut self, live: &str, rebuilt: &str) -> Result<(), ProjectionError> {
        self.index_like(live, rebuilt).await?;
        // One RENAME swaps both names atomically: readers see the old table or the new one.
        let retired = format!("{live}__retired");
        for sql in [
            format!("drop table if exists {retired}"),
            format!("rename table {live} to {retired}, {rebuilt} to {live}"),
            format!("drop table {retired}"),
        ] {
            sqlx::query(&sql)
                .execute(&mut **self.tx)
                .await
                .map_err(sql_error)?;
        }
        Ok(())
    }
}

/// A non-unique index of a MySQL table.
struct PlainIndex {
    name: String,
    fulltext: bool,
    columns: Vec<String>,
}

impl PlainIndex {
    fn add_clause(&self) -> String {
        let kind = if self.fulltext {
            "fulltext index"
        } else {
            "index"
        };
        format!("add {kind} `{}` ({})", self.name, self.columns.join(", "))
    }
}

impl Txn<sqlx::Sqlite> {
    /// The copy gets the live table's columns only; its indexes are created at the swap, so the
    /// rebuild inserts into a bare table.
    async fn copy_table(&mut self, from: &str, to: &str) -> Result<(), ProjectionError> {
        let ddl: Option<(String,)> =
            sqlx::query_as("select sql from sqlite_master where type = 'table' and name = ?")
                .bind(from)
                .fetch_optional(&mut **self.tx)
                .await
                .map_err(sql_error)?;
        let Some((ddl,)) = ddl else {
            return Err(ProjectionError::Database(format!("no table {from}")));
        };
        let Some(columns) = ddl.find('(') else {
            return Err(ProjectionError::Database(format!(
                "unexpected definition of {from}"
            )));
        };
        for sql in [
            format!("drop table if exists {to}"),
            format!("create table {to} {}", &ddl[columns..]),
        ] {
            sqlx::query(&sql)
                .execute(&mut **self.tx)
                .await
                .map_err(sql_error)?;
        }
        Ok(())
    }

    /// An index name is unique in the whole schema: the copy gets its indexes at the swap.
    async fn build_indexes(&mut self, _live: &str, _rebuilt: &str) -> Result<(), ProjectionError> {
        Ok(())
    }

    /// Inside this transaction: drop the live table, rename the rebuilt one, recreate the live
    /// table's indexes. Readers see the old table until the commit.
    async fn swap_table(&mut self, live: &str, rebuilt: &str) -> Result<(), ProjectionError> {
        let indexes: Vec<(String,)> = sqlx::query_as(
            "select sql from sqlite_master where type = 'index' and tbl_name = ? and sql is not null",
        )
        .bind(live)
        .fetch_all(&mut **self.tx)
        .await
        .map_err(sql_error)?;
        let mut statements = vec![
            format!("drop table {live}"),
            format!("alter table {rebuilt} rename to {live}"),
        ];
        statements.extend(indexes.into_iter().map(|(sql,)| sql));
        for sql in statements {
            sqlx::query(&sql)
                .execute(&mut **self.tx)
                .await
                .map_err(sql_error)?;
        }
        Ok(())
    }
}
