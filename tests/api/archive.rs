//! Archive tables on both back ends, through real HTTP: archiving moves a conversation's rows out
//! of `conversations` and `messages` into `conversations_archive` and `messages_archive`; every
//! view (lists, the conversation, history, search, read receipts, the audit trail, erasure)
//! still finds them there, and a replay of the log rebuilds the same rows in the same tables.

use crate::support;

use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

/// How many rows of `table` have `column = id`.
async fn count(db: &TestDb, table: &str, column: &str, id: u64) -> i64 {
    let sql = format!("select count(*) from {table} where {column} = ?");
    let id = i64::try_from(id).unwrap();
    match &db.store {
        chatd::store::EventStore::MySql(s) => sqlx::query_scalar(&sql)
            .bind(id)
            .fetch_one(s.pool())
            .await
            .unwrap(),
        chatd::store::EventStore::Sqlite(s) => sqlx::query_scalar(&sql)
            .bind(id)
            .fetch_one(s.pool())
            .await
            .unwrap(),
    }
}

fn ids_of(page: &Value, key: &str) -> Vec<u64> {
    page["data"][key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {page}"))
        .iter()
        .map(|item| item["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_conversation_lives_in_the_archive_tables_and_every_view_still_finds_it() {
    for db in TestDb::each().await {
        let name = db.name();
        let app = TestApp::spawn(&db).await;
        let (user_id, user) = app.session(Role::User, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let call = |method: Method, path: String, token: &str, body: Option<Value>| {
            let token = token.to_string();
            let app = &app;
            async move { app.call(method, &path, Some(&token), body.as_ref()).await }
        };
        let send = |token: &str, body: Value| {
            call(Method::POST, "/api/chat/messages".into(), token, Some(body))
        };

        // Conversation A: 30 messages each way, then archived with the admin's replies unread.
        let (status, opened) = send(&user, json!({"message": "archived words 0"})).await;
        assert_eq!(status, 201, "{name}: {opened}");
        let a = opened["data"]["conversation_id"].as_u64().unwrap();
        let mut admin_replies = Vec::new();
        for i in 1..30 {
            let (status, _) = send(
                &user,
                json!({"conversation_id": a, "content": format!("archived words {i}")}),
            )
            .await;
            assert_eq!(status, 201);
            let (status, reply) = send(
                &admin,
                json!({"conversation_id": a, "content": format!("reply {i}")}),
            )
            .await;
            assert_eq!(status, 201, "{reply}");
            admin_replies.push(reply["data"]["id"].as_u64().unwrap());
        }
        let status_path = format!("/api/chat/conversations/{a}/status");
        let (status, archived) = call(
            Method::PUT,
            status_path.clone(),
            &admin,
            Some(json!({"status": "archived"})),
        )
        .await;
        assert_eq!(status, 200, "{name}: {archived}");
        // Conversation B stays live.
        let (status, second) = send(&user, json!({"message": "live words"})).await;
        assert_eq!(status, 201, "{name}: {second}");
        let b = second["data"]["conversation_id"].as_u64().unwrap();

        // Read back, so the read tables hold every change; the rows moved: none of A is left
        // in the live tables.
        let (status, _) = call(
            Method::GET,
            format!("/api/chat/conversations/{b}"),
            &user,
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(count(&db, "conversations", "id", a).await, 0, "{name}");
        assert_eq!(
            count(&db, "conversations_archive", "id", a).await,
            1,
            "{name}"
        );
        assert_eq!(
            count(&db, "messages", "conversation_id", a).await,
            0,
            "{name}"
        );
        assert_eq!(
            count(&db, "messages_archive", "conversation_id", a).await,
            59,
            "{name}"
        );
        assert_eq!(count(&db, "conversations", "id", b).await, 1, "{name}");

        // Lists: archived only from the archive, everything from both, the others from the
        // live table; totals agree.
        let list = |token: &str, query: &str| {
            call(
                Method::GET,
                format!("/api/chat/conversations?user_id={user_id}{query}"),
                token,
                None,
            )
        };
        let (status, page) = list(&admin, "&status=archived").await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(ids_of(&page, "conversations"), vec![a], "{name}");
        assert_eq!(page["data"]["conversations"][0]["status"], "archived");
        assert_eq!(page["data"]["pagination"]["total"], 1);
        let (_, page) = list(&admin, "").await;
        assert_eq!(
            ids_of(&page, "conversations"),
            vec![b, a],
            "{name}: newest first"
        );
        assert_eq!(page["data"]["pagination"]["total"], 2);
        let (_, page) = list(&admin, "&limit=1&page=2").await;
        assert_eq!(
            ids_of(&page, "conversations"),
            vec![a],
            "{name}: second page"
        );
        let (_, page) = list(&admin, "&status=active").await;
        assert_eq!(ids_of(&page, "conversations"), vec![b], "{name}");
        let (status, page) = call(Method::GET, "/api/chat/conversations".into(), &user, None).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(
            ids_of(&page, "conversations"),
            vec![b, a],
            "{name}: the user's own"
        );

        // The conversation and its history, paged from the archive.
        let (status, view) = call(
            Method::GET,
            format!("/api/chat/conversations/{a}"),
            &user,
            None,
        )
        .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["data"]["status"], "archived", "{name}: {view}");
        let history = |query: String| {
            call(
                Method::GET,
                format!("/api/chat/messages?conversation_id={a}{query}"),
                &user,
                None,
            )
        };
        let (status, newest) = history("&limit=20".into()).await;
        assert_eq!(status, 200, "{newest}");
        let newest = newest["data"]["messages"].as_array().unwrap().clone();
        assert_eq!(newest.len(), 20, "{name}");
        assert_eq!(newest[19]["content"], "reply 29");
        let oldest_shown = newest[0]["id"].as_u64().unwrap();
        let (_, older) = history(format!("&before_id={oldest_shown}&limit=100")).await;
        let older = older["data"]["messages"].as_array().unwrap().clone();
        assert_eq!(older.len(), 39, "{name}");
        assert_eq!(older[0]["content"], "archived words 0");

        // A read receipt after the archival lands in the archive; the badge counts what is left.
        let (status, read) = call(
            Method::PUT,
            format!("/api/chat/conversations/{a}/read"),
            &user,
            Some(json!({"message_ids": &admin_replies[..10]})),
        )
        .await;
        assert_eq!(status, 200, "{name}: {read}");
        let (_, after) = history("&limit=100".into()).await;
        let unread = after["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["sender_role"] == "admin" && m["is_read"] == false)
            .count();
        assert_eq!(unread, 19, "{name}");
        let (_, view) = call(
            Method::GET,
            format!("/api/chat/conversations/{a}"),
            &user,
            None,
        )
        .await;
        assert_eq!(view["data"]["unread_count"], 19, "{name}: {view}");

        // Search finds archived messages, in the conversation, for its owner and for staff.
        for (token, scope) in [
            (&user, format!("&conversation_id={a}")),
            (&user, String::new()),
            (&admin, String::new()),
            (&admin, format!("&conversation_id={a}")),
        ] {
            let (status, found) = call(
                Method::GET,
                format!("/api/chat/search?q=archived%20words{scope}"),
                token,
                None,
            )
            .await;
            assert_eq!(status, 200, "{found}");
            assert_eq!(
                found["data"]["pagination"]["total"], 30,
                "{name} {scope}: {found}"
            );
            assert!(
                found["data"]["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|hit| hit["conversation_id"] == a)
            );
        }

        // Archived is final, and the auditor's trail still has every event.
        let (status, refused) =
            send(&user, json!({"conversation_id": a, "content": "too late"})).await;
        assert_eq!(
            (status, refused["error_code"].as_str()),
            (409, Some("CONFLICT"))
        );
        let (status, trail) = call(
            Method::GET,
            format!("/api/audit/conversations/{a}/events?limit=1000"),
            &auditor,
            None,
        )
        .await;
        assert_eq!(status, 200, "{trail}");
        let trail = trail.to_string();
        assert!(trail.contains("ConversationArchived") && trail.contains("archived words 29"));

        // Erasing the person reaches the archive too.
        let (status, erased) = call(
            Method::POST,
            "/api/chat/admin/erasures".into(),
            &admin,
            Some(json!({"user_id": user_id, "reason": "request #7"})),
        )
        .await;
        assert_eq!(status, 200, "{name}: {erased}");
        assert_eq!(erased["data"]["erased_now"], json!([a, b]), "{name}");
        let (_, after) = history("&limit=100".into()).await;
        let messages = after["data"]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 59, "{name}");
        assert!(
            messages
                .iter()
                .all(|m| m["content"] == "" && m["erased"] == true),
            "{name}: {after}"
        );
        assert_eq!(count(&db, "messages", "conversation_id", a).await, 0);

        // A replay rebuilds the same rows in the same tables.
        let tables = [
            "conversations",
            "conversations_archive",
            "messages",
            "messages_archive",
        ];
        let mut before = Vec::new();
        for table in tables {
            before.push(dump(&db.store, table).await);
        }
        drop(app);
        projections::replay(&db.store, &projections::all_projectors(), 7, |_| {})
            .await
            .unwrap();
        for (table, rows) in tables.iter().zip(&before) {
            assert_eq!(&dump(&db.store, table).await, rows, "{name}: {table}");
        }
    }
}

async fn query_ints(db: &TestDb, sql: &str) -> Vec<(i64, i64)> {
    match &db.store {
        chatd::store::EventStore::MySql(s) => sqlx::query_as(sql).fetch_all(s.pool()).await,
        chatd::store::EventStore::Sqlite(s) => sqlx::query_as(sql).fetch_all(s.pool()).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Empties the database and applies the migrations before `first_new` only: the schema of an
/// earlier release.
async fn schema_before(db: &TestDb, first_new: &str) {
    let (dir, tables_sql) = match db.store {
        chatd::store::EventStore::MySql(_) => (
            "mysql",
            "select table_name from information_schema.tables where table_schema = database()",
        ),
        chatd::store::EventStore::Sqlite(_) => (
            "sqlite",
            "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'",
        ),
    };
    let tables: Vec<(String,)> = match &db.store {
        chatd::store::EventStore::MySql(s) => sqlx::query_as(tables_sql).fetch_all(s.pool()).await,
        chatd::store::EventStore::Sqlite(s) => sqlx::query_as(tables_sql).fetch_all(s.pool()).await,
    }
    .unwrap();
    for (table,) in tables {
        execute(&db.store, &format!("drop table {table}")).await;
    }
    let earlier = std::env::temp_dir().join(format!("chatd-migrations-{}", fresh_id()));
    std::fs::create_dir_all(&earlier).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dir);
    for entry in std::fs::read_dir(all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < first_new {
            std::fs::copy(&path, earlier.join(&name)).unwrap();
        }
    }
    let migrator = sqlx::migrate::Migrator::new(earlier.as_path())
        .await
        .unwrap();
    match &db.store {
        chatd::store::EventStore::MySql(s) => migrator.run(s.pool()).await,
        chatd::store::EventStore::Sqlite(s) => migrator.run(s.pool()).await,
    }
    .unwrap();
    let _ = std::fs::remove_dir_all(earlier);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_moves_conversations_archived_before_the_archive_tables_existed() {
    for db in TestDb::each().await {
        let name = db.name();
        schema_before(&db, "0016").await;
        // Conversation 1 archived (with a message), 2 closed (with one), 3 active and silent.
        for sql in [
            "insert into conversations (id, user_id, user_identifier, status, last_message_at, \
             message_count, unread_for_user, unread_for_admin, created_at, updated_at, version) \
             values (1, 7, 'u7', 'archived', 2000, 1, 0, 1, 1000, 3000, 3), \
             (2, 7, 'u7', 'closed', 5000, 1, 0, 1, 4000, 6000, 3), \
             (3, 7, 'u7', 'active', null, 0, 0, 0, 7000, 7000, 1)",
            "insert into messages (id, conversation_id, user_id, sender_role, sender_identifier, \
             message_type, content, is_read, timestamp, position) \
             values (1, 1, 7, 'user', 'u7', 'text', 'old words', 0, 2000, 2), \
             (2, 2, 7, 'user', 'u7', 'text', 'newer words', 0, 5000, 5)",
        ] {
            execute(&db.store, sql).await;
        }

        let applied = db.store.migrate().await.unwrap();
        assert_eq!(
            applied[..2],
            ["0016 archive tables", "0017 conversation activity"],
            "{name}"
        );
        let ids = |table: &str| format!("select id, conversation_id from {table} order by id");
        assert_eq!(query_ints(&db, &ids("messages")).await, [(2, 2)], "{name}");
        assert_eq!(
            query_ints(&db, &ids("messages_archive")).await,
            [(1, 1)],
            "{name}"
        );
        // Lists are ordered by the last message, else the opening.
        assert_eq!(
            query_ints(&db, "select id, activity_at from conversations order by id").await,
            [(2, 5000), (3, 7000)],
            "{name}"
        );
        assert_eq!(
            query_ints(&db, "select id, activity_at from conversations_archive").await,
            [(1, 2000)],
            "{name}"
        );
    }
}
