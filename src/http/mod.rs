//! HTTP: one state struct, one router per feature, the contract's envelope.

mod error;
mod health;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;

use projections::Projections;

use crate::commands::{CommandBus, CommandError, Committed, Intent};
use crate::store::{EventMetadata, EventStore};

/// Everything a handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: EventStore,
    pub commands: CommandBus,
    pub projections: Arc<Projections>,
    pub read_your_writes: std::time::Duration,
    pub started: Arc<std::time::Instant>,
}

impl AppState {
    /// Executes a command and, once it is committed, waits (bounded) until the read tables show
    /// it, so the caller's next read sees its own write.
    pub async fn execute(
        &self,
        intent: Intent,
        metadata: EventMetadata,
    ) -> Result<Committed, CommandError> {
        let committed = self.commands.execute(intent, metadata).await?;
        if let Some(last) = committed.events.last()
            && !self
                .projections
                .wait_for(last.position, self.read_your_writes)
                .await
        {
            tracing::warn!(
                position = last.position,
                "read tables lag behind an acknowledged command"
            );
        }
        Ok(committed)
    }
}

pub fn router(state: AppState) -> Router {
    Router::new().merge(health::router()).with_state(state)
}
