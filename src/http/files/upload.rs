//! `POST /api/chat/upload`: the multipart form streamed, hashed, checked and stored, then the
//! upload recorded as a command on its conversation.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::body::BodyDataStream;
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::{StatusCode, header};
use bytes::{Bytes, BytesMut};
use events::{ConversationCommand, MessageType, Role};
use futures::{Stream, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, SemaphorePermit};
use utoipa::ToSchema;

use crate::app::access::{limit_key, readable, within_limit};
use crate::app::ids::wire_id;
use crate::app::{App, AppError, Origin};
use crate::auth::MAX_JSON_BODY;
use crate::commands::Intent;
use crate::files;
use crate::http::extract::Caller;
use crate::limits::LimitKind;
use crate::wire::{ErrorCode, success};

/// What multipart framing and the small fields may add to the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Largest value of a text field (conversation_id, message_type).
const MAX_TEXT_FIELD: u64 = 256;
/// An upload reads this much before it needs one of the node's upload slots: as much as any
/// signed JSON request may hold, so an upload that stalls early holds nothing others wait for.
const UNSLOTTED_BYTES: u64 = MAX_JSON_BODY as u64;

/// The upload's answer (201): the spec's fields, plus the kind and, for images, the size.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    pub file_id: String,
    /// Signed and expiring: it loads without headers.
    pub file_url: String,
    pub filename: String,
    pub file_size: u64,
    pub mime_type: String,
    /// `image` or `file`: the message type that may carry it.
    pub message_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// The multipart form, once read.
#[derive(Default)]
struct UploadForm {
    file: Option<Bytes>,
    file_name: Option<String>,
    declared_type: Option<String>,
    conversation_id: Option<String>,
    message_type: Option<String>,
}

/// The upload's multipart form, for the document (the handler streams the parts itself).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct UploadFormDoc {
    /// The bytes; their type is detected from them, whatever the part's Content-Type says.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// The conversation the file is for (the caller's own, for users).
    conversation_id: u64,
    /// `image` or `file`; empty or absent: decided from the bytes.
    #[schema(pattern = "^(image|file)?$")]
    message_type: Option<String>,
}

/// POST /api/chat/upload
#[utoipa::path(
    post,
    path = "/api/chat/upload",
    tag = "files",
    request_body(content = UploadFormDoc, content_type = "multipart/form-data", description = "`file` (the bytes), `conversation_id`, `message_type` (`image` or `file`)"),
    responses(
        (status = 201, description = "Stored; image and file messages may now carry its `file_id`", body = crate::wire::Success<UploadView>),
        (status = 400, description = "VALIDATION_ERROR", body = crate::wire::ErrorBody),
        (status = 401, description = "INVALID_SIGNATURE, STALE_TIMESTAMP, REPLAYED_REQUEST or UNAUTHORIZED", body = crate::wire::ErrorBody),
        (status = 403, description = "FORBIDDEN: not the caller's conversation, or an auditor", body = crate::wire::ErrorBody),
        (status = 404, description = "NOT_FOUND: no such conversation", body = crate::wire::ErrorBody),
        (status = 408, description = "REQUEST_TIMEOUT: the body stopped arriving for CHAT_UPLOAD_IDLE_TIMEOUT_MS, or did not arrive within CHAT_UPLOAD_TIMEOUT_MS", body = crate::wire::ErrorBody),
        (status = 409, description = "CONFLICT: the conversation is archived", body = crate::wire::ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE: over CHAT_MAX_UPLOAD_BYTES, or an image over CHAT_MAX_IMAGE_PIXELS", body = crate::wire::ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE: a type not allowed, or bytes that are not what was declared", body = crate::wire::ErrorBody),
        (status = 429, description = "RATE_LIMITED: 10 uploads per minute, or CHAT_UPLOADS_PER_CALLER uploads of the caller already in progress", body = crate::wire::ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = []))
)]
pub async fn upload(
    State(state): State<App>,
    origin: Origin,
    OriginalUri(uri): OriginalUri,
    request: Request,
) -> Result<(StatusCode, Json<crate::wire::Success<UploadView>>), AppError> {
    let (mut parts, body) = request.into_parts();
    // The signature itself needs the whole body; what can be refused without it is refused
    // before the body is read or anything is held for it.
    state.auth.check_signature_headers(&parts.headers)?;
    let Caller(session) = Caller::from_request_parts(&mut parts, &state).await?;
    if session.role == Role::Auditor {
        return Err(AppError::forbidden("auditors have read-only access"));
    }
    let attachments = &state.attachments;
    let limit = attachments.max_upload_bytes;
    let declared_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > limit + MULTIPART_OVERHEAD) {
        return Err(too_large(limit));
    }
    let boundary = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok())
        .ok_or_else(|| AppError::validation("the body must be multipart/form-data"))?;
    let _in_progress = attachments
        .per_caller
        .begin(limit_key(&session))
        .ok_or_else(|| too_many_in_progress(attachments))?;
    within_limit(&state, &session, LimitKind::Uploads).await?;

    // Held from the body's first bytes past UNSLOTTED_BYTES until the answer: the file is in
    // memory until it is stored.
    let slot = OnceLock::new();
    // Hash every raw byte for the signature while multer parses the same stream.
    let body_hash = Arc::new(Mutex::new(Sha256::new()));
    let hashing = body_hash.clone();
    let paced = paced_body(
        body.into_data_stream(),
        attachments.idle_timeout,
        &attachments.in_flight,
        &slot,
    );
    let stream = paced.map(move |chunk| {
        if let Ok(bytes) = &chunk
            && let Ok(mut hash) = hashing.lock()
        {
            hash.update(bytes);
        }
        chunk
    });
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .whole_stream(limit + MULTIPART_OVERHEAD)
            .for_field("conversation_id", MAX_TEXT_FIELD)
            .for_field("message_type", MAX_TEXT_FIELD),
    );
    let mut multipart = multer::Multipart::with_constraints(stream, boundary, constraints);
    let form = tokio::time::timeout(attachments.body_timeout, read_form(&mut multipart, limit))
        .await
        .map_err(|_| {
            AppError::new(
                ErrorCode::RequestTimeout,
                format!(
                    "the upload did not arrive within {} s",
                    attachments.body_timeout.as_secs_f64()
                ),
            )
        })??;
    drop(multipart);

    let body_sha256 = body_hash
        .lock()
        .map(|hash| hex::encode(hash.clone().finalize()))
        .map_err(|_| AppError::internal())?;
    let path_and_query = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    state
        .auth
        .verify_request_hashed(
            parts.method.as_str(),
            path_and_query,
            &parts.headers,
            &body_sha256,
        )
        .await?;

    let conversation_id = form
        .conversation_id
        .as_deref()
        .map(str::trim)
        .ok_or_else(|| AppError::validation("conversation_id is required"))?
        .parse::<u64>()
        .map_err(|_| AppError::validation("conversation_id must be a positive integer"))
        .and_then(|id| wire_id(id, "conversation_id"))?;
    let requested_kind = match form.message_type.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => match raw.parse::<MessageType>() {
            Ok(kind @ (MessageType::Image | MessageType::File)) => Some(kind),
            _ => return Err(AppError::validation("message_type must be image or file")),
        },
    };
    let bytes = form
        .file
        .ok_or_else(|| AppError::validation("the form needs a file field"))?;
    if bytes.is_empty() {
        return Err(AppError::validation("the file is empty"));
    }
    state.fresh_for(&session).await;
    readable(&state, &session, conversation_id).await?;

    let detected = files::detect(&bytes).ok_or_else(|| refused(files::not_allowed()))?;
    if let Some(kind) = requested_kind
        && kind != detected.kind
    {
        return Err(unsupported(format!(
            "message_type is {kind} but the bytes are {}",
            detected.mime_type
        )));
    }
    if let Some(declared) = &form.declared_type
        && !files::declared_matches(declared, &detected)
    {
        return Err(unsupported(format!(
            "the file was declared as {declared} but its bytes are {}",
            detected.mime_type
        )));
    }
    let (width, height) = files::image_size(&detected, &bytes, state.attachments.max_image_pixels)
        .map_err(refused)?;

    let file_id = files::new_file_id();
    let path = files::storage_path(crate::clock::now_micros(), &file_id, detected.extension);
    let file = files::uploaded_file(
        file_id.clone(),
        &bytes,
        &detected,
        (width, height),
        form.file_name.as_deref(),
        path.clone(),
    );
    // The bytes are stored before the event is written: an event never names a missing file.
    // A refused command leaves an orphan, which is removed at once.
    state
        .attachments
        .store
        .put(&path, bytes)
        .await
        .map_err(|error| {
            tracing::error!(%error, "storing an upload failed");
            AppError::unavailable()
        })?;
    let command = ConversationCommand::UploadFile {
        actor: session.actor(),
        file: file.clone(),
    };
    if let Err(error) = state
        .execute(
            &origin,
            &session,
            Intent::On(conversation_id, command),
            None,
        )
        .await
    {
        if let Err(cleanup) = state.attachments.store.delete(&path).await {
            tracing::warn!(%cleanup, path, "an upload the domain refused stays in the store");
        }
        return Err(error);
    }
    crate::metrics::upload_stored(file.size);
    let view = UploadView {
        file_url: state.attachments.url(&path),
        file_id,
        filename: file.original_name,
        file_size: file.size,
        mime_type: file.mime_type,
        message_type: file.kind.as_str().to_string(),
        width,
        height,
    };
    Ok((StatusCode::CREATED, Json(success(view))))
}

/// Why an upload's body stream ended early.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("no piece of the body arrived for {} s", .0.as_secs_f64())]
    Stalled(Duration),
    #[error("the upload slots are closed")]
    NoSlot,
    #[error("the request body could not be read")]
    Read(#[source] axum::Error),
}

/// The request body with an idle timeout between its pieces, taking one of `slots` into `slot`
/// once more than [`UNSLOTTED_BYTES`] have arrived. The wait for a slot is not idle time (the
/// client is not the one waiting); the route's overall deadline covers it.
fn paced_body<'a, 's: 'a>(
    body: BodyDataStream,
    idle: Duration,
    slots: &'s Semaphore,
    slot: &'a OnceLock<SemaphorePermit<'s>>,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send + 'a {
    // (the body, bytes read so far, whether it has ended)
    futures::stream::unfold(
        (body, 0u64, false),
        move |(mut body, read, ended)| async move {
            if ended {
                return None;
            }
            let chunk = match tokio::time::timeout(idle, body.next()).await {
                Err(_) => return Some((Err(BodyError::Stalled(idle)), (body, read, true))),
                Ok(None) => return None,
                Ok(Some(Err(error))) => {
                    return Some((Err(BodyError::Read(error)), (body, read, true)));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            let read = read + chunk.len() as u64;
            if read > UNSLOTTED_BYTES && slot.get().is_none() {
                match slots.acquire().await {
                    // Only this stream sets it, once.
                    Ok(permit) => drop(slot.set(permit)),
                    Err(_) => return Some((Err(BodyError::NoSlot), (body, read, true))),
                }
            }
            Some((Ok(chunk), (body, read, false)))
        },
    )
}

/// Reads an upload form from a whole multipart body with the route's rules (the fuzz target's
/// way in; the route streams the body instead).
pub async fn read_whole_form(
    body: bytes::Bytes,
    boundary: &str,
    limit: u64,
) -> Result<(), AppError> {
    let parts = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(parts, boundary);
    read_form(&mut multipart, limit).await.map(drop)
}

async fn read_form(
    multipart: &mut multer::Multipart<'_>,
    limit: u64,
) -> Result<UploadForm, AppError> {
    let mut form = UploadForm::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(form),
            Err(error) => return Err(multipart_error(&error, limit)),
        };
        match field.name() {
            Some("file") => {
                if form.file.is_some() {
                    return Err(AppError::validation("only one file per upload"));
                }
                form.file_name = field.file_name().map(str::to_string);
                form.declared_type = field.content_type().map(|mime| mime.to_string());
                let mut field = field;
                let mut buffer = BytesMut::new();
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if (buffer.len() + chunk.len()) as u64 > limit {
                                return Err(too_large(limit));
                            }
                            buffer.extend_from_slice(&chunk);
                        }
                        Ok(None) => break,
                        Err(error) => return Err(multipart_error(&error, limit)),
                    }
                }
                form.file = Some(buffer.freeze());
            }
            Some(name @ ("conversation_id" | "message_type")) => {
                let is_conversation = name == "conversation_id";
                let text = field
                    .text()
                    .await
                    .map_err(|error| multipart_error(&error, limit))?;
                if is_conversation {
                    form.conversation_id = Some(text);
                } else {
                    form.message_type = Some(text);
                }
            }
            // Unknown fields are read past (the whole stream is bounded).
            _ => {
                let mut field = field;
                while let Some(_chunk) = field
                    .chunk()
                    .await
                    .map_err(|error| multipart_error(&error, limit))?
                {}
            }
        }
    }
}

fn multipart_error(error: &multer::Error, limit: u64) -> AppError {
    match error {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large(limit)
        }
        multer::Error::StreamReadFailed(cause) => match cause.downcast_ref::<BodyError>() {
            Some(stalled @ BodyError::Stalled(_)) => {
                AppError::new(ErrorCode::RequestTimeout, stalled.to_string())
            }
            Some(BodyError::NoSlot) => AppError::unavailable(),
            Some(BodyError::Read(_)) | None => {
                AppError::validation("the request body could not be read")
            }
        },
        other => AppError::validation(format!("malformed multipart body: {other}")),
    }
}

/// Retry-After: by then one of the caller's uploads has either moved or been cut off as idle.
fn too_many_in_progress(attachments: &files::Attachments) -> AppError {
    let limit = attachments.per_caller.limit();
    let mut error = AppError::new(
        ErrorCode::RateLimited,
        format!("at most {limit} uploads of one caller may be in progress at once"),
    );
    error.retry_after = Some(attachments.idle_timeout.as_secs().max(1));
    error
}

fn too_large(limit: u64) -> AppError {
    AppError::new(
        ErrorCode::PayloadTooLarge,
        format!("uploads are limited to {limit} bytes"),
    )
}

fn unsupported(message: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::UnsupportedMediaType, message)
}

/// The transport's answer to bytes that cannot be kept.
fn refused(refusal: files::FileRefusal) -> AppError {
    match refusal {
        files::FileRefusal::Unsupported(message) => unsupported(message),
        files::FileRefusal::TooManyPixels(message) => {
            AppError::new(ErrorCode::PayloadTooLarge, message)
        }
    }
}
