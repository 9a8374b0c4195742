//! Authentication: the app signature on every `/api` request, the replay guard, and bearer
//! sessions (Redis `chat:session:<token>` when configured, the database otherwise).
//!
//! It owns the app secret (from `CHAT_APP_SECRET`, or generated once into the data directory),
//! the signature check, the replay records (`chat:sig:*` in Redis, or an in-process map), the
//! session records (`chat:session:*` in Redis, or the `sessions` table, keyed by the SHA-256 of
//! the token). The HTTP glue (the signature middleware, the `Caller` extractor) lives with the
//! transport, in `http::auth`. It never logs or prints the secret or a token (the caller prints a generated
//! secret at start-up), and it fails closed: when Redis or the database cannot answer, a
//! request is refused with `UNAVAILABLE`, never let through.

pub mod cookie;
mod replay;
pub(crate) mod secret;

pub use secret::SecretSource;
pub(crate) mod sessions;

use std::path::Path;
use std::time::Duration;

use axum::http::HeaderMap;
use events::{Actor, Role};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::store::EventStore;

use replay::ReplayGuard;
use sessions::SessionStore;

/// The largest request body the signature middleware buffers (JSON endpoints).
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// How far X-Timestamp may be from the server's clock, either way.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// The header carrying the request time in milliseconds since the Unix epoch.
pub const TIMESTAMP_HEADER: &str = "x-timestamp";
/// The header carrying the lowercase hex HMAC-SHA256 of the string-to-sign.
pub const SIGNATURE_HEADER: &str = "x-signature";
/// The largest user id a session may carry (exclusive): ids stay safe in JavaScript and Swift.
pub const MAX_USER_ID: u64 = 1 << 53;
/// The longest session identifier accepted, in characters.
pub const MAX_IDENTIFIER_CHARS: usize = 255;

type HmacSha256 = Hmac<Sha256>;

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

    /// Checks what a stored session must satisfy: a user id in 1..2^53, a role a session may
    /// hold (user, admin, auditor: never system), a non-empty identifier of at most
    /// [`MAX_IDENTIFIER_CHARS`] characters without control or bidirectional formatting characters.
    pub fn validate(&self) -> Result<(), String> {
        if self.user_id == 0 || self.user_id >= MAX_USER_ID {
            return Err(format!("user_id must be in 1..2^53, got {}", self.user_id));
        }
        if !matches!(self.role, Role::User | Role::Admin | Role::Auditor) {
            return Err(format!(
                "role must be user, admin or auditor, got {}",
                self.role
            ));
        }
        if self.identifier.trim().is_empty() {
            return Err("identifier must not be empty".into());
        }
        if self.identifier.chars().count() > MAX_IDENTIFIER_CHARS {
            return Err(format!(
                "identifier must be at most {MAX_IDENTIFIER_CHARS} characters"
            ));
        }
        // Shown beside every message: a direction override would reorder what follows it.
        if self
            .identifier
            .chars()
            .any(|c| c.is_control() || events::is_bidi_format(c))
        {
            return Err(
                "identifier must not contain control or bidirectional formatting characters".into(),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Neither signature header: a client that does not sign at all (the contract's code for a
    /// missing X-Signature, with its own explanation).
    #[error(
        "X-Timestamp and X-Signature are missing: every /api request is signed with the app \
         secret (HMAC-SHA256 of timestamp, method, path and query, and the body's SHA-256)"
    )]
    Unsigned,
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
    pub fn code(&self) -> crate::wire::ErrorCode {
        use crate::wire::ErrorCode;
        match self {
            AuthError::Unsigned | AuthError::InvalidSignature => ErrorCode::InvalidSignature,
            AuthError::StaleTimestamp => ErrorCode::StaleTimestamp,
            AuthError::ReplayedRequest => ErrorCode::ReplayedRequest,
            AuthError::Unauthorized => ErrorCode::Unauthorized,
            AuthError::Unavailable => ErrorCode::Unavailable,
        }
    }
}

/// The app secret, the replay guard and the session store of one process.
pub struct Auth {
    secret: String,
    secret_source: secret::SecretSource,
    replay: ReplayGuard,
    sessions: SessionStore,
    recent: RecentSessions,
}

/// Sessions read in the last `ttl` (`CHAT_SESSION_CACHE_MS`), so a client's requests in a burst
/// cost one read of the session store rather than one each. A session ended here is forgotten at
/// once; one ended elsewhere (another node, the login system) is honoured for at most `ttl` more.
struct RecentSessions {
    ttl: Duration,
    entries: std::sync::Mutex<lru::LruCache<String, Recent>>,
}

enum Recent {
    Read(Session, std::time::Instant),
    /// Ended through this node: a read that began before the end must not bring it back.
    Ended(std::time::Instant),
}

/// Sessions kept by [`RecentSessions`] at most.
const RECENT_SESSIONS: usize = 50_000;

impl RecentSessions {
    fn new(ttl: Duration) -> Self {
        let capacity =
            std::num::NonZeroUsize::new(RECENT_SESSIONS).unwrap_or(std::num::NonZeroUsize::MIN);
        RecentSessions {
            ttl,
            entries: std::sync::Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    fn get(&self, token: &str) -> Option<Session> {
        if self.ttl.is_zero() {
            return None;
        }
        let mut entries = self.entries.lock().ok()?;
        match entries.get(token) {
            Some(Recent::Read(session, read_at)) if read_at.elapsed() < self.ttl => {
                Some(session.clone())
            }
            Some(Recent::Ended(_)) | None => None,
            Some(Recent::Read(..)) => {
                entries.pop(token);
                None
            }
        }
    }

    fn keep(&self, token: &str, session: &Session) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if let Some(Recent::Ended(at)) = entries.peek(token)
                && at.elapsed() < self.ttl
            {
                return;
            }
            let now = std::time::Instant::now();
            entries.put(token.to_string(), Recent::Read(session.clone(), now));
        }
    }

    fn forget(&self, token: &str) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.put(token.to_string(), Recent::Ended(std::time::Instant::now()));
        }
    }
}

impl Auth {
    /// The secret comes from `config.app_secret`, else from `<data_dir>/app_secret` (created
    /// once, mode 0600). With `redis`, replay records and sessions live in Redis; without it,
    /// replay records stay in this process and sessions in the database.
    pub async fn new(
        config: &Config,
        store: &EventStore,
        redis: Option<redis::aio::ConnectionManager>,
    ) -> anyhow::Result<Auth> {
        let (secret, secret_source) = secret::app_secret(config)?;
        let (replay, sessions) = match redis {
            Some(redis) => (
                ReplayGuard::redis(redis.clone(), &config.redis_prefix),
                SessionStore::redis(redis),
            ),
            None => (ReplayGuard::local(), SessionStore::database(store.clone())),
        };
        Ok(Auth {
            secret,
            secret_source,
            replay,
            sessions,
            recent: RecentSessions::new(config.session_cache),
        })
    }

    /// Where the app secret came from: configured, generated by this start (the caller shows it
    /// once, to the operator), or kept from an earlier one.
    pub fn app_secret_source(&self) -> &secret::SecretSource {
        &self.secret_source
    }

    /// The app secret. Show it only on the start that generated it; never log it.
    pub fn app_secret(&self) -> &str {
        &self.secret
    }

    /// Where sessions live: `redis` or `database`.
    pub fn session_store(&self) -> &'static str {
        self.sessions.kind()
    }

    /// Where the generated secret is kept, when it is the generated one.
    pub fn app_secret_file(&self) -> Option<&Path> {
        self.secret_source.file()
    }

    /// Checks X-Timestamp and X-Signature over method, path and query as sent, and the raw body,
    /// and that the same signed request with the same credentials was not seen before.
    pub async fn verify_request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), AuthError> {
        self.verify_request_hashed(method, path_and_query, headers, &sha256_hex(body))
            .await
    }

    /// As [`Auth::verify_request`], for a body already hashed while it streamed by (an upload):
    /// `body_sha256` is its lowercase hex SHA-256.
    pub async fn verify_request_hashed(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &HeaderMap,
        body_sha256: &str,
    ) -> Result<(), AuthError> {
        let now_ms = now_millis();
        let (timestamp, timestamp_ms) = fresh_timestamp(headers, now_ms)?;
        let skew_ms = MAX_CLOCK_SKEW.as_millis() as i64;
        let sent = header(headers, SIGNATURE_HEADER).ok_or(AuthError::InvalidSignature)?;
        let expected = signature_hex(
            &self.secret,
            &format!("{timestamp}\n{method}\n{path_and_query}\n{body_sha256}"),
        );
        if !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(AuthError::InvalidSignature);
        }
        // Keep the record while the timestamp itself is still acceptable (plus a second for
        // clock rounding): a replay after that is refused as stale anyway.
        let keep_ms = (timestamp_ms + skew_ms + 1000 - now_ms).clamp(1000, 2 * skew_ms + 1000);
        // The signature does not cover the session, so two users who send the same request in
        // the same millisecond sign it alike: a replay is the same signature with the same
        // credentials.
        // The token as it authenticates, not the header as spelt: `bearer`, `BEARER` or another
        // space around it is the same caller, so the same replay.
        let credentials = bearer_token(headers)
            .or_else(|| header(headers, "authorization"))
            .map(|value| sha256_hex(value.as_bytes()));
        let seen = match credentials {
            Some(credentials) => format!("{expected}:{credentials}"),
            None => expected,
        };
        self.replay
            .first_sight(&seen, Duration::from_millis(keep_ms as u64))
            .await
    }

    /// What of the signature can be checked before the body is read: `X-Timestamp` present and
    /// inside the window, `X-Signature` present. A route that reads a large body first (an
    /// upload) refuses with it at once what [`Auth::verify_request_hashed`] would refuse at the
    /// end, so an unsigned request never waits for, or holds, anything.
    pub fn check_signature_headers(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        fresh_timestamp(headers, now_millis())?;
        header(headers, SIGNATURE_HEADER).ok_or(AuthError::InvalidSignature)?;
        Ok(())
    }

    /// The session behind a bearer token.
    pub async fn session(&self, token: &str) -> Result<Session, AuthError> {
        if !is_token_shaped(token) {
            return Err(AuthError::Unauthorized);
        }
        if let Some(session) = self.recent.get(token) {
            return Ok(session);
        }
        let session = self.sessions.get(token).await?;
        self.recent.keep(token, &session);
        Ok(session)
    }

    /// Stores a new session and returns its token (64 hex characters: 256 random bits).
    /// A session that fails [`Session::validate`] is refused with `Unauthorized`; a `ttl`
    /// under one second counts as one second.
    pub async fn create_session(
        &self,
        session: &Session,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        self.sessions.create(session, ttl).await
    }

    /// The CSRF token of a browser session (the admin web manager): lowercase hex
    /// HMAC-SHA256(app secret, "csrf:" + session token). Derived rather than stored, so it
    /// survives a reload and every node computes the same one.
    pub fn csrf_token(&self, session_token: &str) -> String {
        signature_hex(&self.secret, &format!("csrf:{session_token}"))
    }

    /// Whether `sent` is the CSRF token of `session_token`, compared in constant time.
    pub fn csrf_matches(&self, session_token: &str, sent: &str) -> bool {
        let expected = self.csrf_token(session_token);
        bool::from(sent.as_bytes().ct_eq(expected.as_bytes()))
    }

    /// Ends a session; ending an unknown one is not an error.
    pub async fn delete_session(&self, token: &str) -> Result<(), AuthError> {
        if !is_token_shaped(token) {
            return Ok(());
        }
        // Before and after: a read in between must neither be answered from the cache nor
        // put the session back in it.
        self.recent.forget(token);
        let deleted = self.sessions.delete(token).await;
        self.recent.forget(token);
        deleted
    }
}

/// The string the signature covers: `timestamp \n METHOD \n path-and-query \n sha256hex(body)`.
pub fn string_to_sign(
    timestamp_ms: i64,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    string_to_sign_raw(&timestamp_ms.to_string(), method, path_and_query, body)
}

/// The X-Signature value for a request: lowercase hex HMAC-SHA256(secret, string-to-sign).
pub fn sign(
    secret: &str,
    timestamp_ms: i64,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    signature_hex(
        secret,
        &string_to_sign(timestamp_ms, method, path_and_query, body),
    )
}

/// The current time in milliseconds since the Unix epoch (what X-Timestamp carries).
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Lowercase hex SHA-256, as the sessions table keys tokens and the signature hashes bodies.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The timestamp is signed as sent, so the string uses the header's own text.
fn string_to_sign_raw(timestamp: &str, method: &str, path_and_query: &str, body: &[u8]) -> String {
    format!(
        "{timestamp}\n{method}\n{path_and_query}\n{}",
        sha256_hex(body)
    )
}

fn signature_hex(secret: &str, string_to_sign: &str) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive; a header sent
/// twice names no one).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = header(headers, "authorization")?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The header's value when it is sent exactly once (two signatures are no signature).
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    }
}

/// X-Timestamp as sent and in milliseconds, when it is sent once and within [`MAX_CLOCK_SKEW`]
/// of `now_ms`.
fn fresh_timestamp(headers: &HeaderMap, now_ms: i64) -> Result<(&str, i64), AuthError> {
    if !headers.contains_key(TIMESTAMP_HEADER) && !headers.contains_key(SIGNATURE_HEADER) {
        return Err(AuthError::Unsigned);
    }
    let (timestamp, timestamp_ms) = header(headers, TIMESTAMP_HEADER)
        .and_then(|raw| parse_timestamp(raw).map(|ms| (raw, ms)))
        .ok_or(AuthError::StaleTimestamp)?;
    if now_ms.abs_diff(timestamp_ms) > MAX_CLOCK_SKEW.as_millis() as u64 {
        return Err(AuthError::StaleTimestamp);
    }
    Ok((timestamp, timestamp_ms))
}

/// Digits only (no sign, no spaces), at most 15 of them: milliseconds until the year 33658.
fn parse_timestamp(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 15 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

/// RFC 6750 b64token characters, 1..=512 of them: anything else cannot be a token we issued
/// or the login system wrote, and never reaches Redis or the database.
fn is_token_shaped(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 512
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identifier_with_a_direction_override_is_refused() {
        let session = |identifier: &str| Session {
            user_id: 42,
            role: Role::User,
            identifier: identifier.to_string(),
        };
        assert!(session("user_uuid_42").validate().is_ok());
        for bad in ["user\u{202E}24", "a\u{2066}b", "a\u{200F}b", "a\u{7}b"] {
            assert!(session(bad).validate().is_err(), "{bad:?}");
        }
    }
}
