//! The Redis connection shared by sessions, the replay guard and the rate limiter.
//!
//! It owns how chatd talks to Redis: one auto-reconnecting [`ConnectionManager`] with short
//! connection and response timeouts, so a stopped or hung Redis fails closed within about a
//! second instead of holding requests. It never decides what a failure means: callers map
//! every Redis error to "unavailable" and never accept a request because Redis was silent.
//!
//! The plain URL is enough for our own commands (RESP2); the Socket.IO adapter asks for RESP3
//! with `?protocol=resp3` on its own connection.

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use anyhow::Context;

use crate::store::redact_url;

/// How long one connection attempt may take.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its answer.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// The bound callers put around one whole operation (reconnect included), so a request
/// never waits on Redis much longer than a second.
pub const OPERATION_TIMEOUT: Duration = Duration::from_millis(1200);

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        // One quick retry on a reconnect; a longer outage shows as errors, not as waiting.
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
}

fn client(url: &str) -> anyhow::Result<::redis::Client> {
    ::redis::Client::open(url).with_context(|| format!("invalid Redis URL {}", redact_url(url)))
}

/// Connects now and fails (within about two seconds) when Redis cannot be reached.
pub async fn connect(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = client(url)?;
    let connecting = ConnectionManager::new_with_config(client, manager_config());
    tokio::time::timeout(CONNECTION_TIMEOUT * 2, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("connecting to Redis at {}", redact_url(url)))
}

/// A manager that connects on first use: start-up does not wait for Redis, and every command
/// made while Redis is down fails quickly. Tests use it to point at a closed port.
pub fn connect_lazy(url: &str) -> anyhow::Result<ConnectionManager> {
    let client = client(url)?;
    ConnectionManager::new_lazy_with_config(client, manager_config())
        .with_context(|| format!("setting up Redis at {}", redact_url(url)))
}

/// Runs one Redis operation under [`OPERATION_TIMEOUT`]; a timeout counts as an error.
pub(crate) async fn bounded<T>(
    operation: impl Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, BoundedError> {
    match tokio::time::timeout(OPERATION_TIMEOUT, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(BoundedError::Redis(error)),
        Err(_) => Err(BoundedError::TimedOut),
    }
}

/// Why a bounded Redis operation failed.
#[derive(Debug)]
pub(crate) enum BoundedError {
    Redis(::redis::RedisError),
    TimedOut,
}

impl std::fmt::Display for BoundedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BoundedError::Redis(error) => write!(f, "{error}"),
            BoundedError::TimedOut => write!(f, "timed out after {OPERATION_TIMEOUT:?}"),
        }
    }
}
