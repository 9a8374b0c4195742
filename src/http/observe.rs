//! Request observability: owns the request id (`X-Request-Id`), the per-request tracing span and
//! completion log line, the HTTP metrics middleware, and the `/metrics` route.
//!
//! Layer order matters: `request_id` must be the outer layer so that everything inside it,
//! `track_metrics` and every handler included, logs inside the `request` span. Metric labels use
//! the matched route template, never the raw path (a client must not be able to mint series).

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::peer::{ClientAddr, TrustedProxies};

/// The header carrying the request id in both directions.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The media type Prometheus scrapes in text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The server's id of one request, made here for every request. Found in the request
/// extensions of every handler behind [`request_id`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh id: 16 random bytes as 32 lowercase hex characters.
    pub fn generate() -> RequestId {
        RequestId(hex::encode(rand::random::<[u8; 16]>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `X-Request-Id` a client sent, when well formed: logged and recorded beside the server's
/// id, never in its place (a client could otherwise pass its requests off as others').
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientRequestId(String);

impl ClientRequestId {
    /// Takes a client-supplied id when it is 1..=64 characters of `[A-Za-z0-9._-]`.
    pub fn parse(raw: &str) -> Option<ClientRequestId> {
        is_valid_request_id(raw).then(|| ClientRequestId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a client-supplied request id may be kept: short, and only characters that are safe
/// in a header, a log line and a file name.
pub fn is_valid_request_id(raw: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Middleware: gives the request an id, runs the rest of it inside a `request` span carrying that
/// id (and the client's own, when it sent a valid one), logs one line when it finishes, and
/// answers with the server's id in `X-Request-Id`.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = RequestId::generate();
    let client_id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(ClientRequestId::parse);
    request.extensions_mut().insert(id.clone());
    if let Some(client_id) = &client_id {
        request.extensions_mut().insert(client_id.clone());
    }

    // The path without the query string: queries may carry tokens.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        client_request_id = tracing::field::Empty,
        method = %request.method(),
        path = %request.uri().path(),
    );
    if let Some(client_id) = &client_id {
        span.record(
            "client_request_id",
            tracing::field::display(client_id.as_str()),
        );
    }
    let mut response = async move {
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = elapsed_ms(started),
            "request finished"
        );
        response
    }
    .instrument(span)
    .await;

    // Always valid: hex.
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// Middleware: records where the request came from as [`ClientAddr`] (the peer, or behind a
/// trusted proxy the client it forwarded for) for every handler and for Socket.IO, whose
/// sockets keep their first request.
pub async fn client_address(
    axum::extract::State(trusted): axum::extract::State<std::sync::Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    if let Some(peer) = peer {
        let forwarded_for = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok());
        let client = trusted.client(peer, forwarded_for);
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

/// Middleware: counts each request and records its latency, labelled by route template, method
/// and status. Add it with `Router::layer` so it sees the `MatchedPath` of the routed request.
pub async fn track_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    crate::metrics::http_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`: the process's metrics for a Prometheus scrape.
pub async fn metrics_route() -> impl IntoResponse {
    (
        [(CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        crate::metrics::render(),
    )
}

/// The method as a metric label; extension methods (any token a client sends) fold into
/// "OTHER" so they cannot mint series.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

fn elapsed_ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_of_safe_characters_up_to_64_long_are_accepted() {
        for ok in [
            "a",
            "abc-123_DEF.456",
            "0123456789abcdef0123456789abcdef",
            &"x".repeat(64),
        ] {
            assert!(is_valid_request_id(ok), "{ok:?}");
        }
    }

    #[test]
    fn empty_long_or_unsafe_request_ids_are_refused() {
        for bad in [
            "",
            &"x".repeat(65),
            "has space",
            "new\nline",
            "semi;colon",
            "slash/",
            "quote\"",
            "é",
            "{id}",
        ] {
            assert!(!is_valid_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn generated_request_ids_are_32_hex_characters_and_valid() {
        let id = RequestId::generate();
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().chars().all(|c| c.is_ascii_hexdigit()));
        assert!(is_valid_request_id(id.as_str()));
    }

    #[test]
    fn extension_methods_fold_into_one_label() {
        let custom = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&custom), "OTHER");
        assert_eq!(method_label(&Method::GET), "GET");
    }
}
