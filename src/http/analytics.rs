//! `GET /api/chat/analytics`: the support report (response times, volume, resolution,
//! satisfaction) over a time range, for admins and auditors. Reads the `analytics` projection's
//! facts through the store and hands them to [`crate::analytics::report`]; never writes.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use events::Role;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiQuery, Caller};
use crate::analytics::{Report, ReportParams, report};
use crate::app::{App, AppError};
use crate::wire::{Success, success};

pub fn router() -> axum::Router<App> {
    axum::Router::new().route("/api/chat/analytics", get(analytics))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// RFC 3339, inclusive; default `to` minus 7 days.
    #[param(format = DateTime)]
    from: Option<String>,
    /// RFC 3339, exclusive; default now. At most 366 days after `from`.
    #[param(format = DateTime)]
    to: Option<String>,
    /// `day` (default) or `week` (weeks start on Monday).
    #[param(pattern = "^(day|week)$")]
    bucket: Option<String>,
    /// The zone whose local days make the buckets: an IANA name (`Asia/Shanghai`) or an
    /// offset (`+08:00`, with the `+` sent as `%2B`); default UTC.
    tz: Option<String>,
}

/// The support report: first-response and reply times, message volume per bucket by side,
/// conversations opened and closed with the resolution rate, satisfaction; overall and per
/// admin.
#[utoipa::path(get, path = "/api/chat/analytics", tag = "admin", params(AnalyticsParams),
    responses(
        (status = 200, body = Success<Report>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn analytics(
    State(state): State<App>,
    Caller(session): Caller,
    ApiQuery(params): ApiQuery<AnalyticsParams>,
) -> Result<Json<Success<Report>>, AppError> {
    if !matches!(session.role, Role::Admin | Role::Auditor) {
        return Err(AppError::forbidden("analytics are for admins and auditors"));
    }
    let params = ReportParams::parse(
        params.from.as_deref(),
        params.to.as_deref(),
        params.bucket.as_deref(),
        params.tz.as_deref(),
        crate::clock::now_micros(),
    )
    .map_err(AppError::validation)?;
    state.fresh_for_with(&session, &["analytics"]).await;
    let facts = state.store.analytics_facts(params.from, params.to).await?;
    Ok(Json(success(report(&params, &facts))))
}
