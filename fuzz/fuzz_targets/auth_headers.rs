//! The app signature and session headers: arbitrary X-Timestamp, X-Signature and Authorization
//! values, method, path and body through `Auth::verify_request`, and the bearer token through
//! `Auth::session` (embedded stores: SQLite sessions, the in-process replay guard).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    auth: chatd::auth::Auth,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = std::env::temp_dir().join(format!("chatd-fuzz-auth-{}", std::process::id()));
        let config = chatd::config::Config::from_lookup(|name| match name {
            "CHAT_DATA_DIR" => Some(dir.display().to_string()),
            "CHAT_APP_SECRET" => Some("fuzz-secret".into()),
            _ => None,
        })
        .expect("config");
        let auth = runtime.block_on(async {
            let store = chatd::startup::open_store(&config).await.expect("store");
            chatd::auth::Auth::new(&config, &store, None).await.expect("auth")
        });
        Fixture { runtime, auth }
    })
}

/// Splits the input into up to six fields at 0xFF bytes.
fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.splitn(6, |b| *b == 0xFF).collect()
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let parts = fields(data);
    let field = |i: usize| parts.get(i).copied().unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("x-timestamp", field(0)),
        ("x-signature", field(1)),
        ("authorization", field(2)),
    ] {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            headers.insert(name, value);
        }
    }
    let method = String::from_utf8_lossy(field(3));
    let path = String::from_utf8_lossy(field(4));
    fixture.runtime.block_on(async {
        let _ = fixture
            .auth
            .verify_request(&method, &path, &headers, field(5))
            .await;
        if let Some(token) = chatd::http::auth::bearer_token(&headers) {
            let _ = fixture.auth.session(token).await;
        }
    });
});
