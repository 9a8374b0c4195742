//! SIGTERM under load, on real `chatd` processes: requests in flight are answered, every socket
//! is told why it is being closed (`server_shutdown`) before it is, the process exits cleanly,
//! and every acknowledged message is in the log exactly once; and a rolling restart of two
//! nodes, with clients retrying on the other node as the app does, loses nothing; and Socket.IO
//! apps with their library's default reconnection ride a rolling restart by themselves.

use crate::support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::process::{ChatdProcess, cli_session};
use support::*;
use tokio_tungstenite::tungstenite::Message;

async fn post_message(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    client_msg_id: &str,
) -> Result<u16, reqwest::Error> {
    let path = "/api/chat/messages";
    let body =
        json!({"message": format!("message {client_msg_id}"), "client_msg_id": client_msg_id})
            .to_string();
    let timestamp = chrono::Utc::now().timestamp_millis();
    let signature = chatd::auth::sign(APP_SECRET, timestamp, "POST", path, body.as_bytes());
    let response = client
        .post(format!("{url}{path}"))
        .header("X-Timestamp", timestamp.to_string())
        .header("X-Signature", signature)
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// How many MessageSent events of the whole log carry each client_msg_id.
async fn sent_per_client_msg_id(store: &chatd::store::EventStore) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut position = 0;
    loop {
        let batch = store.read_from(position, 1000).await.expect("read the log");
        let Some(last) = batch.last() else {
            return counts;
        };
        position = last.position;
        for event in batch.iter().filter(|e| e.event_type == "MessageSent") {
            let metadata: Value = serde_json::from_str(&event.metadata).expect("metadata");
            if let Some(id) = metadata["client_msg_id"].as_str() {
                *counts.entry(id.to_string()).or_default() += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_in_flight_requests_tells_sockets_and_loses_nothing() {
    for db in TestDb::each().await {
        let mut node =
            ChatdProcess::start(&db, &[("CHAT_LIMIT_MESSAGES_PER_MIN", "1000000")]).await;
        let token = cli_session(&db, "user", fresh_id());
        let client = reqwest::Client::new();
        assert_eq!(
            post_message(&client, &node.url, &token, "first").await.ok(),
            Some(201)
        );

        let mut socket = raw_socket(&node.url, &token).await;

        // Writers until the server is gone; what came back 2xx is acknowledged.
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let (client, url, token, stop) = (
                    client.clone(),
                    node.url.clone(),
                    token.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut acknowledged = Vec::new();
                    let mut refused = 0u32;
                    for n in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let id = format!("w{writer}-{n}");
                        match post_message(&client, &url, &token, &id).await {
                            Ok(200 | 201) => acknowledged.push(id),
                            Ok(status) => panic!("{id}: {status} while serving"),
                            // The server has stopped listening.
                            Err(_) => {
                                refused += 1;
                                if refused > 3 {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                    acknowledged
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        send_sigterm(&node);

        // The socket hears why before it is closed.
        let mut told = None;
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(10), socket.next()).await
        {
            let text = frame.to_text().unwrap_or_default().to_string();
            let closing = text.starts_with("41") || frame.is_close();
            if text.starts_with("42") && text.contains("server_shutdown") {
                told = Some(text);
            }
            if closing {
                break;
            }
        }
        let told = told.unwrap_or_else(|| panic!("{}: no server_shutdown event", db.name()));
        assert!(told.contains("since"), "{told}");

        let exited = exited_within_30_s(&mut node).await;
        stop.store(true, Ordering::SeqCst);
        assert!(
            exited.success(),
            "{}: {exited:?}\n{}",
            db.name(),
            node.log_text()
        );

        let mut acknowledged = vec!["first".to_string()];
        for writer in writers {
            acknowledged.extend(writer.await.expect("writer"));
        }
        assert!(acknowledged.len() > 8, "{}: the load ran", db.name());
        let in_log = sent_per_client_msg_id(&db.store).await;
        for id in &acknowledged {
            assert_eq!(in_log.get(id), Some(&1), "{}: {id} acknowledged", db.name());
        }
        println!(
            "{}: {} messages acknowledged before and during SIGTERM, every one in the log once",
            db.name(),
            acknowledged.len()
        );
        node.stop();
        db.cleanup().await;
    }
}

pub(crate) type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket connected over the real Engine.IO websocket protocol, its Socket.IO connect answered.
pub(crate) async fn raw_socket(url: &str, token: &str) -> RawSocket {
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        url.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url)
        .await
        .expect("websocket");
    let open = socket.next().await.expect("open packet").expect("frame");
    assert!(
        open.to_text().unwrap_or_default().starts_with('0'),
        "{open:?}"
    );
    socket
        .send(Message::text(format!("40{}", json!({"token": token}))))
        .await
        .expect("connect packet");
    loop {
        let frame = socket.next().await.expect("connect answer").expect("frame");
        let text = frame.to_text().unwrap_or_default();
        if text == "2" {
            socket.send(Message::text("3")).await.expect("pong");
            continue;
        }
        assert!(text.starts_with("40"), "{frame:?}");
        return socket;
    }
}

/// Holds the log's write lock from another connection, so that an append waits for it.
enum WriteLock {
    MySql(sqlx::MySqlConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl WriteLock {
    async fn take(db: &TestDb) -> WriteLock {
        use sqlx::Connection;
        match db.backend {
            chatd::store::Backend::MySql => {
                let mut connection = sqlx::MySqlConnection::connect(&db.url)
                    .await
                    .expect("connect");
                sqlx::raw_sql(
                    "begin; select next_position from event_sequencer where id = 1 for update",
                )
                .execute(&mut connection)
                .await
                .expect("lock the sequencer");
                WriteLock::MySql(connection)
            }
            chatd::store::Backend::Sqlite => {
                let mut connection = sqlx::SqliteConnection::connect(&db.url)
                    .await
                    .expect("connect");
                sqlx::raw_sql("begin immediate")
                    .execute(&mut connection)
                    .await
                    .expect("take the write lock");
                WriteLock::Sqlite(connection)
            }
        }
    }

    async fn release(self) {
        let released = match self {
            WriteLock::MySql(mut connection) => sqlx::raw_sql("rollback")
                .execute(&mut connection)
                .await
                .map(drop),
            WriteLock::Sqlite(mut connection) => sqlx::raw_sql("rollback")
                .execute(&mut connection)
                .await
                .map(drop),
        };
        released.expect("release the lock");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_command_in_progress_at_sigterm_finishes_and_is_acknowledged_before_the_close() {
    for db in TestDb::each().await {
        let mut node = ChatdProcess::start(&db, &[]).await;
        let token = cli_session(&db, "user", fresh_id());
        let client = reqwest::Client::new();
        assert_eq!(
            post_message(&client, &node.url, &token, "first").await.ok(),
            Some(201)
        );
        let mut socket = raw_socket(&node.url, &token).await;

        // The send waits for the lock: it is in progress when SIGTERM arrives.
        let lock = WriteLock::take(&db).await;
        let send = |ack: u32, id: &str| {
            Message::text(format!(
                "42{ack}{}",
                json!(["send_message", {"content": format!("message {id}"), "client_msg_id": id}])
            ))
        };
        socket
            .send(send(1, "in-flight"))
            .await
            .expect("send_message");
        tokio::time::sleep(Duration::from_millis(300)).await;
        send_sigterm(&node);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // One sent after SIGTERM is refused, to be sent again after reconnecting.
        socket
            .send(send(2, "too-late"))
            .await
            .expect("send_message");
        tokio::time::sleep(Duration::from_millis(700)).await;
        lock.release().await;

        let mut frames = Vec::new();
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(15), socket.next()).await
        {
            let text = frame.to_text().unwrap_or_default().to_string();
            if text == "2" {
                let _ = socket.send(Message::text("3")).await;
                continue;
            }
            if frame.is_close() || text.starts_with("41") {
                break;
            }
            frames.push(text);
        }
        let acked = frames.iter().find(|f| f.starts_with("431["));
        let acked: Value = acked
            .and_then(|f| serde_json::from_str(&f[3..]).ok())
            .unwrap_or_else(|| {
                panic!(
                    "{}: the command in progress was acknowledged before the close: {frames:?}",
                    db.name()
                )
            });
        assert_eq!(acked[0]["status"], "success", "{}: {acked}", db.name());
        assert_eq!(acked[0]["data"]["client_msg_id"], "in-flight");
        let refused: Value = frames
            .iter()
            .find(|f| f.starts_with("432["))
            .and_then(|f| serde_json::from_str(&f[3..]).ok())
            .unwrap_or_else(|| panic!("{}: the late command was answered: {frames:?}", db.name()));
        assert_eq!(
            refused[0]["error_code"],
            "UNAVAILABLE",
            "{}: {refused}",
            db.name()
        );

        let exited = exited_within_30_s(&mut node).await;
        assert!(exited.success(), "{}: {exited:?}", db.name());
        let in_log = sent_per_client_msg_id(&db.store).await;
        assert_eq!(in_log.get("in-flight"), Some(&1), "{}", db.name());
        assert_eq!(in_log.get("too-late"), None, "{}", db.name());
        node.stop();
        db.cleanup().await;
    }
}

fn send_sigterm(node: &ChatdProcess) {
    let pid = node.process.id().to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(signalled.success());
}

/// Sends SIGTERM and waits (up to 30 s) for a clean exit.
async fn terminate(mut node: ChatdProcess) {
    send_sigterm(&node);
    let status = exited_within_30_s(&mut node).await;
    assert!(status.success(), "{status:?}\n{}", node.log_text());
    node.stop();
}

/// How the process exited, after SIGTERM; a failure when it is still running 30 s later.
async fn exited_within_30_s(node: &mut ChatdProcess) -> std::process::ExitStatus {
    for _ in 0..300 {
        if let Ok(Some(status)) = node.process.try_wait() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "chatd still running 30 s after SIGTERM\n{}",
        node.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_two_nodes_under_load_loses_nothing() {
    let db = TestDb::mysql().await;
    let settings = [("CHAT_LIMIT_MESSAGES_PER_MIN", "1000000")];
    let first = ChatdProcess::start(&db, &settings).await;
    let second = ChatdProcess::start(&db, &settings).await;
    let nodes = Arc::new(std::sync::RwLock::new(vec![
        first.url.clone(),
        second.url.clone(),
    ]));
    let token = cli_session(&db, "user", fresh_id());
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));

    // Each message is retried with its client_msg_id, on the other node, until acknowledged.
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (client, nodes, token, stop) =
                (client.clone(), nodes.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut retries = 0u32;
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("r{writer}-{n}");
                    let mut attempt = 0usize;
                    loop {
                        let url = {
                            let nodes = nodes.read().expect("nodes");
                            nodes[(writer + n + attempt) % nodes.len()].clone()
                        };
                        match post_message(&client, &url, &token, &id).await {
                            Ok(200 | 201) => break,
                            Ok(503) | Err(_) => {
                                attempt += 1;
                                retries += 1;
                                assert!(attempt < 600, "{id}: never acknowledged");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Ok(status) => panic!("{id}: {status}"),
                        }
                    }
                    acknowledged.push(id);
                    n += 1;
                }
                (acknowledged, retries)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    terminate(first).await;
    let first = ChatdProcess::start(&db, &settings).await;
    nodes.write().expect("nodes")[0] = first.url.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    terminate(second).await;
    let second = ChatdProcess::start(&db, &settings).await;
    nodes.write().expect("nodes")[1] = second.url.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);

    let mut acknowledged = Vec::new();
    let mut retries = 0;
    for writer in writers {
        let (ids, retried) = writer.await.expect("writer");
        acknowledged.extend(ids);
        retries += retried;
    }
    let in_log = sent_per_client_msg_id(&db.store).await;
    for id in &acknowledged {
        assert_eq!(in_log.get(id), Some(&1), "{id} acknowledged");
    }
    assert_eq!(
        in_log.keys().filter(|id| id.starts_with('r')).count(),
        acknowledged.len(),
        "nothing in the log that was not acknowledged in the end"
    );
    println!(
        "rolling restart: {} messages acknowledged ({retries} retries), every one in the log once",
        acknowledged.len()
    );
    first.stop();
    second.stop();
    db.cleanup().await;
}

/// A client app with its library's default reconnection, as a child process: python-socketio
/// or socket.io-client (`tests/realtime/reconnecting_client.*`).
fn spawn_reconnecting_client(program: &str, script: &str, config: &Value) -> tokio::process::Child {
    use std::process::Stdio;
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program} {script}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let config = config.to_string();
    tokio::spawn(async move {
        let _ = stdin.write_all(config.as_bytes()).await;
    });
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_with_default_reconnection_survive_a_rolling_restart_with_every_message_once_in_order()
 {
    for db in TestDb::each().await {
        // Two nodes behind Redis; on SQLite the one node restarts in place.
        let node_count = if db.backend == chatd::store::Backend::MySql {
            2
        } else {
            1
        };
        let settings = [("CHAT_LIMIT_MESSAGES_PER_MIN", "1000000")];
        let mut nodes = Vec::new();
        for _ in 0..node_count {
            nodes.push(ChatdProcess::start(&db, &settings).await);
        }
        let stop_file = std::env::temp_dir().join(format!("chatd-rolling-stop-{}", fresh_id()));
        let libraries = [
            ("python3", "tests/realtime/reconnecting_client.py"),
            ("node", "tests/realtime/reconnecting_client.mjs"),
        ];
        let mut clients = Vec::new();
        for (index, node) in nodes.iter().enumerate() {
            for (program, script) in libraries {
                let token = cli_session(&db, "user", fresh_id());
                let (status, opened) = support::process::call_process(
                    &node.url,
                    reqwest::Method::POST,
                    "/api/chat/conversations",
                    &token,
                    &json!({"initial_message": "hello"}),
                )
                .await;
                assert_eq!(status, 201, "{opened}");
                let config = json!({
                    "url": node.url,
                    "token": token,
                    "conversation_id": opened["data"]["conversation_id"],
                    "since": opened["data"]["message"]["id"],
                    "prefix": format!("{program}-{index}"),
                    "stop_file": stop_file,
                    // The first connect, and one after its node's restart.
                    "min_connects": 2,
                });
                let name = format!("{program} on node {}", index + 1);
                clients.push((name, spawn_reconnecting_client(program, script, &config)));
            }
        }

        // Under the clients' send load, node 1 then node 2 get SIGTERM and come back.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let mut restarted = Vec::new();
        for node in nodes {
            restarted.push(node.terminate_and_restart(&db, &settings).await);
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
        std::fs::write(&stop_file, b"stop").expect("stop file");

        for (name, client) in clients {
            let output = tokio::time::timeout(Duration::from_secs(40), client.wait_with_output())
                .await
                .unwrap_or_else(|_| panic!("{}: {name} did not finish", db.name()))
                .expect("client output");
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{}: {name}: {}\n{stdout}",
                db.name(),
                String::from_utf8_lossy(&output.stderr)
            );
            println!("{}: {name}: {}", db.name(), stdout.trim());
        }
        let in_log = sent_per_client_msg_id(&db.store).await;
        let doubled: Vec<_> = in_log.iter().filter(|(_, count)| **count > 1).collect();
        assert!(doubled.is_empty(), "{}: sent twice: {doubled:?}", db.name());
        let _ = std::fs::remove_file(&stop_file);
        for node in restarted {
            node.stop();
        }
        db.cleanup().await;
    }
}
