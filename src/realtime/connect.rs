//! Connecting: the request head a socket keeps, the handshake's authentication (a token in
//! `auth.token`, an `Authorization: Bearer` header or a `token` query parameter, or the web
//! manager's cookie through its own path), and counting sockets into presence.

use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, State, TryData};

use super::{STAFF_ROOM, SocketCaller, events};
use crate::app::App;
use crate::wire::ErrorCode;

/// Where the web manager's Socket.IO client connects (under `/admin`, so that its cookie goes
/// along); the request is served as `/socket.io/`.
pub const MANAGER_SOCKET_PATH: &str = "/admin/socket.io";

/// Marks a Socket.IO request that came through [`MANAGER_SOCKET_PATH`]: only such a connection
/// may authenticate with the manager's cookie.
#[derive(Debug, Clone, Copy)]
pub struct ViaManagerPath;

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

pub(super) async fn authenticate<A: Adapter>(
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
        .filter(|token| !token.is_empty())
        .or_else(|| transport_token(socket.req_parts()));
    let (token, via_cookie) = match sent {
        Some(token) => (token, false),
        None => (
            manager_cookie(socket.req_parts()).ok_or(Refused {
                code: ErrorCode::Unauthorized,
                message: "a session token is required: auth.token, an Authorization: Bearer \
                          header or the token query parameter"
                    .into(),
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
    socket.extensions.insert(super::JoinHolds::default());
    socket.extensions.insert(SocketCaller { session, token });
    Ok(())
}

/// The token a client put on the connection's first request instead of the handshake's `auth`:
/// an `Authorization: Bearer` header (Socket.IO-Client-Swift's `.extraHeaders`, sent on the
/// polling requests and the websocket upgrade), else the `token` query parameter
/// (`.connectParams`). The request log never shows a query, so the token is not logged.
fn transport_token(request: &axum::http::request::Parts) -> Option<String> {
    if let Some(token) = crate::auth::bearer_token(&request.headers) {
        return Some(token.to_string());
    }
    let query = request.uri.query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "token")
        .map(|(_, token)| token.into_owned())
        .filter(|token| !token.is_empty())
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

pub(super) async fn on_connect<A: Adapter>(socket: SocketRef<A>, State(state): State<App>) {
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

use ::events::Role as events_role;
