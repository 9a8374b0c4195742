//! Conversations: list, one, open, read receipts, feedback and typing.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use events::{ConversationCommand, ConversationStatus, NewMessage, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::conversation_after;
use crate::app::access::{is_staff, own_user_id, readable, within_limit};
use crate::app::ids::wire_id;
use crate::app::{
    App, AppError, Fanout, Origin, messages, presence, reads, typing as typing_indicators,
};
use crate::commands::Intent;
use crate::http::extract::{ApiJson, ApiQuery, BodyUserId, Caller, ConversationId, bounded};
use crate::limits::LimitKind;
use crate::store::ConversationFilter;
use crate::wire::{ConversationView, MessageView, Pagination, Success, success};

const DEFAULT_CONVERSATION_PAGE: u32 = 20;
const MAX_CONVERSATION_PAGE: u32 = 50;
/// Pages beyond this are refused rather than scanned.
const MAX_PAGE_NUMBER: u32 = 100_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::http) struct ConversationsQuery {
    /// From 1.
    #[param(minimum = 1, maximum = 100000)]
    page: Option<u32>,
    /// 1..=50, default 20.
    #[param(minimum = 1, maximum = 50)]
    limit: Option<u32>,
    /// `active`, `closed` or `archived`.
    #[param(pattern = "^(active|closed|archived)$")]
    status: Option<String>,
    /// Staff: conversations assigned to this admin.
    assigned_to: Option<u64>,
    /// Staff: only conversations nobody is assigned to.
    unassigned: Option<bool>,
    /// Staff: that user's conversations. Users: must be their own.
    user_id: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(in crate::http) struct ConversationsPage {
    conversations: Vec<ConversationView>,
    pagination: Pagination,
}

/// Conversations the caller may see, most recently active first.
#[utoipa::path(get, path = "/api/chat/conversations", tag = "conversations", params(ConversationsQuery),
    responses(
        (status = 200, body = Success<ConversationsPage>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn list_conversations(
    State(app): State<App>,
    Caller(session): Caller,
    ApiQuery(query): ApiQuery<ConversationsQuery>,
    BodyUserId(body_user_id): BodyUserId,
) -> Result<Json<Success<ConversationsPage>>, AppError> {
    app.fresh_for(&session).await;
    own_user_id(&session, query.user_id)?;
    own_user_id(&session, body_user_id)?;
    let page = bounded(query.page, 1, MAX_PAGE_NUMBER, "page")?;
    let limit = bounded(
        query.limit,
        DEFAULT_CONVERSATION_PAGE,
        MAX_CONVERSATION_PAGE,
        "limit",
    )?;
    let status = match query.status.as_deref() {
        None => None,
        Some(raw) => Some(
            raw.parse::<ConversationStatus>()
                .map_err(|_| AppError::validation("status must be active, closed or archived"))?
                .as_str()
                .to_string(),
        ),
    };
    for id in [query.assigned_to, query.user_id].into_iter().flatten() {
        wire_id(id, "ids")?;
    }
    let filter = if is_staff(&session) {
        ConversationFilter {
            user_id: query.user_id,
            status,
            assigned_to: query.assigned_to,
            unassigned: query.unassigned.unwrap_or(false),
        }
    } else {
        ConversationFilter {
            user_id: Some(session.user_id),
            status,
            ..ConversationFilter::default()
        }
    };
    let (rows, total) = app.store.conversations(&filter, page, limit).await?;
    let caller_is_user = session.role == Role::User;
    let mut conversations: Vec<ConversationView> = rows
        .into_iter()
        .map(|row| ConversationView::new(row, caller_is_user))
        .collect();
    presence::add_to(&app, &mut conversations).await;
    Ok(Json(success(ConversationsPage {
        conversations,
        pagination: Pagination::new(page, limit, total),
    })))
}

/// One conversation.
#[utoipa::path(get, path = "/api/chat/conversations/{id}", tag = "conversations",
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = Success<ConversationView>),
        (status = 401, body = crate::wire::ErrorBody), (status = 403, body = crate::wire::ErrorBody),
        (status = 404, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn get_conversation(
    State(app): State<App>,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
) -> Result<Json<Success<ConversationView>>, AppError> {
    app.fresh_for(&session).await;
    let row = readable(&app, &session, id).await?;
    let view = ConversationView::new(row, session.role == Role::User);
    Ok(Json(success(presence::with(&app, view).await)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct OpenConversationBody {
    initial_message: Option<String>,
    /// `text` (default), `image` or `file`.
    #[schema(pattern = "^(text|image|file)$")]
    message_type: Option<String>,
    file_id: Option<String>,
    client_msg_id: Option<String>,
    /// Must be the caller's own.
    user_id: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(in crate::http) struct OpenedConversation {
    conversation_id: u64,
    conversation: Option<ConversationView>,
    /// The initial message, when one was sent.
    message: Option<MessageView>,
}

/// The user's active conversation (200), with the initial message appended, or a new one (201).
#[utoipa::path(post, path = "/api/chat/conversations", tag = "conversations", request_body = OpenConversationBody,
    responses(
        (status = 201, body = Success<OpenedConversation>), (status = 200, description = "the active conversation", body = Success<OpenedConversation>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 429, body = crate::wire::ErrorBody),
        (status = 503, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn open_conversation(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    ApiJson(body): ApiJson<OpenConversationBody>,
) -> Result<(StatusCode, Json<Success<OpenedConversation>>), AppError> {
    own_user_id(&session, body.user_id)?;
    if session.role != Role::User {
        return Err(AppError::forbidden("only users open conversations"));
    }
    // Checked even without a first message: a malformed body is refused whole.
    let message_type = messages::parse_message_type(body.message_type.as_deref())?;
    let message = match body.initial_message {
        Some(content) => Some(NewMessage {
            message_type,
            content,
            file_id: body.file_id,
            client_msg_id: body.client_msg_id.clone(),
        }),
        None => None,
    };
    if message.is_some() {
        within_limit(&app, &session, LimitKind::Messages).await?;
    }
    let intent = Intent::OpenOrContinue {
        actor: session.actor(),
        message,
    };
    let committed = app
        .execute(&origin, &session, intent, body.client_msg_id)
        .await?;
    let message = committed.events.iter().rev().find_map(|event| {
        MessageView::from_event(committed.conversation_id, event, &app.attachments)
    });
    if message.is_some() && !committed.duplicate {
        crate::metrics::message_accepted("rest");
    }
    app.fresh_for(&session).await;
    let conversation = match app.store.conversation(committed.conversation_id).await? {
        Some(row) => Some(presence::with(&app, ConversationView::new(row, true)).await),
        None => None,
    };
    let status = if committed.opened {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(success(OpenedConversation {
            conversation_id: committed.conversation_id,
            conversation,
            message,
        })),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct MarkReadBody {
    /// At most 1000; ids that are not the other side's unread messages are ignored.
    message_ids: Vec<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(in crate::http) struct MarkedRead {
    /// Messages newly marked read.
    marked_read: usize,
}

/// Marks the other side's messages read.
#[utoipa::path(put, path = "/api/chat/conversations/{id}/read", tag = "conversations", request_body = MarkReadBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = Success<MarkedRead>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn mark_read(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<MarkReadBody>,
) -> Result<Json<Success<MarkedRead>>, AppError> {
    let marked_read = reads::mark_read(&app, &origin, &session, id, body.message_ids).await?;
    Ok(Json(success(MarkedRead { marked_read })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct FeedbackBody {
    /// 1..=5.
    #[schema(minimum = 1, maximum = 5)]
    rating: u8,
    /// At most 1000 characters.
    comment: Option<String>,
}

/// The user rates their closed conversation, once.
#[utoipa::path(post, path = "/api/chat/conversations/{id}/feedback", tag = "conversations", request_body = FeedbackBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 201, body = Success<ConversationView>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
        (status = 409, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn feedback(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<FeedbackBody>,
) -> Result<(StatusCode, Json<Success<ConversationView>>), AppError> {
    let command = ConversationCommand::GiveFeedback {
        actor: session.actor(),
        rating: body.rating,
        comment: body.comment,
    };
    let Json(view) = conversation_after(&app, &origin, &session, id, command).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct TypingBody {
    /// true while typing, false when stopped.
    typing: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub(in crate::http) struct TypingSent {
    #[schema(example = "success")]
    status: &'static str,
    #[schema(example = "Typing indicator sent")]
    message: &'static str,
}

/// Sends a typing indicator to the conversation's sockets (never stored; at most 10 a minute per
/// caller, a stop that ends a counted start free).
#[utoipa::path(post, path = "/api/chat/conversations/{id}/typing", tag = "conversations", request_body = TypingBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = TypingSent),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
        (status = 429, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn typing(
    State(app): State<App>,
    Extension(fanout): Extension<Arc<dyn Fanout>>,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<TypingBody>,
) -> Result<Json<TypingSent>, AppError> {
    let indicator = typing_indicators::indicator(&app, &session, id, body.typing).await?;
    fanout
        .to_conversation(id, typing_indicators::TYPING_EVENT, &indicator)
        .await;
    Ok(Json(TypingSent {
        status: "success",
        message: "Typing indicator sent",
    }))
}
