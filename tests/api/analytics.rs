//! GET /api/chat/analytics and `chatd analytics` on SQLite and on MariaDB: the API (the
//! `analytics` projection) and the CLI (a fold of the log from position 0) agree exactly on a
//! generated history; a small hand-built history checked number by number; who may read it; bad
//! parameters; and a replay of the analytics tables answering the same.

use crate::support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chatd::store::{CONVERSATION_STREAM, EventStore, GENESIS_HASH, StoredEvent};
use events::{Actor, ConversationEvent, MessageType, Role};
use projections::{AnalyticsProjector, Projector};
use reqwest::Method;
use serde_json::{Value, json};
use support::history::mixed_history;
use support::*;

/// Waits until the server's projectors have applied everything in the log.
async fn caught_up(app: &TestApp) {
    let head = app.state_store().head_position().await.unwrap();
    assert!(
        app.state
            .projections
            .wait_for(head, Duration::from_secs(60))
            .await,
        "projectors reach {head}: {:?}",
        app.state.projections.statuses()
    );
}

fn chatd(db: &TestDb, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .env("CHAT_DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run chatd")
}

/// The CLI's JSON report for these arguments.
fn cli_report(db: &TestDb, args: &[&str]) -> Value {
    let mut all = vec!["analytics", "--json"];
    all.extend_from_slice(args);
    let output = chatd(db, &all);
    assert!(
        output.status.success(),
        "{}: {}",
        db.name(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the CLI prints JSON")
}

/// The API's report (`data`) for a query string.
async fn api_report(app: &TestApp, token: &str, query: &str) -> Value {
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/chat/analytics?{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["status"], "success");
    body["data"].clone()
}

/// Appends events with chosen times straight into the log (as a past history would be), with
/// their hash chains, positions and the sequencer moved past their ids.
async fn append_at(store: &EventStore, history: &[(u64, i64, ConversationEvent)]) {
    macro_rules! append {
        ($sql:expr) => {{
            let mut txn = $sql.begin_append().await.expect("begin");
            let mut heads: std::collections::HashMap<u64, (u64, String)> = Default::default();
            let mut rows = Vec::new();
            for (conversation, at, event) in history {
                let (sequence, previous) = heads
                    .get(conversation)
                    .cloned()
                    .unwrap_or((0, GENESIS_HASH.to_string()));
                let actor = event.actor();
                let mut row = StoredEvent {
                    position: txn.state.next_position,
                    stream_type: CONVERSATION_STREAM.to_string(),
                    stream_id: conversation.to_string(),
                    sequence: sequence + 1,
                    event_type: event.type_name().to_string(),
                    event_version: ConversationEvent::current_version(event.type_name())
                        .unwrap()
                        .to_string(),
                    payload: event.payload_json().to_string(),
                    metadata: json!({"actor_id": actor.id, "actor_role": actor.role.as_str()})
                        .to_string(),
                    recorded_at_micros: *at,
                    hash: String::new(),
                };
                row.hash = row.expected_hash(&previous);
                heads.insert(*conversation, (row.sequence, row.hash.clone()));
                txn.state.next_position += 1;
                txn.state.next_conversation_id = txn.state.next_conversation_id.max(conversation + 1);
                if let ConversationEvent::MessageSent { message_id, .. } = event {
                    txn.state.next_message_id = txn.state.next_message_id.max(message_id + 1);
                }
                rows.push(row);
            }
            txn.insert_events(&rows).await.expect("insert");
            txn.commit().await.expect("commit");
        }};
    }
    match store {
        EventStore::MySql(s) => append!(s),
        EventStore::Sqlite(s) => append!(s),
    }
}

/// µs since the epoch of an RFC 3339 time.
fn at(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_micros()
}

/// Four conversations around 2025-07-14 (a Monday), times chosen so every number can be
/// checked by hand (see `a_small_history_gives_the_numbers_worked_out_by_hand`).
fn small_history() -> Vec<(u64, i64, ConversationEvent)> {
    let (a, b, c, d, e) = (1, 2, 3, 4, 5);
    let opened = |id: u64, u: u64| ConversationEvent::ConversationOpened {
        conversation_id: id,
        user: user(u),
    };
    let message = |id: u64, sender: Actor| ConversationEvent::MessageSent {
        message_id: id,
        sender,
        message_type: MessageType::Text,
        content: format!("message {id}"),
        file_id: None,
        client_msg_id: None,
        file_path: None,
        attachment: None,
    };
    let closed = |by: Actor| ConversationEvent::ConversationClosed { by };
    let rated = |rating: u8, u: u64| ConversationEvent::FeedbackGiven {
        rating,
        comment: None,
        by: user(u),
    };
    vec![
        // D: opened the day before the range, answered inside it after 23 hours.
        (d, at("2025-07-13T10:00:00Z"), opened(d, 4)),
        (d, at("2025-07-13T10:00:00Z"), message(1, user(4))),
        (d, at("2025-07-14T09:00:00Z"), message(2, admin(902))),
        (d, at("2025-07-14T09:30:00Z"), closed(admin(902))),
        // A: a run of two user messages answered after 120 s, then 60 s, then 3600 s across
        // midnight in Shanghai (15:30Z is 23:30 there, 16:30Z is 00:30 the next day).
        (a, at("2025-07-14T10:00:00Z"), opened(a, 1)),
        (a, at("2025-07-14T10:00:00Z"), message(3, user(1))),
        (a, at("2025-07-14T10:00:30Z"), message(4, user(1))),
        (a, at("2025-07-14T10:02:00Z"), message(5, admin(900))),
        (a, at("2025-07-14T10:03:00Z"), message(6, user(1))),
        (a, at("2025-07-14T10:04:00Z"), message(7, admin(901))),
        (a, at("2025-07-14T15:30:00Z"), message(8, user(1))),
        (a, at("2025-07-14T16:30:00Z"), message(9, admin(900))),
        (
            a,
            at("2025-07-14T16:31:00Z"),
            ConversationEvent::ConversationAssigned {
                admin_id: 901,
                by: admin(900),
            },
        ),
        (a, at("2025-07-14T16:40:00Z"), closed(user(1))),
        (a, at("2025-07-14T16:45:00Z"), rated(5, 1)),
        // B: answered after 600 s, closed by the admin who answered, rated 2.
        (b, at("2025-07-14T11:00:00Z"), opened(b, 2)),
        (b, at("2025-07-14T11:00:00Z"), message(10, user(2))),
        (b, at("2025-07-14T11:10:00Z"), message(11, admin(900))),
        (b, at("2025-07-14T11:15:00Z"), closed(admin(900))),
        (b, at("2025-07-14T11:20:00Z"), rated(2, 2)),
        // C: never answered.
        (c, at("2025-07-14T12:00:00Z"), opened(c, 3)),
        (c, at("2025-07-14T12:00:00Z"), message(12, user(3))),
        // E: after the range.
        (e, at("2025-07-16T01:00:00Z"), opened(e, 5)),
        (e, at("2025-07-16T01:00:00Z"), message(13, user(5))),
        (e, at("2025-07-16T01:05:00Z"), message(14, admin(900))),
    ]
}

const SMALL_RANGE: &str = "from=2025-07-14T00:00:00Z&to=2025-07-16T00:00:00Z";

fn timing(count: u64, avg: f64, p50: f64, p90: f64) -> Value {
    json!({"count": count, "avg_seconds": avg, "p50_seconds": p50, "p90_seconds": p90})
}

fn no_timing() -> Value {
    json!({"count": 0, "avg_seconds": null, "p50_seconds": null, "p90_seconds": null})
}

fn satisfaction(ratings: [u64; 5]) -> Value {
    let count: u64 = ratings.iter().sum();
    let sum: u64 = ratings
        .iter()
        .enumerate()
        .map(|(i, n)| (i as u64 + 1) * n)
        .sum();
    json!({
        "count": count,
        "average": if count == 0 { Value::Null } else { json!(sum as f64 / count as f64) },
        "distribution": {"1": ratings[0], "2": ratings[1], "3": ratings[2], "4": ratings[3], "5": ratings[4]},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_history_gives_the_numbers_worked_out_by_hand() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        append_at(app.state_store(), &small_history()).await;
        caught_up(&app).await;
        let (_, token) = app.session(Role::Admin, None).await;

        let report = api_report(&app, &token, SMALL_RANGE).await;

        assert_eq!(report["from"], "2025-07-14T00:00:00Z", "{}", db.name());
        assert_eq!(report["to"], "2025-07-16T00:00:00Z");
        assert_eq!(report["bucket"], "day");
        assert_eq!(report["tz"], "UTC");
        // Waits: A 120, 60, 3600; B 600; D 82800 (s). Nearest rank: p50 is the 3rd of 5,
        // p90 the 5th.
        assert_eq!(
            report["reply_time"],
            timing(5, 17436.0, 600.0, 82800.0),
            "{}",
            db.name()
        );
        // First responses: A 120 (from the first of its two messages), B 600, D 82800.
        assert_eq!(report["first_response"], timing(3, 27840.0, 600.0, 82800.0));
        // Opened in the range: A, B, C; closed: A, B and D (opened before the range); resolved:
        // A and B of the three opened.
        assert_eq!(report["conversations"]["opened"], 3);
        assert_eq!(report["conversations"]["closed"], 3);
        assert_eq!(report["conversations"]["resolution_rate"], json!(2.0 / 3.0));
        assert_eq!(report["satisfaction"], satisfaction([0, 1, 0, 0, 1]));
        assert_eq!(
            report["volume"],
            json!([
                {"start": "2025-07-14", "user": 6, "admin": 5},
                {"start": "2025-07-15", "user": 0, "admin": 0},
            ])
        );
        // 900 answered A twice (120, 3600) and B (600) and closed B (rated 2); A was assigned
        // to 901 before it closed, so A's close and rating are 901's.
        assert_eq!(
            report["per_admin"],
            json!([
                {"admin_id": 900, "first_response": timing(2, 360.0, 120.0, 600.0),
                 "reply_time": timing(3, 1440.0, 600.0, 3600.0), "messages": 3, "closed": 1,
                 "satisfaction": satisfaction([0, 1, 0, 0, 0])},
                {"admin_id": 901, "first_response": no_timing(),
                 "reply_time": timing(1, 60.0, 60.0, 60.0), "messages": 1, "closed": 1,
                 "satisfaction": satisfaction([0, 0, 0, 0, 1])},
                {"admin_id": 902, "first_response": timing(1, 82800.0, 82800.0, 82800.0),
                 "reply_time": timing(1, 82800.0, 82800.0, 82800.0), "messages": 1, "closed": 1,
                 "satisfaction": satisfaction([0, 0, 0, 0, 0])},
            ])
        );

        // Shanghai's days: the 16:30Z answer falls on the 15th there, and the range (08:00 on
        // the 14th to 08:00 on the 16th, local) touches three local days.
        let shanghai = json!([
            {"start": "2025-07-14", "user": 6, "admin": 4},
            {"start": "2025-07-15", "user": 0, "admin": 1},
            {"start": "2025-07-16", "user": 0, "admin": 0},
        ]);
        let named = api_report(&app, &token, &format!("{SMALL_RANGE}&tz=Asia/Shanghai")).await;
        assert_eq!(named["volume"], shanghai, "{}", db.name());
        assert_eq!(named["tz"], "Asia/Shanghai");
        let offset = api_report(&app, &token, &format!("{SMALL_RANGE}&tz=%2B08:00")).await;
        assert_eq!(offset["volume"], shanghai);
        let weekly = api_report(&app, &token, &format!("{SMALL_RANGE}&bucket=week")).await;
        assert_eq!(
            weekly["volume"],
            json!([{"start": "2025-07-14", "user": 6, "admin": 5}])
        );
        // Everything but the volume is the same whatever the buckets.
        assert_eq!(named["reply_time"], report["reply_time"]);
        assert_eq!(weekly["per_admin"], report["per_admin"]);

        // The CLI's fold of the log says the same.
        assert_eq!(
            cli_report(
                &db,
                &[
                    "--from",
                    "2025-07-14T00:00:00Z",
                    "--to",
                    "2025-07-16T00:00:00Z"
                ]
            ),
            report,
            "{}",
            db.name()
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_and_the_cli_fold_agree_exactly_on_a_generated_history() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        mixed_history(&app.state.commands, 6000, 11).await;
        caught_up(&app).await;
        let head = app.state_store().head_position().await.unwrap();
        assert!(head >= 2000, "{}: only {head} events", db.name());
        let (_, token) = app.session(Role::Auditor, None).await;
        let now = chrono::Utc::now();
        let from = (now - chrono::Duration::days(2))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let to = (now + chrono::Duration::hours(1))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();

        for (bucket, tz, tz_query) in [
            ("day", "UTC", "UTC"),
            ("week", "Asia/Shanghai", "Asia/Shanghai"),
            ("day", "-05:30", "-05:30"),
            ("day", "+08:00", "%2B08:00"),
        ] {
            let api = api_report(
                &app,
                &token,
                &format!("from={from}&to={to}&bucket={bucket}&tz={tz_query}"),
            )
            .await;
            let tz_arg = format!("--tz={tz}");
            let cli = cli_report(
                &db,
                &["--from", &from, "--to", &to, "--bucket", bucket, &tz_arg],
            );
            assert_eq!(api, cli, "{} {bucket} {tz}", db.name());
            // The history is not trivial: replies, closes and ratings all happened.
            assert!(api["reply_time"]["count"].as_u64().unwrap() > 100, "{api}");
            assert!(
                api["conversations"]["closed"].as_u64().unwrap() > 10,
                "{api}"
            );
            assert!(api["satisfaction"]["count"].as_u64().unwrap() > 0, "{api}");
            assert_eq!(api["per_admin"].as_array().unwrap().len(), 3, "{api}");
        }

        // The human-readable form of the same fold.
        let text = chatd(&db, &["analytics", "--from", &from, "--to", &to]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("First response:") && text.contains("Admin 900:"),
            "{text}"
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_of_the_analytics_tables_gives_the_same_report() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        append_at(app.state_store(), &small_history()).await;
        mixed_history(&app.state.commands, 600, 5).await;
        caught_up(&app).await;
        let (_, token) = app.session(Role::Admin, None).await;
        let now = chrono::Utc::now();
        let recent = format!(
            "from={}&to={}&bucket=week&tz=Asia/Shanghai",
            (now - chrono::Duration::days(1)).format("%Y-%m-%dT%H:%M:%SZ"),
            (now + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ")
        );
        let small = format!("{SMALL_RANGE}&tz=Asia/Shanghai");
        let before = (
            api_report(&app, &token, &recent).await,
            api_report(&app, &token, &small).await,
        );

        // Small batches, so the per-conversation state crosses many batch boundaries.
        let projectors: Vec<Arc<dyn Projector>> = vec![Arc::new(AnalyticsProjector)];
        projections::replay(app.state_store(), &projectors, 7, |_| {})
            .await
            .expect("replay");
        let after = (
            api_report(&app, &token, &recent).await,
            api_report(&app, &token, &small).await,
        );

        assert_eq!(before, after, "{}", db.name());
        assert!(before.0["reply_time"]["count"].as_u64().unwrap() > 5);
        assert_eq!(before.1["reply_time"]["count"], 5);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_and_auditors_read_analytics_and_users_are_forbidden() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user_token) = app.session(Role::User, None).await;
        let (_, admin_token) = app.session(Role::Admin, None).await;
        let (_, auditor_token) = app.session(Role::Auditor, None).await;

        let (status, body) = app
            .call(Method::GET, "/api/chat/analytics", Some(&user_token), None)
            .await;
        assert_eq!(status, 403, "{}: {body}", db.name());
        assert_eq!(body["status"], "error");
        assert_eq!(body["error_code"], "FORBIDDEN");
        for token in [&admin_token, &auditor_token] {
            let (status, body) = app
                .call(Method::GET, "/api/chat/analytics", Some(token), None)
                .await;
            assert_eq!(status, 200, "{}: {body}", db.name());
            // The default range: the last 7 days, in UTC days.
            assert_eq!(body["data"]["tz"], "UTC");
            let volume = body["data"]["volume"].as_array().unwrap();
            assert!((7..=8).contains(&volume.len()), "{body}");
        }
        let (status, _) = app
            .call(Method::GET, "/api/chat/analytics", None, None)
            .await;
        assert_eq!(status, 401);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_analytics_parameters_are_validation_errors() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token) = app.session(Role::Admin, None).await;
        for query in [
            "from=2025-07-16T00:00:00Z&to=2025-07-14T00:00:00Z",
            "from=2024-01-01T00:00:00Z&to=2025-07-01T00:00:00Z",
            "bucket=month",
            "tz=Mars/Olympus_Mons",
            "tz=%2B25:00",
            "from=yesterday",
            "to=2025-07-14",
        ] {
            let (status, body) = app
                .call(
                    Method::GET,
                    &format!("/api/chat/analytics?{query}"),
                    Some(&token),
                    None,
                )
                .await;
            assert_eq!(status, 400, "{} {query}: {body}", db.name());
            assert_eq!(body["status"], "error");
            assert_eq!(body["error_code"], "VALIDATION_ERROR", "{query}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        // The CLI refuses the same.
        let refused = chatd(&db, &["analytics", "--bucket", "month"]);
        assert!(!refused.status.success());
        app.stop().await;
        db.cleanup().await;
    }
}
