//! Sends queued pushes. A job is claimed (`state` = 'sending', committed) before its request
//! leaves and is never claimed again, so a crash between claim and answer loses that push rather
//! than sending it twice. Temporary failures go back to `pending` with an exponential delay, a
//! bounded number of times.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use projections::ProjectionError;
use tokio::sync::{Notify, watch};

use super::notification::{Delivery, Notification, Outcome, Platform, Provider};
use super::{PushError, PushSettings, Senders};
use crate::clock::now_micros;
use crate::store::{EventStore, PushSettlement};

const CLAIM: usize = 64;
const CONCURRENT_SENDS: usize = 32;
const POLL: Duration = Duration::from_millis(100);
const CLEANUP_EVERY: Duration = Duration::from_secs(30);
/// Sent and abandoned jobs are kept this long beyond the collapse window.
const KEEP: Duration = Duration::from_secs(600);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

struct Claimed {
    id: i64,
    provider: Provider,
    attempts: u32,
    conversation_id: u64,
    delivery: Delivery,
}

pub(super) struct Outbox {
    store: EventStore,
    senders: Arc<Senders>,
    settings: Arc<PushSettings>,
    node_id: String,
    claims: u64,
    due: Arc<Notify>,
}

impl Outbox {
    pub(super) fn new(
        store: EventStore,
        senders: Arc<Senders>,
        settings: Arc<PushSettings>,
        node_id: String,
        due: Arc<Notify>,
    ) -> Self {
        Outbox {
            store,
            senders,
            settings,
            node_id,
            claims: 0,
            due,
        }
    }

    pub(super) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut cleaned = tokio::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let handled = match self.step().await {
                Ok(handled) => handled,
                Err(error) => {
                    tracing::warn!(%error, "push sender will retry");
                    0
                }
            };
            if cleaned.elapsed() >= CLEANUP_EVERY {
                cleaned = tokio::time::Instant::now();
                if let Err(error) = self.cleanup().await {
                    tracing::warn!(%error, "push outbox cleanup failed");
                }
            }
            if handled == 0 {
                tokio::select! {
                    () = self.due.notified() => {}
                    _ = shutdown.changed() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }

    /// Claims the due jobs, sends them, records what happened. How many it handled.
    async fn step(&mut self) -> Result<usize, PushError> {
        let now = now_micros();
        let due = self.store.due_pushes(now, CLAIM).await?;
        if due.is_empty() {
            return Ok(0);
        }
        self.claims += 1;
        let claim = format!("{}-{}", self.node_id, self.claims);
        self.store.claim_pushes(&claim, now, &due).await?;
        let jobs: Vec<Claimed> = self
            .store
            .claimed_pushes(&claim)
            .await?
            .into_iter()
            .filter_map(|row| {
                let notification: Notification = serde_json::from_str(&row.payload).ok()?;
                Some(Claimed {
                    id: row.id,
                    provider: Provider::parse(&row.provider)?,
                    attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
                    conversation_id: u64::try_from(row.conversation_id).unwrap_or(0),
                    delivery: Delivery {
                        platform: Platform::parse(&row.platform)?,
                        token: row.token,
                        notification,
                    },
                })
            })
            .collect();
        let senders = self.senders.clone();
        let outcomes: Vec<(Claimed, Outcome)> = futures::stream::iter(jobs)
            .map(|job| {
                let senders = senders.clone();
                async move {
                    let outcome = senders.send(job.provider, &job.delivery).await;
                    (job, outcome)
                }
            })
            .buffer_unordered(CONCURRENT_SENDS)
            .collect()
            .await;
        let handled = outcomes.len();
        let mut txn = self.store.begin_push_settlement().await?;
        let settled = self.settle(&mut txn, &outcomes).await;
        if let Err(error) = settled {
            let _ = txn.rollback().await;
            return Err(error.into());
        }
        txn.commit().await?;
        Ok(handled.max(1))
    }

    async fn settle(
        &self,
        txn: &mut PushSettlement,
        outcomes: &[(Claimed, Outcome)],
    ) -> Result<(), ProjectionError> {
        let now = now_micros();
        for (job, outcome) in outcomes {
            let provider = job.provider.as_str();
            let id = job.id;
            match outcome {
                Outcome::Sent => {
                    crate::metrics::push_outcome(provider, "sent");
                    txn.sent(id).await?;
                }
                Outcome::InvalidToken(reason) => {
                    crate::metrics::push_outcome(provider, "invalid_token");
                    tracing::info!(job = job.id, provider, %reason, "push token refused: device removed");
                    txn.token_refused(&job.delivery.token, provider, id).await?;
                }
                Outcome::Retry { after, reason } => {
                    let attempts = job.attempts.saturating_add(1);
                    let newer = txn
                        .has_pending(&job.delivery.token, job.conversation_id)
                        .await?;
                    if attempts >= self.settings.max_attempts || newer {
                        // Given up, or a newer push of the conversation is queued and carries
                        // the latest message anyway.
                        crate::metrics::push_outcome(provider, "given_up");
                        if !newer {
                            tracing::warn!(job = job.id, provider, attempts, %reason, "push given up");
                        }
                        txn.drop_job(id).await?;
                        continue;
                    }
                    let delay = backoff(self.settings.retry_base, job.attempts)
                        .max(after.unwrap_or_default());
                    tracing::info!(job = job.id, provider, attempts, ?delay, %reason, "push will be retried");
                    txn.retry_later(id, attempts, now.saturating_add(micros(delay)))
                        .await?;
                }
                Outcome::Failed(reason) => {
                    crate::metrics::push_outcome(provider, "failed");
                    tracing::warn!(job = job.id, provider, %reason, "push refused");
                    txn.drop_job(id).await?;
                }
            }
        }
        Ok(())
    }

    /// Forgets sent jobs once the collapse window no longer needs them, and jobs a crashed node
    /// had claimed (never sent again: at most once).
    async fn cleanup(&self) -> Result<(), PushError> {
        let before = now_micros()
            .saturating_sub(micros(self.settings.collapse_window))
            .saturating_sub(micros(KEEP));
        Ok(self.store.forget_pushes_claimed_before(before).await?)
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// `base` doubled for each attempt already made, at most [`MAX_BACKOFF`].
fn backoff(base: Duration, attempts_made: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(attempts_made.min(20)))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_its_bound() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 0), Duration::from_secs(1));
        assert_eq!(backoff(base, 3), Duration::from_secs(8));
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }
}
