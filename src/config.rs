//! Configuration from the environment (see the README's table).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::store::StoreOptions;

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: Option<String>,
    pub bind: IpAddr,
    pub port: u16,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    /// Conversations whose folded state the command layer keeps in memory.
    pub aggregate_cache: usize,
    /// How long an acknowledged command waits for the read tables to show it.
    pub read_your_writes_timeout: Duration,
}

impl Config {
    /// Reads `CHAT_*` variables; unset ones take the embedded defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let data_dir = PathBuf::from(get("CHAT_DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = get("CHAT_DATABASE_URL")
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("chatd.db").display()));
        let bind = get("CHAT_BIND")
            .unwrap_or_else(|| "127.0.0.1".into())
            .parse()
            .context("CHAT_BIND must be an IP address")?;
        let port = parse(get("CHAT_PORT"), "CHAT_PORT", 10000)?;
        let db_max_connections = parse(
            get("CHAT_DB_MAX_CONNECTIONS"),
            "CHAT_DB_MAX_CONNECTIONS",
            16,
        )?;
        if db_max_connections == 0 {
            bail!("CHAT_DB_MAX_CONNECTIONS must be at least 1");
        }
        let acquire_ms: u64 = parse(
            get("CHAT_DB_ACQUIRE_TIMEOUT_MS"),
            "CHAT_DB_ACQUIRE_TIMEOUT_MS",
            2000,
        )?;
        let aggregate_cache = parse(get("CHAT_AGGREGATE_CACHE"), "CHAT_AGGREGATE_CACHE", 10_000)?;
        let read_your_writes_ms: u64 = parse(
            get("CHAT_READ_YOUR_WRITES_TIMEOUT_MS"),
            "CHAT_READ_YOUR_WRITES_TIMEOUT_MS",
            2000,
        )?;
        Ok(Config {
            data_dir,
            database_url,
            redis_url: get("CHAT_REDIS_URL"),
            bind,
            port,
            db_max_connections,
            db_acquire_timeout: Duration::from_millis(acquire_ms),
            aggregate_cache,
            read_your_writes_timeout: Duration::from_millis(read_your_writes_ms),
        })
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            url: self.database_url.clone(),
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

fn parse<T: std::str::FromStr>(value: Option<String>, name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v:?} is not valid: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set_means_sqlite_in_the_data_directory_on_port_10000() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.database_url, "sqlite://./data/chatd.db");
        assert_eq!(config.listen_addr().to_string(), "127.0.0.1:10000");
        assert!(config.redis_url.is_none());
    }

    #[test]
    fn a_malformed_port_is_refused_with_its_name() {
        let error =
            Config::from_lookup(|n| (n == "CHAT_PORT").then(|| "ten".to_string())).unwrap_err();
        assert!(error.to_string().contains("CHAT_PORT"));
    }
}
