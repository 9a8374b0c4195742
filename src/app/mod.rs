//! The application layer: the use cases every transport shares (REST, Socket.IO, the web
//! manager through REST, the CLI and the followers of the log), over the domain, the command bus
//! and the stores.
//!
//! It owns [`App`] (the state every transport holds), [`AppError`] (the one error they all turn
//! into their own answers), where a request came from ([`Origin`]), and the use cases: access
//! and limits ([`access`]), ids ([`ids`]), sending and reading messages ([`messages`]), read
//! receipts ([`reads`]), typing ([`typing`]), admins' presence ([`presence`]) and erasing a
//! person ([`erasure`]).
//!
//! It never names a transport: no axum, no socketioxide. What must reach sockets goes through
//! [`Fanout`], which the realtime module implements.

pub mod access;
pub mod erasure;
mod error;
pub mod ids;
pub mod import;
pub mod messages;
pub mod presence;
pub mod reads;
pub mod typing;

use std::sync::Arc;

use projections::{LIVE_PROJECTIONS, Projections};

pub use error::AppError;

use crate::auth::Session;
use crate::commands::{CommandBus, Committed, Intent};
use crate::store::{EventMetadata, EventStore};

/// Everything a use case may use; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub store: EventStore,
    pub commands: CommandBus,
    pub projections: Arc<Projections>,
    pub auth: Arc<crate::auth::Auth>,
    pub limits: Arc<crate::limits::RateLimiter>,
    /// Set when CHAT_REDIS_URL is.
    pub redis: Option<redis::aio::ConnectionManager>,
    pub read_your_writes: std::time::Duration,
    pub last_writes: Arc<LastWrites>,
    /// The last position this node's broadcaster has announced to its sockets.
    pub announced: tokio::sync::watch::Receiver<u64>,
    pub started: Arc<std::time::Instant>,
    /// Where uploads are stored, and the links that serve them.
    pub attachments: Arc<crate::files::Attachments>,
    /// The public URL is https: the web manager's cookie is marked `Secure`.
    pub public_https: bool,
    /// Who has a connected socket.
    pub presence: Arc<crate::presence::Presence>,
    /// Push devices one person may register (`CHAT_PUSH_MAX_DEVICES`).
    pub push_max_devices: u32,
    /// Index entries a search over every conversation reads before it answers
    /// (`CHAT_SEARCH_READ_BUDGET`).
    pub search_read_budget: usize,
    /// How long after sending a sender may edit or delete a message (`CHAT_EDIT_WINDOW_SECS`).
    pub edit_window_secs: u64,
}

/// Sends what is never in the log (typing indicators) to the sockets of a conversation, on every
/// node. The realtime module implements it; a use case that needs it is handed one, so the
/// application layer is built before the Socket.IO server that serves it.
#[async_trait::async_trait]
pub trait Fanout: Send + Sync {
    async fn to_conversation(&self, conversation_id: u64, event: &str, data: &serde_json::Value);
}

impl App {
    /// Executes a command on behalf of `session`, from `origin`. The acknowledgement does not
    /// wait for the read tables: the caller's next read does (see `fresh_for`), so writes stay
    /// fast and reads stay consistent.
    pub async fn execute(
        &self,
        origin: &Origin,
        session: &Session,
        intent: Intent,
        client_msg_id: Option<String>,
    ) -> Result<Committed, AppError> {
        let metadata = origin.metadata(session, client_msg_id);
        let committed = self.commands.execute(intent, metadata).await?;
        if let Some(last) = committed.events.last() {
            self.last_writes.record(session, last.position);
        }
        Ok(committed)
    }

    /// Waits (bounded) until the read tables show everything this caller has written through
    /// this node (read-your-writes) and everything this node has announced to its sockets.
    pub async fn fresh_for(&self, session: &Session) {
        self.fresh_for_with(session, &[]).await;
    }

    /// As [`App::fresh_for`], also for the named projections beyond [`LIVE_PROJECTIONS`]
    /// (search, analytics: their routes' own tables).
    pub async fn fresh_for_with(&self, session: &Session, extra: &[&'static str]) {
        // Broadcasts leave at commit, before the read tables have the event: whoever heard of
        // one may read right after, so a read waits for what has been announced too.
        let announced = *self.announced.borrow();
        let own = self.last_writes.get(session).unwrap_or(0);
        let position = own.max(announced);
        if position > 0 {
            self.await_position_with(position, extra).await;
        }
    }

    /// Waits (bounded) until the live read tables have applied `position`; whether they have.
    pub async fn await_position(&self, position: u64) -> bool {
        self.await_position_with(position, &[]).await
    }

    async fn await_position_with(&self, position: u64, extra: &[&'static str]) -> bool {
        let mut names = LIVE_PROJECTIONS.to_vec();
        names.extend_from_slice(extra);
        let caught_up = self
            .projections
            .wait_for_these(position, self.read_your_writes, &names)
            .await;
        if !caught_up {
            tracing::warn!(position, "read tables lag behind an acknowledged command");
        }
        caught_up
    }
}

/// The newest position each caller has written, for read-your-writes (bounded; the oldest
/// callers are forgotten, and their writes are long applied by then).
pub struct LastWrites(std::sync::Mutex<lru::LruCache<(events::Role, u64), u64>>);

impl Default for LastWrites {
    fn default() -> Self {
        LastWrites(std::sync::Mutex::new(lru::LruCache::new(
            std::num::NonZeroUsize::new(100_000).unwrap_or(std::num::NonZeroUsize::MIN),
        )))
    }
}

impl LastWrites {
    fn record(&self, session: &Session, position: u64) {
        if let Ok(mut map) = self.0.lock() {
            let key = (session.role, session.user_id);
            let newest = map.get(&key).copied().unwrap_or(0).max(position);
            map.put(key, newest);
        }
    }

    fn get(&self, session: &Session) -> Option<u64> {
        self.0
            .lock()
            .ok()?
            .get(&(session.role, session.user_id))
            .copied()
    }
}

/// Where a command came from, for the events' metadata (the audit trail): the request (or
/// socket) id and the remote address. Each transport fills it in its own way.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub request_id: Option<String>,
    /// What the client called its request, if anything (see [`EventMetadata`]).
    pub client_request_id: Option<String>,
    pub remote_addr: Option<String>,
}

impl Origin {
    pub fn metadata(&self, session: &Session, client_msg_id: Option<String>) -> EventMetadata {
        EventMetadata {
            actor_id: session.user_id,
            actor_role: session.role.as_str().to_string(),
            request_id: self.request_id.clone(),
            client_request_id: self.client_request_id.clone(),
            client_msg_id,
            remote_addr: self.remote_addr.clone(),
            imported: None,
        }
    }
}
