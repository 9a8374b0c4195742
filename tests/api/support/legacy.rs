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
        Self::with_tables(&chatd::store::legacy::SPEC_SCHEMA).await
    }

    /// A fresh database (utf8mb4) holding these tables (`create table` statements), empty.
    pub async fn with_tables(tables: &[&str]) -> LegacyDb {
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
        for statement in tables {
            legacy.execute(statement).await;
        }
        legacy
    }

    pub async fn connect(&self) -> sqlx::MySqlConnection {
        sqlx::MySqlConnection::connect(&self.url)
            .await
            .expect("connect to the legacy database")
    }

    pub async fn execute(&self, sql: &str) {
        let mut db = self.connect().await;
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

/// `chatd <args>` as an operator runs it beside the server: the test database, its secret, a
/// data directory of its own, and Redis for MySQL.
pub fn chatd_command(db: &TestDb, args: &[&str]) -> std::process::Command {
    let data_dir = std::env::temp_dir().join(format!("chatd-cli-{}", unique_suffix()));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"));
    command
        .args(args)
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_DATA_DIR", &data_dir)
        .env("CHAT_APP_SECRET", super::APP_SECRET)
        .env("RUST_LOG", "warn");
    if db.backend == chatd::store::Backend::MySql {
        command.env("CHAT_REDIS_URL", redis_url());
    }
    command
}

/// Runs `chatd <args>` (see [`chatd_command`]) to its end.
pub fn chatd(db: &TestDb, args: &[&str]) -> std::process::Output {
    let mut command = chatd_command(db, args);
    let output = command.output().expect("run chatd");
    if let Some((_, Some(data_dir))) = command
        .get_envs()
        .find(|(name, _)| *name == "CHAT_DATA_DIR")
    {
        let _ = std::fs::remove_dir_all(data_dir);
    }
    output
}

/// Runs `chatd import <args>` against the test database.
pub fn import(db: &TestDb, args: &[&str]) -> std::process::Output {
    chatd(db, &[&["import"], args].concat())
}
