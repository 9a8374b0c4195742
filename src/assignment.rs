//! Automatic assignment: a new conversation, or a reopened one whose admin is away or offline,
//! goes to the available admin (online, not away) with the fewest active conversations, under
//! a capacity. When nobody is available it waits, and is assigned, oldest first, once an admin
//! comes online or becomes available.
//!
//! The decisions follow the log, not the requests: a user's send never waits for (or fails
//! because of) an assignment. One node at a time decides, under a lease in `projector_state`
//! (the projectors' own table and rules: renewed every second, lost 5 s after its holder stops),
//! from its own checkpoint there, saved with each renewal. A crash therefore repeats up to a
//! second of decisions, so a decision is idempotent: a conversation that is no longer active,
//! that someone has taken, or whose admin is available, is left alone. An assignment is an
//! ordinary `AssignConversation` command by the system actor, so it is in the log, the audit
//! trail and the `conversation_assigned` broadcast like a manual one.
//!
//! Waiting needs no record for a conversation without an admin (the read table lists them); a
//! reopened one keeps its away admin meanwhile, so it goes into `assignment_waiting`. Nothing
//! is written while nothing is decided but the lease: no commit follows a user's message.

use std::collections::HashMap;
use std::time::Duration;

use events::{Actor, ConversationCommand, ConversationEvent, Role};
use projections::{ProjectionError, ProjectionStore};
use tokio::sync::watch;

use crate::app::App;
use crate::commands::{CommandError, Intent};
use crate::store::EventMetadata;

/// The checkpoint's (and the lease's) name in `projector_state`.
pub const NAME: &str = "auto_assignment";
/// Events read at a time.
const BATCH: u32 = 200;
/// How often the log and the waiting queue are looked at without a wake-up: an admin who comes
/// online on another node is noticed within this.
const POLL: Duration = Duration::from_millis(500);
const LEASE_TTL: Duration = Duration::from_secs(5);
const LEASE_RENEW: Duration = Duration::from_secs(1);
/// How long a decision waits for the read tables to show the log's head.
const READ_WAIT: Duration = Duration::from_secs(2);
/// Waiting conversations looked at per pass.
const DRAIN: u32 = 100;

/// Starts the follower; it stops (handing its lease back) when `stops` turns true.
pub fn start(
    state: App,
    node_id: String,
    capacity: u64,
    mut stops: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wake = state.commands.committed_head();
        let mut presence_changes = state.presence.subscribe();
        let mut assigner = Assigner {
            state,
            node_id,
            capacity,
            leader: false,
            renewed_at: None,
            position: 0,
        };
        loop {
            if *stops.borrow() {
                break;
            }
            let busy = match assigner.step().await {
                Ok(busy) => busy,
                Err(error) => {
                    tracing::warn!(%error, "automatic assignment will retry");
                    assigner.leader = false;
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stops.changed() => {}
                    }
                    continue;
                }
            };
            if !busy {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = presence_changes.recv() => {}
                    _ = stops.changed() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
                // Commits gather: under load one step per interval, not one per commit.
                tokio::select! {
                    () = tokio::time::sleep(projections::FOLLOWER_PACE) => {}
                    _ = stops.changed() => {}
                }
            }
        }
        assigner.release().await;
    })
}

#[derive(Debug, thiserror::Error)]
enum AssignError {
    #[error("{0}")]
    Store(String),
}

impl From<ProjectionError> for AssignError {
    fn from(error: ProjectionError) -> Self {
        AssignError::Store(error.to_string())
    }
}

impl From<crate::store::StoreError> for AssignError {
    fn from(error: crate::store::StoreError) -> Self {
        AssignError::Store(error.to_string())
    }
}

impl From<crate::presence::PresenceUnavailable> for AssignError {
    fn from(error: crate::presence::PresenceUnavailable) -> Self {
        AssignError::Store(error.to_string())
    }
}

/// Why a conversation is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// New, or active without an admin: one that has an admin was taken and stays theirs.
    Unassigned,
    /// Reopened: its admin keeps it only while available.
    Reopened,
    /// Reopened earlier while nobody had room, with the admin it had then.
    Queued { admin_then: Option<u64> },
}

/// What a decision did.
enum Decided {
    /// Nothing to do (or done).
    Settled,
    /// Nobody available has room: the conversation waits.
    Waiting,
}

struct Assigner {
    state: App,
    node_id: String,
    capacity: u64,
    leader: bool,
    renewed_at: Option<tokio::time::Instant>,
    /// The log is decided up to here; saved with each renewal of the lease.
    position: u64,
}

impl Assigner {
    fn store(&self) -> &dyn ProjectionStore {
        &self.state.store
    }

    /// Takes or renews the lease (saving the checkpoint with it), decides one batch of the log,
    /// then looks at the waiting conversations. Whether there may be more to do at once.
    async fn step(&mut self) -> Result<bool, AssignError> {
        if !self.leading().await? {
            return Ok(false);
        }
        let batch = self.state.store.read_from(self.position, BATCH).await?;
        for event in &batch {
            // Decisions can take a while: the lease is renewed between them, never outlived.
            if !self.leading().await? {
                return Ok(false);
            }
            // Imported history was decided by the system it came from.
            if let Ok(id) = event.stream_id.parse::<u64>()
                && !event.is_imported()
            {
                let reason = match event.decode() {
                    Ok(ConversationEvent::ConversationOpened { .. }) => Some(Reason::Unassigned),
                    Ok(ConversationEvent::ConversationReopened { .. }) => Some(Reason::Reopened),
                    _ => None,
                };
                if let Some(reason) = reason {
                    self.decide(id, event.recorded_at_micros, reason).await?;
                }
            }
            // Decided: a crash from here on sees it again, which changes nothing.
            self.position = event.position;
        }
        self.drain().await?;
        Ok(batch.len() == BATCH as usize)
    }

    /// Whether this node leads, taking or renewing the lease when due.
    async fn leading(&mut self) -> Result<bool, AssignError> {
        if self.leader && self.renewed_at.is_some_and(|at| at.elapsed() < LEASE_RENEW) {
            return Ok(true);
        }
        let was_leader = self.leader;
        self.leader = self.take_lease().await?;
        if !self.leader {
            return Ok(false);
        }
        self.renewed_at = Some(tokio::time::Instant::now());
        if !was_leader {
            self.position = self.load_checkpoint().await?;
            tracing::info!(position = self.position, "automatic assignment leads");
        }
        Ok(true)
    }

    /// Assigns the conversation if it is active and has no available admin; a reopened one
    /// waits when nobody available has room. Safe to repeat.
    async fn decide(&self, id: u64, since: i64, reason: Reason) -> Result<Decided, AssignError> {
        // The read tables must show the whole log as of now, not only this event: an assignment
        // (manual, or this follower's own before a crash) committed since must be seen.
        let head = self.state.store.head_position().await?;
        if !self
            .state
            .projections
            .wait_for_these(head, READ_WAIT, &projections::LIVE_PROJECTIONS)
            .await
        {
            return Err(AssignError::Store(
                "the read tables lag behind the log".into(),
            ));
        }
        let queued = matches!(reason, Reason::Queued { .. });
        let Some(row) = self.state.store.conversation(id).await? else {
            return self.settled(id, queued).await;
        };
        if row.status != "active" {
            return self.settled(id, queued).await;
        }
        let taken = match reason {
            Reason::Unassigned => row.admin_id.is_some(),
            // Someone assigned it while it waited.
            Reason::Queued { admin_then } => row.admin_id.is_some() && row.admin_id != admin_then,
            Reason::Reopened => false,
        };
        if taken {
            return self.settled(id, queued).await;
        }
        let available = self.state.presence.available_admins().await?;
        if row.admin_id.is_some_and(|admin| available.contains(&admin)) {
            return self.settled(id, queued).await;
        }
        let loads = self.state.store.active_conversations_per_admin().await?;
        let Some(admin_id) = least_loaded(&available, &loads, self.capacity) else {
            // A conversation without an admin waits as it is (the drain finds it); a reopened
            // one keeps its away admin meanwhile, so it is remembered here.
            if reason == Reason::Reopened && row.admin_id.is_some() {
                self.queue(id, since, row.admin_id).await?;
            }
            return Ok(Decided::Waiting);
        };
        let command = ConversationCommand::AssignConversation {
            actor: system_actor(),
            admin_id,
        };
        let metadata = EventMetadata {
            actor_id: 0,
            actor_role: Role::System.as_str().to_string(),
            request_id: Some(format!("auto-assign-{id}")),
            ..EventMetadata::default()
        };
        match self
            .state
            .commands
            .execute(Intent::On(id, command), metadata)
            .await
        {
            Ok(committed) => {
                tracing::info!(
                    conversation = id,
                    admin = admin_id,
                    ?reason,
                    "assigned automatically"
                );
                // The next decision counts this one in the admin's load.
                if let Some(last) = committed.events.last() {
                    self.state.await_position(last.position).await;
                }
            }
            // The domain refused (archived meanwhile, say): there is nothing to assign.
            Err(CommandError::Rejected(refused)) => {
                tracing::debug!(conversation = id, %refused, "automatic assignment refused");
            }
            Err(error) => return Err(AssignError::Store(error.to_string())),
        }
        self.settled(id, queued).await
    }

    /// Nothing (more) to do for the conversation: a queued one leaves the queue.
    async fn settled(&self, id: u64, queued: bool) -> Result<Decided, AssignError> {
        if queued {
            self.unqueue(id).await?;
        }
        Ok(Decided::Settled)
    }

    /// The waiting conversations (active without an admin, and reopened ones queued), oldest
    /// first, while someone available has room.
    async fn drain(&mut self) -> Result<(), AssignError> {
        if self.state.presence.available_admins().await?.is_empty() {
            return Ok(());
        }
        let mut waiting: Vec<(i64, u64, Reason)> = self
            .state
            .store
            .unassigned_active(DRAIN)
            .await?
            .into_iter()
            .map(|(id, since)| (since, id, Reason::Unassigned))
            .collect();
        for queued in self.state.store.waiting_for_assignment(DRAIN).await? {
            let reason = Reason::Queued {
                admin_then: queued.admin_id,
            };
            waiting.push((queued.waiting_since, queued.conversation_id, reason));
        }
        waiting.sort_by_key(|(since, id, _)| (*since, *id));
        for (since, id, reason) in waiting {
            if !self.leading().await? {
                return Ok(());
            }
            if let Decided::Waiting = self.decide(id, since, reason).await? {
                // Nobody available has room for the oldest: none for the younger either.
                break;
            }
        }
        Ok(())
    }

    async fn queue(&self, id: u64, since: i64, admin: Option<u64>) -> Result<(), AssignError> {
        // Already waiting, since earlier: it keeps its place.
        Ok(self
            .state
            .store
            .queue_for_assignment(id, since, admin)
            .await?)
    }

    async fn unqueue(&self, id: u64) -> Result<(), AssignError> {
        Ok(self.state.store.unqueue_from_assignment(id).await?)
    }

    /// Takes or renews the lease. A holder renewing it saves its checkpoint in the same
    /// statement: one small commit a second, whatever it decided meanwhile (a crash repeats at
    /// most that second's events, which changes nothing).
    async fn take_lease(&self) -> Result<bool, AssignError> {
        self.ensure_state_row().await?;
        let checkpoint = self.leader.then_some(self.position);
        Ok(
            projections::take_lease(self.store(), NAME, &self.node_id, LEASE_TTL, checkpoint)
                .await?,
        )
    }

    /// The first time it runs, the follower starts at the log's head rather than reading the
    /// whole history (what still waits from before is found by the drain anyway).
    async fn ensure_state_row(&self) -> Result<(), AssignError> {
        let head = self.store().head().await?;
        Ok(projections::ensure_state_row(self.store(), NAME, head).await?)
    }

    async fn load_checkpoint(&self) -> Result<u64, AssignError> {
        Ok(projections::load_checkpoint(self.store(), NAME).await?)
    }

    /// Hands the lease back, with the checkpoint, so another node takes over at once.
    async fn release(&self) {
        if !self.leader {
            return;
        }
        let _ = projections::release_lease(self.store(), NAME, &self.node_id, Some(self.position))
            .await;
    }
}

/// The actor of automatic decisions.
pub fn system_actor() -> Actor {
    Actor::new(0, Role::System, "system")
}

/// The available admin with the fewest active conversations and room for one more (the lowest
/// id among equals, so the choice does not depend on the order presence listed them).
fn least_loaded(available: &[u64], loads: &HashMap<u64, u64>, capacity: u64) -> Option<u64> {
    available
        .iter()
        .map(|admin| (loads.get(admin).copied().unwrap_or(0), *admin))
        .filter(|(load, _)| *load < capacity)
        .min()
        .map(|(_, admin)| admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_loaded_admin_with_room_is_chosen_and_ties_go_to_the_lowest_id() {
        let loads = HashMap::from([(1, 3), (2, 1), (3, 1)]);
        assert_eq!(least_loaded(&[1, 2, 3], &loads, 10), Some(2));
        assert_eq!(least_loaded(&[3, 2], &loads, 10), Some(2));
        assert_eq!(least_loaded(&[1], &loads, 3), None);
        assert_eq!(least_loaded(&[], &loads, 3), None);
        assert_eq!(least_loaded(&[9], &loads, 1), Some(9));
    }
}
