//! GET /api/chat/search through real HTTP, on SQLite and on MariaDB: Latin words, Chinese,
//! Japanese and Korean substrings, mixed text, who sees what, validation, paging, ranking, and an
//! index rebuilt by a replay answering the same.

use crate::support;

use std::time::Duration;

use events::Role;
use projections::all_projectors;
use reqwest::Method;
use serde_json::{Value, json};
use support::*;

/// The whole index, row by row, as text (terms in hex: sqlx 0.8 does not decode MariaDB's `_bin`
/// text as a String).
async fn index_rows(store: &chatd::store::EventStore) -> Vec<String> {
    let sql = "select hex(term), conversation_id, message_id, hits from search_terms \
               order by term, conversation_id, message_id";
    macro_rules! rows {
        ($pool:expr) => {{
            let rows: Vec<(String, i64, i64, i64)> =
                sqlx::query_as(sql).fetch_all($pool).await.unwrap();
            rows.into_iter().map(|r| format!("{r:?}")).collect()
        }};
    }
    match store {
        chatd::store::EventStore::MySql(s) => rows!(s.pool()),
        chatd::store::EventStore::Sqlite(s) => rows!(s.pool()),
    }
}

/// Percent-encodes a query value (everything but the unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends a message as `token` (to their active conversation, or to `conversation_id`); its id
/// and conversation.
async fn send(
    app: &TestApp,
    token: &str,
    conversation_id: Option<u64>,
    content: &str,
) -> (u64, u64) {
    let mut body = json!({ "message": content });
    if let Some(id) = conversation_id {
        body["conversation_id"] = json!(id);
    }
    let (status, sent) = app
        .call(Method::POST, "/api/chat/messages", Some(token), Some(&body))
        .await;
    assert_eq!(status, 201, "{sent}");
    (
        sent["data"]["id"].as_u64().unwrap(),
        sent["data"]["conversation_id"].as_u64().unwrap(),
    )
}

/// Waits until every projector has applied the whole log (other callers' writes included).
async fn settled(app: &TestApp) {
    let head = app.state.store.head_position().await.unwrap();
    assert!(
        app.state
            .projections
            .wait_for(head, Duration::from_secs(30))
            .await
    );
}

async fn search(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    app.call(
        Method::GET,
        &format!("/api/chat/search?{query}"),
        Some(token),
        None,
    )
    .await
}

/// The message ids a successful search found, in order.
async fn found(app: &TestApp, token: &str, q: &str) -> Vec<u64> {
    found_with(app, token, &format!("q={}", encode(q))).await
}

/// The message ids of a search answer's results, in order.
fn result_ids(body: &Value) -> Vec<u64> {
    body["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message_id"].as_u64().unwrap())
        .collect()
}

async fn found_with(app: &TestApp, token: &str, query: &str) -> Vec<u64> {
    let (status, body) = search(app, token, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert_eq!(body["status"], "success");
    result_ids(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin_words_are_found_whole_and_case_insensitively_with_context() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let long = format!(
            "{} I need help with my ACCOUNT please {}",
            "Hello there, ".repeat(5),
            "thanks a lot, ".repeat(5)
        );
        let (account, _) = send(&app, &user, None, &long).await;
        let (accountant, _) = send(&app, &user, None, "Talk to the accountant").await;

        assert_eq!(
            found(&app, &user, "account").await,
            [account],
            "{}",
            db.name()
        );
        assert_eq!(found(&app, &user, "Account HELP").await, [account]);
        assert_eq!(found(&app, &user, "ACCOUNTANT").await, [accountant]);
        assert!(found(&app, &user, "account nonsenseword").await.is_empty());

        let (_, body) = search(&app, &user, "q=account").await;
        let result = &body["data"]["results"][0];
        assert_eq!(result["content"], long.as_str());
        assert_eq!(result["sender_role"], "user");
        assert!(result["conversation_id"].as_u64().unwrap() > 0);
        assert!(result["timestamp"].as_str().unwrap().ends_with('Z'));
        let context = result["context"].as_str().unwrap();
        assert!(
            context.starts_with("...") && context.ends_with("..."),
            "{context}"
        );
        assert!(context.contains("help with my ACCOUNT please"), "{context}");
        assert_eq!(
            body["data"]["pagination"],
            json!({"page": 1, "limit": 20, "total": 1, "pages": 1})
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_queries_of_two_and_four_characters_find_substrings_only() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let (whole, _) = send(&app, &user, None, "你好，我需要帮助处理我的账户").await;
        // Both characters of 帮助, but apart.
        let (apart, _) = send(&app, &user, None, "请帮我看看，谢谢你的协助").await;
        // Every bigram of 需要帮助, but never the four together.
        let (bigrams_only, _) = send(&app, &user, None, "我需要帮，也想要帮助").await;
        let (other, _) = send(&app, &user, None, "订单已经发货了").await;

        assert_eq!(
            found(&app, &user, "帮助").await,
            [bigrams_only, whole],
            "{}",
            db.name()
        );
        assert!(!found(&app, &user, "帮助").await.contains(&apart));
        assert_eq!(found(&app, &user, "需要帮助").await, [whole]);
        assert_eq!(found(&app, &user, "发货").await, [other]);
        assert!(found(&app, &user, "退款").await.is_empty());

        let (_, body) = search(&app, &user, &format!("q={}", encode("需要帮助"))).await;
        assert_eq!(
            body["data"]["results"][0]["context"],
            "你好，我需要帮助处理我的账户"
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_japanese_and_korean_text_is_found() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let (phone, _) = send(&app, &user, None, "我的iPhone屏幕坏了, help!").await;
        let (japanese, _) = send(&app, &user, None, "パスワードを忘れました").await;
        let (korean, _) = send(&app, &user, None, "비밀번호를 잊어버렸어요").await;

        assert_eq!(found(&app, &user, "iphone").await, [phone], "{}", db.name());
        assert_eq!(found(&app, &user, "iPhone屏幕").await, [phone]);
        assert_eq!(found(&app, &user, "屏幕坏了 HELP").await, [phone]);
        assert_eq!(found(&app, &user, "屏 help").await, [phone]);
        assert_eq!(found(&app, &user, "パスワード").await, [japanese]);
        assert_eq!(found(&app, &user, "비밀번호").await, [korean]);
        assert!(found(&app, &user, "iphone 비밀번호").await.is_empty());
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_finds_only_their_own_messages_and_staff_find_all() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, alice) = app.session(Role::User, None).await;
        let (_, bob) = app.session(Role::User, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let (alice_msg, alice_conv) =
            send(&app, &alice, None, "secret refund 退款 for alice").await;
        let (reply, _) = send(&app, &admin, Some(alice_conv), "your refund 退款 is done").await;
        let (bob_msg, _) = send(&app, &bob, None, "bob wants a refund 退款 too").await;
        settled(&app).await;

        for q in ["refund", "退款"] {
            assert_eq!(found(&app, &bob, q).await, [bob_msg], "{}: {q}", db.name());
            assert_eq!(found(&app, &alice, q).await, [reply, alice_msg]);
            assert_eq!(found(&app, &admin, q).await, [bob_msg, reply, alice_msg]);
            assert_eq!(found(&app, &auditor, q).await, [bob_msg, reply, alice_msg]);
        }
        assert!(found(&app, &bob, "alice").await.is_empty());

        // Naming another user's conversation fails as it does on the other routes.
        let (status, denied) = search(
            &app,
            &bob,
            &format!("q=refund&conversation_id={alice_conv}"),
        )
        .await;
        let (other_status, other) = app
            .call(
                Method::GET,
                &format!("/api/chat/messages?conversation_id={alice_conv}"),
                Some(&bob),
                None,
            )
            .await;
        assert_eq!(status, 403, "{denied}");
        assert_eq!((status, &denied), (other_status, &other));
        assert_eq!(denied["error_code"], "FORBIDDEN");
        let (status, missing) = search(&app, &bob, "q=refund&conversation_id=999999").await;
        assert_eq!(
            (status, missing["error_code"].as_str()),
            (404, Some("NOT_FOUND"))
        );

        assert_eq!(
            found_with(
                &app,
                &alice,
                &format!("q=refund&conversation_id={alice_conv}")
            )
            .await,
            [reply, alice_msg]
        );
        assert_eq!(
            found_with(
                &app,
                &admin,
                &format!("q=refund&conversation_id={alice_conv}")
            )
            .await,
            [reply, alice_msg]
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_shorter_than_two_characters_and_bad_paging_are_validation_errors() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let too_long = format!("q={}", "a".repeat(201));
        let too_many_terms = format!(
            "q={}",
            encode(&(0..20).map(|i| format!("w{i} ")).collect::<String>())
        );
        for query in [
            "q=a",
            "q=%E5%A5%BD",
            "q=%20%20b%20%20",
            "q=",
            "",
            too_long.as_str(),
            too_many_terms.as_str(),
            "q=help&limit=0",
            "q=help&limit=51",
            "q=help&page=0",
            "q=help&page=abc",
            "q=help&conversation_id=0",
            "q=help&before_id=0",
            "q=help&before_id=9007199254740993",
            "q=help&before_id=abc",
        ] {
            let (status, body) = search(&app, &user, query).await;
            assert_eq!(status, 400, "{}: {query}: {body}", db.name());
            assert_eq!(body["status"], "error");
            assert_eq!(body["error_code"], "VALIDATION_ERROR");
        }
        let (status, body) = app
            .call(Method::GET, "/api/chat/search?q=help", None, None)
            .await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (401, Some("UNAUTHORIZED"))
        );
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_latin_letters_are_ignored_and_a_query_of_too_many_terms_is_refused() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let (refund, _) = send(&app, &user, None, "where is my refund").await;
        let (lettered, _) = send(&app, &user, None, "a refund for order 7").await;

        // `a` and `7` narrow nothing: the rest of the query decides.
        assert_eq!(
            found(&app, &user, "a refund").await,
            [lettered, refund],
            "{}",
            db.name()
        );
        assert_eq!(found(&app, &user, "refund 7 x").await, [lettered, refund]);
        let (_, body) = search(&app, &user, &format!("q={}", encode("a refund"))).await;
        assert_eq!(body["data"]["results"][1]["context"], "where is my refund");

        // Nothing left to search for, or more terms than a query may have: a 400 in the envelope.
        let nine_chars = "我 你 他 她 的 是 在 有 和";
        let nine_words = "one two three four five six seven eight nine";
        for q in ["a b", "x 7 z", "1 2 3 4 5 6 7 8 9", nine_chars, nine_words] {
            let (status, body) = search(&app, &user, &format!("q={}", encode(q))).await;
            assert_eq!(status, 400, "{}: {q}: {body}", db.name());
            assert_eq!(body["status"], "error");
            assert_eq!(body["error_code"], "VALIDATION_ERROR");
            assert!(body["message"].as_str().unwrap().contains('q'), "{body}");
        }
        // Eight terms are allowed.
        for q in [
            "我 你 他 她 的 是 在 有",
            "one two three four five six seven eight",
        ] {
            let (status, body) = search(&app, &user, &format!("q={}", encode(q))).await;
            assert_eq!(status, 200, "{q}: {body}");
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_chinese_characters_and_long_runs_find_exactly_the_texts_that_hold_them() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let (_, other) = app.session(Role::User, None).await;
        let (whole, _) = send(&app, &user, None, "你好，我需要帮助处理我的账户").await;
        // Every bigram a long query looks up, but never the run itself.
        let (apart, _) = send(&app, &user, None, "需要帮助，处理我的账户").await;
        let (one_char, _) = send(&app, &user, None, "账").await;
        let (others, _) = send(&app, &other, None, "我需要帮助处理我的账户").await;
        settled(&app).await;

        // One character anywhere in a run (first, middle, last, alone).
        assert_eq!(found(&app, &user, "账 好").await, [whole], "{}", db.name());
        assert_eq!(found(&app, &user, "账 处").await, [apart, whole]);
        assert_eq!(found(&app, &user, "账 ok").await, Vec::<u64>::new());
        let (_, body) = search(&app, &user, &format!("q={}", encode("账 账"))).await;
        assert_eq!(body["data"]["pagination"]["total"], 3);
        assert!(result_ids(&body).contains(&one_char));
        // A run longer than the bigrams it is looked up by: only where it is contiguous.
        assert_eq!(found(&app, &user, "需要帮助处理我的账户").await, [whole]);
        assert_eq!(found(&app, &user, "帮助处理").await, [whole]);
        // Another user's identical text is never found, whatever the query's shape.
        for q in ["需要帮助处理我的账户", "账 处", "帮助"] {
            assert!(!found(&app, &user, q).await.contains(&others), "{q}");
            assert_eq!(found(&app, &other, q).await, [others], "{q}");
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_two_holds_the_next_results_without_overlap() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let mut sent = Vec::new();
        for n in 0..25 {
            sent.push(
                send(&app, &user, None, &format!("paging test 分页 number {n}"))
                    .await
                    .0,
            );
        }
        let newest_first: Vec<u64> = sent.iter().rev().copied().collect();

        let mut seen = Vec::new();
        for page in 1..=3 {
            let (status, body) =
                search(&app, &user, &format!("q=paging&limit=10&page={page}")).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body["data"]["pagination"],
                json!({"page": page, "limit": 10, "total": 25, "pages": 3}),
                "{}",
                db.name()
            );
            let ids: Vec<u64> = result_ids(&body);
            assert_eq!(ids.len(), if page < 3 { 10 } else { 5 });
            seen.extend(ids);
        }
        assert_eq!(seen, newest_first, "every message once, newest first");
        assert_eq!(
            found_with(
                &app,
                &user,
                &format!("q={}&limit=10&page=2", encode("分页"))
            )
            .await,
            newest_first[10..20]
        );
        let (status, past) = search(&app, &user, "q=paging&limit=10&page=4").await;
        assert_eq!(status, 200);
        assert_eq!(past["data"]["results"], json!([]));
        assert_eq!(past["data"]["pagination"]["total"], 25);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_ranked_by_relevance_then_recency() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, None).await;
        let (three, _) = send(&app, &user, None, "refund refund REFUND 退款退款").await;
        let (one_old, _) = send(&app, &user, None, "a refund 退款").await;
        let (two, _) = send(&app, &user, None, "refund, I said refund").await;
        let (one_new, _) = send(&app, &user, None, "refund 退款 again").await;

        assert_eq!(
            found(&app, &user, "refund").await,
            [three, two, one_new, one_old],
            "{}",
            db.name()
        );
        assert_eq!(found(&app, &user, "退款").await, [three, one_new, one_old]);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_index_answers_the_same() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, alice) = app.session(Role::User, None).await;
        let (_, bob) = app.session(Role::User, None).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let lines = [
            "I need help with my account",
            "我需要帮助处理我的账户",
            "refund 退款 please, refund",
            "パスワードを忘れました",
            "my iPhone屏幕坏了",
        ];
        for (n, line) in lines.iter().enumerate() {
            send(&app, &alice, None, &format!("{line} {n}")).await;
            send(&app, &bob, None, &format!("{n} {line}")).await;
        }
        settled(&app).await;
        let queries = [
            "account",
            "帮助",
            "需要帮助",
            "refund 退款",
            "パスワード",
            "iphone",
            "屏幕",
            "屏 坏",
            "帮 账",
        ];
        let mut before = Vec::new();
        for token in [&alice, &bob, &admin] {
            for q in queries {
                let (status, body) = search(&app, token, &format!("q={}&limit=3", encode(q))).await;
                assert_eq!(status, 200);
                assert!(
                    body["data"]["pagination"]["total"].as_u64().unwrap() > 0,
                    "{q}"
                );
                before.push(body);
            }
        }

        let index = index_rows(&db.store).await;
        assert!(index.len() > 50, "{}: {}", db.name(), index.len());

        let position = projections::replay(&db.store, &all_projectors(), 3, |_| {})
            .await
            .unwrap();
        assert_eq!(position, db.store.head_position().await.unwrap());

        let mut after = Vec::new();
        for token in [&alice, &bob, &admin] {
            for q in queries {
                after.push(
                    search(&app, token, &format!("q={}&limit=3", encode(q)))
                        .await
                        .1,
                );
            }
        }
        assert_eq!(before, after, "{}", db.name());
        assert_eq!(
            index_rows(&db.store).await,
            index,
            "{}: row for row",
            db.name()
        );
        // The live projector carries on from the replayed checkpoint.
        let (fresh, _) = send(&app, &alice, None, "after the replay 重建").await;
        assert_eq!(found(&app, &alice, "重建").await, [fresh]);
        app.stop().await;
        db.cleanup().await;
    }
}

/// `count` texts holding `one` or `other`, in turn, never both.
fn each_alone(one: &str, other: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| format!("{} filler", if n % 2 == 0 { one } else { other }))
        .collect()
}

/// Sends `texts` through the server's own command bus (far faster than HTTP for thousands of
/// messages), spread over `users`' conversations, each user's in order, the users at once.
async fn post_all(app: &TestApp, users: &[events::Actor], texts: Vec<String>) -> Vec<u64> {
    let mut per_user = vec![Vec::new(); users.len()];
    for (n, text) in texts.into_iter().enumerate() {
        per_user[n % users.len()].push(text);
    }
    let sends =
        users.iter().zip(per_user).map(|(user, texts)| async move {
            let mut ids = Vec::new();
            for text in texts {
                let committed = open_with(&app.state.commands, user, &text).await;
                ids.extend(committed.events.iter().filter_map(
                    |event| match event.decode().ok()? {
                        events::ConversationEvent::MessageSent { message_id, .. } => {
                            Some(message_id)
                        }
                        _ => None,
                    },
                ));
            }
            ids
        });
    futures_util::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_every_conversation_ranks_its_newest_thousand_matches() {
    for db in TestDb::each().await {
        // A read budget that covers the whole index: the search never stops for it here.
        let app = TestApp::spawn_with(&db, &[("CHAT_SEARCH_READ_BUDGET", "100000")]).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let users: Vec<events::Actor> = (0..10).map(|_| user(fresh_id())).collect();
        let (owner_id, owner_token) = app.session(Role::User, None).await;
        let owner = user(owner_id);

        // Oldest: 300 messages with both words, and three where "gamma" counts three times.
        let both = post_all(&app, &users, vec!["gamma delta".to_string(); 300]).await;
        let strong = post_all(
            &app,
            std::slice::from_ref(&owner),
            vec!["gamma gamma gamma delta".to_string(); 3],
        )
        .await;
        // Then 2,000 of each word alone: the newest 2,000 postings of either word hold no
        // message with both.
        post_all(&app, &users, each_alone("gamma", "delta", 4000)).await;
        let newest = post_all(&app, &users[..1], vec!["gamma gamma newest".to_string()]).await;
        settled(&app).await;

        // Rare together: the search widens until it has seen every posting, and is exact.
        let (status, body) = search(&app, &admin, "q=gamma%20delta&limit=50").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["pagination"]["total"], 303, "{}", db.name());
        assert_eq!(body["data"]["total_is_exact"], true);
        let ids: Vec<u64> = result_ids(&body);
        let mut strong_desc = strong.clone();
        strong_desc.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(
            ids[..3],
            strong_desc[..],
            "{}: most relevant first",
            db.name()
        );
        let newest_both = both.iter().max().copied().unwrap();
        assert_eq!(ids[3], newest_both, "{}: then newest", db.name());

        // Common: only the newest 1,000 matches are ranked, so the old strong matches are not
        // among them, and the total says "at least".
        let (_, body) = search(&app, &admin, "q=gamma&limit=50").await;
        assert_eq!(body["data"]["pagination"]["total"], 1000, "{}", db.name());
        assert_eq!(body["data"]["pagination"]["pages"], 20);
        assert_eq!(body["data"]["total_is_exact"], false);
        let results = body["data"]["results"].as_array().unwrap();
        assert_eq!(results[0]["message_id"].as_u64(), newest.first().copied());
        assert!(
            results
                .iter()
                .all(|r| !strong.contains(&r["message_id"].as_u64().unwrap())),
            "{}",
            db.name()
        );
        let (_, last) = search(&app, &admin, "q=gamma&limit=50&page=20").await;
        assert_eq!(last["data"]["results"].as_array().unwrap().len(), 50);
        let (_, past) = search(&app, &admin, "q=gamma&limit=50&page=21").await;
        assert_eq!(past["data"]["results"].as_array().unwrap().len(), 0);
        assert_eq!(past["data"]["pagination"]["total"], 1000);

        // A user's own conversations are searched whole: their strong matches rank first.
        let (_, own) = search(&app, &owner_token, "q=gamma").await;
        assert_eq!(own["data"]["pagination"]["total"], 3);
        assert_eq!(own["data"]["total_is_exact"], true);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_over_every_conversation_looks_up_common_terms_beside_a_rare_one() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let users: Vec<events::Actor> = (0..4).map(|_| user(fresh_id())).collect();
        // Rare together, each word common alone: the common ones are looked up per candidate
        // (and the four-character phrase is then checked in the text).
        let mut rare = post_all(&app, &users, vec!["zeta omega 我需要帮助你".to_string(); 3]).await;
        post_all(&app, &users, vec!["我需要帮 助理".to_string(); 2]).await;
        let common = (0..200)
            .map(|n| {
                if n % 2 == 0 {
                    "omega 需要"
                } else {
                    "omega 帮助"
                }
                .to_string()
            })
            .collect();
        post_all(&app, &users, common).await;
        settled(&app).await;
        rare.sort_unstable_by(|a, b| b.cmp(a));

        for q in ["zeta%20omega", &encode("需要帮助")] {
            let (status, body) = search(&app, &admin, &format!("q={q}")).await;
            assert_eq!(status, 200, "{body}");
            let ids: Vec<u64> = result_ids(&body);
            assert_eq!(ids, rare, "{}: {q}", db.name());
            assert_eq!(body["data"]["total_is_exact"], true);
        }
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_that_reads_its_budget_answers_with_the_newest_matches_and_goes_on_from_there() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_SEARCH_READ_BUDGET", "100")]).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let (owner_id, owner_token) = app.session(Role::User, None).await;
        let owner = user(owner_id);
        let users: Vec<events::Actor> = (0..6).map(|_| user(fresh_id())).collect();
        // Two common words that rarely meet: three old messages hold both, then 2,400 hold
        // one, then two new ones hold both, then 400 more hold one.
        let mut matches = post_all(
            &app,
            std::slice::from_ref(&owner),
            vec!["kappa lambda old".into(); 3],
        )
        .await;
        post_all(&app, &users, each_alone("kappa", "lambda", 2400)).await;
        let new = post_all(
            &app,
            std::slice::from_ref(&owner),
            vec!["kappa lambda new".into(); 2],
        )
        .await;
        matches.extend(&new);
        post_all(&app, &users, each_alone("kappa", "lambda", 400)).await;
        settled(&app).await;
        matches.sort_unstable_by(|a, b| b.cmp(a));

        // The first answer holds the matches among the newest messages and says where the
        // older ones begin; following `next_before_id` finds every match once, newest first.
        let (status, first) = search(&app, &admin, "q=kappa%20lambda").await;
        assert_eq!(status, 200, "{}: {first}", db.name());
        assert_eq!(
            result_ids(&first),
            new.iter().rev().copied().collect::<Vec<_>>()
        );
        assert_eq!(first["data"]["total_is_exact"], false, "{}", db.name());
        assert_eq!(first["data"]["pagination"]["total"], 2);
        let mut seen = result_ids(&first);
        let mut before = first["data"]["next_before_id"].as_u64().expect("a cursor");
        assert!(
            before < new[0],
            "{}: the cursor is below what was searched",
            db.name()
        );
        let mut answers = 1;
        loop {
            let (status, body) = search(
                &app,
                &admin,
                &format!("q=kappa%20lambda&before_id={before}"),
            )
            .await;
            assert_eq!(status, 200, "{}: {body}", db.name());
            let ids = result_ids(&body);
            assert!(ids.iter().all(|id| *id < before), "{}: {body}", db.name());
            seen.extend(ids);
            answers += 1;
            match body["data"]["next_before_id"].as_u64() {
                Some(next) => {
                    assert!(next < before, "{}: the cursor moves on", db.name());
                    assert_eq!(body["data"]["total_is_exact"], false);
                    before = next;
                }
                None => {
                    assert_eq!(body["data"]["total_is_exact"], true);
                    break;
                }
            }
            assert!(answers < 20, "{}: the walk ends", db.name());
        }
        assert_eq!(
            seen,
            matches,
            "{}: every match once, newest first",
            db.name()
        );

        // `before_id` also narrows a search that reads every match: a user's own.
        let (_, own) = search(
            &app,
            &owner_token,
            &format!("q=kappa%20lambda&before_id={}", new[0]),
        )
        .await;
        assert_eq!(result_ids(&own), matches[2..], "{}", db.name());
        assert_eq!(own["data"]["next_before_id"], Value::Null);
        assert_eq!(own["data"]["total_is_exact"], true);
        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_count_against_the_callers_limit_and_refusals_do_not() {
    for db in TestDb::each().await {
        let app = TestApp::spawn_with(&db, &[("CHAT_LIMIT_SEARCHES_PER_MIN", "3")]).await;
        let (_, user) = app.session(Role::User, None).await;
        let (_, other) = app.session(Role::User, None).await;

        // A query refused as malformed is not counted.
        let (status, _) = search(&app, &user, "q=a").await;
        assert_eq!(status, 400, "{}", db.name());
        for n in 0..3 {
            let (status, body) = search(&app, &user, "q=hello").await;
            assert_eq!(status, 200, "{}: search {}: {body}", db.name(), n + 1);
        }
        let response = app
            .signed(Method::GET, "/api/chat/search?q=hello", Some(&user), None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 429, "{}", db.name());
        assert!(response.headers().contains_key("retry-after"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "RATE_LIMITED");
        // Another caller has their own count.
        assert_eq!(search(&app, &other, "q=hello").await.0, 200);

        app.stop().await;
        db.cleanup().await;
    }
}
