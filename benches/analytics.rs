//! Analytics (`make bench`): how fast `chatd analytics` folds the log from position 0 into the
//! report (events/s), on SQLite and on MySQL. The log is filled straight through append
//! transactions (hash chains, positions, the sequencer) with conversations of a realistic shape:
//! opened, runs of user messages answered by one of 20 admins, reads, an assignment, a close and
//! a rating, spread over 90 days.
//!
//! Size: `CHAT_BENCH_ANALYTICS_EVENTS` (default 1000000). MySQL: `CHAT_BENCH_MYSQL_URL` or
//! `CHAT_TEST_MYSQL_URL` (a scratch database is created and dropped).

mod support;

use std::time::Instant;
use support::*;

use chatd::analytics::{ReportParams, report_from_log};
use chatd::store::{CONVERSATION_STREAM, EventStore, GENESIS_HASH, StoreOptions, StoredEvent};
use events::{ConversationEvent, MessageType, Role};

/// Events per append transaction while filling.
const FILL_BATCH: usize = 10_000;
/// Events per conversation.
const CONVERSATION_EVENTS: u64 = 20;
const START: i64 = 1_735_689_600_000_000; // 2025-01-01T00:00:00Z
const SPAN_DAYS: i64 = 90;

/// The `n`th event of the synthetic log (from 0): conversation, time, event.
fn synthetic(n: u64, total: u64) -> (u64, i64, ConversationEvent) {
    let conversation = n / CONVERSATION_EVENTS + 1;
    let step = n % CONVERSATION_EVENTS;
    let user = actor(conversation % 5000 + 1, Role::User);
    let admin = actor(10_000 + conversation % 20, Role::Admin);
    // Conversations start evenly over the span; events inside one are minutes apart.
    let conversations = (total / CONVERSATION_EVENTS).max(1);
    let span = i128::from(SPAN_DAYS * 86_400_000_000);
    let begins = START + (span * i128::from(conversation - 1) / i128::from(conversations)) as i64;
    let at = begins + step as i64 * 60_000_000 + (n % 7) as i64 * 1_000_000;
    let message = |sender| ConversationEvent::MessageSent {
        message_id: n + 1,
        sender,
        message_type: MessageType::Text,
        content: format!("message {n}"),
        file_id: None,
        client_msg_id: None,
        file_path: None,
        attachment: None,
    };
    let event = match step {
        0 => ConversationEvent::ConversationOpened {
            conversation_id: conversation,
            user: user.clone(),
        },
        5 => ConversationEvent::ConversationAssigned {
            admin_id: admin.id,
            by: admin.clone(),
        },
        9 | 14 => ConversationEvent::MessagesRead {
            message_ids: vec![n],
            reader: admin.clone(),
        },
        18 => ConversationEvent::ConversationClosed { by: admin.clone() },
        19 => ConversationEvent::FeedbackGiven {
            rating: (conversation % 5 + 1) as u8,
            comment: None,
            by: user.clone(),
        },
        s if s % 3 == 0 => message(admin.clone()),
        _ => message(user.clone()),
    };
    (conversation, at, event)
}

async fn fill(store: &EventStore, total: u64) -> anyhow::Result<()> {
    let mut heads: std::collections::HashMap<u64, (u64, String)> = Default::default();
    let mut n = 0;
    while n < total {
        let end = (n + FILL_BATCH as u64).min(total);
        macro_rules! append {
            ($sql:expr) => {{
                let mut txn = $sql.begin_append().await?;
                let mut rows = Vec::with_capacity(FILL_BATCH);
                for i in n..end {
                    let (conversation, at, event) = synthetic(i, total);
                    let (sequence, previous) = heads
                        .remove(&conversation)
                        .unwrap_or((0, GENESIS_HASH.to_string()));
                    let by = event.actor();
                    let mut row = StoredEvent {
                        position: txn.state.next_position,
                        stream_type: CONVERSATION_STREAM.to_string(),
                        stream_id: conversation.to_string(),
                        sequence: sequence + 1,
                        event_type: event.type_name().to_string(),
                        event_version: ConversationEvent::current_version(event.type_name())
                            .unwrap_or("1")
                            .to_string(),
                        payload: event.payload_json().to_string(),
                        metadata: serde_json::to_string(&metadata(by))?,
                        recorded_at_micros: at,
                        hash: String::new(),
                    };
                    row.hash = row.expected_hash(&previous);
                    heads.insert(conversation, (row.sequence, row.hash.clone()));
                    txn.state.next_position += 1;
                    txn.state.next_conversation_id = conversation + 1;
                    txn.state.next_message_id = i + 2;
                    rows.push(row);
                }
                txn.insert_events(&rows).await?;
                txn.commit().await?;
            }};
        }
        match store {
            EventStore::MySql(s) => append!(s),
            EventStore::Sqlite(s) => append!(s),
        }
        n = end;
    }
    Ok(())
}

async fn bench_backend(name: &str, url: &str) -> anyhow::Result<()> {
    let total = env_usize("CHAT_BENCH_ANALYTICS_EVENTS", 1_000_000) as u64;
    let store = EventStore::connect(&StoreOptions::new(url)).await?;
    store.migrate().await?;
    println!("{name}:");
    let started = Instant::now();
    fill(&store, total).await?;
    println!(
        "  filled the log with {total} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The whole span, by week in Shanghai: every event is read, every fact counted.
    let params = ReportParams::parse(
        Some("2025-01-01T00:00:00Z"),
        Some("2025-12-31T00:00:00Z"),
        Some("week"),
        Some("Asia/Shanghai"),
        0,
    )
    .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let report = report_from_log(&store, &params).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  analytics fold of {total} events (chatd analytics): {seconds:.2} s, {:.0} events/s \
         ({} replies, {} conversations opened)",
        total as f64 / seconds,
        report.reply_time.count,
        report.conversations.opened
    );
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sqlite = ScratchSqlite::new("analytics");
    bench_backend("sqlite", &sqlite.url).await?;
    let mysql = ScratchMysql::new("analytics").await?;
    let result = bench_backend("mysql", &mysql.url).await;
    mysql.drop().await?;
    result
}
