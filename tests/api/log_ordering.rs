//! A reader tailing the log by position sees every event exactly once, in order, while many
//! writers append, and never passes a writer that is still inside its transaction.

use crate::support;

use std::time::Duration;

use chatd::commands::{CommandBus, Intent};
use chatd::store::{CONVERSATION_STREAM, EventStore, GENESIS_HASH, StoredEvent};
use events::{ConversationCommand, NewMessage};
use support::*;
use tokio::task::JoinHandle;

/// Tails the log until it has seen `expected` events; returns the positions in the order seen.
fn tail(store: EventStore, expected: usize) -> JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut seen = Vec::with_capacity(expected);
        let mut position = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while seen.len() < expected && tokio::time::Instant::now() < deadline {
            let batch = store.read_from(position, 500).await.expect("read the log");
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            for event in batch {
                position = event.position;
                seen.push(event.position);
            }
        }
        seen
    })
}

fn assert_contiguous(seen: &[u64], expected: usize, backend: &str) {
    assert_eq!(seen.len(), expected, "{backend}: every event seen");
    for (i, position) in seen.iter().enumerate() {
        assert_eq!(
            *position,
            i as u64 + 1,
            "{backend}: position {position} seen at index {i}: a gap or a repeat"
        );
    }
}

/// `writers` tasks, each sending `per_writer` messages round-robin over the conversations.
fn send_many(
    bus: &CommandBus,
    conversations: &[u64],
    writers: u64,
    per_writer: usize,
) -> Vec<JoinHandle<()>> {
    (0..writers)
        .map(|writer| {
            let bus = bus.clone();
            let conversations = conversations.to_vec();
            tokio::spawn(async move {
                let actor = admin(1000 + writer);
                for n in 0..per_writer {
                    let conversation = conversations[(writer as usize + n) % conversations.len()];
                    let command = ConversationCommand::SendMessage {
                        actor: actor.clone(),
                        message: NewMessage::text(format!("writer {writer} message {n}")),
                    };
                    bus.execute(Intent::On(conversation, command), meta(&actor))
                        .await
                        .expect("append");
                }
            })
        })
        .collect()
}

async fn open_conversations(bus: &CommandBus, count: u64) -> Vec<u64> {
    let mut ids = Vec::new();
    for user_id in 1..=count {
        ids.push(
            open_with(bus, &user(user_id), "hello")
                .await
                .conversation_id,
        );
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_writers_on_four_conversations_and_a_tailing_reader_see_every_event_once_in_order()
{
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let conversations = open_conversations(&bus, 4).await;
        let expected = 8 + 16 * 500;
        let reader = tail(db.store.clone(), expected);

        for writer in send_many(&bus, &conversations, 16, 500) {
            writer.await.unwrap();
        }

        let seen = reader.await.unwrap();
        assert_contiguous(&seen, expected, db.name());
        for conversation in conversations {
            let stream = db
                .store
                .read_stream(CONVERSATION_STREAM, &conversation.to_string(), 0)
                .await
                .unwrap();
            assert!(
                stream
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.sequence == i as u64 + 1)
            );
            let ids: Vec<u64> = stream.iter().skip(1).map(message_id_of).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(db.store.verify_chains().await.unwrap(), None);
        db.cleanup().await;
    }
}

/// Appends one event inside a transaction that stays open for `hold` before committing.
async fn append_held(
    store: &EventStore,
    stream_id: &str,
    hold: Duration,
    started: tokio::sync::oneshot::Sender<u64>,
) {
    macro_rules! held {
        ($sql:expr) => {{
            let mut txn = $sql.begin_append().await.expect("begin");
            let mut event = StoredEvent {
                position: txn.state.next_position,
                stream_type: CONVERSATION_STREAM.to_string(),
                stream_id: stream_id.to_string(),
                sequence: 1,
                event_type: "ConversationOpened".into(),
                event_version: "1".into(),
                payload:
                    r#"{"conversation_id":77,"user":{"id":77,"role":"user","identifier":"u77"}}"#
                        .into(),
                metadata: r#"{"actor_id":77,"actor_role":"user"}"#.into(),
                recorded_at_micros: chatd::clock::now_micros(),
                hash: String::new(),
            };
            event.hash = event.expected_hash(GENESIS_HASH);
            txn.state.next_position += 1;
            txn.insert_events(std::slice::from_ref(&event))
                .await
                .expect("insert");
            let _ = started.send(event.position);
            tokio::time::sleep(hold).await;
            txn.commit().await.expect("commit");
        }};
    }
    match store {
        EventStore::MySql(s) => held!(s),
        EventStore::Sqlite(s) => held!(s),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_passes_a_writer_held_inside_its_transaction() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let conversations = open_conversations(&bus, 4).await;
        let expected = 8 + 1 + 8 * 50;
        let reader = tail(db.store.clone(), expected);

        let (started, held_position) = tokio::sync::oneshot::channel();
        let store = db.store.clone();
        let holder = tokio::spawn(async move {
            append_held(&store, "77", Duration::from_secs(2), started).await;
        });
        let held_position = held_position.await.unwrap();
        let writers = send_many(&bus, &conversations, 8, 50);
        for writer in writers {
            writer.await.unwrap();
        }
        holder.await.unwrap();

        let seen = reader.await.unwrap();
        assert_contiguous(&seen, expected, db.name());
        assert_eq!(
            held_position,
            9,
            "{}: the held writer took the next position",
            db.name()
        );
        assert_eq!(db.store.verify_chains().await.unwrap(), None);
        db.cleanup().await;
    }
}
