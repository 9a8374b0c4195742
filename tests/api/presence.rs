//! Presence and automatic assignment, through real Socket.IO clients (python-socketio, driven
//! line by line by `tests/presence/driver.py`) against the real server: on SQLite (presence in
//! the process) and on MariaDB with Redis (presence in Redis), and with two chatd processes, one
//! of them SIGKILLed.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::process::ChatdProcess;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long a bounded wait for something that must happen may take.
const WAIT: Duration = Duration::from_secs(15);
const TIMESTAMP_LEN: usize = "2025-07-14T10:30:00Z".len();

/// Real Socket.IO clients in one python process, one command at a time.
struct Driver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Driver {
    fn start() -> Driver {
        let script = format!("{}/tests/presence/driver.py", env!("CARGO_MANIFEST_DIR"));
        let mut child = tokio::process::Command::new("python3")
            .arg("-u")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with python-socketio (pip install -r tests/requirements.txt)");
        let stdin = child.stdin.take().expect("stdin");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Driver {
            child,
            stdin,
            lines,
        }
    }

    async fn send(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the driver");
        let answer = tokio::time::timeout(WAIT * 2, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the driver did not answer {command}"))
            .expect("read the driver")
            .unwrap_or_else(|| panic!("the driver exited on {command}"));
        let answer: Value = serde_json::from_str(&answer).expect("a JSON answer");
        assert_eq!(answer["ok"], true, "{command}: {answer}");
        answer
    }

    async fn connect(&mut self, name: &str, url: &str, token: &str) {
        self.send(json!({"op": "connect", "name": name, "url": url, "token": token}))
            .await;
    }

    async fn disconnect(&mut self, name: &str) {
        self.send(json!({"op": "disconnect", "name": name})).await;
    }

    /// The acknowledgement of `event`.
    async fn call(&mut self, name: &str, event: &str, data: Value) -> Value {
        self.send(json!({"op": "call", "name": name, "event": event, "data": data}))
            .await["ack"]
            .take()
    }

    /// The first event `event` on `name`'s socket whose fields equal `fields` (waiting up to
    /// [`WAIT`]).
    async fn expect(&mut self, name: &str, event: &str, fields: Value) -> Value {
        self.send(
            json!({"op": "expect", "name": name, "event": event, "match": fields,
                         "timeout": WAIT.as_secs()}),
        )
        .await["payload"]
            .take()
    }

    /// No (further) such event arrives within `within`.
    async fn expect_none(&mut self, name: &str, event: &str, fields: Value, within: Duration) {
        self.send(
            json!({"op": "expect_none", "name": name, "event": event, "match": fields,
                         "within": within.as_secs_f64()}),
        )
        .await;
    }

    async fn stop(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

/// A user session with an open conversation: (user id, token, conversation id).
async fn user_with_conversation(app: &TestApp) -> (u64, String, u64) {
    let (id, token) = app.session(Role::User, None).await;
    let conversation = open(app, &token).await;
    (id, token, conversation)
}

async fn open(app: &TestApp, token: &str) -> u64 {
    let (status, opened) = app
        .call(
            Method::POST,
            "/api/chat/conversations",
            Some(token),
            Some(&json!({"initial_message": "I need help"})),
        )
        .await;
    assert_eq!(status, 201, "open a conversation: {opened}");
    opened["data"]["conversation_id"].as_u64().expect("an id")
}

async fn conversation(app: &TestApp, token: &str, id: u64) -> Value {
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/chat/conversations/{id}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "conversation {id}: {body}");
    body["data"].clone()
}

/// Waits (bounded) until the conversation's `admin_id` is `admin`.
async fn assigned_to(app: &TestApp, token: &str, id: u64, admin: u64) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let view = conversation(app, token, id).await;
        if view["admin_id"] == admin {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "conversation {id} was not assigned to {admin} within {WAIT:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until presence counts the person online (or not).
async fn until_online(app: &TestApp, role: Role, id: u64, online: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.state.presence.is_online(role, id).await != online {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{role} {id} online should be {online} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Closes conversation `id` over REST.
async fn close(app: &TestApp, token: &str, id: u64) {
    let (code, body) = app
        .call(
            Method::PUT,
            &format!("/api/chat/conversations/{id}/status"),
            Some(token),
            Some(&json!({"status": "closed"})),
        )
        .await;
    assert_eq!(code, 200, "close: {body}");
}

/// Sends `content` to conversation `id` over REST.
async fn send_text(app: &TestApp, token: &str, id: u64, content: &str) {
    let (code, body) = app
        .call(
            Method::POST,
            "/api/chat/messages",
            Some(token),
            Some(&json!({"conversation_id": id, "content": content})),
        )
        .await;
    assert_eq!(code, 201, "{body}");
}

fn is_wire_time(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|t| t.len() == TIMESTAMP_LEN && t.ends_with('Z'))
}

async fn admin_presence(app: &TestApp, token: &str, admin: u64) -> Value {
    let (status, body) = app
        .call(Method::GET, "/api/chat/presence/admins", Some(token), None)
        .await;
    assert_eq!(status, 200, "presence of the admins: {body}");
    body["data"]["admins"]
        .as_array()
        .expect("admins")
        .iter()
        .find(|a| a["admin_id"] == admin)
        .unwrap_or_else(|| panic!("admin {admin} is listed: {body}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_is_online_while_a_socket_is_connected_and_admins_see_each_change_once() {
    for db in TestDb::each().await {
        // The longest heartbeat interval: going offline must not wait for it.
        let app = TestApp::spawn_with(&db, &[("CHAT_PRESENCE_TTL_MS", "30000")]).await;
        let (user, user_token, conversation_id) = user_with_conversation(&app).await;
        let (_, admin_token) = app.session(Role::Admin, None).await;
        let mut sockets = Driver::start();
        sockets.connect("admin", &app.address, &admin_token).await;

        sockets.connect("user", &app.address, &user_token).await;
        let online = sockets
            .expect(
                "admin",
                "presence",
                json!({"user_id": user, "role": "user", "online": true}),
            )
            .await;
        assert!(
            is_wire_time(&online["last_seen_at"]),
            "{}: {online}",
            db.name()
        );
        assert!(
            online.get("away").is_none(),
            "users are never away: {online}"
        );
        assert!(app.state.presence.is_online(Role::User, user).await);
        let listed = conversation(&app, &admin_token, conversation_id).await;
        assert_eq!(listed["user_online"], true, "{}: {listed}", db.name());

        // A second device: the person stays online until their last socket closes.
        sockets
            .connect("user's tablet", &app.address, &user_token)
            .await;
        sockets.disconnect("user").await;
        sockets
            .expect_none(
                "admin",
                "presence",
                json!({"user_id": user}),
                Duration::from_secs(1),
            )
            .await;
        assert!(app.state.presence.is_online(Role::User, user).await);

        sockets.disconnect("user's tablet").await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        while app.state.presence.is_online(Role::User, user).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: offline within a second of the last socket closing",
                db.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let offline = sockets
            .expect(
                "admin",
                "presence",
                json!({"user_id": user, "role": "user", "online": false}),
            )
            .await;
        assert!(
            is_wire_time(&offline["last_seen_at"]),
            "{}: {offline}",
            db.name()
        );
        sockets
            .expect_none(
                "admin",
                "presence",
                json!({"user_id": user}),
                Duration::from_secs(1),
            )
            .await;
        assert!(!app.state.presence.is_online(Role::User, user).await);
        let (status, list) = app
            .call(
                Method::GET,
                "/api/chat/conversations",
                Some(&admin_token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{list}");
        let listed = list["data"]["conversations"]
            .as_array()
            .expect("conversations")
            .iter()
            .find(|c| c["id"] == conversation_id)
            .expect("the conversation is listed")
            .clone();
        assert_eq!(listed["user_online"], false, "{}: {listed}", db.name());
        assert_eq!(
            listed["user_last_seen_at"],
            offline["last_seen_at"],
            "{}: last_seen_at is when the last socket closed",
            db.name()
        );

        sockets.stop().await;
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_set_themselves_away_over_the_socket_and_rest_and_users_are_refused() {
    for db in TestDb::each().await {
        // Without automatic assignment, so that the admins' loads stay as arranged.
        let app = TestApp::spawn_with(&db, &[("CHAT_AUTO_ASSIGN", "off")]).await;
        let (_, user_token, _) = user_with_conversation(&app).await;
        let (away_admin, away_token) = app.session(Role::Admin, None).await;
        let (_, other_token) = app.session(Role::Admin, None).await;
        let (_, auditor_token) = app.session(Role::Auditor, None).await;
        let mut sockets = Driver::start();
        sockets.connect("other", &app.address, &other_token).await;
        sockets.connect("admin", &app.address, &away_token).await;
        sockets.connect("user", &app.address, &user_token).await;
        sockets
            .expect(
                "other",
                "presence",
                json!({"user_id": away_admin, "online": true, "away": false}),
            )
            .await;

        let ack = sockets
            .call("admin", "set_presence", json!({"status": "away"}))
            .await;
        assert_eq!(ack["status"], "success", "{}: {ack}", db.name());
        assert_eq!(ack["data"]["admin_id"], away_admin);
        assert_eq!(ack["data"]["away"], true);
        assert_eq!(ack["data"]["online"], true);
        let changed = sockets
            .expect(
                "other",
                "presence",
                json!({"user_id": away_admin, "role": "admin", "online": true, "away": true}),
            )
            .await;
        assert!(is_wire_time(&changed["last_seen_at"]), "{changed}");
        assert!(
            !app.state
                .presence
                .available_admins()
                .await
                .unwrap()
                .contains(&away_admin)
        );
        // Saying it again changes nothing, and nothing is announced.
        let again = sockets
            .call("admin", "set_presence", json!({"status": "away"}))
            .await;
        assert_eq!(again["data"]["away"], true, "{again}");
        sockets
            .expect_none(
                "other",
                "presence",
                json!({"user_id": away_admin}),
                Duration::from_millis(500),
            )
            .await;

        let (status, body) = app
            .call(
                Method::PUT,
                "/api/chat/presence",
                Some(&away_token),
                Some(&json!({"status": "available"})),
            )
            .await;
        assert_eq!(status, 200, "{}: {body}", db.name());
        assert_eq!(body["data"]["away"], false, "{body}");
        sockets
            .expect(
                "other",
                "presence",
                json!({"user_id": away_admin, "away": false}),
            )
            .await;

        for (token, who) in [(&user_token, "a user"), (&auditor_token, "an auditor")] {
            let (status, body) = app
                .call(
                    Method::PUT,
                    "/api/chat/presence",
                    Some(token),
                    Some(&json!({"status": "away"})),
                )
                .await;
            assert_eq!(status, 403, "{}: {who}: {body}", db.name());
            assert_eq!(body["error_code"], "FORBIDDEN");
        }
        let refused = sockets
            .call("user", "set_presence", json!({"status": "away"}))
            .await;
        assert_eq!(refused["error_code"], "FORBIDDEN", "{refused}");
        let (status, body) = app
            .call(
                Method::PUT,
                "/api/chat/presence",
                Some(&away_token),
                Some(&json!({"status": "asleep"})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error_code"], "VALIDATION_ERROR");
        for bad in [json!({"status": 5}), json!("away"), json!({})] {
            let refused = sockets.call("admin", "set_presence", bad.clone()).await;
            assert_eq!(
                refused["error_code"], "VALIDATION_ERROR",
                "{bad}: {refused}"
            );
        }

        let listed = admin_presence(&app, &auditor_token, away_admin).await;
        assert_eq!(
            (
                &listed["online"],
                &listed["away"],
                &listed["active_conversations"]
            ),
            (&json!(true), &json!(false), &json!(0)),
            "{}: {listed}",
            db.name()
        );
        let (status, _) = app
            .call(
                Method::GET,
                "/api/chat/presence/admins",
                Some(&user_token),
                None,
            )
            .await;
        assert_eq!(status, 403);

        sockets.disconnect("admin").await;
        let offline = sockets
            .expect(
                "other",
                "presence",
                json!({"user_id": away_admin, "online": false}),
            )
            .await;
        let listed = admin_presence(&app, &other_token, away_admin).await;
        assert_eq!(listed["online"], false, "{listed}");
        assert_eq!(listed["last_seen_at"], offline["last_seen_at"], "{listed}");

        sockets.stop().await;
        app.stop().await;
        db.cleanup().await;
    }
}

/// Two chatd processes on MariaDB and Redis: a socket on the second counts on the first, its
/// change reaches an admin on the first once, and when the second is SIGKILLed (no disconnect
/// runs anywhere) its sockets stop counting within the configured TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_nodes_sockets_stop_counting_within_the_ttl_and_admins_are_told_once() {
    let db = TestDb::mysql().await;
    let ttl = [("CHAT_PRESENCE_TTL_MS", "2000")];
    let app = TestApp::spawn_with(&db, &ttl).await;
    let second = ChatdProcess::start(&db, &ttl).await;
    let (user, user_token, _) = user_with_conversation(&app).await;
    let (_, admin_token) = app.session(Role::Admin, None).await;
    let mut sockets = Driver::start();
    sockets.connect("admin", &app.address, &admin_token).await;

    sockets.connect("user", &second.url, &user_token).await;
    sockets
        .expect(
            "admin",
            "presence",
            json!({"user_id": user, "online": true}),
        )
        .await;
    sockets
        .expect_none(
            "admin",
            "presence",
            json!({"user_id": user}),
            Duration::from_secs(1),
        )
        .await;
    assert!(app.state.presence.is_online(Role::User, user).await);

    second.stop();
    let offline = sockets
        .expect(
            "admin",
            "presence",
            json!({"user_id": user, "online": false}),
        )
        .await;
    assert!(is_wire_time(&offline["last_seen_at"]), "{offline}");
    assert!(!app.state.presence.is_online(Role::User, user).await);
    sockets
        .expect_none(
            "admin",
            "presence",
            json!({"user_id": user}),
            Duration::from_secs(1),
        )
        .await;

    sockets.stop().await;
    app.stop().await;
    db.cleanup().await;
}

/// The `ConversationAssigned` events of a conversation, from the audit trail.
async fn assignments_in_the_log(app: &TestApp, token: &str, id: u64) -> Vec<Value> {
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/audit/conversations/{id}/events"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "ConversationAssigned")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_conversations_go_to_the_least_loaded_available_admin_and_wait_when_none_has_room() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_ASSIGN_CAPACITY", "2")]).await;
        let (first, first_token) = app.session(Role::Admin, None).await;
        let (second, second_token) = app.session(Role::Admin, None).await;
        let (third, third_token) = app.session(Role::Admin, None).await;
        assert!(first < second && second < third);
        let mut sockets = Driver::start();
        sockets.connect("first", &app.address, &first_token).await;
        until_online(&app, Role::Admin, first, true).await;

        let (_, _, c1) = user_with_conversation(&app).await;
        assigned_to(&app, &first_token, c1, first).await;
        let announced = sockets
            .expect(
                "first",
                "conversation_assigned",
                json!({"conversation_id": c1, "admin_id": first}),
            )
            .await;
        assert_eq!(
            announced["assigned_by"],
            "system",
            "{}: {announced}",
            db.name()
        );

        sockets.connect("second", &app.address, &second_token).await;
        until_online(&app, Role::Admin, second, true).await;
        let (_, _, c2) = user_with_conversation(&app).await;
        assigned_to(&app, &first_token, c2, second).await;
        // One each: the tie goes to the lower id, then the other is the less loaded.
        let (_, _, c3) = user_with_conversation(&app).await;
        assigned_to(&app, &first_token, c3, first).await;
        let (_, _, c4) = user_with_conversation(&app).await;
        assigned_to(&app, &first_token, c4, second).await;

        // Both at capacity: the next conversation waits, unassigned.
        let (_, _, waiting) = user_with_conversation(&app).await;
        sockets
            .expect_none(
                "first",
                "conversation_assigned",
                json!({"conversation_id": waiting}),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(
            conversation(&app, &first_token, waiting).await["admin_id"],
            Value::Null
        );

        // An admin comes online: the waiting conversation is theirs.
        sockets.connect("third", &app.address, &third_token).await;
        assigned_to(&app, &first_token, waiting, third).await;
        sockets
            .expect(
                "first",
                "conversation_assigned",
                json!({"conversation_id": waiting, "admin_id": third, "assigned_by": "system"}),
            )
            .await;
        let logged = assignments_in_the_log(&app, &first_token, waiting).await;
        assert_eq!(logged.len(), 1, "{}: {logged:?}", db.name());
        assert_eq!(logged[0]["payload"]["admin_id"], third, "{logged:?}");
        assert_eq!(logged[0]["metadata"]["actor_role"], "system", "{logged:?}");
        for (admin, load) in [(first, 2), (second, 2), (third, 1)] {
            let listed = admin_presence(&app, &first_token, admin).await;
            assert_eq!(
                listed["active_conversations"],
                load,
                "{}: {listed}",
                db.name()
            );
        }

        // Presence is not in the log: a replay rebuilds the same tables.
        let before = (
            dump(&db.store, "conversations").await,
            dump(&db.store, "messages").await,
        );
        projections::replay(&db.store, &projections::all_projectors(), 7, |_| {})
            .await
            .expect("replay");
        let after = (
            dump(&db.store, "conversations").await,
            dump(&db.store, "messages").await,
        );
        assert_eq!(before, after, "{}: the replayed tables", db.name());

        sockets.stop().await;
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reopened_conversation_whose_admin_is_away_goes_to_an_available_admin() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (first, first_token) = app.session(Role::Admin, None).await;
        let (second, second_token) = app.session(Role::Admin, None).await;
        let mut sockets = Driver::start();
        sockets.connect("first", &app.address, &first_token).await;
        until_online(&app, Role::Admin, first, true).await;
        let (_, user_token, id) = user_with_conversation(&app).await;
        assigned_to(&app, &first_token, id, first).await;
        close(&app, &first_token, id).await;
        let ack = sockets
            .call("first", "set_presence", json!({"status": "away"}))
            .await;
        assert_eq!(ack["status"], "success", "{ack}");
        sockets.connect("second", &app.address, &second_token).await;
        until_online(&app, Role::Admin, second, true).await;

        // The user writes again: the conversation reopens, and its admin is away.
        send_text(&app, &user_token, id, "me again").await;
        let view = assigned_to(&app, &second_token, id, second).await;
        assert_eq!(view["status"], "active");
        sockets
            .expect(
                "second",
                "conversation_assigned",
                json!({"conversation_id": id, "admin_id": second, "assigned_by": "system"}),
            )
            .await;

        // Reopened while its admin is available: it stays theirs.
        close(&app, &second_token, id).await;
        let ack = sockets
            .call("first", "set_presence", json!({"status": "available"}))
            .await;
        assert_eq!(ack["data"]["away"], false, "{ack}");
        send_text(&app, &user_token, id, "and again").await;
        sockets
            .expect_none(
                "second",
                "conversation_assigned",
                json!({"conversation_id": id}),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(
            conversation(&app, &second_token, id).await["admin_id"],
            second
        );
        assert_eq!(
            assignments_in_the_log(&app, &second_token, id).await.len(),
            2
        );

        sockets.stop().await;
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_automatic_assignment_off_a_new_conversation_stays_unassigned() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_AUTO_ASSIGN", "off")]).await;
        let (admin, admin_token) = app.session(Role::Admin, None).await;
        let mut sockets = Driver::start();
        sockets.connect("admin", &app.address, &admin_token).await;
        until_online(&app, Role::Admin, admin, true).await;

        let (_, _, id) = user_with_conversation(&app).await;
        sockets
            .expect_none(
                "admin",
                "conversation_assigned",
                json!({"conversation_id": id}),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(
            conversation(&app, &admin_token, id).await["admin_id"],
            Value::Null
        );
        assert!(
            assignments_in_the_log(&app, &admin_token, id)
                .await
                .is_empty()
        );

        sockets.stop().await;
        app.stop().await;
        db.cleanup().await;
    }
}

async fn assignment_checkpoint(store: &chatd::store::EventStore) -> u64 {
    let sql = "select position from projector_state where name = 'auto_assignment'";
    let position: Option<i64> = match store {
        chatd::store::EventStore::MySql(s) => {
            sqlx::query_scalar(sql).fetch_optional(s.pool()).await
        }
        chatd::store::EventStore::Sqlite(s) => {
            sqlx::query_scalar(sql).fetch_optional(s.pool()).await
        }
    }
    .expect(sql);
    position.unwrap_or(0) as u64
}

/// Waits (bounded) until automatic assignment has decided everything in the log.
async fn assignment_caught_up(db: &TestDb) {
    let head = db.store.head_position().await.expect("head");
    let deadline = tokio::time::Instant::now() + WAIT;
    while assignment_checkpoint(&db.store).await < head {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: automatic assignment did not reach {head} within {WAIT:?}",
            db.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_decided_again_after_a_crash_assign_nothing_twice() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (first, first_token) = app.session(Role::Admin, None).await;
        let mut sockets = Driver::start();
        sockets.connect("first", &app.address, &first_token).await;
        until_online(&app, Role::Admin, first, true).await;
        let (_, _, id) = user_with_conversation(&app).await;
        assigned_to(&app, &first_token, id, first).await;
        assignment_caught_up(&db).await;
        sockets.stop().await;
        app.stop().await;

        // As if the node had died after assigning and before its checkpoint moved: the next
        // node sees every event again, with another admin available and less loaded.
        execute(
            &db.store,
            "update projector_state set position = 0 where name = 'auto_assignment'",
        )
        .await;
        let app = TestApp::spawn(&db).await;
        let (second, second_token) = app.session(Role::Admin, None).await;
        let mut sockets = Driver::start();
        sockets.connect("second", &app.address, &second_token).await;
        until_online(&app, Role::Admin, second, true).await;
        assignment_caught_up(&db).await;

        assert_eq!(
            conversation(&app, &second_token, id).await["admin_id"],
            first,
            "{}",
            db.name()
        );
        let logged = assignments_in_the_log(&app, &second_token, id).await;
        assert_eq!(logged.len(), 1, "{}: {logged:?}", db.name());

        sockets.stop().await;
        app.stop().await;
        db.cleanup().await;
    }
}

/// An import into a serving node brings history whose assignment the old system decided: an
/// imported unassigned conversation is left as it was, with an admin available, while one
/// opened after the import is assigned; chatd's own ids continue above the legacy ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_imported_conversation_is_not_assigned_automatically() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (admin, admin_token) = app.session(Role::Admin, None).await;
        let mut sockets = Driver::start();
        sockets.connect("admin", &app.address, &admin_token).await;
        until_online(&app, Role::Admin, admin, true).await;

        let legacy = legacy::LegacyDb::create().await;
        legacy
            .execute("insert into users (id, identifier) values (5001, 'user_uuid_5001')")
            .await;
        legacy
            .execute(
                "insert into conversations (id, user_id, admin_id, status, created_at, \
                 updated_at) values (900, 5001, null, 'active', now() - interval 1 minute, now())",
            )
            .await;
        legacy
            .execute(
                "insert into messages (id, conversation_id, user_id, sender_role, content, \
                 timestamp) values (70000, 900, 5001, 'user', 'where is my order?', now())",
            )
            .await;
        let imported = legacy::import(&db, &["--from", &legacy.url]);
        assert!(imported.status.success(), "{}: {imported:?}", db.name());
        assignment_caught_up(&db).await;
        let view = conversation(&app, &admin_token, 900).await;
        assert_eq!(view["admin_id"], Value::Null, "{}: {view}", db.name());
        assert_eq!(view["status"], "active", "{}", db.name());

        let (_, _, id) = user_with_conversation(&app).await;
        assert!(id > 900, "{}: new conversation {id}", db.name());
        assigned_to(&app, &admin_token, id, admin).await;

        sockets.stop().await;
        app.stop().await;
        legacy.drop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_conversation_goes_to_an_admin_who_becomes_available() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (admin, admin_token) = app.session(Role::Admin, None).await;
        let mut sockets = Driver::start();
        sockets.connect("admin", &app.address, &admin_token).await;
        let ack = sockets
            .call("admin", "set_presence", json!({"status": "away"}))
            .await;
        assert_eq!(ack["data"]["away"], true, "{ack}");

        let (_, _, id) = user_with_conversation(&app).await;
        sockets
            .expect_none(
                "admin",
                "conversation_assigned",
                json!({"conversation_id": id}),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(
            conversation(&app, &admin_token, id).await["admin_id"],
            Value::Null
        );

        let (status, body) = app
            .call(
                Method::PUT,
                "/api/chat/presence",
                Some(&admin_token),
                Some(&json!({"status": "available"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assigned_to(&app, &admin_token, id, admin).await;

        sockets.stop().await;
        app.stop().await;
        db.cleanup().await;
    }
}

/// Both nodes run the follower; one decides, so each conversation is assigned once, also when
/// the admin's socket is on the other node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_assign_each_new_conversation_once() {
    let db = TestDb::mysql().await;
    let app = TestApp::spawn(&db).await;
    let second = ChatdProcess::start(&db, &[]).await;
    let (admin, admin_token) = app.session(Role::Admin, None).await;
    let mut sockets = Driver::start();
    sockets.connect("admin", &second.url, &admin_token).await;
    until_online(&app, Role::Admin, admin, true).await;

    let mut opened = Vec::new();
    for _ in 0..3 {
        opened.push(user_with_conversation(&app).await.2);
    }
    for id in opened {
        assigned_to(&app, &admin_token, id, admin).await;
        sockets
            .expect(
                "admin",
                "conversation_assigned",
                json!({"conversation_id": id, "assigned_by": "system"}),
            )
            .await;
        assignment_caught_up(&db).await;
        let logged = assignments_in_the_log(&app, &admin_token, id).await;
        assert_eq!(logged.len(), 1, "conversation {id}: {logged:?}");
    }

    sockets.stop().await;
    second.stop();
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reopened_conversation_whose_admin_is_away_waits_for_the_next_available_admin() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (first, first_token) = app.session(Role::Admin, None).await;
        let (second, second_token) = app.session(Role::Admin, None).await;
        let mut sockets = Driver::start();
        sockets.connect("first", &app.address, &first_token).await;
        until_online(&app, Role::Admin, first, true).await;
        let (_, user_token, id) = user_with_conversation(&app).await;
        assigned_to(&app, &first_token, id, first).await;
        close(&app, &first_token, id).await;
        let ack = sockets
            .call("first", "set_presence", json!({"status": "away"}))
            .await;
        assert_eq!(ack["data"]["away"], true, "{ack}");

        // Reopened with its admin away and nobody else: it keeps its admin and waits.
        send_text(&app, &user_token, id, "hello again").await;
        sockets
            .expect_none(
                "first",
                "conversation_assigned",
                json!({"conversation_id": id, "admin_id": second}),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(
            conversation(&app, &first_token, id).await["admin_id"],
            first
        );

        // Another admin comes online: the waiting conversation is theirs.
        sockets.connect("second", &app.address, &second_token).await;
        assigned_to(&app, &second_token, id, second).await;
        let logged = assignments_in_the_log(&app, &second_token, id).await;
        assert_eq!(logged.len(), 2, "{}: {logged:?}", db.name());
        assert_eq!(logged[1]["metadata"]["actor_role"], "system");

        sockets.stop().await;
        app.stop().await;
        db.cleanup().await;
    }
}
