//! The database: the event log, and the queries and writes on the tables folded from it, on
//! MySQL or SQLite (chosen at start-up from the database URL).
//!
//! - [`log`](self::log): the events table with its global positions, per-stream sequences and
//!   hash chain, the sequencer row, the idempotency keys and the write-side index of active
//!   conversations. It never decides anything: the domain in `events/` does, inside the append
//!   transaction that [`crate::commands`] drives.
//! - `read`: the API's queries on the read tables, and `projections::ProjectionStore`, through
//!   which the projectors read the log and write those tables. Never writes the log.
//! - `push` and `assignment`: the typed statements on the tables the push and automatic
//!   assignment followers keep for themselves (devices, outbox, waiting queue).
//!
//! Architecture Invariant: every append transaction first locks the sequencer row and takes its
//! positions from it, so commit order equals position order on every back end.

mod assignment;
mod erasure;
pub mod legacy;
mod log;
mod push;
mod read;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use assignment::WaitingConversation;
pub use log::{
    AppendTxn, ChainBreak, ChainReport, GENESIS_HASH, KEY_FILE_VARIABLE, KeyError, Keyring,
    MAX_READ_BATCH, MasterKey, PREVIOUS_KEY_FILE_VARIABLE, SequencerState, SqlStore, chain_digest,
};
pub use push::{CheckpointMove, ClaimedPush, NewPush, PushDevice, PushSettlement};
pub use read::{
    ConversationFilter, ConversationRow, DEFAULT_SEARCH_READ_BUDGET, FileRow, MAX_PAGE_SIZE,
    MessageRow, MessageWindow, RECENT_MATCHES, SearchHit, SearchRequest, SearchResults,
    SearchScope,
};

/// The stream type of conversations (the `Conversation` aggregate's `TYPE`).
pub const CONVERSATION_STREAM: &str = "conversation";

/// Who did what, from where: recorded with every event (the audit trail).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    pub actor_id: u64,
    pub actor_role: String,
    /// The server's own id of the request (or socket) that made the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The `X-Request-Id` the client sent, when well formed: the client's word, kept apart from
    /// the server's id so it can never pass for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// Set on the events `chatd import` recorded from the legacy system: the row each stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportedRow>,
}

/// The legacy row an imported event stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedRow {
    /// The system it came from (`node`: the Node.js server of the spec).
    pub system: String,
    pub table: String,
    pub id: u64,
}

/// One event as stored: the row of the events table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    pub position: u64,
    pub stream_type: String,
    pub stream_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    /// The payload (JSON text) with the text people typed in the clear, as every reader of the
    /// log sees it; or, where that text's data key was destroyed, empty with `erased: true`. The
    /// row stores that text sealed ([`log`](self::log)'s `seal`), and the hash covers the row's
    /// bytes.
    pub payload: String,
    /// The metadata exactly as stored (JSON text).
    pub metadata: String,
    pub recorded_at_micros: i64,
    pub hash: String,
}

impl StoredEvent {
    /// The domain event in its current shape (old versions upcast).
    pub fn decode(&self) -> Result<events::ConversationEvent, StoreError> {
        events::upcast::decode_payload(&self.event_type, &self.event_version, &self.payload)
            .map_err(|e| StoreError::Corrupt {
                position: self.position,
                reason: e.to_string(),
            })
    }

    /// Whether `chatd import` recorded it from the legacy system: history, not something that
    /// just happened (no push, no assignment decision).
    pub fn is_imported(&self) -> bool {
        self.metadata.contains("\"imported\"")
            && self
                .decode_metadata()
                .is_ok_and(|metadata| metadata.imported.is_some())
    }

    pub fn decode_metadata(&self) -> Result<EventMetadata, StoreError> {
        serde_json::from_str(&self.metadata).map_err(|e| StoreError::Corrupt {
            position: self.position,
            reason: format!("metadata: {e}"),
        })
    }

    /// The hash this row should carry, given the hash of the previous event of its stream.
    pub fn expected_hash(&self, previous_hash: &str) -> String {
        let digest = chain_digest(
            previous_hash.as_bytes(),
            &self.stream_type,
            &self.stream_id,
            self.sequence,
            &self.event_type,
            &self.event_version,
            self.recorded_at_micros,
            &self.payload,
            &self.metadata,
        );
        digest.iter().map(|&b| char::from(b)).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (or went away mid-transaction); nothing was written.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Another writer appended to the stream first.
    #[error("stream {stream_id} already has an event at sequence {sequence}")]
    Conflict { stream_id: String, sequence: u64 },
    /// A stored event that cannot be read: unknown type or version, broken JSON.
    #[error("event at position {position} cannot be read: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    pub fn from_sqlx(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_) => StoreError::Unavailable(error),
            sqlx::Error::Database(db) if is_connection_lost(db.as_ref()) => {
                StoreError::Unavailable(error)
            }
            _ => StoreError::Database(error),
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Errors that mean the database cannot be reached or is busy, not that the statement was wrong:
/// nothing was written and a retry may succeed.
fn is_connection_lost(error: &dyn sqlx::error::DatabaseError) -> bool {
    if let Some(mysql) = error.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        // shutdown in progress, too many connections, lock wait timeout, connection killed,
        // gone away, lost
        return matches!(mysql.number(), 1053 | 1040 | 1205 | 1927 | 2006 | 2013);
    }
    // SQLite: the database stayed locked by another writer beyond the busy timeout.
    matches!(error.code().as_deref(), Some("5") | Some("6") | Some("517"))
        && error
            .try_downcast_ref::<sqlx::sqlite::SqliteError>()
            .is_some()
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    MySql,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(Backend::MySql)
        } else if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else {
            Err(StoreError::Invalid(format!(
                "unsupported database URL (want mysql://... or sqlite://...): {}",
                redact_url(url)
            )))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::MySql => "mysql",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// The URL without its password, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Connection settings for the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: String,
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as unavailable.
    pub acquire_timeout: Duration,
    /// Wraps the data keys at rest (`CHAT_ENCRYPTION_KEY_FILE`); None: they are stored as they are.
    pub master_key: Option<std::sync::Arc<MasterKey>>,
    /// The master key being rotated away from (`CHAT_ENCRYPTION_PREVIOUS_KEY_FILE`): it still
    /// opens the data keys it wrapped.
    pub previous_master_key: Option<std::sync::Arc<MasterKey>>,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            master_key: None,
            previous_master_key: None,
        }
    }
}

/// The event store on one of its back ends. Cheap to clone.
#[derive(Clone)]
pub enum EventStore {
    MySql(SqlStore<sqlx::MySql>),
    Sqlite(SqlStore<sqlx::Sqlite>),
}

/// Runs `$body` with `$inner` bound to whichever back end's `SqlStore` is in use: every dispatch
/// from `EventStore` to a back end goes through here. Each arm is type-checked on its own, so the
/// body may call generic code or a method that only one back end's `SqlStore` has.
macro_rules! on_backend {
    ($store:expr, $inner:ident => $body:expr) => {
        match $store {
            $crate::store::EventStore::MySql($inner) => $body,
            $crate::store::EventStore::Sqlite($inner) => $body,
        }
    };
}
pub(crate) use on_backend;

impl EventStore {
    /// Connects, without migrating.
    pub async fn connect(options: &StoreOptions) -> Result<Self, StoreError> {
        Ok(match Backend::of_url(&options.url)? {
            Backend::MySql => EventStore::MySql(SqlStore::connect_mysql(options).await?),
            Backend::Sqlite => EventStore::Sqlite(SqlStore::connect_sqlite(options).await?),
        })
    }

    pub fn backend(&self) -> Backend {
        match self {
            EventStore::MySql(_) => Backend::MySql,
            EventStore::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies pending migrations; a second run changes nothing. The ones applied now, as
    /// `0013 message files`.
    pub async fn migrate(&self) -> Result<Vec<String>, sqlx::migrate::MigrateError> {
        on_backend!(self, s => s.migrate().await)
    }

    /// A cheap round trip, for readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_backend!(self, s => s.ping().await)
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        on_backend!(self, s => s.pool().close().await)
    }
}

/// The rows a statement changed, on either back end.
pub trait RowsAffected {
    fn changed(&self) -> u64;
}

impl RowsAffected for sqlx::mysql::MySqlQueryResult {
    fn changed(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn changed(&self) -> u64 {
        self.rows_affected()
    }
}
