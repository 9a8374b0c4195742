//! The text people type, sealed in the log under per-conversation data keys: what the rows hold,
//! what the API shows, a destroyed key, and the master key that wraps the data keys at rest
//! (`CHAT_ENCRYPTION_KEY_FILE`), through the real binary and real HTTP on both back ends.

use crate::support;
use crate::uploads::upload_ok;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use chatd::store::{CONVERSATION_STREAM, EventStore, StoreOptions};
use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

/// Text no row of the log may hold in the clear.
const SECRET: &str = "card 4111-1111-1111-1111 for Ms. Zhou 周小姐";
// The card number with its dash, which no hex id, hash or base64 text holds (a bare "4111" may
// turn up in a random file id).
const SECRET_PARTS: [&str; 3] = ["4111-1111", "Zhou", "周小姐"];
const SECRET_FILE_NAME: &str = "passport-of-zhou.txt";
const SECRET_COMMENT: &str = "Zhou was kind";

/// Every value of a table's rows, as text.
async fn raw_rows(store: &EventStore, sql: &str) -> Vec<String> {
    use sqlx::Row;
    macro_rules! rows {
        ($pool:expr) => {{
            sqlx::query(sql)
                .fetch_all($pool)
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| match row.try_get::<Option<i64>, _>(i) {
                            Ok(v) => format!("{v:?}"),
                            Err(_) => row
                                .try_get::<Option<String>, _>(i)
                                .unwrap()
                                .unwrap_or_default(),
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect()
        }};
    }
    match store {
        EventStore::MySql(s) => rows!(s.pool()),
        EventStore::Sqlite(s) => rows!(s.pool()),
    }
}

fn assert_holds_no_secret(db: &TestDb, what: &str, rows: &[String]) {
    for row in rows {
        for part in SECRET_PARTS {
            assert!(
                !row.contains(part),
                "{}: {what} holds {part:?}: {row}",
                db.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_people_type_is_sealed_in_the_log_and_shown_in_the_clear() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (user_id, user) = app.session(Role::User, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let (status, opened) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&user),
                Some(&json!({"message": SECRET, "user_id": user_id})),
            )
            .await;
        assert_eq!(status, 201, "{}: {opened}", db.name());
        assert_eq!(opened["data"]["content"], SECRET);
        let conversation = opened["data"]["conversation_id"].as_u64().unwrap();
        let file = upload_ok(
            &app,
            &user,
            conversation,
            "file",
            SECRET_FILE_NAME,
            b"plain words".to_vec(),
        )
        .await;
        let (status, with_file) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&user),
                Some(
                    &json!({"conversation_id": conversation, "message_type": "file",
                    "content": "", "file_id": file["file_id"]}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{}: {with_file}", db.name());
        assert_eq!(with_file["data"]["file_name"], SECRET_FILE_NAME);
        let path = format!("/api/chat/conversations/{conversation}/status");
        let (status, _) = app
            .call(
                Method::PUT,
                &path,
                Some(&admin),
                Some(&json!({"status": "closed"})),
            )
            .await;
        assert_eq!(status, 200);
        let path = format!("/api/chat/conversations/{conversation}/feedback");
        let (status, rated) = app
            .call(
                Method::POST,
                &path,
                Some(&user),
                Some(&json!({"rating": 4, "comment": SECRET_COMMENT})),
            )
            .await;
        assert_eq!(status, 201, "{}: {rated}", db.name());

        // The rows of the log hold none of it; each event with typed text names its key.
        let events = raw_rows(&db.store, "select event_type, payload from events").await;
        assert_holds_no_secret(&db, "events", &events);
        for row in &events {
            if row.starts_with("MessageSent") || row.starts_with("FileUploaded") {
                assert!(row.contains("\"sealed\":"), "{}: {row}", db.name());
            }
        }
        assert!(
            events
                .iter()
                .any(|row| row.starts_with("FeedbackGiven") && row.contains("\"sealed\":")),
            "{}: {events:?}",
            db.name()
        );
        let keys = raw_rows(
            &db.store,
            "select conversation_id, master_key_id from data_keys",
        )
        .await;
        assert_eq!(
            keys,
            [format!("Some({conversation})|None")],
            "{}: one key, unwrapped",
            db.name()
        );

        // Every reader sees the text: history, the search index, the audit trail.
        let (status, history) = app
            .call(Method::GET, "/api/chat/messages", Some(&user), None)
            .await;
        assert_eq!(status, 200, "{history}");
        let messages = history["data"]["messages"].as_array().unwrap();
        assert_eq!(messages[0]["content"], SECRET, "{}", db.name());
        assert_eq!(messages[1]["file_name"], SECRET_FILE_NAME);
        let (status, found) = app
            .call(Method::GET, "/api/chat/search?q=Zhou", Some(&admin), None)
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found["data"]["results"][0]["content"],
            SECRET,
            "{}: {found}",
            db.name()
        );
        let path = format!("/api/audit/conversations/{conversation}/events");
        let (status, trail) = app.call(Method::GET, &path, Some(&auditor), None).await;
        assert_eq!(status, 200, "{trail}");
        let trail = trail.to_string();
        assert!(
            trail.contains("4111-1111")
                && trail.contains(SECRET_COMMENT)
                && !trail.contains("sealed"),
            "{}: {trail}",
            db.name()
        );
        app.stop().await;

        // The whole read side, rebuilt from the sealed log, holds the same text.
        let before = dump(&db.store, "messages").await;
        let replay = chatd_with(&db, None, &["replay"]);
        assert!(
            replay.status.success(),
            "{}: {}",
            db.name(),
            text(&replay.stderr)
        );
        assert_eq!(dump(&db.store, "messages").await, before, "{}", db.name());
        assert!(before.iter().any(|row| row.contains("4111-1111")));
        let verify = chatd_with(&db, None, &["audit", "verify"]);
        assert!(
            verify.status.success(),
            "{}: {}",
            db.name(),
            text(&verify.stdout)
        );
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_destroyed_data_key_leaves_the_events_readable_with_their_text_erased() {
    for db in TestDb::each().await {
        let bus = db.commands().await;
        let kept = open_with(&bus, &user(1), "kept words")
            .await
            .conversation_id;
        let gone = open_with(&bus, &user(2), SECRET).await.conversation_id;
        let statement = format!("delete from data_keys where conversation_id = {gone}");
        raw_rows(&db.store, &statement).await;

        // A store that never saw the key (another node, a restart) reads the event erased.
        let store = EventStore::connect(&StoreOptions::new(&db.url))
            .await
            .unwrap();
        let read = |id: u64| {
            let store = store.clone();
            async move {
                store
                    .read_stream(CONVERSATION_STREAM, &id.to_string(), 0)
                    .await
                    .unwrap()
            }
        };
        let erased = read(gone).await;
        let payload: Value = serde_json::from_str(&erased[1].payload).unwrap();
        assert_eq!(payload["content"], "", "{}: {payload}", db.name());
        assert_eq!(payload["erased"], true);
        assert!(erased[1].decode().is_ok(), "an erased event still decodes");
        let intact: Value = serde_json::from_str(&read(kept).await[1].payload).unwrap();
        assert_eq!(intact["content"], "kept words");
        assert_eq!(intact.get("erased"), None);
        assert_eq!(store.verify_chains().await.unwrap(), None, "{}", db.name());
        store.close().await;
        db.cleanup().await;
    }
}

/// A key file of 32 bytes in base64, private to its owner unless `mode` says otherwise.
fn key_file(dir: &Path, name: &str, byte: u8, mode: u32) -> PathBuf {
    use base64::Engine;
    let path = dir.join(name);
    let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    std::fs::write(&path, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn command(db: &TestDb, key_file: Option<&Path>, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
    command
        .args(args)
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_PORT", "0")
        .env_remove("CHAT_ENCRYPTION_KEY_FILE");
    if let Some(path) = key_file {
        command.env("CHAT_ENCRYPTION_KEY_FILE", path);
    }
    command
}

fn chatd_with(db: &TestDb, key_file: Option<&Path>, args: &[&str]) -> std::process::Output {
    command(db, key_file, args).output().expect("run chatd")
}

/// `chatd serve`, which must refuse to start: its exit status and standard error, or a failure
/// when it is still serving after 30 seconds.
fn serve_refused(db: &TestDb, key_file: Option<&Path>) -> (bool, String) {
    let mut child = command(db, key_file, &["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run chatd serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chatd") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{}: chatd serve started with key file {key_file:?}",
                db.name()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut stderr);
    }
    (!status.success(), stderr)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_keys_are_wrapped_by_the_master_key_and_a_wrong_or_missing_key_refuses_to_start() {
    for db in TestDb::each().await {
        let dir = std::env::temp_dir().join(format!("chatd-keys-{}", fresh_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let master = key_file(&dir, "master.key", 1, 0o600);
        let other = key_file(&dir, "other.key", 2, 0o600);
        let open = key_file(&dir, "open.key", 1, 0o644);
        let short = dir.join("short.key");
        std::fs::write(&short, "AAAA").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();

        // Keys made before there was a master key are wrapped at the next start with one.
        let bus = db.commands().await;
        let earlier = open_with(&bus, &user(1), "before the key")
            .await
            .conversation_id;
        let started = chatd_with(&db, Some(&master), &["migrate"]);
        assert!(
            started.status.success(),
            "{}: {}",
            db.name(),
            text(&started.stderr)
        );
        let app = TestApp::spawn_with(
            &db,
            &[("CHAT_ENCRYPTION_KEY_FILE", master.to_str().unwrap())],
        )
        .await;
        let (user_id, user) = app.session(Role::User, None).await;
        let (status, sent) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&user),
                Some(&json!({"message": SECRET, "user_id": user_id})),
            )
            .await;
        assert_eq!(status, 201, "{}: {sent}", db.name());
        let (_, history) = app
            .call(Method::GET, "/api/chat/messages", Some(&user), None)
            .await;
        assert_eq!(history["data"]["messages"][0]["content"], SECRET);
        let (_, admin) = app.session(Role::Admin, None).await;
        let path = format!("/api/chat/messages?conversation_id={earlier}");
        let (_, before) = app.call(Method::GET, &path, Some(&admin), None).await;
        assert_eq!(before["data"]["messages"][0]["content"], "before the key");
        app.stop().await;

        let keys = raw_rows(&db.store, "select master_key_id, material from data_keys").await;
        assert_eq!(keys.len(), 2, "{}: {keys:?}", db.name());
        let master_id = keys[0].split('|').next().unwrap().to_string();
        assert_eq!(master_id.len(), 16, "{}: {keys:?}", db.name());
        assert!(
            keys.iter()
                .all(|row| row.starts_with(&format!("{master_id}|"))),
            "{keys:?}"
        );

        // Refusals name the variable and say what to do.
        for (key, says) in [
            (Some(other.as_path()), "holds master key"),
            (None, "set CHAT_ENCRYPTION_KEY_FILE"),
            (Some(open.as_path()), "chmod 600"),
            (Some(short.as_path()), "holds 3 bytes"),
            (Some(dir.join("missing.key").as_path()), "cannot read it"),
        ] {
            let migrate = chatd_with(&db, key, &["migrate"]);
            let serve = serve_refused(&db, key);
            for (refused, stderr) in [(!migrate.status.success(), text(&migrate.stderr)), serve] {
                assert!(refused, "{}: started with {key:?}", db.name());
                assert!(
                    stderr.contains("CHAT_ENCRYPTION_KEY_FILE") && stderr.contains(says),
                    "{}: {key:?}: {stderr}",
                    db.name()
                );
            }
        }
        let replay = chatd_with(&db, Some(&master), &["replay"]);
        assert!(
            replay.status.success(),
            "{}: {}",
            db.name(),
            text(&replay.stderr)
        );
        assert!(
            dump(&db.store, "messages")
                .await
                .iter()
                .any(|row| row.contains("4111-1111"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
        db.cleanup().await;
    }
}

/// The master key every data key is wrapped by, one row per key.
async fn wrapping_keys(db: &TestDb) -> Vec<String> {
    raw_rows(&db.store, "select master_key_id from data_keys").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_while_messages_are_sent_and_nothing_is_lost() {
    for db in TestDb::each().await {
        let dir = std::env::temp_dir().join(format!("chatd-rotate-{}", fresh_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let old = key_file(&dir, "old.key", 1, 0o600);
        let new = key_file(&dir, "new.key", 2, 0o600);
        let third = key_file(&dir, "third.key", 3, 0o600);
        let path = |p: &PathBuf| p.to_str().unwrap().to_string();

        // Conversations whose data keys the old master key wraps.
        let app = TestApp::spawn_with(&db, &[("CHAT_ENCRYPTION_KEY_FILE", &path(&old))]).await;
        let mut users = Vec::new();
        for n in 0..5 {
            let (id, token) = app.session(Role::User, None).await;
            let (status, _) = app
                .call(
                    Method::POST,
                    "/api/chat/messages",
                    Some(&token),
                    Some(&json!({"message": format!("before {n}"), "user_id": id})),
                )
                .await;
            assert_eq!(status, 201);
            users.push((id, token));
        }
        app.stop().await;
        let old_id = wrapping_keys(&db).await[0].clone();

        // The nodes restart with the new key, the old one still opening; the rotation runs while
        // every user keeps sending.
        let app = TestApp::spawn_with(
            &db,
            &[
                ("CHAT_ENCRYPTION_KEY_FILE", &path(&new)),
                ("CHAT_ENCRYPTION_PREVIOUS_KEY_FILE", &path(&old)),
            ],
        )
        .await;
        let done = std::sync::atomic::AtomicBool::new(false);
        let load = async {
            let mut acked: Vec<(String, String)> = Vec::new();
            let mut round = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || round < 3 {
                for (id, token) in &users {
                    let text = format!("during {round} from {id}");
                    let (status, sent) = app
                        .call(
                            Method::POST,
                            "/api/chat/messages",
                            Some(token),
                            Some(&json!({"message": text, "user_id": id})),
                        )
                        .await;
                    assert_eq!(status, 201, "{}: {sent}", db.name());
                    acked.push((token.clone(), text));
                }
                round += 1;
            }
            acked
        };
        let rotation = async {
            let (db_url, old, new) = (db.url.clone(), old.clone(), new.clone());
            let output = tokio::task::spawn_blocking(move || {
                Command::new(env!("CARGO_BIN_EXE_chatd"))
                    .args(["keys", "rotate"])
                    .env("CHAT_DATABASE_URL", db_url)
                    .env("CHAT_ENCRYPTION_KEY_FILE", new)
                    .env("CHAT_ENCRYPTION_PREVIOUS_KEY_FILE", old)
                    .output()
                    .expect("run chatd keys rotate")
            })
            .await
            .unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            output
        };
        let (acked, rotated) = tokio::join!(load, rotation);
        assert!(
            rotated.status.success(),
            "{}: {}",
            db.name(),
            text(&rotated.stderr)
        );
        assert!(
            text(&rotated.stdout).contains("; 0 not under it"),
            "{}",
            text(&rotated.stdout)
        );
        for (token, sent) in &acked {
            let (_, history) = app
                .call(
                    Method::GET,
                    "/api/chat/messages?limit=200",
                    Some(token),
                    None,
                )
                .await;
            let texts: Vec<&str> = history["data"]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|m| m["content"].as_str())
                .collect();
            assert!(
                texts.contains(&sent.as_str()),
                "{}: {sent} lost: {texts:?}",
                db.name()
            );
        }
        app.stop().await;
        let wrapped = wrapping_keys(&db).await;
        let new_id = wrapped[0].clone();
        assert_ne!(new_id, old_id);
        assert!(
            wrapped.iter().all(|id| *id == new_id),
            "{}: {wrapped:?}",
            db.name()
        );
        let status = chatd_with(&db, Some(&new), &["keys", "status"]);
        assert!(status.status.success(), "{}", text(&status.stderr));
        assert!(
            text(&status.stdout).contains(&format!("5 wrapped by master key {new_id}")),
            "{}: {}",
            db.name(),
            text(&status.stdout)
        );

        // The old key is no longer needed, and no longer enough.
        assert!(chatd_with(&db, Some(&new), &["migrate"]).status.success());
        let refused = chatd_with(&db, Some(&old), &["migrate"]);
        assert!(!refused.status.success(), "{}", db.name());
        let status = chatd_with(&db, Some(&old), &["keys", "status"]);
        assert!(!status.status.success());
        assert!(text(&status.stdout).contains("a key this configuration does not hold"));

        // The other form: from the configured key to --new-key-file.
        let onward = chatd_with(
            &db,
            Some(&new),
            &["keys", "rotate", "--new-key-file", &path(&third)],
        );
        assert!(
            onward.status.success(),
            "{}: {}",
            db.name(),
            text(&onward.stderr)
        );
        assert!(chatd_with(&db, Some(&third), &["migrate"]).status.success());
        let app = TestApp::spawn_with(&db, &[("CHAT_ENCRYPTION_KEY_FILE", &path(&third))]).await;
        let (_, history) = app
            .call(Method::GET, "/api/chat/messages", Some(&users[0].1), None)
            .await;
        assert_eq!(
            history["data"]["messages"][0]["content"],
            "before 0",
            "{}",
            db.name()
        );
        app.stop().await;
        std::fs::remove_dir_all(&dir).unwrap();
        db.cleanup().await;
    }
}

/// A MariaDB of the test's own, on a free loopback port, with InnoDB's data-at-rest encryption
/// (`file_key_management`) on, as the README shows: stopped (and its files removed) when dropped.
struct EncryptedMariaDb {
    dir: PathBuf,
    port: u16,
    server: std::process::Child,
}

impl EncryptedMariaDb {
    fn start() -> EncryptedMariaDb {
        let dir = std::env::temp_dir().join(format!("chatd-tde-{}", fresh_id()));
        let datadir = dir.join("data");
        std::fs::create_dir_all(&datadir).unwrap();
        let keys = dir.join("keys.txt");
        // Key 1 for tables, key 2 for the redo log (as the MariaDB manual's example).
        std::fs::write(
            &keys,
            format!("1;{}\n2;{}\n", "a1".repeat(32), "b2".repeat(32)),
        )
        .unwrap();
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| text(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let mut install = Command::new("mariadb-install-db");
        install.args([
            "--no-defaults",
            &format!("--datadir={}", datadir.display()),
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]);
        if root {
            install.arg("--user=root");
        }
        let installed = install
            .output()
            .expect("mariadb-install-db (the mariadb-server package) is needed for this test");
        assert!(installed.status.success(), "{}", text(&installed.stderr));
        let port = support::process::free_port();
        let mut server = Command::new("/usr/sbin/mariadbd");
        server.args([
            "--no-defaults".to_string(),
            format!("--datadir={}", datadir.display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_string(),
            format!("--socket={}", dir.join("mariadb.sock").display()),
            format!("--log-error={}", dir.join("mariadb.log").display()),
            "--skip-log-bin".to_string(),
            "--plugin-load-add=file_key_management".to_string(),
            format!("--file-key-management-filename={}", keys.display()),
            "--innodb-encrypt-tables=FORCE".to_string(),
            "--innodb-encrypt-log=ON".to_string(),
            "--innodb-encrypt-temporary-tables=ON".to_string(),
            "--encrypt-tmp-files=ON".to_string(),
            "--encrypt-binlog=ON".to_string(),
            "--aria-encrypt-tables=ON".to_string(),
            "--innodb-buffer-pool-size=64M".to_string(),
            // Encrypts the system tablespace too (the undo log lives there), in the background.
            "--innodb-encryption-threads=2".to_string(),
        ]);
        if root {
            server.arg("--user=root");
        }
        let server = server
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start mariadbd");
        EncryptedMariaDb { dir, port, server }
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/", self.port)
    }

    async fn wait_ready(&mut self) {
        use sqlx::Connection;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.server.try_wait() {
                panic!(
                    "mariadbd exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("mariadb.log")).unwrap_or_default()
                );
            }
            if let Ok(mut conn) = sqlx::MySqlConnection::connect(&self.url()).await {
                // Ready once the system tablespace, and with it the undo log, is encrypted.
                let system: Option<(i64,)> = sqlx::query_as(
                    "select count(*) from information_schema.innodb_tablespaces_encryption \
                     where name = 'innodb_system' and encryption_scheme = 1 \
                     and rotating_or_flushing = 0",
                )
                .fetch_optional(&mut conn)
                .await
                .ok()
                .flatten();
                if system == Some((1,)) {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mariadbd did not answer"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Stops the server cleanly (its pages and log flushed), so its files can be read.
    fn shut_down(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.server.id().to_string()])
            .status();
        let _ = self.server.wait();
    }
}

impl Drop for EncryptedMariaDb {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_mariadb_with_data_at_rest_encryption_the_read_tables_are_encrypted_on_disk_too() {
    let mut mariadb = EncryptedMariaDb::start();
    mariadb.wait_ready().await;
    let db = TestDb::mysql_on(&mariadb.url()).await;
    let database = db.url.rsplit('/').next().unwrap().to_string();

    // The suite's basic flow: a user writes, an admin answers, both read, search finds it.
    let app = TestApp::spawn(&db).await;
    let (user_id, user) = app.session(Role::User, None).await;
    let (_, admin) = app.session(Role::Admin, None).await;
    let (status, opened) = app
        .call(
            Method::POST,
            "/api/chat/messages",
            Some(&user),
            Some(&json!({"message": SECRET, "user_id": user_id})),
        )
        .await;
    assert_eq!(status, 201, "{opened}");
    let conversation = opened["data"]["conversation_id"].as_u64().unwrap();
    let (status, _) = app
        .call(
            Method::POST,
            "/api/chat/messages",
            Some(&admin),
            Some(&json!({"conversation_id": conversation, "content": "Ms. Zhou, we are on it"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, history) = app
        .call(Method::GET, "/api/chat/messages", Some(&user), None)
        .await;
    assert_eq!(history["data"]["messages"][0]["content"], SECRET);
    assert_eq!(history["data"]["messages"].as_array().unwrap().len(), 2);
    let (_, found) = app
        .call(Method::GET, "/api/chat/search?q=Zhou", Some(&admin), None)
        .await;
    assert_eq!(
        found["data"]["results"].as_array().unwrap().len(),
        2,
        "{found}"
    );
    app.stop().await;

    // Every table of chatd's database is an encrypted tablespace.
    let encrypted = raw_rows(
        &db.store,
        &format!(
            "select name, cast(encryption_scheme as signed) from information_schema.innodb_tablespaces_encryption \
             where name like '{database}/%'"
        ),
    )
    .await;
    let tables = raw_rows(
        &db.store,
        &format!(
            "select table_name from information_schema.tables where table_schema = '{database}'"
        ),
    )
    .await;
    assert!(tables.len() >= 10, "{tables:?}");
    assert_eq!(encrypted.len(), tables.len(), "{encrypted:?} of {tables:?}");
    assert!(
        encrypted.iter().all(|row| row.ends_with("|Some(1)")),
        "{encrypted:?}"
    );
    db.store.close().await;

    // And on disk, once flushed, no file holds the text: not the tables, not the redo log.
    mariadb.shut_down();
    let files = files_under(&mariadb.dir.join("data"));
    assert!(files.iter().any(|(path, _)| path.ends_with("messages.ibd")));
    for (path, bytes) in &files {
        for part in SECRET_PARTS {
            let needle = part.as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds {part:?}",
                path.display()
            );
        }
    }
}
