//! Push device registration: `POST /api/chat/devices` and `DELETE /api/chat/devices/{token}`.
//! Each caller manages only their own devices; the push module owns the table.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use events::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, Caller};
use crate::app::{App, AppError};
use crate::auth::Session;
use crate::push::devices::{self, MAX_TOKEN_CHARS, Owner};
use crate::push::{Platform, Provider};
use crate::wire::{Success, success};

pub fn router() -> axum::Router<App> {
    axum::Router::new()
        .route("/api/chat/devices", post(register))
        .route("/api/chat/devices/{token}", delete(unregister))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeviceBody {
    platform: Platform,
    /// `fcm` (Firebase, either platform) or `apns` (Apple directly).
    provider: Provider,
    /// The token the provider gave the app.
    #[schema(min_length = 1, max_length = 512, pattern = "^[A-Za-z0-9_:-]{1,512}$")]
    token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    token: String,
    platform: Platform,
    provider: Provider,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceRemoved {
    token: String,
}

/// Users and admins have devices; auditors read and are never notified.
fn owner(session: &Session) -> Result<Owner, AppError> {
    match session.role {
        Role::User | Role::Admin => Ok(Owner {
            role: session.role,
            user_id: session.user_id,
        }),
        _ => Err(AppError::forbidden(
            "only users and admins register devices",
        )),
    }
}

fn checked_token(token: &str) -> Result<(), AppError> {
    if devices::valid_token(token) {
        Ok(())
    } else {
        Err(AppError::validation(format!(
            "token must be 1 to {MAX_TOKEN_CHARS} letters, digits, '_', ':' or '-'"
        )))
    }
}

fn store_error(error: projections::ProjectionError) -> AppError {
    match error {
        projections::ProjectionError::Unavailable(detail) => {
            tracing::warn!(%detail, "device write failed: database unavailable");
            AppError::unavailable()
        }
        other => {
            tracing::error!(error = %other, "device write failed");
            AppError::internal()
        }
    }
}

/// Registers the caller's device for push notifications (201 when new to the caller, 200 when
/// it was already theirs). A token registered by someone else moves to the caller. Beyond the
/// per-person limit (10 by default), the caller's least recently registered device is dropped.
#[utoipa::path(post, path = "/api/chat/devices", tag = "devices", request_body = DeviceBody,
    responses(
        (status = 200, body = Success<DeviceView>, description = "already the caller's; refreshed"),
        (status = 201, body = Success<DeviceView>, description = "registered"),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn register(
    State(state): State<App>,
    Caller(session): Caller,
    ApiJson(body): ApiJson<DeviceBody>,
) -> Result<(StatusCode, Json<Success<DeviceView>>), AppError> {
    let owner = owner(&session)?;
    checked_token(&body.token)?;
    let new = devices::register(
        &state.store,
        owner,
        &body.token,
        body.platform,
        body.provider,
        state.push_max_devices,
    )
    .await
    .map_err(store_error)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(success(DeviceView {
            token: body.token,
            platform: body.platform,
            provider: body.provider,
        })),
    ))
}

/// Removes one of the caller's devices (404 when the caller has no device with this token).
#[utoipa::path(delete, path = "/api/chat/devices/{token}", tag = "devices",
    params(("token" = String, Path, description = "the device token",
        min_length = 1, max_length = 512, pattern = "^[A-Za-z0-9_:-]{1,512}$")),
    responses(
        (status = 200, body = Success<DeviceRemoved>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn unregister(
    State(state): State<App>,
    Caller(session): Caller,
    token: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Success<DeviceRemoved>>, AppError> {
    let Path(token) = token.map_err(|rejection| AppError::validation(rejection.body_text()))?;
    let owner = owner(&session)?;
    checked_token(&token)?;
    let removed = devices::unregister(&state.store, owner, &token)
        .await
        .map_err(store_error)?;
    if !removed {
        return Err(AppError::not_found("no such device"));
    }
    Ok(Json(success(DeviceRemoved { token })))
}
