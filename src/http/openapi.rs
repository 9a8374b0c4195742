//! The OpenAPI 3 document (`/api/openapi.json`), generated from the handlers' annotations, and
//! its browsable UI (`/api/docs`, assets embedded in the binary).

use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::views::{ConversationView, FeedbackView, LastMessageView, MessageView, Pagination};
use super::{audit, chat, files, health, search};

/// Every error answers with this envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `error`.
    #[schema(example = "error")]
    pub status: String,
    /// Human-readable; never internals.
    pub message: String,
    pub error_code: ErrorCode,
}

/// The contract's stable error codes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// 400: malformed JSON, wrong types, out-of-range paging, unknown status.
    ValidationError,
    /// 400: message content empty after trimming.
    EmptyMessage,
    /// 401: X-Signature missing or wrong.
    InvalidSignature,
    /// 401: X-Timestamp missing or more than 300 s from server time.
    StaleTimestamp,
    /// 401: the same signature seen again inside the 300 s window.
    ReplayedRequest,
    /// 401: missing, unknown or expired session token.
    Unauthorized,
    /// 403: the conversation or action is not the caller's.
    Forbidden,
    /// 404: no such conversation, message or file.
    NotFound,
    /// 409: transition not allowed.
    Conflict,
    /// 413: body or upload over the limit.
    PayloadTooLarge,
    /// 415: file type not allowed or not matching.
    UnsupportedMediaType,
    /// 429: over a rate limit; see `Retry-After`.
    RateLimited,
    /// 503: the database (or Redis) is unreachable; nothing was written.
    Unavailable,
    /// 500: anything else.
    Internal,
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "app_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Signature",
                "Lowercase hex HMAC-SHA256(app secret, X-Timestamp + \"\\n\" + METHOD + \"\\n\" + \
                 path-and-query + \"\\n\" + hex SHA-256 of the body), with X-Timestamp (ms since the \
                 epoch, within 300 s) on every /api request; each signature is accepted once.",
            ))),
        );
        components.add_security_scheme(
            "admin_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::admin::COOKIE_NAME,
                "The web manager's session (POST /admin/session); the same API is under \
                 /admin/api with this cookie instead of the signature, and every request other \
                 than GET and HEAD carries X-CSRF-Token.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token (`chatd session create`, or the login system via Redis).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Prometheus metrics: requests by route and status with latency histograms, messages accepted,
/// rate-limit rejections.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "chatd", description = "Support chat between app users and admins. Every response uses the envelope {status, data} or {status, message, error_code}."),
    paths(
        chat::list_messages, chat::send_message,
        chat::list_conversations, chat::open_conversation, chat::get_conversation,
        chat::mark_read, chat::assign, chat::set_status, chat::bulk, chat::feedback, chat::typing,
        search::search_messages,
        super::analytics::analytics,
        audit::conversation_events, audit::conversation_state, audit::verify,
        health::healthz, health::readyz, metrics,
        files::upload, files::download,
        crate::admin::session::sign_in, crate::admin::session::who_am_i, crate::admin::session::sign_out,
    ),
    components(schemas(ErrorBody, ErrorCode, files::UploadView, MessageView, ConversationView, LastMessageView, FeedbackView, Pagination)),
    modifiers(&SecuritySchemes),
    tags((name = "messages"), (name = "files"), (name = "conversations"), (name = "admin"), (name = "audit"), (name = "operations"), (name = "web manager")),
)]
pub struct ApiDoc;

pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new().merge(
        utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", ApiDoc::openapi()),
    )
}
