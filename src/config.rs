//! Configuration from the environment (see the README's table).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::store::{StoreOptions, redact_url};

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub redis_url: Option<String>,
    /// Prefix of the Socket.IO adapter's Redis channels (deployments sharing a Redis differ).
    pub redis_prefix: String,
    pub bind: IpAddr,
    pub port: u16,
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    /// Conversations whose folded state the command layer keeps in memory.
    pub aggregate_cache: usize,
    /// `CHAT_NODE_ID`: the name this node holds its leases under (else kept in the data directory).
    pub node_id: Option<String>,
    /// `CHAT_SESSION_CACHE_MS`: how long a session read from the store is reused (0: never).
    pub session_cache: Duration,
    /// How long an acknowledged command waits for the read tables to show it.
    pub read_your_writes_timeout: Duration,
    /// The app signature secret (`CHAT_APP_SECRET`); unset: generated once into the data
    /// directory (see [`crate::auth::Auth::new`]). Never printed by `Debug`.
    pub app_secret: Option<String>,
    /// `CHAT_OPS_TOKEN`: lets operators see `/readyz`'s details from anywhere. Never printed.
    pub ops_token: Option<String>,
    /// `CHAT_METRICS_BIND`: where `/metrics` is served instead of the API's port.
    pub metrics_bind: Option<SocketAddr>,
    /// `CHAT_ENCRYPTION_KEY_FILE`: the master key that wraps the data keys at rest.
    pub master_key: Option<std::sync::Arc<crate::store::MasterKey>>,
    /// `CHAT_ENCRYPTION_PREVIOUS_KEY_FILE`: the master key a rotation moves away from.
    pub previous_master_key: Option<std::sync::Arc<crate::store::MasterKey>>,
    /// `CHAT_TRUSTED_PROXIES`: peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::peer::TrustedProxies,
    /// Messages a caller may send per minute (at least 1: 0 is not "off").
    pub limit_messages_per_min: u32,
    /// Uploads a caller may make per minute (at least 1).
    pub limit_uploads_per_min: u32,
    /// Typing indicators a caller may send per minute (at least 1).
    pub limit_typing_per_min: u32,
    /// Conversations a caller may join over Socket.IO per minute (each join reads history).
    pub limit_joins_per_min: u32,
    /// Searches a caller may run per minute.
    pub limit_searches_per_min: u32,
    /// Index entries a search over every conversation reads before it answers with what it
    /// found among the newest messages (at least 100).
    pub search_read_budget: usize,
    /// `CHAT_EDIT_WINDOW_SECS`: how long after sending a sender may edit or delete a message.
    pub edit_window_secs: u64,
    /// The Socket.IO settings a deployment may tune.
    pub sockets: SocketSettings,
    /// Base of `file_url` (`CHAT_PUBLIC_URL`); unset: `http://` and the listening address.
    pub public_url: Option<String>,
    /// Largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Largest image, in pixels (width x height), read from its header before anything decodes it.
    pub max_image_pixels: u64,
    /// Uploads one caller may have in progress on this node at once (at least 1).
    pub uploads_per_caller: usize,
    /// Longest wait for the next piece of an upload's body before it is cut off (408).
    pub upload_idle_timeout: Duration,
    /// The whole upload body must have arrived within this (408).
    pub upload_timeout: Duration,
    /// An S3-compatible bucket for uploads (`CHAT_S3_BUCKET`); unset: the data directory.
    pub s3_bucket: Option<String>,
    /// The S3 endpoint for a store other than AWS (`CHAT_S3_ENDPOINT`, e.g. MinIO).
    pub s3_endpoint: Option<String>,
    /// `CHAT_S3_REGION`, `CHAT_S3_ACCESS_KEY_ID`, `CHAT_S3_SECRET_ACCESS_KEY`; unset ones come
    /// from the usual `AWS_*` variables. Never printed by `Debug`.
    pub s3_region: Option<String>,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<String>,
    /// With Redis: how long a node's sockets keep counting after its last heartbeat (a crashed
    /// node's people go offline within about this long).
    pub presence_ttl: Duration,
    /// Whether new and reopened conversations are assigned to an available admin automatically.
    pub auto_assign: bool,
    /// `CHAT_RETENTION_DAYS`: conversations closed or archived longer ago are erased; None: kept.
    pub retention_days: Option<u32>,
    /// Active conversations an admin is given automatically at most.
    pub assign_capacity: u64,
    /// Push notifications (off unless FCM or APNs is configured).
    pub push: crate::push::PushSettings,
}

/// Socket.IO settings. A socket whose outgoing buffer is full has stopped reading: it is
/// disconnected at once when it reads again, and by the heartbeat otherwise.
#[derive(Clone, Debug)]
pub struct SocketSettings {
    /// Packets buffered for one socket before it counts as not reading.
    pub buffer_packets: usize,
    /// The kernel send buffer of each accepted connection, in bytes (0: the kernel's own
    /// autotuning, which lets a client that stops reading hold megabytes before the packet
    /// buffer above even starts to fill).
    pub send_buffer_bytes: usize,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("db_max_connections", &self.db_max_connections)
            .field("db_acquire_timeout", &self.db_acquire_timeout)
            .field("aggregate_cache", &self.aggregate_cache)
            .field("node_id", &self.node_id)
            .field("session_cache", &self.session_cache)
            .field("read_your_writes_timeout", &self.read_your_writes_timeout)
            .field("app_secret", &self.app_secret.as_ref().map(|_| "***"))
            .field("ops_token", &self.ops_token.as_ref().map(|_| "***"))
            .field("metrics_bind", &self.metrics_bind)
            .field("master_key", &self.master_key.as_ref().map(|key| key.id()))
            .field(
                "previous_master_key",
                &self.previous_master_key.as_ref().map(|key| key.id()),
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("limit_messages_per_min", &self.limit_messages_per_min)
            .field("limit_uploads_per_min", &self.limit_uploads_per_min)
            .field("limit_typing_per_min", &self.limit_typing_per_min)
            .field("limit_joins_per_min", &self.limit_joins_per_min)
            .field("limit_searches_per_min", &self.limit_searches_per_min)
            .field("search_read_budget", &self.search_read_budget)
            .field("edit_window_secs", &self.edit_window_secs)
            .field("sockets", &self.sockets)
            .field("public_url", &self.public_url)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_image_pixels", &self.max_image_pixels)
            .field("uploads_per_caller", &self.uploads_per_caller)
            .field("upload_idle_timeout", &self.upload_idle_timeout)
            .field("upload_timeout", &self.upload_timeout)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field(
                "s3_secret_access_key",
                &self.s3_secret_access_key.as_ref().map(|_| "***"),
            )
            .field("presence_ttl", &self.presence_ttl)
            .field("auto_assign", &self.auto_assign)
            .field("retention_days", &self.retention_days)
            .field("assign_capacity", &self.assign_capacity)
            .field("push", &self.push)
            .finish()
    }
}

impl Config {
    /// Reads `CHAT_*` variables, then the file `CHAT_CONFIG` names (if any); unset ones take
    /// the embedded defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_sources(None, &[])
    }

    /// Each setting from, in this order: `given` (the command line; clap has already put the
    /// environment's values there), the environment, the TOML `file` (else the one `CHAT_CONFIG`
    /// names), the default.
    pub fn from_sources(file: Option<&Path>, given: &[(&str, String)]) -> anyhow::Result<Self> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_VAR).map(PathBuf::from));
        let from_file = match &file {
            Some(path) => read_config_file(path)?,
            None => HashMap::new(),
        };
        Self::from_lookup(|name| {
            given
                .iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| value.clone())
                .or_else(|| std::env::var(name).ok())
                .or_else(|| from_file.get(name).cloned())
        })
        .with_context(|| match &file {
            Some(path) => format!("with the settings file {}", path.display()),
            None => "from the command line and the environment".to_string(),
        })
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        // Read by the logger before the configuration; checked here so a misspelt value stops
        // the start instead of quietly logging text.
        crate::telemetry::LogFormat::parse_strict(get(crate::telemetry::FORMAT_VAR).as_deref())
            .map_err(anyhow::Error::msg)?;
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
        let trusted_proxies =
            crate::peer::TrustedProxies::parse(&get("CHAT_TRUSTED_PROXIES").unwrap_or_default())
                .map_err(|problem| anyhow::anyhow!("CHAT_TRUSTED_PROXIES: {problem}"))?;
        let ops_token = get("CHAT_OPS_TOKEN");
        if ops_token.as_ref().is_some_and(|token| token.len() < 16) {
            bail!("CHAT_OPS_TOKEN must be at least 16 characters");
        }
        let metrics_bind = get("CHAT_METRICS_BIND")
            .map(|raw| raw.trim().parse::<SocketAddr>())
            .transpose()
            .context("CHAT_METRICS_BIND must be an address and port, such as 127.0.0.1:9100")?;
        let key_file = |variable: &str| {
            get(variable)
                .map(|path| {
                    crate::store::MasterKey::from_file_named(Path::new(path.trim()), variable)
                })
                .transpose()
                .map_err(anyhow::Error::msg)
                .map(|key| key.map(std::sync::Arc::new))
        };
        let master_key = key_file(crate::store::KEY_FILE_VARIABLE)?;
        let previous_master_key = key_file(crate::store::PREVIOUS_KEY_FILE_VARIABLE)?;
        if previous_master_key.is_some() && master_key.is_none() {
            bail!(
                "CHAT_ENCRYPTION_PREVIOUS_KEY_FILE is set without CHAT_ENCRYPTION_KEY_FILE: set the new master key too"
            );
        }
        let limit = |name: &str, default: u32| -> anyhow::Result<u32> {
            let value = parse(get(name), name, default)?;
            if value == 0 {
                bail!("{name} must be at least 1 (0 is not \"off\"; raise it to loosen the limit)");
            }
            Ok(value)
        };
        let limit_messages_per_min = limit("CHAT_LIMIT_MESSAGES_PER_MIN", 60)?;
        let limit_uploads_per_min = limit("CHAT_LIMIT_UPLOADS_PER_MIN", 10)?;
        let limit_typing_per_min = limit("CHAT_LIMIT_TYPING_PER_MIN", 10)?;
        let limit_joins_per_min = limit("CHAT_LIMIT_JOINS_PER_MIN", 120)?;
        let limit_searches_per_min = limit("CHAT_LIMIT_SEARCHES_PER_MIN", 60)?;
        let search_read_budget: usize = parse(
            get("CHAT_SEARCH_READ_BUDGET"),
            "CHAT_SEARCH_READ_BUDGET",
            crate::store::DEFAULT_SEARCH_READ_BUDGET,
        )?;
        let edit_window_secs: u64 =
            parse(get("CHAT_EDIT_WINDOW_SECS"), "CHAT_EDIT_WINDOW_SECS", 900)?;
        if search_read_budget < 100 {
            bail!("CHAT_SEARCH_READ_BUDGET must be at least 100");
        }
        let buffer_packets: usize = parse(get("CHAT_SOCKET_BUFFER"), "CHAT_SOCKET_BUFFER", 1024)?;
        if buffer_packets == 0 {
            bail!("CHAT_SOCKET_BUFFER must be at least 1");
        }
        let send_buffer_bytes: usize = parse(
            get("CHAT_SOCKET_SEND_BUFFER"),
            "CHAT_SOCKET_SEND_BUFFER",
            256 * 1024,
        )?;
        let ping_interval_ms: u64 = parse(
            get("CHAT_SOCKET_PING_INTERVAL_MS"),
            "CHAT_SOCKET_PING_INTERVAL_MS",
            25_000,
        )?;
        let ping_timeout_ms: u64 = parse(
            get("CHAT_SOCKET_PING_TIMEOUT_MS"),
            "CHAT_SOCKET_PING_TIMEOUT_MS",
            20_000,
        )?;
        if ping_interval_ms < 100 || ping_timeout_ms < 100 {
            bail!(
                "CHAT_SOCKET_PING_INTERVAL_MS and CHAT_SOCKET_PING_TIMEOUT_MS must be at least 100"
            );
        }
        let max_upload_bytes: u64 = parse(
            get("CHAT_MAX_UPLOAD_BYTES"),
            "CHAT_MAX_UPLOAD_BYTES",
            10 * 1024 * 1024,
        )?;
        if max_upload_bytes == 0 {
            bail!("CHAT_MAX_UPLOAD_BYTES must be at least 1");
        }
        let max_image_pixels: u64 = parse(
            get("CHAT_MAX_IMAGE_PIXELS"),
            "CHAT_MAX_IMAGE_PIXELS",
            50_000_000,
        )?;
        let uploads_per_caller: usize =
            parse(get("CHAT_UPLOADS_PER_CALLER"), "CHAT_UPLOADS_PER_CALLER", 4)?;
        if uploads_per_caller == 0 {
            bail!("CHAT_UPLOADS_PER_CALLER must be at least 1");
        }
        let upload_idle_timeout_ms: u64 = parse(
            get("CHAT_UPLOAD_IDLE_TIMEOUT_MS"),
            "CHAT_UPLOAD_IDLE_TIMEOUT_MS",
            15_000,
        )?;
        let upload_timeout_ms: u64 = parse(
            get("CHAT_UPLOAD_TIMEOUT_MS"),
            "CHAT_UPLOAD_TIMEOUT_MS",
            120_000,
        )?;
        if upload_idle_timeout_ms < 100 || upload_timeout_ms < 100 {
            bail!("CHAT_UPLOAD_IDLE_TIMEOUT_MS and CHAT_UPLOAD_TIMEOUT_MS must be at least 100");
        }
        let public_url = get("CHAT_PUBLIC_URL").filter(|url| !url.trim().is_empty());
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bail!("CHAT_PUBLIC_URL must start with http:// or https://");
        }
        let presence_ttl_ms: u64 =
            parse(get("CHAT_PRESENCE_TTL_MS"), "CHAT_PRESENCE_TTL_MS", 15_000)?;
        if !(1_000..=30_000).contains(&presence_ttl_ms) {
            bail!("CHAT_PRESENCE_TTL_MS must be between 1000 and 30000");
        }
        let retention_days = get("CHAT_RETENTION_DAYS")
            .map(|raw| match raw.trim().parse::<u32>() {
                Ok(days) if days >= 1 => Ok(days),
                _ => Err(anyhow::anyhow!(
                    "CHAT_RETENTION_DAYS must be a whole number of days, at least 1 (unset: keep forever)"
                )),
            })
            .transpose()?;
        let auto_assign = match get("CHAT_AUTO_ASSIGN").map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if matches!(v.as_str(), "on" | "true" | "1" | "yes") => true,
            Some(v) if matches!(v.as_str(), "off" | "false" | "0" | "no") => false,
            Some(v) => bail!("CHAT_AUTO_ASSIGN={v:?} is not valid: use on or off"),
        };
        let assign_capacity: u64 = parse(get("CHAT_ASSIGN_CAPACITY"), "CHAT_ASSIGN_CAPACITY", 10)?;
        if assign_capacity == 0 {
            bail!(
                "CHAT_ASSIGN_CAPACITY must be at least 1 (turn assignment off with CHAT_AUTO_ASSIGN=off)"
            );
        }
        let push = crate::push::PushSettings::from_lookup(&get)?;
        let session_cache = Duration::from_millis(parse(
            get("CHAT_SESSION_CACHE_MS"),
            "CHAT_SESSION_CACHE_MS",
            1000,
        )?);
        let node_id = get("CHAT_NODE_ID").map(|v| v.trim().to_string());
        if let Some(name) = node_id.as_deref().filter(|n| !crate::node::is_valid(n)) {
            bail!(
                "CHAT_NODE_ID={name:?} is not valid: up to {} letters, digits, '-', '_' or '.'",
                crate::node::MAX_NODE_ID
            );
        }
        Ok(Config {
            data_dir,
            database_url,
            redis_url: get("CHAT_REDIS_URL"),
            redis_prefix: get("CHAT_REDIS_PREFIX").unwrap_or_else(|| "chatd".into()),
            bind,
            port,
            db_max_connections,
            db_acquire_timeout: Duration::from_millis(acquire_ms),
            aggregate_cache,
            node_id,
            session_cache,
            read_your_writes_timeout: Duration::from_millis(read_your_writes_ms),
            app_secret: get("CHAT_APP_SECRET"),
            ops_token,
            metrics_bind,
            master_key,
            previous_master_key,
            trusted_proxies,
            limit_messages_per_min,
            limit_uploads_per_min,
            limit_typing_per_min,
            limit_joins_per_min,
            limit_searches_per_min,
            search_read_budget,
            edit_window_secs,
            sockets: SocketSettings {
                buffer_packets,
                send_buffer_bytes,
                ping_interval: Duration::from_millis(ping_interval_ms),
                ping_timeout: Duration::from_millis(ping_timeout_ms),
            },
            public_url,
            max_upload_bytes,
            max_image_pixels,
            uploads_per_caller,
            upload_idle_timeout: Duration::from_millis(upload_idle_timeout_ms),
            upload_timeout: Duration::from_millis(upload_timeout_ms),
            s3_bucket: get("CHAT_S3_BUCKET").filter(|b| !b.is_empty()),
            s3_endpoint: get("CHAT_S3_ENDPOINT").filter(|e| !e.is_empty()),
            s3_region: get("CHAT_S3_REGION").filter(|v| !v.is_empty()),
            s3_access_key_id: get("CHAT_S3_ACCESS_KEY_ID").filter(|v| !v.is_empty()),
            s3_secret_access_key: get("CHAT_S3_SECRET_ACCESS_KEY").filter(|v| !v.is_empty()),
            presence_ttl: Duration::from_millis(presence_ttl_ms),
            auto_assign,
            retention_days,
            assign_capacity,
            push,
        })
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            url: self.database_url.clone(),
            max_connections: self.db_max_connections,
            acquire_timeout: self.db_acquire_timeout,
            master_key: self.master_key.clone(),
            previous_master_key: self.previous_master_key.clone(),
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

/// The variable naming a settings file (`--config`).
pub const CONFIG_VAR: &str = "CHAT_CONFIG";

/// A TOML file of settings under their keys (`port = 10000`, `database_url = "mysql://..."`),
/// as variable name -> value. An unknown key, or a value that is not a string, a number or a
/// boolean, is refused with its key.
fn read_config_file(path: &Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the settings file {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("the settings file {} is not TOML", path.display()))?;
    let mut values = HashMap::new();
    for (key, value) in table {
        let setting = crate::settings::SETTINGS
            .iter()
            .find(|s| s.key == key && s.var != CONFIG_VAR)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: unknown setting {key:?} (`chatd serve --help` lists them)",
                    path.display()
                )
            })?;
        let value = match value {
            toml::Value::String(text) => text,
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(true) => "on".to_string(),
            toml::Value::Boolean(false) => "off".to_string(),
            other => anyhow::bail!(
                "{}: {key} ({}) must be a string, a number or a boolean, got {}",
                path.display(),
                setting.var,
                other.type_str()
            ),
        };
        values.insert(setting.var.to_string(), value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings table states each default as text (for `--help`, the README and
    /// `.env.example`) and this module parses with its own: setting a variable to the table's
    /// default must change nothing. A default that is no value one could write ("unset",
    /// "generated", or a description such as "http:// + the listening address" or one naming
    /// another setting) is passed over.
    #[test]
    fn every_default_in_the_settings_table_is_the_one_the_configuration_uses() {
        let unset = format!("{:?}", Config::from_lookup(|_| None).unwrap());
        let mut compared = 0;
        let mut disagree = Vec::new();
        for setting in crate::settings::SETTINGS {
            let default = setting.default;
            if matches!(default, "unset" | "generated") || default.contains([' ', '$']) {
                continue;
            }
            let config = Config::from_lookup(|name| (name == setting.var).then(|| default.into()));
            match config {
                Ok(config) if format!("{config:?}") == unset => compared += 1,
                Ok(_) => disagree.push(format!("{}: the table says {default:?}", setting.var)),
                Err(error) => disagree.push(format!(
                    "{}: {default:?} is refused: {error:#}",
                    setting.var
                )),
            }
        }
        assert!(disagree.is_empty(), "{disagree:#?}");
        assert!(compared > 30, "only {compared} defaults compared");
    }

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

    #[test]
    fn limits_default_to_the_contract_and_follow_the_environment() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(
            (
                config.limit_messages_per_min,
                config.limit_uploads_per_min,
                config.limit_typing_per_min
            ),
            (60, 10, 10)
        );
        let config = Config::from_lookup(|n| {
            (n == "CHAT_LIMIT_MESSAGES_PER_MIN").then(|| "100000".to_string())
        })
        .unwrap();
        assert_eq!(config.limit_messages_per_min, 100_000);
    }

    #[test]
    fn a_zero_limit_is_refused_because_zero_is_not_off() {
        for name in [
            "CHAT_LIMIT_MESSAGES_PER_MIN",
            "CHAT_LIMIT_UPLOADS_PER_MIN",
            "CHAT_LIMIT_TYPING_PER_MIN",
            "CHAT_LIMIT_JOINS_PER_MIN",
            "CHAT_LIMIT_SEARCHES_PER_MIN",
        ] {
            let error = Config::from_lookup(|n| (n == name).then(|| "0".to_string())).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn upload_bounds_have_defaults_and_refuse_zero() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.uploads_per_caller, 4);
        assert_eq!(config.upload_idle_timeout, Duration::from_secs(15));
        assert_eq!(config.upload_timeout, Duration::from_secs(120));
        for name in [
            "CHAT_UPLOADS_PER_CALLER",
            "CHAT_UPLOAD_IDLE_TIMEOUT_MS",
            "CHAT_UPLOAD_TIMEOUT_MS",
        ] {
            let error = Config::from_lookup(|n| (n == name).then(|| "0".to_string())).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }

    #[test]
    fn automatic_assignment_is_on_by_default_and_the_operator_turns_it_off() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert!(config.auto_assign);
        assert_eq!(config.assign_capacity, 10);
        assert!(config.presence_ttl <= Duration::from_secs(30));
        let config =
            Config::from_lookup(|n| (n == "CHAT_AUTO_ASSIGN").then(|| "off".to_string())).unwrap();
        assert!(!config.auto_assign);
        assert!(
            Config::from_lookup(|n| (n == "CHAT_AUTO_ASSIGN").then(|| "maybe".to_string()))
                .is_err()
        );
    }

    #[test]
    fn the_app_secret_is_read_but_never_shown_by_debug() {
        let config =
            Config::from_lookup(|n| (n == "CHAT_APP_SECRET").then(|| "s3cr3t-value".to_string()))
                .unwrap();
        assert_eq!(config.app_secret.as_deref(), Some("s3cr3t-value"));
        assert!(!format!("{config:?}").contains("s3cr3t-value"));
    }
}
