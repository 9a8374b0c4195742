//! A legacy Node.js database (the spec's `users`, `conversations` and `messages` tables) of its
//! own on the test MariaDB server, and `chatd import` run against a test database.

use sqlx::Connection;

use super::{TestDb, mysql_server_url, redis_url, unique_suffix, with_database};

/// A legacy database, dropped by `drop`.
pub struct LegacyDb {
    pub url: String,
    server_url: String,
    database: String,
}

impl LegacyDb {
    /// A fresh database (utf8mb4) holding the spec's tables, empty.
    pub async fn create() -> LegacyDb {
        let server_url = mysql_server_url();
        let database = format!("legacy_t_{}", unique_suffix());
        let mut admin = sqlx::MySqlConnection::connect(&server_url)
            .await
            .expect("MariaDB for the legacy database");
        sqlx::query(&format!(
            "create database {database} character set utf8mb4 collate utf8mb4_unicode_ci"
        ))
        .execute(&mut admin)
        .await
        .expect("create the legacy database");
        let legacy = LegacyDb {
            url: with_database(&server_url, &database),
            server_url,
            database,
        };
        for statement in chatd::store::legacy::SPEC_SCHEMA {
            legacy.execute(statement).await;
        }
        legacy
    }

    pub async fn execute(&self, sql: &str) {
        let mut db = sqlx::MySqlConnection::connect(&self.url)
            .await
            .expect("connect to the legacy database");
        sqlx::query(sql)
            .execute(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn drop(self) {
        if let Ok(mut admin) = sqlx::MySqlConnection::connect(&self.server_url).await {
            let _ = sqlx::query(&format!("drop database if exists {}", self.database))
                .execute(&mut admin)
                .await;
        }
    }
}

/// Runs `chatd import <args>` (or `chatd import verify` with `verify` first in `args`) against
/// the test database, as an operator would beside a running server.
pub fn import(db: &TestDb, args: &[&str]) -> std::process::Output {
    let data_dir = std::env::temp_dir().join(format!("chatd-import-{}", unique_suffix()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"));
    command
        .arg("import")
        .args(args)
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_DATA_DIR", &data_dir)
        .env("CHAT_APP_SECRET", super::APP_SECRET)
        .env("RUST_LOG", "warn");
    if db.backend == chatd::store::Backend::MySql {
        command.env("CHAT_REDIS_URL", redis_url());
    }
    let output = command.output().expect("run chatd import");
    let _ = std::fs::remove_dir_all(&data_dir);
    output
}
