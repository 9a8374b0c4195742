//! HTTP: one state struct, one router per feature, the contract's envelope.

mod analytics;
pub(crate) mod audit;
pub(crate) mod chat;
mod devices;
mod error;
pub mod extract;
pub mod files;
mod health;
pub mod observe;
pub mod openapi;
mod search;
pub mod views;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;

use projections::{LIVE_PROJECTIONS, Projections};

use crate::commands::{CommandBus, CommandError, Committed, Intent};
use crate::store::{EventMetadata, EventStore};

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
    pub commands: CommandBus,
    pub projections: Arc<Projections>,
    pub auth: Arc<crate::auth::Auth>,
    pub limits: Arc<crate::limits::RateLimiter>,
    /// Set when CHAT_REDIS_URL is.
    pub redis: Option<redis::aio::ConnectionManager>,
    /// The Socket.IO server, set once at start-up (it is built with this state).
    pub realtime: Arc<std::sync::OnceLock<crate::realtime::Realtime>>,
    pub read_your_writes: std::time::Duration,
    pub last_writes: Arc<LastWrites>,
    pub started: Arc<std::time::Instant>,
    /// Where uploads are stored, and the links that serve them.
    pub attachments: Arc<crate::files::Attachments>,
    /// The public URL is https: the web manager's cookie is marked `Secure`.
    pub public_https: bool,
    /// Who has a connected socket.
    pub presence: Arc<crate::presence::Presence>,
    /// Push devices one person may register (`CHAT_PUSH_MAX_DEVICES`).
    pub push_max_devices: u32,
}

impl AppState {
    /// Executes a command. The acknowledgement does not wait for the read tables: the caller's
    /// next read does (see `fresh_for`), so writes stay fast and reads stay consistent.
    pub async fn execute(
        &self,
        session: &crate::auth::Session,
        intent: Intent,
        metadata: EventMetadata,
    ) -> Result<Committed, CommandError> {
        let committed = self.commands.execute(intent, metadata).await?;
        if let Some(last) = committed.events.last() {
            self.last_writes.record(session, last.position);
        }
        Ok(committed)
    }

    /// Waits (bounded) until the read tables show everything this caller has written through
    /// this node: read-your-writes.
    pub async fn fresh_for(&self, session: &crate::auth::Session) {
        self.fresh_for_with(session, &[]).await;
    }

    /// As [`AppState::fresh_for`], also for the named projections beyond [`LIVE_PROJECTIONS`]
    /// (search, analytics: their routes' own tables).
    pub async fn fresh_for_with(&self, session: &crate::auth::Session, extra: &[&'static str]) {
        if let Some(position) = self.last_writes.get(session) {
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
    fn record(&self, session: &crate::auth::Session, position: u64) {
        if let Ok(mut map) = self.0.lock() {
            let key = (session.role, session.user_id);
            let newest = map.get(&key).copied().unwrap_or(0).max(position);
            map.put(key, newest);
        }
    }

    fn get(&self, session: &crate::auth::Session) -> Option<u64> {
        self.0
            .lock()
            .ok()?
            .get(&(session.role, session.user_id))
            .copied()
    }
}

/// The JSON API's routes without their authentication: mounted once under `/api` behind the
/// app signature, and once more under `/admin/api` behind the web manager's cookie.
pub(crate) fn api_routes() -> Router<AppState> {
    chat::router()
        .merge(devices::router())
        .merge(search::router())
        .merge(analytics::router())
        .merge(audit::router())
}

pub fn router(state: AppState) -> Router {
    let api = api_routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::auth::require_signature,
    ));
    Router::new()
        .merge(api)
        .merge(crate::admin::router(state.clone()))
        // Uploads check the signature themselves, over the streamed body.
        .merge(files::router())
        .merge(health::router())
        .merge(openapi::router())
        .route("/metrics", axum::routing::get(observe::metrics_route))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(method_not_allowed))
        .layer(axum::middleware::from_fn(observe::track_metrics))
        .layer(axum::middleware::from_fn(observe::request_id))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// A known route called with a method it does not serve: 405 with axum's `Allow` header, in the
/// contract's envelope.
async fn method_not_allowed(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let response = next.run(request).await;
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED
        || response
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
    {
        return response;
    }
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let mut refused = ApiError::method_not_allowed().into_response();
    if let Some(allow) = allow {
        refused
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    refused
}

/// Where a request came from, for the events' metadata (the audit trail).
pub struct Origin {
    pub request_id: Option<String>,
    pub remote_addr: Option<String>,
}

impl Origin {
    pub fn metadata(
        &self,
        session: &crate::auth::Session,
        client_msg_id: Option<String>,
    ) -> EventMetadata {
        EventMetadata {
            actor_id: session.user_id,
            actor_role: session.role.as_str().to_string(),
            request_id: self.request_id.clone(),
            client_msg_id,
            remote_addr: self.remote_addr.clone(),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<observe::RequestId>()
            .map(|id| id.as_str().to_string());
        let remote_addr = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip().to_string());
        Ok(Origin {
            request_id,
            remote_addr,
        })
    }
}
