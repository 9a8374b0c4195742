//! The audit trail on both back ends: what admin actions record, the audit routes (event stream,
//! state as of an instant, chain verification), `chatd audit verify` and `export` as the real
//! binary, tampered logs, and the auditor's read-only role on every write route.

use crate::support;

use std::process::Command;

use chatd::store::{CONVERSATION_STREAM, EventStore, StoredEvent};
use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

fn chatd(db: &TestDb, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .env("CHAT_DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run chatd")
}

enum Bind {
    Int(i64),
    Text(String),
}

/// Runs a statement straight on the events table, behind the store's back.
async fn tamper(db: &TestDb, sql: &str, binds: &[Bind]) {
    macro_rules! run {
        ($pool:expr) => {{
            let mut query = sqlx::query(sql);
            for bind in binds {
                query = match bind {
                    Bind::Int(v) => query.bind(*v),
                    Bind::Text(v) => query.bind(v.clone()),
                };
            }
            let done = query.execute($pool).await.expect("tamper");
            assert!(done.rows_affected() > 0, "{sql} changed nothing");
        }};
    }
    match &db.store {
        EventStore::MySql(s) => run!(s.pool()),
        EventStore::Sqlite(s) => run!(s.pool()),
    }
}

async fn stream(db: &TestDb, conversation: u64) -> Vec<StoredEvent> {
    db.store
        .read_stream(CONVERSATION_STREAM, &conversation.to_string(), 0)
        .await
        .expect("read stream")
}

/// Conversation A with five events (opened, four messages), then conversation B with two.
async fn two_conversations(db: &TestDb) -> (u64, u64) {
    let bus = db.commands().await;
    let a = open_with(&bus, &user(1), "hello there")
        .await
        .conversation_id;
    for n in 0..3 {
        open_with(&bus, &user(1), &format!("more {n}")).await;
    }
    let b = open_with(&bus, &user(2), "other").await.conversation_id;
    (a, b)
}

/// `chatd audit verify` and GET /api/audit/verify on the same log: (exit ok, stdout, data).
async fn verify_both(db: &TestDb) -> (bool, String, Value) {
    let output = chatd(db, &["audit", "verify"]);
    let app = TestApp::spawn(db).await;
    let (_, auditor) = app.session(Role::Auditor, None).await;
    let (status, body) = app
        .call(Method::GET, "/api/audit/verify", Some(&auditor), None)
        .await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        body["data"].clone(),
    )
}

fn assert_names(db: &TestDb, found: &(bool, String, Value), conversation: u64, sequence: u64) {
    let (ok, stdout, data) = found;
    assert!(!ok, "{}: verify exits non-zero", db.name());
    assert!(
        stdout.contains(&format!(
            "stream conversation/{conversation} sequence {sequence}"
        )),
        "{}: {stdout}",
        db.name()
    );
    assert_eq!(data["holds"], json!(false), "{}: {data}", db.name());
    assert_eq!(
        data["broken"]["stream_id"],
        json!(conversation.to_string()),
        "{}: {data}",
        db.name()
    );
    assert_eq!(
        data["broken"]["sequence"],
        json!(sequence),
        "{}: {data}",
        db.name()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intact_log_verifies_from_the_cli_and_the_api() {
    for db in TestDb::each().await {
        two_conversations(&db).await;

        let (ok, stdout, data) = verify_both(&db).await;

        assert!(ok, "{}: {stdout}", db.name());
        assert!(stdout.contains("7 events checked"), "{stdout}");
        assert_eq!(data["holds"], json!(true), "{data}");
        assert_eq!(data["checked"], json!(7));
        assert_eq!(data["broken"], Value::Null);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_byte_of_a_payload_is_named_by_stream_and_sequence() {
    for db in TestDb::each().await {
        let (a, _) = two_conversations(&db).await;
        let target = &stream(&db, a).await[1];
        tamper(
            &db,
            "update events set payload = replace(payload, '\"text\"', '\"file\"') where position = ?",
            &[Bind::Int(target.position as i64)],
        )
        .await;

        let found = verify_both(&db).await;

        assert_names(&db, &found, a, 2);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_event_is_named_by_stream_and_the_sequence_after_the_gap() {
    for db in TestDb::each().await {
        let (a, _) = two_conversations(&db).await;
        let target = &stream(&db, a).await[2];
        tamper(
            &db,
            "delete from events where position = ?",
            &[Bind::Int(target.position as i64)],
        )
        .await;

        let found = verify_both(&db).await;

        assert_names(&db, &found, a, 4);
        assert!(found.1.contains("sequence 4 follows 2"), "{}", found.1);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_swapped_events_are_named_by_stream_and_sequence() {
    for db in TestDb::each().await {
        let (a, _) = two_conversations(&db).await;
        let events = stream(&db, a).await;
        // The rows trade places: each keeps its position and sequence, takes the other's content.
        let sql = "update events set event_type = ?, event_version = ?, payload = ?, metadata = ?, \
                   recorded_at = ?, hash = ? where position = ?";
        for (from, to) in [(&events[1], &events[2]), (&events[2], &events[1])] {
            tamper(
                &db,
                sql,
                &[
                    Bind::Text(from.event_type.clone()),
                    Bind::Text(from.event_version.clone()),
                    Bind::Text(from.payload.clone()),
                    Bind::Text(from.metadata.clone()),
                    Bind::Int(from.recorded_at_micros),
                    Bind::Text(from.hash.clone()),
                    Bind::Int(to.position as i64),
                ],
            )
            .await;
        }

        let found = verify_both(&db).await;

        assert_names(&db, &found, a, 2);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_events_trading_sequence_numbers_are_named_by_stream_and_sequence() {
    for db in TestDb::each().await {
        let (a, _) = two_conversations(&db).await;
        let events = stream(&db, a).await;
        let set = "update events set sequence = ? where position = ?";
        let (second, third) = (events[1].position as i64, events[2].position as i64);
        tamper(&db, set, &[Bind::Int(1000), Bind::Int(second)]).await;
        tamper(&db, set, &[Bind::Int(2), Bind::Int(third)]).await;
        tamper(&db, set, &[Bind::Int(3), Bind::Int(second)]).await;

        let found = verify_both(&db).await;

        // In position order the stream now reads 1, 3, 2, ...
        assert_names(&db, &found, a, 3);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_last_event_of_a_stream_shows_as_a_gap_in_positions() {
    for db in TestDb::each().await {
        let (a, b) = two_conversations(&db).await;
        // B's last event is the newest of the log (the sequencer's head shows it missing); A's
        // last event has B's after it (a hole in the positions), and is the first gap then.
        for (conversation, index) in [(b, 1), (a, 4)] {
            let target = &stream(&db, conversation).await[index];
            tamper(
                &db,
                "delete from events where position = ?",
                &[Bind::Int(target.position as i64)],
            )
            .await;

            let (ok, stdout, data) = verify_both(&db).await;

            assert!(!ok, "{}", db.name());
            assert!(
                stdout.contains(&format!("position {}", target.position)),
                "{}: {stdout}",
                db.name()
            );
            assert_eq!(data["holds"], json!(false), "{data}");
            assert_eq!(data["broken"]["position"], json!(target.position), "{data}");
        }
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_prints_one_json_object_per_event() {
    for db in TestDb::each().await {
        let (a, _) = two_conversations(&db).await;

        let output = chatd(&db, &["audit", "export", "--conversation", &a.to_string()]);
        let unknown = chatd(&db, &["audit", "export", "--conversation", "999999"]);

        assert!(output.status.success(), "{}", db.name());
        let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0]["type"], json!("ConversationOpened"));
        assert_eq!(lines[4]["sequence"], json!(5));
        assert_eq!(lines[1]["metadata"]["actor_role"], json!("user"));
        assert!(!unknown.status.success());
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_action_records_the_actor_request_id_and_remote_address() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (admin_id, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            let (_, user) = app.session(Role::User, None).await;
            let (status, body) = app
                .call(
                    Method::POST,
                    "/api/chat/conversations",
                    Some(&user),
                    Some(&json!({"initial_message": "hello"})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            ids.push(body["data"]["conversation_id"].as_u64().unwrap());
        }
        let admin_call = |method: Method, path: String, body: Value, request_id: &'static str| {
            app.signed(method, &path, Some(&admin), Some(&body))
                .header("X-Request-Id", request_id)
                .send()
        };

        let assign = admin_call(
            Method::PUT,
            format!("/api/chat/conversations/{}/assign", ids[0]),
            json!({"admin_id": admin_id}),
            "req-assign",
        )
        .await
        .unwrap();
        let close = admin_call(
            Method::PUT,
            format!("/api/chat/conversations/{}/status", ids[0]),
            json!({"status": "closed"}),
            "req-status",
        )
        .await
        .unwrap();
        let bulk = admin_call(
            Method::POST,
            "/api/chat/conversations/bulk".into(),
            json!({"conversation_ids": [ids[1], ids[2]], "action": "archive"}),
            "req-bulk",
        )
        .await
        .unwrap();

        assert_eq!(
            (
                assign.status().as_u16(),
                close.status().as_u16(),
                bulk.status().as_u16()
            ),
            (200, 200, 200),
            "{}",
            db.name()
        );
        let expected = [
            (ids[0], "ConversationAssigned", "req-assign"),
            (ids[0], "ConversationClosed", "req-status"),
            (ids[1], "ConversationArchived", "req-bulk"),
            (ids[2], "ConversationArchived", "req-bulk"),
        ];
        for (conversation, event_type, request_id) in expected {
            let events = stream(&db, conversation).await;
            let event = events
                .iter()
                .find(|e| e.event_type == event_type)
                .unwrap_or_else(|| panic!("{}: no {event_type} in {conversation}", db.name()));
            let metadata = event.decode_metadata().unwrap();
            assert_eq!(metadata.actor_id, admin_id, "{event_type}");
            assert_eq!(metadata.actor_role, "admin", "{event_type}");
            // The client's X-Request-Id is kept as its own, beside the server's id.
            assert_eq!(metadata.client_request_id.as_deref(), Some(request_id));
            let server_id = metadata.request_id.clone().unwrap_or_default();
            assert!(
                server_id.len() == 32 && server_id.chars().all(|c| c.is_ascii_hexdigit()),
                "{event_type}: the server's own request id, not the client's: {server_id:?}"
            );
            assert_eq!(metadata.remote_addr.as_deref(), Some("127.0.0.1"));

            // The audit route shows the same metadata.
            let (status, body) = app
                .call(
                    Method::GET,
                    &format!("/api/audit/conversations/{conversation}/events"),
                    Some(&auditor),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let shown = body["data"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["type"] == json!(event_type))
                .cloned()
                .unwrap();
            assert_eq!(shown["metadata"]["actor_id"], json!(admin_id));
            assert_eq!(shown["metadata"]["request_id"], json!(server_id));
            assert_eq!(shown["metadata"]["client_request_id"], json!(request_id));
            assert_eq!(shown["metadata"]["remote_addr"], json!("127.0.0.1"));
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_pages_in_sequence_order_within_bounds() {
    for db in TestDb::each().await {
        let (a, _) = two_conversations(&db).await;
        let app = TestApp::spawn(&db).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let (_, user) = app.session(Role::User, Some(1)).await;
        let page = |query: String, token: String| {
            let app = &app;
            async move {
                app.call(
                    Method::GET,
                    &format!("/api/audit/conversations/{a}/events{query}"),
                    Some(&token),
                    None,
                )
                .await
            }
        };

        let (s1, first) = page("?limit=2".into(), auditor.clone()).await;
        let (s2, second) = page("?after_sequence=2&limit=2".into(), admin.clone()).await;
        let (s3, last) = page("?after_sequence=4".into(), auditor.clone()).await;
        let (s4, beyond) = page("?after_sequence=100".into(), auditor.clone()).await;

        assert_eq!((s1, s2, s3, s4), (200, 200, 200, 200), "{}", db.name());
        let sequences = |body: &Value| -> Vec<u64> {
            body["data"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["sequence"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(sequences(&first), vec![1, 2]);
        assert_eq!(first["data"]["has_more"], json!(true));
        assert_eq!(first["data"]["next_after_sequence"], json!(2));
        assert_eq!(sequences(&second), vec![3, 4]);
        assert_eq!(sequences(&last), vec![5]);
        assert_eq!(last["data"]["has_more"], json!(false));
        assert_eq!(sequences(&beyond), Vec::<u64>::new());
        let event = &first["data"]["events"][1];
        assert_eq!(event["type"], json!("MessageSent"));
        assert_eq!(event["version"], json!("2"));
        assert_eq!(event["payload"]["content"], json!("hello there"));
        assert_eq!(event["metadata"]["actor_role"], json!("user"));
        assert_eq!(event["hash"].as_str().unwrap().len(), 64);
        assert!(event["position"].as_u64().unwrap() >= 2);
        let micros = event["recorded_at_micros"].as_i64().unwrap();
        let shown =
            chrono::DateTime::parse_from_rfc3339(event["recorded_at"].as_str().unwrap()).unwrap();
        assert_eq!(shown.timestamp(), micros.div_euclid(1_000_000));

        for (query, code, status) in [
            ("?limit=0", "VALIDATION_ERROR", 400),
            ("?limit=1001", "VALIDATION_ERROR", 400),
            ("?after_sequence=x", "VALIDATION_ERROR", 400),
        ] {
            let (got, body) = page(query.into(), auditor.clone()).await;
            assert_eq!((got, body["error_code"].as_str()), (status, Some(code)));
        }
        let (status, body) = page(String::new(), user.clone()).await;
        assert_eq!(status, 403);
        assert_eq!(body["status"], json!("error"));
        assert_eq!(body["error_code"], json!("FORBIDDEN"));
        let (status, body) = app
            .call(
                Method::GET,
                "/api/audit/conversations/999999/events",
                Some(&auditor),
                None,
            )
            .await;
        assert_eq!(
            (status, body["error_code"].clone()),
            (404, json!("NOT_FOUND"))
        );
        app.stop().await;
        db.cleanup().await;
    }
}

fn rfc3339_micros(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_as_of_an_instant_is_the_conversation_as_it_stood_then() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (admin_id, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let (_, user) = app.session(Role::User, None).await;
        let (_, opened) = app
            .call(
                Method::POST,
                "/api/chat/conversations",
                Some(&user),
                Some(&json!({"initial_message": "first"})),
            )
            .await;
        let id = opened["data"]["conversation_id"].as_u64().unwrap();
        let message_id = opened["data"]["message"]["id"].as_u64().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        for (method, path, body, token) in [
            (
                Method::PUT,
                format!("/api/chat/conversations/{id}/read"),
                json!({"message_ids": [message_id]}),
                &admin,
            ),
            (
                Method::PUT,
                format!("/api/chat/conversations/{id}/assign"),
                json!({"admin_id": admin_id}),
                &admin,
            ),
            (
                Method::PUT,
                format!("/api/chat/conversations/{id}/status"),
                json!({"status": "closed"}),
                &admin,
            ),
            (
                Method::POST,
                format!("/api/chat/conversations/{id}/feedback"),
                json!({"rating": 4, "comment": "quick"}),
                &user,
            ),
        ] {
            let (status, body) = app.call(method, &path, Some(token), Some(&body)).await;
            assert!(status == 200 || status == 201, "{path}: {body}");
        }
        let events = stream(&db, id).await;
        let opened_at = events[0].recorded_at_micros;
        let sent_at = events[1].recorded_at_micros;
        let state = |query: String| {
            let app = &app;
            let auditor = auditor.clone();
            async move {
                app.call(
                    Method::GET,
                    &format!("/api/audit/conversations/{id}/state{query}"),
                    Some(&auditor),
                    None,
                )
                .await
            }
        };

        let (s1, then) = state(format!("?as_of={}", rfc3339_micros(sent_at))).await;
        let (s2, now) = state(String::new()).await;
        let (s3, before) = state(format!("?as_of={}", rfc3339_micros(opened_at - 1))).await;
        let (s4, garbage) = state("?as_of=yesterday".into()).await;

        assert_eq!((s1, s2, s3, s4), (200, 200, 404, 400), "{}", db.name());
        let then = &then["data"];
        assert_eq!(then["status"], json!("active"));
        assert_eq!(then["admin_id"], Value::Null);
        assert_eq!(then["feedback"], Value::Null);
        assert_eq!(then["messages"][0]["content"], json!("first"));
        assert_eq!(then["messages"][0]["is_read"], json!(false));
        let now = &now["data"];
        assert_eq!(now["status"], json!("closed"));
        assert_eq!(now["admin_id"], json!(admin_id));
        assert_eq!(now["feedback"], json!({"rating": 4, "comment": "quick"}));
        assert_eq!(now["messages"][0]["is_read"], json!(true));
        assert_eq!(now["sequence"], json!(events.len()));
        assert_eq!(before["error_code"], json!("NOT_FOUND"));
        assert_eq!(garbage["error_code"], json!("VALIDATION_ERROR"));
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_may_not_use_the_audit_routes_and_strangers_are_unauthorized() {
    for db in TestDb::each().await {
        let (a, _) = two_conversations(&db).await;
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, Some(1)).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let paths = [
            format!("/api/audit/conversations/{a}/events"),
            format!("/api/audit/conversations/{a}/state"),
            "/api/audit/verify".to_string(),
        ];
        for path in &paths {
            let (as_user, body) = app.call(Method::GET, path, Some(&user), None).await;
            let (as_admin, _) = app.call(Method::GET, path, Some(&admin), None).await;
            let (anonymous, _) = app.call(Method::GET, path, None, None).await;
            let unsigned = app
                .client
                .get(format!("{}{path}", app.address))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();

            assert_eq!(
                (as_user, as_admin, anonymous, unsigned),
                (403, 200, 401, 401),
                "{}: {path}",
                db.name()
            );
            assert_eq!(body["status"], json!("error"));
            assert_eq!(body["error_code"], json!("FORBIDDEN"));
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_is_refused_on_every_write_route_and_nothing_is_written() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let (_, user) = app.session(Role::User, None).await;
        let (_, opened) = app
            .call(
                Method::POST,
                "/api/chat/conversations",
                Some(&user),
                Some(&json!({"initial_message": "hello"})),
            )
            .await;
        let id = opened["data"]["conversation_id"].as_u64().unwrap();
        let message_id = opened["data"]["message"]["id"].as_u64().unwrap();
        let head = app.state_store().head_position().await.unwrap();
        let c = format!("/api/chat/conversations/{id}");
        let writes = [
            (
                Method::POST,
                "/api/chat/messages".to_string(),
                json!({"conversation_id": id, "message": "x"}),
            ),
            (
                Method::POST,
                "/api/chat/messages".to_string(),
                json!({"message": "x"}),
            ),
            (
                Method::POST,
                "/api/chat/conversations".to_string(),
                json!({"initial_message": "x"}),
            ),
            (
                Method::POST,
                "/api/chat/conversations/bulk".to_string(),
                json!({"conversation_ids": [id], "action": "close"}),
            ),
            (
                Method::POST,
                "/api/chat/conversations/bulk".to_string(),
                json!({"conversation_ids": [id], "action": "assign", "admin_id": 7}),
            ),
            (
                Method::PUT,
                format!("{c}/read"),
                json!({"message_ids": [message_id]}),
            ),
            (Method::PUT, format!("{c}/assign"), json!({"admin_id": 7})),
            (
                Method::PUT,
                format!("{c}/status"),
                json!({"status": "closed"}),
            ),
            (
                Method::PUT,
                format!("{c}/status"),
                json!({"status": "archived"}),
            ),
            (Method::POST, format!("{c}/feedback"), json!({"rating": 5})),
            (Method::POST, format!("{c}/typing"), json!({"typing": true})),
        ];
        for (method, path, body) in writes {
            let (status, answer) = app
                .call(method.clone(), &path, Some(&auditor), Some(&body))
                .await;
            assert_eq!(
                (
                    status,
                    answer["status"].as_str(),
                    answer["error_code"].as_str()
                ),
                (403, Some("error"), Some("FORBIDDEN")),
                "{}: {method} {path}: {answer}",
                db.name()
            );
        }
        // The upload, signed over its raw multipart bytes.
        let boundary = "audit-boundary-0123456789";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"conversation_id\"\r\n\r\n{id}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"message_type\"\r\n\r\nfile\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
             Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
        );
        let timestamp = chrono::Utc::now().timestamp_millis();
        let signature = chatd::auth::sign(
            APP_SECRET,
            timestamp,
            "POST",
            "/api/chat/upload",
            body.as_bytes(),
        );
        let upload = app
            .client
            .post(format!("{}/api/chat/upload", app.address))
            .header("X-Timestamp", timestamp.to_string())
            .header("X-Signature", signature)
            .bearer_auth(&auditor)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        let upload_status = upload.status().as_u16();
        let upload_body: Value = upload.json().await.unwrap_or(Value::Null);

        assert_eq!(upload_status, 403, "{}: {upload_body}", db.name());
        assert_eq!(upload_body["error_code"], json!("FORBIDDEN"));
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

#[tokio::test]
async fn x_forwarded_for_names_the_client_only_when_a_trusted_proxy_sent_it() {
    for db in TestDb::each().await {
        for (trusted, recorded) in [(None, "127.0.0.1"), (Some("127.0.0.1"), "203.0.113.9")] {
            let settings: Vec<(&str, &str)> = trusted
                .map(|proxies| ("CHAT_TRUSTED_PROXIES", proxies))
                .into_iter()
                .collect();
            let app = TestApp::spawn_with(&db, &settings).await;
            let (_, user) = app.session(Role::User, None).await;
            let body = json!({"initial_message": "hello"});
            let response = app
                .signed(
                    Method::POST,
                    "/api/chat/conversations",
                    Some(&user),
                    Some(&body),
                )
                // What the client claims, then what the proxy saw.
                .header("X-Forwarded-For", "198.51.100.66, 203.0.113.9")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201, "{}", db.name());
            let opened: Value = response.json().await.unwrap();
            let conversation = opened["data"]["conversation_id"].as_u64().unwrap();

            let events = stream(&db, conversation).await;
            let metadata = events[0].decode_metadata().unwrap();
            assert_eq!(
                metadata.remote_addr.as_deref(),
                Some(recorded),
                "{}: trusted proxies {trusted:?}",
                db.name()
            );
            app.stop().await;
        }
        db.cleanup().await;
    }
}
