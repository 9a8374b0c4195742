//! Rate limits per caller (CONTRACT "Limits"): messages, uploads, typing indicators per minute,
//! shared by REST and Socket.IO, in Redis when configured so every node shares them.
//!
//! INTERFACE STUB: the signatures below are fixed; the bodies are filled in.

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Messages,
    Uploads,
    Typing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    Over { retry_after_secs: u64 },
    #[error("the rate limiter is unavailable")]
    Unavailable,
}

pub struct RateLimiter {}

impl RateLimiter {
    pub fn new(_config: &Config, _redis: Option<redis::aio::ConnectionManager>) -> Self {
        RateLimiter {}
    }

    /// Counts one action of `kind` for `caller` (e.g. "admin:7"); refuses it when over the limit.
    pub async fn check(&self, _kind: LimitKind, _caller: &str) -> Result<(), Limited> {
        Ok(())
    }
}
