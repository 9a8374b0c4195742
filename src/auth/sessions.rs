//! Session records: Redis `chat:session:<token>` holding the session JSON with a TTL, or the
//! `sessions` table keyed by the SHA-256 of the token (the token itself is never stored there).
//! The Redis key is the contract's, not under `CHAT_REDIS_PREFIX`: the login system writes it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::RngCore;
use redis::aio::ConnectionManager;

use super::{AuthError, Session, sha256_hex};
use crate::clock::now_micros;
use crate::redis::{BoundedError, bounded};
use crate::store::{EventStore, StoreError, on_backend};

/// How often expired rows are deleted from the sessions table at most (micros).
const PRUNE_EVERY_MICROS: i64 = 60 * 1_000_000;

pub(crate) enum SessionStore {
    Redis(ConnectionManager),
    Database {
        store: EventStore,
        last_prune: AtomicI64,
    },
}

impl SessionStore {
    /// `redis` or `database`: where sessions are looked up (a CLI that writes them elsewhere
    /// makes tokens this server does not know).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            SessionStore::Redis(_) => "redis",
            SessionStore::Database { .. } => "database",
        }
    }

    pub(crate) fn redis(connection: ConnectionManager) -> Self {
        SessionStore::Redis(connection)
    }

    pub(crate) fn database(store: EventStore) -> Self {
        SessionStore::Database {
            store,
            last_prune: AtomicI64::new(0),
        }
    }

    pub(crate) async fn get(&self, token: &str) -> Result<Session, AuthError> {
        match self {
            SessionStore::Redis(connection) => {
                let mut connection = connection.clone();
                let mut get = redis::cmd("GET");
                get.arg(redis_key(token));
                match bounded(get.query_async::<Option<Vec<u8>>>(&mut connection)).await {
                    Ok(Some(json)) => parse(&json),
                    Ok(None) => Err(AuthError::Unauthorized),
                    // Something else than a string under the key: not a session.
                    Err(BoundedError::Redis(error)) if error.code() == Some("WRONGTYPE") => {
                        Err(AuthError::Unauthorized)
                    }
                    Err(error) => Err(redis_unavailable("reading a session", error)),
                }
            }
            SessionStore::Database { store, .. } => {
                let hash = sha256_hex(token.as_bytes());
                let now = now_micros();
                let row: Option<(i64, String, String)> = on_backend!(store, s => {
                    sqlx::query_as(
                        "select user_id, role, identifier from sessions \
                         where token_hash = ? and expires_at > ?",
                    )
                    .bind(&hash)
                    .bind(now)
                    .fetch_optional(s.pool())
                    .await
                })
                .map_err(|e| database_unavailable("reading a session", e))?;
                let (user_id, role, identifier) = row.ok_or(AuthError::Unauthorized)?;
                let session = Session {
                    user_id: u64::try_from(user_id).map_err(|_| AuthError::Unauthorized)?,
                    role: role.parse().map_err(|_| AuthError::Unauthorized)?,
                    identifier,
                };
                session.validate().map_err(|_| AuthError::Unauthorized)?;
                Ok(session)
            }
        }
    }

    pub(crate) async fn create(
        &self,
        session: &Session,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        session.validate().map_err(|_| AuthError::Unauthorized)?;
        let ttl = ttl.max(Duration::from_secs(1));
        match self {
            SessionStore::Redis(connection) => {
                let mut connection = connection.clone();
                let json = serde_json::to_string(session).map_err(|_| AuthError::Unavailable)?;
                // 256 random bits never collide in practice; NX makes sure one never overwrites.
                for _ in 0..3 {
                    let token = new_token();
                    let mut set = redis::cmd("SET");
                    set.arg(redis_key(&token))
                        .arg(&json)
                        .arg("EX")
                        .arg(ttl.as_secs().max(1))
                        .arg("NX");
                    match bounded(set.query_async::<Option<String>>(&mut connection)).await {
                        Ok(Some(_)) => return Ok(token),
                        Ok(None) => continue,
                        Err(error) => return Err(redis_unavailable("creating a session", error)),
                    }
                }
                Err(AuthError::Unavailable)
            }
            SessionStore::Database { store, last_prune } => {
                let token = new_token();
                let hash = sha256_hex(token.as_bytes());
                let now = now_micros();
                let ttl_micros = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
                let expires_at = now.saturating_add(ttl_micros);
                let user_id =
                    i64::try_from(session.user_id).map_err(|_| AuthError::Unauthorized)?;
                on_backend!(store, s => {
                    let _turn = s.write_turn().await;
                    sqlx::query(
                        "insert into sessions \
                         (token_hash, user_id, role, identifier, expires_at, created_at) \
                         values (?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&hash)
                    .bind(user_id)
                    .bind(session.role.as_str())
                    .bind(&session.identifier)
                    .bind(expires_at)
                    .bind(now)
                    .execute(s.pool())
                    .await
                    .map(|_| ())
                })
                .map_err(|e| database_unavailable("creating a session", e))?;
                let last = last_prune.load(Ordering::Relaxed);
                if now - last >= PRUNE_EVERY_MICROS
                    && last_prune
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    prune(store, now).await;
                }
                Ok(token)
            }
        }
    }

    pub(crate) async fn delete(&self, token: &str) -> Result<(), AuthError> {
        match self {
            SessionStore::Redis(connection) => {
                let mut connection = connection.clone();
                let mut del = redis::cmd("DEL");
                del.arg(redis_key(token));
                bounded(del.query_async::<i64>(&mut connection))
                    .await
                    .map(|_| ())
                    .map_err(|error| redis_unavailable("deleting a session", error))
            }
            SessionStore::Database { store, .. } => {
                let hash = sha256_hex(token.as_bytes());
                on_backend!(store, s => {
                    let _turn = s.write_turn().await;
                    sqlx::query("delete from sessions where token_hash = ?")
                        .bind(&hash)
                        .execute(s.pool())
                        .await
                        .map(|_| ())
                })
                .map_err(|e| database_unavailable("deleting a session", e))
            }
        }
    }
}

/// Deletes expired rows; a failure only leaves them for the next time.
async fn prune(store: &EventStore, now: i64) {
    let result = on_backend!(store, s => {
        let _turn = s.write_turn().await;
        sqlx::query("delete from sessions where expires_at <= ?")
            .bind(now)
            .execute(s.pool())
            .await
            .map(|_| ())
    });
    if let Err(error) = result {
        tracing::warn!(%error, "could not delete expired sessions");
    }
}

fn redis_key(token: &str) -> String {
    format!("chat:session:{token}")
}

/// 32 random bytes from the operating system, hex: URL-safe, 256 bits.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A stored session must be exactly what a session is: anything else is no session.
fn parse(json: &[u8]) -> Result<Session, AuthError> {
    // Through a Value first: serde would also read a struct from a JSON array.
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|_| AuthError::Unauthorized)?;
    if !value.is_object() {
        return Err(AuthError::Unauthorized);
    }
    let session: Session = serde_json::from_value(value).map_err(|_| AuthError::Unauthorized)?;
    session.validate().map_err(|_| AuthError::Unauthorized)?;
    Ok(session)
}

fn redis_unavailable(what: &str, error: BoundedError) -> AuthError {
    tracing::warn!(%error, "{what}: Redis unavailable");
    AuthError::Unavailable
}

fn database_unavailable(what: &str, error: sqlx::Error) -> AuthError {
    let error = StoreError::from_sqlx(error);
    if error.is_unavailable() {
        tracing::warn!(%error, "{what}: database unavailable");
    } else {
        tracing::error!(%error, "{what}: database error");
    }
    AuthError::Unavailable
}
