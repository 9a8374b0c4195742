//! Moving in (`make bench`): `chatd import` of a legacy Node.js database (the spec's tables on
//! MariaDB) into SQLite and into MySQL: messages per second into the log, the read tables
//! caught up after it (as `chatd import` waits for them), and a second run that finds everything
//! imported.
//!
//! Size: `CHAT_BENCH_IMPORT_MESSAGES` (default 200000) in conversations of
//! `CHAT_BENCH_CONVERSATION_MESSAGES` (default 100). MySQL: `CHAT_BENCH_MYSQL_URL` or
//! `CHAT_TEST_MYSQL_URL` (scratch databases are created and dropped).

mod support;

use std::time::Instant;
use support::*;

use chatd::app::import::{DEFAULT_BATCH, ImportOptions, import, read_tables_caught_up};
use chatd::store::legacy::LegacySource;
use chatd::store::{EventStore, StoreOptions};
use sqlx::{Connection, MySqlConnection};

/// Rows per multi-row insert into the legacy tables.
const INSERT_ROWS: usize = 1000;

/// The legacy history: conversations of `per` messages, every second one closed, a tenth
/// archived, one in five messages an image, the older half read.
async fn fill_legacy(url: &str, conversations: u64, per: u64) -> anyhow::Result<()> {
    let mut db = MySqlConnection::connect(url).await?;
    sqlx::query("alter database character set utf8mb4 collate utf8mb4_unicode_ci")
        .execute(&mut db)
        .await?;
    for statement in chatd::store::legacy::SPEC_SCHEMA {
        sqlx::query(statement).execute(&mut db).await?;
    }
    let start = 1_752_000_000_i64; // 2025-07-08
    let mut rows = Vec::new();
    for id in 1..=conversations {
        rows.push(format!("({id}, 'user_uuid_{id}')"));
    }
    insert(&mut db, "insert into users (id, identifier) values ", &rows).await?;
    rows.clear();
    let mut messages = Vec::new();
    let mut message_id = 0;
    for id in 1..=conversations {
        let opened = start + (id as i64) * 600;
        let status = match id % 10 {
            0 => "archived",
            n if n % 2 == 1 => "closed",
            _ => "active",
        };
        let admin = 1 + id % 7;
        let last = opened + per as i64 * 30;
        rows.push(format!(
            "({id}, {id}, {admin}, '{status}', from_unixtime({last}), from_unixtime({opened}), \
             from_unixtime({}))",
            last + 60
        ));
        for n in 0..per {
            message_id += 1 + (n % 3) / 2; // gaps in the ids
            let at = opened + n as i64 * 30;
            let read = u8::from(n < per / 2);
            let row = match n % 5 {
                4 => format!(
                    "({message_id}, {id}, {id}, null, 'user', 'image', '', 'f{message_id}', \
                     'http://47.94.108.189/uploads/chat/2025/07/14/{message_id}.jpg', {read}, \
                     from_unixtime({at}))"
                ),
                n if n % 2 == 0 => format!(
                    "({message_id}, {id}, {id}, null, 'user', 'text', \
                     'my order {message_id} has not arrived 订单还没到 😟', null, null, {read}, \
                     from_unixtime({at}))"
                ),
                _ => format!(
                    "({message_id}, {id}, null, {admin}, 'admin', 'text', \
                     'we are looking into it, reply {message_id} نحن نتحقق', null, null, {read}, \
                     from_unixtime({at}))"
                ),
            };
            messages.push(row);
        }
    }
    insert(
        &mut db,
        "insert into conversations (id, user_id, admin_id, status, last_message_at, created_at, \
         updated_at) values ",
        &rows,
    )
    .await?;
    insert(
        &mut db,
        "insert into messages (id, conversation_id, user_id, admin_id, sender_role, message_type, \
         content, file_id, file_url, is_read, timestamp) values ",
        &messages,
    )
    .await?;
    db.close().await?;
    Ok(())
}

async fn insert(db: &mut MySqlConnection, head: &str, rows: &[String]) -> anyhow::Result<()> {
    for chunk in rows.chunks(INSERT_ROWS) {
        sqlx::query(&format!("{head}{}", chunk.join(", ")))
            .execute(&mut *db)
            .await?;
    }
    Ok(())
}

async fn bench_target(name: &str, url: &str, legacy: &LegacySource) -> anyhow::Result<()> {
    let mut options = StoreOptions::new(url);
    options.max_connections = 16;
    let store = EventStore::connect(&options).await?;
    store.migrate().await?;
    let import_options = ImportOptions {
        batch: DEFAULT_BATCH,
        ..ImportOptions::default()
    };
    println!("{name}:");

    let started = Instant::now();
    let report = import(&store, legacy, &import_options, &mut |_, _| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  import: {} conversations, {} messages, {} events in {seconds:.1} s: {:.0} messages/s, \
         {:.0} events/s",
        report.conversations.imported,
        report.messages.imported,
        report.events,
        report.messages.imported as f64 / seconds,
        report.events as f64 / seconds,
    );

    let started = Instant::now();
    let caught_up = read_tables_caught_up(&store, "bench-import").await?;
    let read_seconds = started.elapsed().as_secs_f64();
    println!(
        "  read tables caught up: {caught_up} in {read_seconds:.1} s ({:.0} events/s); \
         import and read tables together: {:.0} messages/s",
        report.events as f64 / read_seconds,
        report.messages.imported as f64 / (seconds + read_seconds),
    );

    let started = Instant::now();
    let again = import(&store, legacy, &import_options, &mut |_, _| {}).await?;
    println!(
        "  second run: {} already imported, {} imported, in {:.2} s",
        again.conversations.already_imported,
        again.conversations.imported,
        started.elapsed().as_secs_f64()
    );
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let per = env_usize("CHAT_BENCH_CONVERSATION_MESSAGES", 100) as u64;
    let messages = env_usize("CHAT_BENCH_IMPORT_MESSAGES", 200_000) as u64;
    let legacy = ScratchMysql::new("import_legacy").await?;
    let started = Instant::now();
    fill_legacy(&legacy.url, (messages / per).max(1), per).await?;
    println!(
        "legacy database: {messages} messages in {} conversations, written in {:.1} s",
        (messages / per).max(1),
        started.elapsed().as_secs_f64()
    );
    let source = LegacySource::open(&legacy.url, None).await?;
    let sqlite = ScratchSqlite::new("import");
    let mut result = bench_target("sqlite", &sqlite.url, &source).await;
    if result.is_ok() {
        let mysql = ScratchMysql::new("import").await?;
        result = bench_target("mysql", &mysql.url, &source).await;
        mysql.drop().await?;
    }
    source.close().await;
    legacy.drop().await?;
    result
}
