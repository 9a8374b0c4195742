//! The admin web manager: its sign-in cookie and CSRF rules, the API mounted under `/admin/api`,
//! its Socket.IO path, its assets and their headers, over real HTTP on each back end; and the
//! whole manager in a real browser (headless Chromium driven by Playwright, `tests/admin/
//! browser.mjs`), with the user's side a real Socket.IO client, on each back end.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use events::Role;
use reqwest::Method;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use support::*;

/// What `POST /admin/session` answered: status, body, and the Set-Cookie header.
struct SignIn {
    status: u16,
    body: Value,
    set_cookie: Option<String>,
}

impl SignIn {
    fn csrf(&self) -> String {
        self.body["data"]["csrf_token"]
            .as_str()
            .unwrap_or_else(|| panic!("a CSRF token in {}", self.body))
            .to_string()
    }
}

async fn sign_in(app: &TestApp, token: &str, forwarded_https: bool) -> SignIn {
    let mut request = app
        .client
        .post(format!("{}/admin/session", app.address))
        .json(&json!({ "token": token }));
    if forwarded_https {
        request = request.header("X-Forwarded-Proto", "https");
    }
    let response = request.send().await.expect("sign in");
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response.json().await.unwrap_or(Value::Null);
    SignIn {
        status,
        body,
        set_cookie,
    }
}

fn cookie_of(token: &str) -> String {
    format!("chatd_admin={token}")
}

/// A request to the manager's API with the cookie and, when given, the CSRF header.
async fn admin_call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.client.request(method, format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.header(COOKIE, cookie_of(token));
    }
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A user with an open conversation: (user id, token, conversation id).
async fn user_with_conversation(app: &TestApp, words: &str) -> (u64, String, u64) {
    let (id, token) = app.session(Role::User, None).await;
    let (status, opened) = app
        .call(
            Method::POST,
            "/api/chat/conversations",
            Some(&token),
            Some(&json!({ "initial_message": words })),
        )
        .await;
    assert_eq!(status, 201, "open a conversation: {opened}");
    let conversation = opened["data"]["conversation_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("a conversation id in {opened}"));
    (id, token, conversation)
}

fn assert_error(body: &Value, code: &str, context: &str) {
    assert_eq!(body["status"], "error", "{context}: {body}");
    assert_eq!(body["error_code"], code, "{context}: {body}");
    assert!(body["message"].is_string(), "{context}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_admins_and_auditors_sign_in_and_get_an_http_only_strict_cookie() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let name = db.name();
        let (_, user) = app.session(Role::User, None).await;
        let (admin_id, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;

        let refused = sign_in(&app, &user, false).await;
        let unknown = sign_in(&app, &"f".repeat(64), false).await;
        let signed = sign_in(&app, &admin, false).await;
        let auditing = sign_in(&app, &auditor, false).await;
        let over_tls = sign_in(&app, &admin, true).await;

        assert_eq!(refused.status, 403, "{name}");
        assert_error(&refused.body, "FORBIDDEN", name);
        assert!(refused.set_cookie.is_none(), "{name}: no cookie for a user");
        assert_eq!(unknown.status, 401, "{name}");
        assert_error(&unknown.body, "UNAUTHORIZED", name);
        assert_eq!(signed.status, 200, "{name}: {}", signed.body);
        assert_eq!(signed.body["data"]["user_id"], admin_id, "{name}");
        assert_eq!(signed.body["data"]["role"], "admin", "{name}");
        assert_eq!(signed.csrf(), app.state.auth.csrf_token(&admin), "{name}");
        let cookie = signed.set_cookie.clone().expect("a cookie");
        assert!(
            cookie.starts_with(&format!("chatd_admin={admin};")),
            "{cookie}"
        );
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
            assert!(
                cookie.contains(attribute),
                "{name}: {attribute} in {cookie}"
            );
        }
        assert!(!cookie.contains("Secure"), "{name}: plain HTTP: {cookie}");
        assert!(
            over_tls.set_cookie.unwrap_or_default().contains("; Secure"),
            "{name}: behind TLS the cookie is Secure"
        );
        assert_eq!(auditing.status, 200, "{name}");
        assert_eq!(auditing.body["data"]["role"], "auditor", "{name}");
        let (status, me) = admin_call(
            &app,
            Method::GET,
            "/admin/session",
            Some(&admin),
            None,
            None,
        )
        .await;
        assert_eq!(status, 200, "{name}: {me}");
        assert_eq!(
            me["data"]["csrf_token"],
            signed.csrf(),
            "{name}: the CSRF token survives a reload"
        );
        let (status, body) =
            admin_call(&app, Method::GET, "/admin/session", None, None, None).await;
        assert_eq!(status, 401, "{name}");
        assert_error(&body, "UNAUTHORIZED", name);
        let (status, body) =
            admin_call(&app, Method::GET, "/admin/session", Some(&user), None, None).await;
        assert_eq!(status, 403, "{name}: a user's token in the cookie: {body}");
        let malformed = app
            .client
            .post(format!("{}/admin/session", app.address))
            .header("Content-Type", "application/json")
            .body("{\"token\":")
            .send()
            .await
            .expect("request");
        assert_eq!(malformed.status().as_u16(), 400, "{name}");

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_public_https_url_makes_the_cookie_secure() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn_with(&db, &[("CHAT_PUBLIC_URL", "https://chat.example.com")]).await;
    let (_, admin) = app.session(Role::Admin, None).await;

    let signed = sign_in(&app, &admin, false).await;

    assert_eq!(signed.status, 200);
    assert!(signed.set_cookie.unwrap_or_default().contains("; Secure"));
    app.stop().await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_mounted_api_takes_the_cookie_and_wants_the_csrf_token_for_every_write() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let name = db.name();
        let (_, _, conversation) = user_with_conversation(&app, "hello from the app").await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let csrf = sign_in(&app, &admin, false).await.csrf();
        let list = "/admin/api/chat/conversations?status=active";
        let reply = json!({"conversation_id": conversation, "content": "hello from support"});

        let (no_cookie, body) = admin_call(&app, Method::GET, list, None, None, None).await;
        assert_eq!(no_cookie, 401, "{name}");
        assert_error(&body, "UNAUTHORIZED", name);
        let (listed, page) = admin_call(&app, Method::GET, list, Some(&admin), None, None).await;
        assert_eq!(listed, 200, "{name}: {page}");
        assert_eq!(
            page["data"]["conversations"][0]["id"], conversation,
            "{name}"
        );
        let post = "/admin/api/chat/messages";
        let (without, body) = admin_call(
            &app,
            Method::POST,
            post,
            Some(&admin),
            None,
            Some(reply.clone()),
        )
        .await;
        assert_eq!(
            without, 403,
            "{name}: a write without the CSRF token: {body}"
        );
        assert_error(&body, "FORBIDDEN", name);
        let wrong = "0".repeat(64);
        let (with_wrong, _) = admin_call(
            &app,
            Method::POST,
            post,
            Some(&admin),
            Some(&wrong),
            Some(reply.clone()),
        )
        .await;
        assert_eq!(with_wrong, 403, "{name}: a wrong CSRF token");
        let (_, other_admin) = app.session(Role::Admin, None).await;
        let others = app.state.auth.csrf_token(&other_admin);
        let (with_others, _) = admin_call(
            &app,
            Method::POST,
            post,
            Some(&admin),
            Some(&others),
            Some(reply.clone()),
        )
        .await;
        assert_eq!(with_others, 403, "{name}: another session's CSRF token");
        let (sent, message) = admin_call(
            &app,
            Method::POST,
            post,
            Some(&admin),
            Some(&csrf),
            Some(reply.clone()),
        )
        .await;
        assert_eq!(sent, 201, "{name}: {message}");
        assert_eq!(message["data"]["sender_role"], "admin", "{name}");
        let (signed_only, _) = app
            .call(
                Method::GET,
                "/admin/api/chat/conversations",
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(
            signed_only, 401,
            "{name}: the manager's API takes the cookie, not a bearer token"
        );
        let huge = json!({"conversation_id": conversation, "content": "x".repeat(70_000)});
        let (too_large, body) = admin_call(
            &app,
            Method::POST,
            post,
            Some(&admin),
            Some(&csrf),
            Some(huge),
        )
        .await;
        assert_eq!(too_large, 413, "{name}: {body}");
        let (unknown, body) = admin_call(
            &app,
            Method::GET,
            "/admin/api/chat/nothing",
            Some(&admin),
            None,
            None,
        )
        .await;
        assert_eq!(unknown, 404, "{name}");
        assert_error(&body, "NOT_FOUND", name);
        let (_, user) = app.session(Role::User, None).await;
        let (as_user, body) = admin_call(&app, Method::GET, list, Some(&user), None, None).await;
        assert_eq!(as_user, 403, "{name}: a user's token in the cookie: {body}");

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_auditor_reads_through_the_manager_and_every_write_is_refused() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let name = db.name();
        let (_, _, conversation) = user_with_conversation(&app, "audit me").await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let csrf = sign_in(&app, &auditor, false).await.csrf();
        let get = |path: String| {
            let (app, auditor) = (&app, auditor.clone());
            async move { admin_call(app, Method::GET, &path, Some(&auditor), None, None).await }
        };

        let (listed, _) = get("/admin/api/chat/conversations".into()).await;
        let (events, body) = get(format!(
            "/admin/api/audit/conversations/{conversation}/events"
        ))
        .await;
        let (analytics, _) = get("/admin/api/chat/analytics".into()).await;
        let (reply, reply_body) = admin_call(
            &app,
            Method::POST,
            "/admin/api/chat/messages",
            Some(&auditor),
            Some(&csrf),
            Some(json!({"conversation_id": conversation, "content": "I should not"})),
        )
        .await;
        let (close, _) = admin_call(
            &app,
            Method::PUT,
            &format!("/admin/api/chat/conversations/{conversation}/status"),
            Some(&auditor),
            Some(&csrf),
            Some(json!({"status": "closed"})),
        )
        .await;

        assert_eq!(listed, 200, "{name}");
        assert_eq!(events, 200, "{name}: {body}");
        assert_eq!(body["data"]["events"][0]["sequence"], 1, "{name}");
        assert_eq!(analytics, 200, "{name}");
        assert_eq!(reply, 403, "{name}: {reply_body}");
        assert_error(&reply_body, "FORBIDDEN", name);
        assert_eq!(close, 403, "{name}");

        app.stop().await;
        db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signing_out_ends_the_session_and_clears_the_cookie() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let name = db.name();
        let (_, admin) = app.session(Role::Admin, None).await;
        let csrf = sign_in(&app, &admin, false).await.csrf();

        let (without, _) = admin_call(
            &app,
            Method::DELETE,
            "/admin/session",
            Some(&admin),
            None,
            None,
        )
        .await;
        let response = app
            .client
            .delete(format!("{}/admin/session", app.address))
            .header(COOKIE, cookie_of(&admin))
            .header("X-CSRF-Token", &csrf)
            .send()
            .await
            .expect("sign out");
        let status = response.status().as_u16();
        let cleared = response
            .headers()
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let (after, _) = admin_call(
            &app,
            Method::GET,
            "/admin/session",
            Some(&admin),
            None,
            None,
        )
        .await;
        let (api_after, _) = app
            .call(Method::GET, "/api/chat/conversations", Some(&admin), None)
            .await;

        assert_eq!(without, 403, "{name}: signing out needs the CSRF token");
        assert_eq!(status, 200, "{name}");
        assert!(cleared.starts_with("chatd_admin=;"), "{name}: {cleared}");
        assert!(
            cleared.contains("Max-Age=0") && cleared.contains("Path=/admin"),
            "{cleared}"
        );
        assert_eq!(after, 401, "{name}: the session is gone");
        assert_eq!(api_after, 401, "{name}: for the apps' API too");

        app.stop().await;
        db.cleanup().await;
    }
}

/// The assets the page loads; each is checked for its headers and for what it may reach.
const ASSETS: [(&str, &str); 12] = [
    ("/admin/", "text/html"),
    ("/admin/assets/style.css", "text/css"),
    ("/admin/assets/icon.svg", "image/svg+xml"),
    ("/admin/assets/app.js", "text/javascript"),
    ("/admin/assets/api.js", "text/javascript"),
    ("/admin/assets/dom.js", "text/javascript"),
    ("/admin/assets/dashboard.js", "text/javascript"),
    ("/admin/assets/conversation.js", "text/javascript"),
    ("/admin/assets/analytics.js", "text/javascript"),
    ("/admin/assets/audit.js", "text/javascript"),
    ("/admin/assets/charts.js", "text/javascript"),
    (
        "/admin/assets/vendor/socket.io.esm.min.js",
        "text/javascript",
    ),
];

/// URLs that may appear in the assets: names, not places anything is fetched from (the SVG
/// namespace, a link in the Socket.IO client's error text).
const HARMLESS_URLS: [&str; 3] = [
    "http://www.w3.org/2000/svg",
    "https://socket.io/docs/v3/migrating-from-2-x-to-3-0/",
    "https://",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_manager_is_served_from_the_binary_with_a_strict_policy_and_nothing_from_elsewhere() {
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db).await;

    for (path, content_type) in ASSETS {
        let response = app.get(path).await;
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            header("content-type").starts_with(content_type),
            "{path}: {}",
            header("content-type")
        );
        let policy = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                policy.contains(directive),
                "{path}: {directive} in {policy}"
            );
        }
        assert!(
            !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
            "{policy}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert!(!header("etag").is_empty(), "{path}");
        let text = response.text().await.expect("body");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("http") {
            let candidate = &rest[at..];
            let url: String = candidate
                .chars()
                .take_while(|c| !c.is_whitespace() && !"\"'`)<>".contains(*c))
                .collect();
            if url.starts_with("http://") || url.starts_with("https://") {
                assert!(
                    HARMLESS_URLS.contains(&url.as_str()),
                    "{path} names another host: {url}"
                );
            }
            rest = &candidate[4..];
        }
        if !path.contains("vendor/") {
            assert!(
                !text.contains("innerHTML")
                    && !text.contains("outerHTML")
                    && !text.contains("insertAdjacentHTML"),
                "{path} builds markup from strings"
            );
            assert!(!text.contains("eval("), "{path}");
        }
        if path == "/admin/" {
            assert!(!text.contains("<script>"), "{path}: no inline script");
            assert!(
                !has_inline_handler(&text),
                "{path}: no inline event handlers"
            );
        }
    }
    let tag = app
        .get("/admin/assets/app.js")
        .await
        .headers()
        .get("etag")
        .cloned()
        .expect("an etag");
    let again = app
        .client
        .get(format!("{}/admin/assets/app.js", app.address))
        .header("If-None-Match", tag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(again.status(), 304);
    let missing = app.get("/admin/assets/nothing.js").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(app.get("/admin").await.status(), 200);

    app.stop().await;
    db.cleanup().await;
}

/// ` onclick=`, ` onload=`, ...: an attribute that would run script.
fn has_inline_handler(html: &str) -> bool {
    html.match_indices(" on").any(|(at, _)| {
        let rest = &html[at + 3..];
        let name_len = rest.chars().take_while(char::is_ascii_alphabetic).count();
        name_len > 0 && rest[name_len..].trim_start().starts_with('=')
    })
}

/// Opens an Engine.IO session over long-polling at `path` and asks to connect to the default
/// namespace; returns the namespace's answer packet (`40{...}` accepted, `44{...}` refused).
async fn socket_connect(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> String {
    let with_headers = |request: reqwest::RequestBuilder| {
        let mut request = request;
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie_of(cookie));
        }
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        request
    };
    let url = format!("{}{path}?EIO=4&transport=polling", app.address);
    let open = with_headers(app.client.get(&url))
        .send()
        .await
        .expect("engine.io open")
        .text()
        .await
        .expect("open packet");
    let handshake: Value = serde_json::from_str(open.trim_start_matches('0'))
        .unwrap_or_else(|e| panic!("an open packet, got {open:?}: {e}"));
    let sid = handshake["sid"].as_str().expect("sid").to_string();
    let session_url = format!("{url}&sid={sid}");
    let posted = with_headers(app.client.post(&session_url))
        .body("40")
        .send()
        .await
        .expect("connect packet");
    assert_eq!(posted.status(), 200);
    // Pings may come first; the namespace's answer is the first packet of type 4.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < deadline {
        let polled = tokio::time::timeout(
            Duration::from_secs(10),
            with_headers(app.client.get(&session_url)).send(),
        )
        .await
        .expect("an answer within 10 s")
        .expect("poll")
        .text()
        .await
        .expect("answer");
        for packet in polled.split('\u{1e}') {
            if packet.starts_with('4') {
                return packet.to_string();
            }
            seen.push(packet.to_string());
        }
    }
    panic!("no answer to the connect packet; received {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_manager_socket_takes_the_cookie_only_from_a_page_of_the_same_host() {
    for db in TestDb::each().await {
        let app = TestApp::spawn(&db).await;
        let name = db.name();
        let (_, admin) = app.session(Role::Admin, None).await;
        let (_, user) = app.session(Role::User, None).await;
        let own = app.address.clone();

        let accepted = socket_connect(&app, "/admin/socket.io/", Some(&admin), Some(&own)).await;
        let foreign = socket_connect(
            &app,
            "/admin/socket.io/",
            Some(&admin),
            Some("http://evil.example"),
        )
        .await;
        let no_origin = socket_connect(&app, "/admin/socket.io/", Some(&admin), None).await;
        let other_path = socket_connect(&app, "/socket.io/", Some(&admin), Some(&own)).await;
        let as_user = socket_connect(&app, "/admin/socket.io/", Some(&user), Some(&own)).await;

        assert!(accepted.starts_with("40{"), "{name}: {accepted}");
        for (refused, case) in [
            (&foreign, "another origin"),
            (&no_origin, "no origin"),
            (&other_path, "the apps' path"),
        ] {
            assert!(
                refused.starts_with("44{") && refused.contains("UNAUTHORIZED"),
                "{name}: {case}: {refused}"
            );
        }
        assert!(
            as_user.starts_with("44{") && as_user.contains("FORBIDDEN"),
            "{name}: {as_user}"
        );

        app.stop().await;
        db.cleanup().await;
    }
}

// ---------------------------------------------------------------------------------------------
// In a real browser

/// How long the browser scenario may take before it counts as hung.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(240);

/// Runs `tests/admin/<script>` under node with Chromium and `settings` in its environment; fails
/// the test with its output unless it exits 0 within [`BROWSER_TIMEOUT`].
async fn run_browser_script(script: &str, backend: &str, settings: &[(&str, String)]) {
    let child = tokio::process::Command::new("node")
        .arg(format!(
            "{}/tests/admin/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .env("CHROMIUM", chromium())
        .envs(settings.iter().map(|(name, value)| (*name, value)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let output = tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!("{backend}: the browser scenario {script} did not finish in {BROWSER_TIMEOUT:?}")
        })
        .expect("run the browser scenario");
    assert!(
        output.status.success(),
        "the browser scenario {script} failed on {backend} ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

fn chromium() -> String {
    std::env::var("CHAT_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// node, Playwright and Chromium; anything missing fails the test with how to get it.
fn require_browser() {
    let tests = format!("{}/tests", env!("CARGO_MANIFEST_DIR"));
    let node = std::process::Command::new("node").arg("--version").output();
    let problem = if node.map(|o| !o.status.success()).unwrap_or(true) {
        Some("node is not installed (Debian: apt-get install nodejs npm)".to_string())
    } else if !std::path::Path::new(&format!("{tests}/node_modules/playwright-core")).exists()
        || !std::path::Path::new(&format!("{tests}/node_modules/socket.io-client")).exists()
    {
        Some(
            "tests/node_modules lacks playwright-core or socket.io-client: run `make test-deps`"
                .into(),
        )
    } else if !std::path::Path::new(&chromium()).exists() {
        Some(format!(
            "no Chromium at {} (Debian: apt-get install chromium)",
            chromium()
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        panic!("the admin manager's browser test cannot run: {problem}");
    }
}

/// Where the screenshots go: `CHAT_TEST_ARTIFACTS`, else `admin-screenshots` in the target
/// directory.
fn screenshots(backend: &str) -> std::path::PathBuf {
    let base = std::env::var("CHAT_TEST_ARTIFACTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .map(|target| target.join("admin-screenshots"))
                .unwrap_or_else(|| "admin-screenshots".into())
        });
    base.join(backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_manager_works_in_a_real_browser_with_live_updates_and_messages_shown_as_text() {
    require_browser();
    for db in TestDb::each().await {
        // The scenario assigns by hand and filters on "unassigned": automatic assignment (its
        // own tests are in tests/api/presence.rs) would give both conversations to the admin as
        // soon as the page connects.
        let app = TestApp::spawn_with(&db, &[("CHAT_AUTO_ASSIGN", "off")]).await;
        let name = db.name();
        let (user_id, user, conversation) =
            user_with_conversation(&app, "Hello, I need help").await;
        let (second_user, _, second) = user_with_conversation(&app, "Another question").await;
        // More messages holding one word than a search over every conversation ranks (1,000):
        // the dashboard offers to search the older ones.
        let (haystack_user, _, haystack) = user_with_conversation(&app, "haystack 0").await;
        let haystack_user = support::user(haystack_user);
        for n in 1..=1100 {
            open_with(
                &app.state.commands,
                &haystack_user,
                &format!("haystack {n}"),
            )
            .await;
        }
        let (admin_id, admin) = app.session(Role::Admin, None).await;
        let (_, auditor) = app.session(Role::Auditor, None).await;
        let artifacts = screenshots(name);
        // Last run's screenshots must not pass for this run's.
        let _ = std::fs::remove_dir_all(&artifacts);
        std::fs::create_dir_all(&artifacts).expect("screenshot directory");

        run_browser_script(
            "browser.mjs",
            name,
            &[
                ("CHAT_URL", app.address.clone()),
                ("APP_SECRET", APP_SECRET.to_string()),
                ("ADMIN_TOKEN", admin.clone()),
                ("ADMIN_ID", admin_id.to_string()),
                ("AUDITOR_TOKEN", auditor.clone()),
                ("USER_TOKEN", user.clone()),
                ("USER_ID", user_id.to_string()),
                ("CONVERSATION_ID", conversation.to_string()),
                ("SECOND_CONVERSATION_ID", second.to_string()),
                ("SECOND_USER_ID", second_user.to_string()),
                ("HAYSTACK_CONVERSATION_ID", haystack.to_string()),
                ("SCREENSHOT_DIR", artifacts.display().to_string()),
            ],
        )
        .await;
        for shot in [
            "dashboard.png",
            "conversation.png",
            "bulk.png",
            "analytics.png",
            "audit.png",
        ] {
            let size = std::fs::metadata(artifacts.join(shot))
                .map(|m| m.len())
                .unwrap_or(0);
            assert!(size > 1000, "{name}: screenshot {shot} was saved");
        }

        app.stop().await;
        db.cleanup().await;
    }
}

/// `/api/docs` signs "Try it out" requests in a real browser (`tests/admin/docs.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_page_signs_try_it_out_requests_with_a_secret_it_never_stores() {
    require_browser();
    let db = TestDb::sqlite().await;
    let app = TestApp::spawn(&db).await;
    let (_, user) = app.session(Role::User, None).await;
    run_browser_script(
        "docs.mjs",
        db.name(),
        &[
            ("CHAT_URL", app.address.clone()),
            ("APP_SECRET", APP_SECRET.to_string()),
            ("USER_TOKEN", user.clone()),
        ],
    )
    .await;
    app.stop().await;
    db.cleanup().await;
}
