//! Rate limits per caller (CONTRACT "Limits"): messages, uploads, typing indicators per minute,
//! shared by REST and Socket.IO, in Redis when configured so every node shares them.
//!
//! It owns the counters: a fixed 60 s window per caller and kind that opens with the caller's
//! first action, counted atomically (one Lua script in Redis, key
//! `chat:limit:<kind>:<caller>`; a mutex-guarded map in this process otherwise). A burst of
//! concurrent actions lets exactly the limit through. It never lets an action through because
//! Redis did not answer: that is [`Limited::Unavailable`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::config::Config;
use crate::redis::bounded;

/// The length of one counting window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often the in-process map drops finished windows at most.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Counts one action; opens the window (with its expiry) on the first; answers the count and
/// the milliseconds left in the window. A key somehow left without expiry gets one.
const COUNT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Messages,
    Uploads,
    Typing,
}

impl LimitKind {
    /// The spelling in Redis keys and logs: `messages`, `uploads`, `typing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            LimitKind::Messages => "messages",
            LimitKind::Uploads => "uploads",
            LimitKind::Typing => "typing",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    Over { retry_after_secs: u64 },
    #[error("the rate limiter is unavailable")]
    Unavailable,
}

pub struct RateLimiter {
    messages: u32,
    uploads: u32,
    typing: u32,
    counters: Counters,
}

enum Counters {
    Redis {
        connection: ConnectionManager,
        script: redis::Script,
    },
    Local(Mutex<LocalWindows>),
}

struct LocalWindows {
    windows: HashMap<(LimitKind, String), Window>,
    last_prune: Instant,
}

struct Window {
    opened: Instant,
    count: u32,
}

impl RateLimiter {
    pub fn new(config: &Config, redis: Option<redis::aio::ConnectionManager>) -> Self {
        let counters = match redis {
            Some(connection) => Counters::Redis {
                connection,
                script: redis::Script::new(COUNT_SCRIPT),
            },
            None => Counters::Local(Mutex::new(LocalWindows {
                windows: HashMap::new(),
                last_prune: Instant::now(),
            })),
        };
        RateLimiter {
            // Config refuses 0; the max keeps a hand-built Config from meaning "nothing ever".
            messages: config.limit_messages_per_min.max(1),
            uploads: config.limit_uploads_per_min.max(1),
            typing: config.limit_typing_per_min.max(1),
            counters,
        }
    }

    /// Actions of `kind` a caller may take per minute.
    pub fn limit(&self, kind: LimitKind) -> u32 {
        match kind {
            LimitKind::Messages => self.messages,
            LimitKind::Uploads => self.uploads,
            LimitKind::Typing => self.typing,
        }
    }

    /// Counts one action of `kind` for `caller` (e.g. "admin:7"); refuses it when over the limit.
    pub async fn check(&self, kind: LimitKind, caller: &str) -> Result<(), Limited> {
        let limit = self.limit(kind);
        match &self.counters {
            Counters::Redis { connection, script } => {
                let mut connection = connection.clone();
                let key = format!("chat:limit:{}:{caller}", kind.as_str());
                let mut invocation = script.key(&key);
                invocation.arg(WINDOW.as_millis() as u64);
                let counted = bounded(invocation.invoke_async::<(u64, i64)>(&mut connection)).await;
                match counted {
                    Ok((count, _)) if count <= u64::from(limit) => Ok(()),
                    Ok((_, left_ms)) => Err(over(Duration::from_millis(left_ms.max(0) as u64))),
                    Err(error) => {
                        tracing::warn!(%error, kind = kind.as_str(), "rate limiter: Redis unavailable");
                        Err(Limited::Unavailable)
                    }
                }
            }
            Counters::Local(windows) => {
                let now = Instant::now();
                // A poisoned lock only means a panic elsewhere mid-update; the counts stand.
                let mut windows = windows.lock().unwrap_or_else(|p| p.into_inner());
                if now.duration_since(windows.last_prune) >= PRUNE_EVERY {
                    windows
                        .windows
                        .retain(|_, w| now.duration_since(w.opened) < WINDOW);
                    windows.last_prune = now;
                }
                let window = windows
                    .windows
                    .entry((kind, caller.to_string()))
                    .or_insert(Window {
                        opened: now,
                        count: 0,
                    });
                if now.duration_since(window.opened) >= WINDOW {
                    *window = Window {
                        opened: now,
                        count: 0,
                    };
                }
                if window.count < limit {
                    window.count += 1;
                    Ok(())
                } else {
                    let left = WINDOW.saturating_sub(now.duration_since(window.opened));
                    Err(over(left))
                }
            }
        }
    }
}

/// Whole seconds until the window frees a slot, rounded up, in 1..=60.
fn over(left: Duration) -> Limited {
    let secs = left.as_millis().div_ceil(1000) as u64;
    Limited::Over {
        retry_after_secs: secs.clamp(1, WINDOW.as_secs()),
    }
}
