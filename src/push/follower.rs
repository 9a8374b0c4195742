//! Follows the log from the `push` checkpoint and queues pushes for each message whose recipient
//! has no connected socket: the jobs and the new checkpoint commit together, so a crash either
//! queues a batch's pushes with its checkpoint or neither.

use std::sync::Arc;
use std::time::Duration;

use events::{ConversationEvent, MessageType, Role};
use projections::{ProjectionError, Projections};
use tokio::sync::{Notify, watch};

use super::notification::{Notification, Platform, Provider, SUPPORT_TITLE, body_of};
use super::{FOLLOWER_NAME, PushError, PushSettings, Senders};
use crate::clock::now_micros;
use crate::presence::Presence;
use crate::store::{CheckpointMove, EventStore, NewPush};
use projections::LIVE_PROJECTIONS;

const BATCH: u32 = 500;
const POLL: Duration = Duration::from_millis(100);
const LEASE_TTL: Duration = Duration::from_secs(5);
const LEASE_RENEW: Duration = Duration::from_secs(1);
/// How long a batch waits for the read tables (recipient, badge) to show its messages.
const READ_TABLES_WAIT: Duration = Duration::from_secs(2);

struct Message {
    position: u64,
    recorded_at: i64,
    conversation_id: u64,
    message_id: u64,
    sender: events::Actor,
    message_type: MessageType,
    content: String,
    attachment: Option<events::AttachedFile>,
}

struct Job {
    token: String,
    provider: Provider,
    platform: Platform,
    notification: Notification,
    recorded_at: i64,
}

pub(super) struct Follower {
    store: EventStore,
    presence: Arc<Presence>,
    projections: Arc<Projections>,
    settings: Arc<PushSettings>,
    senders: Arc<Senders>,
    node_id: String,
    due: Arc<Notify>,
    leader: bool,
    renewed_at: Option<tokio::time::Instant>,
    position: u64,
}

impl Follower {
    pub(super) fn new(
        store: EventStore,
        presence: Arc<Presence>,
        projections: Arc<Projections>,
        settings: Arc<PushSettings>,
        senders: Arc<Senders>,
        node_id: String,
        due: Arc<Notify>,
    ) -> Self {
        Follower {
            store,
            presence,
            projections,
            settings,
            senders,
            node_id,
            due,
            leader: false,
            renewed_at: None,
            position: 0,
        }
    }

    pub(super) async fn run(
        mut self,
        mut wake: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let idle = match self.step().await {
                Ok(applied) => applied == 0,
                Err(PushError::Projection(ProjectionError::LeaseLost)) => {
                    tracing::info!("push follower lost its lease to another node");
                    self.leader = false;
                    true
                }
                Err(error) => {
                    tracing::warn!(%error, "push follower will retry");
                    self.leader = false;
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = shutdown.changed() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
        }
        self.release().await;
    }

    /// Takes or renews the lease when due, then queues one batch's pushes. How many events it
    /// went past.
    async fn step(&mut self) -> Result<usize, PushError> {
        let renew_due = self.renewed_at.is_none_or(|at| at.elapsed() >= LEASE_RENEW);
        if !self.leader || renew_due {
            let was_leader = self.leader;
            self.leader = self.take_lease().await?;
            if !self.leader {
                return Ok(0);
            }
            self.renewed_at = Some(tokio::time::Instant::now());
            if !was_leader {
                self.position = self.checkpoint().await?;
                tracing::info!(position = self.position, "push follower leads");
            }
        }
        let batch = self.store.read_from(self.position, BATCH).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(0);
        };
        let messages: Vec<Message> = batch
            .iter()
            // Imported history is not news: nobody is told of it.
            .filter(|e| e.event_type == "MessageSent" && !e.is_imported())
            .filter_map(|e| {
                let decoded = e.decode().map_err(|error| {
                    tracing::warn!(position = e.position, %error, "push follower skips an unreadable event");
                });
                match decoded {
                    Ok(ConversationEvent::MessageSent {
                        message_id,
                        sender,
                        message_type,
                        content,
                        attachment,
                        ..
                    }) => Some(Message {
                        position: e.position,
                        recorded_at: e.recorded_at_micros,
                        conversation_id: e.stream_id.parse().ok()?,
                        message_id,
                        sender,
                        message_type,
                        content,
                        attachment,
                    }),
                    _ => None,
                }
            })
            .collect();
        if let Some(newest) = messages.last().map(|m| m.position)
            && !self
                .projections
                .wait_for_these(newest, READ_TABLES_WAIT, &LIVE_PROJECTIONS)
                .await
        {
            return Err(PushError::Lagging(newest));
        }
        let now = now_micros();
        let max_age = i64::try_from(self.settings.max_age.as_micros()).unwrap_or(i64::MAX);
        let mut jobs = Vec::new();
        for message in messages
            .iter()
            .filter(|m| now.saturating_sub(m.recorded_at) <= max_age)
        {
            jobs.extend(self.jobs_for(message).await?);
        }
        self.queue(&jobs, last, now).await?;
        self.position = last;
        if !jobs.is_empty() {
            self.due.notify_one();
        }
        Ok(batch.len())
    }

    /// The pushes one message makes: one per device of its recipient, when the recipient has no
    /// connected socket.
    async fn jobs_for(&self, message: &Message) -> Result<Vec<Job>, PushError> {
        let Some(conversation) = self.store.conversation(message.conversation_id).await? else {
            return Ok(Vec::new());
        };
        let recipient = match message.sender.role {
            Role::User => match conversation.admin_id {
                Some(admin) => (Role::Admin, admin),
                None => return Ok(Vec::new()),
            },
            Role::Admin | Role::System => (Role::User, conversation.user_id),
            Role::Auditor => return Ok(Vec::new()),
        };
        if self.presence.is_online(recipient.0, recipient.1).await {
            return Ok(Vec::new());
        }
        let devices: Vec<(String, Platform, Provider)> = self
            .store
            .push_devices_of(recipient.0, recipient.1)
            .await?
            .into_iter()
            .filter_map(|device| {
                Some((
                    device.token,
                    Platform::parse(&device.platform)?,
                    Provider::parse(&device.provider)?,
                ))
            })
            .filter(|(_, _, provider)| self.senders.handles(*provider))
            .collect();
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let badge = self.store.unread_badge(recipient.0, recipient.1).await?;
        let title = match message.sender.role {
            Role::User if !message.sender.identifier.trim().is_empty() => {
                message.sender.identifier.clone()
            }
            Role::User => format!("User {}", message.sender.id),
            _ => SUPPORT_TITLE.to_string(),
        };
        let notification = Notification {
            title,
            body: body_of(message.message_type, &message.content),
            badge: u64::try_from(badge).unwrap_or(0),
            conversation_id: message.conversation_id,
            message_id: message.message_id,
            message_type: Some(message.message_type),
            attachment: message.attachment.clone(),
        };
        Ok(devices
            .into_iter()
            .map(|(token, platform, provider)| Job {
                token,
                provider,
                platform,
                notification: notification.clone(),
                recorded_at: message.recorded_at,
            })
            .collect())
    }

    /// Writes the jobs (a device's pending push of the same conversation takes the newer
    /// content instead of a second row) and moves the checkpoint, fenced by the lease.
    async fn queue(&self, jobs: &[Job], last: u64, now: i64) -> Result<(), ProjectionError> {
        let window = i64::try_from(self.settings.collapse_window.as_micros()).unwrap_or(0);
        let pushes = jobs
            .iter()
            .map(|job| {
                Ok(NewPush {
                    token: &job.token,
                    provider: job.provider.as_str(),
                    platform: job.platform.as_str(),
                    conversation_id: job.notification.conversation_id,
                    message_id: job.notification.message_id,
                    payload: serde_json::to_string(&job.notification)
                        .map_err(|e| ProjectionError::Database(e.to_string()))?,
                    recorded_at: job.recorded_at,
                })
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        let checkpoint = CheckpointMove {
            name: FOLLOWER_NAME,
            node_id: &self.node_id,
            from: self.position,
            to: last,
        };
        self.store
            .queue_pushes(&pushes, window, now, checkpoint)
            .await
    }

    async fn take_lease(&self) -> Result<bool, PushError> {
        Ok(
            projections::take_lease(&self.store, FOLLOWER_NAME, &self.node_id, LEASE_TTL, None)
                .await?,
        )
    }

    async fn checkpoint(&self) -> Result<u64, PushError> {
        Ok(projections::load_checkpoint(&self.store, FOLLOWER_NAME).await?)
    }

    /// Hands the lease back so another node takes over at once.
    async fn release(&self) {
        if !self.leader {
            return;
        }
        let _ = projections::release_lease(&self.store, FOLLOWER_NAME, &self.node_id, None).await;
    }
}
