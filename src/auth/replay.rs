//! The replay guard: a signature is accepted once while its timestamp is acceptable.
//! In Redis (`SET <prefix>:sig:<signature> 1 NX PX ...`, shared by every node) or in this process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::AuthError;
use crate::redis::bounded;

/// How often the in-process map drops expired records at most.
const PRUNE_EVERY: Duration = Duration::from_secs(5);

pub(super) enum ReplayGuard {
    Redis {
        connection: ConnectionManager,
        /// `CHAT_REDIS_PREFIX`: deployments sharing a Redis keep their records apart.
        prefix: String,
    },
    Local(Mutex<LocalSeen>),
}

pub(super) struct LocalSeen {
    /// Signature bytes (hex-decoded: 32 bytes, not 64) and when the record expires.
    seen: HashMap<Vec<u8>, Instant>,
    last_prune: Instant,
}

impl ReplayGuard {
    pub(super) fn redis(connection: ConnectionManager, prefix: &str) -> Self {
        ReplayGuard::Redis {
            connection,
            prefix: prefix.to_string(),
        }
    }

    pub(super) fn local() -> Self {
        ReplayGuard::Local(Mutex::new(LocalSeen {
            seen: HashMap::new(),
            last_prune: Instant::now(),
        }))
    }

    /// Records `signature` for `keep`; `ReplayedRequest` when it is already recorded.
    pub(super) async fn first_sight(
        &self,
        signature: &str,
        keep: Duration,
    ) -> Result<(), AuthError> {
        match self {
            ReplayGuard::Redis { connection, prefix } => {
                let mut connection = connection.clone();
                let key = format!("{prefix}:sig:{signature}");
                let millis = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX).max(1);
                let mut set = redis::cmd("SET");
                set.arg(&key).arg(1).arg("NX").arg("PX").arg(millis);
                match bounded(set.query_async::<Option<String>>(&mut connection)).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err(AuthError::ReplayedRequest),
                    Err(error) => {
                        tracing::warn!(%error, "replay guard: Redis unavailable");
                        Err(AuthError::Unavailable)
                    }
                }
            }
            ReplayGuard::Local(seen) => {
                let key = hex::decode(signature).unwrap_or_else(|_| signature.as_bytes().to_vec());
                let now = Instant::now();
                // A poisoned lock only means another request panicked mid-insert; the map
                // is still a valid map.
                let mut seen = seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if now.duration_since(seen.last_prune) >= PRUNE_EVERY {
                    seen.seen.retain(|_, expires| *expires > now);
                    seen.last_prune = now;
                }
                match seen.seen.get(&key) {
                    Some(expires) if *expires > now => Err(AuthError::ReplayedRequest),
                    _ => {
                        seen.seen.insert(key, now + keep);
                        Ok(())
                    }
                }
            }
        }
    }
}
