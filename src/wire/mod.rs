//! Every JSON shape chatd answers with, built once: the contract's envelope (success and error,
//! with [`ErrorCode`], the one list of error codes REST, Socket.IO acks and the OpenAPI document
//! share), the views of messages, conversations and presence, and the audit view.
//!
//! Shapes only: nothing here knows a transport (no axum, no socketioxide) or does I/O.

pub mod audit;
pub mod requests;
pub mod views;

use serde::Serialize;
use utoipa::ToSchema;

pub use requests::SendMessageRequest;
pub use views::{
    AdminPresenceView, ConversationView, FeedbackView, FileFields, LastMessageView,
    MessageVersionView, MessageView, Pagination, presence_event, wire_time,
};

/// The success envelope: `{"status": "success", "data": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success<T> {
    /// Always `success`.
    #[schema(example = "success")]
    pub status: &'static str,
    pub data: T,
}

/// Wraps `data` in the success envelope.
pub fn success<T>(data: T) -> Success<T> {
    Success {
        status: "success",
        data,
    }
}

/// Every error answers with this envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `error`.
    #[schema(example = "error")]
    pub status: &'static str,
    /// Human-readable; never internals.
    pub message: String,
    pub error_code: ErrorCode,
}

impl ErrorBody {
    pub fn new(error_code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            status: "error",
            message: message.into(),
            error_code,
        }
    }
}

/// The contract's stable error codes, each with the HTTP status it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
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
    /// 408: a request body stopped arriving, or did not arrive in time (an upload).
    RequestTimeout,
    /// 405: a known route called with a method it does not take (`Allow` lists those it does).
    MethodNotAllowed,
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

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationError => "VALIDATION_ERROR",
            ErrorCode::EmptyMessage => "EMPTY_MESSAGE",
            ErrorCode::InvalidSignature => "INVALID_SIGNATURE",
            ErrorCode::StaleTimestamp => "STALE_TIMESTAMP",
            ErrorCode::ReplayedRequest => "REPLAYED_REQUEST",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The HTTP status a REST answer with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::ValidationError | ErrorCode::EmptyMessage => 400,
            ErrorCode::InvalidSignature
            | ErrorCode::StaleTimestamp
            | ErrorCode::ReplayedRequest
            | ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_serialises_as_its_wire_name() {
        for code in [
            ErrorCode::ValidationError,
            ErrorCode::EmptyMessage,
            ErrorCode::InvalidSignature,
            ErrorCode::StaleTimestamp,
            ErrorCode::ReplayedRequest,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::MethodNotAllowed,
            ErrorCode::RequestTimeout,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                serde_json::to_value(code).ok(),
                Some(serde_json::Value::from(code.as_str()))
            );
        }
    }
}
