//! Admins' presence: an admin switches away and back; the staff see every admin's presence.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::{App, AppError, presence};
use crate::http::extract::{ApiJson, Caller};
use crate::wire::{AdminPresenceView, Success, success};

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct PresenceBody {
    /// `away` (automatic assignment passes the admin by) or `available`.
    #[schema(pattern = "^(away|available)$")]
    status: String,
}

/// An admin says they are away or available again (admins only); their presence afterwards.
/// The staff's sockets get a `presence` event when it changes.
#[utoipa::path(put, path = "/api/chat/presence", tag = "admin", request_body = PresenceBody,
    responses(
        (status = 200, body = Success<AdminPresenceView>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 503, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn set_presence(
    State(app): State<App>,
    Caller(session): Caller,
    ApiJson(body): ApiJson<PresenceBody>,
) -> Result<Json<Success<AdminPresenceView>>, AppError> {
    let view = presence::set_own(&app, &session, &body.status).await?;
    Ok(Json(success(view)))
}

#[derive(Debug, Serialize, ToSchema)]
pub(in crate::http) struct AdminsPresence {
    /// Every admin presence has seen or who has active conversations, by id.
    admins: Vec<AdminPresenceView>,
}

/// The admins: online, away, last seen and active conversations (admins and auditors).
#[utoipa::path(get, path = "/api/chat/presence/admins", tag = "admin",
    responses(
        (status = 200, body = Success<AdminsPresence>),
        (status = 401, body = crate::wire::ErrorBody), (status = 403, body = crate::wire::ErrorBody),
        (status = 503, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn admins_presence(
    State(app): State<App>,
    Caller(session): Caller,
) -> Result<Json<Success<AdminsPresence>>, AppError> {
    let admins = presence::admins(&app, &session).await?;
    Ok(Json(success(AdminsPresence { admins })))
}
