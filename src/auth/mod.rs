//! Authentication: the app signature on every `/api` request, the replay guard, and bearer
//! sessions (Redis `chat:session:<token>` when configured, the database otherwise).
//!
//! INTERFACE STUB: the signatures below are fixed; the bodies are filled in.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use events::{Actor, Role};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store::EventStore;

/// Who is calling, from their session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: u64,
    pub role: Role,
    pub identifier: String,
}

impl Session {
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.user_id,
            role: self.role,
            identifier: self.identifier.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("X-Signature is missing or wrong")]
    InvalidSignature,
    #[error("X-Timestamp is missing or more than 300 s from server time")]
    StaleTimestamp,
    #[error("this signed request was already seen")]
    ReplayedRequest,
    #[error("missing, unknown or expired session token")]
    Unauthorized,
    #[error("the session store is unavailable")]
    Unavailable,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidSignature => "INVALID_SIGNATURE",
            AuthError::StaleTimestamp => "STALE_TIMESTAMP",
            AuthError::ReplayedRequest => "REPLAYED_REQUEST",
            AuthError::Unauthorized => "UNAUTHORIZED",
            AuthError::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

pub struct Auth {}

impl Auth {
    pub async fn new(
        _config: &Config,
        _store: &EventStore,
        _redis: Option<redis::aio::ConnectionManager>,
    ) -> anyhow::Result<Auth> {
        Ok(Auth {})
    }

    /// Checks X-Timestamp and X-Signature over method, path and query as sent, and the raw body.
    pub async fn verify_request(
        &self,
        _method: &str,
        _path_and_query: &str,
        _headers: &HeaderMap,
        _body: &[u8],
    ) -> Result<(), AuthError> {
        Err(AuthError::InvalidSignature)
    }

    /// The session behind a bearer token.
    pub async fn session(&self, _token: &str) -> Result<Session, AuthError> {
        Err(AuthError::Unauthorized)
    }

    /// Stores a new session and returns its token.
    pub async fn create_session(&self, _session: &Session, _ttl: Duration) -> Result<String, AuthError> {
        Err(AuthError::Unavailable)
    }
}
