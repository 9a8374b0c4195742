//! Start-up failures said so that an operator knows what to fix: which variable, what went
//! wrong in plain words, and each cause once.

use crate::store::redact_url;

/// An error and its causes on one line, each cause once: a layer whose text already holds the
/// next one's (sqlx and the store both repeat their source) does not print it again.
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if said.is_empty() || text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

/// Why the database named by `CHAT_DATABASE_URL` could not be used.
pub fn database(url: &str, error: &anyhow::Error) -> String {
    let cause = error_text(error);
    let lower = cause.to_lowercase();
    let (host, port) = host_and_port(url, 3306);
    let what = if lower.contains("connection refused") {
        format!(
            "connection refused: nothing listens at {host}:{port}; is the database running there?"
        )
    } else if lower.contains("lookup address") || lower.contains("name or service not known") {
        format!("unknown host {host}: the name does not resolve")
    } else if lower.contains("access denied") {
        "access denied: check the user and password in the URL, and that this user may connect \
         from this machine"
            .to_string()
    } else if lower.contains("unknown database") {
        let name = database_name(url).unwrap_or_default();
        format!(
            "the database {name} does not exist: create it with `chatd migrate \
             --create-database` (or CREATE DATABASE {name})"
        )
    } else if lower.contains("unable to open database file") {
        "the SQLite file cannot be opened: check that its directory exists and is writable"
            .to_string()
    } else {
        cause
    };
    format!("CHAT_DATABASE_URL ({}): {what}", redact_url(url))
}

/// Why Redis at `CHAT_REDIS_URL` could not be reached.
pub fn redis(url: &str, error: &anyhow::Error) -> String {
    let cause = error_text(error);
    let lower = cause.to_lowercase();
    let (host, port) = host_and_port(url, 6379);
    let what = if lower.contains("connection refused") {
        format!("connection refused: nothing listens at {host}:{port}; is Redis running there?")
    } else if lower.contains("lookup address") || lower.contains("name or service not known") {
        format!("unknown host {host}: the name does not resolve")
    } else if lower.contains("timed out") {
        format!("no answer from {host}:{port} in time")
    } else if lower.contains("noauth") || lower.contains("wrongpass") {
        "authentication failed: check the password in the URL".to_string()
    } else {
        cause
    };
    format!("CHAT_REDIS_URL ({}): {what}", redact_url(url))
}

/// The host and port of a `scheme://[user[:password]@]host[:port][/...]` URL.
fn host_and_port(url: &str, default_port: u16) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if let Some((host, after)) = host_port
        .strip_prefix('[')
        .and_then(|bracketed| bracketed.split_once(']'))
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host.to_string(), port.unwrap_or(default_port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(default_port)),
        None => (host_port.to_string(), default_port),
    }
}

/// The database a MySQL URL names (its path), when it is a plain name.
pub fn database_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let name = path.split('?').next().unwrap_or_default();
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    plain.then(|| name.to_string())
}

/// The same URL without its database, for creating it.
pub fn server_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = rest.split_once('/')?;
    let query = path
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    Some(format!("{scheme}://{authority}/{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_said_is_not_said_again() {
        let error = anyhow::anyhow!("Connection refused (os error 111)")
            .context("error communicating with database: Connection refused (os error 111)")
            .context("connecting");
        assert_eq!(
            error_text(&error),
            "connecting: error communicating with database: Connection refused (os error 111)"
        );
    }

    #[test]
    fn each_database_failure_names_the_variable_and_what_to_fix() {
        let url = "mysql://app:secret@db.example:3307/chat";
        let said = |cause: &str| database(url, &anyhow::anyhow!(cause.to_string()));
        let refused = said("error communicating with database: Connection refused (os error 111)");
        assert_eq!(
            refused,
            "CHAT_DATABASE_URL (mysql://app:***@db.example:3307/chat): connection refused: \
             nothing listens at db.example:3307; is the database running there?"
        );
        assert!(
            said("1049 (42000): Unknown database 'chat'")
                .contains("chatd migrate --create-database")
        );
        assert!(said("1045 (28000): Access denied for user").contains("access denied"));
        assert!(said("failed to lookup address information").contains("unknown host db.example"));
        assert!(!refused.contains("secret"));
    }

    #[test]
    fn a_database_name_and_its_server() {
        assert_eq!(
            database_name("mysql://root@127.0.0.1:3306/test"),
            Some("test".into())
        );
        assert_eq!(database_name("mysql://root@h/x;drop"), None);
        assert_eq!(
            server_url("mysql://root@127.0.0.1:3306/test?ssl-mode=disabled"),
            Some("mysql://root@127.0.0.1:3306/?ssl-mode=disabled".into())
        );
        assert_eq!(
            host_and_port("redis://127.0.0.1/", 6379),
            ("127.0.0.1".into(), 6379)
        );
    }
}
