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
