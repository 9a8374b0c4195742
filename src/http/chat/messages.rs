//! `GET` and `POST /api/chat/messages`: a conversation's history, and sending.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use events::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::access::{own_user_id, readable};
use crate::app::ids::wire_id;
use crate::app::{App, AppError, Origin, messages};
use crate::http::extract::{
    ApiJson, ApiQuery, BodyUserId, Caller, MessageId, OptionalApiJson, bounded,
};
use crate::store::MessageWindow;
use crate::wire::{MessageView, SendMessageRequest, Success, success};

const DEFAULT_MESSAGE_PAGE: u32 = 50;
const MAX_MESSAGE_PAGE: u32 = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(in crate::http) struct MessagesQuery {
    /// Default for users: their active (else latest) conversation. Admins and auditors name it,
    /// or name `user_id`.
    conversation_id: Option<u64>,
    /// Users: must be their own. Staff: that user's latest conversation.
    user_id: Option<u64>,
    /// Messages with an id greater than this; `0`: from the first message.
    after_id: Option<u64>,
    /// Messages with an id smaller than this.
    before_id: Option<u64>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(in crate::http) struct MessagesPage {
    /// Null when the user has no conversation yet.
    conversation_id: Option<u64>,
    /// Oldest first.
    messages: Vec<MessageView>,
    /// More messages lie beyond this page in its direction: after it for `after_id`, before
    /// it otherwise. A page also ends early at about 1 MiB of message text.
    has_more: bool,
}

/// Chat history of a conversation, oldest first.
#[utoipa::path(get, path = "/api/chat/messages", tag = "messages", params(MessagesQuery),
    responses(
        (status = 200, body = Success<MessagesPage>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn list_messages(
    State(app): State<App>,
    Caller(session): Caller,
    ApiQuery(query): ApiQuery<MessagesQuery>,
    BodyUserId(body_user_id): BodyUserId,
) -> Result<Json<Success<MessagesPage>>, AppError> {
    app.fresh_for(&session).await;
    own_user_id(&session, query.user_id)?;
    own_user_id(&session, body_user_id)?;
    let limit = bounded(query.limit, DEFAULT_MESSAGE_PAGE, MAX_MESSAGE_PAGE, "limit")?;
    // `after_id=0`: from the first message (no message has id 0).
    let after_id = query.after_id.filter(|id| *id != 0);
    for id in [
        query.conversation_id,
        after_id,
        query.before_id,
        query.user_id,
    ]
    .into_iter()
    .flatten()
    {
        wire_id(id, "ids")?;
    }
    let conversation = match (query.conversation_id, query.user_id) {
        (Some(id), _) => Some(readable(&app, &session, id).await?),
        (None, Some(user_id)) => app.store.latest_conversation_of(user_id).await?,
        (None, None) if session.role == Role::User => {
            app.store.latest_conversation_of(session.user_id).await?
        }
        (None, None) => {
            return Err(AppError::validation(
                "conversation_id or user_id is required",
            ));
        }
    };
    let Some(conversation) = conversation else {
        return Ok(Json(success(MessagesPage {
            conversation_id: None,
            messages: Vec::new(),
            has_more: false,
        })));
    };
    let window = MessageWindow {
        after_id: query.after_id,
        before_id: query.before_id,
        limit,
    };
    let page = messages::history(&app, conversation.id, window).await?;
    Ok(Json(success(MessagesPage {
        conversation_id: Some(conversation.id),
        messages: page.messages,
        has_more: page.has_more,
    })))
}

/// Sends a message: 201 with the stored message, or 200 with the original for a repeated
/// `client_msg_id`.
#[utoipa::path(post, path = "/api/chat/messages", tag = "messages", request_body = SendMessageRequest,
    responses(
        (status = 201, body = Success<MessageView>), (status = 200, description = "a retry: the original message", body = Success<MessageView>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, body = crate::wire::ErrorBody), (status = 404, body = crate::wire::ErrorBody),
        (status = 409, body = crate::wire::ErrorBody), (status = 413, body = crate::wire::ErrorBody),
        (status = 429, body = crate::wire::ErrorBody), (status = 503, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn send_message(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    ApiJson(request): ApiJson<SendMessageRequest>,
) -> Result<(StatusCode, Json<Success<MessageView>>), AppError> {
    let sent = messages::send(&app, &origin, &session, request, "rest").await?;
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(success(sent.message))))
}

#[derive(Debug, Deserialize, ToSchema)]
pub(in crate::http) struct EditMessageBody {
    /// The new text: 1 to 5000 characters after trimming.
    message: Option<String>,
    /// The same as `message`; either may be sent.
    content: Option<String>,
}

/// The sender rewrites a text message within `CHAT_EDIT_WINDOW_SECS` of sending it; everyone in
/// the conversation gets `message_updated`, and the audit keeps every version.
#[utoipa::path(patch, path = "/api/chat/messages/{id}", tag = "messages", request_body = EditMessageBody,
    params(("id" = u64, Path, description = "message id")),
    responses(
        (status = 200, description = "the message as it now reads, with `edited_at`", body = Success<MessageView>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, description = "not the sender's message", body = crate::wire::ErrorBody),
        (status = 404, body = crate::wire::ErrorBody),
        (status = 409, description = "outside the edit window, deleted, or the conversation is archived", body = crate::wire::ErrorBody),
        (status = 429, body = crate::wire::ErrorBody), (status = 503, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn edit_message(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    MessageId(id): MessageId,
    ApiJson(body): ApiJson<EditMessageBody>,
) -> Result<Json<Success<MessageView>>, AppError> {
    let content = body.message.or(body.content).unwrap_or_default();
    let change = messages::MessageChange::Edit { content };
    let message = messages::change(&app, &origin, &session, id, change).await?;
    Ok(Json(success(message)))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub(in crate::http) struct DeleteMessageBody {
    /// Staff removing someone else's message say why (at most 500 characters); a sender
    /// withdrawing their own sends none.
    reason: Option<String>,
}

/// The sender withdraws a message within `CHAT_EDIT_WINDOW_SECS`, or an admin removes any
/// message with a reason. History then shows a tombstone (`deleted: true`, no content);
/// everyone in the conversation gets `message_deleted`; the audit still reads what it said.
#[utoipa::path(delete, path = "/api/chat/messages/{id}", tag = "messages", request_body(content = Option<DeleteMessageBody>, description = "optional"),
    params(("id" = u64, Path, description = "message id")),
    responses(
        (status = 200, description = "the tombstone", body = Success<MessageView>),
        (status = 400, body = crate::wire::ErrorBody), (status = 401, body = crate::wire::ErrorBody),
        (status = 403, description = "not the sender's message", body = crate::wire::ErrorBody),
        (status = 404, body = crate::wire::ErrorBody),
        (status = 409, description = "outside the edit window, already deleted, or the conversation is archived", body = crate::wire::ErrorBody),
        (status = 429, body = crate::wire::ErrorBody), (status = 503, body = crate::wire::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(in crate::http) async fn delete_message(
    State(app): State<App>,
    origin: Origin,
    Caller(session): Caller,
    MessageId(id): MessageId,
    OptionalApiJson(body): OptionalApiJson<DeleteMessageBody>,
) -> Result<Json<Success<MessageView>>, AppError> {
    let change = messages::MessageChange::Delete {
        reason: body.reason,
    };
    let message = messages::change(&app, &origin, &session, id, change).await?;
    Ok(Json(success(message)))
}
