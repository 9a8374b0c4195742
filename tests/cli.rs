//! The operator's commands, run as the real binary.

mod support;

use std::process::Command;

use support::*;

fn chatd(db: &TestDb, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .env("CHAT_DATABASE_URL", &db.url)
        .env("RUST_LOG", "info")
        .output()
        .expect("run chatd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_twice_then_replay_rebuilds_the_tables_and_prints_a_summary() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        for user_id in 1..=5 {
            open_with(&bus, &user(user_id), "hello").await;
        }

        let first = chatd(&db, &["migrate"]);
        let second = chatd(&db, &["migrate"]);
        let replay = chatd(&db, &["replay"]);
        let only_messages = chatd(&db, &["replay", "--projection", "messages"]);

        assert!(
            first.status.success() && second.status.success(),
            "{}",
            db.name()
        );
        assert!(
            replay.status.success(),
            "{}: {}",
            db.name(),
            String::from_utf8_lossy(&replay.stderr)
        );
        let summary = String::from_utf8_lossy(&replay.stdout);
        assert!(
            summary.contains("replayed conversations, messages up to position 10"),
            "{summary}"
        );
        assert!(
            String::from_utf8_lossy(&only_messages.stdout)
                .contains("replayed messages up to position 10")
        );
        let mut txn = projections::ProjectionStore::begin(&db.store)
            .await
            .unwrap();
        let rows = txn
            .fetch_row("select count(*) from messages", &[])
            .await
            .unwrap()
            .unwrap();
        txn.rollback().await.unwrap();
        assert_eq!(rows[0].as_i64(), Some(5));
        db.cleanup().await;
    }
}

#[tokio::test]
async fn replay_of_an_unknown_projection_fails_and_names_the_known_ones() {
    let db = TestDb::sqlite().await;

    let output = chatd(&db, &["replay", "--projection", "nope"]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("conversations, messages"), "{stderr}");
    db.cleanup().await;
}
