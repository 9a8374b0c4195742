//! What the benchmarks share: actors, percentiles, sizes from the environment, and scratch
//! databases (a fresh SQLite file; a MySQL database created and dropped).
#![allow(dead_code)]

use std::time::Duration;

use chatd::store::EventMetadata;
use events::{Actor, Role};
use sqlx::Connection;

/// Opens a conversation as the user behind `token` (a signed POST /api/chat/conversations) and
/// returns its id.
pub async fn open_conversation(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    token: &str,
    first_words: &str,
) -> anyhow::Result<u64> {
    let body = serde_json::json!({ "initial_message": first_words }).to_string();
    let timestamp = chrono::Utc::now().timestamp_millis();
    let signature = chatd::auth::sign(
        secret,
        timestamp,
        "POST",
        "/api/chat/conversations",
        body.as_bytes(),
    );
    let opened: serde_json::Value = http
        .post(format!("{base}/api/chat/conversations"))
        .bearer_auth(token)
        .header("X-Timestamp", timestamp.to_string())
        .header("X-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await?
        .json()
        .await?;
    opened["data"]["conversation_id"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no conversation in {opened}"))
}

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn actor(id: u64, role: Role) -> Actor {
    Actor {
        id,
        role,
        identifier: format!("{}_{id}", role.as_str()),
    }
}

pub fn metadata(actor: &Actor) -> EventMetadata {
    EventMetadata {
        actor_id: actor.id,
        actor_role: actor.role.as_str().into(),
        ..Default::default()
    }
}

/// The `p` quantile (0..=1) of sorted latencies, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
}

/// A SQLite database in a fresh directory, removed on drop.
pub struct ScratchSqlite {
    pub url: String,
    dir: std::path::PathBuf,
}

impl ScratchSqlite {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("chatd-bench-{name}-{}", std::process::id()));
        let url = format!("sqlite://{}", dir.join("bench.db").display());
        ScratchSqlite { url, dir }
    }
}

impl Drop for ScratchSqlite {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database created on the benchmark's MySQL server (`CHAT_BENCH_MYSQL_URL`, else
/// `CHAT_TEST_MYSQL_URL`, else the local MariaDB); `drop` removes it.
pub struct ScratchMysql {
    pub url: String,
    admin: sqlx::MySqlConnection,
    database: String,
}

impl ScratchMysql {
    pub async fn new(name: &str) -> anyhow::Result<Self> {
        let server = std::env::var("CHAT_BENCH_MYSQL_URL")
            .or_else(|_| std::env::var("CHAT_TEST_MYSQL_URL"))
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let mut admin = sqlx::MySqlConnection::connect(&server).await?;
        let database = format!("chatd_bench_{name}_{}", std::process::id());
        sqlx::query(&format!("create database {database}"))
            .execute(&mut admin)
            .await?;
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{database}"),
            None => server.clone(),
        };
        Ok(ScratchMysql {
            url,
            admin,
            database,
        })
    }

    /// innodb_flush_log_at_trx_commit, which decides what "durable" costs.
    pub async fn flush_setting(&mut self) -> anyhow::Result<i64> {
        let (flush,): (i64,) =
            sqlx::query_as("select cast(@@innodb_flush_log_at_trx_commit as signed)")
                .fetch_one(&mut self.admin)
                .await?;
        Ok(flush)
    }

    pub async fn drop(mut self) -> anyhow::Result<()> {
        sqlx::query(&format!("drop database {}", self.database))
            .execute(&mut self.admin)
            .await?;
        Ok(())
    }
}
