//! The axum glue: the signature middleware of the `/api` router and the [`Caller`] extractor.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::app::{App, AppError};
use crate::auth::{Auth, AuthError, MAX_JSON_BODY, Session};
use crate::wire::ErrorCode;

/// Middleware for the `/api` router: buffers the body (up to [`MAX_JSON_BODY`]), checks the app
/// signature and the replay guard, and passes the request on with the same body bytes.
pub async fn require_signature(State(state): State<App>, request: Request, next: Next) -> Response {
    match check_signature(&state.auth, request, MAX_JSON_BODY).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// The work of [`require_signature`] with another body limit (an upload route's middleware can
/// call it with the upload limit). The path and query are the ones the client sent, before any
/// `nest` stripped a prefix.
pub async fn check_signature(
    auth: &Auth,
    request: Request,
    limit: usize,
) -> Result<Request, AppError> {
    let (parts, body) = request.into_parts();
    let bytes = read_limited(&parts, body, limit).await?;
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map(|original| &original.0)
        .unwrap_or(&parts.uri);
    let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    auth.verify_request(
        parts.method.as_str(),
        path_and_query,
        &parts.headers,
        &bytes,
    )
    .await?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Reads the request's body into memory, refusing one over `limit` bytes with 413
/// `PAYLOAD_TOO_LARGE` (the limit the signature middleware applies, for routes that
/// authenticate otherwise).
pub async fn buffer_body(request: Request, limit: usize) -> Result<Request, AppError> {
    let (parts, body) = request.into_parts();
    let bytes = read_limited(&parts, body, limit).await?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

async fn read_limited(parts: &Parts, body: Body, limit: usize) -> Result<Bytes, AppError> {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|n| *n > limit as u64) {
        if declared <= DRAIN_LIMIT as u64 {
            drain(body.into_data_stream(), DRAIN_LIMIT).await;
        }
        return Err(too_large(limit));
    }
    read_body(body, limit).await
}

/// A refused body up to this size is read to its end before the 413 goes out: a server that
/// answers and closes while the client is still sending resets the connection, and the client
/// sees a network error instead of the answer. Larger bodies are cut off.
const DRAIN_LIMIT: usize = 1024 * 1024;
/// How long a drain waits for the next chunk.
const DRAIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards up to `limit` more bytes of `stream`.
async fn drain(mut stream: axum::body::BodyDataStream, limit: usize) {
    let mut left = limit;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(DRAIN_PATIENCE, stream.next()).await {
        if chunk.len() > left {
            return;
        }
        left -= chunk.len();
    }
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, AppError> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            AppError::new(
                ErrorCode::ValidationError,
                "the request body could not be read",
            )
        })?;
        if buffer.len() + chunk.len() > limit {
            drain(
                stream,
                DRAIN_LIMIT.saturating_sub(buffer.len() + chunk.len()),
            )
            .await;
            return Err(too_large(limit));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

fn too_large(limit: usize) -> AppError {
    AppError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The caller behind `Authorization: Bearer <token>`. A missing header, another scheme or an
/// unknown, expired or malformed session is 401 `UNAUTHORIZED`; an unreachable session store
/// is 503 `UNAVAILABLE`. Resolved once per request (kept in the request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub Session);

impl FromRequestParts<App> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &App) -> Result<Self, AppError> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let token =
            bearer_token(&parts.headers).ok_or_else(|| AppError::from(AuthError::Unauthorized))?;
        let session = state.auth.session(token).await?;
        let caller = Caller(session);
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

pub use crate::auth::bearer_token;
