//! `/healthz` (the process is up) and `/readyz` (the database answers).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn healthz(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "success",
        "data": {"status": "ok", "uptime_seconds": state.started.elapsed().as_secs()}
    }))
}

async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let head = state.store.head_position().await.map_err(|error| {
        tracing::warn!(%error, "readiness check failed");
        ApiError::unavailable()
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
    Ok(Json(json!({
        "status": "success",
        "data": {
            "status": "ready",
            "database": {"backend": state.store.backend().name(), "head_position": head},
            "projectors": projectors,
        }
    })))
}
