//! Socket.IO through real clients: each test starts the server (SQLite, then MariaDB with Redis),
//! arranges sessions and conversations over REST, and runs one scenario of
//! `tests/realtime/scenarios.py` (python-socketio, `tests/requirements.txt`) against it. The
//! scenario gets its configuration as JSON on stdin and exits 0 when it holds; otherwise the test
//! fails with what the scenario printed (the failed check, its steps, every event received).

use crate::support;

use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::process::ChatdProcess;
use support::*;
use tokio::io::AsyncWriteExt;

/// How long one scenario may take before it counts as hung.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

fn scenarios_script() -> String {
    format!("{}/tests/realtime/scenarios.py", env!("CARGO_MANIFEST_DIR"))
}

/// python3 with python-socketio's client; a missing one fails the test (never a skip).
fn require_python_client() {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    let checked = CHECKED.get_or_init(|| {
        let output = std::process::Command::new("python3")
            .args(["-c", "import socketio, engineio, websocket, requests"])
            .output()
            .map_err(|e| format!("python3 could not be started: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`python3 -c \"import socketio\"` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    });
    if let Err(problem) = checked {
        panic!(
            "the Socket.IO tests need python3 with python-socketio: {problem}\n\
             install it with `python3 -m pip install -r tests/requirements.txt`"
        );
    }
}

/// Runs `scenario` of `tests/realtime/scenarios.py` against the app with `arranged` (merged into
/// the common configuration) on stdin; fails the test with the script's output unless it exits 0.
pub(crate) async fn run_scenario(scenario: &str, db: &TestDb, app: &TestApp, arranged: Value) {
    run_script(&scenarios_script(), &[scenario], db, app, arranged).await;
}

/// A staff session: `{id, token, identifier}`.
pub(crate) async fn admin(app: &TestApp) -> Value {
    let (id, token) = app.session(Role::Admin, None).await;
    json!({"id": id, "token": token, "identifier": format!("admin_{id}")})
}

/// A user session with an open conversation:
/// `{id, token, identifier, conversation_id, message_id}` (the initial message's id).
pub(crate) async fn user_with_conversation(app: &TestApp, first_words: &str) -> Value {
    let (id, token) = app.session(Role::User, None).await;
    let (status, opened) = app
        .call(
            Method::POST,
            "/api/chat/conversations",
            Some(&token),
            Some(&json!({"initial_message": first_words})),
        )
        .await;
    assert_eq!(status, 201, "open a conversation: {opened}");
    let conversation_id = opened["data"]["conversation_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("conversation id in {opened}"));
    let message_id = opened["data"]["message"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("message id in {opened}"));
    json!({
        "id": id,
        "token": token,
        "identifier": format!("user_{id}"),
        "conversation_id": conversation_id,
        "message_id": message_id,
    })
}

/// The common shape: on each back end, a user with an open conversation and an admin, then
/// the scenario.
async fn user_and_admin_scenario(scenario: &str, first_words: &str) {
    user_and_admin_scenario_with(scenario, first_words, &[]).await;
}

/// [`user_and_admin_scenario`] on a server started with `settings`.
async fn user_and_admin_scenario_with(
    scenario: &str,
    first_words: &str,
    settings: &[(&str, &str)],
) {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, settings).await;
        let user = user_with_conversation(&app, first_words).await;
        let admin = admin(&app).await;

        run_scenario(scenario, &db, &app, json!({"user": user, "admin": admin})).await;

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_or_missing_token_is_refused_at_connect_with_unauthorized() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let user = user_with_conversation(&app, "hello").await;

        run_scenario("bad_token", &db, &app, json!({"user": user})).await;

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_in_the_authorization_header_or_the_query_connects_as_the_handshake_auth_does() {
    user_and_admin_scenario("connect_styles", "hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_socket_event_flows_in_the_contract_shape_and_once_per_socket() {
    user_and_admin_scenario("contract_events", "I need help with my account").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_socket_can_neither_see_nor_touch_another_users_conversation() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let user = user_with_conversation(&app, "A's private question").await;
        let other = user_with_conversation(&app, "B's private question").await;
        let admin = admin(&app).await;
        assert_ne!(user["conversation_id"], other["conversation_id"]);

        run_scenario(
            "isolation",
            &db,
            &app,
            json!({"user": user, "other": other, "admin": admin}),
        )
        .await;

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_and_deletions_over_sockets_reach_every_socket_in_the_room_once() {
    user_and_admin_scenario("message_changes", "I need help").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_sent_over_rest_reaches_every_socket_in_the_room_including_the_senders() {
    user_and_admin_scenario("rest_to_socket", "hello").await;
}

/// A phone's screenshot (1170 x 2532) the user of `user_with_conversation` uploaded to their
/// conversation: the upload's answer.
pub(crate) async fn uploaded_photo(app: &TestApp, user: &Value) -> Value {
    crate::uploads::upload_ok(
        app,
        user["token"].as_str().expect("token"),
        user["conversation_id"].as_u64().expect("conversation"),
        "image",
        "IMG_0042.png",
        crate::uploads::png(1170, 2532),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image_and_file_messages_carry_pixels_name_size_and_type_in_every_view() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let user = user_with_conversation(&app, "two attachments follow").await;
        let admin = admin(&app).await;
        let photo = uploaded_photo(&app, &user).await;
        let token = user["token"].as_str().expect("token");
        let conversation = user["conversation_id"].as_u64().expect("conversation");
        let document = crate::uploads::upload_ok(
            &app,
            token,
            conversation,
            "file",
            "invoice-march.pdf",
            crate::uploads::pdf(),
        )
        .await;

        run_scenario(
            "attachments",
            &db,
            &app,
            json!({"user": user, "admin": admin, "photo": photo, "document": document}),
        )
        .await;

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnecting_client_joining_with_since_gets_exactly_the_missed_messages_in_order() {
    user_and_admin_scenario("reconnect_since", "hello").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_stops_reading_is_disconnected_and_catches_up_with_since() {
    for db in TestDb::each().await {
        // A small buffer and no rate limit, so that a few hundred messages overflow it.
        let app = TestApp::spawn_with(
            &db,
            &[
                ("CHAT_SOCKET_BUFFER", "32"),
                ("CHAT_LIMIT_MESSAGES_PER_MIN", "100000"),
            ],
        )
        .await;
        let user = user_with_conversation(&app, "hello").await;
        let admin = admin(&app).await;

        run_scenario(
            "slow_reader",
            &db,
            &app,
            json!({"user": user, "admin": admin, "flood": 3000}),
        )
        .await;

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn socket_mark_read_refuses_an_invalid_message_id_exactly_as_rest_does() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let user = user_with_conversation(&app, "hello").await;

        run_scenario("same_refusals", &db, &app, json!({"user": user})).await;

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_events_get_error_acks_and_an_oversized_packet_ends_only_its_connection() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let user = user_with_conversation(&app, "hello").await;

        run_scenario("bad_input", &db, &app, json!({"user": user})).await;

        // The server is still whole: REST answers too.
        let (status, body) = app
            .call(
                Method::GET,
                "/api/chat/messages",
                Some(user["token"].as_str().unwrap()),
                None,
            )
            .await;
        assert_eq!(status, 200, "{}: {body}", db.name());

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_long_polling_transport_carries_the_same_flow() {
    user_and_admin_scenario("polling", "hello").await;
}

/// A second chatd process on the test database and Redis (the same prefix as the test server).
/// MariaDB and Redis only: that is what several nodes share.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_chatd_processes_sharing_mariadb_and_redis_deliver_messages_and_typing_across() {
    let db = TestDb::mysql().await;
    let app = TestApp::spawn(&db).await;
    let second = ChatdProcess::start(&db, &[]).await;
    let user = user_with_conversation(&app, "hello").await;
    let admin = admin(&app).await;

    run_scenario(
        "two_nodes",
        &db,
        &app,
        json!({"user": user, "admin": admin, "second_url": second.url}),
    )
    .await;

    second.stop();
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_whose_session_is_deleted_is_disconnected_within_seconds() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let user = user_with_conversation(&app, "hello").await;
        let token = user["token"].as_str().unwrap().to_string();
        let state = app.state.clone();
        let realtime = app.realtime.clone();
        let ends_session = tokio::spawn(async move {
            while realtime.local_sockets() == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            state
                .auth
                .delete_session(&token)
                .await
                .expect("delete the session");
        });

        run_scenario("session_ends", &db, &app, json!({"user": user})).await;

        ends_session.await.unwrap();
        let metrics = app.get("/metrics").await.text().await.unwrap();
        for name in [
            "chatd_sockets_connected",
            "chatd_socket_events_out_total",
            "chatd_broadcast_lag_seconds",
        ] {
            assert!(metrics.contains(name), "{}: /metrics has {name}", db.name());
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_auditor_socket_reads_but_may_not_send_mark_read_or_type() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let user = user_with_conversation(&app, "hello").await;
        let (auditor_id, auditor_token) = app.session(Role::Auditor, None).await;
        let head = app.state_store().head_position().await.unwrap();

        run_scenario(
            "auditor_read_only",
            &db,
            &app,
            json!({"user": user, "auditor": {"id": auditor_id, "token": auditor_token}}),
        )
        .await;

        assert_eq!(
            app.state_store().head_position().await.unwrap(),
            head,
            "{}: nothing was appended",
            db.name()
        );
        app.stop().await;
        db.cleanup().await;
    }
}

/// Another node takes `projector`'s lease until `for_how_long` from now: this node's projector
/// stops applying the log until the lease expires, as after its node's death.
async fn hold_lease_elsewhere(db: &TestDb, projector: &str, for_how_long: Duration) {
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        + for_how_long)
        .as_micros() as i64;
    let sql = "update projector_state set holder = 'another-node', lease_expires_at = ? \
               where name = ?";
    let moved = match &db.store {
        chatd::store::EventStore::MySql(s) => sqlx::query(sql)
            .bind(until)
            .bind(projector)
            .execute(s.pool())
            .await
            .map(|done| done.rows_affected()),
        chatd::store::EventStore::Sqlite(s) => sqlx::query(sql)
            .bind(until)
            .bind(projector)
            .execute(s.pool())
            .await
            .map(|done| done.rows_affected()),
    };
    assert_eq!(
        moved.expect("take the lease"),
        1,
        "{}: {projector}'s lease",
        db.name()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_while_the_read_tables_lag_is_refused_rather_than_answered_without_messages() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_READ_YOUR_WRITES_TIMEOUT_MS", "300")]).await;
        let user = user_with_conversation(&app, "hello").await;
        let admin = admin(&app).await;
        hold_lease_elsewhere(&db, "messages", Duration::from_secs(4)).await;
        let (status, sent) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                admin["token"].as_str(),
                Some(&json!({"conversation_id": user["conversation_id"], "content": "while lagging"})),
            )
            .await;
        assert_eq!(status, 201, "{}: the admin's message: {sent}", db.name());

        run_scenario(
            "join_while_tables_lag",
            &db,
            &app,
            json!({"user": user, "lagging_message_id": sent["data"]["id"]}),
        )
        .await;

        app.stop().await;
        db.cleanup().await;
    }
}

/// A join answered while messages keep arriving: nothing newer than its answer reaches the
/// socket before it (the answer used to come after messages broadcast during the join).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_is_answered_before_any_newer_broadcast_reaches_the_socket() {
    let unlimited = [
        ("CHAT_LIMIT_MESSAGES_PER_MIN", "1000000"),
        ("CHAT_LIMIT_JOINS_PER_MIN", "1000000"),
    ];
    user_and_admin_scenario_with("join_answer_first", "hello", &unlimited).await;
}

/// Limits small enough to reach in a test, and enough messages to need them.
const TYPING_LIMIT: u32 = 4;
const JOIN_LIMIT: u32 = 12;
/// 5,000 four-byte characters: the largest text a message may hold, 20,000 bytes.
const LARGE_MESSAGES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_users_history_joins_and_typing_stay_bounded_in_size_and_rate() {
    for db in TestDb::each().await {
        let typing = TYPING_LIMIT.to_string();
        let joins = JOIN_LIMIT.to_string();
        let app = TestApp::spawn_with(
            &db,
            &[
                ("CHAT_LIMIT_MESSAGES_PER_MIN", "100000"),
                ("CHAT_LIMIT_TYPING_PER_MIN", typing.as_str()),
                ("CHAT_LIMIT_JOINS_PER_MIN", joins.as_str()),
                ("CHAT_TRUSTED_PROXIES", "127.0.0.1"),
            ],
        )
        .await;
        let user = user_with_conversation(&app, "hello").await;
        let admin = admin(&app).await;
        let token = user["token"].as_str().expect("token");
        let conversation = user["conversation_id"].as_u64().expect("conversation");
        let large = "\u{1F4AC}".repeat(5000);
        let mut message_ids = vec![user["message_id"].as_u64().expect("first message")];
        for _ in 0..LARGE_MESSAGES {
            let (status, sent) = app
                .call(
                    Method::POST,
                    "/api/chat/messages",
                    Some(token),
                    Some(&json!({"conversation_id": conversation, "content": large})),
                )
                .await;
            assert_eq!(status, 201, "{}: {sent}", db.name());
            message_ids.push(sent["data"]["id"].as_u64().expect("message id"));
        }

        // REST history pages by the same rule: at most about 1 MiB, `has_more` to go on.
        let path = format!("/api/chat/messages?conversation_id={conversation}&limit=200");
        let response = app
            .signed(Method::GET, &path, Some(token), None)
            .send()
            .await
            .expect("history request");
        let body = response.bytes().await.expect("history body");
        assert!(
            body.len() <= MAX_ANSWER_BYTES,
            "{}: {} bytes",
            db.name(),
            body.len()
        );
        let page: Value = serde_json::from_slice(&body).expect("history json");
        assert_eq!(page["data"]["has_more"], true, "{}", db.name());
        let newest: Vec<u64> = page["data"]["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .filter_map(|m| m["id"].as_u64())
            .collect();
        assert!(
            message_ids.ends_with(&newest) && newest.len() < message_ids.len(),
            "{}: the newest page must be the newest messages: {newest:?}",
            db.name()
        );

        run_scenario(
            "bounded_answers",
            &db,
            &app,
            json!({
                "user": user,
                "admin": admin,
                "message_ids": message_ids,
                "max_answer_bytes": MAX_ANSWER_BYTES,
                "typing_limit": TYPING_LIMIT,
                "join_limit": JOIN_LIMIT,
                "forwarded_for": "203.0.113.9",
            }),
        )
        .await;

        // The message the scenario sent over the socket records where it came from: the client
        // the trusted proxy (this machine) named.
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let (status, audit) = app
            .call(
                Method::GET,
                &format!("/api/audit/conversations/{conversation}/events?limit=1000"),
                Some(&auditor),
                None,
            )
            .await;
        assert_eq!(status, 200, "{}: {audit}", db.name());
        let from_socket = audit["data"]["events"]
            .as_array()
            .expect("events")
            .iter()
            .rfind(|e| {
                e["metadata"]["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("socket-"))
            })
            .cloned()
            .unwrap_or_else(|| panic!("{}: no event from a socket in {audit}", db.name()));
        assert_eq!(
            from_socket["metadata"]["remote_addr"],
            "203.0.113.9",
            "{}",
            db.name()
        );

        app.stop().await;
        db.cleanup().await;
    }
}

/// The bound on an answer's text plus what the other fields of its messages add.
const MAX_ANSWER_BYTES: usize = (1 << 20) + 200 * 1024;

fn swift_frames_script() -> String {
    format!(
        "{}/tests/realtime/swift_frames.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs the Python `script` with `args` against the app, with `arranged` (merged into the common
/// configuration) on stdin; fails the test with the script's output unless it exits 0.
async fn run_script(script: &str, args: &[&str], db: &TestDb, app: &TestApp, arranged: Value) {
    require_python_client();
    let mut config = json!({
        "url": app.address,
        "secret": APP_SECRET,
        "backend": db.name(),
    });
    for (key, value) in arranged.as_object().expect("arranged config is an object") {
        config[key] = value.clone();
    }
    let mut child = tokio::process::Command::new("python3")
        .arg("-u")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start python3");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(config.to_string().as_bytes())
        .await
        .expect("write the script's config");
    drop(stdin);
    let output = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{script} on {} did not finish within {SCENARIO_TIMEOUT:?}",
                db.name()
            )
        })
        .expect("run the script");
    assert!(
        output.status.success(),
        "{script} on {} failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        db.name(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// Another session of `user`, under a token such as a login system writing Redis may issue
/// (base64: `+`, `/` and `=`), which Socket.IO-Client-Swift escapes wherever it carries one.
async fn base64_token_session(user: &Value) -> String {
    use redis::AsyncCommands;
    let token = format!(
        "{:016x}+{:016x}/{:016x}==",
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let session = json!({"user_id": user["id"], "role": "user", "identifier": user["identifier"]});
    let _: () = redis()
        .await
        .set_ex(format!("chat:session:{token}"), session.to_string(), 3600)
        .await
        .expect("write the session to Redis");
    token
}

/// Socket.IO-Client-Swift 16's frames, written byte for byte by `tests/realtime/swift_frames.py`
/// (its docstring says what the client sends, with the lines of the Swift source), for each
/// place the app may put the session token, over the websocket and, with the token in the
/// query, over long-polling; every answer is checked exactly as that client parses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn socket_io_client_swift_16_frames_are_answered_byte_for_byte_for_every_auth_style() {
    // Short pings, so that several come and are answered within a few seconds.
    const PING_INTERVAL_MS: u64 = 500;
    const PING_TIMEOUT_MS: u64 = 2000;
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(
            &db,
            &[
                (
                    "CHAT_SOCKET_PING_INTERVAL_MS",
                    &PING_INTERVAL_MS.to_string(),
                ),
                ("CHAT_SOCKET_PING_TIMEOUT_MS", &PING_TIMEOUT_MS.to_string()),
            ],
        )
        .await;
        let user = user_with_conversation(&app, "Hello from an iPhone").await;
        let admin = admin(&app).await;
        let mut arranged = json!({
            "user": user,
            "admin": admin,
            "ping_interval_ms": PING_INTERVAL_MS,
            "ping_timeout_ms": PING_TIMEOUT_MS,
            "max_payload": chatd::realtime::MAX_PACKET_BYTES,
        });
        // Next to MySQL, sessions live in Redis, where the login system writes its own tokens.
        if db.backend == chatd::store::Backend::MySql {
            arranged["base64_token"] = json!(base64_token_session(&user).await);
        }

        run_script(&swift_frames_script(), &[], &db, &app, arranged).await;

        app.stop().await;
        db.cleanup().await;
    }
}
