//! The real server over real HTTP, on each back end.

mod support;

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
        let projectors = ready["data"]["projectors"].as_array().unwrap();
        let names: Vec<_> = projectors
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["conversations", "messages"]);
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
async fn an_acknowledged_command_is_in_the_read_tables_at_once() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        for n in 0..20 {
            let alice = user(1);
            let committed = app
                .state
                .execute(
                    chatd::commands::Intent::OpenOrContinue {
                        actor: alice.clone(),
                        message: Some(text(&format!("message {n}"))),
                    },
                    meta(&alice),
                )
                .await
                .unwrap();
            let last = message_id_of(committed.events.last().unwrap());

            let seen = count(
                &db.store,
                &format!("select count(*) from messages where id = {last}"),
            )
            .await;

            assert_eq!(
                seen,
                1,
                "{}: message {n} visible right after the ack",
                db.name()
            );
        }
        app.stop().await;
        db.cleanup().await;
    }
}

async fn count(store: &chatd::store::EventStore, sql: &str) -> i64 {
    match store {
        chatd::store::EventStore::MySql(s) => {
            sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap()
        }
        chatd::store::EventStore::Sqlite(s) => {
            sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap()
        }
    }
}
