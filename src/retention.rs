//! Retention (`CHAT_RETENTION_DAYS`): a conversation closed or archived longer ago than that is
//! erased, as the system, through the same use case as an admin's erasure (its typed text
//! destroyed in the log and every view, its files and queued pushes removed), with the rule as
//! the recorded reason.
//!
//! One node at a time does it, under a lease in `projector_state` (the projectors' own rules),
//! in passes: at start, then every [`EVERY`]. A pass is safe to repeat and to cut short: an
//! erased conversation is no longer due, and erasing one twice writes nothing.

use std::time::Duration;

use projections::{ProjectionError, ProjectionStore};
use tokio::sync::watch;

use crate::app::App;
use crate::app::erasure::Eraser;
use crate::store::EventMetadata;

/// The lease's name in `projector_state`.
pub const NAME: &str = "retention";
/// Time between passes.
const EVERY: Duration = Duration::from_secs(60);
/// Conversations erased per look at the read table.
const BATCH: u32 = 100;
const LEASE_TTL: Duration = Duration::from_secs(5);

/// Starts the follower; it stops (handing its lease back) when `stops` turns true.
pub fn start(
    state: App,
    node_id: String,
    days: u32,
    mut stops: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leader = false;
        loop {
            if *stops.borrow() {
                break;
            }
            match pass(&state, &node_id, days, &mut leader, &stops).await {
                Ok(erased) if erased > 0 => tracing::info!(erased, days, "retention erased"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "retention will retry"),
            }
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                _ = stops.changed() => {}
            }
        }
        if leader {
            let _ = projections::release_lease(&state.store, NAME, &node_id, None).await;
        }
    })
}

#[derive(Debug, thiserror::Error)]
enum RetentionError {
    #[error("{0}")]
    Store(String),
}

impl From<ProjectionError> for RetentionError {
    fn from(error: ProjectionError) -> Self {
        RetentionError::Store(error.to_string())
    }
}

impl From<crate::store::StoreError> for RetentionError {
    fn from(error: crate::store::StoreError) -> Self {
        RetentionError::Store(error.to_string())
    }
}

impl From<crate::app::AppError> for RetentionError {
    fn from(error: crate::app::AppError) -> Self {
        RetentionError::Store(error.message)
    }
}

/// Erases what is due, a batch at a time, while this node holds the lease; how many it erased.
async fn pass(
    state: &App,
    node_id: &str,
    days: u32,
    leader: &mut bool,
    stops: &watch::Receiver<bool>,
) -> Result<u64, RetentionError> {
    let store: &dyn ProjectionStore = &state.store;
    projections::ensure_state_row(store, NAME, 0).await?;
    *leader = projections::take_lease(store, NAME, node_id, LEASE_TTL, None).await?;
    if !*leader {
        return Ok(0);
    }
    // Conversations closed just now may not be in the read table yet: they are not due anyway,
    // but the ones due must show as they are in the log.
    let head = state.store.head_position().await?;
    state.await_position(head).await;
    let reason =
        format!("retention: closed or archived more than {days} days ago (CHAT_RETENTION_DAYS)");
    let eraser = Eraser {
        store: &state.store,
        commands: &state.commands,
        files: &state.attachments.store,
    };
    let mut erased = 0;
    loop {
        let erased_before = erased;
        let cutoff = crate::clock::now_micros() - i64::from(days) * 86_400_000_000;
        let due = state
            .store
            .conversations_due_for_retention(cutoff, BATCH)
            .await?;
        for id in &due {
            if *stops.borrow() {
                return Ok(erased);
            }
            // Renewed between conversations: a pass never outlives its lease.
            if !projections::take_lease(store, NAME, node_id, LEASE_TTL, None).await? {
                *leader = false;
                return Ok(erased);
            }
            let metadata = EventMetadata {
                actor_id: 0,
                actor_role: events::Role::System.as_str().to_string(),
                request_id: Some(format!("retention-{id}")),
                ..EventMetadata::default()
            };
            let swept = eraser
                .erase_conversations(crate::assignment::system_actor(), metadata, &[*id], &reason)
                .await?;
            erased += swept.erased_now.len() as u64;
        }
        // A full batch that erased nothing now was erased already and the read table lags
        // (its projector stopped?): the next pass looks again.
        if (due.len() as u32) < BATCH || erased == erased_before {
            return Ok(erased);
        }
        // The read table shows these erased before the next look.
        state
            .await_position(state.store.head_position().await?)
            .await;
    }
}
