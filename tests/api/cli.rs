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
        // The store was migrated when the test opened it: nothing is left to apply.
        assert!(
            String::from_utf8_lossy(&second.stdout).ends_with(": already up to date\n"),
            "{}: {}",
            db.name(),
            String::from_utf8_lossy(&second.stdout)
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

/// Runs `chatd serve` on `data_dir` until it answers /healthz, then SIGTERMs it; asserts a clean
/// exit within 10 s and answers what it wrote to stdout and to stderr.
async fn serve_then_sigterm(db: &TestDb, data_dir: &std::path::Path) -> (String, String) {
    let port = support::process::free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .arg("serve")
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_DATA_DIR", data_dir)
        .env("CHAT_PORT", port.to_string())
        .env("RUST_LOG", "info")
        .env_remove("CHAT_APP_SECRET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chatd");
    assert!(
        support::process::answers_healthz(port).await,
        "the server answered /healthz"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if server.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "chatd stops within 10 s of SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let output = server.wait_with_output().expect("its output");
    assert!(output.status.success(), "exit status {:?}", output.status);
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let db = TestDb::sqlite().await;
    let data_dir = std::env::temp_dir().join(format!("chatd-sigterm-{}", std::process::id()));
    serve_then_sigterm(&db, &data_dir).await;
    let _ = std::fs::remove_dir_all(&data_dir);
    db.cleanup().await;
}

#[tokio::test]
async fn a_generated_app_secret_is_shown_once_on_stderr_and_never_in_a_log_line() {
    let db = TestDb::sqlite().await;
    let data_dir = std::env::temp_dir().join(format!("chatd-secret-shown-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);

    let (first_out, first_err) = serve_then_sigterm(&db, &data_dir).await;
    let file = data_dir.join("app_secret");
    let secret = std::fs::read_to_string(&file).expect("the secret file");
    let secret = secret.trim();
    assert_eq!(secret.len(), 64);
    assert_eq!(
        first_err.matches(secret).count(),
        1,
        "the generating start shows it once on stderr: {first_err}"
    );
    assert!(
        first_err.contains(&file.display().to_string()),
        "and says where it is kept: {first_err}"
    );
    assert!(
        !first_out.contains(secret),
        "the log stream never holds it: {first_out}"
    );

    let (second_out, second_err) = serve_then_sigterm(&db, &data_dir).await;
    assert!(
        !second_out.contains(secret) && !second_err.contains(secret),
        "a later start does not show it:\n{second_out}\n{second_err}"
    );
    assert!(
        second_out.contains("app secret read from the data directory")
            && second_out.contains(&file.display().to_string()),
        "a later start says where it is kept: {second_out}"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
    db.cleanup().await;
}

/// What a run that must fail wrote to stderr (asserting that it failed).
fn refusal(output: &std::process::Output) -> String {
    let said = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        !output.status.success(),
        "chatd should have refused: {said}"
    );
    said
}

/// `chatd` with `database_url` (and nothing else configured) in a fresh data directory.
fn chatd_with_url(database_url: &str, args: &[&str]) -> std::process::Output {
    let data_dir = std::env::temp_dir().join(format!(
        "chatd-problems-{}-{}",
        std::process::id(),
        fresh_id()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .env("CHAT_DATABASE_URL", database_url)
        .env("CHAT_DATA_DIR", &data_dir)
        .env("CHAT_PORT", "0")
        .env_remove("CHAT_REDIS_URL")
        .output()
        .expect("run chatd");
    let _ = std::fs::remove_dir_all(&data_dir);
    output
}

#[tokio::test]
async fn a_database_that_cannot_be_used_is_explained_once_naming_the_variable() {
    let closed_port = support::process::free_port();
    let server = std::env::var("CHAT_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let host = server
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@').map(|(_, hp)| hp.to_string()))
        .unwrap_or_else(|| "127.0.0.1:3306".into());
    let missing = format!("chatd_missing_{}", fresh_id());
    let cases = [
        (
            format!("mysql://root@127.0.0.1:{closed_port}/test"),
            format!("connection refused: nothing listens at 127.0.0.1:{closed_port}"),
        ),
        (
            "mysql://root@no-such-host.invalid:3306/test".to_string(),
            "unknown host no-such-host.invalid".to_string(),
        ),
        (
            format!("mysql://chatd_nobody:wrong@{host}/test"),
            "access denied".to_string(),
        ),
        (
            format!("mysql://root@{host}/{missing}"),
            format!(
                "the database {missing} does not exist: create it with `chatd migrate --create-database`"
            ),
        ),
    ];
    for (url, expected) in &cases {
        let output = chatd_with_url(url, &["serve"]);
        let said = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{url}: refused");
        assert!(said.contains("CHAT_DATABASE_URL ("), "{url}: {said}");
        assert_eq!(said.matches(expected.as_str()).count(), 1, "{url}: {said}");
        assert!(!said.contains("wrong@"), "{url}: no password in {said}");
        assert!(!said.contains("pool timed out"), "{url}: {said}");
    }

    // The unknown database, created on request; a second run has nothing to apply.
    let url = format!("mysql://root@{host}/{missing}");
    let created = chatd_with_url(&url, &["migrate", "--create-database"]);
    let said = String::from_utf8_lossy(&created.stdout);
    assert!(
        created.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(
        said.contains(&format!("database {missing} ready")),
        "{said}"
    );
    assert!(
        said.contains(": applied\n") && said.contains("  0001 event store\n"),
        "{said}"
    );
    let again = chatd_with_url(&url, &["migrate"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).ends_with(": already up to date\n"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let mut admin = <sqlx::MySqlConnection as sqlx::Connection>::connect(&server)
        .await
        .expect("the test server");
    sqlx::raw_sql(&format!("drop database {missing}"))
        .execute(&mut admin)
        .await
        .expect("drop the created database");

    let refused_redis = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .arg("serve")
        .env_remove("CHAT_DATABASE_URL")
        .env(
            "CHAT_REDIS_URL",
            format!("redis://127.0.0.1:{closed_port}/"),
        )
        .env("CHAT_PORT", "0")
        .env(
            "CHAT_DATA_DIR",
            std::env::temp_dir().join(format!("chatd-redis-refused-{}", fresh_id())),
        )
        .output()
        .expect("run chatd");
    let said = refusal(&refused_redis);
    assert_eq!(
        said.matches(&format!(
            "CHAT_REDIS_URL (redis://127.0.0.1:{closed_port}/): connection refused"
        ))
        .count(),
        1,
        "{said}"
    );
}

/// `chatd` as an operator runs it by hand, with the test's app secret and `extra` settings.
fn chatd_by_hand(
    db: &TestDb,
    args: &[&str],
    extra: &[(&str, &std::path::Path)],
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
    command
        .args(args)
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_APP_SECRET", APP_SECRET)
        .env_remove("CHAT_TOKEN");
    for (name, value) in extra {
        command.env(name, value);
    }
    command.output().expect("run chatd")
}

#[tokio::test]
async fn chatd_curl_signs_each_request_afresh_and_a_fresh_data_directory_is_warned_of() {
    let db = TestDb::sqlite().await;
    let node = support::process::ChatdProcess::start(&db, &[]).await;
    let token = support::process::cli_session(&db, "user", fresh_id());
    let body = r#"{"message":"Hello from the walk-through"}"#;
    for run in 1..=2 {
        let sent = chatd_by_hand(
            &db,
            &[
                "curl",
                "POST",
                "/api/chat/messages",
                body,
                "--token",
                &token,
                "--url",
                &node.url,
            ],
            &[],
        );
        let said = String::from_utf8_lossy(&sent.stdout);
        assert!(
            sent.status.success() && said.starts_with("201 Created\n"),
            "run {run}: {said}{}",
            String::from_utf8_lossy(&sent.stderr)
        );
        assert!(said.contains("\"Hello from the walk-through\""), "{said}");
    }
    let listed = chatd_by_hand(
        &db,
        &[
            "curl",
            "GET",
            "/api/chat/messages?after_id=0",
            "--token",
            &token,
            "--url",
            &node.url,
        ],
        &[],
    );
    let said = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success() && said.starts_with("200 OK\n"),
        "{said}"
    );
    assert_eq!(
        said.matches("Hello from the walk-through").count(),
        4,
        "{said}"
    );

    // Signing in a directory no server uses makes a new secret: said, and the server refuses it.
    let elsewhere = std::env::temp_dir().join(format!("chatd-elsewhere-{}", fresh_id()));
    let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
    let refused = command
        .args([
            "curl",
            "GET",
            "/api/chat/conversations",
            "--token",
            &token,
            "--url",
            &node.url,
        ])
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_DATA_DIR", &elsewhere)
        .env_remove("CHAT_APP_SECRET")
        .output()
        .expect("run chatd");
    let warned = refusal(&refused);
    assert!(
        warned.contains("warning: no app secret was kept at")
            && warned.contains("CHAT_DATA_DIR or CHAT_APP_SECRET"),
        "{warned}"
    );
    assert!(
        String::from_utf8_lossy(&refused.stdout).starts_with("401 Unauthorized\n"),
        "{}",
        String::from_utf8_lossy(&refused.stdout)
    );
    let _ = std::fs::remove_dir_all(&elsewhere);
    node.stop();
    db.cleanup().await;
}

#[tokio::test]
async fn a_session_created_where_the_server_does_not_look_is_warned_of() {
    let db = TestDb::mysql().await;
    // Next to MySQL, test nodes keep sessions in Redis.
    let node = support::process::ChatdProcess::start(&db, &[]).await;
    let port = node.url.rsplit(':').next().unwrap_or_default().to_string();
    let create = |redis: Option<String>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
        command
            .args(["session", "create", "--user-id", "42", "--role", "user"])
            .args(["--identifier", "user_uuid_42"])
            .env("CHAT_DATABASE_URL", &db.url)
            .env("CHAT_PORT", &port)
            .env("CHAT_BIND", "127.0.0.1");
        match redis {
            Some(url) => command.env("CHAT_REDIS_URL", url),
            None => command.env_remove("CHAT_REDIS_URL"),
        };
        command.output().expect("run chatd")
    };
    let elsewhere = create(None);
    let said = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(elsewhere.status.success(), "{said}");
    assert!(
        said.contains("this session goes to the database, but the server at")
            && said.contains("looks sessions up in redis")
            && said.contains("set CHAT_REDIS_URL"),
        "{said}"
    );
    let alike = create(Some(redis_url()));
    assert!(alike.status.success());
    assert!(
        !String::from_utf8_lossy(&alike.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&alike.stderr)
    );
    node.stop();
    db.cleanup().await;
}

#[test]
fn a_misspelt_log_format_stops_the_start_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .arg("migrate")
        .env("CHAT_LOG_FORMAT", "jsn")
        .env(
            "CHAT_DATA_DIR",
            std::env::temp_dir().join(format!("chatd-format-{}", fresh_id())),
        )
        .output()
        .expect("run chatd");
    let said = refusal(&output);
    assert!(
        said.contains("CHAT_LOG_FORMAT must be text or json, got \"jsn\""),
        "{said}"
    );
}

/// Every `CHAT_*` setting the code reads is in the README's configuration table and in
/// `.env.example`, and neither lists one the code does not read.
#[test]
fn every_setting_the_code_reads_is_documented_and_in_the_env_example() {
    fn names_in(text: &str) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(start) = rest.find("CHAT_") {
            let tail = &rest[start..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let name = tail[..end].trim_end_matches('_');
            // `CHAT_` alone is prose ("the name without CHAT_"), not a setting.
            if name.len() > "CHAT".len() {
                names.insert(name.to_string());
            }
            rest = &tail[end..];
        }
        names
    }
    fn sources(dir: &std::path::Path, into: &mut String) {
        for entry in std::fs::read_dir(dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, into);
            } else if path.extension().is_some_and(|e| e == "rs") {
                into.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut code = String::new();
    sources(&root.join("src"), &mut code);
    let quoted: String = code
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|literal| literal.starts_with("CHAT_") && !literal.contains(' '))
        .map(|literal| format!("{literal}\n"))
        .collect();
    let mut read = names_in(&quoted);
    // `chatd curl --token`'s variable: a command's argument, not a server setting.
    read.remove("CHAT_TOKEN");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let table: String = readme
        .lines()
        .filter(|line| line.starts_with("| `CHAT_"))
        .map(|line| line.split('|').nth(1).unwrap_or_default().to_string())
        .collect();
    let documented = names_in(&table);
    let example =
        names_in(&std::fs::read_to_string(root.join(".env.example")).expect(".env.example"));
    assert_eq!(read, documented, "the README's configuration table");
    assert_eq!(read, example, ".env.example");
    let listed: std::collections::BTreeSet<String> = chatd::settings::SETTINGS
        .iter()
        .map(|setting| setting.var.to_string())
        .collect();
    assert_eq!(read, listed, "chatd::settings::SETTINGS");
}

#[test]
fn serve_help_lists_every_setting_with_its_flag_variable_and_default() {
    let output = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["serve", "--help"])
        .output()
        .expect("run chatd");
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for setting in chatd::settings::SETTINGS {
        if setting.var == "CHAT_CONFIG" {
            assert!(help.contains("--config <FILE>") && help.contains("[env: CHAT_CONFIG"));
            continue;
        }
        let flag = format!("--{} <VALUE>", setting.flag);
        let line = format!("[default: {}] [env: {}", setting.default, setting.var);
        assert!(
            help.contains(&flag) && help.contains(&line),
            "{flag} {line}\n{help}"
        );
    }
}

#[tokio::test]
async fn a_settings_file_is_read_under_its_keys_below_variables_and_flags() {
    let free_port = support::process::free_port;
    let directory = std::env::temp_dir().join(format!("chatd-settings-{}", fresh_id()));
    std::fs::create_dir_all(&directory).expect("a directory");
    let (in_file, in_env) = (free_port(), free_port());
    let file = directory.join("chatd.toml");
    std::fs::write(
        &file,
        format!(
            "port = {in_file}\nbind = \"127.0.0.1\"\ndata_dir = \"{}\"\nauto_assign = false\n",
            directory.join("data").display()
        ),
    )
    .expect("write the settings file");
    for (port, variable) in [(in_file, None), (in_env, Some(in_env))] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_chatd"));
        command
            .args(["serve", "--config"])
            .arg(&file)
            .env_remove("CHAT_DATABASE_URL")
            .env_remove("CHAT_REDIS_URL")
            .env_remove("CHAT_PORT")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(port) = variable {
            command.env("CHAT_PORT", port.to_string());
        }
        let mut server = command.spawn().expect("start chatd");
        let answered = support::process::answers_healthz(port).await;
        let _ = server.kill();
        let _ = server.wait();
        assert!(answered, "chatd listens on {port} (variable: {variable:?})");
    }

    let unknown = directory.join("unknown.toml");
    std::fs::write(&unknown, "prot = 10000\n").expect("write");
    let refused = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["serve", "--config"])
        .arg(&unknown)
        .output()
        .expect("run chatd");
    let said = refusal(&refused);
    assert!(said.contains("unknown setting \"prot\""), "{said}");
    let bad = directory.join("bad.toml");
    std::fs::write(&bad, "port = \"ten thousand\"\n").expect("write");
    let refused = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["serve", "--config"])
        .arg(&bad)
        .env_remove("CHAT_PORT")
        .output()
        .expect("run chatd");
    let said = refusal(&refused);
    assert!(
        said.contains("CHAT_PORT=\"ten thousand\" is not valid"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&directory);
}
