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
use axum::http::header::{AUTHORIZATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use events::Role;
use serde::{Deserialize, Serialize};

use crate::app::{App, AppError};
use crate::auth::cookie::{COOKIE_NAME, cookie_token};
use crate::auth::{AuthError, MAX_JSON_BODY, Session};
use crate::http::auth::{Caller, buffer_body};
use crate::http::extract::ApiJson;
use crate::wire::{ErrorBody, Success, success};

/// The header carrying the CSRF token on every request that is not GET or HEAD.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A sign-in body is a token and little else.
const MAX_SIGN_IN_BODY: usize = 4096;

fn is_staff(session: &Session) -> bool {
    matches!(session.role, Role::Admin | Role::Auditor)
}

fn staff_only(session: &Session) -> Result<(), AppError> {
    if is_staff(session) {
        Ok(())
    } else {
        Err(AppError::forbidden(
            "the web manager is for admins and auditors",
        ))
    }
}

fn unauthorized() -> AppError {
    AppError::new(
        crate::wire::ErrorCode::Unauthorized,
        "not signed in to the web manager, or the session has ended",
    )
}

/// The CSRF header, sent exactly once and equal to the session's token.
fn check_csrf(state: &App, headers: &HeaderMap, token: &str) -> Result<(), AppError> {
    let mut values = headers.get_all(CSRF_HEADER).iter();
    let sent = match (values.next(), values.next()) {
        (Some(value), None) => value.to_str().ok(),
        _ => None,
    };
    match sent {
        Some(sent) if state.auth.csrf_matches(token, sent) => Ok(()),
        _ => Err(AppError::forbidden("missing or wrong X-CSRF-Token")),
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
    State(state): State<App>,
    request: Request,
    next: Next,
) -> Response {
    match admit(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn admit(state: &App, request: Request) -> Result<Request, AppError> {
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

fn signed_out(error: AuthError) -> AppError {
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

fn signed_in(state: &App, session: Session, token: &str) -> Json<Success<SignedIn>> {
    Json(success(SignedIn {
        user_id: session.user_id,
        role: session.role,
        identifier: session.identifier,
        csrf_token: state.auth.csrf_token(token),
    }))
}

/// The request came over TLS as far as the browser is concerned.
fn secure(state: &App, headers: &HeaderMap) -> bool {
    state.public_https
        || headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn cookie(value: &str, secure: bool, clear: bool) -> Result<HeaderValue, AppError> {
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
    State(state): State<App>,
    request: Request,
) -> Result<impl IntoResponse, AppError> {
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
    State(state): State<App>,
    headers: HeaderMap,
) -> Result<Json<Success<SignedIn>>, AppError> {
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
    State(state): State<App>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, AppError> {
    let token = cookie_token(&headers).ok_or_else(unauthorized)?;
    check_csrf(&state, &headers, &token)?;
    state.auth.delete_session(&token).await?;
    let cleared = cookie("", secure(&state, &headers), true)?;
    Ok((
        [(SET_COOKIE, cleared)],
        Json(success(serde_json::json!({"signed_out": true}))),
    ))
}
