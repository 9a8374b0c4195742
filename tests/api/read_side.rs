//! Projectors: replay equivalence, crash in the middle of a batch, two instances, and an event
//! that cannot be applied; on SQLite and on MySQL.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatd::commands::CommandBus;
use chatd::store::{EventStore, StoredEvent};
use projections::{
    LoggedEvent, ProjectionError, ProjectionStore, Projections, Projector, ProjectorState,
    RuntimeOptions, SqlTxn, Tables, all_projectors,
};
use serde_json::json;
use support::history::mixed_history;
use support::*;

fn options(node: &str) -> RuntimeOptions {
    let mut options = RuntimeOptions::new(node);
    options.lease_ttl = Duration::from_secs(1);
    options.lease_renew = Duration::from_millis(200);
    options.poll_interval = Duration::from_millis(20);
    options
}

fn start(
    db: &TestDb,
    bus: &CommandBus,
    projectors: Vec<Arc<dyn Projector>>,
    node: &str,
) -> Projections {
    Projections::start(
        Arc::new(db.store.clone()),
        projectors,
        bus.committed_head(),
        options(node),
    )
}

async fn caught_up(projections: &Projections, store: &EventStore) {
    let head = store.head_position().await.unwrap();
    assert!(
        projections.wait_for(head, Duration::from_secs(60)).await,
        "projectors reach the head {head}: {:?}",
        projections.statuses()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropping_the_read_tables_and_replaying_the_log_gives_identical_rows() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let live = start(&db, &bus, all_projectors(), "node-a");
        mixed_history(&bus, 3000, 7).await;
        caught_up(&live, &db.store).await;
        live.stop().await;
        let conversations = dump(&db.store, "conversations").await;
        let messages = dump(&db.store, "messages").await;
        let files = dump(&db.store, "files").await;
        let archived_conversations = dump(&db.store, "conversations_archive").await;
        let archived_messages = dump(&db.store, "messages_archive").await;
        assert!(
            !archived_conversations.is_empty()
                && archived_messages.len() > 10
                && archived_conversations
                    .iter()
                    .all(|row| row.contains("archived"))
                && conversations
                    .iter()
                    .all(|row| !row.contains("\"archived\"")),
            "{}: archived conversations moved to the archive",
            db.name()
        );
        assert!(
            messages.iter().any(|row| row.contains("uploads/chat/")),
            "{}: some messages carry a file",
            db.name()
        );
        assert!(
            conversations.len() + archived_conversations.len() > 20
                && messages.len() + archived_messages.len() > 1000
                && files.len() > 20,
            "{}: a real history",
            db.name()
        );
        for kind in [
            "ConversationOpened",
            "MessageSent",
            "MessagesRead",
            "ConversationClosed",
            "ConversationReopened",
            "ConversationArchived",
            "ConversationAssigned",
            "FeedbackGiven",
            "FileUploaded",
            "MessageEdited",
            "MessageDeleted",
        ] {
            let log = db.store.read_from(0, 10_000).await.unwrap();
            assert!(
                log.iter().any(|e| e.event_type == kind),
                "{}: the history has {kind}",
                db.name()
            );
        }

        let tables: Vec<&str> = all_projectors()
            .iter()
            .flat_map(|p| p.tables().iter().copied())
            .collect();
        let mut indexes_before = Vec::new();
        for table in &tables {
            indexes_before.push(indexes(&db.store, table).await);
        }

        let position = projections::replay(&db.store, &all_projectors(), 500, |_| {})
            .await
            .unwrap();

        // The rebuilt tables got back every index their copies were created without.
        for (table, before) in tables.iter().zip(&indexes_before) {
            if *table == "search_terms" {
                assert!(
                    before
                        .iter()
                        .any(|index| index.starts_with("search_terms_recent(")),
                    "{before:?}"
                );
            }
            assert_eq!(
                &indexes(&db.store, table).await,
                before,
                "{}: {table}",
                db.name()
            );
        }

        assert_eq!(position, db.store.head_position().await.unwrap());
        assert_eq!(
            dump(&db.store, "conversations").await,
            conversations,
            "{}",
            db.name()
        );
        assert_eq!(dump(&db.store, "messages").await, messages, "{}", db.name());
        assert_eq!(dump(&db.store, "files").await, files, "{}", db.name());
        assert_eq!(
            dump(&db.store, "conversations_archive").await,
            archived_conversations,
            "{}",
            db.name()
        );
        assert_eq!(
            dump(&db.store, "messages_archive").await,
            archived_messages,
            "{}",
            db.name()
        );
        // The live projectors carry on from the replayed checkpoint.
        let live = start(&db, &bus, all_projectors(), "node-b");
        open_with(&bus, &user(77), "after the replay").await;
        caught_up(&live, &db.store).await;
        assert_eq!(dump(&db.store, "messages").await.len(), messages.len() + 1);
        live.stop().await;
        db.cleanup().await;
    }
}

/// The conversations projector, stalling for good at one position (a process about to be killed).
struct StallAt {
    position: u64,
    reached: tokio::sync::mpsc::Sender<()>,
}

#[async_trait]
impl Projector for StallAt {
    fn name(&self) -> &'static str {
        "conversations"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["conversations"]
    }

    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError> {
        // The events before the stall point are written inside the transaction, then it hangs.
        let stall = events
            .iter()
            .position(|e| e.position == self.position)
            .unwrap_or(events.len());
        let (before, after) = events.split_at(stall);
        projections::ConversationsProjector
            .apply(txn, tables, before)
            .await?;
        if !after.is_empty() {
            let _ = self.reached.send(()).await;
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projector_killed_in_the_middle_of_a_batch_resumes_with_nothing_lost_or_applied_twice() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        mixed_history(&bus, 1500, 11).await;
        let (reached, mut stalled) = tokio::sync::mpsc::channel(1);
        let stall: Arc<dyn Projector> = Arc::new(StallAt {
            position: 700,
            reached,
        });
        let doomed = start(&db, &bus, vec![stall], "node-doomed");
        stalled.recv().await.unwrap();
        // Some batches are committed, one is half applied inside its transaction: kill it.
        doomed.abort();
        drop(doomed);

        let restarted = start(&db, &bus, all_projectors(), "node-restarted");
        caught_up(&restarted, &db.store).await;
        restarted.stop().await;
        let after_crash = dump(&db.store, "conversations").await;
        projections::replay(&db.store, &all_projectors(), 500, |_| {})
            .await
            .unwrap();

        assert_eq!(
            after_crash,
            dump(&db.store, "conversations").await,
            "{}",
            db.name()
        );
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_instances_one_applies_and_the_other_takes_over_when_it_stops() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        open_with(&bus, &user(1), "hello").await;
        let first = start(&db, &bus, all_projectors(), "node-1");
        let second = start(&db, &bus, all_projectors(), "node-2");
        caught_up(&first, &db.store).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        for name in ["conversations", "messages"] {
            let running_on = [&first, &second]
                .iter()
                .filter(|p| {
                    p.statuses()
                        .iter()
                        .any(|s| s.name == name && s.state == ProjectorState::Running)
                })
                .count();
            assert_eq!(
                running_on,
                1,
                "{}: {name} runs on exactly one node",
                db.name()
            );
        }
        let running = |p: &Projections| {
            p.statuses()
                .iter()
                .filter(|s| s.state == ProjectorState::Running)
                .count()
        };
        let (leader, standby) = (first, second);
        leader.abort();
        drop(leader);
        open_with(&bus, &user(2), "while the leader is gone").await;

        caught_up(&standby, &db.store).await;
        assert_eq!(
            running(&standby),
            all_projectors().len(),
            "{}: the standby took over",
            db.name()
        );
        assert_eq!(dump(&db.store, "conversations").await.len(), 2);
        standby.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_a_projector_cannot_apply_stops_it_with_the_position_and_keeps_its_checkpoint() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let opened = open_with(&bus, &user(1), "hello").await;
        let projections = start(&db, &bus, all_projectors(), "node-1");
        caught_up(&projections, &db.store).await;
        let good = db.store.head_position().await.unwrap();
        let bad: Vec<StoredEvent> = support::raw_log::append_raw(
            &db.store,
            &[support::raw_log::raw_event(
                &opened.conversation_id.to_string(),
                3,
                "ConversationTeleported",
                "1",
                json!({}),
            )],
        )
        .await
        .unwrap();
        let bad_position = bad[0].position;

        assert!(
            !projections
                .wait_for(bad_position, Duration::from_secs(10))
                .await
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while projections
            .statuses()
            .iter()
            .any(|s| s.state != ProjectorState::Failed)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        for status in projections.statuses() {
            assert_eq!(
                status.state,
                ProjectorState::Failed,
                "{}: {status:?}",
                db.name()
            );
            assert_eq!(status.position, good);
            let error = status.last_error.unwrap();
            assert!(
                error.contains(&format!("position {bad_position}")),
                "{error}"
            );
        }
        let mut txn = ProjectionStore::begin(&db.store).await.unwrap();
        let row = txn
            .fetch_row(
                "select position, last_error from projector_state where name = 'messages'",
                &[],
            )
            .await
            .unwrap()
            .unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(
            row[0].as_i64(),
            Some(good as i64),
            "the checkpoint did not move"
        );
        assert!(
            row[1]
                .as_text()
                .unwrap()
                .contains(&bad_position.to_string())
        );
        projections.stop().await;
        db.cleanup().await;
    }
}

/// A node SIGKILLed and started again on its data directory takes its projectors' leases back
/// at once: the read right after its first write shows the write, although the killed process's
/// leases have seconds left and the read waits for less than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_a_kill_takes_its_leases_back_at_once() {
    use reqwest::Method;
    use support::process::{ChatdProcess, call_process, cli_session};

    for db in TestDb::each().await {
        let settings = [("CHAT_READ_YOUR_WRITES_TIMEOUT_MS", "1000")];
        let user = cli_session(&db, "user", fresh_id());
        let node = ChatdProcess::start(&db, &settings).await;
        let (status, opened) = call_process(
            &node.url,
            Method::POST,
            "/api/chat/conversations",
            &user,
            &json!({"initial_message": "before the kill"}),
        )
        .await;
        assert!(status == 200 || status == 201, "{}: {opened}", db.name());
        let conversation = opened["data"]["conversation_id"]
            .as_u64()
            .expect("conversation id");

        let node = node.kill_and_restart(&db, &settings).await;
        let (status, sent) = call_process(
            &node.url,
            Method::POST,
            "/api/chat/messages",
            &user,
            &json!({"conversation_id": conversation, "content": "after the restart"}),
        )
        .await;
        assert_eq!(status, 201, "{}: {sent}", db.name());
        let (status, page) = call_process(
            &node.url,
            Method::GET,
            &format!("/api/chat/messages?conversation_id={conversation}"),
            &user,
            &serde_json::Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{}: {page}", db.name());
        let contents: Vec<&str> = page["data"]["messages"]
            .as_array()
            .map(|messages| {
                messages
                    .iter()
                    .filter_map(|m| m["content"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            contents.contains(&"after the restart"),
            "{}: the restarted node's read shows its write: {page}\n{}",
            db.name(),
            node.log_text()
        );
        node.stop();
        db.cleanup().await;
    }
}
