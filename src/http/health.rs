//! `/healthz` (the process is up) and `/readyz` (the database and, when configured, Redis answer;
//! with each projector's position, lag and, for operators, its last error).
//!
//! A projector's error text may name tables, positions or a database's own words: only an
//! operator sees it, that is a caller on the machine itself (a loopback peer whose request no
//! proxy forwarded) or one presenting `CHAT_OPS_TOKEN` as a bearer token. Everyone else learns
//! which part is unhealthy, not why.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::{App, AppError};
use crate::wire::{Success, success};

pub fn router(operators: OperatorAccess) -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(Extension(operators))
}

/// Who counts as an operator for the details of `/readyz`.
#[derive(Clone, Default)]
pub struct OperatorAccess {
    /// SHA-256 of `CHAT_OPS_TOKEN`: compared in constant time whatever the length sent.
    token_hash: Option<Arc<[u8; 32]>>,
}

/// Headers a proxy adds: a request carrying one came through a proxy, whatever its peer.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

impl OperatorAccess {
    pub fn new(token: Option<&str>) -> Self {
        OperatorAccess {
            token_hash: token.map(|token| Arc::new(Sha256::digest(token.as_bytes()).into())),
        }
    }

    fn is_operator(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
        let local = peer.is_some_and(|peer| peer.ip().is_loopback())
            && !FORWARDING_HEADERS
                .iter()
                .any(|name| headers.contains_key(*name));
        let presented = |expected: &[u8; 32]| {
            crate::auth::bearer_token(headers).is_some_and(|sent| {
                let sent: [u8; 32] = Sha256::digest(sent.as_bytes()).into();
                bool::from(sent.ct_eq(expected))
            })
        };
        local || self.token_hash.as_deref().is_some_and(presented)
    }
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "up")))]
pub(super) async fn healthz(State(state): State<App>) -> Json<Success<Value>> {
    Json(success(json!({
        "status": "ok",
        "uptime_seconds": state.started.elapsed().as_secs(),
        // Where this server looks sessions up: `chatd session create` checks it writes there.
        "sessions": state.auth.session_store(),
    })))
}

/// The database (and Redis, when configured) answer; each projector's position, lag and last error.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "ready"),
    (status = 503, body = crate::wire::ErrorBody),
))]
pub(super) async fn readyz(
    State(state): State<App>,
    Extension(operators): Extension<OperatorAccess>,
    request: Parts,
) -> Result<Json<Success<Value>>, AppError> {
    let peer = request
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let operator = operators.is_operator(peer, &request.headers);
    let head = state.store.head_position().await.map_err(|error| {
        tracing::warn!(%error, "readiness check failed");
        AppError::unavailable()
    })?;
    let projectors: Vec<_> = state
        .projections
        .statuses()
        .into_iter()
        .map(|mut status| {
            status.head = status.head.max(head);
            status.lag = status.head.saturating_sub(status.position);
            if !operator && status.last_error.is_some() {
                status.last_error = Some("failed; operators see why".to_string());
            }
            status
        })
        .collect();
    let redis = match &state.redis {
        None => "not configured",
        Some(redis) => {
            let mut redis = redis.clone();
            let command = redis::cmd("PING");
            let ping = command.query_async::<String>(&mut redis);
            match tokio::time::timeout(crate::redis::OPERATION_TIMEOUT, ping).await {
                Ok(Ok(_)) => "ok",
                Ok(Err(error)) => {
                    tracing::warn!(%error, "readiness check failed: redis");
                    return Err(AppError::new(
                        crate::wire::ErrorCode::Unavailable,
                        "redis is unavailable",
                    ));
                }
                Err(_) => {
                    tracing::warn!("readiness check failed: redis did not answer in time");
                    return Err(AppError::new(
                        crate::wire::ErrorCode::Unavailable,
                        "redis is unavailable",
                    ));
                }
            }
        }
    };
    Ok(Json(success(json!({
        "status": "ready",
        "database": {"backend": state.store.backend().name(), "head_position": head},
        "redis": redis,
        "projectors": projectors,
    }))))
}
