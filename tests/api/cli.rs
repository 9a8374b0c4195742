//! The operator's commands, run as the real binary.

use crate::support;

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
        // Every projection, the first two of which are these.
        assert!(
            summary.contains("replayed conversations, messages")
                && summary.contains("up to position 10"),
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

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let db = TestDb::sqlite().await;
    let port = 20_000 + (std::process::id() % 10_000) as u16;
    let data_dir = std::env::temp_dir().join(format!("chatd-sigterm-{}", std::process::id()));
    let mut server = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .arg("serve")
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_DATA_DIR", &data_dir)
        .env("CHAT_PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chatd");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            ready = response.status() == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the server answered /healthz");

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chatd stops within 10 s of SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };

    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(&data_dir);
    db.cleanup().await;
}
