//! Push notifications for people with no connected socket.
//!
//! A follower of the log (its own checkpoint, the `push` row of `projector_state`, under a lease
//! like every projector's) turns each committed message into jobs in `push_outbox`, one per
//! device of the recipient, in the same transaction that moves its checkpoint. Senders on every
//! node claim due jobs (marking them `sending` in a committed transaction) before the request
//! leaves, so a message reaches a device at most once, even across crashes; `chatd replay`
//! rebuilds read tables only and never touches this checkpoint or the outbox.
//!
//! It owns `push_devices` and `push_outbox`; it never writes the log nor a read table.

mod apns;
mod config;
pub mod devices;
mod fcm;
mod follower;
mod notification;
mod outbox;

use std::sync::Arc;

use projections::{ProjectionError, Projections};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use apns::Apns;
pub use config::{APNS_BASE_URL, ApnsSettings, FCM_BASE_URL, FcmSettings, PushSettings};
pub use fcm::Fcm;
pub use notification::{
    BODY_CHARS, Delivery, Notification, Outcome, Platform, Provider, SUPPORT_TITLE, body_of,
};

use crate::presence::Presence;
use crate::store::{EventStore, StoreError};

/// The follower's checkpoint key in `projector_state`. Not a projector: `chatd replay` does not
/// know it, so a replay never resets it.
pub const FOLLOWER_NAME: &str = "push";

#[derive(Debug, thiserror::Error)]
pub(crate) enum PushError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("the read tables have not reached position {0} yet")]
    Lagging(u64),
}

/// The configured providers.
pub struct Senders {
    fcm: Option<Fcm>,
    apns: Option<Apns>,
}

impl Senders {
    pub fn from_settings(settings: &PushSettings) -> anyhow::Result<Self> {
        Ok(Senders {
            fcm: settings.fcm.as_ref().map(Fcm::new).transpose()?,
            apns: settings.apns.as_ref().map(Apns::new).transpose()?,
        })
    }

    pub fn handles(&self, provider: Provider) -> bool {
        match provider {
            Provider::Fcm => self.fcm.is_some(),
            Provider::Apns => self.apns.is_some(),
        }
    }

    pub async fn send(&self, provider: Provider, delivery: &Delivery) -> Outcome {
        match (provider, &self.fcm, &self.apns) {
            (Provider::Fcm, Some(fcm), _) => fcm.send(delivery).await,
            (Provider::Apns, _, Some(apns)) => apns.send(delivery).await,
            _ => Outcome::Failed(format!("{} is not configured", provider.as_str())),
        }
    }
}

/// The follower and the sender of this node.
pub struct PushService {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl PushService {
    /// Starts pushing, or returns None when no provider is configured (then nothing is queued).
    pub async fn start(
        settings: &PushSettings,
        store: EventStore,
        presence: Arc<Presence>,
        projections: Arc<Projections>,
        wake: watch::Receiver<u64>,
        node_id: String,
    ) -> anyhow::Result<Option<Self>> {
        if !settings.enabled() {
            return Ok(None);
        }
        let senders = Arc::new(Senders::from_settings(settings)?);
        start_at_head(&store).await?;
        let settings = Arc::new(settings.clone());
        let due = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let follower = follower::Follower::new(
            store.clone(),
            presence,
            projections,
            settings.clone(),
            senders.clone(),
            node_id.clone(),
            due.clone(),
        );
        let sender = outbox::Outbox::new(store, senders, settings, node_id, due);
        let tasks = vec![
            tokio::spawn(follower.run(wake, stopped.clone())),
            tokio::spawn(sender.run(stopped)),
        ];
        Ok(Some(PushService { stop, tasks }))
    }

    /// Stops after the current step and hands the follower's lease back.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A follower that has never run starts at the log's head: turning push on for an existing log
/// must not push its history. Two nodes may race; the first row wins.
async fn start_at_head(store: &EventStore) -> Result<(), PushError> {
    let head = store.head_position().await?;
    Ok(projections::ensure_state_row(store, FOLLOWER_NAME, head).await?)
}
