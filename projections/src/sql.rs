//! The small database interface projectors need, implemented by the service's store: run a
//! statement with parameters inside a transaction, read a row back, and manage rebuild tables.

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> Self {
        SqlValue::Int(v)
    }
}

impl From<u64> for SqlValue {
    /// Ids and positions stay below 2^53, far inside i64.
    fn from(v: u64) -> Self {
        SqlValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<u8> for SqlValue {
    fn from(v: u8) -> Self {
        SqlValue::Int(i64::from(v))
    }
}

impl From<bool> for SqlValue {
    fn from(v: bool) -> Self {
        SqlValue::Int(i64::from(v))
    }
}

impl From<&str> for SqlValue {
    fn from(v: &str) -> Self {
        SqlValue::Text(v.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(v: String) -> Self {
        SqlValue::Text(v)
    }
}

/// A borrowed value (a field of a decoded event shared by several projectors) is copied.
impl<T: Clone + Into<SqlValue>> From<&T> for SqlValue {
    fn from(v: &T) -> Self {
        v.clone().into()
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

impl SqlValue {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&str> {
        match self {
            SqlValue::Text(v) => Some(v),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProjectionError {
    /// An event this projector cannot apply; the projector stops and its checkpoint stays.
    #[error("cannot apply the event at position {position}: {reason}")]
    Apply { position: u64, reason: String },
    /// The database could not be reached; the runtime retries.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("unique key violated: {0}")]
    Duplicate(String),
    #[error("database error: {0}")]
    Database(String),
    /// This node no longer holds the projector's lease.
    #[error("lease lost")]
    LeaseLost,
}

/// A transaction on the read-side database.
#[async_trait]
pub trait SqlTxn: Send {
    /// Runs one statement; the number of rows it changed.
    async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, ProjectionError>;
    /// The first row of a query (integers and text only), or None.
    async fn fetch_row(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Option<Vec<SqlValue>>, ProjectionError>;
    /// Every row of a query (integers and text only).
    async fn fetch_all(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<Vec<SqlValue>>, ProjectionError>;
    /// Creates `to` with the columns of `from`, its primary key and no rows, dropping any old
    /// `to`; other indexes may be left for `index_copy` or the swap.
    async fn create_empty_copy(&mut self, from: &str, to: &str) -> Result<(), ProjectionError>;
    /// Gives a rebuilt copy the indexes of the live table that its creation left out, where the
    /// back end allows both tables' indexes at once (else the swap builds them).
    async fn index_copy(&mut self, _live: &str, _rebuilt: &str) -> Result<(), ProjectionError> {
        Ok(())
    }
    /// Replaces the live table with the rebuilt one, atomically with this transaction's commit
    /// on back ends that support it.
    async fn replace_table(&mut self, live: &str, rebuilt: &str) -> Result<(), ProjectionError>;
    async fn commit(self: Box<Self>) -> Result<(), ProjectionError>;
    async fn rollback(self: Box<Self>) -> Result<(), ProjectionError>;
}

/// Where the log and the read tables live.
#[async_trait]
pub trait ProjectionStore: Send + Sync {
    /// Up to `limit` events after `position`, in position order.
    async fn read_from(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<Vec<crate::LoggedEvent>, ProjectionError>;
    /// The newest committed position.
    async fn head(&self) -> Result<u64, ProjectionError>;
    async fn begin(&self) -> Result<Box<dyn SqlTxn>, ProjectionError>;
}

/// The names a projector writes to: the live tables, or the rebuild copies during a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    suffix: &'static str,
}

impl Tables {
    pub const LIVE: Tables = Tables { suffix: "" };
    pub const REBUILD: Tables = Tables {
        suffix: "__rebuild",
    };

    pub fn name(&self, table: &str) -> String {
        format!("{table}{}", self.suffix)
    }
}
