//! Authentication: the app signature and its replay guard, bearer sessions in Redis and in the
//! database on each back end, the generated app secret, and the axum middleware and extractor
//! over real HTTP.

use crate::support;

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use chatd::auth::{Auth, AuthError, Session, sign, string_to_sign};
use chatd::config::Config;
use events::Role;
use rand::Rng;
use redis::AsyncCommands;
use support::*;

fn random_hex() -> String {
    format!("{:032x}", rand::thread_rng().r#gen::<u128>())
}

fn temp_dir(label: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("chatd-auth-{label}-{}", random_hex()))
}

/// A config with its own data directory and, when given, its own app secret.
fn config(data_dir: &std::path::Path, secret: Option<&str>) -> Config {
    let data_dir = data_dir.display().to_string();
    let secret = secret.map(str::to_string);
    Config::from_lookup(move |name| match name {
        "CHAT_DATA_DIR" => Some(data_dir.clone()),
        "CHAT_APP_SECRET" => secret.clone(),
        _ => None,
    })
    .expect("config")
}

/// An Auth with a secret no other test uses (so signatures never collide in a shared Redis).
async fn auth_with(db: &TestDb, redis: Option<redis::aio::ConnectionManager>) -> (Auth, String) {
    let secret = random_hex();
    let auth = Auth::new(&config(&temp_dir("cfg"), Some(&secret)), &db.store, redis)
        .await
        .expect("auth");
    (auth, secret)
}

fn now_ms() -> i64 {
    chatd::auth::now_millis()
}

fn signed_headers(secret: &str, ts: i64, method: &str, path: &str, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-timestamp",
        HeaderValue::from_str(&ts.to_string()).unwrap(),
    );
    headers.insert(
        "x-signature",
        HeaderValue::from_str(&sign(secret, ts, method, path, body)).unwrap(),
    );
    headers
}

fn user_session(id: u64) -> Session {
    Session {
        user_id: id,
        role: Role::User,
        identifier: format!("user_uuid_{id}"),
    }
}

#[test]
fn the_string_to_sign_is_timestamp_method_path_and_body_hash_on_four_lines() {
    let text = string_to_sign(1_700_000_000_000, "GET", "/api/chat/messages?limit=5", b"");

    assert_eq!(
        text,
        "1700000000000\nGET\n/api/chat/messages?limit=5\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let signature = sign(
        "k",
        1_700_000_000_000,
        "GET",
        "/api/chat/messages?limit=5",
        b"",
    );
    assert_eq!(signature.len(), 64);
    assert!(
        signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[tokio::test]
async fn a_correctly_signed_request_passes() {
    let db = TestDb::sqlite().await;
    let (auth, secret) = auth_with(&db, None).await;
    let body = br#"{"message":"hi"}"#;
    let headers = signed_headers(&secret, now_ms(), "POST", "/api/chat/messages?x=1", body);

    let result = auth
        .verify_request("POST", "/api/chat/messages?x=1", &headers, body)
        .await;

    assert_eq!(result, Ok(()));
    db.cleanup().await;
}

#[tokio::test]
async fn changing_any_signed_part_is_refused_with_invalid_signature() {
    let db = TestDb::sqlite().await;
    let (auth, secret) = auth_with(&db, None).await;
    let ts = now_ms();
    let path = "/api/chat/messages?conversation_id=7";
    let body = br#"{"message":"hi"}"#;
    let headers = signed_headers(&secret, ts, "POST", path, body);
    let mut other_timestamp = headers.clone();
    other_timestamp.insert(
        "x-timestamp",
        HeaderValue::from_str(&(ts - 1).to_string()).unwrap(),
    );

    let cases: [(&str, &HeaderMap, &str, &str, &[u8]); 5] = [
        ("timestamp", &other_timestamp, "POST", path, body),
        ("method", &headers, "PUT", path, body),
        (
            "path",
            &headers,
            "POST",
            "/api/chat/messagez?conversation_id=7",
            body,
        ),
        (
            "query",
            &headers,
            "POST",
            "/api/chat/messages?conversation_id=8",
            body,
        ),
        ("body", &headers, "POST", path, br#"{"message":"hI"}"#),
    ];
    for (part, headers, method, path, body) in cases {
        let result = auth.verify_request(method, path, headers, body).await;
        assert_eq!(result, Err(AuthError::InvalidSignature), "changed {part}");
    }
    // None of the refused attempts used up the genuine request.
    assert_eq!(
        auth.verify_request("POST", path, &headers, body).await,
        Ok(())
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_missing_or_malformed_signature_is_invalid_and_a_missing_timestamp_is_stale() {
    let db = TestDb::sqlite().await;
    let (auth, secret) = auth_with(&db, None).await;
    let ts = now_ms();
    let good = signed_headers(&secret, ts, "GET", "/api/x", b"");

    let mut missing = good.clone();
    missing.remove("x-signature");
    let mut uppercase = good.clone();
    let upper = good["x-signature"].to_str().unwrap().to_ascii_uppercase();
    uppercase.insert("x-signature", HeaderValue::from_str(&upper).unwrap());
    let mut other_secret = good.clone();
    other_secret.insert(
        "x-signature",
        HeaderValue::from_str(&sign("not-the-secret", ts, "GET", "/api/x", b"")).unwrap(),
    );
    let mut no_timestamp = good.clone();
    no_timestamp.remove("x-timestamp");
    let mut two_signatures = good.clone();
    two_signatures.append("x-signature", HeaderValue::from_static("00"));
    let mut text_timestamp = good.clone();
    text_timestamp.insert("x-timestamp", HeaderValue::from_static("yesterday"));

    let unsigned = axum::http::HeaderMap::new();

    for (case, headers, expected) in [
        (
            "no signature headers at all",
            &unsigned,
            AuthError::Unsigned,
        ),
        ("missing signature", &missing, AuthError::InvalidSignature),
        ("uppercase hex", &uppercase, AuthError::InvalidSignature),
        ("another secret", &other_secret, AuthError::InvalidSignature),
        (
            "two signatures",
            &two_signatures,
            AuthError::InvalidSignature,
        ),
        (
            "missing timestamp",
            &no_timestamp,
            AuthError::StaleTimestamp,
        ),
        (
            "unparsable timestamp",
            &text_timestamp,
            AuthError::StaleTimestamp,
        ),
    ] {
        let result = auth.verify_request("GET", "/api/x", headers, b"").await;
        assert_eq!(result, Err(expected), "{case}");
    }
    db.cleanup().await;
}

#[tokio::test]
async fn a_timestamp_more_than_300_seconds_away_either_way_is_stale() {
    let db = TestDb::sqlite().await;
    let (auth, secret) = auth_with(&db, None).await;

    for (case, offset_ms) in [("301 s old", -301_000), ("301 s ahead", 301_000)] {
        let ts = now_ms() + offset_ms;
        let headers = signed_headers(&secret, ts, "GET", "/api/x", b"");
        let result = auth.verify_request("GET", "/api/x", &headers, b"").await;
        assert_eq!(result, Err(AuthError::StaleTimestamp), "{case}");
    }
    for (case, offset_ms) in [("290 s old", -290_000), ("290 s ahead", 290_000)] {
        let ts = now_ms() + offset_ms;
        let headers = signed_headers(&secret, ts, "GET", "/api/x", b"");
        let result = auth.verify_request("GET", "/api/x", &headers, b"").await;
        assert_eq!(result, Ok(()), "{case}");
    }
    db.cleanup().await;
}

async fn the_same_request_twice_is_a_replay(auth: &Auth, secret: &str) {
    let headers = signed_headers(secret, now_ms(), "POST", "/api/chat/messages", b"{}");

    let first = auth
        .verify_request("POST", "/api/chat/messages", &headers, b"{}")
        .await;
    let second = auth
        .verify_request("POST", "/api/chat/messages", &headers, b"{}")
        .await;

    assert_eq!(first, Ok(()));
    assert_eq!(second, Err(AuthError::ReplayedRequest));

    // The same token with its header spelt otherwise is the same caller: still a replay.
    let mut headers = signed_headers(secret, now_ms(), "POST", "/api/chat/messages", b"{}");
    headers.insert("authorization", "Bearer tok-replayed".parse().unwrap());
    assert_eq!(
        auth.verify_request("POST", "/api/chat/messages", &headers, b"{}")
            .await,
        Ok(())
    );
    for spelling in [
        "bearer tok-replayed",
        "BEARER tok-replayed",
        "Bearer  tok-replayed",
        " Bearer tok-replayed ",
        "Bearer \ttok-replayed",
    ] {
        headers.insert("authorization", spelling.parse().unwrap());
        assert_eq!(
            auth.verify_request("POST", "/api/chat/messages", &headers, b"{}")
                .await,
            Err(AuthError::ReplayedRequest),
            "{spelling:?}"
        );
    }
    // Another token is another caller.
    headers.insert("authorization", "Bearer tok-other".parse().unwrap());
    assert_eq!(
        auth.verify_request("POST", "/api/chat/messages", &headers, b"{}")
            .await,
        Ok(())
    );
}

#[tokio::test]
async fn the_same_signed_request_twice_is_refused_as_replayed_in_process() {
    let db = TestDb::sqlite().await;
    let (auth, secret) = auth_with(&db, None).await;
    the_same_request_twice_is_a_replay(&auth, &secret).await;
    db.cleanup().await;
}

#[tokio::test]
async fn the_same_signed_request_twice_is_refused_as_replayed_with_redis_even_on_another_node() {
    let db = TestDb::sqlite().await;
    let (auth, secret) = auth_with(&db, Some(redis().await)).await;
    the_same_request_twice_is_a_replay(&auth, &secret).await;

    // A second node with the same secret and Redis refuses what the first accepted.
    let other_node = Auth::new(
        &config(&temp_dir("node"), Some(&secret)),
        &db.store,
        Some(redis().await),
    )
    .await
    .expect("auth");
    let headers = signed_headers(&secret, now_ms(), "GET", "/api/y", b"");
    assert_eq!(
        auth.verify_request("GET", "/api/y", &headers, b"").await,
        Ok(())
    );
    assert_eq!(
        other_node
            .verify_request("GET", "/api/y", &headers, b"")
            .await,
        Err(AuthError::ReplayedRequest)
    );
    db.cleanup().await;
}

#[tokio::test]
async fn a_session_created_in_redis_resolves_until_deleted_and_unknown_tokens_do_not() {
    let db = TestDb::sqlite().await;
    let (auth, _) = auth_with(&db, Some(redis().await)).await;
    let session = Session {
        user_id: 42,
        role: Role::Admin,
        identifier: "admin_alice".into(),
    };

    let token = auth
        .create_session(&session, Duration::from_secs(60))
        .await
        .expect("create");

    assert!(token.len() >= 64 && token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(auth.session(&token).await, Ok(session));
    let mut raw = redis().await;
    let ttl: i64 = raw.ttl(format!("chat:session:{token}")).await.unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    assert_eq!(
        auth.session(&random_hex()).await,
        Err(AuthError::Unauthorized)
    );
    assert_eq!(auth.session("").await, Err(AuthError::Unauthorized));
    assert_eq!(
        auth.session("bad token\n").await,
        Err(AuthError::Unauthorized)
    );
    auth.delete_session(&token).await.expect("delete");
    assert_eq!(auth.session(&token).await, Err(AuthError::Unauthorized));
    db.cleanup().await;
}

#[tokio::test]
async fn a_session_written_by_the_login_system_is_read_and_malformed_ones_are_unauthorized() {
    let db = TestDb::sqlite().await;
    let (auth, _) = auth_with(&db, Some(redis().await)).await;
    let mut raw = redis().await;
    let good = random_hex();
    let _: () = raw
        .set_ex(
            format!("chat:session:{good}"),
            r#"{"user_id":42,"role":"user","identifier":"user_uuid_42"}"#,
            60,
        )
        .await
        .unwrap();

    assert_eq!(auth.session(&good).await, Ok(user_session(42)));

    let malformed = [
        "not json",
        "",
        r#"{"user_id":42,"role":"user"}"#,
        r#"{"user_id":0,"role":"user","identifier":"u"}"#,
        r#"{"user_id":-1,"role":"user","identifier":"u"}"#,
        r#"{"user_id":9007199254740992,"role":"user","identifier":"u"}"#,
        r#"{"user_id":42.5,"role":"user","identifier":"u"}"#,
        r#"{"user_id":"42","role":"user","identifier":"u"}"#,
        r#"{"user_id":42,"role":"system","identifier":"u"}"#,
        r#"{"user_id":42,"role":"root","identifier":"u"}"#,
        r#"{"user_id":42,"role":"User","identifier":"u"}"#,
        r#"{"user_id":42,"role":"user","identifier":""}"#,
        r#"{"user_id":42,"role":"user","identifier":"a\u0000b"}"#,
        r#"[42,"user","u"]"#,
    ];
    for json in malformed {
        let token = random_hex();
        let _: () = raw
            .set_ex(format!("chat:session:{token}"), json, 60)
            .await
            .unwrap();
        assert_eq!(
            auth.session(&token).await,
            Err(AuthError::Unauthorized),
            "{json}"
        );
    }
    // Something else than a string under the key is no session either.
    let token = random_hex();
    let key = format!("chat:session:{token}");
    let _: () = raw.hset(&key, "user_id", 42).await.unwrap();
    let _: () = raw.expire(&key, 60).await.unwrap();
    assert_eq!(auth.session(&token).await, Err(AuthError::Unauthorized));
    db.cleanup().await;
}

#[tokio::test]
async fn sessions_in_the_database_resolve_on_each_back_end_and_only_the_token_hash_is_stored() {
    for db in TestDb::each().await {
        let (auth, _) = auth_with(&db, None).await;
        let session = Session {
            user_id: 7,
            role: Role::Auditor,
            identifier: "auditor_bob".into(),
        };

        let token = auth
            .create_session(&session, Duration::from_secs(3600))
            .await
            .expect("create");

        assert_eq!(auth.session(&token).await, Ok(session), "{}", db.name());
        assert_eq!(
            auth.session(&random_hex()).await,
            Err(AuthError::Unauthorized)
        );
        let (by_token, by_hash) = stored_rows(&db, &token).await;
        assert_eq!((by_token, by_hash), (0, 1), "{}", db.name());
        auth.delete_session(&token).await.expect("delete");
        assert_eq!(auth.session(&token).await, Err(AuthError::Unauthorized));
        db.cleanup().await;
    }
}

async fn stored_rows(db: &TestDb, token: &str) -> (i64, i64) {
    use chatd::store::EventStore;
    let hash = chatd::auth::sha256_hex(token.as_bytes());
    let sql = "select count(*) from sessions where token_hash = ?";
    match &db.store {
        EventStore::MySql(s) => (
            sqlx::query_scalar(sql)
                .bind(token)
                .fetch_one(s.pool())
                .await
                .unwrap(),
            sqlx::query_scalar(sql)
                .bind(&hash)
                .fetch_one(s.pool())
                .await
                .unwrap(),
        ),
        EventStore::Sqlite(s) => (
            sqlx::query_scalar(sql)
                .bind(token)
                .fetch_one(s.pool())
                .await
                .unwrap(),
            sqlx::query_scalar(sql)
                .bind(&hash)
                .fetch_one(s.pool())
                .await
                .unwrap(),
        ),
    }
}

#[tokio::test]
async fn an_expired_session_is_unauthorized_in_redis_and_in_the_database() {
    let mut auths = Vec::new();
    let dbs = TestDb::each().await;
    for db in &dbs {
        auths.push((db.name(), auth_with(db, None).await.0));
    }
    auths.push(("redis", auth_with(&dbs[0], Some(redis().await)).await.0));
    let mut tokens = Vec::new();
    for (name, auth) in &auths {
        let token = auth
            .create_session(&user_session(5), Duration::from_secs(1))
            .await
            .expect("create");
        assert_eq!(auth.session(&token).await, Ok(user_session(5)), "{name}");
        tokens.push(token);
    }

    tokio::time::sleep(Duration::from_millis(2100)).await;

    for ((name, auth), token) in auths.iter().zip(&tokens) {
        assert_eq!(
            auth.session(token).await,
            Err(AuthError::Unauthorized),
            "{name}"
        );
    }
    for db in dbs {
        db.cleanup().await;
    }
}

#[tokio::test]
async fn a_session_that_is_not_a_session_is_refused_at_creation() {
    let db = TestDb::sqlite().await;
    let (auth, _) = auth_with(&db, None).await;
    for session in [
        Session {
            user_id: 0,
            role: Role::User,
            identifier: "u".into(),
        },
        Session {
            user_id: 1 << 53,
            role: Role::User,
            identifier: "u".into(),
        },
        Session {
            user_id: 1,
            role: Role::System,
            identifier: "u".into(),
        },
        Session {
            user_id: 1,
            role: Role::User,
            identifier: " ".into(),
        },
    ] {
        let result = auth.create_session(&session, Duration::from_secs(60)).await;
        assert_eq!(result, Err(AuthError::Unauthorized), "{session:?}");
    }
    db.cleanup().await;
}

#[tokio::test]
async fn a_redis_on_a_closed_port_makes_sessions_and_signatures_unavailable_within_about_a_second()
{
    let db = TestDb::sqlite().await;
    let dead = chatd::redis::connect_lazy("redis://127.0.0.1:1/").expect("lazy manager");
    let (auth, secret) = auth_with(&db, Some(dead)).await;
    let headers = signed_headers(&secret, now_ms(), "GET", "/api/x", b"");

    let started = Instant::now();
    let session = auth.session(&random_hex()).await;
    let session_took = started.elapsed();
    let created = auth
        .create_session(&user_session(1), Duration::from_secs(60))
        .await;
    let started = Instant::now();
    let verified = auth.verify_request("GET", "/api/x", &headers, b"").await;
    let verify_took = started.elapsed();

    assert_eq!(session, Err(AuthError::Unavailable));
    assert_eq!(created, Err(AuthError::Unavailable));
    assert_eq!(
        verified,
        Err(AuthError::Unavailable),
        "a valid signature is not accepted blind"
    );
    assert!(
        session_took < Duration::from_millis(1300),
        "{session_took:?}"
    );
    assert!(verify_took < Duration::from_millis(1300), "{verify_took:?}");
    db.cleanup().await;
}

#[tokio::test]
async fn the_generated_app_secret_is_created_once_with_mode_0600_and_reused() {
    let db = TestDb::sqlite().await;
    let data_dir = temp_dir("secret").join("nested");
    let config = config(&data_dir, None);

    let first = Auth::new(&config, &db.store, None)
        .await
        .expect("first start");
    let second = Auth::new(&config, &db.store, None)
        .await
        .expect("second start");

    let file = data_dir.join("app_secret");
    assert_eq!(
        first.app_secret_source(),
        &chatd::auth::SecretSource::Generated(file.clone())
    );
    assert_eq!(
        second.app_secret_source(),
        &chatd::auth::SecretSource::Kept(file.clone())
    );
    assert_eq!(first.app_secret_file(), Some(file.as_path()));
    assert_eq!(first.app_secret().len(), 64);
    assert!(first.app_secret().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(second.app_secret(), first.app_secret());
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        first.app_secret()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let _ = std::fs::remove_dir_all(data_dir.parent().unwrap());
    db.cleanup().await;
}

#[tokio::test]
async fn chat_app_secret_wins_and_no_file_is_written() {
    let db = TestDb::sqlite().await;
    let data_dir = temp_dir("env-secret");

    let auth = Auth::new(&config(&data_dir, Some("from-the-env")), &db.store, None)
        .await
        .expect("auth");

    assert_eq!(
        auth.app_secret_source(),
        &chatd::auth::SecretSource::Configured
    );
    assert_eq!(auth.app_secret(), "from-the-env");
    assert!(!data_dir.join("app_secret").exists());
    db.cleanup().await;
}

mod over_http {
    //! The middleware and the extractor in a real router, served on a real port, nested under
    //! `/api` as the service nests it.

    use axum::body::Bytes;
    use axum::routing::post;
    use axum::{Json, Router, middleware};
    use chatd::app::App;
    use chatd::auth::{MAX_JSON_BODY, sign};
    use chatd::http::auth::{Caller, require_signature};
    use serde_json::{Value, json};

    use super::*;

    async fn echo(Caller(session): Caller, body: Bytes) -> Json<Value> {
        Json(json!({"user_id": session.user_id, "body": String::from_utf8_lossy(&body)}))
    }

    async fn serve(state: App) -> String {
        let api = Router::new()
            .route("/echo", post(echo))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                require_signature,
            ));
        let app = Router::new().nest("/api", api).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    fn signed(
        client: &reqwest::Client,
        address: &str,
        secret: &str,
        path: &str,
        body: Vec<u8>,
    ) -> reqwest::RequestBuilder {
        let ts = chatd::auth::now_millis();
        client
            .post(format!("{address}{path}"))
            .header("x-timestamp", ts.to_string())
            .header("x-signature", sign(secret, ts, "POST", path, &body))
            .body(body)
    }

    #[tokio::test]
    async fn a_signed_request_with_a_session_reaches_the_handler_with_its_body() {
        let db = TestDb::sqlite().await;
        let app = TestApp::spawn(&db).await;
        let secret = app.state.auth.app_secret().to_string();
        let token = app
            .state
            .auth
            .create_session(&user_session(42), Duration::from_secs(60))
            .await
            .unwrap();
        let address = serve(app.state.clone()).await;
        let client = reqwest::Client::new();

        let ok = signed(
            &client,
            &address,
            &secret,
            "/api/echo?q=1",
            br#"{"a":1}"#.to_vec(),
        )
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
        assert_eq!(ok.status(), 200);
        let ok: Value = ok.json().await.unwrap();
        assert_eq!(ok, json!({"user_id": 42, "body": "{\"a\":1}"}));

        let unsigned = client
            .post(format!("{address}/api/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status(), 401);
        let unsigned: Value = unsigned.json().await.unwrap();
        assert_eq!(unsigned["status"], "error");
        // The contract's code for a missing X-Signature, with what an unsigned client lacks.
        assert_eq!(unsigned["error_code"], "INVALID_SIGNATURE");
        assert!(
            unsigned["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("X-Timestamp and X-Signature are missing"),
            "{unsigned}"
        );

        let no_session = signed(&client, &address, &secret, "/api/echo", b"{}".to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(no_session.status(), 401);
        let no_session: Value = no_session.json().await.unwrap();
        assert_eq!(no_session["error_code"], "UNAUTHORIZED");

        let basic = signed(&client, &address, &secret, "/api/echo", b"{}".to_vec())
            .header("authorization", format!("Basic {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401);

        let wrong = client
            .post(format!("{address}/api/echo"))
            .header("x-timestamp", chatd::auth::now_millis().to_string())
            .header("x-signature", "0".repeat(64))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let wrong: Value = wrong.json().await.unwrap();
        assert_eq!(wrong["error_code"], "INVALID_SIGNATURE");

        app.stop().await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn a_body_over_64_kib_is_refused_with_payload_too_large() {
        let db = TestDb::sqlite().await;
        let app = TestApp::spawn(&db).await;
        let secret = app.state.auth.app_secret().to_string();
        let address = serve(app.state.clone()).await;
        let client = reqwest::Client::new();

        let response = signed(
            &client,
            &address,
            &secret,
            "/api/echo",
            vec![b'a'; MAX_JSON_BODY + 1],
        )
        .send()
        .await
        .unwrap();

        assert_eq!(response.status(), 413);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["error_code"], "PAYLOAD_TOO_LARGE");
        app.stop().await;
        db.cleanup().await;
    }
}

/// Sessions read recently are reused for `CHAT_SESSION_CACHE_MS`: one ended through chatd is
/// refused at once, one ended in Redis by the login system at most that long after; 0 turns
/// the reuse off.
#[tokio::test]
async fn a_session_read_recently_is_reused_briefly_and_an_ended_one_is_forgotten() {
    let db = TestDb::sqlite().await;
    let mut raw = redis().await;
    let with_cache = |millis: &'static str| {
        let data_dir = temp_dir("cfg").display().to_string();
        let secret = random_hex();
        Config::from_lookup(move |name| match name {
            "CHAT_DATA_DIR" => Some(data_dir.clone()),
            "CHAT_APP_SECRET" => Some(secret.clone()),
            "CHAT_SESSION_CACHE_MS" => Some(millis.to_string()),
            _ => None,
        })
        .expect("config")
    };
    let login_system_session = async |raw: &mut redis::aio::ConnectionManager| {
        let token = random_hex();
        let _: () = raw
            .set_ex(
                format!("chat:session:{token}"),
                r#"{"user_id":42,"role":"user","identifier":"user_uuid_42"}"#,
                60,
            )
            .await
            .unwrap();
        token
    };

    let auth = Auth::new(&with_cache("300"), &db.store, Some(redis().await))
        .await
        .expect("auth");
    let token = login_system_session(&mut raw).await;
    assert_eq!(auth.session(&token).await, Ok(user_session(42)));
    let _: () = raw.del(format!("chat:session:{token}")).await.unwrap();
    assert_eq!(
        auth.session(&token).await,
        Ok(user_session(42)),
        "read again within the reuse time"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(auth.session(&token).await, Err(AuthError::Unauthorized));

    let token = login_system_session(&mut raw).await;
    assert_eq!(auth.session(&token).await, Ok(user_session(42)));
    auth.delete_session(&token).await.expect("delete");
    assert_eq!(auth.session(&token).await, Err(AuthError::Unauthorized));

    let auth = Auth::new(&with_cache("0"), &db.store, Some(redis().await))
        .await
        .expect("auth");
    let token = login_system_session(&mut raw).await;
    assert_eq!(auth.session(&token).await, Ok(user_session(42)));
    let _: () = raw.del(format!("chat:session:{token}")).await.unwrap();
    assert_eq!(auth.session(&token).await, Err(AuthError::Unauthorized));
    db.cleanup().await;
}

#[tokio::test]
async fn deployments_sharing_a_redis_keep_their_replay_records_under_their_own_prefixes() {
    let db = TestDb::sqlite().await;
    let secret = random_hex();
    let deployment = |prefix: String| {
        let data_dir = temp_dir("deployment").display().to_string();
        let secret = secret.clone();
        Config::from_lookup(move |name| match name {
            "CHAT_DATA_DIR" => Some(data_dir.clone()),
            "CHAT_APP_SECRET" => Some(secret.clone()),
            "CHAT_REDIS_PREFIX" => Some(prefix.clone()),
            _ => None,
        })
        .expect("config")
    };
    let prefix = format!("replay-{}", random_hex());
    let first = Auth::new(
        &deployment(format!("{prefix}-a")),
        &db.store,
        Some(redis().await),
    )
    .await
    .expect("auth");
    let second = Auth::new(
        &deployment(format!("{prefix}-b")),
        &db.store,
        Some(redis().await),
    )
    .await
    .expect("auth");
    let headers = signed_headers(&secret, now_ms(), "GET", "/api/z", b"");

    assert_eq!(
        first.verify_request("GET", "/api/z", &headers, b"").await,
        Ok(())
    );
    assert_eq!(
        second.verify_request("GET", "/api/z", &headers, b"").await,
        Ok(())
    );
    assert_eq!(
        first.verify_request("GET", "/api/z", &headers, b"").await,
        Err(AuthError::ReplayedRequest)
    );
    let mut raw = redis().await;
    let keys: Vec<String> = raw.keys(format!("{prefix}-*")).await.unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|key| key.contains(":sig:")), "{keys:?}");
    db.cleanup().await;
}
