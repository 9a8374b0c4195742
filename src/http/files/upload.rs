//! `POST /api/chat/upload`: the multipart form streamed, hashed, checked and stored, then the
//! upload recorded as a command on its conversation.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{StatusCode, header};
use bytes::{Bytes, BytesMut};
use events::{ConversationCommand, MessageType, Role, UploadedFile};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::app::access::{readable, within_limit};
use crate::app::ids::wire_id;
use crate::app::{App, AppError, Origin};
use crate::commands::Intent;
use crate::files::{self, DetectedType};
use crate::http::extract::Caller;
use crate::limits::LimitKind;
use crate::wire::success;

/// What multipart framing and the small fields may add to the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Largest value of a text field (conversation_id, message_type).
const MAX_TEXT_FIELD: u64 = 256;

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
        (status = 409, description = "CONFLICT: the conversation is archived", body = crate::wire::ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE: over CHAT_MAX_UPLOAD_BYTES, or an image over CHAT_MAX_IMAGE_PIXELS", body = crate::wire::ErrorBody),
        (status = 415, description = "UNSUPPORTED_MEDIA_TYPE: a type not allowed, or bytes that are not what was declared", body = crate::wire::ErrorBody),
        (status = 429, description = "RATE_LIMITED (10 uploads per minute)", body = crate::wire::ErrorBody),
        (status = 503, description = "UNAVAILABLE", body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = []))
)]
pub async fn upload(
    State(state): State<App>,
    origin: Origin,
    Caller(session): Caller,
    OriginalUri(uri): OriginalUri,
    request: Request,
) -> Result<(StatusCode, Json<crate::wire::Success<UploadView>>), AppError> {
    if session.role == Role::Auditor {
        return Err(AppError::forbidden("auditors have read-only access"));
    }
    let limit = state.attachments.max_upload_bytes;
    let (parts, body) = request.into_parts();
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
    within_limit(&state, &session, LimitKind::Uploads).await?;
    let _slot = state
        .attachments
        .in_flight
        .acquire()
        .await
        .map_err(|_| AppError::unavailable())?;

    // Hash every raw byte for the signature while multer parses the same stream.
    let body_hash = Arc::new(Mutex::new(Sha256::new()));
    let hashing = body_hash.clone();
    let stream = body.into_data_stream().map(move |chunk| {
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
    let form = read_form(&mut multipart, limit).await?;
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

    let detected = files::detect(&bytes).ok_or_else(|| {
        unsupported("the file's type is not allowed (images: JPEG, PNG, GIF, WebP, HEIC; files: PDF, plain text, ZIP)")
    })?;
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
    let (width, height) = image_size(&state, &detected, &bytes)?;

    let file_id = files::new_file_id();
    let path = files::storage_path(crate::clock::now_micros(), &file_id, detected.extension);
    let file = UploadedFile {
        file_id: file_id.clone(),
        kind: detected.kind,
        original_name: files::offered_name(
            form.file_name.as_deref(),
            detected.kind.as_str(),
            detected.extension,
        ),
        size: bytes.len() as u64,
        mime_type: detected.mime_type.to_string(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        path: path.clone(),
        width,
        height,
    };
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
        other => AppError::validation(format!("malformed multipart body: {other}")),
    }
}

fn too_large(limit: u64) -> AppError {
    AppError::new(
        crate::wire::ErrorCode::PayloadTooLarge,
        format!("uploads are limited to {limit} bytes"),
    )
}

fn unsupported(message: impl Into<String>) -> AppError {
    AppError::new(crate::wire::ErrorCode::UnsupportedMediaType, message)
}

/// Width and height from the image's header alone (nothing is decoded), refused above the
/// pixel limit: a small file can declare a huge canvas (a decompression bomb).
fn image_size(
    state: &App,
    detected: &DetectedType,
    bytes: &[u8],
) -> Result<(Option<u32>, Option<u32>), AppError> {
    if detected.kind != MessageType::Image {
        return Ok((None, None));
    }
    let size = imagesize::blob_size(bytes)
        .map_err(|_| unsupported("the image's header cannot be read"))?;
    let (width, height) = (size.width as u64, size.height as u64);
    let limit = state.attachments.max_image_pixels;
    if width.saturating_mul(height) > limit {
        return Err(AppError::new(
            crate::wire::ErrorCode::PayloadTooLarge,
            format!("the image is {width}x{height} pixels; at most {limit} pixels are allowed"),
        ));
    }
    let width = u32::try_from(width).map_err(|_| unsupported("the image is too wide"))?;
    let height = u32::try_from(height).map_err(|_| unsupported("the image is too tall"))?;
    Ok((Some(width), Some(height)))
}
