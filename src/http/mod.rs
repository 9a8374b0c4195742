//! HTTP: one state struct, one router per feature, the contract's envelope.

mod error;
mod health;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;

use crate::commands::CommandBus;
use crate::store::EventStore;

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
    pub commands: CommandBus,
    pub started: Arc<std::time::Instant>,
}

pub fn router(state: AppState) -> Router {
    Router::new().merge(health::router()).with_state(state)
}
