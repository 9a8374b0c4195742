//! Multi-row inserts built up one row at a time, for the projectors that write a row per message
//! (or per term of a message): a run of rows goes out as a few statements instead of one each.
//! It never holds rows past the batch being applied: `apply` flushes before it returns.

use crate::{ProjectionError, SqlTxn, SqlValue};

/// Rows waiting to be inserted into one table, with the positions they came from (for error
/// messages).
pub(crate) struct BatchInsert {
    table: String,
    columns: &'static str,
    /// One row's placeholders, e.g. `(?, ?, ?)`.
    row: &'static str,
    /// Rows per statement: the back ends limit the parameters of one statement.
    chunk: usize,
    params: Vec<SqlValue>,
    rows: usize,
    first_position: u64,
    last_position: u64,
}

impl BatchInsert {
    pub(crate) fn new(
        table: String,
        columns: &'static str,
        row: &'static str,
        chunk: usize,
    ) -> Self {
        BatchInsert {
            table,
            columns,
            row,
            chunk,
            params: Vec::new(),
            rows: 0,
            first_position: 0,
            last_position: 0,
        }
    }

    /// Queues one row of the event at `position`; sends the statement once it holds `chunk` rows.
    pub(crate) async fn push(
        &mut self,
        txn: &mut dyn SqlTxn,
        position: u64,
        values: impl IntoIterator<Item = SqlValue> + Send,
    ) -> Result<(), ProjectionError> {
        if self.rows == 0 {
            self.first_position = position;
        }
        self.last_position = position;
        self.rows += 1;
        self.params.extend(values);
        if self.rows == self.chunk {
            self.flush(txn).await?;
        }
        Ok(())
    }

    /// Sends the rows queued so far (none: no statement). A row already in the table names the
    /// positions of the rows sent.
    pub(crate) async fn flush(&mut self, txn: &mut dyn SqlTxn) -> Result<(), ProjectionError> {
        if self.rows == 0 {
            return Ok(());
        }
        let table = &self.table;
        let values = vec![self.row; self.rows].join(", ");
        let sql = format!("insert into {table} ({}) values {values}", self.columns);
        let result = txn.execute(&sql, &self.params).await;
        let (first, last) = (self.first_position, self.last_position);
        self.params.clear();
        self.rows = 0;
        match result {
            Ok(_) => Ok(()),
            Err(ProjectionError::Duplicate(reason)) => Err(ProjectionError::Apply {
                position: first,
                reason: format!(
                    "a message of positions {first}..={last} is already in {table}: {reason}"
                ),
            }),
            Err(error) => Err(error),
        }
    }
}
