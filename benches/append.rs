//! Append throughput and latency, on SQLite and on MySQL (`make bench`).
//!
//! - 1 writer, then 64 concurrent writers of single messages: messages/s, p50/p99 of one append;
//! - a conversation of 100,000 events against a new one: append latency with a warm cache, and
//!   the first append after a restart (cold cache: the stream is folded once).
//!
//! MySQL: `CHAT_BENCH_MYSQL_URL` or `CHAT_TEST_MYSQL_URL` (a scratch database is created and
//! dropped). Sizes: `CHAT_BENCH_MESSAGES` (default 20000), `CHAT_BENCH_LONG_EVENTS` (default 100000).

mod support;

use std::time::{Duration, Instant};
use support::*;

use chatd::commands::{CommandBus, Intent};
use chatd::store::{EventStore, StoreOptions};
use events::{Actor, ConversationCommand, NewMessage, Role};

struct Run {
    messages: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn report(mut self, label: &str) {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
            self.latencies.get(i).copied().unwrap_or_default()
        };
        println!(
            "  {label:<44} {:>9.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
            self.messages as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
        );
    }
}

async fn send(
    bus: &CommandBus,
    conversation: u64,
    sender: &Actor,
    n: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let command = ConversationCommand::SendMessage {
        actor: sender.clone(),
        message: NewMessage::text(format!("benchmark message {n}")),
    };
    bus.execute(Intent::On(conversation, command), metadata(sender))
        .await?;
    Ok(started.elapsed())
}

/// Opens one conversation per user, returns their ids.
async fn open(bus: &CommandBus, users: std::ops::Range<u64>) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for id in users {
        let user = actor(id, Role::User);
        let opened = bus
            .execute(
                Intent::OpenOrContinue {
                    actor: user.clone(),
                    message: None,
                },
                metadata(&user),
            )
            .await?;
        ids.push(opened.conversation_id);
    }
    Ok(ids)
}

/// `writers` concurrent tasks, `total` messages spread over the conversations.
async fn concurrent(
    bus: &CommandBus,
    conversations: &[u64],
    writers: usize,
    total: usize,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let per_writer = total / writers;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let bus = bus.clone();
        let conversation = conversations[w % conversations.len()];
        tasks.push(tokio::spawn(async move {
            let admin = actor(10_000 + w as u64, Role::Admin);
            let mut latencies = Vec::with_capacity(per_writer);
            for n in 0..per_writer {
                latencies.push(send(&bus, conversation, &admin, n).await?);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Run {
        messages: per_writer * writers,
        elapsed: started.elapsed(),
        latencies,
    })
}

async fn bench_backend(name: &str, url: &str) -> anyhow::Result<()> {
    let messages = env_usize("CHAT_BENCH_MESSAGES", 20_000);
    let long_events = env_usize("CHAT_BENCH_LONG_EVENTS", 100_000);
    let mut options = StoreOptions::new(url);
    options.max_connections = 8;
    let store = EventStore::connect(&options).await?;
    store.migrate().await?;
    let bus = CommandBus::start(store.clone(), 10_000).await?;
    println!("{name}:");

    let conversations = open(&bus, 1..65).await?;
    concurrent(&bus, &conversations, 1, (messages / 10).max(100))
        .await?
        .report("1 writer");
    concurrent(&bus, &conversations, 64, messages)
        .await?
        .report("64 writers, 64 conversations");
    concurrent(&bus, &conversations[..1], 64, messages)
        .await?
        .report("64 writers, 1 conversation");

    // A long conversation against a new one.
    let long = open(&bus, 100..101).await?[0];
    let fill_started = Instant::now();
    concurrent(&bus, &[long], 64, long_events).await?;
    println!(
        "  filled a conversation with {long_events} events in {:.1} s",
        fill_started.elapsed().as_secs_f64()
    );
    let fresh = open(&bus, 101..102).await?[0];
    let admin = actor(1, Role::Admin);
    for (label, conversation) in [
        ("append to a new conversation", fresh),
        ("append to the long conversation", long),
    ] {
        let mut latencies = Vec::new();
        let started = Instant::now();
        for n in 0..500 {
            latencies.push(send(&bus, conversation, &admin, n).await?);
        }
        Run {
            messages: 500,
            elapsed: started.elapsed(),
            latencies,
        }
        .report(label);
    }
    // After a restart the first command on a conversation loads its snapshot and folds the
    // events after it. The short one goes first, so the long one's figure is its own load, not
    // the restarted process's first use of its connections.
    let restarted = CommandBus::start(store.clone(), 10_000).await?;
    let cold_short = send(&restarted, fresh, &admin, 0).await?;
    let cold = send(&restarted, long, &admin, 0).await?;
    let warm = send(&restarted, long, &admin, 1).await?;
    println!(
        "  after a restart: first append to the new conversation {:.1} ms, then to the long one \
         (cold) {:.1} ms, the next {:.2} ms",
        cold_short.as_secs_f64() * 1e3,
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3
    );
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sqlite = ScratchSqlite::new("append");
    bench_backend("sqlite (synchronous=FULL, WAL)", &sqlite.url).await?;
    let mut mysql = ScratchMysql::new("append").await?;
    let flush = mysql.flush_setting().await?;
    let result = bench_backend(
        &format!("mysql (innodb_flush_log_at_trx_commit={flush})"),
        &mysql.url,
    )
    .await;
    mysql.drop().await?;
    result
}
