//! The contract's error envelope: every failure answers `{"status":"error","message","error_code"}`
//! with a stable code; unexpected errors are logged and answered without internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::commands::CommandError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "the database is unavailable; nothing was written",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(rejected) => {
                let status = match rejected.code() {
                    "NOT_FOUND" => StatusCode::NOT_FOUND,
                    "FORBIDDEN" => StatusCode::FORBIDDEN,
                    "CONFLICT" => StatusCode::CONFLICT,
                    _ => StatusCode::BAD_REQUEST,
                };
                ApiError::new(status, rejected.code(), rejected.to_string())
            }
            CommandError::Unavailable(detail) => {
                tracing::warn!(%detail, "command failed: database unavailable");
                ApiError::unavailable()
            }
            CommandError::Internal(detail) => {
                tracing::error!(%detail, "command failed");
                ApiError::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"status": "error", "message": self.message, "error_code": self.code});
        (self.status, Json(body)).into_response()
    }
}
