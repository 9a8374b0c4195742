//! Audit (`make bench`): how fast `verify` walks the log and checks every stream's hash chain,
//! on SQLite and on MySQL.
//!
//! Size: `CHAT_BENCH_AUDIT_EVENTS` (default 1000000), filled as conversations of 1000 events
//! appended straight through the store (one transaction each). MySQL: `CHAT_BENCH_MYSQL_URL` or
//! `CHAT_TEST_MYSQL_URL` (a scratch database is created and dropped).

mod support;

use std::time::Instant;
use support::*;

use chatd::store::{CONVERSATION_STREAM, EventStore, GENESIS_HASH, StoreOptions, StoredEvent};
use serde_json::json;

const EVENTS_PER_CONVERSATION: usize = 1000;

/// The rows of one conversation of `events` events, chained, from position `first_position`.
fn conversation(id: u64, events: usize, first_position: u64) -> Vec<StoredEvent> {
    let mut previous = GENESIS_HASH.to_string();
    let user = json!({"id": id, "role": "user", "identifier": format!("user_uuid_{id}")});
    let metadata = json!({"actor_id": id, "actor_role": "user", "request_id": "bench", "remote_addr": "127.0.0.1"});
    (1..=events)
        .map(|sequence| {
            let (event_type, event_version, payload) = if sequence == 1 {
                (
                    "ConversationOpened",
                    "1",
                    json!({"conversation_id": id, "user": user}),
                )
            } else {
                (
                    "MessageSent",
                    "2",
                    json!({
                        "message_id": id * 1_000_000 + sequence as u64,
                        "sender": user,
                        "message_type": "text",
                        "content": format!("benchmark message {sequence} in a conversation about a late parcel"),
                        "file_id": null,
                        "client_msg_id": null,
                    }),
                )
            };
            let mut row = StoredEvent {
                position: first_position + sequence as u64 - 1,
                stream_type: CONVERSATION_STREAM.to_string(),
                stream_id: id.to_string(),
                sequence: sequence as u64,
                event_type: event_type.to_string(),
                event_version: event_version.to_string(),
                payload: payload.to_string(),
                metadata: metadata.to_string(),
                recorded_at_micros: chatd::clock::now_micros(),
                hash: String::new(),
            };
            row.hash = row.expected_hash(&previous);
            previous = row.hash.clone();
            row
        })
        .collect()
}

/// Appends one conversation through the log's append transaction (the command layer's).
async fn append_conversation(store: &EventStore, id: u64, events: usize) -> anyhow::Result<()> {
    macro_rules! append {
        ($sql:expr) => {{
            let mut txn = $sql.begin_append().await?;
            let rows = conversation(id, events, txn.state.next_position);
            txn.state.next_position += rows.len() as u64;
            txn.insert_events(&rows).await?;
            txn.commit().await?;
        }};
    }
    match store {
        EventStore::MySql(s) => append!(s),
        EventStore::Sqlite(s) => append!(s),
    }
    Ok(())
}

async fn bench_backend(name: &str, url: &str) -> anyhow::Result<()> {
    let total = env_usize("CHAT_BENCH_AUDIT_EVENTS", 1_000_000);
    let mut options = StoreOptions::new(url);
    options.max_connections = 4;
    let store = EventStore::connect(&options).await?;
    store.migrate().await?;
    println!("{name}:");

    let fill = Instant::now();
    let mut appended = 0;
    let mut id = 1;
    while appended < total {
        let n = EVENTS_PER_CONVERSATION.min(total - appended);
        append_conversation(&store, id, n).await?;
        appended += n;
        id += 1;
    }
    println!(
        "  filled the log with {appended} events in {} conversations in {:.1} s",
        id - 1,
        fill.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let report = store.verify_log(|_, _| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.broken.is_none(),
        "the chain broke: {:?}",
        report.broken
    );
    println!(
        "  verify of {} events: {seconds:.2} s, {:.0} events/s",
        report.checked,
        report.checked as f64 / seconds
    );
    store.close().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sqlite = ScratchSqlite::new("audit");
    bench_backend("sqlite", &sqlite.url).await?;
    let mysql = ScratchMysql::new("audit").await?;
    let result = bench_backend("mysql", &mysql.url).await;
    mysql.drop().await?;
    result
}
