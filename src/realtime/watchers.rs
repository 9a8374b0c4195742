//! What runs beside the sockets on every node: announcing presence changes to the staff, and
//! ending the connections whose session has ended.

use futures::StreamExt;
use serde_json::json;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::{ROOT, Realtime, SESSION_CHECK, SESSION_CHECKS_IN_FLIGHT, STAFF_ROOM, SocketCaller};
use crate::app::App;
use crate::wire::ErrorCode;

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
