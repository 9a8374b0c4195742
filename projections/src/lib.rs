//! Read models folded from the event log (`conversations`, `messages`), and the runtime that keeps
//! them current: each projector reads the log from its checkpoint in position order and writes its
//! tables and its new checkpoint in one transaction.
//!
//! This crate knows SQL and events; it knows nothing of HTTP or sockets, nor of any database
//! driver: the service implements [`ProjectionStore`] and [`SqlTxn`] over its event store.
//! A projector never decides anything; it only records what the log says, so replaying the log
//! from position 0 rebuilds identical tables.

mod analytics;
mod archive;
mod audit;
mod batch;
mod conversations;
mod files;
mod messages;
mod runtime;
mod search;
mod sql;

pub use analytics::{AnalyticsFact, AnalyticsProjector, ConversationFacts, FactKind};
pub use audit::{ConversationAsOf, MessageAsOf, MessageDeletion, MessageVersion};
pub use conversations::ConversationsProjector;
pub use files::FilesProjector;
pub use messages::MessagesProjector;
pub use runtime::{
    Projections, ProjectorState, ProjectorStatus, ReplayProgress, RuntimeOptions, ensure_state_row,
    load_checkpoint, move_checkpoint, release_lease, replay, take_lease,
};
pub use search::{
    MAX_QUERY_TERMS, QueryError, SearchProjector, SearchQuery, is_cjk as search_is_cjk,
};
pub use sql::{ProjectionError, ProjectionStore, SqlTxn, SqlValue, Tables};

use async_trait::async_trait;
use events::ConversationEvent;

/// Events per transaction when replaying: large batches let projectors fold many events of one
/// conversation into one statement.
pub const REPLAY_BATCH: u32 = 10_000;

/// One event as the log hands it to a reader.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    pub position: u64,
    pub stream_type: String,
    pub stream_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    /// The stored fields as JSON text (opened where they were sealed).
    pub payload: String,
    pub recorded_at_micros: i64,
    /// `payload` as a domain event, decoded once for every projector the event is handed to.
    pub decoded: DecodedOnce,
}

/// A lazily decoded event: a cache beside the payload, so it takes no part in comparisons.
#[derive(Debug, Clone, Default)]
pub struct DecodedOnce(std::sync::OnceLock<Result<ConversationEvent, ProjectionError>>);

impl PartialEq for DecodedOnce {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl LoggedEvent {
    /// The domain event in its current shape; an unreadable event names its position.
    pub fn decode(&self) -> Result<&ConversationEvent, ProjectionError> {
        self.decoded
            .0
            .get_or_init(|| self.decode_payload())
            .as_ref()
            .map_err(Clone::clone)
    }

    fn decode_payload(&self) -> Result<ConversationEvent, ProjectionError> {
        events::upcast::decode_payload(&self.event_type, &self.event_version, &self.payload)
            .map_err(|e| ProjectionError::Apply {
                position: self.position,
                reason: e.to_string(),
            })
    }

    /// The conversation id of a conversation stream.
    pub fn conversation_id(&self) -> Result<u64, ProjectionError> {
        self.stream_id.parse().map_err(|_| ProjectionError::Apply {
            position: self.position,
            reason: format!("stream id {:?} is not a conversation id", self.stream_id),
        })
    }
}

/// A read model: a stable name (its checkpoint key), the tables it owns, and how a run of
/// consecutive events changes them. `apply` runs inside the transaction that also moves the
/// checkpoint; it gets whole batches so it can write many events with few statements, and must
/// leave the same rows whatever the batch boundaries are.
#[async_trait]
pub trait Projector: Send + Sync {
    /// Never changes once deployed: it keys the checkpoint.
    fn name(&self) -> &'static str;
    /// The tables it owns (live names); `replay` rebuilds exactly these.
    fn tables(&self) -> &'static [&'static str];
    /// How long commits gather before the next batch once it has caught up: fewer, larger
    /// transactions for a projection nobody reads right after a write. Zero: at once.
    fn pace(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError>;
    /// Runs once a replay has swapped the rebuilt tables in, while it still holds the leases:
    /// the work `apply` deferred because the copies had their primary keys only.
    async fn finish_rebuild(&self, _txn: &mut dyn SqlTxn) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// The projections that conversations, messages and files are read from, and that a broadcast
/// or a caller's next read waits for. Search and analytics follow at their own pace and are
/// waited for only by their own routes.
pub const LIVE_PROJECTIONS: [&str; 3] = ["conversations", "messages", "files"];

/// How long the projections that are not live (search, analytics) let commits gather: under
/// load they write one transaction per this interval instead of one per commit.
pub const FOLLOWER_PACE: std::time::Duration = std::time::Duration::from_millis(20);

/// Every projector of the service, in a stable order.
pub fn all_projectors() -> Vec<std::sync::Arc<dyn Projector>> {
    vec![
        std::sync::Arc::new(ConversationsProjector),
        std::sync::Arc::new(MessagesProjector::default()),
        std::sync::Arc::new(FilesProjector),
        std::sync::Arc::new(SearchProjector),
        std::sync::Arc::new(AnalyticsProjector),
    ]
}
