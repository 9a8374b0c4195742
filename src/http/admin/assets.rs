//! The manager's pages and scripts, compiled into the binary (`src/admin/assets/`), and the
//! headers every `/admin` response carries: a Content-Security-Policy that allows only this
//! origin's scripts, styles, images and connections (no inline script, no other host), no
//! framing, no sniffing.

use axum::extract::{Path, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppError;

pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("dashboard.js", JS),
    asset!("conversation.js", JS),
    asset!("analytics.js", JS),
    asset!("audit.js", JS),
    asset!("charts.js", JS),
    asset!("vendor/socket.io.esm.min.js", JS),
];

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    // Assets change only with the binary; the tag lets a browser revalidate cheaply.
    let tag = format!(
        "\"{}\"",
        &crate::auth::sha256_hex(asset.body)[..Asset::TAG_CHARS]
    );
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|sent| sent.split(',').any(|one| one.trim() == tag));
    let etag = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\""));
    let common = [
        (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (ETAG, etag),
    ];
    if fresh {
        (StatusCode::NOT_MODIFIED, common).into_response()
    } else {
        (common, asset.body).into_response()
    }
}

impl Asset {
    const TAG_CHARS: usize = 16;
}

/// `GET /admin` and `/admin/`: the application's page (its views are chosen by the URL's hash).
pub async fn index(headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == "index.html") {
        Some(page) => serve(page, &headers),
        None => AppError::not_found("no such page").into_response(),
    }
}

/// `GET /admin/assets/{name}`.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => serve(asset, &headers),
        None => AppError::not_found("no such asset").into_response(),
    }
}

/// Adds the security headers to every `/admin` response; answers that did not choose their
/// caching (the API's JSON, the session) are never stored.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
