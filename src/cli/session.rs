//! The operator's auth tools: `chatd session create` and `chatd sign`. The clap variants live in
//! `crate::cli`; these functions do the work and print the result on stdout.

use std::time::Duration;

use anyhow::{Context, bail};
use events::Role;

use crate::auth::sessions::SessionStore;
use crate::auth::{Session, now_millis, secret, sign};
use crate::config::Config;

/// The session lifetime when `--ttl` is not given.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// `chatd session create --user-id 42 --role user --identifier user_uuid_42 [--ttl 24h]`:
/// stores a session (in Redis when `CHAT_REDIS_URL` is set, else in the database, migrating
/// it first) and prints its token alone on one line. Returns the token.
pub async fn session_create_command(
    config: &Config,
    user_id: u64,
    role: &str,
    identifier: &str,
    ttl: Option<&str>,
) -> anyhow::Result<String> {
    let role: Role = role
        .parse()
        .ok()
        .filter(|r| matches!(r, Role::User | Role::Admin | Role::Auditor))
        .with_context(|| format!("--role must be user, admin or auditor, got {role:?}"))?;
    let session = Session {
        user_id,
        role,
        identifier: identifier.to_string(),
    };
    session
        .validate()
        .map_err(|reason| anyhow::anyhow!("invalid session: {reason}"))?;
    let ttl = match ttl {
        Some(text) => parse_ttl(text)?,
        None => DEFAULT_SESSION_TTL,
    };
    let (sessions, store) = match &config.redis_url {
        Some(url) => (SessionStore::redis(crate::redis::connect(url).await?), None),
        None => {
            let store = crate::startup::open_store(config).await?;
            (SessionStore::database(store.clone()), Some(store))
        }
    };
    warn_if_the_server_looks_elsewhere(config, sessions.kind()).await;
    let created = sessions.create(&session, ttl).await;
    if let Some(store) = store {
        store.close().await;
    }
    let token = created.map_err(|e| anyhow::anyhow!("creating the session: {e}"))?;
    println!("{token}");
    Ok(token)
}

/// A server on this machine (CHAT_BIND, CHAT_PORT) that keeps sessions elsewhere would answer
/// the new token 401: said on stderr. Nothing is said when no server answers in time.
async fn warn_if_the_server_looks_elsewhere(config: &Config, written_to: &str) {
    let url = format!("http://{}/healthz", config.listen_addr());
    let asked = push_http::Client::new()
        .get(&url)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    let Ok(answer) = asked else {
        return;
    };
    let Ok(health) = answer.json::<serde_json::Value>().await else {
        return;
    };
    let server = health["data"]["sessions"].as_str().unwrap_or_default();
    if !server.is_empty() && server != written_to {
        let hint = if server == "redis" {
            "set CHAT_REDIS_URL as the server has it"
        } else {
            "unset CHAT_REDIS_URL, as the server runs without it"
        };
        eprintln!(
            "chatd: warning: this session goes to the {written_to}, but the server at {} looks \
             sessions up in {server}: it will answer this token 401 UNAUTHORIZED ({hint})",
            config.listen_addr()
        );
    }
}

/// `chatd sign METHOD PATH [BODY]`: prints the `X-Timestamp` and `X-Signature` headers for a
/// request made now (for curl: send exactly BODY's bytes, e.g. `--data-raw`). The secret is
/// `CHAT_APP_SECRET`, else the generated one in the data directory (generated if missing).
/// Returns the two header lines.
pub fn sign_command(
    config: &Config,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<String> {
    if !path.starts_with('/') {
        bail!("PATH must start with / (path and query as sent, e.g. /api/chat/messages?limit=5)");
    }
    let secret = app_secret_for_signing(config)?;
    let lines = signed_headers(
        &secret,
        now_millis(),
        &method.to_ascii_uppercase(),
        path,
        body.unwrap_or("").as_bytes(),
    );
    println!("{lines}");
    Ok(lines)
}

/// The secret a server on this machine signs with. A data directory made just now holds a new
/// secret no running server knows: said on stderr, since the request would then get 401.
fn app_secret_for_signing(config: &Config) -> anyhow::Result<String> {
    let (secret, source) = secret::app_secret(config)?;
    if let secret::SecretSource::Generated(file) = &source {
        eprintln!(
            "chatd: warning: no app secret was kept at {}: made a new one, which a server \
             started with another data directory does not know (its requests get 401 \
             INVALID_SIGNATURE). Run this where the server runs, or set CHAT_DATA_DIR or \
             CHAT_APP_SECRET as the server has them.",
            file.display()
        );
    }
    Ok(secret)
}

/// `chatd curl METHOD PATH [BODY] [--token T] [--url BASE]`: signs the request now (a signature
/// is good for one request, so every run signs afresh), sends it, prints the status line and the
/// answer, and fails on a 4xx or 5xx.
pub async fn curl_command(
    config: &Config,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
    url: Option<&str>,
) -> anyhow::Result<()> {
    if !path.starts_with('/') {
        bail!("PATH must start with / (path and query as sent, e.g. /api/chat/messages?limit=5)");
    }
    let secret = app_secret_for_signing(config)?;
    let method = method.to_ascii_uppercase();
    let body = body.unwrap_or("");
    let timestamp = now_millis();
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", config.listen_addr()),
    };
    let mut request = push_http::Client::new()
        .request(
            push_http::Method::from_bytes(method.as_bytes())
                .with_context(|| format!("{method} is not an HTTP method"))?,
            format!("{base}{path}"),
        )
        .header("X-Timestamp", timestamp.to_string())
        .header(
            "X-Signature",
            sign(&secret, timestamp, &method, path, body.as_bytes()),
        );
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if !body.is_empty() {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("sending {method} {base}{path}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(json) => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or(text.clone())
        ),
        Err(_) => println!("{text}"),
    }
    if status.is_client_error() || status.is_server_error() {
        bail!("the server answered {status}");
    }
    Ok(())
}

/// The two header lines for a request signed at `timestamp_ms`.
pub fn signed_headers(
    secret: &str,
    timestamp_ms: i64,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    let signature = sign(secret, timestamp_ms, method, path_and_query, body);
    format!("X-Timestamp: {timestamp_ms}\nX-Signature: {signature}")
}

/// A lifetime like `90s`, `30m`, `24h`, `7d` (a bare number is seconds); at least one second.
pub fn parse_ttl(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("--ttl {text:?}: expected a number and a unit (s, m, h, d)"))?;
    let seconds_per_unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        other => bail!("--ttl {text:?}: unknown unit {other:?} (use s, m, h or d)"),
    };
    let seconds = number
        .checked_mul(seconds_per_unit)
        .filter(|s| *s >= 1)
        .with_context(|| format!("--ttl {text:?} must be at least 1s and not absurdly large"))?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_read_with_their_units() {
        assert_eq!(parse_ttl("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_ttl("30m").unwrap(), Duration::from_secs(1_800));
        assert_eq!(parse_ttl("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("45s").unwrap(), Duration::from_secs(45));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("h").is_err());
        assert!(parse_ttl("").is_err());
    }

    #[test]
    fn signed_headers_carry_the_timestamp_and_the_signature() {
        let lines = signed_headers("secret", 1_700_000_000_000, "GET", "/api/x?a=1", b"");
        let expected = sign("secret", 1_700_000_000_000, "GET", "/api/x?a=1", b"");
        assert_eq!(
            lines,
            format!("X-Timestamp: 1700000000000\nX-Signature: {expected}")
        );
    }
}
