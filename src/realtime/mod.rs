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
mod events;

use std::time::Duration;

use axum::Router;
use futures::StreamExt;
use serde_json::{Value, json};
use socketioxide::adapter::{Adapter, Emitter, LocalAdapter};
use socketioxide::extract::{SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::{SocketIo, TransportType};
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

use crate::app::App;
use crate::auth::Session;
use crate::config::Config;
use crate::wire::ErrorCode;

/// Largest Socket.IO packet a client may send (a 5,000-character message is about 20 KiB).
pub const MAX_PACKET_BYTES: u64 = 64 * 1024;
/// How often a socket that stopped reading is offered its disconnect packet again.
const OVERFLOW_RETRY: Duration = Duration::from_millis(50);
/// How often a connected socket's session is checked again.
const SESSION_CHECK: Duration = Duration::from_secs(3);
/// Session look-ups the watcher runs at once.
const SESSION_CHECKS_IN_FLIGHT: usize = 32;

pub const STAFF_ROOM: &str = "staff";

/// Where the web manager's Socket.IO client connects (under `/admin`, so that its cookie goes
/// along); the request is served as `/socket.io/`.
pub const MANAGER_SOCKET_PATH: &str = "/admin/socket.io";

/// Marks a Socket.IO request that came through [`MANAGER_SOCKET_PATH`]: only such a connection
/// may authenticate with the manager's cookie.
#[derive(Debug, Clone, Copy)]
pub struct ViaManagerPath;

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

    /// Sends `event` to this node's sockets in `rooms` (each socket once). A socket whose
    /// outgoing buffer is full has stopped reading: it is disconnected rather than left to grow,
    /// and catches up with `since` when it comes back.
    pub async fn emit_local(&self, rooms: Vec<String>, event: &str, data: &Value) {
        match self {
            Realtime::Local(io) => {
                if let Some(root) = io.of(ROOT) {
                    emit_each(root.local().to(rooms).sockets(), event, data);
                }
            }
            Realtime::Redis(io) => {
                if let Some(root) = io.of(ROOT) {
                    emit_each(root.local().to(rooms).sockets(), event, data);
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
                    emit_each(root.local().sockets(), SHUTDOWN_EVENT, &notice);
                }
            }
            Realtime::Redis(io) => {
                if let Some(root) = io.of(ROOT) {
                    emit_each(root.local().sockets(), SHUTDOWN_EVENT, &notice);
                }
            }
        }
    }

    /// Disconnects every socket of this node (shutdown). Emits after this do nothing.
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

/// The event a socket gets just before the server disconnects it on shutdown.
pub const SHUTDOWN_EVENT: &str = "server_shutdown";

/// The one namespace. socketioxide's shortcuts on `SocketIo` panic once it is closed; its
/// operators, looked up through `of`, do not.
const ROOT: &str = "/";

fn emit_each<A: Adapter>(sockets: Vec<SocketRef<A>>, event: &str, data: &Value) {
    for socket in sockets {
        // A socket that has missed an event gets nothing more before its disconnect: what it
        // received stays a gap-free prefix, and `since` fills in the rest.
        if socket.extensions.get::<Overflowed>().is_some() {
            continue;
        }
        if let Err(socketioxide::SendError::Socket(
            socketioxide::SocketError::InternalChannelFull,
        )) = socket.emit(event, data)
        {
            disconnect_overflowed(socket);
        }
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
) -> anyhow::Result<(Realtime, Box<dyn FnOnce(Router) -> Router + Send>)> {
    let builder = SocketIo::builder()
        .with_state(state.clone())
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
                on_connect::<LocalAdapter>.with(authenticate::<LocalAdapter>),
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
                on_connect::<RedisAdapter<Emitter>>.with(authenticate::<RedisAdapter<Emitter>>),
            )
            .await?;
            Ok((
                Realtime::Redis(io),
                Box::new(move |router: Router| router.layer(layer)),
            ))
        }
    }
}

/// Middleware for the Socket.IO path: gives the request its own copy of the URI and headers.
///
/// hyper parses them without copying, out of its read buffer (8 to 16 KiB), and engineioxide
/// keeps the request head for the connection's life, which would keep that whole buffer
/// allocated for every idle socket. Copies of a few hundred bytes let it go.
pub async fn detach_request_head(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let via_admin = path.starts_with(MANAGER_SOCKET_PATH);
    if !via_admin && !path.starts_with("/socket.io") {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let uri = if via_admin {
        // The manager's client connects under /admin so that its cookie goes along; the
        // Socket.IO server itself listens at /socket.io.
        parts.extensions.insert(ViaManagerPath);
        let path_and_query = parts.uri.path_and_query().map_or("", |pq| pq.as_str());
        path_and_query
            .strip_prefix("/admin")
            .unwrap_or(path_and_query)
            .to_string()
    } else {
        parts.uri.to_string()
    };
    if let Ok(uri) = axum::http::Uri::try_from(uri) {
        parts.uri = uri.clone();
        // The router keeps the URI as it arrived here too.
        parts.extensions.insert(axum::extract::OriginalUri(uri));
    }
    let mut headers = axum::http::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        if let Ok(value) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
            headers.append(name.clone(), value);
        }
    }
    parts.headers = headers;
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
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

/// Why a connection is refused. Its text is the contract's connect_error data,
/// `{"code", "message"}`, which the patched parser sends as is (see vendor/README.md).
#[derive(Debug)]
pub struct Refused {
    code: ErrorCode,
    message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = json!({"code": self.code, "message": self.message});
        write!(f, "{data}")
    }
}

impl std::error::Error for Refused {}

async fn authenticate<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<App>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refused> {
    let sent = auth
        .ok()
        .and_then(|auth| {
            auth.get("token")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|token| !token.is_empty());
    let (token, via_cookie) = match sent {
        Some(token) => (token, false),
        None => (
            manager_cookie(socket.req_parts()).ok_or(Refused {
                code: ErrorCode::Unauthorized,
                message: "a session token is required in auth.token".into(),
            })?,
            true,
        ),
    };
    let session = state.auth.session(&token).await.map_err(|error| Refused {
        code: error.code(),
        message: error.to_string(),
    })?;
    if via_cookie && !matches!(session.role, events_role::Admin | events_role::Auditor) {
        return Err(Refused {
            code: ErrorCode::Forbidden,
            message: "the web manager is for admins and auditors".into(),
        });
    }
    // socketioxide sends the CONNECT packet before it spawns the connect handler, so a client's
    // first event can arrive before that handler runs: the socket is made ready here instead.
    if matches!(session.role, events_role::Admin | events_role::Auditor) {
        socket.join(STAFF_ROOM);
    }
    events::register(&socket);
    socket.extensions.insert(SocketCaller { session, token });
    Ok(())
}

/// The web manager's cookie, accepted in place of `auth.token` only on a connection made
/// through the manager's path by a page of this very host: a WebSocket is not bound by the
/// same-origin policy, so without the `Origin` check any site could ride an admin's cookie.
fn manager_cookie(request: &axum::http::request::Parts) -> Option<String> {
    request.extensions.get::<ViaManagerPath>()?;
    if !crate::auth::cookie::same_origin(&request.headers) {
        return None;
    }
    crate::auth::cookie::cookie_token(&request.headers)
}

async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(state): State<App>) {
    let Some(caller) = socket.extensions.get::<SocketCaller>() else {
        let _ = socket.disconnect();
        return;
    };
    let (role, user_id) = (caller.session.role, caller.session.user_id);
    crate::metrics::socket_connected(1);
    state.presence.socket_connected(role, user_id).await;
    socket.on_disconnect(move |State(state): State<App>| async move {
        crate::metrics::socket_connected(-1);
        state.presence.socket_disconnected(role, user_id).await;
    });
}

/// Sends each presence change this node decided to the staff of every node (the Redis adapter
/// carries it across), so each change reaches each admin socket once.
pub fn announce_presence(
    realtime: Realtime,
    presence: std::sync::Arc<crate::presence::Presence>,
    mut stops: tokio::sync::watch::Receiver<bool>,
) {
    let mut changes = presence.subscribe();
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                change = changes.recv() => change,
                _ = stops.changed() => return,
            };
            match change {
                Ok(change) => {
                    let event = crate::wire::presence_event(&change);
                    realtime
                        .emit_to(vec![STAFF_ROOM.to_string()], PRESENCE_EVENT, &event)
                        .await;
                    crate::metrics::socket_event_out(PRESENCE_EVENT);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "presence changes were not announced");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// The event the staff get when someone comes online, goes offline or changes away.
pub const PRESENCE_EVENT: &str = "presence";

/// Ends, within seconds, the connections whose session was deleted or expired. One task per node
/// checks every socket of the node (each session once), rather than a task per socket: an idle
/// connection then costs no task of its own.
pub fn watch_sessions(
    realtime: Realtime,
    state: App,
    mut stops: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SESSION_CHECK) => {}
                _ = stops.changed() => return,
            }
            match &realtime {
                Realtime::Local(io) => match io.of(ROOT) {
                    Some(root) => end_ended_sessions(root.sockets(), &state).await,
                    None => return,
                },
                Realtime::Redis(io) => match io.of(ROOT) {
                    Some(root) => end_ended_sessions(root.sockets(), &state).await,
                    None => return,
                },
            }
        }
    });
}

async fn end_ended_sessions<A: Adapter>(sockets: Vec<SocketRef<A>>, state: &App) {
    let mut by_token: std::collections::HashMap<String, Vec<SocketRef<A>>> =
        std::collections::HashMap::new();
    for socket in sockets {
        if let Some(caller) = socket.extensions.get::<SocketCaller>() {
            by_token.entry(caller.token).or_default().push(socket);
        }
    }
    let checks = by_token.into_iter().map(|(token, sockets)| async move {
        // Only a definite "no such session" ends connections; an outage does not.
        if let Err(crate::auth::AuthError::Unauthorized) = state.auth.session(&token).await {
            for socket in sockets {
                let _ = socket.emit(
                    "error",
                    &json!({"code": ErrorCode::Unauthorized, "message": "the session has ended"}),
                );
                let _ = socket.disconnect();
            }
        }
    });
    futures::stream::iter(checks)
        .buffer_unordered(SESSION_CHECKS_IN_FLIGHT)
        .for_each(|()| async {})
        .await;
}

use ::events::Role as events_role;

pub use broadcaster::Broadcaster;
pub use events::decode_client_payload;

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
        realtime.emit_local(rooms, "new_message", &json!({})).await;
        assert_eq!(realtime.local_sockets(), 0);
    }
}
