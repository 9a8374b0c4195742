//! schemathesis (from PyPI) against the running server's `/api/openapi.json`, with every check:
//! generated valid and invalid requests (each signed through `tests/schemathesis/hooks.py`),
//! then stateful sequences. Zero server errors and zero responses that break the document, for a
//! user and for an admin, on SQLite and on MariaDB with Redis. The exceptions a document cannot
//! express are in `tests/schemathesis/schemathesis.toml`, each with its reason.
//!
//! `CHAT_TEST_SCHEMATHESIS_EXAMPLES` (default 60) sets the examples per operation and
//! `CHAT_TEST_SCHEMATHESIS_SEED` the seed (default a fixed one; `random` for a fresh one, printed).

use crate::support;

use std::path::Path;
use std::process::Command;

use events::Role;
use support::*;

fn schemathesis(app: &TestApp, token: &str) -> (bool, String) {
    let examples =
        std::env::var("CHAT_TEST_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "60".to_string());
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis");
    let mut command = Command::new("python3");
    command
        .current_dir(&directory)
        .env("PYTHONPATH", &directory)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("CHAT_APP_SECRET", APP_SECRET)
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/openapi.json", app.address))
        .args(["--checks", "all", "--max-examples", &examples])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        // The hook replaces this placeholder with the request's real signature.
        .args(["-H", "X-Signature: sign-me"]);
    // A fixed seed keeps CI repeatable; `random` explores further.
    let seed = std::env::var("CHAT_TEST_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261126".into());
    if seed != "random" {
        command.args(["--seed", &seed]);
    }
    let output = command.output().unwrap_or_else(|error| {
        panic!("python3 -m schemathesis.cli could not start ({error}); run `make test-deps`")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "schemathesis is required (`make test-deps`): {text}"
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_cause_no_server_error_and_no_response_outside_the_document() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(
            &db,
            &[
                ("CHAT_LIMIT_MESSAGES_PER_MIN", "1000000"),
                ("CHAT_LIMIT_UPLOADS_PER_MIN", "1000000"),
                ("CHAT_LIMIT_TYPING_PER_MIN", "1000000"),
                ("CHAT_LIMIT_SEARCHES_PER_MIN", "1000000"),
            ],
        )
        .await;
        for role in [Role::User, Role::Admin] {
            let (_, token) = app.session(role, None).await;
            let (passed, report) = schemathesis(&app, &token);
            let summary = report
                .lines()
                .filter(|line| line.contains("generated") || line.starts_with("Seed"))
                .collect::<Vec<_>>()
                .join("; ");
            println!(
                "schemathesis, {} as {}: {summary}",
                db.name(),
                role.as_str()
            );
            assert!(passed, "{} as {}:\n{report}", db.name(), role.as_str());
        }
        app.stop().await;
        db.cleanup().await;
    }
}
