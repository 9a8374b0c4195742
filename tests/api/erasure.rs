//! Erasing a person (POST /api/chat/admin/erasures and `chatd erase`) on both back ends, through
//! real HTTP and the real binary: afterwards their text is nowhere in the database or the upload
//! directory, every view shows it erased, the hash chains still verify, a replay keeps it erased,
//! and erasing again changes nothing.

use crate::support;
use crate::uploads::upload_ok;

use std::path::Path;
use std::process::Command;

use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

const SECRET: &str = "my passport number is X9931475, Ms. Zhou 周小姐";
const SECRET_PARTS: [&str; 4] = ["X9931475", "Zhou", "周小姐", "passport"];
const SECRET_FILE: &[u8] = b"scan of the passport X9931475";
const SECRET_FILE_NAME: &str = "passport-of-zhou.txt";
const SECRET_COMMENT: &str = "Zhou thanks you";

/// Every row of every table of the database, as text: (table, row).
async fn every_row(db: &TestDb) -> Vec<(String, String)> {
    use sqlx::Row;
    let tables_sql = match db.store {
        chatd::store::EventStore::MySql(_) => {
            "select table_name from information_schema.tables where table_schema = database()"
        }
        chatd::store::EventStore::Sqlite(_) => {
            "select name from sqlite_master where type = 'table'"
        }
    };
    macro_rules! rows {
        ($pool:expr) => {{
            let tables: Vec<String> = sqlx::query(tables_sql)
                .fetch_all($pool)
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    row.try_get::<String, _>(0)
                        .or_else(|_| {
                            row.try_get::<Vec<u8>, _>(0)
                                .map(|b| String::from_utf8_lossy(&b).into_owned())
                        })
                        .unwrap()
                })
                .collect();
            let mut all = Vec::new();
            for table in tables {
                for row in sqlx::query(&format!("select * from {table}"))
                    .fetch_all($pool)
                    .await
                    .unwrap()
                {
                    let text = (0..row.len())
                        .map(|i| {
                            row.try_get::<Option<String>, _>(i)
                                .ok()
                                .flatten()
                                .or_else(|| {
                                    row.try_get::<Option<Vec<u8>>, _>(i)
                                        .ok()
                                        .flatten()
                                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                                })
                                .unwrap_or_default()
                        })
                        .collect::<Vec<_>>()
                        .join("|");
                    all.push((table.clone(), text));
                }
            }
            all
        }};
    }
    match &db.store {
        chatd::store::EventStore::MySql(s) => rows!(s.pool()),
        chatd::store::EventStore::Sqlite(s) => rows!(s.pool()),
    }
}

fn chatd(db: &TestDb, data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_DATA_DIR", data_dir)
        .output()
        .expect("run chatd")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The tables a replay rebuilds, as rows.
async fn read_tables(db: &TestDb) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    for table in [
        "conversations",
        "conversations_archive",
        "messages",
        "messages_archive",
        "files",
    ] {
        tables.push(dump(&db.store, table).await);
    }
    tables
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_person_is_nowhere_in_the_database_or_the_files_and_every_view_says_so() {
    for db in TestDb::each().await {
        let data_dir = std::env::temp_dir().join(format!("chatd-erasure-{}", fresh_id()));
        let dir = data_dir.display().to_string();
        let app = TestApp::spawn_with(&db, &[("CHAT_DATA_DIR", &dir)]).await;
        let (user_id, user) = app.session(Role::User, None).await;
        let (_, other) = app.session(Role::User, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let post = |token: &str, body: Value| {
            let token = token.to_string();
            let app = &app;
            async move {
                app.call(
                    Method::POST,
                    "/api/chat/messages",
                    Some(&token),
                    Some(&body),
                )
                .await
            }
        };

        // A push device, then conversation A: text, a file, an admin's reply (pushed), then
        // closed with feedback.
        let device =
            json!({"platform": "ios", "provider": "apns", "token": format!("device{user_id}")});
        let (status, _) = app
            .call(
                Method::POST,
                "/api/chat/devices",
                Some(&user),
                Some(&device),
            )
            .await;
        assert!(
            status == 200 || status == 201,
            "{}: device {status}",
            db.name()
        );
        let (status, opened) = post(&user, json!({"message": SECRET, "user_id": user_id})).await;
        assert_eq!(status, 201, "{}: {opened}", db.name());
        let a = opened["data"]["conversation_id"].as_u64().unwrap();
        let file = upload_ok(
            &app,
            &user,
            a,
            "file",
            SECRET_FILE_NAME,
            SECRET_FILE.to_vec(),
        )
        .await;
        let (status, _) = post(
            &user,
            json!({"conversation_id": a, "message_type": "file", "content": "", "file_id": file["file_id"]}),
        )
        .await;
        assert_eq!(status, 201);
        let (status, _) = post(
            &admin,
            json!({"conversation_id": a, "content": "Zhou, we are on it"}),
        )
        .await;
        assert_eq!(status, 201);
        let (status, _) = app
            .call(
                Method::PUT,
                &format!("/api/chat/conversations/{a}/status"),
                Some(&admin),
                Some(&json!({"status": "closed"})),
            )
            .await;
        assert_eq!(status, 200);
        let (status, _) = app
            .call(
                Method::POST,
                &format!("/api/chat/conversations/{a}/feedback"),
                Some(&user),
                Some(&json!({"rating": 5, "comment": SECRET_COMMENT})),
            )
            .await;
        assert_eq!(status, 201);
        // Conversation B, still active; and someone else, who stays.
        let (status, second) =
            post(&user, json!({"message": "Zhou again", "user_id": user_id})).await;
        assert_eq!(status, 201, "{second}");
        let b = second["data"]["conversation_id"].as_u64().unwrap();
        // An edit's text is theirs too.
        let (status, edited) = app
            .call(
                Method::PATCH,
                &format!("/api/chat/messages/{}", second["data"]["id"]),
                Some(&user),
                Some(&json!({"message": "Zhou again, passport X9931475"})),
            )
            .await;
        assert_eq!(status, 200, "{edited}");
        let (status, kept) = post(&other, json!({"message": "my own words stay"})).await;
        assert_eq!(status, 201, "{kept}");
        assert!(
            files_under(&data_dir)
                .iter()
                .any(|(_, bytes)| bytes == SECRET_FILE)
        );

        // Refusals first: only an admin, a reason, a known person.
        let erase = |token: &str, body: Value| {
            let token = token.to_string();
            let app = &app;
            async move {
                app.call(
                    Method::POST,
                    "/api/chat/admin/erasures",
                    Some(&token),
                    Some(&body),
                )
                .await
            }
        };
        let request = json!({"user_id": user_id, "reason": "request #42 under GDPR article 17"});
        assert_eq!(erase(&user, request.clone()).await.0, 403);
        assert_eq!(erase(&auditor, request.clone()).await.0, 403);
        let (status, refused) = erase(&admin, json!({"user_id": user_id, "reason": "  "})).await;
        assert_eq!(
            (status, refused["error_code"].as_str()),
            (400, Some("VALIDATION_ERROR"))
        );
        let (status, unknown) = erase(&admin, json!({"user_id": 987_654_321, "reason": "x"})).await;
        assert_eq!(
            (status, unknown["error_code"].as_str()),
            (404, Some("NOT_FOUND")),
            "{unknown}"
        );

        let (status, erased) = erase(&admin, request.clone()).await;
        assert_eq!(status, 200, "{}: {erased}", db.name());
        let data = &erased["data"];
        assert_eq!(data["erased_now"], json!([a, b]), "{}: {data}", db.name());
        assert_eq!(data["already_erased"], false);
        assert_eq!(data["files_removed"], 1);
        assert_eq!(data["devices_removed"], 1);

        // Every view shows the messages erased, keeping ids, roles, types and times.
        let path = format!("/api/chat/messages?conversation_id={a}");
        let (status, history) = app.call(Method::GET, &path, Some(&admin), None).await;
        assert_eq!(status, 200, "{history}");
        let messages = history["data"]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3, "{}", db.name());
        for message in messages {
            assert_eq!(message["content"], "", "{}: {message}", db.name());
            assert_eq!(message["erased"], true);
            assert!(message["id"].as_u64().is_some() && message["timestamp"].is_string());
        }
        assert_eq!(messages[1]["message_type"], "file");
        assert_eq!(messages[1]["file_name"], "");
        assert_eq!(messages[2]["sender_role"], "admin");
        let (_, conversation) = app
            .call(
                Method::GET,
                &format!("/api/chat/conversations/{b}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(conversation["data"]["status"], "closed", "{conversation}");
        let trail_path = format!("/api/audit/conversations/{a}/events");
        let (status, trail) = app
            .call(Method::GET, &trail_path, Some(&auditor), None)
            .await;
        assert_eq!(status, 200, "{trail}");
        let events = trail["data"]["events"].as_array().unwrap();
        let last = events.last().unwrap();
        assert_eq!(last["type"], "ConversationErased", "{last}");
        assert_eq!(
            last["payload"]["reason"],
            "request #42 under GDPR article 17"
        );
        assert!(
            events
                .iter()
                .filter(|e| e["type"] == "MessageSent")
                .all(|e| e["payload"]["erased"] == true && e["payload"]["content"] == ""),
            "{}: {trail}",
            db.name()
        );
        let (_, found) = app
            .call(Method::GET, "/api/chat/search?q=Zhou", Some(&admin), None)
            .await;
        assert_eq!(
            found["data"]["results"],
            json!([]),
            "{}: {found}",
            db.name()
        );
        let link = file["file_url"].as_str().unwrap_or_default();
        let download = app.client.get(link).send().await.unwrap();
        assert_eq!(download.status().as_u16(), 404, "{}: {link}", db.name());
        // Nothing more is written to an erased conversation.
        let (status, refused) =
            post(&admin, json!({"conversation_id": a, "content": "hello?"})).await;
        assert_eq!(
            (status, refused["error_code"].as_str()),
            (409, Some("CONFLICT")),
            "{refused}"
        );

        // Erasing again changes nothing, and says so.
        let (status, again) = erase(&admin, request.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(again["data"]["already_erased"], true, "{again}");
        assert_eq!(again["data"]["erased_now"], json!([]));
        app.stop().await;

        // Nowhere in the database (every table, the log included) or the upload directory.
        let rows = every_row(&db).await;
        for (table, row) in &rows {
            for part in SECRET_PARTS.iter().chain([&SECRET_COMMENT]) {
                assert!(
                    !row.contains(part),
                    "{}: {table} holds {part:?}: {row}",
                    db.name()
                );
            }
        }
        assert!(
            rows.iter()
                .any(|(_, row)| row.contains("my own words stay")),
            "{}: the other person's text stays",
            db.name()
        );
        for (path, bytes) in files_under(&data_dir) {
            assert!(
                !String::from_utf8_lossy(&bytes).contains("X9931475"),
                "{}: {}",
                db.name(),
                path.display()
            );
        }

        // The chains hold, and a replay folds the same erased tables.
        let verify = chatd(&db, &data_dir, &["audit", "verify"]);
        assert!(
            verify.status.success(),
            "{}: {}",
            db.name(),
            text(&verify.stdout)
        );
        let before = read_tables(&db).await;
        let replay = chatd(&db, &data_dir, &["replay"]);
        assert!(
            replay.status.success(),
            "{}: {}",
            db.name(),
            text(&replay.stderr)
        );
        assert_eq!(read_tables(&db).await, before, "{}", db.name());

        // The person may come back: a new conversation of theirs is theirs in the clear.
        let app = TestApp::spawn_with(&db, &[("CHAT_DATA_DIR", &dir)]).await;
        let (status, back) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&user),
                Some(&json!({"message": "I am back", "user_id": user_id})),
            )
            .await;
        assert_eq!(status, 201, "{}: {back}", db.name());
        assert_ne!(back["data"]["conversation_id"], json!(a));
        assert_ne!(back["data"]["conversation_id"], json!(b));
        app.stop().await;
        let _ = std::fs::remove_dir_all(&data_dir);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chatd_erase_erases_as_the_system_and_a_second_run_says_there_was_nothing_left() {
    for db in TestDb::each().await {
        let data_dir = std::env::temp_dir().join(format!("chatd-erase-cli-{}", fresh_id()));
        let dir = data_dir.display().to_string();
        let app = TestApp::spawn_with(&db, &[("CHAT_DATA_DIR", &dir)]).await;
        let (user_id, user) = app.session(Role::User, None).await;
        let (status, _) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&user),
                Some(&json!({"message": SECRET, "user_id": user_id})),
            )
            .await;
        assert_eq!(status, 201);
        // Read back, so the read tables the command looks in have the conversation.
        app.call(Method::GET, "/api/chat/messages", Some(&user), None)
            .await;
        app.stop().await;

        let id = user_id.to_string();
        let first = chatd(
            &db,
            &data_dir,
            &["erase", "--user-id", &id, "--reason", "retention"],
        );
        assert!(
            first.status.success(),
            "{}: {}",
            db.name(),
            text(&first.stderr)
        );
        assert!(
            text(&first.stdout).contains(&format!("user {user_id} erased: 1 of 1")),
            "{}",
            text(&first.stdout)
        );
        let second = chatd(
            &db,
            &data_dir,
            &["erase", "--user-id", &id, "--reason", "retention"],
        );
        assert!(second.status.success(), "{}", text(&second.stderr));
        assert!(
            text(&second.stdout).contains("already erased"),
            "{}",
            text(&second.stdout)
        );
        let unknown = chatd(
            &db,
            &data_dir,
            &["erase", "--user-id", "987654321", "--reason", "x"],
        );
        assert!(!unknown.status.success());
        assert!(
            text(&unknown.stderr).contains("has no conversation"),
            "{}",
            text(&unknown.stderr)
        );

        let events = every_row(&db).await;
        assert!(
            events.iter().any(|(table, row)| table == "events"
                && row.contains("ConversationErased")
                && row.contains("\"role\":\"system\"")
                && row.contains("retention")),
            "{}",
            db.name()
        );
        for (table, row) in &events {
            assert!(!row.contains("X9931475"), "{}: {table}: {row}", db.name());
        }
        let _ = std::fs::remove_dir_all(&data_dir);
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_erases_what_was_closed_longer_ago_than_the_rule_and_nothing_else() {
    for db in TestDb::each().await {
        let data_dir = std::env::temp_dir().join(format!("chatd-retention-{}", fresh_id()));
        let dir = data_dir.display().to_string();
        let app = TestApp::spawn_with(&db, &[("CHAT_DATA_DIR", &dir)]).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let mut conversations = Vec::new();
        for n in 0..4 {
            let (user_id, user) = app.session(Role::User, None).await;
            let (status, sent) = app
                .call(
                    Method::POST,
                    "/api/chat/messages",
                    Some(&user),
                    Some(&json!({"message": format!("old words {n}"), "user_id": user_id})),
                )
                .await;
            assert_eq!(status, 201, "{sent}");
            conversations.push(sent["data"]["conversation_id"].as_u64().unwrap());
        }
        let [old_closed, old_archived, recent, active] = conversations[..] else {
            unreachable!()
        };
        for (id, status) in [
            (old_closed, "closed"),
            (old_archived, "archived"),
            (recent, "closed"),
        ] {
            let path = format!("/api/chat/conversations/{id}/status");
            let (code, _) = app
                .call(
                    Method::PUT,
                    &path,
                    Some(&admin),
                    Some(&json!({"status": status})),
                )
                .await;
            assert_eq!(code, 200);
        }
        // Read back, so the read table holds every change before it is aged.
        app.call(
            Method::GET,
            &format!("/api/chat/conversations/{recent}"),
            Some(&admin),
            None,
        )
        .await;
        app.stop().await;
        // Forty days pass for two of them, as the read table sees it.
        let forty_days = 40i64 * 86_400_000_000;
        for table in ["conversations", "conversations_archive"] {
            let age = format!(
                "update {table} set closed_at = closed_at - {forty_days}, \
                 updated_at = updated_at - {forty_days} where id in ({old_closed}, {old_archived})"
            );
            execute(&db.store, &age).await;
        }

        let app = TestApp::spawn_with(
            &db,
            &[("CHAT_DATA_DIR", &dir), ("CHAT_RETENTION_DAYS", "30")],
        )
        .await;
        let erased = |id: u64| {
            let app = &app;
            let admin = admin.clone();
            async move {
                let path = format!("/api/chat/messages?conversation_id={id}");
                let (_, history) = app.call(Method::GET, &path, Some(&admin), None).await;
                history["data"]["messages"][0]["erased"] == true
            }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !(erased(old_closed).await && erased(old_archived).await) {
            assert!(
                std::time::Instant::now() < deadline,
                "{}: retention did not run",
                db.name()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(!erased(recent).await, "{}: closed recently", db.name());
        assert!(!erased(active).await, "{}: still active", db.name());
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let path = format!("/api/audit/conversations/{old_archived}/events");
        let (_, trail) = app.call(Method::GET, &path, Some(&auditor), None).await;
        let last = trail["data"]["events"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(last["type"], "ConversationErased", "{last}");
        assert_eq!(last["payload"]["by"]["role"], "system");
        assert!(
            last["payload"]["reason"]
                .as_str()
                .unwrap()
                .contains("more than 30 days"),
            "{last}"
        );
        app.stop().await;
        let _ = std::fs::remove_dir_all(&data_dir);
        db.cleanup().await;
    }
}
