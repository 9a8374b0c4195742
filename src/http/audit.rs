//! The audit routes (admins and auditors): a conversation's raw event stream, the conversation
//! as its events had made it at an instant, and a check of every stream's hash chain. Reads the
//! log only; never the read tables, never a write.

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use chrono::DateTime;
use events::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiQuery, Caller, ConversationId};
use crate::app::{App, AppError};
use crate::auth::Session;
use crate::store::{CONVERSATION_STREAM, ChainBreak};
use crate::wire::audit::AuditEventView;
use crate::wire::{FeedbackView, MessageView, wire_time};
use crate::wire::{Success, success};

pub fn router() -> axum::Router<App> {
    axum::Router::new()
        .route(
            "/api/audit/conversations/{id}/events",
            get(conversation_events),
        )
        .route(
            "/api/audit/conversations/{id}/state",
            get(conversation_state),
        )
        .route("/api/audit/verify", get(verify))
}

const DEFAULT_EVENT_PAGE: u32 = 100;
const MAX_EVENT_PAGE: u32 = 1000;

fn auditing(session: &Session) -> Result<(), AppError> {
    match session.role {
        Role::Admin | Role::Auditor => Ok(()),
        _ => Err(AppError::forbidden(
            "the audit routes are for admins and auditors",
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events with a greater sequence (default 0: from the first).
    #[param(minimum = 0, maximum = 9007199254740991_u64)]
    after_sequence: Option<u64>,
    /// 1..=1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventsPage {
    conversation_id: u64,
    /// In sequence order.
    events: Vec<AuditEventView>,
    /// Whether events follow this page.
    has_more: bool,
    /// The `after_sequence` of the next page, when there is one.
    next_after_sequence: Option<u64>,
}

/// A conversation's raw event stream, in sequence order (admins and auditors).
#[utoipa::path(get, path = "/api/audit/conversations/{id}/events", tag = "audit",
    params(("id" = u64, Path, description = "conversation id"), EventsQuery),
    responses(
        (status = 200, body = Success<AuditEventsPage>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn conversation_events(
    State(state): State<App>,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<Success<AuditEventsPage>>, AppError> {
    auditing(&session)?;
    let limit = query.limit.unwrap_or(DEFAULT_EVENT_PAGE);
    if !(1..=MAX_EVENT_PAGE).contains(&limit) {
        return Err(AppError::validation(format!(
            "limit must be between 1 and {MAX_EVENT_PAGE}"
        )));
    }
    let after = query.after_sequence.unwrap_or(0);
    if after > crate::app::ids::MAX_WIRE_ID {
        return Err(AppError::validation(
            "after_sequence must be an integer below 2^53",
        ));
    }
    let stream_id = id.to_string();
    // One more than asked, to know whether another page follows.
    let mut events = state
        .store
        .read_stream_page(CONVERSATION_STREAM, &stream_id, after, limit + 1)
        .await?;
    if events.is_empty() {
        let exists = after > 0
            && !state
                .store
                .read_stream_page(CONVERSATION_STREAM, &stream_id, 0, 1)
                .await?
                .is_empty();
        if !exists {
            return Err(AppError::not_found("no such conversation"));
        }
    }
    let has_more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_after_sequence = match events.last() {
        Some(last) if has_more => Some(last.sequence),
        _ => None,
    };
    Ok(Json(success(AuditEventsPage {
        conversation_id: id,
        events: events.into_iter().map(AuditEventView::from).collect(),
        has_more,
        next_after_sequence,
    })))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StateQuery {
    /// RFC 3339 instant (default: now); the events recorded up to it are folded.
    #[param(format = DateTime)]
    as_of: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationAsOfView {
    conversation_id: u64,
    /// The instant asked about, RFC 3339 UTC.
    as_of: String,
    /// The sequence of the last event folded in.
    sequence: u64,
    user_id: u64,
    user_identifier: String,
    /// `active`, `closed` or `archived`, as it was then.
    status: String,
    admin_id: Option<u64>,
    feedback: Option<FeedbackView>,
    created_at: String,
    updated_at: String,
    /// Every message sent by then, oldest first, read flags as they were then.
    messages: Vec<MessageView>,
}

/// The conversation and its messages as they stood at `as_of` (admins and auditors).
#[utoipa::path(get, path = "/api/audit/conversations/{id}/state", tag = "audit",
    params(("id" = u64, Path, description = "conversation id"), StateQuery),
    responses(
        (status = 200, body = Success<ConversationAsOfView>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody),
        (status = 404, description = "no such conversation, or not yet opened at as_of", body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn conversation_state(
    State(state): State<App>,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiQuery(query): ApiQuery<StateQuery>,
) -> Result<Json<Success<ConversationAsOfView>>, AppError> {
    auditing(&session)?;
    let as_of_micros = match query.as_of.as_deref() {
        None => chrono::Utc::now().timestamp_micros(),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map_err(|_| {
                AppError::validation("as_of must be an RFC 3339 time, e.g. 2025-07-14T10:30:00Z")
            })?
            .timestamp_micros(),
    };
    let events = state
        .store
        .read_stream(CONVERSATION_STREAM, &id.to_string(), 0)
        .await?;
    let mut folded = projections::ConversationAsOf::default();
    // The stream's prefix recorded by then: what had been committed at that instant.
    for event in events
        .iter()
        .take_while(|e| e.recorded_at_micros <= as_of_micros)
    {
        folded.apply(event.sequence, event.recorded_at_micros, event.decode()?);
    }
    let (Some(conversation_id), Some(user), Some(status)) =
        (folded.conversation_id, folded.user, folded.status)
    else {
        return Err(AppError::not_found("no such conversation at that time"));
    };
    let messages = folded
        .messages
        .into_values()
        .map(|m| MessageView::as_of(conversation_id, m, &state.attachments))
        .collect();
    Ok(Json(success(ConversationAsOfView {
        conversation_id,
        as_of: wire_time(as_of_micros),
        sequence: folded.sequence,
        user_id: user.id,
        user_identifier: user.identifier,
        status: status.to_string(),
        admin_id: folded.admin_id,
        feedback: folded.feedback.map(|(rating, comment)| FeedbackView {
            rating: u64::from(rating),
            comment,
        }),
        created_at: wire_time(folded.opened_at_micros.unwrap_or_default()),
        updated_at: wire_time(folded.updated_at_micros.unwrap_or_default()),
        messages,
    })))
}

/// The first link of a stream's chain that does not hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrokenLinkView {
    /// `conversation`; empty when only the log's tail is missing.
    stream_type: String,
    /// The conversation id; empty when only the log's tail is missing.
    stream_id: String,
    sequence: u64,
    position: u64,
    reason: String,
}

impl From<ChainBreak> for BrokenLinkView {
    fn from(b: ChainBreak) -> Self {
        BrokenLinkView {
            stream_type: b.stream_type,
            stream_id: b.stream_id,
            sequence: b.sequence,
            position: b.position,
            reason: b.reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyReport {
    /// Whether every stream's hash chain holds and no event is missing.
    holds: bool,
    /// Events checked (all of them when the chains hold).
    checked: u64,
    broken: Option<BrokenLinkView>,
}

/// Checks every stream's hash chain over the whole log (admins and auditors).
#[utoipa::path(get, path = "/api/audit/verify", tag = "audit",
    responses(
        (status = 200, description = "the check ran; `holds` says whether the log is intact", body = Success<VerifyReport>),
        (status = 401, body = crate::wire::ErrorBody), (status = 403, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn verify(
    State(state): State<App>,
    Caller(session): Caller,
) -> Result<Json<Success<VerifyReport>>, AppError> {
    auditing(&session)?;
    let report = state.store.verify_log(|_, _| {}).await?;
    Ok(Json(success(VerifyReport {
        holds: report.broken.is_none(),
        checked: report.checked,
        broken: report.broken.map(BrokenLinkView::from),
    })))
}
