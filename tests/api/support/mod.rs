//! Test harness: a fresh database per test on each back end, and the real server on it.
//!
//! MySQL comes from `CHAT_TEST_MYSQL_URL` (default the local MariaDB); when it cannot be reached
//! the test fails: a suite never skips a back end.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use chatd::commands::{CommandBus, Committed, Intent};
use chatd::config::Config;
use chatd::startup::Application;
use chatd::store::{Backend, EventMetadata, EventStore, StoreOptions};
use events::{Actor, NewMessage, Role};
use sqlx::Connection;

pub mod history;
pub mod legacy;
pub mod process;
pub mod proxy;
pub mod raw_http;
pub mod raw_log;

pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// The app secret every test server signs with.
pub const APP_SECRET: &str = "test-app-secret-0123456789abcdef";

pub fn redis_url() -> String {
    std::env::var("CHAT_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string())
}

/// A Redis connection for the suites that need one; an unreachable Redis fails the test.
pub async fn redis() -> redis::aio::ConnectionManager {
    let url = redis_url();
    chatd::redis::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "Redis is required for this suite and is not reachable at {url} \
             (set CHAT_TEST_REDIS_URL): {e:#}"
        )
    })
}

/// A user or admin id no other test uses (Redis keeps limits and sessions across tests).
pub fn fresh_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64 % 1_000_000_000)
        .unwrap_or_default();
    base * 1000 + NEXT.fetch_add(1, Ordering::Relaxed) % 1000 + 1
}

/// Installs a process-wide subscriber that discards everything, before anything logs; every
/// test that makes a database or a server calls it first.
///
/// `tracing` caches per call site whether anyone is interested in it; a call site first hit on a
/// thread with no subscriber while another thread installs a scoped one can cache "never" and
/// stay silent for the tests that capture logs (tests/api/observability.rs), and every test of
/// the suite shares this process. A global subscriber at `info` from the start rules that race
/// out (and keeps the servers' request logs off the terminal).
pub fn quiet_global_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing::subscriber::set_global_default(chatd::telemetry::subscriber(
            chatd::telemetry::LogFormat::Text,
            tracing_subscriber::EnvFilter::new("info"),
            std::io::sink,
        ));
    });
}

/// One fresh, migrated database.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub store: EventStore,
    cleanup: Cleanup,
}

enum Cleanup {
    MySql {
        server_url: String,
        database: String,
    },
    Sqlite {
        dir: std::path::PathBuf,
    },
}

pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:x}{:x}{:x}",
        std::process::id(),
        nanos % 0xffff_ffff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn mysql_server_url() -> String {
    std::env::var("CHAT_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_MYSQL_URL.to_string())
}

/// Replaces the database name of a MySQL URL.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    format!("{}/{database}{query}", &base[..host_end])
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        quiet_global_logs();
        let dir = std::env::temp_dir().join(format!("chatd-test-{}", unique_suffix()));
        let url = format!("sqlite://{}", dir.join("chatd.db").display());
        let store = connect(&url).await;
        TestDb {
            backend: Backend::Sqlite,
            url,
            store,
            cleanup: Cleanup::Sqlite { dir },
        }
    }

    pub async fn mysql() -> TestDb {
        Self::mysql_on(&mysql_server_url()).await
    }

    /// A fresh database on the MySQL server at `server_url` (a URL without a database).
    pub async fn mysql_on(server_url: &str) -> TestDb {
        quiet_global_logs();
        let server_url = server_url.to_string();
        let database = format!("chatd_t_{}", unique_suffix());
        let mut admin = sqlx::MySqlConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MySQL is required for this suite and is not reachable at {server_url} \
                 (set CHAT_TEST_MYSQL_URL): {e}"
                )
            });
        sqlx::query(&format!("create database {database}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = with_database(&server_url, &database);
        let store = connect(&url).await;
        TestDb {
            backend: Backend::MySql,
            url,
            store,
            cleanup: Cleanup::MySql {
                server_url,
                database,
            },
        }
    }

    /// The same test on every back end: SQLite and MySQL.
    pub async fn each() -> Vec<TestDb> {
        vec![TestDb::sqlite().await, TestDb::mysql().await]
    }

    pub async fn commands(&self) -> CommandBus {
        CommandBus::start(self.store.clone(), 1000)
            .await
            .expect("start command bus")
    }

    pub fn name(&self) -> &'static str {
        self.backend.name()
    }

    /// Drops the database (left in place when the test failed before this, for inspection).
    pub async fn cleanup(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::MySql {
                server_url,
                database,
            } => {
                if let Ok(mut admin) = sqlx::MySqlConnection::connect(&server_url).await {
                    let _ = sqlx::query(&format!("drop database if exists {database}"))
                        .execute(&mut admin)
                        .await;
                }
            }
            Cleanup::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

async fn connect(url: &str) -> EventStore {
    let mut options = StoreOptions::new(url);
    options.max_connections = 32;
    let store = EventStore::connect(&options)
        .await
        .expect("connect test store");
    store.migrate().await.expect("migrate test store");
    store
}

pub fn user(id: u64) -> Actor {
    Actor {
        id,
        role: Role::User,
        identifier: format!("user_uuid_{id}"),
    }
}

pub fn admin(id: u64) -> Actor {
    Actor {
        id,
        role: Role::Admin,
        identifier: format!("admin_{id}"),
    }
}

pub fn auditor(id: u64) -> Actor {
    Actor {
        id,
        role: Role::Auditor,
        identifier: format!("auditor_{id}"),
    }
}

pub fn meta(actor: &Actor) -> EventMetadata {
    EventMetadata {
        actor_id: actor.id,
        actor_role: actor.role.as_str().to_string(),
        request_id: Some(format!("req-{}", unique_suffix())),
        remote_addr: Some("127.0.0.1".into()),
        ..EventMetadata::default()
    }
}

pub fn text(content: &str) -> NewMessage {
    NewMessage::text(content)
}

/// Opens (or continues) the user's conversation with a first message.
pub async fn open_with(bus: &CommandBus, user: &Actor, content: &str) -> Committed {
    bus.execute(
        Intent::OpenOrContinue {
            actor: user.clone(),
            message: Some(text(content)),
        },
        meta(user),
    )
    .await
    .expect("open conversation")
}

/// The message id recorded in a MessageSent event.
pub fn message_id_of(event: &chatd::store::StoredEvent) -> u64 {
    match event.decode().expect("decode") {
        events::ConversationEvent::MessageSent { message_id, .. } => message_id,
        other => panic!("expected MessageSent, got {other:?}"),
    }
}

/// The real server on a fresh database of the given back end, on a free port.
pub struct TestApp {
    pub address: String,
    /// `http://` and the address of `CHAT_METRICS_BIND`'s listener, when configured.
    pub metrics_address: Option<String>,
    pub db_url: String,
    pub client: reqwest::Client,
    store: EventStore,
    pub state: chatd::app::App,
    /// The server's Socket.IO server.
    pub realtime: chatd::realtime::Realtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// The server on the database, with Redis when the back end is MySQL (the production pair).
    pub async fn spawn(db: &TestDb) -> TestApp {
        Self::spawn_with(db, &[]).await
    }

    /// As `spawn`, with more configuration (`CHAT_*` names and values).
    pub async fn spawn_with(db: &TestDb, settings: &[(&str, &str)]) -> TestApp {
        let url = db.url.clone();
        let data_dir = std::env::temp_dir().join(format!("chatd-app-{}", unique_suffix()));
        let redis = (db.backend == Backend::MySql).then(redis_url);
        let settings: Vec<(String, String)> = settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_lookup(|name| match name {
            _ if settings.iter().any(|(k, _)| k == name) => settings
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
            "CHAT_DATABASE_URL" => Some(url.clone()),
            "CHAT_PORT" => Some("0".into()),
            "CHAT_DATA_DIR" => Some(data_dir.display().to_string()),
            "CHAT_APP_SECRET" => Some(APP_SECRET.into()),
            "CHAT_REDIS_URL" => redis.clone(),
            // Servers of one test database share their Socket.IO rooms; other tests' do not.
            "CHAT_REDIS_PREFIX" => Some(format!(
                "chatd-test-{}",
                url.rsplit('/').next().unwrap_or("db")
            )),
            _ => None,
        })
        .expect("config");
        let app = Application::build(&config).await.expect("build app");
        let address = format!("http://{}", app.local_addr().expect("local addr"));
        let metrics_address = app.metrics_addr().map(|at| format!("http://{at}"));
        let store = app.state().store.clone();
        let state = app.state().clone();
        let realtime = app.realtime().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        TestApp {
            address,
            metrics_address,
            db_url: db.url.clone(),
            client: reqwest::Client::new(),
            store,
            state,
            realtime,
            shutdown: Some(tx),
            handle,
        }
    }

    /// The server's own store (closing it makes the database unreachable for the server).
    pub fn state_store(&self) -> &EventStore {
        &self.store
    }

    /// A session for a new caller of `role` (a fresh id unless given).
    pub async fn session(&self, role: Role, id: Option<u64>) -> (u64, String) {
        let id = id.unwrap_or_else(fresh_id);
        let session = chatd::auth::Session {
            user_id: id,
            role,
            identifier: format!("{}_{id}", role.as_str()),
        };
        let token = self
            .state
            .auth
            .create_session(&session, std::time::Duration::from_secs(3600))
            .await
            .expect("create session");
        (id, token)
    }

    /// A signed request, ready to send (or to tamper with first).
    pub fn signed(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> reqwest::RequestBuilder {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (timestamp, signature) = sign_now(&method, path_and_query, &body);
        let mut request = self
            .client
            .request(method, format!("{}{path_and_query}", self.address))
            .header("X-Timestamp", timestamp)
            .header("X-Signature", signature);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if !body.is_empty() {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        request
    }

    /// Sends a signed request; the status and the JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let response = self
            .signed(method, path_and_query, token, body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.handle).await;
    }
}

/// Runs one statement on the test's database (raw SQL, for setting up what a test needs).
pub async fn execute(store: &EventStore, sql: &str) {
    match store {
        EventStore::MySql(s) => sqlx::query(sql).execute(s.pool()).await.map(drop),
        EventStore::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(drop),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every row of a table, in id order, as text.
pub async fn dump(store: &EventStore, table: &str) -> Vec<String> {
    let key = if table == "files" { "file_id" } else { "id" };
    use sqlx::Row;
    let sql = format!("select * from {table} order by {key}");
    macro_rules! rows {
        ($pool:expr) => {{
            sqlx::query(&sql)
                .fetch_all($pool)
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| match row.try_get::<Option<i64>, _>(i) {
                            Ok(v) => format!("{v:?}"),
                            Err(_) => format!("{:?}", row.try_get::<Option<String>, _>(i).unwrap()),
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect()
        }};
    }
    match store {
        EventStore::MySql(s) => rows!(s.pool()),
        EventStore::Sqlite(s) => rows!(s.pool()),
    }
}

/// A table's indexes, each as its name and columns in order (`name(a,b)`), sorted.
pub async fn indexes(store: &EventStore, table: &str) -> Vec<String> {
    let rows: Vec<(String,)> = match store {
        EventStore::MySql(s) => sqlx::query_as(
            "select cast(concat(index_name, '(', group_concat(column_name order by seq_in_index), \
             ')') as char) from information_schema.statistics \
             where table_schema = database() and table_name = ? group by index_name",
        )
        .bind(table)
        .fetch_all(s.pool())
        .await
        .unwrap(),
        EventStore::Sqlite(s) => sqlx::query_as(
            "select i.name || '(' || (select group_concat(name, ',') from \
             (select c.name from pragma_index_info(i.name) c order by c.seqno)) || ')' \
             from sqlite_master i where i.type = 'index' and i.tbl_name = ?",
        )
        .bind(table)
        .fetch_all(s.pool())
        .await
        .unwrap(),
    };
    let mut indexes: Vec<String> = rows.into_iter().map(|(index,)| index).collect();
    indexes.sort();
    indexes
}

/// The X-Timestamp (now) and X-Signature headers' values for a request with the test secret.
pub fn sign_now(method: &reqwest::Method, path_and_query: &str, body: &str) -> (String, String) {
    let timestamp = chrono::Utc::now().timestamp_millis();
    let signature = chatd::auth::sign(
        APP_SECRET,
        timestamp,
        method.as_str(),
        path_and_query,
        body.as_bytes(),
    );
    (timestamp.to_string(), signature)
}

/// Every file under `dir`, with its contents (none when it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}
