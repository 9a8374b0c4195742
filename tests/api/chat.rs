//! The REST API through real HTTP against the started server: on SQLite (sessions, limits and
//! replay guard in the process) and on MariaDB with Redis.

use crate::support;

use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

const RFC3339_SECONDS: fn(&str) -> bool =
    |s| s.len() == 20 && s.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(s).is_ok();

fn assert_message_shape(message: &Value) {
    let keys: Vec<&str> = message
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "id",
        "conversation_id",
        "sender_role",
        "sender_identifier",
        "message_type",
        "content",
        "message",
        "file_id",
        "file_url",
        "client_msg_id",
        "is_read",
        "timestamp",
    ] {
        assert!(keys.contains(&key), "message lacks {key}: {message}");
    }
    assert!(message["id"].as_u64().unwrap() > 0);
    assert_eq!(message["content"], message["message"]);
    assert!(
        RFC3339_SECONDS(message["timestamp"].as_str().unwrap()),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_in_the_contract_shape() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (user_id, user) = app.session(Role::User, None).await;
        let (admin_id, admin) = app.session(Role::Admin, None).await;

        let (status, opened) = app
            .call(
                Method::POST,
                "/api/chat/conversations",
                Some(&user),
                Some(&json!({"initial_message": "I need help with my account"})),
            )
            .await;
        assert_eq!(status, 201, "{}: {opened}", db.name());
        assert_eq!(opened["status"], "success");
        let conversation_id = opened["data"]["conversation_id"].as_u64().unwrap();
        assert_message_shape(&opened["data"]["message"]);
        assert_eq!(
            opened["data"]["message"]["content"],
            "I need help with my account"
        );
        assert_eq!(opened["data"]["conversation"]["status"], "active");

        let (status, sent) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&user),
                Some(&json!({"message": "Thank you for your help!", "user_id": user_id})),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
        let data = &sent["data"];
        assert_message_shape(data);
        assert_eq!(data["conversation_id"], conversation_id);
        assert_eq!(data["sender_role"], "user");
        assert_eq!(data["sender_identifier"], format!("user_{user_id}"));
        assert_eq!(data["message_type"], "text");
        assert_eq!(data["is_read"], false);

        let (status, reply) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&admin),
                Some(
                    &json!({"content": "How can I help you?", "conversation_id": conversation_id}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{reply}");
        assert_eq!(reply["data"]["sender_role"], "admin");

        // Read-your-writes is per caller: the admin's own read waits for the reply to be applied.
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/api/chat/messages?conversation_id={conversation_id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (status, history) = app
            .call(Method::GET, "/api/chat/messages", Some(&user), None)
            .await;
        assert_eq!(status, 200, "{history}");
        assert_eq!(history["data"]["conversation_id"], conversation_id);
        let messages = history["data"]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        messages.iter().for_each(assert_message_shape);
        assert!(
            messages
                .windows(2)
                .all(|w| w[0]["id"].as_u64() < w[1]["id"].as_u64()),
            "oldest first"
        );

        let (status, list) = app
            .call(Method::GET, "/api/chat/conversations", Some(&user), None)
            .await;
        assert_eq!(status, 200);
        let conversation = &list["data"]["conversations"][0];
        assert_eq!(conversation["id"], conversation_id);
        assert_eq!(conversation["user_id"], user_id);
        assert_eq!(conversation["status"], "active");
        assert_eq!(
            conversation["unread_count"], 1,
            "the admin's reply is unread: {conversation}"
        );
        assert_eq!(
            conversation["last_message"]["content"],
            "How can I help you?"
        );
        assert_eq!(conversation["last_message"]["sender_role"], "admin");
        assert!(RFC3339_SECONDS(
            conversation["last_message_at"].as_str().unwrap()
        ));
        assert_eq!(
            list["data"]["pagination"],
            json!({"page": 1, "limit": 20, "total": 1, "pages": 1})
        );

        let reply_id = reply["data"]["id"].as_u64().unwrap();
        let path = format!("/api/chat/conversations/{conversation_id}/read");
        let (status, read) = app
            .call(
                Method::PUT,
                &path,
                Some(&user),
                Some(&json!({"message_ids": [reply_id]})),
            )
            .await;
        assert_eq!((status, &read["data"]), (200, &json!({"marked_read": 1})));

        let path = format!("/api/chat/conversations/{conversation_id}/assign");
        let (status, assigned) = app
            .call(
                Method::PUT,
                &path,
                Some(&admin),
                Some(&json!({"admin_id": admin_id})),
            )
            .await;
        assert_eq!(status, 200, "{assigned}");
        assert_eq!(assigned["data"]["admin_id"], admin_id);

        let path = format!("/api/chat/conversations/{conversation_id}/status");
        let (status, closed) = app
            .call(
                Method::PUT,
                &path,
                Some(&admin),
                Some(&json!({"status": "closed"})),
            )
            .await;
        assert_eq!(
            (status, closed["data"]["status"].as_str()),
            (200, Some("closed"))
        );

        let path = format!("/api/chat/conversations/{conversation_id}/feedback");
        let (status, rated) = app
            .call(
                Method::POST,
                &path,
                Some(&user),
                Some(&json!({"rating": 5, "comment": "great"})),
            )
            .await;
        assert_eq!(status, 201, "{rated}");
        assert_eq!(
            rated["data"]["feedback"],
            json!({"rating": 5, "comment": "great"})
        );

        let (status, bulk) = app
            .call(
                Method::POST,
                "/api/chat/conversations/bulk",
                Some(&admin),
                Some(&json!({"conversation_ids": [conversation_id, 999_999], "action": "archive"})),
            )
            .await;
        assert_eq!(status, 200, "{bulk}");
        assert_eq!(
            bulk["data"]["results"][0],
            json!({"conversation_id": conversation_id, "status": "success", "error_code": null, "message": null})
        );
        assert_eq!(bulk["data"]["results"][1]["error_code"], "NOT_FOUND");
        assert_eq!(
            (
                bulk["data"]["succeeded"].as_u64(),
                bulk["data"]["failed"].as_u64()
            ),
            (Some(1), Some(1))
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_from_opening_to_archive() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let (admin_id, admin) = app.session(Role::Admin, None).await;
        let send = |token: &str, body: Value| {
            let token = token.to_string();
            let app = &app;
            async move {
                app.call(
                    Method::POST,
                    "/api/chat/messages",
                    Some(&token),
                    Some(&body),
                )
                .await
            }
        };

        let (status, first) = send(&user, json!({"message": "hello"})).await;
        assert_eq!(status, 201);
        let id = first["data"]["conversation_id"].as_u64().unwrap();
        let at = |suffix: &str| format!("/api/chat/conversations/{id}{suffix}");
        assert_eq!(
            app.call(
                Method::PUT,
                &at("/assign"),
                Some(&admin),
                Some(&json!({"admin_id": admin_id}))
            )
            .await
            .0,
            200
        );
        let (_, reply) = send(
            &admin,
            json!({"message": "hi, how can I help?", "conversation_id": id}),
        )
        .await;
        let (status, read) = app
            .call(
                Method::PUT,
                &at("/read"),
                Some(&user),
                Some(&json!({"message_ids": [reply["data"]["id"]]})),
            )
            .await;
        assert_eq!(
            (status, read["data"]["marked_read"].as_u64()),
            (200, Some(1))
        );
        assert_eq!(
            app.call(
                Method::PUT,
                &at("/status"),
                Some(&admin),
                Some(&json!({"status": "closed"}))
            )
            .await
            .0,
            200
        );

        let (status, reopened) = send(
            &user,
            json!({"message": "one more thing", "conversation_id": id}),
        )
        .await;
        assert_eq!(status, 201, "a user's message reopens: {reopened}");
        let (_, conversation) = app.call(Method::GET, &at(""), Some(&user), None).await;
        assert_eq!(conversation["data"]["status"], "active");

        assert_eq!(
            app.call(
                Method::PUT,
                &at("/status"),
                Some(&admin),
                Some(&json!({"status": "archived"}))
            )
            .await
            .0,
            200
        );
        let (status, refused) =
            send(&user, json!({"message": "hello?", "conversation_id": id})).await;
        assert_eq!(
            (status, refused["error_code"].as_str()),
            (409, Some("CONFLICT"))
        );
        let (status, _) = send(&admin, json!({"message": "hello?", "conversation_id": id})).await;
        assert_eq!(status, 409);

        // Feedback: only on a closed conversation, only once.
        let (_, second) = send(&user, json!({"message": "new issue"})).await;
        let other = second["data"]["conversation_id"].as_u64().unwrap();
        assert_ne!(other, id, "a new conversation after the archive");
        let feedback = format!("/api/chat/conversations/{other}/feedback");
        assert_eq!(
            app.call(
                Method::POST,
                &feedback,
                Some(&user),
                Some(&json!({"rating": 4}))
            )
            .await
            .0,
            409
        );
        app.call(
            Method::PUT,
            &format!("/api/chat/conversations/{other}/status"),
            Some(&user),
            Some(&json!({"status": "closed"})),
        )
        .await;
        assert_eq!(
            app.call(
                Method::POST,
                &feedback,
                Some(&user),
                Some(&json!({"rating": 4}))
            )
            .await
            .0,
            201
        );
        let (status, twice) = app
            .call(
                Method::POST,
                &feedback,
                Some(&user),
                Some(&json!({"rating": 5})),
            )
            .await;
        assert_eq!(
            (status, twice["error_code"].as_str()),
            (409, Some("CONFLICT"))
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_client_msg_id_three_times_gives_one_message_with_one_id() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let body = json!({"message": "exactly once", "client_msg_id": "ios-5F2A"});
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(
                app.call(Method::POST, "/api/chat/messages", Some(&user), Some(&body))
                    .await,
            );
        }
        assert_eq!(
            answers.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [201, 200, 200],
            "{}",
            db.name()
        );
        let ids: Vec<_> = answers
            .iter()
            .map(|(_, b)| b["data"]["id"].clone())
            .collect();
        assert!(ids.iter().all(|id| *id == ids[0]));
        assert_eq!(answers[1].1["data"]["client_msg_id"], "ios-5F2A");
        let (_, history) = app
            .call(Method::GET, "/api/chat/messages", Some(&user), None)
            .await;
        assert_eq!(history["data"]["messages"].as_array().unwrap().len(), 1);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direction_overrides_and_isolates_are_removed_from_message_text() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        // An override that would show "pay to 4321" and leak into whatever follows the message,
        // an isolate, an embedding; the right-to-left mark of Hebrew text stays.
        let sent = "pay to \u{202E}1234\u{202C} \u{2067}x\u{2069} \u{202B}y \u{05E9}\u{200F}";
        let body = json!({ "message": sent });
        let (status, answer) = app
            .call(Method::POST, "/api/chat/messages", Some(&user), Some(&body))
            .await;
        assert_eq!(status, 201, "{}: {answer}", db.name());
        let expected = "pay to 1234 x y \u{05E9}\u{200F}";
        assert_eq!(answer["data"]["content"], expected);
        assert_eq!(answer["data"]["message"], expected);
        let (_, history) = app
            .call(Method::GET, "/api/chat/messages", Some(&user), None)
            .await;
        assert_eq!(history["data"]["messages"][0]["content"], expected);

        // An idempotency key is refused rather than changed: two keys never become one.
        let body = json!({ "message": "hi", "client_msg_id": "a\u{202E}b" });
        let (status, refused) = app
            .call(Method::POST, "/api/chat/messages", Some(&user), Some(&body))
            .await;
        assert_eq!(
            (status, refused["error_code"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{refused}"
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_200_concurrent_sends_lets_exactly_60_through() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let mut requests = Vec::new();
        for n in 0..200 {
            requests.push(
                app.signed(
                    Method::POST,
                    "/api/chat/messages",
                    Some(&user),
                    Some(&json!({"message": format!("burst {n}")})),
                )
                .send(),
            );
        }
        let responses = futures::future::join_all(requests).await;
        let mut created = 0;
        let mut limited = 0;
        for response in responses {
            let response = response.unwrap();
            match response.status().as_u16() {
                201 => created += 1,
                429 => {
                    let retry_after: u64 = response.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!((1..=60).contains(&retry_after));
                    let body: Value = response.json().await.unwrap();
                    assert_eq!(body["error_code"], "RATE_LIMITED");
                    limited += 1;
                }
                other => panic!("{}: unexpected {other}", db.name()),
            }
        }
        assert_eq!((created, limited), (60, 140), "{}", db.name());
        let metrics = app.get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains("chatd_rate_limit_rejections_total{kind=\"messages\"}"),
            "{metrics}"
        );
        assert!(metrics.contains("chatd_messages_accepted_total{transport=\"rest\"}"));
        assert!(metrics.contains("route=\"/api/chat/messages\""));
        let (_, history) = app
            .call(
                Method::GET,
                "/api/chat/messages?limit=200",
                Some(&user),
                None,
            )
            .await;
        assert_eq!(history["data"]["messages"].as_array().unwrap().len(), 60);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_signed_part_changed_in_turn_is_refused() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let url = |path: &str| format!("{}{path}", app.address);
        let body = json!({"message": "signed"}).to_string();
        let now = chrono::Utc::now().timestamp_millis();
        let sign = |ts: i64, method: &str, path: &str, body: &str| {
            chatd::auth::sign(APP_SECRET, ts, method, path, body.as_bytes())
        };
        let send = |method: Method, path: &str, ts: i64, signature: String, body: String| {
            app.client
                .request(method, url(path))
                .bearer_auth(&user)
                .header("Content-Type", "application/json")
                .header("X-Timestamp", ts.to_string())
                .header("X-Signature", signature)
                .body(body)
                .send()
        };
        let code = |response: reqwest::Response| async move {
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (
                status,
                body["error_code"].as_str().unwrap_or_default().to_string(),
            )
        };
        let path = "/api/chat/messages?limit=5";
        let good = sign(now, "POST", path, &body);

        let cases = [
            (
                "timestamp",
                send(Method::POST, path, now + 1, good.clone(), body.clone())
                    .await
                    .unwrap(),
            ),
            (
                "method",
                send(Method::GET, path, now, good.clone(), body.clone())
                    .await
                    .unwrap(),
            ),
            (
                "path",
                send(
                    Method::POST,
                    "/api/chat/messages?limit=6",
                    now,
                    good.clone(),
                    body.clone(),
                )
                .await
                .unwrap(),
            ),
            (
                "body",
                send(
                    Method::POST,
                    path,
                    now,
                    good.clone(),
                    json!({"message": "altered"}).to_string(),
                )
                .await
                .unwrap(),
            ),
            (
                "signature",
                send(
                    Method::POST,
                    path,
                    now,
                    good.replace('a', "b").replace('1', "2"),
                    body.clone(),
                )
                .await
                .unwrap(),
            ),
        ];
        for (part, response) in cases {
            assert_eq!(
                code(response).await,
                (401, "INVALID_SIGNATURE".to_string()),
                "{}: changed {part}",
                db.name()
            );
        }
        let stale = now - 301_000;
        let response = send(
            Method::POST,
            path,
            stale,
            sign(stale, "POST", path, &body),
            body.clone(),
        )
        .await
        .unwrap();
        assert_eq!(code(response).await, (401, "STALE_TIMESTAMP".into()));
        let missing = app
            .client
            .post(url(path))
            .bearer_auth(&user)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status().as_u16(), 401);

        let first = send(Method::POST, path, now, good.clone(), body.clone())
            .await
            .unwrap();
        let again = send(Method::POST, path, now, good.clone(), body.clone())
            .await
            .unwrap();
        assert_eq!(first.status().as_u16(), 201);
        assert_eq!(code(again).await, (401, "REPLAYED_REQUEST".into()));
        app.stop().await;
        db.cleanup().await;
    }
}

/// Every route against every kind of caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_matrix_holds_for_every_route() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (owner_id, owner) = app.session(Role::User, None).await;
        let (_, other) = app.session(Role::User, None).await;
        let (admin_id, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let expired = {
            let session = chatd::auth::Session {
                user_id: fresh_id(),
                role: Role::User,
                identifier: "gone".into(),
            };
            let token = app
                .state
                .auth
                .create_session(&session, std::time::Duration::from_secs(1))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
            token
        };
        let (_, opened) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&owner),
                Some(&json!({"message": "mine"})),
            )
            .await;
        let id = opened["data"]["conversation_id"].as_u64().unwrap();
        let message_id = opened["data"]["id"].as_u64().unwrap();
        let (_, second) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&owner),
                Some(&json!({"message": "to withdraw", "conversation_id": id})),
            )
            .await;
        let second_id = second["data"]["id"].as_u64().unwrap();

        // (method, path, body, [owner, other, admin, auditor, none, expired])
        let conv = |s: &str| format!("/api/chat/conversations/{id}{s}");
        let routes: Vec<(Method, String, Option<Value>, [u16; 6])> = vec![
            (
                Method::GET,
                format!("/api/chat/messages?conversation_id={id}"),
                None,
                [200, 403, 200, 200, 401, 401],
            ),
            (
                Method::POST,
                "/api/chat/messages".into(),
                Some(json!({"message": "hi", "conversation_id": id})),
                [201, 403, 201, 403, 401, 401],
            ),
            (
                Method::GET,
                "/api/chat/conversations".into(),
                None,
                [200, 200, 200, 200, 401, 401],
            ),
            (Method::GET, conv(""), None, [200, 403, 200, 200, 401, 401]),
            (
                Method::PUT,
                conv("/read"),
                Some(json!({"message_ids": [message_id]})),
                [200, 403, 200, 403, 401, 401],
            ),
            (
                Method::PUT,
                conv("/assign"),
                Some(json!({"admin_id": admin_id})),
                [403, 403, 200, 403, 401, 401],
            ),
            (
                Method::POST,
                "/api/chat/conversations/bulk".into(),
                Some(json!({"conversation_ids": [id], "action": "assign", "admin_id": admin_id})),
                [403, 403, 200, 403, 401, 401],
            ),
            (
                Method::POST,
                conv("/feedback"),
                Some(json!({"rating": 3})),
                [409, 403, 403, 403, 401, 401],
            ),
            (
                Method::PATCH,
                format!("/api/chat/messages/{message_id}"),
                Some(json!({"message": "mine, edited"})),
                [200, 403, 403, 403, 401, 401],
            ),
            // The owner withdraws it first: the admin's removal then finds it deleted.
            (
                Method::DELETE,
                format!("/api/chat/messages/{second_id}"),
                Some(json!({"reason": "moderation"})),
                [200, 403, 409, 403, 401, 401],
            ),
            (
                Method::POST,
                conv("/typing"),
                Some(json!({"typing": true})),
                [200, 403, 200, 403, 401, 401],
            ),
            (
                Method::PUT,
                conv("/status"),
                Some(json!({"status": "archived"})),
                [403, 403, 200, 403, 401, 401],
            ),
        ];
        let callers = [
            Some(&owner),
            Some(&other),
            Some(&admin),
            Some(&auditor),
            None,
            Some(&expired),
        ];
        let names = [
            "owner",
            "other user",
            "admin",
            "auditor",
            "no token",
            "expired token",
        ];
        for (method, path, body, expected) in routes {
            for ((caller, name), want) in callers.iter().zip(names).zip(expected) {
                let (status, answer) = app
                    .call(
                        method.clone(),
                        &path,
                        caller.map(String::as_str),
                        body.as_ref(),
                    )
                    .await;
                assert_eq!(
                    status,
                    want,
                    "{}: {method} {path} as {name}: {answer}",
                    db.name()
                );
                if status >= 400 {
                    assert_eq!(answer["status"], "error");
                    assert!(answer["error_code"].is_string());
                }
            }
        }
        // A user's user_id must be their own.
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/api/chat/messages?user_id={}", owner_id + 1),
                Some(&owner),
                None,
            )
            .await;
        assert_eq!(status, 403);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_contract_error_and_writes_nothing() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let head = db.store.head_position().await.unwrap();
        let raw = |body: &str| {
            let timestamp = chrono::Utc::now().timestamp_millis();
            let signature = chatd::auth::sign(
                APP_SECRET,
                timestamp,
                "POST",
                "/api/chat/messages",
                body.as_bytes(),
            );
            app.client
                .post(format!("{}/api/chat/messages", app.address))
                .bearer_auth(&user)
                .header("Content-Type", "application/json")
                .header("X-Timestamp", timestamp.to_string())
                .header("X-Signature", signature)
                .body(body.to_string())
                .send()
        };
        let cases: Vec<(&str, String, u16, &str)> = vec![
            (
                "malformed JSON",
                "{\"message\": ".into(),
                400,
                "VALIDATION_ERROR",
            ),
            (
                "wrong type",
                json!({"message": 5}).to_string(),
                400,
                "VALIDATION_ERROR",
            ),
            (
                "empty",
                json!({"message": ""}).to_string(),
                400,
                "EMPTY_MESSAGE",
            ),
            (
                "only spaces",
                json!({"message": " \n\t "}).to_string(),
                400,
                "EMPTY_MESSAGE",
            ),
            (
                "only NUL",
                json!({"message": "\u{0}"}).to_string(),
                400,
                "EMPTY_MESSAGE",
            ),
            (
                "oversized content",
                json!({"message": "x".repeat(5001)}).to_string(),
                400,
                "VALIDATION_ERROR",
            ),
            (
                "oversized body",
                json!({"message": "x".repeat(70_000)}).to_string(),
                413,
                "PAYLOAD_TOO_LARGE",
            ),
            (
                "id over 2^53",
                json!({"message": "hi", "conversation_id": 9_007_199_254_740_993u64}).to_string(),
                400,
                "VALIDATION_ERROR",
            ),
            (
                "negative id",
                json!({"message": "hi", "conversation_id": -1}).to_string(),
                400,
                "VALIDATION_ERROR",
            ),
            (
                "unknown type",
                json!({"message": "hi", "message_type": "video"}).to_string(),
                400,
                "VALIDATION_ERROR",
            ),
            (
                "image without file",
                json!({"message": "hi", "message_type": "image"}).to_string(),
                400,
                "VALIDATION_ERROR",
            ),
            (
                "long client_msg_id",
                json!({"message": "hi", "client_msg_id": "c".repeat(65)}).to_string(),
                400,
                "VALIDATION_ERROR",
            ),
        ];
        for (case, body, status, code) in cases {
            let response = raw(&body).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{}: {case}", db.name());
            let answer: Value = response.json().await.unwrap();
            assert_eq!(answer["error_code"], code, "{}: {case}", db.name());
        }
        for query in [
            "limit=-1",
            "limit=0",
            "limit=201",
            "limit=99999999999999999999",
            "after_id=abc",
            "conversation_id=9007199254740993",
        ] {
            let (status, answer) = app
                .call(
                    Method::GET,
                    &format!("/api/chat/messages?{query}"),
                    Some(&user),
                    None,
                )
                .await;
            assert_eq!(
                (status, answer["error_code"].as_str()),
                (400, Some("VALIDATION_ERROR")),
                "{query}"
            );
        }
        for query in ["page=0", "page=-3", "limit=51", "status=open"] {
            let (status, _) = app
                .call(
                    Method::GET,
                    &format!("/api/chat/conversations?{query}"),
                    Some(&user),
                    None,
                )
                .await;
            assert_eq!(status, 400, "{query}");
        }
        let (status, _) = app
            .call(
                Method::GET,
                "/api/chat/conversations/abc",
                Some(&user),
                None,
            )
            .await;
        assert_eq!(status, 400);
        let (status, answer) = app
            .call(Method::DELETE, "/api/chat/messages", Some(&user), None)
            .await;
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (405, Some("METHOD_NOT_ALLOWED")),
            "a wrong method answers in the envelope"
        );
        // The same request again, a few milliseconds later: in the same millisecond it would be
        // the same signature, refused as a replay.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let allow = app
            .signed(Method::DELETE, "/api/chat/messages", Some(&user), None)
            .send()
            .await
            .unwrap();
        assert_eq!(allow.status(), 405);
        let allowed = allow.headers()["allow"].to_str().unwrap().to_string();
        assert!(
            allowed.contains("GET") && allowed.contains("POST"),
            "{allowed}"
        );
        let unsigned = app
            .client
            .post(format!("{}/api/chat/messages", app.address))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status().as_u16(), 401);
        assert_eq!(
            db.store.head_position().await.unwrap(),
            head,
            "{}: nothing written",
            db.name()
        );

        // Text that is valid however unusual is stored as sent (NUL removed).
        for text in [
            "emoji 👩‍💻🎉",
            "مرحبا بالعالم",
            "zero\u{200B}width",
            "nul\u{0}inside",
        ] {
            let (status, sent) = app
                .call(
                    Method::POST,
                    "/api/chat/messages",
                    Some(&user),
                    Some(&json!({"message": text})),
                )
                .await;
            assert_eq!(status, 201, "{text:?}");
            assert_eq!(sent["data"]["content"], text.replace('\u{0}', ""));
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_scheme_and_error_code() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db).await;

    let document: Value = app.get("/api/openapi.json").await.json().await.unwrap();
    let docs = app.get("/api/docs/").await;

    assert_eq!(docs.status(), 200);
    let paths = document["paths"].as_object().unwrap();
    for path in [
        "/api/chat/messages",
        "/api/chat/messages/{id}",
        "/api/chat/conversations",
        "/api/chat/conversations/{id}",
        "/api/chat/conversations/{id}/read",
        "/api/chat/conversations/{id}/assign",
        "/api/chat/conversations/{id}/status",
        "/api/chat/conversations/bulk",
        "/api/chat/conversations/{id}/feedback",
        "/api/chat/conversations/{id}/typing",
        "/healthz",
        "/readyz",
        "/metrics",
        "/admin/session",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    let schemes = document["components"]["securitySchemes"]
        .as_object()
        .unwrap();
    assert!(schemes.contains_key("app_signature") && schemes.contains_key("bearer"));
    let codes = document["components"]["schemas"]["ErrorCode"].to_string();
    for code in [
        "VALIDATION_ERROR",
        "EMPTY_MESSAGE",
        "INVALID_SIGNATURE",
        "STALE_TIMESTAMP",
        "REPLAYED_REQUEST",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "CONFLICT",
        "PAYLOAD_TOO_LARGE",
        "UNSUPPORTED_MEDIA_TYPE",
        "RATE_LIMITED",
        "UNAVAILABLE",
        "INTERNAL",
    ] {
        assert!(codes.contains(code), "{code}");
    }
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_body_gets_its_413_rather_than_a_reset_connection() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        // Over the 64 KiB JSON limit, by a little and by a lot (still under the drained size).
        for size in [70_000, 300_000, 900_000] {
            for _ in 0..10 {
                let body = json!({"message": "x".repeat(size)});
                let response = app
                    .signed(Method::POST, "/api/chat/messages", Some(&user), Some(&body))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{}: {size} bytes: no answer: {e}", db.name()));
                assert_eq!(response.status().as_u16(), 413, "{}: {size}", db.name());
            }
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test]
async fn after_id_zero_pages_from_the_first_message_and_a_get_bodys_user_id_must_be_the_callers() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_LIMIT_MESSAGES_PER_MIN", "1000")]).await;
        let (user_id, user) = app.session(Role::User, None).await;
        let (status, opened) = app
            .call(
                Method::POST,
                "/api/chat/conversations",
                Some(&user),
                Some(&json!({"initial_message": "first"})),
            )
            .await;
        assert_eq!(status, 201, "{opened}");
        let conversation = opened["data"]["conversation_id"].as_u64().unwrap();
        let mut ids = vec![opened["data"]["message"]["id"].as_u64().unwrap()];
        for n in 0..4 {
            let (status, sent) = app
                .call(
                    Method::POST,
                    "/api/chat/messages",
                    Some(&user),
                    Some(&json!({"conversation_id": conversation, "content": format!("m{n}")})),
                )
                .await;
            assert_eq!(status, 201, "{sent}");
            ids.push(sent["data"]["id"].as_u64().unwrap());
        }

        let page_ids = |page: &Value| -> Vec<u64> {
            page["data"]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_u64().unwrap())
                .collect()
        };
        let path = format!("/api/chat/messages?conversation_id={conversation}&after_id=0&limit=2");
        let (status, first) = app.call(Method::GET, &path, Some(&user), None).await;
        assert_eq!(status, 200, "{}: {first}", db.name());
        assert_eq!(page_ids(&first), ids[..2], "{}", db.name());
        assert_eq!(first["data"]["has_more"], true);

        let list = format!("/api/chat/messages?conversation_id={conversation}");
        for path in [list.as_str(), "/api/chat/conversations"] {
            let (status, own) = app
                .call(
                    Method::GET,
                    path,
                    Some(&user),
                    Some(&json!({"user_id": user_id})),
                )
                .await;
            assert_eq!(status, 200, "{}: {path}: {own}", db.name());
            let (status, other) = app
                .call(
                    Method::GET,
                    path,
                    Some(&user),
                    Some(&json!({"user_id": user_id + 1})),
                )
                .await;
            assert_eq!(
                (status, other["error_code"].as_str()),
                (403, Some("FORBIDDEN")),
                "{}: {path}: {other}",
                db.name()
            );
            let (status, malformed) = app
                .call(
                    Method::GET,
                    path,
                    Some(&user),
                    Some(&json!({"user_id": "x"})),
                )
                .await;
            assert_eq!(status, 400, "{}: {path}: {malformed}", db.name());
        }
        app.stop().await;
        db.cleanup().await;
    }
}
