//! Read side (`make bench`): projection lag under the append benchmark's load, and replay speed
//! over a large log, on SQLite and on MySQL.
//!
//! Sizes: `CHAT_BENCH_MESSAGES` (appends under load, default 20000), `CHAT_BENCH_REPLAY_EVENTS`
//! (log size for the replay, default 1000000). MySQL: `CHAT_BENCH_MYSQL_URL` or
//! `CHAT_TEST_MYSQL_URL` (a scratch database is created and dropped).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

use chatd::commands::{CommandBus, Intent};
use chatd::store::{EventStore, StoreOptions};
use events::{ConversationCommand, NewMessage, Role};
use projections::{ProjectionStore, Projections, RuntimeOptions, all_projectors};

async fn open(bus: &CommandBus, users: std::ops::Range<u64>) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for id in users {
        let user = actor(id, Role::User);
        let intent = Intent::OpenOrContinue {
            actor: user.clone(),
            message: Some(NewMessage::text("hello")),
        };
        ids.push(bus.execute(intent, metadata(&user)).await?.conversation_id);
    }
    Ok(ids)
}

/// 64 writers appending as fast as they can; each acknowledgement is sent to `acks`.
async fn load(
    bus: &CommandBus,
    conversations: &[u64],
    total: usize,
    acks: Option<tokio::sync::mpsc::UnboundedSender<(u64, Instant)>>,
) -> anyhow::Result<()> {
    let writers = 64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let bus = bus.clone();
        let conversation = conversations[w % conversations.len()];
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let admin = actor(10_000 + w as u64, Role::Admin);
            for n in 0..total / writers {
                let command = ConversationCommand::SendMessage {
                    actor: admin.clone(),
                    message: NewMessage::text(format!("benchmark message {n} from writer {w}")),
                };
                let committed = bus
                    .execute(Intent::On(conversation, command), metadata(&admin))
                    .await?;
                if let (Some(acks), Some(last)) = (&acks, committed.events.last()) {
                    let _ = acks.send((last.position, Instant::now()));
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// For every acknowledged position, the time until every projector had applied it (sampled
/// every 200 µs, without slowing the writers down).
async fn measure_lag(
    projections: Arc<Projections>,
    mut acks: tokio::sync::mpsc::UnboundedReceiver<(u64, Instant)>,
) -> Vec<Duration> {
    let mut waiting = std::collections::VecDeque::new();
    let mut lags = Vec::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        loop {
            match acks.try_recv() {
                Ok(ack) => waiting.push_back(ack),
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let applied = projections
            .statuses()
            .iter()
            .map(|s| s.position)
            .min()
            .unwrap_or(0);
        let now = Instant::now();
        // Acks arrive roughly in position order; take every one that is applied.
        waiting.retain(|(position, acked): &(u64, Instant)| {
            if *position <= applied {
                lags.push(now.saturating_duration_since(*acked));
                false
            } else {
                true
            }
        });
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    lags.sort();
    lags
}

async fn bench_backend(name: &str, url: &str) -> anyhow::Result<()> {
    let messages = env_usize("CHAT_BENCH_MESSAGES", 20_000);
    let replay_events = env_usize("CHAT_BENCH_REPLAY_EVENTS", 1_000_000);
    let mut options = StoreOptions::new(url);
    options.max_connections = 16;
    let store = EventStore::connect(&options).await?;
    store.migrate().await?;
    let bus = CommandBus::start(store.clone(), 10_000).await?;
    println!("{name}:");

    let projections = Arc::new(Projections::start(
        Arc::new(store.clone()),
        all_projectors(),
        bus.committed_head(),
        RuntimeOptions::new("bench"),
    ));
    let conversations = open(&bus, 1..1001).await?;
    let (acks, acked) = tokio::sync::mpsc::unbounded_channel();
    let monitor = tokio::spawn(measure_lag(projections.clone(), acked));
    let started = Instant::now();
    load(&bus, &conversations, messages, Some(acks)).await?;
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    let lags = monitor.await?;
    println!(
        "  projection lag, ack to applied, 64 writers  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms  ({rate:.0} msg/s)",
        percentile(&lags, 0.50),
        percentile(&lags, 0.99),
        percentile(&lags, 1.0),
    );
    projections.stop().await;

    let head = store.head_position().await? as usize;
    if head < replay_events {
        let fill = Instant::now();
        load(&bus, &conversations, replay_events - head, None).await?;
        println!(
            "  filled the log to {} events in {:.1} s",
            store.head_position().await?,
            fill.elapsed().as_secs_f64()
        );
    }
    let head = store.head_position().await?;
    let started = Instant::now();
    projections::replay(&store, &all_projectors(), projections::REPLAY_BATCH, |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  replay of {head} events into every projection: {seconds:.1} s, {:.0} events/s",
        head as f64 / seconds
    );
    // Where a replay's time goes: the log read alone, then each projector replayed on its own.
    let started = Instant::now();
    let mut position = 0;
    loop {
        let batch = ProjectionStore::read_from(&store, position, projections::REPLAY_BATCH).await?;
        let Some(last) = batch.last() else { break };
        position = last.position;
    }
    println!(
        "    reading the log alone: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    for projector in all_projectors() {
        let started = Instant::now();
        projections::replay(
            &store,
            std::slice::from_ref(&projector),
            projections::REPLAY_BATCH,
            |_| {},
        )
        .await?;
        println!(
            "    {} alone: {:.2} s",
            projector.name(),
            started.elapsed().as_secs_f64()
        );
    }
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sqlite = ScratchSqlite::new("read");
    bench_backend("sqlite", &sqlite.url).await?;
    let mysql = ScratchMysql::new("read").await?;
    let result = bench_backend("mysql", &mysql.url).await;
    mysql.drop().await?;
    result
}
