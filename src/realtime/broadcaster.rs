//! Turns committed events into Socket.IO events for this node's sockets, in log order. This
//! node's own batches arrive from the appender as they commit and leave at once, with no read of
//! the log; other nodes' commits are read from the log, which is polled. Each node runs one over
//! the shared log, so a change accepted on any node, over any transport, reaches every socket.
//!
//! It starts from the head read at start-up, before the server accepts a connection, and a
//! socket's join is answered from the read tables up to a head read later, so no event falls
//! between a join's answer and the broadcasts that follow it. It does not wait for the read
//! tables: it publishes how far it has announced, and a REST read waits for the tables to reach
//! that (`App::fresh_for`), so a client that reacts to `new_message` by reading sees the message.
//! Broadcast is best effort: a client that was away asks for what it missed with `since`.

use std::sync::Arc;
use std::time::Duration;

use ::events::ConversationEvent;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::{Realtime, STAFF_ROOM, conversation_room};
use crate::commands::CommittedBatch;
use crate::store::{EventStore, StoredEvent};
use crate::wire::MessageView;

/// Events read from the log at a time.
const BATCH: u32 = 500;
/// How often the log is checked for other nodes' commits.
const POLL: Duration = Duration::from_millis(50);

pub struct Broadcaster {
    /// The last position announced (or passed over: events no socket hears of).
    position: u64,
    store: EventStore,
    realtime: Realtime,
    attachments: Arc<crate::files::Attachments>,
    announced: watch::Sender<u64>,
}

impl Broadcaster {
    /// Starts following the log after position `from`, taking this node's batches from
    /// `committed`; publishes each position announced on `announced`; stops when `shutdown`
    /// turns true.
    pub fn start(
        from: u64,
        store: EventStore,
        realtime: Realtime,
        attachments: Arc<crate::files::Attachments>,
        mut committed: broadcast::Receiver<CommittedBatch>,
        announced: watch::Sender<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let mut broadcaster = Broadcaster {
            position: from,
            store,
            realtime,
            attachments,
            announced,
        };
        tokio::spawn(async move {
            let mut feed_open = true;
            // An interval, not a sleep per turn: a steady flow of this node's batches must not
            // keep other nodes' commits waiting.
            let mut poll = tokio::time::interval(POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    biased;
                    _ = shutdown.changed() => {}
                    batch = committed.recv(), if feed_open => match batch {
                        Ok(batch) => broadcaster.take(&batch).await,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::debug!(missed, "broadcaster fell behind the commits; reading the log");
                            broadcaster.catch_up(u64::MAX).await;
                        }
                        Err(broadcast::error::RecvError::Closed) => feed_open = false,
                    },
                    _ = poll.tick() => {
                        broadcaster.catch_up(u64::MAX).await;
                    }
                }
            }
        })
    }

    /// Announces a batch this node committed, after whatever other nodes committed before it.
    async fn take(&mut self, batch: &[StoredEvent]) {
        let fresh: Vec<&StoredEvent> = batch
            .iter()
            .filter(|e| e.position > self.position)
            .collect();
        let Some(first) = fresh.first().map(|e| e.position) else {
            return;
        };
        if first > self.position + 1 && !self.catch_up(first - 1).await {
            // The gap could not be read: the log holds this batch too, and the poll reads on.
            return;
        }
        for event in fresh {
            self.announce(event).await;
        }
    }

    /// Reads the log after the last position announced, up to `until`, and announces it;
    /// whether it got there (or to the log's end).
    async fn catch_up(&mut self, until: u64) -> bool {
        while self.position < until {
            let batch = match self.store.read_from(self.position, BATCH).await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::warn!(%error, "broadcaster cannot read the log");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return false;
                }
            };
            if batch.is_empty() {
                return true;
            }
            for event in batch.iter().filter(|e| e.position <= until) {
                self.announce(event).await;
            }
        }
        true
    }

    async fn announce(&mut self, event: &StoredEvent) {
        // Published before the emit: a client that reads on hearing of it must find it.
        self.position = event.position;
        self.announced.send_replace(event.position);
        if let Some((conversation_id, name, data, rooms)) = socket_event(event, &self.attachments) {
            self.realtime
                .emit_local(conversation_id, rooms, name, &data)
                .await;
            // Imported history carries the times it happened, not when it was committed.
            if !event.is_imported() {
                let lag =
                    (crate::clock::now_micros() - event.recorded_at_micros).max(0) as f64 / 1e6;
                crate::metrics::broadcast_lag(lag);
            }
        }
    }
}

/// The socket event for one log event: its conversation, name and data, and the rooms it goes
/// to.
fn socket_event(
    event: &StoredEvent,
    attachments: &crate::files::Attachments,
) -> Option<(u64, &'static str, Value, Vec<String>)> {
    let id: u64 = event.stream_id.parse().ok()?;
    let room = conversation_room(id);
    let everyone = vec![room.clone(), STAFF_ROOM.to_string()];
    let status = |status: &str, by: &::events::Actor| json!({"conversation_id": id, "status": status, "changed_by": by.role.as_str()});
    let (name, data, rooms) = match event.decode().ok()? {
        ConversationEvent::MessageSent { .. } => {
            let message = MessageView::from_event(id, event, attachments)?;
            ("new_message", serde_json::to_value(message).ok()?, everyone)
        }
        ConversationEvent::MessagesRead {
            message_ids,
            reader,
        } => (
            "message_read",
            json!({"conversation_id": id, "message_ids": message_ids, "read_by": reader.role.as_str()}),
            vec![room],
        ),
        ConversationEvent::ConversationClosed { by } => {
            ("conversation_status", status("closed", &by), everyone)
        }
        ConversationEvent::ConversationReopened { by } => {
            ("conversation_status", status("active", &by), everyone)
        }
        ConversationEvent::ConversationArchived { by } => {
            ("conversation_status", status("archived", &by), everyone)
        }
        ConversationEvent::ConversationAssigned { admin_id, by } => (
            "conversation_assigned",
            json!({"conversation_id": id, "admin_id": admin_id, "assigned_by": by.role.as_str()}),
            everyone,
        ),
        ConversationEvent::MessageEdited {
            message_id,
            content,
            ..
        } => (
            "message_updated",
            json!({
                "conversation_id": id,
                "id": message_id,
                "message": content,
                "content": content,
                "edited_at": crate::wire::wire_time(event.recorded_at_micros),
            }),
            everyone,
        ),
        ConversationEvent::MessageDeleted { message_id, by, .. } => (
            "message_deleted",
            json!({"conversation_id": id, "id": message_id, "deleted_by": by.role.as_str()}),
            everyone,
        ),
        // An erasure closes an active conversation first: that close is broadcast.
        ConversationEvent::ConversationOpened { .. }
        | ConversationEvent::FeedbackGiven { .. }
        | ConversationEvent::FileUploaded { .. }
        | ConversationEvent::ConversationErased { .. } => {
            return None;
        }
    };
    Some((id, name, data, rooms))
}
