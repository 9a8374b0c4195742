//! The download route behind `file_url`: a signed link, or a session that may read the
//! conversation.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::access::readable;
use crate::app::{App, AppError};
use crate::auth::AuthError;
use crate::http::extract::ApiQuery;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// Unix seconds until which the link is valid (part of a signed `file_url`).
    expires: Option<i64>,
    /// The link's signature (part of a signed `file_url`).
    signature: Option<String>,
}

/// GET /uploads/chat/{year}/{month}/{day}/{name}: the file, to a session that may read its
/// conversation or to a request with a valid signed link.
#[utoipa::path(
    get,
    path = "/uploads/chat/{year}/{month}/{day}/{name}",
    tag = "files",
    params(
        ("year" = String, Path), ("month" = String, Path), ("day" = String, Path),
        ("name" = String, Path, description = "`<file_id>.<ext>`"),
        LinkQuery,
    ),
    responses(
        (status = 200, description = "The bytes, with the detected Content-Type, `X-Content-Type-Options: nosniff`, a Content-Disposition (inline for images) and a restrictive Content-Security-Policy"),
        (status = 400, description = "VALIDATION_ERROR: a malformed link parameter", body = crate::wire::ErrorBody),
        (status = 401, description = "UNAUTHORIZED: neither a signed link nor a session", body = crate::wire::ErrorBody),
        (status = 403, description = "FORBIDDEN: another user's file, or an invalid or expired link", body = crate::wire::ErrorBody),
        (status = 404, description = "NOT_FOUND", body = crate::wire::ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = crate::wire::ErrorBody),
    ),
    security((), ("bearer" = []))
)]
pub async fn download(
    State(state): State<App>,
    Path((year, month, day, name)): Path<(String, String, String, String)>,
    ApiQuery(link): ApiQuery<LinkQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let path = format!("uploads/chat/{year}/{month}/{day}/{name}");
    let file_id = name.split('.').next().unwrap_or_default();
    let well_formed = (32..=64).contains(&file_id.len())
        && file_id.bytes().all(|b| b.is_ascii_hexdigit())
        && [&year, &month, &day]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(AppError::not_found("no such file"));
    }

    let signed = match (link.expires, link.signature.as_deref()) {
        (Some(expires), Some(signature)) => {
            let now = crate::clock::now_micros().div_euclid(1_000_000);
            if !state
                .attachments
                .links
                .verify(&path, expires, signature, now)
            {
                return Err(AppError::new(
                    crate::wire::ErrorCode::Forbidden,
                    "the link is invalid or has expired",
                ));
            }
            true
        }
        _ => false,
    };
    let session = if signed {
        None
    } else {
        let token = crate::http::auth::bearer_token(&headers)
            .ok_or_else(|| AppError::from(AuthError::Unauthorized))?;
        let session = state.auth.session(token).await?;
        state.fresh_for(&session).await;
        Some(session)
    };

    let mut row = state.store.file(file_id).await?;
    if row.is_none() {
        // Just uploaded through another request: wait (bounded) for the read tables; if they
        // still lag, the lookup below answers as they stand.
        state
            .await_position(state.store.head_position().await?)
            .await;
        row = state.store.file(file_id).await?;
    }
    let row = row
        .filter(|row| row.path == path)
        .ok_or_else(|| AppError::not_found("no such file"))?;
    if let Some(session) = &session {
        readable(&state, session, row.conversation_id).await?;
    }

    let stored = state
        .attachments
        .store
        .get(&row.path)
        .await
        .map_err(|error| match error {
            object_store::Error::NotFound { .. } => {
                tracing::error!(
                    path = row.path,
                    "a recorded upload is missing from the store"
                );
                AppError::not_found("no such file")
            }
            error => {
                tracing::error!(%error, "reading an upload failed");
                AppError::unavailable()
            }
        })?;
    let length = stored.meta.size;
    let body = Body::from_stream(stored.into_stream());
    // Names recorded before bidirectional controls were removed at upload are cleaned here too;
    // the path's extension is the detected type's.
    let extension = row
        .path
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .unwrap_or("bin");
    let offered = crate::files::offered_name(Some(&row.original_name), &row.kind, extension);
    let disposition = content_disposition(row.kind == "image", &offered);
    let mut response = body.into_response();
    let headers = response.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(header::CONTENT_TYPE, &row.mime_type);
    set(header::CONTENT_LENGTH, &length.to_string());
    set(header::CONTENT_DISPOSITION, &disposition);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
    );
    set(header::CACHE_CONTROL, "private, max-age=3600");
    set(header::REFERRER_POLICY, "no-referrer");
    Ok(response)
}

/// RFC 6266: an ASCII fallback name and the exact name as RFC 8187 `filename*`.
pub(super) fn content_disposition(inline: bool, name: &str) -> String {
    let kind = if inline { "inline" } else { "attachment" };
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}
