//! Archive tables (`make bench`): list and history latency with a large archived history beside
//! a small open inbox, on SQLite and on MySQL; then the same reads with every row put back in
//! the live tables (the layout before archive tables) for comparison.
//!
//! Sizes: `CHAT_BENCH_ARCHIVED_MESSAGES` (default 1000000) and `CHAT_BENCH_ACTIVE_MESSAGES`
//! (default 10000), in conversations of `CHAT_BENCH_CONVERSATION_MESSAGES` (default 100);
//! `CHAT_BENCH_READS` reads per shape (default 500). MySQL: `CHAT_BENCH_MYSQL_URL` or
//! `CHAT_TEST_MYSQL_URL` (a scratch database is created and dropped).

mod support;

use std::time::{Duration, Instant};
use support::*;

use chatd::commands::{CommandBus, Intent};
use chatd::store::{ConversationFilter, EventStore, MessageWindow, StoreOptions};
use events::{ConversationCommand, NewMessage, Role};
use projections::all_projectors;

const WRITERS: u64 = 64;
const PAGE: u32 = 20;
const HISTORY: u32 = 50;

/// Conversations `first..first + count` (users of those ids), each with `per` messages; archived
/// when `archive`. 64 writers, each its own conversations.
async fn fill(
    bus: &CommandBus,
    first: u64,
    count: u64,
    per: u64,
    archive: bool,
) -> anyhow::Result<Vec<u64>> {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let admin = actor(1_000_000 + w, Role::Admin);
            let mut ids = Vec::new();
            for user_id in (first + w..first + count).step_by(WRITERS as usize) {
                let user = actor(user_id, Role::User);
                let opened = bus
                    .execute(
                        Intent::OpenOrContinue {
                            actor: user.clone(),
                            message: Some(NewMessage::text("my order has not arrived")),
                        },
                        metadata(&user),
                    )
                    .await?;
                let id = opened.conversation_id;
                for n in 1..per {
                    let (sender, text) = if n % 2 == 0 {
                        (&user, format!("still waiting, message {n}"))
                    } else {
                        (&admin, format!("we are looking into it, reply {n}"))
                    };
                    let command = ConversationCommand::SendMessage {
                        actor: sender.clone(),
                        message: NewMessage::text(text),
                    };
                    bus.execute(Intent::On(id, command), metadata(sender))
                        .await?;
                }
                if archive {
                    let command = ConversationCommand::ArchiveConversation {
                        actor: admin.clone(),
                    };
                    bus.execute(Intent::On(id, command), metadata(&admin))
                        .await?;
                }
                ids.push(id);
            }
            anyhow::Ok(ids)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await??);
    }
    Ok(ids)
}

/// p50, p95 and p99 of `reads` runs of `read`, as a line.
async fn latency<F, Fut>(reads: usize, mut read: F) -> anyhow::Result<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut times: Vec<Duration> = Vec::with_capacity(reads);
    for i in 0..reads {
        let started = Instant::now();
        read(i).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(format!(
        "p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms",
        percentile(&times, 0.50),
        percentile(&times, 0.95),
        percentile(&times, 0.99),
    ))
}

/// The reads an inbox and an auditor make, each measured; the lists of archived conversations
/// only where they are in the archive tables (`in_archive`).
async fn measure(
    store: &EventStore,
    active: &[u64],
    archived: &[u64],
    reads: usize,
    in_archive: bool,
) -> anyhow::Result<()> {
    let list = |status: Option<&str>| ConversationFilter {
        status: status.map(str::to_string),
        ..Default::default()
    };
    let newest = MessageWindow {
        limit: HISTORY,
        ..Default::default()
    };
    let mut lists = vec![
        ("list status=active, page 1", list(Some("active"))),
        ("list every status, page 1", list(None)),
    ];
    if in_archive {
        lists.push(("list status=archived, page 1", list(Some("archived"))));
        lists.push(("list status=archived, page 50", list(Some("archived"))));
    }
    for (label, filter) in lists {
        let page = if label.ends_with("50") { 50 } else { 1 };
        let line = latency(reads, |_| {
            let filter = filter.clone();
            async move {
                store.conversations(&filter, page, PAGE).await?;
                Ok(())
            }
        })
        .await?;
        println!("    {label:<42} {line}");
    }
    for (label, ids) in [
        ("history of an active conversation", active),
        ("history of an archived conversation", archived),
    ] {
        let line = latency(reads, |i| async move {
            let id = ids[(i * 7919) % ids.len()];
            let page = store.messages(id, newest).await?;
            anyhow::ensure!(page.len() == HISTORY as usize, "{id}: {}", page.len());
            Ok(())
        })
        .await?;
        println!("    {label:<42} {line}");
    }
    let line = latency(reads, |i| async move {
        let id = archived[(i * 7919) % archived.len()];
        store.conversation(id).await?;
        Ok(())
    })
    .await?;
    println!("    {:<42} {line}", "an archived conversation by id");
    Ok(())
}

async fn run(store: &EventStore, sql: &str) -> anyhow::Result<()> {
    match store {
        EventStore::MySql(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ())?,
        EventStore::Sqlite(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ())?,
    }
    Ok(())
}

async fn bench_backend(name: &str, url: &str) -> anyhow::Result<()> {
    let per = env_usize("CHAT_BENCH_CONVERSATION_MESSAGES", 100) as u64;
    let archived_messages = env_usize("CHAT_BENCH_ARCHIVED_MESSAGES", 1_000_000) as u64;
    let active_messages = env_usize("CHAT_BENCH_ACTIVE_MESSAGES", 10_000) as u64;
    let reads = env_usize("CHAT_BENCH_READS", 500);
    let mut options = StoreOptions::new(url);
    options.max_connections = 16;
    let store = EventStore::connect(&options).await?;
    store.migrate().await?;
    let bus = CommandBus::start(store.clone(), 10_000).await?;
    println!("{name}:");

    let started = Instant::now();
    let archived = fill(&bus, 1, archived_messages / per, per, true).await?;
    let active = fill(&bus, 10_000_000, active_messages / per, per, false).await?;
    let head = store.head_position().await?;
    println!(
        "  appended {head} events ({} archived conversations of {per} messages, {} active) in {:.1} s",
        archived.len(),
        active.len(),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    projections::replay(&store, &all_projectors(), projections::REPLAY_BATCH, |_| {}).await?;
    println!(
        "  replayed into the read tables in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    println!("  archived rows in their own tables ({reads} reads each):");
    measure(&store, &active, &archived, reads, true).await?;

    // The layout before archive tables: the whole history in the live tables.
    for sql in [
        "insert into conversations select * from conversations_archive",
        "insert into messages select * from messages_archive",
        "delete from conversations_archive",
        "delete from messages_archive",
    ] {
        run(&store, sql).await?;
    }
    if let EventStore::MySql(_) = store {
        run(&store, "analyze table conversations, messages").await?;
    } else {
        run(&store, "analyze").await?;
    }
    println!("  every row in the live tables, as before archive tables:");
    measure(&store, &active, &archived, reads, false).await?;
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sqlite = ScratchSqlite::new("archive");
    bench_backend("sqlite", &sqlite.url).await?;
    let mysql = ScratchMysql::new("archive").await?;
    let result = bench_backend("mysql", &mysql.url).await;
    mysql.drop().await?;
    result
}
