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

/// `/api/{name}.json` as the server serves it, written to a file for an outside validator.
async fn served_document(app: &TestApp, name: &str) -> std::path::PathBuf {
    let document = app
        .get(&format!("/api/{name}.json"))
        .await
        .text()
        .await
        .expect("document");
    let path = std::env::temp_dir().join(format!("chatd-{name}-{}.json", std::process::id()));
    std::fs::write(&path, &document).expect("write the document");
    path
}

/// The served document is a valid OpenAPI 3.1 document as openapi-spec-validator (from PyPI)
/// reads it: what code generators (swift-openapi-generator, openapi-generator) need first. Every
/// response has an example, valid against its schema (jsonschema, draft 2020-12).
#[tokio::test]
async fn the_served_document_validates_with_zero_errors() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db).await;
    let path = served_document(&app, "openapi").await;
    let output = Command::new("python3")
        .arg("-c")
        .arg(
            "import json, sys\n\
             from openapi_spec_validator import OpenAPIV31SpecValidator\n\
             document = json.load(open(sys.argv[1]))\n\
             from jsonschema import Draft202012Validator\n\
             errors = [('/'.join(map(str, e.absolute_path)), e.message[:200]) for e in OpenAPIV31SpecValidator(document).iter_errors()]\n\
             for path, item in document['paths'].items():\n\
             \x20   for method, operation in item.items():\n\
             \x20       for status, response in operation.get('responses', {}).items():\n\
             \x20           for media, body in (response.get('content') or {}).items():\n\
             \x20               where = f'{method} {path} {status} {media}'\n\
             \x20               if 'example' not in body:\n\
             \x20                   errors.append((where, 'no example'))\n\
             \x20               elif 'schema' in body:\n\
             \x20                   schema = dict(body['schema'], components=document['components'])\n\
             \x20                   for e in Draft202012Validator(schema).iter_errors(body['example']):\n\
             \x20                       errors.append((where, 'example: ' + e.message[:150]))\n\
             for where, message in errors[:20]:\n    print(where, message)\n\
             print(len(errors), 'errors')\n\
             sys.exit(1 if errors else 0)",
        )
        .arg(&path)
        .output()
        .expect("python3");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !said.contains("No module named"),
        "openapi-spec-validator is required (`make test-deps`): {said}"
    );
    assert!(output.status.success(), "{said}");
    assert!(said.lines().any(|line| line == "0 errors"), "{said}");
    let _ = std::fs::remove_file(&path);
    app.stop().await;
    db.cleanup().await;
}

/// `/api/asyncapi.json` parses with the reference AsyncAPI parser (`@asyncapi/parser`, from
/// npm) with no error or warning, and names exactly the events the server handles and emits.
#[tokio::test]
async fn the_asyncapi_document_parses_and_names_every_socket_event() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db).await;
    let path = served_document(&app, "asyncapi").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/asyncapi/check.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg(&path)
        .output()
        .expect("node (the AsyncAPI parser runs on it)");
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the parser (`make test-deps` installs @asyncapi/parser): {said}"
    );
    let report: serde_json::Value = serde_json::from_str(said.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the parser's report ({e}): {said}"));
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["warnings"], 0, "{report}");
    let mut found: Vec<String> = report["operations"]
        .as_array()
        .map(|operations| {
            operations
                .iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    let mut handled: Vec<String> = chatd::metrics::CLIENT_EVENTS
        .iter()
        .chain(chatd::metrics::SERVER_EVENTS.iter())
        .map(|name| name.to_string())
        .collect();
    handled.sort();
    assert_eq!(found, handled);
    let _ = std::fs::remove_file(&path);
    app.stop().await;
    db.cleanup().await;
}
