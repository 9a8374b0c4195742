//! Outages on the production pair (MariaDB and Redis), each server reached through a TCP proxy
//! the test breaks: the ambiguous commit (COMMIT sent, its answer lost) answered by the client's
//! retry; writes while the database is gone; sessions while Redis is gone. Nothing
//! acknowledged is lost, nothing is applied twice, nothing is served unauthenticated, and the
//! server recovers by itself. The times are printed (`--nocapture`).

use crate::support;

use std::time::{Duration, Instant};

use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::proxy::Proxy;
use support::*;

/// How long the server may take to answer 503 while the database is gone, and to work again
/// once it is back.
const DATABASE_DETECTION: Duration = Duration::from_secs(2);
const REDIS_DETECTION: Duration = Duration::from_secs(1);
const RECOVERY: Duration = Duration::from_secs(5);

/// `url` with its host and port replaced by `address`.
fn through(url: &str, address: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("url scheme");
    let after_host = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..after_host];
    let credentials = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{credentials}{address}{}", &rest[after_host..])
}

/// `host:port` of a URL.
fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    }
}

/// The MessageSent events of the whole log that carry `client_msg_id`.
async fn sent_with(store: &chatd::store::EventStore, client_msg_id: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut position = 0;
    loop {
        let batch = store.read_from(position, 1000).await.expect("read the log");
        let Some(last) = batch.last() else {
            return found;
        };
        position = last.position;
        for event in &batch {
            let metadata: Value = serde_json::from_str(&event.metadata).expect("metadata");
            if event.event_type == "MessageSent" && metadata["client_msg_id"] == client_msg_id {
                found.push(serde_json::from_str(&event.payload).expect("payload"));
            }
        }
    }
}

async fn post_message(
    app: &TestApp,
    token: &str,
    content: &str,
    client_msg_id: &str,
) -> (u16, Value) {
    app.call(
        Method::POST,
        "/api/chat/messages",
        Some(token),
        Some(&json!({"message": content, "client_msg_id": client_msg_id})),
    )
    .await
}

/// A MySQL test database, a proxy in front of its server, and chatd connected through it.
async fn behind_a_database_proxy() -> (TestDb, Proxy, TestApp) {
    let db = TestDb::mysql().await;
    let proxy = Proxy::start(&host_port(&db.url, 3306)).await;
    let app = TestApp::spawn_with(
        &db,
        &[("CHAT_DATABASE_URL", &through(&db.url, &proxy.address()))],
    )
    .await;
    (db, proxy, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_of_an_ambiguous_commit_gets_the_original_message() {
    let (db, proxy, app) = behind_a_database_proxy().await;
    let (_, token) = app.session(Role::User, None).await;
    let (status, first) = post_message(&app, &token, "hello", "first").await;
    assert_eq!(status, 201, "{first}");

    // Quiet: no projector commits while the append commits.
    let head = db.store.head_position().await.expect("head");
    assert!(
        app.state
            .projections
            .wait_for(head, Duration::from_secs(30))
            .await
    );
    // The COMMIT reaches MariaDB, which commits; the connection breaks before the answer.
    proxy.swallow_next_commit_answer();
    let (status, lost) = post_message(&app, &token, "did this arrive?", "ambiguous").await;
    assert_eq!(
        proxy.commits_cut(),
        1,
        "the append's COMMIT went through the proxy"
    );
    assert_eq!(
        status, 503,
        "the outcome is unknown, so it is not acknowledged: {lost}"
    );
    assert_eq!(lost["error_code"], "UNAVAILABLE");
    let committed = sent_with(&db.store, "ambiguous").await;
    assert_eq!(committed.len(), 1, "the server did commit it");

    // The client retries with the same client_msg_id, as the iOS app does.
    let (status, retried) = post_message(&app, &token, "did this arrive?", "ambiguous").await;
    assert_eq!(status, 200, "a retry of an accepted message: {retried}");
    assert_eq!(retried["data"]["id"], committed[0]["message_id"]);
    assert_eq!(
        sent_with(&db.store, "ambiguous").await.len(),
        1,
        "applied once"
    );

    // And the conversation carries on.
    let (status, next) = post_message(&app, &token, "and the next one", "next").await;
    assert_eq!(status, 201, "{next}");
    let (_, listed) = app
        .call(
            Method::GET,
            &format!(
                "/api/chat/messages?conversation_id={}",
                first["data"]["conversation_id"]
            ),
            Some(&token),
            None,
        )
        .await;
    let contents: Vec<&str> = listed["data"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["hello", "did this arrive?", "and the next one"]);
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_answer_503_while_the_database_is_down_and_work_again_when_it_returns() {
    let (db, proxy, app) = behind_a_database_proxy().await;
    let (_, token) = app.session(Role::User, None).await;
    let (status, _) = post_message(&app, &token, "before", "before").await;
    assert_eq!(status, 201);

    proxy.take_down();
    let started = Instant::now();
    let (status, refused) = post_message(&app, &token, "during", "during").await;
    let detected = started.elapsed();
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error_code"], "UNAVAILABLE");
    println!("database down: a write answered 503 after {detected:?}");
    assert!(detected <= DATABASE_DETECTION, "{detected:?}");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the process stays up"
    );
    assert!(
        sent_with(&db.store, "during").await.is_empty(),
        "nothing acknowledged, nothing written"
    );

    proxy.bring_up();
    let back = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (status, body) = post_message(&app, &token, "after", "after").await;
        if status == 201 || status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            back.elapsed() < RECOVERY,
            "not recovered after {:?}",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "database back: writes work again after {:?} ({attempt} attempts)",
        back.elapsed()
    );
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(sent_with(&db.store, "after").await.len(), 1);
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_fail_closed_while_redis_is_down_and_work_again_when_it_returns() {
    let db = TestDb::mysql().await;
    let redis = redis_url();
    let proxy = Proxy::start(&host_port(&redis, 6379)).await;
    let app = TestApp::spawn_with(
        &db,
        &[("CHAT_REDIS_URL", &through(&redis, &proxy.address()))],
    )
    .await;
    let (_, token) = app.session(Role::User, None).await;
    let (status, _) = app
        .call(Method::GET, "/api/chat/conversations", Some(&token), None)
        .await;
    assert_eq!(status, 200);

    proxy.take_down();
    for _ in 0..3 {
        let started = Instant::now();
        let (status, refused) = app
            .call(Method::GET, "/api/chat/conversations", Some(&token), None)
            .await;
        let detected = started.elapsed();
        assert_eq!(status, 503, "never served without its session: {refused}");
        assert_eq!(refused["error_code"], "UNAVAILABLE");
        println!("redis down: a request answered 503 after {detected:?}");
        assert!(detected <= REDIS_DETECTION, "{detected:?}");
    }
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the process stays up"
    );

    proxy.bring_up();
    let back = Instant::now();
    loop {
        let (status, body) = app
            .call(Method::GET, "/api/chat/conversations", Some(&token), None)
            .await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            back.elapsed() < RECOVERY,
            "not recovered after {:?}",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("redis back: sessions work again after {:?}", back.elapsed());
    app.stop().await;
    db.cleanup().await;
}
