//! The iOS integration guide (`docs/ios.md`) says only what the server does: its worked signature
//! examples recompute, requests signed by its recipe are accepted, and each of its JSON examples
//! has the keys and value types of a real answer (the push payload's is checked in `push.rs`).

use serde_json::json;

use crate::realtime::{admin, run_scenario, uploaded_photo, user_with_conversation};
use crate::support::{TestApp, TestDb};

pub(crate) fn guide_path() -> String {
    format!("{}/docs/ios.md", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ios_guides_signatures_and_examples_are_what_the_server_does() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let user = user_with_conversation(&app, "Hello, I need help").await;
        let admin = admin(&app).await;
        let photo = uploaded_photo(&app, &user).await;

        run_scenario(
            "ios_guide",
            &db,
            &app,
            json!({"user": user, "admin": admin, "photo": photo, "guide": guide_path()}),
        )
        .await;

        app.stop().await;
        db.cleanup().await;
    }
}

/// The JSON of the guide's first block marked `<!-- checked: {kind} -->`.
pub(crate) fn guide_example(kind: &str) -> serde_json::Value {
    let guide = std::fs::read_to_string(guide_path()).expect("docs/ios.md is readable");
    let marker = format!("<!-- checked: {kind} -->");
    let after = guide
        .split_once(&marker)
        .unwrap_or_else(|| panic!("the guide has no block {marker}"))
        .1;
    let body = after
        .split_once("```json\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("{marker} is followed by a json block"))
        .0;
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{marker} is JSON: {e}"))
}

/// `real` has exactly the example's keys, with the same JSON type at each (a null stands for any
/// scalar: optional fields are null in some answers; arrays: every item like the example's
/// first).
pub(crate) fn assert_same_shape(example: &serde_json::Value, real: &serde_json::Value, at: &str) {
    use serde_json::Value;
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let scalar = |v: &Value| !matches!(v, Value::Array(_) | Value::Object(_));
    if (example.is_null() || real.is_null()) && scalar(example) && scalar(real) {
        return;
    }
    assert_eq!(
        kind(example),
        kind(real),
        "{at}: the guide shows {example}, the server sends {real}"
    );
    match (example, real) {
        (Value::Object(shown), Value::Object(sent)) => {
            let shown_keys: std::collections::BTreeSet<_> = shown.keys().collect();
            let sent_keys: std::collections::BTreeSet<_> = sent.keys().collect();
            assert_eq!(shown_keys, sent_keys, "{at}: the guide's keys differ");
            for (key, value) in shown {
                assert_same_shape(value, &sent[key], &format!("{at}.{key}"));
            }
        }
        (Value::Array(shown), Value::Array(sent)) if !shown.is_empty() => {
            for (i, item) in sent.iter().enumerate() {
                assert_same_shape(&shown[0], item, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}
