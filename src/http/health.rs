//! `/healthz` (the process is up) and `/readyz` (the database and, when configured, Redis answer;
//! with each projector's position, lag and last error).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::app::{App, AppError};
use crate::wire::{Success, success};

pub fn router() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "up")))]
pub(super) async fn healthz(State(state): State<App>) -> Json<Success<Value>> {
    Json(success(
        json!({"status": "ok", "uptime_seconds": state.started.elapsed().as_secs()}),
    ))
}

/// The database (and Redis, when configured) answer; each projector's position, lag and last error.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "ready"),
    (status = 503, body = crate::wire::ErrorBody),
))]
pub(super) async fn readyz(State(state): State<App>) -> Result<Json<Success<Value>>, AppError> {
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
