//! The manager's sign-in: a session token exchanged for an HttpOnly, SameSite=Strict cookie
//! (Secure when the public URL is https or a proxy says the request came over TLS), and the
//! middleware that admits a browser request to `/admin/api` with that cookie and, for every
//! request that may write, the session's CSRF token in `X-CSRF-Token`.
//!
//! The cookie only ever holds the session token; the CSRF token is derived from it (see
//! [`crate::auth::Auth::csrf_token`]) and handed to the page by `GET /admin/session`, so a
//! reload needs no storage. Only admins and auditors get in; what each may do is decided by the
//! API's handlers, as for the apps.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use events::Role;
use serde::{Deserialize, Serialize};

use crate::auth::{AuthError, Caller, MAX_JSON_BODY, Session, buffer_body};
use crate::http::chat::Success;
use crate::http::extract::ApiJson;
use crate::http::openapi::ErrorBody;
use crate::http::{ApiError, AppState};

/// The cookie holding the session token.
pub const COOKIE_NAME: &str = "chatd_admin";
/// The header carrying the CSRF token on every request that is not GET or HEAD.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A sign-in body is a token and little else.
const MAX_SIGN_IN_BODY: usize = 4096;

/// The session token in the manager's cookie, when the request carries one (the first, if a
/// client sent several).
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Whether the request's `Origin` is the host it was sent to: a page of another site (which
/// the browser would still send the cookie for, on a WebSocket) is refused.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let single = |name| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        }
    };
    let (Some(origin), Some(host)) = (single(ORIGIN), single(HOST)) else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

fn is_staff(session: &Session) -> bool {
    matches!(session.role, Role::Admin | Role::Auditor)
}

fn staff_only(session: &Session) -> Result<(), ApiError> {
    if is_staff(session) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the web manager is for admins and auditors",
        ))
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "not signed in to the web manager, or the session has ended",
    )
}

/// The CSRF header, sent exactly once and equal to the session's token.
fn check_csrf(state: &AppState, headers: &HeaderMap, token: &str) -> Result<(), ApiError> {
    let mut values = headers.get_all(CSRF_HEADER).iter();
    let sent = match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    };
    match sent {
        Some(sent) if state.auth.csrf_matches(token, sent) => Ok(()),
        _ => Err(ApiError::forbidden("missing or wrong X-CSRF-Token")),
    }
}

fn reads_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// Middleware of `/admin/api`: the cookie's session must be an admin's or an auditor's, a
/// request that may write must carry the CSRF token, and the body is held to the API's JSON
/// limit. The request then goes on as `Authorization: Bearer <token>`, so the handlers and
/// their `Caller` work exactly as for the apps.
pub async fn require_admin_cookie(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match admit(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn admit(state: &AppState, request: Request) -> Result<Request, ApiError> {
    let token = cookie_token(request.headers()).ok_or_else(unauthorized)?;
    let session = state.auth.session(&token).await.map_err(signed_out)?;
    staff_only(&session)?;
    if !reads_only(request.method()) {
        check_csrf(state, request.headers(), &token)?;
    }
    let mut request = buffer_body(request, MAX_JSON_BODY).await?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| unauthorized())?;
    request.headers_mut().insert(AUTHORIZATION, bearer);
    request.extensions_mut().insert(Caller(session));
    Ok(request)
}

fn signed_out(error: AuthError) -> ApiError {
    match error {
        AuthError::Unauthorized => unauthorized(),
        other => other.into(),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignInBody {
    /// An admin's or auditor's session token.
    token: String,
}

/// Who is signed in, and the CSRF token their writes carry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedIn {
    user_id: u64,
    /// `admin` or `auditor`.
    #[schema(value_type = String)]
    role: Role,
    identifier: String,
    /// Sent back as `X-CSRF-Token` on every request other than GET and HEAD.
    csrf_token: String,
}

fn signed_in(state: &AppState, session: Session, token: &str) -> Json<Success<SignedIn>> {
    Json(Success {
        status: "success",
        data: SignedIn {
            user_id: session.user_id,
            role: session.role,
            identifier: session.identifier,
            csrf_token: state.auth.csrf_token(token),
        },
    })
}

/// The request came over TLS as far as the browser is concerned.
fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    state.public_https
        || headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn cookie(value: &str, secure: bool, clear: bool) -> Result<HeaderValue, ApiError> {
    let mut cookie = format!("{COOKIE_NAME}={value}; Path=/admin; HttpOnly; SameSite=Strict");
    if clear {
        cookie.push_str("; Max-Age=0");
    }
    if secure {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie).map_err(|_| unauthorized())
}

/// Signs in to the web manager: checks the session token and sets the cookie. The body must
/// be JSON, which a page of another site cannot send here without a CORS preflight that chatd
/// never grants, so no one is signed in behind their back.
#[utoipa::path(post, path = "/admin/session", tag = "web manager", request_body = SignInBody,
    responses(
        (status = 200, description = "signed in; sets the cookie", body = Success<SignedIn>),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "not an admin or auditor", body = ErrorBody),
    ))]
pub async fn sign_in(
    State(state): State<AppState>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let headers = request.headers().clone();
    let request = buffer_body(request, MAX_SIGN_IN_BODY).await?;
    let ApiJson(body) = ApiJson::<SignInBody>::from_request(request, &()).await?;
    let token = body.token.trim();
    let session = state.auth.session(token).await?;
    staff_only(&session)?;
    let set_cookie = cookie(token, secure(&state, &headers), false)?;
    Ok((
        [(SET_COOKIE, set_cookie)],
        signed_in(&state, session, token),
    ))
}

/// Who is signed in to the web manager, with the CSRF token their writes carry (a reloaded
/// page asks again rather than storing it).
#[utoipa::path(get, path = "/admin/session", tag = "web manager",
    responses(
        (status = 200, body = Success<SignedIn>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("admin_cookie" = [])))]
pub async fn who_am_i(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Success<SignedIn>>, ApiError> {
    let token = cookie_token(&headers).ok_or_else(unauthorized)?;
    let session = state.auth.session(&token).await.map_err(signed_out)?;
    staff_only(&session)?;
    Ok(signed_in(&state, session, &token))
}

/// Signs out (with the CSRF token): ends the session and clears the cookie. The CSRF token is
/// checked against the cookie alone, so an already expired session can still be signed out of.
#[utoipa::path(delete, path = "/admin/session", tag = "web manager",
    responses(
        (status = 200, description = "signed out; clears the cookie"),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing or wrong X-CSRF-Token", body = ErrorBody),
    ),
    security(("admin_cookie" = [])))]
pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let token = cookie_token(&headers).ok_or_else(unauthorized)?;
    check_csrf(&state, &headers, &token)?;
    state.auth.delete_session(&token).await?;
    let cleared = cookie("", secure(&state, &headers), true)?;
    Ok((
        [(SET_COOKIE, cleared)],
        Json(serde_json::json!({"status": "success", "data": {"signed_out": true}})),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let map = headers(&[("cookie", "a=1; chatd_admin=abc123 ; b=2")]);
        assert_eq!(cookie_token(&map).as_deref(), Some("abc123"));
        assert_eq!(cookie_token(&headers(&[("cookie", "chatd_admin=")])), None);
        assert_eq!(
            cookie_token(&headers(&[("cookie", "xchatd_admin=1")])),
            None
        );
    }

    #[test]
    fn only_the_same_host_is_the_same_origin() {
        let same = headers(&[
            ("origin", "http://127.0.0.1:10000"),
            ("host", "127.0.0.1:10000"),
        ]);
        assert!(same_origin(&same));
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:10000"),
        ]);
        assert!(!same_origin(&other));
        assert!(!same_origin(&headers(&[("host", "127.0.0.1:10000")])));
        let prefixed = headers(&[
            ("origin", "http://127.0.0.1:10000.evil"),
            ("host", "127.0.0.1:10000"),
        ]);
        assert!(!same_origin(&prefixed));
    }
}
