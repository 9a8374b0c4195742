//! The one error of the application layer. Every use case answers with it; each transport turns
//! it into its own form (an HTTP response, a Socket.IO ack or `error` event) with the same code and
//! message.

use events::ConversationError;

use crate::commands::CommandError;
use crate::wire::{ErrorBody, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (rate limits).
    pub retry_after: Option<u64>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unavailable() -> Self {
        Self::new(
            ErrorCode::Unavailable,
            "the database is unavailable; nothing was written",
        )
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The contract's codes name no 405; this one is the HTTP status's own name.
    pub fn method_not_allowed() -> Self {
        Self::new(
            ErrorCode::MethodNotAllowed,
            "this route does not take that method",
        )
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ValidationError, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// The server's fault (or its database's), not the caller's.
    pub fn is_server_error(&self) -> bool {
        self.code.http_status() >= 500
    }

    /// The contract's error envelope.
    pub fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code, self.message.clone())
    }
}

impl From<ConversationError> for AppError {
    fn from(refused: ConversationError) -> Self {
        let code = match refused {
            ConversationError::NotFound => ErrorCode::NotFound,
            ConversationError::Forbidden(_) => ErrorCode::Forbidden,
            ConversationError::Conflict(_) => ErrorCode::Conflict,
            ConversationError::EmptyMessage => ErrorCode::EmptyMessage,
            ConversationError::Validation(_) => ErrorCode::ValidationError,
        };
        AppError::new(code, refused.to_string())
    }
}

impl From<CommandError> for AppError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(refused) => refused.into(),
            CommandError::Unavailable(detail) => {
                tracing::warn!(%detail, "command failed: database unavailable");
                AppError::unavailable()
            }
            CommandError::Internal(detail) => {
                tracing::error!(%detail, "command failed");
                AppError::internal()
            }
        }
    }
}

impl From<crate::store::StoreError> for AppError {
    fn from(error: crate::store::StoreError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "read failed: database unavailable");
            AppError::unavailable()
        } else {
            tracing::error!(%error, "read failed");
            AppError::internal()
        }
    }
}

impl From<crate::limits::Limited> for AppError {
    fn from(limited: crate::limits::Limited) -> Self {
        match limited {
            crate::limits::Limited::Over { retry_after_secs } => AppError {
                code: ErrorCode::RateLimited,
                message: format!("rate limit exceeded; retry after {retry_after_secs} s"),
                retry_after: Some(retry_after_secs),
            },
            crate::limits::Limited::Unavailable => AppError::new(
                ErrorCode::Unavailable,
                "the rate limiter is unavailable; nothing was written",
            ),
        }
    }
}

impl From<crate::presence::PresenceUnavailable> for AppError {
    fn from(error: crate::presence::PresenceUnavailable) -> Self {
        tracing::warn!(%error, "presence");
        AppError::new(
            ErrorCode::Unavailable,
            "presence is unavailable; try again shortly",
        )
    }
}

impl From<crate::auth::AuthError> for AppError {
    fn from(error: crate::auth::AuthError) -> Self {
        AppError::new(error.code(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_refusals_keep_their_code_and_text() {
        let error = AppError::from(ConversationError::Conflict("already closed".into()));
        assert_eq!(error.code, ErrorCode::Conflict);
        assert_eq!(error.message, "already closed");
        assert_eq!(
            AppError::from(ConversationError::EmptyMessage).code,
            ErrorCode::EmptyMessage
        );
    }
}
