//! Socket.IO (protocol v5) on the API's port: authenticated sockets, the client events of the
//! contract, and a broadcaster that follows the log, so a change accepted anywhere (REST, a
//! socket, another node) reaches every socket in its room.
//!
//! Rooms: `conversation:<id>` for sockets that joined a conversation, `staff` for every admin and
//! auditor socket (they see new messages, status changes and assignments of every conversation
//! without joining). Every node runs its own broadcaster over the shared log and emits to its own
//! sockets only; typing indicators, which are never in the log, cross nodes through the Redis
//! adapter when Redis is configured.
//!
//! This module never writes the log directly: sends and read receipts go through the same
//! command path as REST.

mod broadcaster;
mod connect;
mod events;
mod in_flight;
mod join_holds;
mod watchers;

use join_holds::JoinHolds;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use serde_json::{Value, json};
use socketioxide::adapter::{Adapter, Emitter, LocalAdapter};
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, TransportType};
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

use crate::app::App;
use crate::auth::Session;
use crate::config::Config;

/// Largest Socket.IO packet a client may send (a 5,000-character message is about 20 KiB).
pub const MAX_PACKET_BYTES: u64 = 64 * 1024;
/// How often a socket that stopped reading is offered its disconnect packet again.
const OVERFLOW_RETRY: Duration = Duration::from_millis(50);
/// How often a connected socket's session is checked again.
const SESSION_CHECK: Duration = Duration::from_secs(3);
/// Session look-ups the watcher runs at once.
const SESSION_CHECKS_IN_FLIGHT: usize = 32;

pub const STAFF_ROOM: &str = "staff";

pub fn conversation_room(id: u64) -> String {
    format!("conversation:{id}")
}

/// The caller of a socket, kept in its extensions.
#[derive(Debug, Clone)]
pub(crate) struct SocketCaller {
    pub session: Session,
    pub token: String,
}

#[async_trait::async_trait]
impl crate::app::Fanout for Realtime {
    async fn to_conversation(&self, conversation_id: u64, event: &str, data: &Value) {
        self.emit_to(vec![conversation_room(conversation_id)], event, data)
            .await;
    }
}

/// The Socket.IO server handle, whichever adapter it runs on.
#[derive(Clone)]
pub enum Realtime {
    Local(SocketIo<LocalAdapter>),
    Redis(SocketIo<RedisAdapter<Emitter>>),
}

impl Realtime {
    /// Sends `event` to the sockets in `rooms` on every node (each socket once), except `except`
    /// (a socket id, for "to the others in the room"). Nothing once the server is closed.
    pub async fn emit_to(&self, rooms: Vec<String>, event: &str, data: &Value) {
        let result = match self {
            Realtime::Local(io) => match io.of(ROOT) {
                Some(root) => root.to(rooms).emit(event, data).await,
                None => return,
            }
            .map_err(|e| e.to_string()),
            Realtime::Redis(io) => match io.of(ROOT) {
                Some(root) => root.to(rooms).emit(event, data).await,
                None => return,
            }
            .map_err(|e| e.to_string()),
        };
        if let Err(error) = result {
            tracing::debug!(event, %error, "some sockets did not take the event");
        }
    }

    /// Sends `event` of conversation `conversation_id` to this node's sockets in `rooms` (each
    /// socket once); a socket joining that conversation gets it after its join's answer. A
    /// socket whose outgoing buffer is full has stopped reading: it is disconnected rather than
    /// left to grow, and catches up with `since` when it comes back.
    pub async fn emit_local(
        &self,
        conversation_id: u64,
        rooms: Vec<String>,
        event: &'static str,
        data: &Value,
    ) {
        match self {
            Realtime::Local(io) => {
                if let Some(root) = io.of(ROOT) {
                    emit_each(
                        root.local().to(rooms).sockets(),
                        conversation_id,
                        event,
                        data,
                    );
                }
            }
            Realtime::Redis(io) => {
                if let Some(root) = io.of(ROOT) {
                    emit_each(
                        root.local().to(rooms).sockets(),
                        conversation_id,
                        event,
                        data,
                    );
                }
            }
        }
        crate::metrics::socket_event_out(event);
    }

    /// Tells this node's sockets that it is going away, so that clients reconnect (to another
    /// node, or to this one restarted) and join again with `since` at once, rather than after
    /// a ping timeout.
    pub async fn announce_shutdown(&self) {
        let notice = json!({
            "reason": "shutdown",
            "message": "the server is restarting: reconnect, then join again with since",
        });
        match self {
            Realtime::Local(io) => {
                if let Some(root) = io.of(ROOT) {
                    for socket in root.local().sockets() {
                        emit_one(&socket, SHUTDOWN_EVENT, &notice);
                    }
                }
            }
            Realtime::Redis(io) => {
                if let Some(root) = io.of(ROOT) {
                    for socket in root.local().sockets() {
                        emit_one(&socket, SHUTDOWN_EVENT, &notice);
                    }
                }
            }
        }
    }

    /// Closes every socket's transport on this node (shutdown): no Socket.IO disconnect and no
    /// Engine.IO close packet (vendor/engineioxide), so clients reconnect by themselves. Emits
    /// after this do nothing.
    pub async fn close(&self) {
        match self {
            Realtime::Local(io) => io.close().await,
            Realtime::Redis(io) => io.close().await,
        }
    }

    /// Sockets connected to this node.
    pub fn local_sockets(&self) -> usize {
        match self {
            Realtime::Local(io) => io.of(ROOT).map_or(0, |root| root.sockets().len()),
            Realtime::Redis(io) => io.of(ROOT).map_or(0, |root| root.sockets().len()),
        }
    }
}

/// The event a socket gets just before the server closes its transport on shutdown.
pub const SHUTDOWN_EVENT: &str = "server_shutdown";

/// The one namespace. socketioxide's shortcuts on `SocketIo` panic once it is closed; its
/// operators, looked up through `of`, do not.
const ROOT: &str = "/";

fn emit_each<A: Adapter>(
    sockets: Vec<SocketRef<A>>,
    conversation_id: u64,
    event: &'static str,
    data: &Value,
) {
    for socket in sockets {
        match socket.extensions.get::<JoinHolds>() {
            Some(holds) => holds.emit_or_hold(&socket, conversation_id, event, data),
            None => emit_one(&socket, event, data),
        }
    }
}

fn emit_one<A: Adapter>(socket: &SocketRef<A>, event: &str, data: &Value) {
    // A socket that has missed an event gets nothing more before its disconnect: what it
    // received stays a gap-free prefix, and `since` fills in the rest.
    if socket.extensions.get::<Overflowed>().is_some() {
        return;
    }
    if let Err(socketioxide::SendError::Socket(socketioxide::SocketError::InternalChannelFull)) =
        socket.emit(event, data)
    {
        disconnect_overflowed(socket.clone());
    }
}

/// Marks a socket whose buffer overflowed: it has missed an event, so it must not go on as if
/// it had not. socketioxide cannot queue a disconnect packet into a full buffer, so the packet is
/// offered again until there is room (the client read something) or the heartbeat, which cannot
/// queue its ping either, closes the connection. Either way the client reconnects and catches up
/// with `since`.
fn disconnect_overflowed<A: Adapter>(socket: SocketRef<A>) {
    if socket.extensions.get::<Overflowed>().is_some() {
        return;
    }
    socket.extensions.insert(Overflowed);
    tracing::info!(sid = %socket.id, "socket stopped reading; disconnecting it");
    crate::metrics::socket_overflowed();
    tokio::spawn(async move {
        while socket.connected() {
            if socket.clone().disconnect().is_ok() {
                return;
            }
            tokio::time::sleep(OVERFLOW_RETRY).await;
        }
    });
}

#[derive(Clone, Copy)]
struct Overflowed;

/// Builds the Socket.IO server on the configured adapter and registers its handlers. Returns the
/// handle and a function that adds its layer to the router.
pub async fn build(
    config: &Config,
    state: App,
    in_flight: Arc<InFlightEvents>,
) -> anyhow::Result<(Realtime, Box<dyn FnOnce(Router) -> Router + Send>)> {
    let builder = SocketIo::builder()
        .with_state(state.clone())
        .with_state(in_flight)
        // The payload limit covers long-polling; websocket messages and frames have their own.
        .max_payload(MAX_PACKET_BYTES)
        .ws_max_message_size(MAX_PACKET_BYTES as usize)
        .ws_max_frame_size(MAX_PACKET_BYTES as usize)
        // Most packets are small; a smaller read buffer per socket keeps idle sockets cheap.
        .ws_read_buffer_size(1024)
        .max_buffer_size(config.sockets.buffer_packets)
        .ping_interval(config.sockets.ping_interval)
        .ping_timeout(config.sockets.ping_timeout)
        .transports([TransportType::Polling, TransportType::Websocket]);
    match &config.redis_url {
        None => {
            let (layer, io) = builder.build_layer();
            io.ns(
                "/",
                connect::on_connect::<LocalAdapter>.with(connect::authenticate::<LocalAdapter>),
            );
            Ok((
                Realtime::Local(io),
                Box::new(move |router: Router| router.layer(layer)),
            ))
        }
        Some(url) => {
            let client = redis::Client::open(resp3(url))?;
            // Deployments sharing a Redis keep their rooms apart by the channel prefix.
            let adapter_config =
                RedisAdapterConfig::default().with_prefix(config.redis_prefix.clone());
            let adapter = RedisAdapterCtr::new_with_redis_config(&client, adapter_config).await?;
            let (layer, io) = builder
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            io.ns(
                "/",
                connect::on_connect::<RedisAdapter<Emitter>>
                    .with(connect::authenticate::<RedisAdapter<Emitter>>),
            )
            .await?;
            Ok((
                Realtime::Redis(io),
                Box::new(move |router: Router| router.layer(layer)),
            ))
        }
    }
}

/// The adapter's driver needs RESP3.
fn resp3(url: &str) -> String {
    if url.contains("protocol=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&protocol=resp3")
    } else {
        format!("{url}?protocol=resp3")
    }
}

pub use broadcaster::Broadcaster;
pub use connect::{MANAGER_SOCKET_PATH, Refused, ViaManagerPath, detach_request_head};
pub use events::decode_client_payload;
pub use in_flight::{ACK_FLUSH, FINISH_WAIT, InFlightEvents};
pub use watchers::{PRESENCE_EVENT, announce_presence, watch_sessions};

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_server_takes_broadcasts_without_panicking() {
        let (_layer, io) = SocketIo::new_layer();
        io.ns(ROOT, async |_: SocketRef| {});
        let realtime = Realtime::Local(io);
        realtime.close().await;
        // The broadcaster may still be folding the log while the server shuts down.
        let rooms = vec![STAFF_ROOM.to_string()];
        realtime
            .emit_to(rooms.clone(), "new_message", &json!({}))
            .await;
        realtime
            .emit_local(1, rooms, "new_message", &json!({}))
            .await;
        assert_eq!(realtime.local_sockets(), 0);
    }
}
