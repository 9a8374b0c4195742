//! Follows the log from the head read at start-up, before the server accepts a connection, and
//! turns committed events into Socket.IO events for this node's sockets. A socket's join is
//! answered from the read tables up to a head read later, so no event falls between a join's
//! answer and the broadcasts that follow it. Each node runs one over the shared log, so a change accepted
//! on any node, over any transport, reaches every socket once.
//!
//! It waits (briefly) for the read tables to apply an event before announcing it, so a client
//! that reacts to `new_message` by reading over REST sees the message. Broadcast is best effort:
//! a client that was away asks for what it missed with `since`.

use std::sync::Arc;
use std::time::Duration;

use ::events::ConversationEvent;
use projections::Projections;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Realtime, STAFF_ROOM, conversation_room};
use crate::store::{EventStore, StoredEvent};
use crate::wire::MessageView;

/// Events read from the log at a time.
const BATCH: u32 = 500;
/// How often the log is checked for other nodes' commits.
const POLL: Duration = Duration::from_millis(50);
/// How long an event waits for the read tables before it is announced anyway.
const PROJECTION_WAIT: Duration = Duration::from_millis(500);

pub struct Broadcaster;

impl Broadcaster {
    /// Starts following the log after position `from`; stops when `shutdown` turns true.
    pub fn start(
        from: u64,
        store: EventStore,
        realtime: Realtime,
        attachments: Arc<crate::files::Attachments>,
        projections: Arc<Projections>,
        mut wake: watch::Receiver<u64>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut position = from;
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let batch = match store.read_from(position, BATCH).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(%error, "broadcaster cannot read the log");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let Some(last) = batch.last().map(|e| e.position) else {
                    tokio::select! {
                        _ = wake.changed() => {}
                        _ = shutdown.changed() => {}
                        () = tokio::time::sleep(POLL) => {}
                    }
                    continue;
                };
                projections
                    .wait_for_these(last, PROJECTION_WAIT, &projections::LIVE_PROJECTIONS)
                    .await;
                for event in &batch {
                    announce(&realtime, &attachments, event).await;
                }
                position = last;
            }
        })
    }
}

/// The socket event for one log event, and the rooms it goes to.
fn socket_event(
    event: &StoredEvent,
    attachments: &crate::files::Attachments,
) -> Option<(&'static str, Value, Vec<String>)> {
    let id: u64 = event.stream_id.parse().ok()?;
    let room = conversation_room(id);
    let everyone = vec![room.clone(), STAFF_ROOM.to_string()];
    let status = |status: &str, by: &::events::Actor| json!({"conversation_id": id, "status": status, "changed_by": by.role.as_str()});
    Some(match event.decode().ok()? {
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
        ConversationEvent::ConversationOpened { .. }
        | ConversationEvent::FeedbackGiven { .. }
        | ConversationEvent::FileUploaded { .. } => {
            return None;
        }
    })
}

async fn announce(
    realtime: &Realtime,
    attachments: &crate::files::Attachments,
    event: &StoredEvent,
) {
    let Some((name, data, rooms)) = socket_event(event, attachments) else {
        return;
    };
    realtime.emit_local(rooms, name, &data).await;
    let lag = (crate::clock::now_micros() - event.recorded_at_micros).max(0) as f64 / 1e6;
    crate::metrics::broadcast_lag(lag);
}
