//! The statements of the log, written once for both back ends: MySQL and SQLite agree on
//! every statement here (`?` placeholders, no upserts), so one generic implementation serves both.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Transaction, Type,
};

use super::hash::{GENESIS_HASH, chain_digest};
use super::keyring::{Keyring, insert_key, key_error};
use super::seal::{DataKey, payload_aad, seal_payload};
use crate::store::{StoreError, StoreOptions, StoredEvent};

/// How many events one read of the log returns at most.
pub const MAX_READ_BATCH: u32 = 10_000;
/// Ranges of the log `verify_log` reads at once.
const VERIFY_READ_AHEAD: usize = 3;
/// Rows a SQLite connection's thread may read ahead of the task taking them.
const SQLITE_ROW_BUFFER: usize = 1024;
/// Rows per multi-row insert (10 parameters each: well under every back end's parameter limit).
const INSERT_CHUNK: usize = 200;
/// Keys per idempotency or index statement.
const IDEMPOTENCY_CHUNK: usize = 300;

const EVENT_COLUMNS: &str = "position, stream_type, stream_id, sequence, event_type, \
     event_version, payload, metadata, recorded_at, hash";

/// The sequencer row: what the next append hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencerState {
    pub next_position: u64,
    pub next_message_id: u64,
    pub next_conversation_id: u64,
}

/// The first link of a stream's hash chain that does not hold. A gap in the global positions
/// (events deleted from a stream's end) names no stream: sequence 0, empty stream fields, and the
/// first missing position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainBreak {
    pub stream_type: String,
    pub stream_id: String,
    pub sequence: u64,
    pub position: u64,
    pub reason: String,
}

/// What a walk over the whole log found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainReport {
    /// Events checked before the walk ended (all of them when every chain holds).
    pub checked: u64,
    /// The first broken link, if any.
    pub broken: Option<ChainBreak>,
}

impl ChainBreak {
    /// Positions `first..=last` missing from the log; what stream they belonged to went with them.
    fn gap(first: u64, last: u64, why: &str) -> Self {
        ChainBreak {
            stream_type: String::new(),
            stream_id: String::new(),
            sequence: 0,
            position: first,
            reason: format!("positions {first} to {last} are missing: {why}"),
        }
    }
}

/// A walk of the log in position order: each stream's newest link, and the first gap in positions.
/// It reads each row's fields where they lie and keeps each stream's head as 64 hex digits under
/// one key: a walk over millions of events allocates only for a stream it has not seen.
#[derive(Default)]
struct ChainWalk {
    /// Each stream's last sequence and hash, by "stream type" `\n` "stream id".
    heads: HashMap<String, (u64, [u8; 64])>,
    position: u64,
    checked: u64,
    first_gap: Option<ChainBreak>,
    /// The key of the row being checked, reused from row to row.
    key: String,
}

impl ChainWalk {
    /// Checks the next rows (of [`EVENT_COLUMNS`]); the first broken link of a stream, if any.
    fn check<R: Row>(&mut self, rows: &[R]) -> Result<Option<ChainBreak>, StoreError>
    where
        i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
        for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
        usize: ColumnIndex<R>,
    {
        for row in rows {
            let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
            let text = |i: usize| row.try_get::<&str, _>(i).map_err(StoreError::from_sqlx);
            let position = from_db(int(0)?, "position")?;
            let (stream_type, stream_id) = (text(1)?, text(2)?);
            let sequence = from_db(int(3)?, "sequence")?;
            self.checked += 1;
            if position != self.position + 1 && self.first_gap.is_none() {
                self.first_gap = Some(ChainBreak::gap(
                    self.position + 1,
                    position.saturating_sub(1),
                    "events were deleted",
                ));
            }
            self.position = position;
            self.key.clear();
            self.key.push_str(stream_type);
            self.key.push('\n');
            self.key.push_str(stream_id);
            let (previous_sequence, previous_hash) = match self.heads.get(self.key.as_str()) {
                Some(head) => *head,
                None => {
                    let mut genesis = [0u8; 64];
                    genesis.copy_from_slice(GENESIS_HASH.as_bytes());
                    (0, genesis)
                }
            };
            let reason = if sequence != previous_sequence + 1 {
                Some(format!(
                    "sequence {sequence} follows {previous_sequence}: an event is missing or out \
                     of place"
                ))
            } else {
                let digest = chain_digest(
                    &previous_hash,
                    stream_type,
                    stream_id,
                    sequence,
                    text(4)?,
                    text(5)?,
                    int(8)?,
                    text(6)?,
                    text(7)?,
                );
                if digest[..] != *text(9)?.as_bytes() {
                    Some("hash does not match the event's contents and its predecessor".to_string())
                } else {
                    match self.heads.get_mut(self.key.as_str()) {
                        Some(head) => *head = (sequence, digest),
                        None => {
                            self.heads.insert(self.key.clone(), (sequence, digest));
                        }
                    }
                    None
                }
            };
            if let Some(reason) = reason {
                return Ok(Some(ChainBreak {
                    stream_type: stream_type.to_string(),
                    stream_id: stream_id.to_string(),
                    sequence,
                    position,
                    reason,
                }));
            }
        }
        Ok(None)
    }

    /// The report once the log is read: a gap, or newest events missing below the head.
    fn finish(mut self, head: u64) -> ChainReport {
        if self.first_gap.is_none() && self.position < head {
            self.first_gap = Some(ChainBreak::gap(
                self.position + 1,
                head,
                "the newest events were deleted",
            ));
        }
        ChainReport {
            checked: self.checked,
            broken: self.first_gap,
        }
    }
}

/// The store on one back end.
pub struct SqlStore<DB: Database> {
    pool: Pool<DB>,
    /// SQLite has one writer at a time and its busy handler sleeps with back-off, so a writer
    /// that keeps losing waits long. Writers of this process queue here instead, first come
    /// first served. None on MySQL, whose row lock queues fairly.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// The data keys that seal and open the text people typed.
    keyring: Arc<Keyring>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
            write_gate: self.write_gate.clone(),
            keyring: self.keyring.clone(),
        }
    }
}

impl<DB: Database> SqlStore<DB> {
    pub fn pool(&self) -> &Pool<DB> {
        &self.pool
    }

    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Waits for this process's turn to write (SQLite only); hold the guard until commit.
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }

    /// Opens a transaction that is going to write. SQLite's default transaction reads from a
    /// snapshot and, if another process (a second node, `chatd replay`) committed since, fails at
    /// its first write without waiting (SQLITE_BUSY_SNAPSHOT); `begin immediate` takes the write
    /// lock first, waiting up to the busy timeout like any other writer.
    pub async fn begin_write(&self) -> Result<Transaction<'static, DB>, sqlx::Error> {
        if DB::NAME == "SQLite" {
            self.pool.begin_with("begin immediate").await
        } else {
            self.pool.begin().await
        }
    }
}

impl SqlStore<sqlx::MySql> {
    pub(in crate::store) async fn connect_mysql(
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let connect = MySqlConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?;
        // One direct connection first: a pool that cannot connect says only that it timed out,
        // hiding "connection refused" or "access denied".
        let probe = <sqlx::MySqlConnection as sqlx::Connection>::connect_with(&connect)
            .await
            .map_err(StoreError::from_sqlx)?;
        let _ = sqlx::Connection::close(probe).await;
        let pool = MySqlPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Read committed: a transaction that waited for the sequencer lock reads what
                    // was committed before it got the lock, not an older snapshot.
                    conn.execute("set session transaction isolation level read committed")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(connect)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(SqlStore {
            pool,
            write_gate: None,
            keyring: Arc::new(Keyring::new(
                options.master_key.clone(),
                options.previous_master_key.clone(),
            )),
        })
    }

    pub(in crate::store) async fn migrate(
        &self,
    ) -> Result<Vec<String>, sqlx::migrate::MigrateError> {
        let migrator = sqlx::migrate!("./migrations/mysql");
        let before = applied_versions(&self.pool).await;
        migrator.run(&self.pool).await?;
        Ok(newly_applied(&migrator, &before))
    }
}

/// The migrations recorded as applied (none before the first run made the table).
async fn applied_versions<DB>(pool: &sqlx::Pool<DB>) -> std::collections::HashSet<i64>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    sqlx::query("select version from _sqlx_migrations where success = 1")
        .fetch_all(pool)
        .await
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row.try_get::<i64, _>(0).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `0013 message files` for each migration applied now.
fn newly_applied(
    migrator: &sqlx::migrate::Migrator,
    before: &std::collections::HashSet<i64>,
) -> Vec<String> {
    migrator
        .iter()
        .filter(|migration| !before.contains(&migration.version))
        .map(|migration| format!("{:04} {}", migration.version, migration.description))
        .collect()
}

impl SqlStore<sqlx::Sqlite> {
    pub(in crate::store) async fn connect_sqlite(
        options: &StoreOptions,
    ) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(&options.url)
            .map_err(|e| StoreError::Invalid(format!("database URL: {e}")))?;
        let path = connect.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Invalid(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let connect = connect
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Full: an acknowledged append survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(
                options
                    .acquire_timeout
                    .max(std::time::Duration::from_secs(5)),
            )
            .foreign_keys(true)
            // The connection's thread hands rows over in this many at a time; sqlx's default (50)
            // wakes the reading task every few rows, which dominated reads of the whole log.
            .row_buffer_size(SQLITE_ROW_BUFFER);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(SqlStore {
            pool,
            write_gate: Some(Arc::new(tokio::sync::Mutex::new(()))),
            keyring: Arc::new(Keyring::new(
                options.master_key.clone(),
                options.previous_master_key.clone(),
            )),
        })
    }

    pub(in crate::store) async fn migrate(
        &self,
    ) -> Result<Vec<String>, sqlx::migrate::MigrateError> {
        let migrator = sqlx::migrate!("./migrations/sqlite");
        let before = applied_versions(&self.pool).await;
        migrator.run(&self.pool).await?;
        Ok(newly_applied(&migrator, &before))
    }
}

fn to_db(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{value} is out of range")))
}

fn from_db(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Invalid(format!("negative {what}: {value}")))
}

/// An append transaction: holds the sequencer lock from `begin` to `commit`.
pub struct AppendTxn<DB: Database> {
    tx: Transaction<'static, DB>,
    _write_turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    pub state: SequencerState,
    keyring: Arc<Keyring>,
    /// Data keys made in this transaction: known to the keyring only once it commits.
    new_keys: HashMap<u64, Arc<DataKey>>,
    /// Conversations whose data key this transaction destroys: forgotten once it commits.
    destroyed_keys: Vec<u64>,
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
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    pub async fn head_position(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("select next_position from event_sequencer where id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        let next: i64 = row.try_get(0).map_err(StoreError::from_sqlx)?;
        Ok(from_db(next, "position")?.saturating_sub(1))
    }

    pub async fn read_from(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "select {EVENT_COLUMNS} from events where position > ? order by position limit ?"
        );
        let rows = sqlx::query(&sql)
            .bind(to_db(position)?)
            .bind(i64::from(limit.clamp(1, MAX_READ_BATCH)))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        self.opened(
            rows.iter()
                .map(Self::event_from_row)
                .collect::<Result<_, _>>()?,
        )
        .await
    }

    /// `events` as read from the log, with their sealed fields opened.
    async fn opened(&self, mut events: Vec<StoredEvent>) -> Result<Vec<StoredEvent>, StoreError> {
        if !self.keyring.open_cached(&mut events)? {
            let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
            self.keyring.open::<DB>(&mut conn, &mut events).await?;
        }
        Ok(events)
    }

    /// The events at positions after `after` up to `up_to`, in position order.
    /// The rows of the events at positions `after + 1..=up_to`, as read ([`EVENT_COLUMNS`]).
    async fn read_range_rows(&self, after: u64, up_to: u64) -> Result<Vec<DB::Row>, StoreError> {
        let sql = format!(
            "select {EVENT_COLUMNS} from events where position > ? and position <= ? \
             order by position"
        );
        sqlx::query(&sql)
            .bind(to_db(after)?)
            .bind(to_db(up_to)?)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)
    }

    pub async fn read_stream(
        &self,
        stream_type: &str,
        stream_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
        Self::read_stream_on(
            &self.keyring,
            &mut conn,
            stream_type,
            stream_id,
            after_sequence,
        )
        .await
    }

    /// Up to `limit` events of one stream after `sequence`, in sequence order (the audit's pages).
    pub async fn read_stream_page(
        &self,
        stream_type: &str,
        stream_id: &str,
        after_sequence: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "select {EVENT_COLUMNS} from events \
             where stream_type = ? and stream_id = ? and sequence > ? order by sequence limit ?"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_type.to_string())
            .bind(stream_id.to_string())
            .bind(to_db(after_sequence)?)
            .bind(i64::from(limit.clamp(1, MAX_READ_BATCH)))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        self.opened(
            rows.iter()
                .map(Self::event_from_row)
                .collect::<Result<_, _>>()?,
        )
        .await
    }

    async fn read_stream_on(
        keyring: &Keyring,
        conn: &mut DB::Connection,
        stream_type: &str,
        stream_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let sql = format!(
            "select {EVENT_COLUMNS} from events \
             where stream_type = ? and stream_id = ? and sequence > ? order by sequence"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_type.to_string())
            .bind(stream_id.to_string())
            .bind(to_db(after_sequence)?)
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        let mut events = rows
            .iter()
            .map(Self::event_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if !keyring.open_cached(&mut events)? {
            keyring.open::<DB>(conn, &mut events).await?;
        }
        Ok(events)
    }

    /// Walks the whole log in position order and checks every stream's chain: sequences
    /// contiguous from 1, and each hash equal to the one recomputed from its predecessor.
    pub async fn verify_chains(&self) -> Result<Option<ChainBreak>, StoreError>
    where
        for<'r> &'r str: Decode<'r, DB> + Type<DB>,
    {
        Ok(self.verify_log(|_, _| {}).await?.broken)
    }

    /// As [`Self::verify_chains`], counting the events checked and reporting progress
    /// (events checked, head position) after each batch. Positions are handed out without gaps
    /// by the sequencer, so a gap in them (or a head beyond the last event) means an event was
    /// deleted: that catches the removal of a stream's last event, which its own chain cannot
    /// show. A stream's own broken link is reported first; a gap only when every chain holds.
    pub async fn verify_log(
        &self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<ChainReport, StoreError>
    where
        for<'r> &'r str: Decode<'r, DB> + Type<DB>,
    {
        use futures::StreamExt;

        let head = self.head_position().await?;
        let mut walk = ChainWalk::default();
        // Positions up to the head, in ranges read a few at a time on their own connections
        // (decoding rows is most of a walk's cost); each is hashed on a blocking thread, in
        // order, while the next ones are read.
        let batch = u64::from(MAX_READ_BATCH);
        let mut batches = futures::stream::iter((0..head).step_by(batch as usize))
            .map(|after| self.read_range_rows(after, (after + batch).min(head)))
            .buffered(VERIFY_READ_AHEAD);
        while let Some(rows) = batches.next().await {
            let rows = rows?;
            let checking = tokio::task::spawn_blocking(move || {
                let broken = walk.check(&rows);
                (walk, broken)
            });
            let (checked_walk, broken) = checking
                .await
                .map_err(|e| StoreError::Invalid(format!("the chain check stopped: {e}")))?;
            walk = checked_walk;
            let broken = broken?;
            if broken.is_some() {
                return Ok(ChainReport {
                    checked: walk.checked,
                    broken,
                });
            }
            progress(walk.checked, head);
        }
        Ok(walk.finish(head))
    }

    /// Opens an append transaction and takes the sequencer lock. Every writer does this first, so
    /// appends are serialised system-wide and positions are handed out in commit order.
    pub async fn begin_append(&self) -> Result<AppendTxn<DB>, StoreError> {
        let write_turn = self.write_turn().await;
        let mut tx = self.begin_write().await.map_err(StoreError::from_sqlx)?;
        // The sequencer lock: on MySQL the row's, read in the same round trip; on SQLite the
        // database write lock, already taken by `begin immediate`.
        let read = "select next_position, next_message_id, next_conversation_id from event_sequencer where id = 1";
        let row = if DB::NAME == "SQLite" {
            sqlx::query(read).fetch_one(&mut *tx).await
        } else {
            sqlx::query(&format!("{read} for update"))
                .fetch_one(&mut *tx)
                .await
        }
        .map_err(StoreError::from_sqlx)?;
        let get = |i: usize, what: &str| -> Result<u64, StoreError> {
            from_db(
                row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx)?,
                what,
            )
        };
        let state = SequencerState {
            next_position: get(0, "position")?,
            next_message_id: get(1, "message id")?,
            next_conversation_id: get(2, "conversation id")?,
        };
        Ok(AppendTxn {
            tx,
            _write_turn: write_turn,
            state,
            keyring: self.keyring.clone(),
            new_keys: HashMap::new(),
            destroyed_keys: Vec::new(),
        })
    }

    fn event_from_row(row: &DB::Row) -> Result<StoredEvent, StoreError> {
        let text = |i: usize| row.try_get::<String, _>(i).map_err(StoreError::from_sqlx);
        let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
        Ok(StoredEvent {
            position: from_db(int(0)?, "position")?,
            stream_type: text(1)?,
            stream_id: text(2)?,
            sequence: from_db(int(3)?, "sequence")?,
            event_type: text(4)?,
            event_version: text(5)?,
            payload: text(6)?,
            metadata: text(7)?,
            recorded_at_micros: int(8)?,
            hash: text(9)?,
        })
    }
}

impl<DB> AppendTxn<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// The last sequence and hash of a stream, as committed before this transaction.
    pub async fn stream_head(
        &mut self,
        stream_type: &str,
        stream_id: &str,
    ) -> Result<Option<(u64, String)>, StoreError> {
        let row = sqlx::query(
            "select sequence, hash from events where stream_type = ? and stream_id = ? \
             order by sequence desc limit 1",
        )
        .bind(stream_type.to_string())
        .bind(stream_id.to_string())
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|row| {
            let sequence: i64 = row.try_get(0).map_err(StoreError::from_sqlx)?;
            let hash: String = row.try_get(1).map_err(StoreError::from_sqlx)?;
            Ok((from_db(sequence, "sequence")?, hash))
        })
        .transpose()
    }

    pub async fn read_stream(
        &mut self,
        stream_type: &str,
        stream_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        SqlStore::<DB>::read_stream_on(
            &self.keyring,
            &mut self.tx,
            stream_type,
            stream_id,
            after_sequence,
        )
        .await
    }

    /// The snapshot of a conversation's fold, if there is one that matches the log (the event
    /// at its sequence has its hash): (sequence, hash, format, state).
    pub async fn snapshot(
        &mut self,
        conversation_id: u64,
    ) -> Result<Option<(u64, String, i64, String)>, StoreError> {
        let row = sqlx::query(
            "select s.sequence, s.hash, s.format, s.state from conversation_snapshots s \
             join events e on e.stream_type = ? and e.stream_id = ? \
             and e.sequence = s.sequence and e.hash = s.hash \
             where s.conversation_id = ?",
        )
        .bind(crate::store::CONVERSATION_STREAM.to_string())
        .bind(conversation_id.to_string())
        .bind(to_db(conversation_id)?)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|row| {
            let sequence: i64 = row.try_get(0).map_err(StoreError::from_sqlx)?;
            Ok((
                from_db(sequence, "snapshot sequence")?,
                row.try_get(1).map_err(StoreError::from_sqlx)?,
                row.try_get(2).map_err(StoreError::from_sqlx)?,
                row.try_get(3).map_err(StoreError::from_sqlx)?,
            ))
        })
        .transpose()
    }

    /// Replaces a conversation's snapshot, in this append transaction.
    pub async fn save_snapshot(
        &mut self,
        conversation_id: u64,
        sequence: u64,
        hash: &str,
        format: i64,
        state: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("delete from conversation_snapshots where conversation_id = ?")
            .bind(to_db(conversation_id)?)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        sqlx::query(
            "insert into conversation_snapshots (conversation_id, sequence, hash, format, state) \
             values (?, ?, ?, ?, ?)",
        )
        .bind(to_db(conversation_id)?)
        .bind(to_db(sequence)?)
        .bind(hash.to_string())
        .bind(format)
        .bind(state.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    pub async fn event_at(&mut self, position: u64) -> Result<Option<StoredEvent>, StoreError> {
        let sql = format!("select {EVENT_COLUMNS} from events where position = ?");
        let row = sqlx::query(&sql)
            .bind(to_db(position)?)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        let mut events = row
            .as_ref()
            .map(SqlStore::<DB>::event_from_row)
            .transpose()?
            .into_iter()
            .collect::<Vec<_>>();
        if !self.keyring.open_cached(&mut events)? {
            self.keyring.open::<DB>(&mut self.tx, &mut events).await?;
        }
        Ok(events.pop())
    }

    /// The data key of a conversation: found, or made and stored in this transaction.
    async fn data_key(&mut self, conversation_id: u64) -> Result<Arc<DataKey>, StoreError> {
        if let Some(key) = self
            .new_keys
            .get(&conversation_id)
            .cloned()
            .or_else(|| self.keyring.cached(conversation_id))
        {
            return Ok(key);
        }
        if let Some(key) = self
            .keyring
            .keys_of::<DB>(&mut self.tx, &[conversation_id])
            .await?
            .remove(&conversation_id)
        {
            return Ok(key);
        }
        let key = Arc::new(DataKey::generate().map_err(key_error)?);
        let stored = key
            .to_stored(conversation_id, self.keyring.master())
            .map_err(key_error)?;
        insert_key::<DB>(&mut self.tx, &stored, crate::clock::now_micros()).await?;
        self.new_keys.insert(conversation_id, key.clone());
        Ok(key)
    }

    /// Destroys the data key of a conversation (its erasure), and its snapshot, whose fold may
    /// hold names its person typed. Every event sealed under the key then reads erased.
    pub async fn destroy_data_key(&mut self, conversation_id: u64) -> Result<(), StoreError> {
        for table in ["data_keys", "conversation_snapshots"] {
            sqlx::query(&format!("delete from {table} where conversation_id = ?"))
                .bind(to_db(conversation_id)?)
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        self.new_keys.remove(&conversation_id);
        self.destroyed_keys.push(conversation_id);
        Ok(())
    }

    /// `payload` (an event's fields, in the clear) as the log stores it: the text people typed
    /// sealed under the data key of its conversation, bound to the event's place in the log.
    pub async fn seal(
        &mut self,
        conversation_id: u64,
        event: &StoredEvent,
        payload: &mut serde_json::Value,
    ) -> Result<(), StoreError> {
        if events::personal_fields(&event.event_type).is_empty() {
            return Ok(());
        }
        let key = self.data_key(conversation_id).await?;
        let aad = payload_aad(
            &event.stream_type,
            &event.stream_id,
            event.sequence,
            &event.event_type,
        );
        seal_payload(payload, &event.event_type, &aad, &key).map_err(key_error)?;
        Ok(())
    }

    /// The next event of a conversation's stream, after the event with `previous_sequence` and
    /// `previous_hash`: its row in the clear (as readers see it) and as stored (the typed text
    /// sealed), both with the next position, the sequence and the chain's hash. Moves the
    /// position on.
    pub async fn next_event(
        &mut self,
        conversation_id: u64,
        previous_sequence: u64,
        previous_hash: &str,
        event: &events::ConversationEvent,
        metadata: &str,
        recorded_at_micros: i64,
    ) -> Result<(StoredEvent, StoredEvent), StoreError> {
        let mut payload = event.payload_json();
        let mut row = StoredEvent {
            position: self.state.next_position,
            stream_type: crate::store::CONVERSATION_STREAM.to_string(),
            stream_id: conversation_id.to_string(),
            sequence: previous_sequence + 1,
            event_type: event.type_name().to_string(),
            event_version: cqrs_es::DomainEvent::event_version(event),
            payload: json_text(&payload)?,
            metadata: metadata.to_string(),
            recorded_at_micros,
            hash: String::new(),
        };
        self.seal(conversation_id, &row, &mut payload).await?;
        let sealed = StoredEvent {
            payload: json_text(&payload)?,
            ..row.clone()
        };
        row.hash = sealed.expected_hash(previous_hash);
        self.state.next_position += 1;
        let sealed = StoredEvent {
            hash: row.hash.clone(),
            ..sealed
        };
        Ok((row, sealed))
    }

    /// The metadata of the first event of each of these conversations that has one.
    pub async fn openings(
        &mut self,
        conversation_ids: &[u64],
    ) -> Result<HashMap<u64, String>, StoreError> {
        let mut found = HashMap::new();
        for chunk in conversation_ids.chunks(IDEMPOTENCY_CHUNK) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "select stream_id, metadata from events where stream_type = ? and sequence = 1 \
                 and stream_id in ({placeholders})"
            );
            let mut query = sqlx::query(&sql).bind(crate::store::CONVERSATION_STREAM.to_string());
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query
                .fetch_all(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?
            {
                let stream_id: String = row.try_get(0).map_err(StoreError::from_sqlx)?;
                let metadata: String = row.try_get(1).map_err(StoreError::from_sqlx)?;
                if let Ok(id) = stream_id.parse() {
                    found.insert(id, metadata);
                }
            }
        }
        Ok(found)
    }

    /// The highest legacy conversation and message ids `chatd import` has reserved, if any.
    pub async fn legacy_reservation(&mut self) -> Result<Option<(u64, u64)>, StoreError> {
        let row = sqlx::query(
            "select conversation_id_high, message_id_high from legacy_import where id = 1",
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|row| {
            let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
            Ok((
                from_db(int(0)?, "conversation id")?,
                from_db(int(1)?, "message id")?,
            ))
        })
        .transpose()
    }

    /// Reserves the ids up to these for the legacy system's rows: the sequencer hands out only
    /// ids above them from this commit on.
    pub async fn reserve_legacy_ids(
        &mut self,
        conversation_id_high: u64,
        message_id_high: u64,
    ) -> Result<(), StoreError> {
        sqlx::query("delete from legacy_import where id = 1")
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        sqlx::query(
            "insert into legacy_import (id, conversation_id_high, message_id_high) values (1, ?, ?)",
        )
        .bind(to_db(conversation_id_high)?)
        .bind(to_db(message_id_high)?)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        self.state.next_conversation_id = self
            .state
            .next_conversation_id
            .max(conversation_id_high + 1);
        self.state.next_message_id = self.state.next_message_id.max(message_id_high + 1);
        Ok(())
    }

    /// Every message each sender already sent under these client_msg_ids, in one query:
    /// (sender_role, sender_id, client_msg_id, conversation_id, position).
    pub async fn find_idempotent_many(
        &mut self,
        keys: &[(String, u64, String)],
    ) -> Result<Vec<(String, u64, String, u64, u64)>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(IDEMPOTENCY_CHUNK) {
            let tuples = vec!["(?, ?, ?)"; chunk.len()].join(", ");
            // The key column has a binary collation (ids are case-sensitive); the cast lets it
            // decode as text.
            let sql = format!(
                "select sender_role, sender_id, cast(client_msg_id as char), conversation_id, position \
                 from message_idempotency where (sender_role, sender_id, client_msg_id) in ({tuples})"
            );
            let mut query = sqlx::query(&sql);
            for (role, sender, client_msg_id) in chunk {
                query = query
                    .bind(role.clone())
                    .bind(to_db(*sender)?)
                    .bind(client_msg_id.clone());
            }
            let rows = query
                .fetch_all(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?;
            for row in rows {
                let get_int = |i: usize, what: &str| -> Result<u64, StoreError> {
                    from_db(
                        row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx)?,
                        what,
                    )
                };
                found.push((
                    row.try_get::<String, _>(0).map_err(StoreError::from_sqlx)?,
                    get_int(1, "sender id")?,
                    row.try_get::<String, _>(2).map_err(StoreError::from_sqlx)?,
                    get_int(3, "conversation id")?,
                    get_int(4, "position")?,
                ));
            }
        }
        Ok(found)
    }

    /// Records many idempotency keys: (conversation_id, sender_role, sender_id, client_msg_id, position).
    /// `false` when one of them is already recorded for its conversation: the statement wrote
    /// nothing, and the caller rolls back (a sender's retry that was not looked up first).
    pub async fn insert_idempotency_many(
        &mut self,
        keys: &[(u64, String, u64, String, u64)],
    ) -> Result<bool, StoreError> {
        for chunk in keys.chunks(IDEMPOTENCY_CHUNK) {
            let values = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "insert into message_idempotency \
                 (conversation_id, sender_role, sender_id, client_msg_id, position) values {values}"
            );
            let mut query = sqlx::query(&sql);
            for (conversation_id, role, sender, client_msg_id, position) in chunk {
                query = query
                    .bind(to_db(*conversation_id)?)
                    .bind(role.clone())
                    .bind(to_db(*sender)?)
                    .bind(client_msg_id.clone())
                    .bind(to_db(*position)?);
            }
            match query.execute(&mut *self.tx).await {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => return Ok(false),
                Err(error) => return Err(StoreError::from_sqlx(error)),
            }
        }
        Ok(true)
    }

    /// The active conversations of many users, in one query.
    pub async fn active_conversations_of(
        &mut self,
        user_ids: &[u64],
    ) -> Result<HashMap<u64, u64>, StoreError> {
        let mut found = HashMap::new();
        for chunk in user_ids.chunks(IDEMPOTENCY_CHUNK) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "select user_id, conversation_id from active_conversations where user_id in ({placeholders})"
            );
            let mut query = sqlx::query(&sql);
            for user_id in chunk {
                query = query.bind(to_db(*user_id)?);
            }
            for row in query
                .fetch_all(&mut *self.tx)
                .await
                .map_err(StoreError::from_sqlx)?
            {
                let user: i64 = row.try_get(0).map_err(StoreError::from_sqlx)?;
                let conversation: i64 = row.try_get(1).map_err(StoreError::from_sqlx)?;
                found.insert(
                    from_db(user, "user id")?,
                    from_db(conversation, "conversation id")?,
                );
            }
        }
        Ok(found)
    }

    pub async fn active_conversation(&mut self, user_id: u64) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("select conversation_id from active_conversations where user_id = ?")
            .bind(to_db(user_id)?)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        row.map(|row| {
            from_db(
                row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?,
                "conversation id",
            )
        })
        .transpose()
    }

    /// Records (Some) or clears (None) the user's active conversation.
    pub async fn set_active_conversation(
        &mut self,
        user_id: u64,
        conversation_id: Option<u64>,
    ) -> Result<(), StoreError> {
        sqlx::query("delete from active_conversations where user_id = ?")
            .bind(to_db(user_id)?)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        if let Some(conversation_id) = conversation_id {
            sqlx::query(
                "insert into active_conversations (user_id, conversation_id) values (?, ?)",
            )
            .bind(to_db(user_id)?)
            .bind(to_db(conversation_id)?)
            .execute(&mut *self.tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }

    /// Inserts events whose positions, sequences and hashes the caller has set. A duplicate
    /// (stream, sequence) is a conflict: another writer got there first.
    pub async fn insert_events(&mut self, events: &[StoredEvent]) -> Result<(), StoreError> {
        for chunk in events.chunks(INSERT_CHUNK) {
            let placeholders = vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!("insert into events ({EVENT_COLUMNS}) values {placeholders}");
            let mut query = sqlx::query(&sql);
            for event in chunk {
                query = query
                    .bind(to_db(event.position)?)
                    .bind(event.stream_type.clone())
                    .bind(event.stream_id.clone())
                    .bind(to_db(event.sequence)?)
                    .bind(event.event_type.clone())
                    .bind(event.event_version.clone())
                    .bind(event.payload.clone())
                    .bind(event.metadata.clone())
                    .bind(event.recorded_at_micros)
                    .bind(event.hash.clone());
            }
            query.execute(&mut *self.tx).await.map_err(|error| {
                let duplicate =
                    matches!(&error, sqlx::Error::Database(db) if db.is_unique_violation());
                match (duplicate, chunk.first()) {
                    (true, Some(first)) => StoreError::Conflict {
                        stream_id: first.stream_id.clone(),
                        sequence: first.sequence,
                    },
                    _ => StoreError::from_sqlx(error),
                }
            })?;
        }
        Ok(())
    }

    /// Writes the sequencer state and commits, releasing the lock.
    pub async fn commit(mut self) -> Result<(), StoreError> {
        sqlx::query(
            "update event_sequencer set next_position = ?, next_message_id = ?, \
             next_conversation_id = ? where id = 1",
        )
        .bind(to_db(self.state.next_position)?)
        .bind(to_db(self.state.next_message_id)?)
        .bind(to_db(self.state.next_conversation_id)?)
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        self.tx.commit().await.map_err(StoreError::from_sqlx)?;
        for (conversation_id, key) in self.new_keys {
            self.keyring.remember(conversation_id, key);
        }
        for conversation_id in self.destroyed_keys {
            self.keyring.forget(conversation_id);
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), StoreError> {
        self.tx.rollback().await.map_err(StoreError::from_sqlx)
    }
}

/// A JSON value as text (serializing a `Value` cannot fail; the error is kept for the caller).
fn json_text(value: &serde_json::Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("payload: {e}")))
}
