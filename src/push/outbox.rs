//! Sends queued pushes. A job is claimed (`state` = 'sending', committed) before its request
//! leaves and is never claimed again, so a crash between claim and answer loses that push rather
//! than sending it twice. Temporary failures go back to `pending` with an exponential delay, a
//! bounded number of times.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use projections::{ProjectionError, ProjectionStore, SqlTxn, SqlValue};
use tokio::sync::{Notify, watch};

use super::notification::{Delivery, Notification, Outcome, Platform, Provider};
use super::{PushError, PushSettings, Senders, int, text};
use crate::clock::now_micros;
use crate::store::EventStore;

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
        let due: Vec<i64> = self
            .store
            .push_rows(
                &format!(
                    "select id from push_outbox where state = 'pending' and not_before <= ? \
                     order by not_before, id limit {CLAIM}"
                ),
                &[SqlValue::Int(now)],
            )
            .await?
            .iter()
            .filter_map(|row| row.first().and_then(SqlValue::as_i64))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        self.claims += 1;
        let claim = format!("{}-{}", self.node_id, self.claims);
        let placeholders = vec!["?"; due.len()].join(", ");
        let mut params = vec![SqlValue::from(claim.as_str()), SqlValue::Int(now)];
        params.extend(due.iter().map(|id| SqlValue::Int(*id)));
        let mut txn = ProjectionStore::begin(&self.store).await?;
        let claimed = txn
            .execute(
                &format!(
                    "update push_outbox set state = 'sending', claimed_by = ?, claimed_at = ? \
                     where state = 'pending' and id in ({placeholders})"
                ),
                &params,
            )
            .await;
        if let Err(error) = claimed {
            let _ = txn.rollback().await;
            return Err(error.into());
        }
        txn.commit().await?;
        let jobs: Vec<Claimed> = self
            .store
            .push_rows(
                "select id, provider, platform, token, payload, attempts, conversation_id \
                 from push_outbox where claimed_by = ? and state = 'sending'",
                &[claim.as_str().into()],
            )
            .await?
            .iter()
            .filter_map(|row| {
                let notification: Notification = serde_json::from_str(&text(row.get(4)?)).ok()?;
                Some(Claimed {
                    id: int(row.first()?),
                    provider: Provider::parse(&text(row.get(1)?))?,
                    attempts: u32::try_from(int(row.get(5)?)).unwrap_or(u32::MAX),
                    conversation_id: u64::try_from(int(row.get(6)?)).unwrap_or(0),
                    delivery: Delivery {
                        platform: Platform::parse(&text(row.get(2)?))?,
                        token: text(row.get(3)?),
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
        let mut txn = ProjectionStore::begin(&self.store).await?;
        let settled = self.settle(txn.as_mut(), &outcomes).await;
        if let Err(error) = settled {
            let _ = txn.rollback().await;
            return Err(error.into());
        }
        txn.commit().await?;
        Ok(handled.max(1))
    }

    async fn settle(
        &self,
        txn: &mut dyn SqlTxn,
        outcomes: &[(Claimed, Outcome)],
    ) -> Result<(), ProjectionError> {
        let now = now_micros();
        for (job, outcome) in outcomes {
            let provider = job.provider.as_str();
            let id = SqlValue::Int(job.id);
            match outcome {
                Outcome::Sent => {
                    metrics::counter!("chatd_push_total", "provider" => provider, "outcome" => "sent")
                        .increment(1);
                    txn.execute(
                        "update push_outbox set state = 'sent' where id = ?",
                        std::slice::from_ref(&id),
                    )
                    .await?;
                }
                Outcome::InvalidToken(reason) => {
                    metrics::counter!("chatd_push_total", "provider" => provider, "outcome" => "invalid_token")
                        .increment(1);
                    tracing::info!(job = job.id, provider, %reason, "push token refused: device removed");
                    let token = SqlValue::from(job.delivery.token.as_str());
                    txn.execute(
                        "delete from push_devices where token = ? and provider = ?",
                        &[token.clone(), provider.into()],
                    )
                    .await?;
                    txn.execute(
                        "delete from push_outbox where token = ? and (state = 'pending' or id = ?)",
                        &[token, id],
                    )
                    .await?;
                }
                Outcome::Retry { after, reason } => {
                    let attempts = job.attempts.saturating_add(1);
                    let newer = txn
                        .fetch_row(
                            "select id from push_outbox where token = ? and conversation_id = ? \
                             and state = 'pending'",
                            &[
                                job.delivery.token.as_str().into(),
                                job.conversation_id.into(),
                            ],
                        )
                        .await?
                        .is_some();
                    if attempts >= self.settings.max_attempts || newer {
                        // Given up, or a newer push of the conversation is queued and carries
                        // the latest message anyway.
                        metrics::counter!("chatd_push_total", "provider" => provider, "outcome" => "given_up")
                            .increment(1);
                        if !newer {
                            tracing::warn!(job = job.id, provider, attempts, %reason, "push given up");
                        }
                        txn.execute("delete from push_outbox where id = ?", &[id])
                            .await?;
                        continue;
                    }
                    let delay = backoff(self.settings.retry_base, job.attempts)
                        .max(after.unwrap_or_default());
                    tracing::info!(job = job.id, provider, attempts, ?delay, %reason, "push will be retried");
                    txn.execute(
                        "update push_outbox set state = 'pending', attempts = ?, not_before = ?, \
                         claimed_by = null, claimed_at = null where id = ?",
                        &[
                            SqlValue::from(u64::from(attempts)),
                            SqlValue::Int(now.saturating_add(micros(delay))),
                            id,
                        ],
                    )
                    .await?;
                }
                Outcome::Failed(reason) => {
                    metrics::counter!("chatd_push_total", "provider" => provider, "outcome" => "failed")
                        .increment(1);
                    tracing::warn!(job = job.id, provider, %reason, "push refused");
                    txn.execute("delete from push_outbox where id = ?", &[id])
                        .await?;
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
        let mut txn = ProjectionStore::begin(&self.store).await?;
        let deleted = txn
            .execute(
                "delete from push_outbox where state <> 'pending' and claimed_at < ?",
                &[SqlValue::Int(before)],
            )
            .await;
        match deleted {
            Ok(_) => Ok(txn.commit().await?),
            Err(error) => {
                let _ = txn.rollback().await;
                Err(error.into())
            }
        }
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
