//! HTTP: one router per feature over the application layer's [`App`], the extractors whose
//! rejections use the contract's envelope, the signature middleware, and the web manager
//! (`admin`), which mounts the same routes behind its cookie.

pub mod admin;
mod analytics;
pub mod asyncapi;
mod audit;
pub mod auth;
mod chat;
mod devices;
mod error;
pub mod extract;
pub mod files;
pub mod health;
pub mod observe;
pub mod openapi;
mod search;

use axum::Router;

use crate::app::{App, AppError, Origin};

/// The JSON API's routes without their authentication: mounted once under `/api` behind the
/// app signature, and once more under `/admin/api` behind the web manager's cookie.
pub(crate) fn api_routes() -> Router<App> {
    chat::router()
        .merge(devices::router())
        .merge(search::router())
        .merge(analytics::router())
        .merge(audit::router())
}

/// The whole HTTP surface. `/metrics` is on it unless `metrics_on_api_port` is false
/// (`CHAT_METRICS_BIND` serves it elsewhere, see [`operations_router`]).
pub fn router(
    state: App,
    fanout: std::sync::Arc<dyn crate::app::Fanout>,
    operators: health::OperatorAccess,
    metrics_on_api_port: bool,
) -> Router {
    let api = api_routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_signature,
    ));
    let mut routes = Router::new()
        .merge(api)
        .merge(admin::router(state.clone()))
        // Uploads check the signature themselves, over the streamed body.
        .merge(files::router())
        .merge(health::router(operators))
        .merge(openapi::router())
        .merge(asyncapi::router());
    if metrics_on_api_port {
        routes = routes.route("/metrics", axum::routing::get(observe::metrics_route));
    }
    routes
        .fallback(not_found)
        .layer(axum::Extension(fanout))
        .layer(axum::middleware::from_fn(method_not_allowed))
        .layer(axum::middleware::from_fn(api_headers))
        .layer(axum::middleware::from_fn(observe::track_metrics))
        .layer(axum::middleware::from_fn(observe::request_id))
        .with_state(state)
}

/// Every answer under `/api`, errors included: never kept by a cache or a proxy (they are one
/// caller's data), and never sniffed as another type than the one declared.
async fn api_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let is_api = request.uri().path() == "/api" || request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    if is_api {
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    response
}

/// What `CHAT_METRICS_BIND` serves: `/metrics`, and the health routes beside it for probes that
/// watch the same port.
pub fn operations_router(state: App, operators: health::OperatorAccess) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(observe::metrics_route))
        .merge(health::router(operators))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(observe::request_id))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::not_found("no such route")
}

/// A known route called with a method it does not serve: 405 with axum's `Allow` header, in the
/// contract's envelope.
async fn method_not_allowed(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let response = next.run(request).await;
    if response.status() != axum::http::StatusCode::METHOD_NOT_ALLOWED
        || response
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
    {
        return response;
    }
    let allow = response.headers().get(axum::http::header::ALLOW).cloned();
    let mut refused = AppError::method_not_allowed().into_response();
    if let Some(allow) = allow {
        refused
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    refused
}

/// Where a request came from: its request id and the peer's address.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<observe::RequestId>()
            .map(|id| id.as_str().to_string());
        let client_request_id = parts
            .extensions
            .get::<observe::ClientRequestId>()
            .map(|id| id.as_str().to_string());
        let remote_addr = parts
            .extensions
            .get::<crate::peer::ClientAddr>()
            .map(|client| client.0.to_string());
        Ok(Origin {
            request_id,
            client_request_id,
            remote_addr,
        })
    }
}
