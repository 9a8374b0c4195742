//! Rate limits per caller (CONTRACT "Limits"): messages, uploads, typing indicators, joins and
//! searches per minute, shared by REST and Socket.IO, in Redis when configured so every node
//! shares them.
//!
//! It owns the counters: a sliding window per caller and kind. An action is allowed when fewer
//! than the limit were allowed in the 60 s before it, so no 60 s span ever holds more than the
//! limit (a fixed window let nearly twice the limit through around its edge). The times of the
//! allowed actions of the last minute are kept: a sorted set in Redis
//! (`<prefix>:limit:{<caller>}:<kind>`, one Lua script on Redis's own clock, so nodes whose
//! clocks disagree still count alike), a queue per caller and kind in this process otherwise. A
//! burst of concurrent actions lets exactly the limit through. It never lets an action through
//! because Redis did not answer: that is [`Limited::Unavailable`].
//!
//! Typing stops are indicators too: a start leaves one free stop for its conversation (a pass,
//! `<prefix>:typing:{<caller>}:<conversation>`), any other stop counts like a start.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use redis::aio::ConnectionManager;

use crate::config::Config;
use crate::redis::bounded;

/// The span no more than the limit of actions may fall in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How often the in-process maps drop finished windows and passes at most.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// KEYS[1]: the caller's times of one kind; KEYS[2] (optional): a typing pass. ARGV: the window
/// (micros), the limit, a member unique to this action, and what to do with the pass (`grant`
/// after an allowed action, `use` instead of counting when there is one). Answers 0 when
/// allowed, else the micros until the oldest action leaves the window.
const COUNT_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if ARGV[4] == 'use' and redis.call('DEL', KEYS[2]) == 1 then
  return 0
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  if ARGV[4] == 'grant' then
    redis.call('SET', KEYS[2], 1, 'PX', math.ceil(window / 1000))
  end
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Messages,
    Uploads,
    Typing,
    /// Socket.IO `join_conversation`: each answers with history.
    Joins,
    Searches,
}

impl LimitKind {
    /// The spelling in Redis keys, metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            LimitKind::Messages => "messages",
            LimitKind::Uploads => "uploads",
            LimitKind::Typing => "typing",
            LimitKind::Joins => "joins",
            LimitKind::Searches => "searches",
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

/// What an action does with a typing pass besides counting.
enum Pass {
    None,
    /// A start: allowed, it leaves a pass for one stop.
    Grant(u64),
    /// A stop: takes the pass instead of counting when there is one.
    Use(u64),
}

pub struct RateLimiter {
    window: Duration,
    messages: u32,
    uploads: u32,
    typing: u32,
    joins: u32,
    searches: u32,
    counters: Counters,
}

enum Counters {
    Redis {
        connection: ConnectionManager,
        script: redis::Script,
        /// `CHAT_REDIS_PREFIX`: deployments sharing a Redis count apart.
        prefix: String,
    },
    Local(Mutex<LocalWindows>),
}

struct LocalWindows {
    /// When each allowed action of the last minute happened, oldest first.
    windows: HashMap<(LimitKind, String), VecDeque<Instant>>,
    /// Typing passes by caller and conversation, with their expiry.
    passes: HashMap<(String, u64), Instant>,
    last_prune: Instant,
}

impl RateLimiter {
    pub fn new(config: &Config, redis: Option<redis::aio::ConnectionManager>) -> Self {
        let counters = match redis {
            Some(connection) => Counters::Redis {
                connection,
                script: redis::Script::new(COUNT_SCRIPT),
                prefix: config.redis_prefix.clone(),
            },
            None => Counters::Local(Mutex::new(LocalWindows {
                windows: HashMap::new(),
                passes: HashMap::new(),
                last_prune: Instant::now(),
            })),
        };
        RateLimiter {
            window: WINDOW,
            // Config refuses 0; the max keeps a hand-built Config from meaning "nothing ever".
            messages: config.limit_messages_per_min.max(1),
            uploads: config.limit_uploads_per_min.max(1),
            typing: config.limit_typing_per_min.max(1),
            joins: config.limit_joins_per_min.max(1),
            searches: config.limit_searches_per_min.max(1),
            counters,
        }
    }

    /// The same limits over another span than a minute: a test or a benchmark that cannot wait
    /// a minute for a window to pass.
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window.max(Duration::from_millis(1));
        self
    }

    /// Actions of `kind` a caller may take per minute.
    pub fn limit(&self, kind: LimitKind) -> u32 {
        match kind {
            LimitKind::Messages => self.messages,
            LimitKind::Uploads => self.uploads,
            LimitKind::Typing => self.typing,
            LimitKind::Joins => self.joins,
            LimitKind::Searches => self.searches,
        }
    }

    /// Counts one action of `kind` for `caller` (e.g. "admin:7"); refuses it when over the limit.
    pub async fn check(&self, kind: LimitKind, caller: &str) -> Result<(), Limited> {
        self.count(kind, caller, Pass::None).await
    }

    /// Counts a typing indicator in `conversation_id`: a start counts and leaves a pass for one
    /// stop there; a stop takes that pass, or counts when there is none.
    pub async fn check_typing(
        &self,
        caller: &str,
        conversation_id: u64,
        typing: bool,
    ) -> Result<(), Limited> {
        let pass = if typing {
            Pass::Grant(conversation_id)
        } else {
            Pass::Use(conversation_id)
        };
        self.count(LimitKind::Typing, caller, pass).await
    }

    async fn count(&self, kind: LimitKind, caller: &str, pass: Pass) -> Result<(), Limited> {
        let limit = self.limit(kind);
        match &self.counters {
            Counters::Redis {
                connection,
                script,
                prefix,
            } => {
                let mut connection = connection.clone();
                let mut invocation =
                    script.key(format!("{prefix}:limit:{{{caller}}}:{}", kind.as_str()));
                let (action, conversation) = match pass {
                    Pass::None => ("", None),
                    Pass::Grant(id) => ("grant", Some(id)),
                    Pass::Use(id) => ("use", Some(id)),
                };
                if let Some(id) = conversation {
                    invocation.key(format!("{prefix}:typing:{{{caller}}}:{id}"));
                }
                invocation
                    .arg(self.window.as_micros() as u64)
                    .arg(limit)
                    .arg(format!("{:016x}", rand::thread_rng().r#gen::<u64>()))
                    .arg(action);
                match bounded(invocation.invoke_async::<i64>(&mut connection)).await {
                    Ok(0) => Ok(()),
                    Ok(left_micros) => {
                        Err(self.over(Duration::from_micros(left_micros.max(1) as u64)))
                    }
                    Err(error) => {
                        tracing::warn!(%error, kind = kind.as_str(), "rate limiter: Redis unavailable");
                        Err(Limited::Unavailable)
                    }
                }
            }
            Counters::Local(windows) => {
                let now = Instant::now();
                // A poisoned lock only means a panic elsewhere mid-update; the counts stand.
                let mut local = windows.lock().unwrap_or_else(|p| p.into_inner());
                local.prune(now, self.window);
                if let Pass::Use(id) = pass
                    && local
                        .passes
                        .remove(&(caller.to_string(), id))
                        .is_some_and(|expires| expires > now)
                {
                    return Ok(());
                }
                let times = local.windows.entry((kind, caller.to_string())).or_default();
                while times
                    .front()
                    .is_some_and(|oldest| now.duration_since(*oldest) >= self.window)
                {
                    times.pop_front();
                }
                if times.len() >= limit as usize {
                    let oldest = times.front().copied().unwrap_or(now);
                    return Err(self.over(self.window.saturating_sub(now.duration_since(oldest))));
                }
                times.push_back(now);
                if let Pass::Grant(id) = pass {
                    local
                        .passes
                        .insert((caller.to_string(), id), now + self.window);
                }
                Ok(())
            }
        }
    }
}

impl LocalWindows {
    fn prune(&mut self, now: Instant, window: Duration) {
        if now.duration_since(self.last_prune) < PRUNE_EVERY {
            return;
        }
        self.windows.retain(|_, times| {
            times
                .back()
                .is_some_and(|newest| now.duration_since(*newest) < window)
        });
        self.passes.retain(|_, expires| *expires > now);
        self.last_prune = now;
    }
}

impl RateLimiter {
    /// Whole seconds until the window frees a slot, rounded up, in 1..=the window.
    fn over(&self, left: Duration) -> Limited {
        let secs = left.as_millis().div_ceil(1000) as u64;
        Limited::Over {
            retry_after_secs: secs.clamp(1, self.window.as_secs().max(1)),
        }
    }
}
