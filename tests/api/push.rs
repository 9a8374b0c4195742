//! Push notifications through the real senders, against local stand-ins for FCM (with its OAuth
//! token endpoint) and APNs (HTTP/2): the exact requests, invalid tokens, retries, collapse,
//! presence, and at most one push per message and device across a crash, a restart and a
//! replay; on SQLite and on MariaDB with Redis.

mod fake;

use crate::support;

use std::time::Duration;

use fake::{Credentials, FakeProvider};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use support::process::{ChatdProcess, call_process, cli_session};
use support::*;

const ANDROID_TOKEN: &str = "fcm-android:APA91bHun4MxP5egoKMwt2KZFBaFUH-1RYqx";
const IPHONE_TOKEN: &str = "7a1f0c9e4b2d8a6f3e5c1b9d7f2a4c6e8b0d2f4a6c8e0b2d4f6a8c0e2b4d6f8a";

struct Rig {
    fcm: FakeProvider,
    apns: FakeProvider,
    keys: Credentials,
}

impl Rig {
    async fn start() -> Rig {
        let fcm = FakeProvider::start().await;
        let apns = FakeProvider::start().await;
        let keys = Credentials::generate(&fcm);
        Rig { fcm, apns, keys }
    }

    async fn app(&self, db: &TestDb, extra: &[(&str, &str)]) -> TestApp {
        let mut settings = self.keys.settings(&self.fcm, &self.apns);
        settings.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        TestApp::spawn_with(db, &settings).await
    }
}

async fn register(
    app: &TestApp,
    session: &str,
    platform: &str,
    provider: &str,
    token: &str,
) -> (u16, Value) {
    app.call(
        Method::POST,
        "/api/chat/devices",
        Some(session),
        Some(&json!({"platform": platform, "provider": provider, "token": token})),
    )
    .await
}

async fn open_conversation(app: &TestApp, user: &str, text: &str) -> u64 {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/chat/conversations",
            Some(user),
            Some(&json!({"initial_message": text})),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    body["data"]["conversation_id"]
        .as_u64()
        .expect("conversation id")
}

async fn send(app: &TestApp, session: &str, conversation_id: u64, text: &str) -> u64 {
    let (status, body) = app
        .call(
            Method::POST,
            "/api/chat/messages",
            Some(session),
            Some(&json!({"conversation_id": conversation_id, "message": text})),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    body["data"]["id"].as_u64().expect("message id")
}

async fn assign(app: &TestApp, admin: &str, conversation_id: u64, admin_id: u64) {
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/api/chat/conversations/{conversation_id}/assign"),
            Some(admin),
            Some(&json!({"admin_id": admin_id})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Waits (a few seconds at most) until the user has no device with this token; whether it went.
async fn gone(app: &TestApp, user_id: u64, token: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let devices = app
            .state
            .store
            .push_devices_of(events::Role::User, user_id)
            .await
            .expect("read push_devices");
        if devices.iter().all(|device| device.token != token) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bearer(request: &fake::Recorded) -> String {
    request
        .header("authorization")
        .strip_prefix("Bearer ")
        .unwrap_or_default()
        .to_string()
}

/// Imported history is not news: an offline user with a registered device gets no push for the
/// admin replies an import brings in (sent seconds ago, well within the push age limit), and
/// gets one for the first reply after the import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_history_sends_no_push() {
    for db in TestDb::each().await {
        let rig = Rig::start().await;
        let app = rig.app(&db, &[]).await;
        // Ids the legacy schema's INT UNSIGNED columns hold.
        let (user_id, user) = app.session(events::Role::User, Some(6001)).await;
        let (admin_id, admin) = app.session(events::Role::Admin, Some(6002)).await;
        assert_eq!(
            register(&app, &user, "android", "fcm", ANDROID_TOKEN)
                .await
                .0,
            201
        );

        let legacy = support::legacy::LegacyDb::create().await;
        legacy
            .execute(&format!(
                "insert into users (id, identifier) values ({user_id}, 'user_uuid')"
            ))
            .await;
        legacy
            .execute(&format!(
                "insert into conversations (id, user_id, admin_id, status, created_at, \
                 updated_at) values (77, {user_id}, {admin_id}, 'active', \
                 now() - interval 1 minute, now())"
            ))
            .await;
        legacy
            .execute(&format!(
                "insert into messages (id, conversation_id, user_id, admin_id, sender_role, \
                 content, timestamp) values \
                 (501, 77, {user_id}, null, 'user', 'where is my parcel?', \
                  now() - interval 30 second), \
                 (502, 77, null, {admin_id}, 'admin', 'on its way', now() - interval 5 second)"
            ))
            .await;
        let imported = support::legacy::import(&db, &["--from", &legacy.url]);
        assert!(imported.status.success(), "{}: {imported:?}", db.name());
        let head = db.store.head_position().await.expect("head");
        push_caught_up(&db, head).await;
        assert!(
            rig.fcm.pushes().is_empty(),
            "{}: {:?}",
            db.name(),
            rig.fcm.pushes()
        );

        send(&app, &admin, 77, "it arrives tomorrow").await;
        let pushes = rig.fcm.wait_for_pushes(1, Duration::from_secs(10)).await;
        assert_eq!(pushes.len(), 1, "{}", db.name());
        assert!(
            pushes[0].json().to_string().contains("it arrives tomorrow"),
            "{}: {}",
            db.name(),
            pushes[0].json()
        );

        app.stop().await;
        legacy.drop().await;
        db.cleanup().await;
    }
}

/// Waits (bounded) until the push follower has read the log up to `position`.
async fn push_caught_up(db: &TestDb, position: u64) {
    let sql = "select position from projector_state where name = 'push'";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let checkpoint: Option<i64> = match &db.store {
            chatd::store::EventStore::MySql(s) => {
                sqlx::query_scalar(sql).fetch_optional(s.pool()).await
            }
            chatd::store::EventStore::Sqlite(s) => {
                sqlx::query_scalar(sql).fetch_optional(s.pool()).await
            }
        }
        .expect(sql);
        if checkpoint.unwrap_or(0) as u64 >= position {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: the push follower did not reach {position}",
            db.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_person_gets_one_push_per_device_in_the_exact_shape_each_provider_expects() {
    for db in TestDb::each().await {
        let rig = Rig::start().await;
        let app = rig.app(&db, &[]).await;
        let (user_id, user) = app.session(events::Role::User, None).await;
        let (admin_id, admin) = app.session(events::Role::Admin, None).await;
        assert_eq!(
            register(&app, &user, "android", "fcm", ANDROID_TOKEN)
                .await
                .0,
            201
        );
        let (status, body) = register(&app, &user, "ios", "apns", IPHONE_TOKEN).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body,
            json!({"status": "success", "data": {"token": IPHONE_TOKEN, "platform": "ios", "provider": "apns"}})
        );
        let admin_phone = "fcm-admin-phone-1";
        assert_eq!(
            register(&app, &admin, "ios", "fcm", admin_phone).await.0,
            201
        );

        let conversation = open_conversation(&app, &user, "Where is my parcel?").await;
        let reply = "Hello! ".to_string() + &"Your parcel is on its way. ".repeat(10);
        let message = send(&app, &admin, conversation, &reply).await;

        let fcm = rig.fcm.wait_for_pushes(1, Duration::from_secs(10)).await;
        let apns = rig.apns.wait_for_pushes(1, Duration::from_secs(10)).await;
        assert_eq!(
            fcm.len(),
            1,
            "{}: one FCM push (nobody is assigned to hear the user)",
            db.name()
        );
        assert_eq!(apns.len(), 1, "{}", db.name());
        let body = chatd::push::body_of(events::MessageType::Text, &reply);
        assert_eq!(body.chars().count(), chatd::push::BODY_CHARS);

        // FCM: the OAuth grant, signed RS256 by the service account's key.
        let grants = rig.fcm.token_requests();
        assert_eq!(grants.len(), 1, "the access token is cached");
        let grant = &grants[0];
        assert_eq!(grant.method, "POST");
        assert_eq!(
            grant.header("content-type"),
            "application/x-www-form-urlencoded"
        );
        let form = String::from_utf8(grant.body.clone()).expect("form");
        let assertion = form
            .strip_prefix(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=",
            )
            .expect("a JWT-bearer grant");
        let (header, claims) = fake::verified_jwt(
            assertion,
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            &rig.keys.rsa_public,
        );
        assert_eq!(header["alg"], "RS256");
        assert_eq!(claims["iss"], fake::FCM_CLIENT_EMAIL);
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/firebase.messaging"
        );
        assert_eq!(claims["aud"], format!("{}/token", rig.fcm.url));
        let iat = claims["iat"].as_i64().expect("iat");
        assert!((iat - chrono::Utc::now().timestamp()).abs() < 60);
        assert_eq!(claims["exp"].as_i64(), Some(iat + 3600));

        // FCM: the message.
        let push = &fcm[0];
        assert_eq!(push.method, "POST");
        assert_eq!(
            push.path,
            format!("/v1/projects/{}/messages:send", fake::FCM_PROJECT)
        );
        assert_eq!(bearer(push), fake::FCM_ACCESS_TOKEN);
        assert_eq!(
            push.json(),
            json!({"message": {
                "token": ANDROID_TOKEN,
                "notification": {"title": "Support", "body": body},
                "data": {"conversation_id": conversation.to_string(), "message_id": message.to_string(),
                    "message_type": "text"},
                "android": {
                    "priority": "high",
                    "collapse_key": format!("conversation-{conversation}"),
                    "notification": {"tag": format!("conversation-{conversation}"), "notification_count": 1},
                },
            }})
        );

        // APNs: HTTP/2, the headers, an ES256 provider token, the payload.
        let push = &apns[0];
        assert_eq!(push.version, hyper::Version::HTTP_2);
        assert_eq!(push.method, "POST");
        assert_eq!(push.path, format!("/3/device/{IPHONE_TOKEN}"));
        assert_eq!(push.header("apns-topic"), fake::APNS_TOPIC);
        assert_eq!(push.header("apns-push-type"), "alert");
        assert_eq!(push.header("apns-priority"), "10");
        assert_eq!(
            push.header("apns-collapse-id"),
            format!("conversation-{conversation}")
        );
        let (header, claims) = fake::verified_jwt(
            &bearer(push),
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            &rig.keys.ec_public,
        );
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], fake::APNS_KEY_ID);
        assert_eq!(claims["iss"], fake::APNS_TEAM_ID);
        let iat = claims["iat"].as_i64().expect("iat");
        assert!((iat - chrono::Utc::now().timestamp()).abs() < 60);
        assert_eq!(
            push.json(),
            json!({
                "aps": {
                    "alert": {"title": "Support", "body": body},
                    "badge": 1,
                    "sound": "default",
                    "thread-id": format!("conversation-{conversation}"),
                },
                "conversation_id": conversation,
                "message_id": message,
                "message_type": "text",
            })
        );

        // The user's reply goes to the assigned admin's device (FCM on iOS), titled with the
        // user's identifier; the badge counts the admin's unread messages.
        assign(&app, &admin, conversation, admin_id).await;
        let answer = send(&app, &user, conversation, "Thanks").await;
        let fcm = rig.fcm.wait_for_pushes(2, Duration::from_secs(10)).await;
        assert_eq!(fcm.len(), 2, "{}", db.name());
        assert_eq!(
            fcm[1].json(),
            json!({"message": {
                "token": admin_phone,
                "notification": {"title": format!("user_{user_id}"), "body": "Thanks"},
                "apns": {
                    "headers": {"apns-push-type": "alert", "apns-priority": "10",
                        "apns-collapse-id": format!("conversation-{conversation}")},
                    "payload": {"aps": {"badge": 2, "sound": "default",
                        "thread-id": format!("conversation-{conversation}")},
                        "conversation_id": conversation, "message_id": answer,
                        "message_type": "text"},
                },
            }})
        );
        assert_eq!(
            rig.apns.pushes().len(),
            1,
            "the user's own message is not pushed to them"
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_push_tells_the_app_its_type_name_size_and_pixels() {
    for db in TestDb::each().await {
        let rig = Rig::start().await;
        let app = rig.app(&db, &[]).await;
        let (_, user) = app.session(events::Role::User, None).await;
        let (_, admin) = app.session(events::Role::Admin, None).await;
        assert_eq!(
            register(&app, &user, "ios", "apns", IPHONE_TOKEN).await.0,
            201
        );
        assert_eq!(
            register(&app, &user, "android", "fcm", ANDROID_TOKEN)
                .await
                .0,
            201
        );
        let conversation = open_conversation(&app, &user, "Which one is broken?").await;
        let photo = crate::uploads::upload_ok(
            &app,
            &admin,
            conversation,
            "image",
            "label.png",
            crate::uploads::png(320, 240),
        )
        .await;
        let size = photo["file_size"].as_u64().expect("file_size");
        let (status, sent) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&admin),
                Some(
                    &json!({"conversation_id": conversation, "message_type": "image",
                    "content": "", "file_id": photo["file_id"]}),
                ),
            )
            .await;
        assert_eq!(status, 201, "{sent}");
        let message = sent["data"]["id"].as_u64().expect("id");

        let apns = rig.apns.wait_for_pushes(1, Duration::from_secs(10)).await;
        let fcm = rig.fcm.wait_for_pushes(1, Duration::from_secs(10)).await;
        assert_eq!((apns.len(), fcm.len()), (1, 1), "{}", db.name());
        assert_eq!(
            apns[0].json(),
            json!({
                "aps": {
                    "alert": {"title": "Support", "body": "Sent an image"},
                    "badge": 1,
                    "sound": "default",
                    "thread-id": format!("conversation-{conversation}"),
                },
                "conversation_id": conversation,
                "message_id": message,
                "message_type": "image",
                "file_name": "label.png",
                "file_size": size,
                "mime_type": "image/png",
                "width": 320,
                "height": 240,
            }),
            "{}",
            db.name()
        );
        crate::ios_guide::assert_same_shape(
            &crate::ios_guide::guide_example("push-apns"),
            &apns[0].json(),
            "docs/ios.md push-apns",
        );
        assert_eq!(
            fcm[0].json()["message"]["data"],
            json!({
                "conversation_id": conversation.to_string(),
                "message_id": message.to_string(),
                "message_type": "image",
                "file_name": "label.png",
                "file_size": size.to_string(),
                "mime_type": "image/png",
                "width": "320",
                "height": "240",
            }),
            "{}: FCM's data holds strings only",
            db.name()
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_the_callers_own_bounded_and_move_to_whoever_registers_them_last() {
    for db in TestDb::each().await {
        let rig = Rig::start().await;
        let app = rig.app(&db, &[("CHAT_PUSH_MAX_DEVICES", "2")]).await;
        let (_, alice) = app.session(events::Role::User, None).await;
        let (_, bob) = app.session(events::Role::User, None).await;
        let (_, auditor) = app.session(events::Role::Auditor, None).await;

        assert_eq!(
            register(&app, &alice, "android", "fcm", "phone-1").await.0,
            201
        );
        assert_eq!(
            register(&app, &alice, "android", "fcm", "phone-1").await.0,
            200,
            "already hers"
        );
        // Bad input is the envelope's 400, never a 500.
        for body in [
            json!({"platform": "windows", "provider": "fcm", "token": "t"}),
            json!({"platform": "ios", "provider": "apns", "token": ""}),
            json!({"platform": "ios", "provider": "apns", "token": "a/b"}),
            json!({"platform": "ios", "provider": "apns", "token": "x".repeat(513)}),
            json!({"platform": "ios", "provider": "apns"}),
        ] {
            let (status, answer) = app
                .call(Method::POST, "/api/chat/devices", Some(&alice), Some(&body))
                .await;
            assert_eq!(
                (status, answer["error_code"].as_str()),
                (400, Some("VALIDATION_ERROR")),
                "{body}"
            );
        }
        assert_eq!(
            register(&app, &auditor, "ios", "fcm", "auditor-phone")
                .await
                .0,
            403
        );

        // Bob cannot remove Alice's device; the same token registered by Bob moves to him.
        let (status, _) = app
            .call(
                Method::DELETE,
                "/api/chat/devices/phone-1",
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(status, 404);
        assert_eq!(
            register(&app, &bob, "android", "fcm", "phone-1").await.0,
            201
        );
        let (status, _) = app
            .call(
                Method::DELETE,
                "/api/chat/devices/phone-1",
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(status, 404, "no longer hers");

        // At most two each: a third drops the least recently registered.
        assert_eq!(
            register(&app, &alice, "ios", "apns", "tablet-1").await.0,
            201
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            register(&app, &alice, "ios", "apns", "tablet-2").await.0,
            201
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            register(&app, &alice, "ios", "apns", "tablet-3").await.0,
            201
        );
        let (status, _) = app
            .call(
                Method::DELETE,
                "/api/chat/devices/tablet-1",
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(status, 404, "the oldest went");
        let (status, body) = app
            .call(
                Method::DELETE,
                "/api/chat/devices/tablet-2",
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(
            (status, body),
            (
                200,
                json!({"status": "success", "data": {"token": "tablet-2"}})
            )
        );
        let (status, _) = app
            .call(
                Method::DELETE,
                "/api/chat/devices/phone-1",
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(status, 200);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_and_tokens_the_providers_call_invalid_are_removed() {
    for db in TestDb::each().await {
        let rig = Rig::start().await;
        let app = rig.app(&db, &[("CHAT_PUSH_COLLAPSE_MS", "0")]).await;
        let (user_id, user) = app.session(events::Role::User, None).await;
        let (_, admin) = app.session(events::Role::Admin, None).await;
        register(&app, &user, "android", "fcm", ANDROID_TOKEN).await;
        register(&app, &user, "ios", "apns", IPHONE_TOKEN).await;
        let conversation = open_conversation(&app, &user, "Hi").await;

        rig.fcm.script(&[(
            503,
            json!({"error": {"code": 503, "status": "UNAVAILABLE"}}),
        )]);
        rig.apns
            .script(&[(410, json!({"reason": "Unregistered", "timestamp": 1}))]);
        let first = send(&app, &admin, conversation, "first").await;
        let fcm = rig.fcm.wait_for_pushes(2, Duration::from_secs(10)).await;
        assert_eq!(fcm.len(), 2, "{}: the 503 was retried", db.name());
        assert_eq!(fcm[0].body, fcm[1].body, "the same push again");
        assert!(
            fcm[1].at_micros - fcm[0].at_micros >= 90_000,
            "after the backoff"
        );
        assert_eq!(
            fcm[1].json()["message"]["data"]["message_id"],
            first.to_string()
        );
        assert_eq!(
            rig.apns
                .wait_for_pushes(1, Duration::from_secs(5))
                .await
                .len(),
            1
        );
        // The 410 removed the iPhone.
        assert!(
            gone(&app, user_id, IPHONE_TOKEN).await,
            "{}: the APNs 410 removed the device",
            db.name()
        );

        // FCM's 404 UNREGISTERED removes the Android device too.
        rig.fcm.script(&[(404, json!({"error": {"code": 404, "message": "Requested entity was not found.",
            "status": "NOT_FOUND", "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
            "errorCode": "UNREGISTERED"}]}}))]);
        send(&app, &admin, conversation, "second").await;
        assert_eq!(
            rig.fcm
                .wait_for_pushes(3, Duration::from_secs(10))
                .await
                .len(),
            3
        );
        assert!(
            gone(&app, user_id, ANDROID_TOKEN).await,
            "{}: the FCM 404 removed the device",
            db.name()
        );
        let (status, _) = app
            .call(
                Method::DELETE,
                &format!("/api/chat/devices/{ANDROID_TOKEN}"),
                Some(&user),
                None,
            )
            .await;
        assert_eq!(status, 404);
        send(&app, &admin, conversation, "third").await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(rig.fcm.pushes().len(), 3, "no device, no push");
        assert_eq!(rig.apns.pushes().len(), 1);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_one_conversation_becomes_one_push_now_and_one_with_the_latest_message() {
    for db in TestDb::each().await {
        let rig = Rig::start().await;
        let app = rig.app(&db, &[("CHAT_PUSH_COLLAPSE_MS", "1500")]).await;
        let (_, user) = app.session(events::Role::User, None).await;
        let (_, admin) = app.session(events::Role::Admin, None).await;
        register(&app, &user, "android", "fcm", ANDROID_TOKEN).await;
        let conversation = open_conversation(&app, &user, "Hi").await;

        let mut ids = Vec::new();
        for n in 1..=5 {
            ids.push(send(&app, &admin, conversation, &format!("burst {n}")).await);
        }
        rig.fcm.wait_for_pushes(2, Duration::from_secs(10)).await;
        // Nothing more comes after the window.
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let pushes = rig.fcm.pushes();
        assert_eq!(
            pushes.len(),
            2,
            "{}: one push at once, one at the window's end",
            db.name()
        );
        let last = pushes[1].json();
        assert_eq!(last["message"]["data"]["message_id"], ids[4].to_string());
        assert_eq!(last["message"]["notification"]["body"], "burst 5");
        assert_eq!(
            last["message"]["android"]["notification"]["notification_count"],
            5
        );
        assert!(
            pushes[1].at_micros - pushes[0].at_micros >= 1_400_000,
            "the second waits for the window"
        );
        app.stop().await;
        db.cleanup().await;
    }
}

/// A Socket.IO connection over the Engine.IO websocket protocol, answering pings.
async fn connect_socket(app: &TestApp, token: &str) -> tokio::task::JoinHandle<()> {
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        app.address.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("websocket");
    let open = socket.next().await.expect("open").expect("frame");
    assert!(open.to_text().unwrap_or_default().starts_with('0'));
    socket
        .send(Message::text(format!("40{}", json!({"token": token}))))
        .await
        .expect("connect");
    loop {
        let frame = socket.next().await.expect("answer").expect("frame");
        let text = frame.to_text().unwrap_or_default().to_string();
        if text == "2" {
            socket.send(Message::text("3")).await.expect("pong");
            continue;
        }
        assert!(text.starts_with("40"), "{text}");
        break;
    }
    tokio::spawn(async move {
        while let Some(Ok(frame)) = socket.next().await {
            if frame.to_text().unwrap_or_default() == "2"
                && socket.send(Message::text("3")).await.is_err()
            {
                return;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_a_connected_socket_gets_no_push_until_it_disconnects() {
    for db in TestDb::each().await {
        let rig = Rig::start().await;
        let app = rig.app(&db, &[("CHAT_PUSH_COLLAPSE_MS", "0")]).await;
        let (user_id, user) = app.session(events::Role::User, None).await;
        let (_, admin) = app.session(events::Role::Admin, None).await;
        register(&app, &user, "ios", "apns", IPHONE_TOKEN).await;
        let conversation = open_conversation(&app, &user, "Hi").await;

        let socket = connect_socket(&app, &user).await;
        send(&app, &admin, conversation, "while connected").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            rig.apns.pushes().is_empty(),
            "{}: the socket had it",
            db.name()
        );

        socket.abort();
        let _ = socket.await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while app
            .state
            .presence
            .is_online(events::Role::User, user_id)
            .await
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the socket never went offline"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let message = send(&app, &admin, conversation, "after it left").await;
        let pushes = rig.apns.wait_for_pushes(1, Duration::from_secs(10)).await;
        assert_eq!(pushes.len(), 1, "{}", db.name());
        assert_eq!(pushes[0].json()["message_id"], message);
        app.stop().await;
        db.cleanup().await;
    }
}

/// A signed request to a chatd process; the status and the JSON body.
async fn process_message(base: &str, admin: &str, conversation: u64, text: &str) -> u64 {
    let (status, body) = call_process(
        base,
        Method::POST,
        "/api/chat/messages",
        admin,
        &json!({"conversation_id": conversation, "message": text}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_u64().expect("message id")
}

fn pushed_message_ids(provider: &FakeProvider) -> Vec<u64> {
    provider
        .pushes()
        .iter()
        .filter_map(|p| p.json()["message_id"].as_u64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_is_pushed_at_most_once_across_a_crash_mid_request_a_restart_and_a_replay() {
    for db in TestDb::each().await {
        let rig = Rig::start().await;
        let user_id = fresh_id();
        let user = cli_session(&db, "user", user_id);
        let admin = cli_session(&db, "admin", fresh_id());

        // Push off: the device is kept, nothing is queued, no checkpoint exists.
        let node = ChatdProcess::start(&db, &[]).await;
        let (status, body) = call_process(
            &node.url,
            Method::POST,
            "/api/chat/devices",
            &user,
            &json!({"platform": "ios", "provider": "apns", "token": IPHONE_TOKEN}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = call_process(
            &node.url,
            Method::POST,
            "/api/chat/conversations",
            &user,
            &json!({"initial_message": "Hi"}),
        )
        .await;
        assert!(status == 200 || status == 201, "{body}");
        let conversation = body["data"]["conversation_id"]
            .as_u64()
            .expect("conversation");
        process_message(&node.url, &admin, conversation, "before push was on").await;
        node.stop();
        assert!(dump(&db.store, "push_outbox").await.is_empty());

        // Push on, on a log with history: it starts at the head.
        let mut settings = rig.keys.settings(&rig.fcm, &rig.apns);
        settings.push(("CHAT_PUSH_COLLAPSE_MS".into(), "0".into()));
        let settings: Vec<(&str, &str)> = settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let node = ChatdProcess::start(&db, &settings).await;
        let first = process_message(&node.url, &admin, conversation, "one").await;
        rig.apns.wait_for_pushes(1, Duration::from_secs(10)).await;
        let second = process_message(&node.url, &admin, conversation, "two").await;
        rig.apns.wait_for_pushes(2, Duration::from_secs(10)).await;
        assert_eq!(
            pushed_message_ids(&rig.apns),
            vec![first, second],
            "{}",
            db.name()
        );

        // The provider takes the next push and never answers; chatd is SIGKILLed meanwhile and
        // restarted: the push was claimed before it left, so it is not sent again, nor are the
        // others.
        rig.apns.script(&[(fake::HANG, Value::Null)]);
        let hung = process_message(&node.url, &admin, conversation, "in flight").await;
        rig.apns.wait_for_pushes(3, Duration::from_secs(10)).await;
        node.stop();
        let node = ChatdProcess::start(&db, &settings).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            pushed_message_ids(&rig.apns),
            vec![first, second, hung],
            "{}: after the crash",
            db.name()
        );
        let third = process_message(&node.url, &admin, conversation, "three").await;
        rig.apns.wait_for_pushes(4, Duration::from_secs(10)).await;

        // A replay rebuilds the read tables and leaves the push checkpoint alone.
        let replayed = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .arg("replay")
            .env("CHAT_DATABASE_URL", &db.url)
            .env("CHAT_APP_SECRET", APP_SECRET)
            .output()
            .expect("chatd replay");
        assert!(replayed.status.success(), "{replayed:?}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let fourth = process_message(&node.url, &admin, conversation, "four").await;
        rig.apns.wait_for_pushes(5, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            pushed_message_ids(&rig.apns),
            vec![first, second, hung, third, fourth],
            "{}: each message once, none from before push was on",
            db.name()
        );
        node.stop();
        db.cleanup().await;
    }
}
