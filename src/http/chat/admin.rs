//! Admin routes: assign, status changes, bulk actions and erasing a person.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use events::{ConversationCommand, ConversationStatus, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::conversation_after;
use crate::app::ids::wire_id;
use crate::app::{App, AppError, Origin};
use crate::auth::Session;
use crate::commands::Intent;
use crate::http::extract::{ApiJson, Caller, ConversationId};
use crate::wire::{ConversationView, ErrorCode, Success, success};

const MAX_BULK: usize = 100;

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct AssignBody {
    admin_id: u64,
}

/// Assigns the conversation to an admin (admins only).
#[utoipa::path(put, path = "/api/chat/conversations/{id}/assign", tag = "admin", request_body = AssignBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = Success<ConversationView>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
        (status = 409, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn assign(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Json<Success<ConversationView>>, AppError> {
    let command = ConversationCommand::AssignConversation {
        actor: session.actor(),
        admin_id: wire_id(body.admin_id, "admin_id")?,
    };
    conversation_after(&app, &origin, &session, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct StatusBody {
    /// `active` (reopen), `closed` or `archived`.
    #[schema(pattern = "^(active|closed|archived)$")]
    status: String,
}

fn status_command(session: &Session, status: &str) -> Result<ConversationCommand, AppError> {
    let actor = session.actor();
    match status.parse::<ConversationStatus>() {
        Ok(ConversationStatus::Active) => Ok(ConversationCommand::ReopenConversation { actor }),
        Ok(ConversationStatus::Closed) => Ok(ConversationCommand::CloseConversation { actor }),
        Ok(ConversationStatus::Archived) => Ok(ConversationCommand::ArchiveConversation { actor }),
        Err(_) => Err(AppError::validation(
            "status must be active, closed or archived",
        )),
    }
}

/// Changes the status: reopen and archive are for admins; a user may close their own.
#[utoipa::path(put, path = "/api/chat/conversations/{id}/status", tag = "admin", request_body = StatusBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = Success<ConversationView>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
        (status = 409, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn set_status(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<StatusBody>,
) -> Result<Json<Success<ConversationView>>, AppError> {
    let command = status_command(&session, &body.status)?;
    conversation_after(&app, &origin, &session, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct BulkBody {
    /// 1..=100 distinct ids.
    #[schema(min_items = 1, max_items = 100)]
    conversation_ids: Vec<u64>,
    /// `close`, `archive` or `assign`.
    #[schema(pattern = "^(close|archive|assign)$")]
    action: String,
    /// For `assign`.
    admin_id: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(in crate::http) struct BulkOutcome {
    conversation_id: u64,
    /// `success` or `error`.
    status: &'static str,
    error_code: Option<ErrorCode>,
    message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(in crate::http) struct BulkResult {
    /// One outcome per id, in the order given.
    results: Vec<BulkOutcome>,
    succeeded: usize,
    failed: usize,
}

/// Closes, archives or assigns many conversations; answers what happened to each (admins only).
#[utoipa::path(post, path = "/api/chat/conversations/bulk", tag = "admin", request_body = BulkBody,
    responses(
        (status = 200, body = Success<BulkResult>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn bulk(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<Success<BulkResult>>, AppError> {
    if session.role != Role::Admin {
        return Err(AppError::forbidden("bulk actions are for admins"));
    }
    let distinct: BTreeSet<u64> = body.conversation_ids.iter().copied().collect();
    if body.conversation_ids.is_empty()
        || body.conversation_ids.len() > MAX_BULK
        || distinct.len() != body.conversation_ids.len()
    {
        return Err(AppError::validation(format!(
            "conversation_ids must hold 1..={MAX_BULK} distinct ids"
        )));
    }
    for id in &body.conversation_ids {
        wire_id(*id, "conversation_ids")?;
    }
    if let Some(admin_id) = body.admin_id {
        wire_id(admin_id, "admin_id")?;
    }
    let actor = session.actor();
    let make = |action: &str| -> Result<ConversationCommand, AppError> {
        match action {
            "close" => Ok(ConversationCommand::CloseConversation {
                actor: actor.clone(),
            }),
            "archive" => Ok(ConversationCommand::ArchiveConversation {
                actor: actor.clone(),
            }),
            "assign" => {
                let admin_id = body
                    .admin_id
                    .ok_or_else(|| AppError::validation("assign needs admin_id"))
                    .and_then(|id| wire_id(id, "admin_id"))?;
                Ok(ConversationCommand::AssignConversation {
                    actor: actor.clone(),
                    admin_id,
                })
            }
            _ => Err(AppError::validation(
                "action must be close, archive or assign",
            )),
        }
    };
    make(&body.action)?;
    let mut results = Vec::with_capacity(body.conversation_ids.len());
    for id in body.conversation_ids.iter().copied() {
        let intent = Intent::On(id, make(&body.action)?);
        let outcome = match app.execute(&origin, &session, intent, None).await {
            Ok(_) => BulkOutcome {
                conversation_id: id,
                status: "success",
                error_code: None,
                message: None,
            },
            Err(error) if error.is_server_error() => return Err(error),
            Err(error) => BulkOutcome {
                conversation_id: id,
                status: "error",
                error_code: Some(error.code),
                message: Some(error.message),
            },
        };
        results.push(outcome);
    }
    let succeeded = results.iter().filter(|r| r.status == "success").count();
    Ok(Json(success(BulkResult {
        failed: results.len() - succeeded,
        succeeded,
        results,
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct ErasureBody {
    /// The person whose typed text, files and devices go.
    user_id: u64,
    /// Why (a request under data protection law, a retention rule): kept in the audit trail.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

/// Erases a person: every conversation of theirs records who erased it and why, the text they
/// typed (messages, file names, feedback) is destroyed in the log and every view, and their
/// files, queued pushes and push devices are removed. Erasing again changes nothing and says so
/// (`already_erased`). Admins only.
#[utoipa::path(post, path = "/api/chat/admin/erasures", tag = "admin", request_body = ErasureBody,
    responses(
        (status = 200, body = Success<crate::app::erasure::Erasure>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn erase_person(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    ApiJson(body): ApiJson<ErasureBody>,
) -> Result<Json<Success<crate::app::erasure::Erasure>>, AppError> {
    // The person's newest conversation may have been opened a moment ago.
    app.fresh_for(&session).await;
    let eraser = crate::app::erasure::Eraser {
        store: &app.store,
        commands: &app.commands,
        files: &app.attachments.store,
    };
    let erasure = eraser
        .erase_person(
            session.actor(),
            origin.metadata(&session, None),
            body.user_id,
            &body.reason,
        )
        .await?;
    Ok(Json(success(erasure)))
}
