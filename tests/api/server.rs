//! The real server over real HTTP, on each back end.

use crate::support;

use serde_json::Value;
use support::*;

#[tokio::test]
async fn healthz_and_readyz_answer_in_the_contract_envelope() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;

        let health = app.get("/healthz").await;
        let ready = app.get("/readyz").await;

        assert_eq!(health.status(), 200, "{}", db.name());
        let health: Value = health.json().await.unwrap();
        assert_eq!(health["status"], "success");
        assert_eq!(ready.status(), 200);
        let ready: Value = ready.json().await.unwrap();
        assert_eq!(ready["data"]["database"]["backend"], db.name());
        assert_eq!(ready["data"]["database"]["head_position"], 0);
        let redis = if db.backend == chatd::store::Backend::MySql {
            "ok"
        } else {
            "not configured"
        };
        assert_eq!(ready["data"]["redis"], redis);
        let projectors = ready["data"]["projectors"].as_array().unwrap();
        let names: Vec<_> = projectors
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let mut expected: Vec<&str> = projections::all_projectors()
            .iter()
            .map(|p| p.name())
            .collect();
        expected.sort_unstable();
        assert_eq!(names, expected, "every projector, by name");
        assert!(
            projectors
                .iter()
                .all(|p| p["lag"] == 0 && p["last_error"].is_null())
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn readyz_answers_503_unavailable_when_the_database_is_gone() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        app.state_store().close().await;

        let ready = app.get("/readyz").await;

        assert_eq!(ready.status(), 503, "{}", db.name());
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["error_code"], "UNAVAILABLE");
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn every_api_answer_is_no_store_and_nosniff_errors_included() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token) = app.session(events::Role::User, None).await;
        let signed = app
            .signed(
                reqwest::Method::GET,
                "/api/chat/conversations",
                Some(&token),
                None,
            )
            .send()
            .await
            .expect("signed");
        let unsigned = app.get("/api/chat/conversations").await;
        let unknown = app.get("/api/chat/nothing-here").await;
        let wrong_method = app
            .signed(
                reqwest::Method::DELETE,
                "/api/chat/messages",
                Some(&token),
                None,
            )
            .send()
            .await
            .expect("delete");
        let upload = app
            .client
            .post(format!("{}/api/chat/upload", app.address))
            .send()
            .await
            .expect("upload");
        let document = app.get("/api/openapi.json").await;
        for (what, response, status) in [
            ("a signed read", signed, 200),
            ("an unsigned read", unsigned, 401),
            ("an unknown route", unknown, 404),
            ("a wrong method", wrong_method, 405),
            ("an unsigned upload", upload, 401),
            ("the API document", document, 200),
        ] {
            assert_eq!(response.status().as_u16(), status, "{}: {what}", db.name());
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            assert_eq!(header("cache-control"), "no-store", "{}: {what}", db.name());
            assert_eq!(
                header("x-content-type-options"),
                "nosniff",
                "{}: {what}",
                db.name()
            );
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn an_unknown_route_is_404() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db).await;
    assert_eq!(app.get("/nope").await.status(), 404);
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test]
async fn a_read_right_after_an_acknowledged_write_shows_it() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, token) = app.session(events::Role::User, None).await;
        for n in 0..20 {
            let (status, sent) = app
                .call(
                    reqwest::Method::POST,
                    "/api/chat/messages",
                    Some(&token),
                    Some(&serde_json::json!({"message": format!("message {n}")})),
                )
                .await;
            assert_eq!(status, 201);

            let (_, history) = app
                .call(
                    reqwest::Method::GET,
                    "/api/chat/messages?limit=1",
                    Some(&token),
                    None,
                )
                .await;

            assert_eq!(
                history["data"]["messages"][0]["id"],
                sent["data"]["id"],
                "{}: message {n} visible right after the ack",
                db.name()
            );
        }
        app.stop().await;
        db.cleanup().await;
    }
}

const OPS_TOKEN: &str = "an-operators-token-0123";

#[tokio::test]
async fn readyz_names_a_failed_projector_to_everyone_but_its_error_only_to_operators() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_OPS_TOKEN", OPS_TOKEN)]).await;
        let (_, user) = app.session(events::Role::User, None).await;
        let (status, opened) = app
            .call(
                reqwest::Method::POST,
                "/api/chat/conversations",
                Some(&user),
                Some(&serde_json::json!({"initial_message": "hello"})),
            )
            .await;
        assert_eq!(status, 201, "{opened}");
        let conversation = opened["data"]["conversation_id"].as_u64().unwrap();
        let head = app
            .state_store()
            .read_stream(
                chatd::store::CONVERSATION_STREAM,
                &conversation.to_string(),
                0,
            )
            .await
            .unwrap()
            .len() as u64;
        // An event no projector knows: each stops on it with an error naming its position.
        support::raw_log::append_raw(
            app.state_store(),
            &[support::raw_log::raw_event(
                &conversation.to_string(),
                head + 1,
                "ConversationTeleported",
                "1",
                serde_json::json!({}),
            )],
        )
        .await
        .unwrap();

        // Every projector stops on the event, each when it reaches it: the first one seen failed
        // is the one followed through the other views.
        let readyz = |forwarded: bool, token: Option<&str>, name: Option<Value>| {
            let mut request = app.client.get(format!("{}/readyz", app.address));
            if forwarded {
                request = request.header("X-Forwarded-For", "203.0.113.7");
            }
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move {
                let body: Value = request.send().await.unwrap().json().await.unwrap();
                body["data"]["projectors"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .find(|p| {
                        p["state"] == "failed" && name.as_ref().is_none_or(|n| p["name"] == *n)
                    })
            }
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        let local = loop {
            if let Some(failed) = readyz(false, None, None).await {
                break failed;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: no projector failed",
                db.name()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let error = |p: &Value| p["last_error"].as_str().unwrap_or_default().to_string();
        assert!(error(&local).contains("position"), "{}: {local}", db.name());

        let name = Some(local["name"].clone());
        let through_a_proxy = readyz(true, None, name.clone())
            .await
            .expect("still failed");
        assert_eq!(through_a_proxy["name"], local["name"]);
        assert!(
            !error(&through_a_proxy).contains("position"),
            "{through_a_proxy}"
        );
        assert!(!error(&through_a_proxy).is_empty());
        let wrong_token = readyz(true, Some("an-operators-token-0124"), name.clone())
            .await
            .unwrap();
        assert!(!error(&wrong_token).contains("position"), "{wrong_token}");
        let operator = readyz(true, Some(OPS_TOKEN), name).await.unwrap();
        assert_eq!(error(&operator), error(&local));

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn metrics_move_to_their_own_listener_when_chat_metrics_bind_is_set() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn_with(&db, &[("CHAT_METRICS_BIND", "127.0.0.1:0")]).await;
    let metrics_address = app.metrics_address.clone().expect("a metrics listener");

    assert_eq!(app.get("/metrics").await.status(), 404);
    let metrics = app
        .client
        .get(format!("{metrics_address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("chatd_"));
    let ready = app
        .client
        .get(format!("{metrics_address}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    app.stop().await;
    db.cleanup().await;
}
