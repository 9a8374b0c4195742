//! Editing and deleting messages (`PATCH` and `DELETE /api/chat/messages/{id}`) through real
//! HTTP, on both back ends: the sender within the edit window, staff removing with a reason;
//! history, the conversation's preview, search and the audit each follow; every refusal answers
//! in the envelope and writes nothing.

use crate::support;

use std::time::Duration;

use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

async fn send(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, sent) = app
        .call(Method::POST, "/api/chat/messages", Some(token), Some(&body))
        .await;
    assert!(status == 201, "send {body}: {status} {sent}");
    sent["data"].clone()
}

async fn edit(app: &TestApp, token: &str, id: u64, text: &str) -> (u16, Value) {
    app.call(
        Method::PATCH,
        &format!("/api/chat/messages/{id}"),
        Some(token),
        Some(&json!({"message": text})),
    )
    .await
}

async fn delete(app: &TestApp, token: &str, id: u64, reason: Option<&str>) -> (u16, Value) {
    let body = reason.map(|reason| json!({"reason": reason}));
    app.call(
        Method::DELETE,
        &format!("/api/chat/messages/{id}"),
        Some(token),
        body.as_ref(),
    )
    .await
}

async fn history(app: &TestApp, token: &str, conversation: u64) -> Vec<Value> {
    let (status, page) = app
        .call(
            Method::GET,
            &format!("/api/chat/messages?conversation_id={conversation}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["data"]["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn search(app: &TestApp, token: &str, conversation: u64, q: &str) -> Vec<u64> {
    let (status, page) = app
        .call(
            Method::GET,
            &format!("/api/chat/search?q={q}&conversation_id={conversation}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "search {q}: {page}");
    page["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["message_id"].as_u64().unwrap())
        .collect()
}

/// The conversation as the auditor's `state` shows it now.
async fn audit_state(app: &TestApp, auditor: &str, conversation: u64) -> Value {
    let (status, state) = app
        .call(
            Method::GET,
            &format!("/api/audit/conversations/{conversation}/state"),
            Some(auditor),
            None,
        )
        .await;
    assert_eq!(status, 200, "{state}");
    state["data"].clone()
}

fn id_of(message: &Value) -> u64 {
    message["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("id in {message}"))
}

fn error_of(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["error_code"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sender_edits_and_withdraws_and_every_view_follows() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let first = send(&app, &user, json!({"message": "my odrer is 4411"})).await;
        let conversation = first["conversation_id"].as_u64().unwrap();
        let second = send(
            &app,
            &user,
            json!({"conversation_id": conversation, "message": "call me, passphrase swordfish"}),
        )
        .await;

        let (status, edited) = edit(&app, &user, id_of(&first), "my order is 4411").await;
        assert_eq!(status, 200, "{}: {edited}", db.name());
        let edited = &edited["data"];
        assert_eq!(
            (id_of(edited), &edited["message"], &edited["content"]),
            (
                id_of(&first),
                &json!("my order is 4411"),
                &json!("my order is 4411")
            )
        );
        assert!(edited["edited_at"].is_string(), "{edited}");
        assert_eq!(edited["timestamp"], first["timestamp"], "sent time stays");

        let (status, gone) = delete(&app, &user, id_of(&second), None).await;
        assert_eq!(status, 200, "{}: {gone}", db.name());
        let gone = &gone["data"];
        assert_eq!(
            (
                &gone["deleted"],
                &gone["deleted_by"],
                &gone["content"],
                &gone["message"]
            ),
            (&json!(true), &json!("user"), &json!(""), &json!(""))
        );

        // Both sides' history: the new text with edited_at, and a tombstone.
        for token in [&user, &admin] {
            let messages = history(&app, token, conversation).await;
            assert_eq!(messages.len(), 2, "{messages:?}");
            assert_eq!(messages[0]["content"], "my order is 4411");
            assert_eq!(messages[0]["edited_at"], edited["edited_at"]);
            assert!(messages[0].get("deleted").is_none(), "{}", messages[0]);
            assert_eq!(messages[1]["deleted"], true);
            assert_eq!(messages[1]["content"], "");
            assert!(messages[1].get("edited_at").is_none());
        }

        // The list previews the last message as it reads now.
        let (_, listed) = app
            .call(
                Method::GET,
                &format!("/api/chat/conversations/{conversation}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(
            listed["data"]["last_message"]["id"].as_u64(),
            Some(id_of(&second))
        );
        assert_eq!(listed["data"]["last_message"]["content"], "");

        // Search finds the text as it reads now, and nothing a deleted message said.
        assert_eq!(
            search(&app, &user, conversation, "order").await,
            [id_of(&first)]
        );
        assert!(search(&app, &user, conversation, "odrer").await.is_empty());
        assert!(
            search(&app, &admin, conversation, "swordfish")
                .await
                .is_empty()
        );

        // Nothing changes a deleted message again.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            error_of(&delete(&app, &user, id_of(&second), None).await),
            (409, Some("CONFLICT"))
        );
        assert_eq!(
            error_of(&edit(&app, &user, id_of(&second), "back again").await),
            (409, Some("CONFLICT"))
        );

        // The auditor reads every version, and what the deleted message said.
        let state = audit_state(&app, &auditor, conversation).await;
        let messages = state["messages"].as_array().unwrap();
        assert_eq!(messages[0]["content"], "my order is 4411");
        assert_eq!(
            messages[0]["earlier_versions"][0]["content"],
            "my odrer is 4411"
        );
        assert_eq!(
            messages[0]["earlier_versions"][0]["written_at"],
            first["timestamp"]
        );
        assert_eq!(messages[1]["content"], "call me, passphrase swordfish");
        assert_eq!(
            (&messages[1]["deleted"], &messages[1]["deleted_by"]),
            (&json!(true), &json!("user"))
        );
        let (_, events) = app
            .call(
                Method::GET,
                &format!("/api/audit/conversations/{conversation}/events"),
                Some(&auditor),
                None,
            )
            .await;
        let types: Vec<&str> = events["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "ConversationOpened",
                "MessageSent",
                "MessageSent",
                "MessageEdited",
                "MessageDeleted"
            ],
            "{}",
            db.name()
        );

        // A withdrawn photo's tombstone carries no file either.
        let upload = crate::uploads::upload_ok(
            &app,
            &user,
            conversation,
            "image",
            "photo.png",
            crate::uploads::png(4, 4),
        )
        .await;
        let photo = send(
            &app,
            &user,
            json!({"conversation_id": conversation, "message_type": "image", "content": "",
                   "file_id": upload["file_id"]}),
        )
        .await;
        assert!(photo["file_url"].is_string(), "{photo}");
        let (status, withdrawn) = delete(&app, &user, id_of(&photo), None).await;
        assert_eq!(status, 200, "{withdrawn}");
        let tombstone = history(&app, &admin, conversation).await.pop().unwrap();
        assert_eq!(tombstone["id"], photo["id"]);
        for field in [
            "file_id",
            "file_url",
            "file_name",
            "file_size",
            "mime_type",
            "width",
        ] {
            assert!(tombstone[field].is_null(), "{field} of {tombstone}");
        }

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_sender_edits_staff_remove_with_a_reason_and_refusals_write_nothing() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let (_, other) = app.session(Role::User, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let mine = send(&app, &user, json!({"message": "spam spam spam"})).await;
        let conversation = mine["conversation_id"].as_u64().unwrap();
        let reply = send(
            &app,
            &admin,
            json!({"conversation_id": conversation, "message": "please stop"}),
        )
        .await;
        let head = app.state_store().head_position().await.unwrap();

        let refusals = [
            (
                edit(&app, &other, id_of(&mine), "hijacked").await,
                403,
                "FORBIDDEN",
            ),
            (
                edit(&app, &admin, id_of(&mine), "rewritten").await,
                403,
                "FORBIDDEN",
            ),
            (
                edit(&app, &auditor, id_of(&mine), "audited").await,
                403,
                "FORBIDDEN",
            ),
            (
                edit(&app, &user, id_of(&reply), "I said so").await,
                403,
                "FORBIDDEN",
            ),
            (
                delete(&app, &other, id_of(&mine), None).await,
                403,
                "FORBIDDEN",
            ),
            (
                delete(&app, &user, id_of(&reply), None).await,
                403,
                "FORBIDDEN",
            ),
            (
                delete(&app, &auditor, id_of(&mine), Some("audit")).await,
                403,
                "FORBIDDEN",
            ),
            (
                edit(&app, &user, (1 << 52) + 7, "nowhere").await,
                404,
                "NOT_FOUND",
            ),
            (
                delete(&app, &admin, (1 << 52) + 7, Some("x")).await,
                404,
                "NOT_FOUND",
            ),
            (
                edit(&app, &user, id_of(&mine), " \n ").await,
                400,
                "EMPTY_MESSAGE",
            ),
            (
                edit(&app, &user, id_of(&mine), &"x".repeat(5001)).await,
                400,
                "VALIDATION_ERROR",
            ),
            (
                delete(&app, &admin, id_of(&mine), None).await,
                400,
                "VALIDATION_ERROR",
            ),
            (
                delete(&app, &admin, id_of(&mine), Some(&"x".repeat(501))).await,
                400,
                "VALIDATION_ERROR",
            ),
        ];
        for (n, (answer, status, code)) in refusals.iter().enumerate() {
            assert_eq!(
                error_of(answer),
                (*status, Some(*code)),
                "{} refusal {n}: {}",
                db.name(),
                answer.1
            );
        }
        for (method, path, body) in [
            (
                Method::PATCH,
                "/api/chat/messages/0",
                Some(json!({"message": "x"})),
            ),
            (
                Method::PATCH,
                "/api/chat/messages/abc",
                Some(json!({"message": "x"})),
            ),
            (
                Method::PATCH,
                &*format!("/api/chat/messages/{}", id_of(&mine)),
                None,
            ),
            (
                Method::PATCH,
                &*format!("/api/chat/messages/{}", id_of(&mine)),
                Some(json!({"message": 7})),
            ),
            (
                Method::DELETE,
                &*format!("/api/chat/messages/{}", id_of(&mine)),
                Some(json!({"reason": ["a list"]})),
            ),
        ] {
            let (status, answer) = app
                .call(method.clone(), path, Some(&admin), body.as_ref())
                .await;
            assert_eq!(
                (status, answer["error_code"].as_str()),
                (400, Some("VALIDATION_ERROR")),
                "{method} {path} {body:?}: {answer}"
            );
        }
        assert_eq!(
            app.state_store().head_position().await.unwrap(),
            head,
            "{}: a refusal writes nothing",
            db.name()
        );

        // Moderation: an admin removes the user's message, saying why; the audit keeps it all.
        let (status, removed) = delete(&app, &admin, id_of(&mine), Some("  spam  ")).await;
        assert_eq!(status, 200, "{removed}");
        assert_eq!(removed["data"]["deleted_by"], "admin");
        assert!(
            removed["data"].get("deletion_reason").is_none(),
            "the staff's reason is the audit's: {removed}"
        );
        let state = audit_state(&app, &auditor, conversation).await;
        let audited = &state["messages"][0];
        assert_eq!(
            (&audited["content"], &audited["deletion_reason"]),
            (&json!("spam spam spam"), &json!("spam"))
        );

        // An archived conversation is history: nothing in it changes.
        let (status, _) = app
            .call(
                Method::PUT,
                &format!("/api/chat/conversations/{conversation}/status"),
                Some(&admin),
                Some(&json!({"status": "archived"})),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            error_of(&edit(&app, &admin, id_of(&reply), "after the archive").await),
            (409, Some("CONFLICT"))
        );
        assert_eq!(
            error_of(&delete(&app, &admin, id_of(&reply), None).await),
            (409, Some("CONFLICT"))
        );

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_edit_window_only_staff_remove_a_message() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_EDIT_WINDOW_SECS", "1")]).await;
        let (_, user) = app.session(Role::User, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let sent = send(&app, &user, json!({"message": "a typo I will regret"})).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;

        let (status, answer) = edit(&app, &user, id_of(&sent), "too late").await;
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (409, Some("CONFLICT"))
        );
        assert!(
            answer["message"].as_str().unwrap().contains("1 seconds"),
            "{answer}"
        );
        assert_eq!(
            error_of(&delete(&app, &user, id_of(&sent), None).await),
            (409, Some("CONFLICT"))
        );
        let (status, removed) =
            delete(&app, &admin, id_of(&sent), Some("requested by the user")).await;
        assert_eq!(status, 200, "{}: {removed}", db.name());

        app.stop().await;
        db.cleanup().await;
    }
}
