//! The chat API of the spec and the contract: messages, conversations, read receipts, admin
//! routes (assign, status, bulk) and feedback. Handlers turn requests into commands or read-table
//! queries; they never write a read table.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use events::{ConversationCommand, ConversationStatus, MessageType, NewMessage, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Caller, ConversationId, wire_id};
use super::views::{AdminPresenceView, ConversationView, MessageView, Pagination};
use super::{ApiError, AppState, Origin};
use crate::auth::Session;
use crate::commands::{Committed, Intent};
use crate::limits::LimitKind;
use crate::store::{ConversationFilter, ConversationRow, MessageWindow};

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/chat/messages", get(list_messages).post(send_message))
        .route(
            "/api/chat/conversations",
            get(list_conversations).post(open_conversation),
        )
        .route("/api/chat/conversations/bulk", post(bulk))
        .route("/api/chat/conversations/{id}", get(get_conversation))
        .route("/api/chat/conversations/{id}/read", put(mark_read))
        .route("/api/chat/conversations/{id}/assign", put(assign))
        .route("/api/chat/conversations/{id}/status", put(set_status))
        .route("/api/chat/conversations/{id}/feedback", post(feedback))
        .route("/api/chat/conversations/{id}/typing", post(typing))
        .route("/api/chat/presence", put(set_presence))
        .route("/api/chat/presence/admins", get(admins_presence))
}

/// The success envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct Success<T> {
    /// Always `success`.
    #[schema(example = "success")]
    pub status: &'static str,
    pub data: T,
}

fn success<T>(data: T) -> Json<Success<T>> {
    Json(Success {
        status: "success",
        data,
    })
}

const DEFAULT_MESSAGE_PAGE: u32 = 50;
const MAX_MESSAGE_PAGE: u32 = 200;
const DEFAULT_CONVERSATION_PAGE: u32 = 20;
const MAX_CONVERSATION_PAGE: u32 = 50;
/// Pages beyond this are refused rather than scanned.
const MAX_PAGE_NUMBER: u32 = 100_000;
const MAX_BULK: usize = 100;

fn is_staff(session: &Session) -> bool {
    matches!(session.role, Role::Admin | Role::Auditor | Role::System)
}

/// A `user_id` a user sends must be their own.
fn own_user_id(session: &Session, user_id: Option<u64>) -> Result<(), ApiError> {
    match user_id {
        Some(id) if session.role == Role::User && id != session.user_id => {
            Err(ApiError::forbidden("user_id does not match the session"))
        }
        _ => Ok(()),
    }
}

fn bounded(value: Option<u32>, default: u32, max: u32, name: &str) -> Result<u32, ApiError> {
    let value = value.unwrap_or(default);
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::validation(format!(
            "{name} must be between 1 and {max}"
        )))
    }
}

/// The conversation, if the caller may read it: 404 when it does not exist, 403 when it is
/// another user's.
pub(crate) async fn readable(
    state: &AppState,
    session: &Session,
    id: u64,
) -> Result<ConversationRow, ApiError> {
    let row = state
        .store
        .conversation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such conversation"))?;
    if session.role == Role::User && row.user_id != session.user_id {
        return Err(ApiError::forbidden("the conversation is not yours"));
    }
    Ok(row)
}

/// Counts one action of `kind` against the caller's limit (REST and Socket.IO share it).
pub(crate) async fn within_limit(
    state: &AppState,
    session: &Session,
    kind: LimitKind,
) -> Result<(), ApiError> {
    let caller = format!("{}:{}", session.role.as_str(), session.user_id);
    state.limits.check(kind, &caller).await.map_err(|limited| {
        if matches!(limited, crate::limits::Limited::Over { .. }) {
            crate::metrics::rate_limited(kind.as_str());
        }
        ApiError::from(limited)
    })
}

pub(crate) async fn execute(
    state: &AppState,
    origin: &Origin,
    session: &Session,
    intent: Intent,
    client_msg_id: Option<String>,
) -> Result<Committed, ApiError> {
    let metadata = origin.metadata(session, client_msg_id);
    Ok(state.execute(session, intent, metadata).await?)
}

fn parse_message_type(raw: Option<&str>) -> Result<MessageType, ApiError> {
    match raw {
        None => Ok(MessageType::Text),
        Some(raw) => raw
            .parse()
            .map_err(|_| ApiError::validation("message_type must be text, image or file")),
    }
}

// ---------------------------------------------------------------------------------------------
// Messages

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Default for users: their active (else latest) conversation. Admins and auditors name it,
    /// or name `user_id`.
    conversation_id: Option<u64>,
    /// Users: must be their own. Staff: that user's latest conversation.
    user_id: Option<u64>,
    /// Messages with an id greater than this.
    after_id: Option<u64>,
    /// Messages with an id smaller than this.
    before_id: Option<u64>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagesPage {
    /// Null when the user has no conversation yet.
    conversation_id: Option<u64>,
    /// Oldest first.
    messages: Vec<MessageView>,
}

/// Chat history of a conversation, oldest first.
#[utoipa::path(get, path = "/api/chat/messages", tag = "messages", params(MessagesQuery),
    responses(
        (status = 200, body = Success<MessagesPage>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn list_messages(
    State(state): State<AppState>,
    Caller(session): Caller,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<Json<Success<MessagesPage>>, ApiError> {
    state.fresh_for(&session).await;
    own_user_id(&session, query.user_id)?;
    let limit = bounded(query.limit, DEFAULT_MESSAGE_PAGE, MAX_MESSAGE_PAGE, "limit")?;
    for id in [
        query.conversation_id,
        query.after_id,
        query.before_id,
        query.user_id,
    ]
    .into_iter()
    .flatten()
    {
        wire_id(id, "ids")?;
    }
    let conversation = match (query.conversation_id, query.user_id) {
        (Some(id), _) => Some(readable(&state, &session, id).await?),
        (None, Some(user_id)) => state.store.latest_conversation_of(user_id).await?,
        (None, None) if session.role == Role::User => {
            state.store.latest_conversation_of(session.user_id).await?
        }
        (None, None) => {
            return Err(ApiError::validation(
                "conversation_id or user_id is required",
            ));
        }
    };
    let Some(conversation) = conversation else {
        return Ok(success(MessagesPage {
            conversation_id: None,
            messages: Vec::new(),
        }));
    };
    let window = MessageWindow {
        after_id: query.after_id,
        before_id: query.before_id,
        limit,
    };
    let messages = state.store.messages(conversation.id, window).await?;
    Ok(success(MessagesPage {
        conversation_id: Some(conversation.id),
        messages: messages
            .into_iter()
            .map(|row| MessageView::from(row).linked(&state.attachments))
            .collect(),
    }))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SendMessageBody {
    /// The text (`content` is accepted too).
    pub message: Option<String>,
    pub content: Option<String>,
    /// `text` (default), `image` or `file`.
    #[schema(pattern = "^(text|image|file)$")]
    pub message_type: Option<String>,
    /// Required for image and file messages.
    pub file_id: Option<String>,
    /// Users: default is their active conversation (opened when they have none). Admins: required.
    pub conversation_id: Option<u64>,
    /// At most 64 characters; a retry with the same value returns the original message.
    pub client_msg_id: Option<String>,
    /// Users: must be their own.
    pub user_id: Option<u64>,
}

/// Sends a message: 201 with the stored message, or 200 with the original for a repeated
/// `client_msg_id`.
#[utoipa::path(post, path = "/api/chat/messages", tag = "messages", request_body = SendMessageBody,
    responses(
        (status = 201, body = Success<MessageView>), (status = 200, description = "a retry: the original message", body = Success<MessageView>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody),
        (status = 409, body = super::openapi::ErrorBody), (status = 413, body = super::openapi::ErrorBody),
        (status = 429, body = super::openapi::ErrorBody), (status = 503, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn send_message(
    State(state): State<AppState>,
    origin: Origin,
    Caller(session): Caller,
    ApiJson(body): ApiJson<SendMessageBody>,
) -> Result<(StatusCode, Json<Success<MessageView>>), ApiError> {
    own_user_id(&session, body.user_id)?;
    let (view, duplicate) = send(&state, &origin, &session, body, "rest").await?;
    let status = if duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, success(view)))
}

/// Sends a message for REST and Socket.IO alike: the stored message, and whether it is a retry
/// of one already accepted.
pub(crate) async fn send(
    state: &AppState,
    origin: &Origin,
    session: &Session,
    body: SendMessageBody,
    transport: &str,
) -> Result<(MessageView, bool), ApiError> {
    let message_type = parse_message_type(body.message_type.as_deref())?;
    let message = NewMessage {
        message_type,
        content: body.content.or(body.message).unwrap_or_default(),
        file_id: body.file_id,
        client_msg_id: body.client_msg_id.clone(),
    };
    let actor = session.actor();
    let intent = match body.conversation_id {
        Some(id) => Intent::On(
            wire_id(id, "conversation_id")?,
            ConversationCommand::SendMessage { actor, message },
        ),
        None if session.role == Role::User => Intent::OpenOrContinue {
            actor,
            message: Some(message),
        },
        None if session.role == Role::Auditor => {
            return Err(ApiError::forbidden("auditors only read"));
        }
        None => return Err(ApiError::validation("admins must name conversation_id")),
    };
    within_limit(state, session, LimitKind::Messages).await?;
    let committed = execute(state, origin, session, intent, body.client_msg_id).await?;
    let view = committed
        .events
        .iter()
        .rev()
        .find_map(|event| MessageView::from_event(committed.conversation_id, event))
        .ok_or_else(ApiError::internal)?
        .linked(&state.attachments);
    if !committed.duplicate {
        crate::metrics::message_accepted(transport);
    }
    Ok((view, committed.duplicate))
}

// ---------------------------------------------------------------------------------------------
// Conversations

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationsQuery {
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
pub struct ConversationsPage {
    conversations: Vec<ConversationView>,
    pagination: Pagination,
}

/// Conversations the caller may see, most recently active first.
#[utoipa::path(get, path = "/api/chat/conversations", tag = "conversations", params(ConversationsQuery),
    responses(
        (status = 200, body = Success<ConversationsPage>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn list_conversations(
    State(state): State<AppState>,
    Caller(session): Caller,
    ApiQuery(query): ApiQuery<ConversationsQuery>,
) -> Result<Json<Success<ConversationsPage>>, ApiError> {
    state.fresh_for(&session).await;
    own_user_id(&session, query.user_id)?;
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
                .map_err(|_| ApiError::validation("status must be active, closed or archived"))?
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
    let (rows, total) = state.store.conversations(&filter, page, limit).await?;
    let caller_is_user = session.role == Role::User;
    let mut conversations: Vec<ConversationView> = rows
        .into_iter()
        .map(|row| ConversationView::new(row, caller_is_user))
        .collect();
    add_presence(&state, &mut conversations).await;
    Ok(success(ConversationsPage {
        conversations,
        pagination: Pagination::new(page, limit, total),
    }))
}

/// One conversation.
#[utoipa::path(get, path = "/api/chat/conversations/{id}", tag = "conversations",
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = Success<ConversationView>),
        (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody),
        (status = 404, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn get_conversation(
    State(state): State<AppState>,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
) -> Result<Json<Success<ConversationView>>, ApiError> {
    state.fresh_for(&session).await;
    let row = readable(&state, &session, id).await?;
    let view = ConversationView::new(row, session.role == Role::User);
    Ok(success(with_presence(&state, view).await))
}

/// The users' presence in conversation views, computed when read (it is not in the log). When
/// presence cannot answer, the views go out without it rather than not at all.
pub(crate) async fn add_presence(state: &AppState, views: &mut [ConversationView]) {
    let mut users: Vec<u64> = views.iter().map(|view| view.user_id).collect();
    users.sort_unstable();
    users.dedup();
    match state.presence.people(Role::User, &users).await {
        Ok(people) => {
            for view in views {
                view.set_presence(people.get(&view.user_id));
            }
        }
        Err(error) => tracing::warn!(%error, "conversations shown without presence"),
    }
}

async fn with_presence(state: &AppState, mut view: ConversationView) -> ConversationView {
    add_presence(state, std::slice::from_mut(&mut view)).await;
    view
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenConversationBody {
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
pub struct OpenedConversation {
    conversation_id: u64,
    conversation: Option<ConversationView>,
    /// The initial message, when one was sent.
    message: Option<MessageView>,
}

/// The user's active conversation (200), with the initial message appended, or a new one (201).
#[utoipa::path(post, path = "/api/chat/conversations", tag = "conversations", request_body = OpenConversationBody,
    responses(
        (status = 201, body = Success<OpenedConversation>), (status = 200, description = "the active conversation", body = Success<OpenedConversation>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 429, body = super::openapi::ErrorBody),
        (status = 503, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn open_conversation(
    State(state): State<AppState>,
    origin: Origin,
    Caller(session): Caller,
    ApiJson(body): ApiJson<OpenConversationBody>,
) -> Result<(StatusCode, Json<Success<OpenedConversation>>), ApiError> {
    own_user_id(&session, body.user_id)?;
    if session.role != Role::User {
        return Err(ApiError::forbidden("only users open conversations"));
    }
    // Checked even without a first message: a malformed body is refused whole.
    let message_type = parse_message_type(body.message_type.as_deref())?;
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
        within_limit(&state, &session, LimitKind::Messages).await?;
    }
    let intent = Intent::OpenOrContinue {
        actor: session.actor(),
        message,
    };
    let committed = execute(&state, &origin, &session, intent, body.client_msg_id).await?;
    let message = committed
        .events
        .iter()
        .rev()
        .find_map(|event| MessageView::from_event(committed.conversation_id, event))
        .map(|view| view.linked(&state.attachments));
    if message.is_some() && !committed.duplicate {
        crate::metrics::message_accepted("rest");
    }
    state.fresh_for(&session).await;
    let conversation = match state.store.conversation(committed.conversation_id).await? {
        Some(row) => Some(with_presence(&state, ConversationView::new(row, true)).await),
        None => None,
    };
    let status = if committed.opened {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        success(OpenedConversation {
            conversation_id: committed.conversation_id,
            conversation,
            message,
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct MarkReadBody {
    /// At most 1000; ids that are not the other side's unread messages are ignored.
    message_ids: Vec<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedRead {
    /// Messages newly marked read.
    marked_read: usize,
}

/// Marks the other side's messages read.
#[utoipa::path(put, path = "/api/chat/conversations/{id}/read", tag = "conversations", request_body = MarkReadBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = Success<MarkedRead>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn mark_read(
    State(state): State<AppState>,
    origin: Origin,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<MarkReadBody>,
) -> Result<Json<Success<MarkedRead>>, ApiError> {
    for id in &body.message_ids {
        wire_id(*id, "message_ids")?;
    }
    let command = ConversationCommand::MarkMessagesRead {
        actor: session.actor(),
        message_ids: body.message_ids,
    };
    let committed = execute(&state, &origin, &session, Intent::On(id, command), None).await?;
    let marked_read = committed.messages_marked_read();
    Ok(success(MarkedRead { marked_read }))
}

// ---------------------------------------------------------------------------------------------
// Admin routes and feedback

#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignBody {
    admin_id: u64,
}

/// Assigns the conversation to an admin (admins only).
#[utoipa::path(put, path = "/api/chat/conversations/{id}/assign", tag = "admin", request_body = AssignBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = Success<ConversationView>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody),
        (status = 409, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn assign(
    State(state): State<AppState>,
    origin: Origin,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Json<Success<ConversationView>>, ApiError> {
    let command = ConversationCommand::AssignConversation {
        actor: session.actor(),
        admin_id: wire_id(body.admin_id, "admin_id")?,
    };
    conversation_after(&state, &origin, &session, id, command).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StatusBody {
    /// `active` (reopen), `closed` or `archived`.
    #[schema(pattern = "^(active|closed|archived)$")]
    status: String,
}

fn status_command(session: &Session, status: &str) -> Result<ConversationCommand, ApiError> {
    let actor = session.actor();
    match status.parse::<ConversationStatus>() {
        Ok(ConversationStatus::Active) => Ok(ConversationCommand::ReopenConversation { actor }),
        Ok(ConversationStatus::Closed) => Ok(ConversationCommand::CloseConversation { actor }),
        Ok(ConversationStatus::Archived) => Ok(ConversationCommand::ArchiveConversation { actor }),
        Err(_) => Err(ApiError::validation(
            "status must be active, closed or archived",
        )),
    }
}

/// Changes the status: reopen and archive are for admins; a user may close their own.
#[utoipa::path(put, path = "/api/chat/conversations/{id}/status", tag = "admin", request_body = StatusBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = Success<ConversationView>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody),
        (status = 409, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn set_status(
    State(state): State<AppState>,
    origin: Origin,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<StatusBody>,
) -> Result<Json<Success<ConversationView>>, ApiError> {
    let command = status_command(&session, &body.status)?;
    conversation_after(&state, &origin, &session, id, command).await
}

async fn conversation_after(
    state: &AppState,
    origin: &Origin,
    session: &Session,
    id: u64,
    command: ConversationCommand,
) -> Result<Json<Success<ConversationView>>, ApiError> {
    execute(state, origin, session, Intent::On(id, command), None).await?;
    state.fresh_for(session).await;
    let row = readable(state, session, id).await?;
    let view = ConversationView::new(row, session.role == Role::User);
    Ok(success(with_presence(state, view).await))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct BulkBody {
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
pub struct BulkOutcome {
    conversation_id: u64,
    /// `success` or `error`.
    status: &'static str,
    error_code: Option<&'static str>,
    message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// One outcome per id, in the order given.
    results: Vec<BulkOutcome>,
    succeeded: usize,
    failed: usize,
}

/// Closes, archives or assigns many conversations; answers what happened to each (admins only).
#[utoipa::path(post, path = "/api/chat/conversations/bulk", tag = "admin", request_body = BulkBody,
    responses(
        (status = 200, body = Success<BulkResult>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn bulk(
    State(state): State<AppState>,
    origin: Origin,
    Caller(session): Caller,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<Success<BulkResult>>, ApiError> {
    if session.role != Role::Admin {
        return Err(ApiError::forbidden("bulk actions are for admins"));
    }
    let distinct: BTreeSet<u64> = body.conversation_ids.iter().copied().collect();
    if body.conversation_ids.is_empty()
        || body.conversation_ids.len() > MAX_BULK
        || distinct.len() != body.conversation_ids.len()
    {
        return Err(ApiError::validation(format!(
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
    let make = |action: &str| -> Result<ConversationCommand, ApiError> {
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
                    .ok_or_else(|| ApiError::validation("assign needs admin_id"))
                    .and_then(|id| wire_id(id, "admin_id"))?;
                Ok(ConversationCommand::AssignConversation {
                    actor: actor.clone(),
                    admin_id,
                })
            }
            _ => Err(ApiError::validation(
                "action must be close, archive or assign",
            )),
        }
    };
    make(&body.action)?;
    let mut results = Vec::with_capacity(body.conversation_ids.len());
    for id in body.conversation_ids.iter().copied() {
        let outcome = match execute(
            &state,
            &origin,
            &session,
            Intent::On(id, make(&body.action)?),
            None,
        )
        .await
        {
            Ok(_) => BulkOutcome {
                conversation_id: id,
                status: "success",
                error_code: None,
                message: None,
            },
            Err(error) if error.status.is_server_error() => return Err(error),
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
    Ok(success(BulkResult {
        failed: results.len() - succeeded,
        succeeded,
        results,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FeedbackBody {
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
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody),
        (status = 409, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn feedback(
    State(state): State<AppState>,
    origin: Origin,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<FeedbackBody>,
) -> Result<(StatusCode, Json<Success<ConversationView>>), ApiError> {
    let command = ConversationCommand::GiveFeedback {
        actor: session.actor(),
        rating: body.rating,
        comment: body.comment,
    };
    let Json(view) = conversation_after(&state, &origin, &session, id, command).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TypingBody {
    /// true while typing, false when stopped.
    typing: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TypingSent {
    #[schema(example = "success")]
    status: &'static str,
    #[schema(example = "Typing indicator sent")]
    message: &'static str,
}

/// Sends a typing indicator to the conversation's sockets (never stored; at most 10 starts a
/// minute per caller).
#[utoipa::path(post, path = "/api/chat/conversations/{id}/typing", tag = "conversations", request_body = TypingBody,
    params(("id" = u64, Path, description = "conversation id")),
    responses(
        (status = 200, body = TypingSent),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody),
        (status = 429, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn typing(
    State(state): State<AppState>,
    Caller(session): Caller,
    ConversationId(id): ConversationId,
    ApiJson(body): ApiJson<TypingBody>,
) -> Result<Json<TypingSent>, ApiError> {
    let indicator = crate::realtime::typing_indicator(&state, &session, id, body.typing).await?;
    if let Some(realtime) = state.realtime.get() {
        realtime
            .emit_to(
                vec![crate::realtime::conversation_room(id)],
                "typing_indicator",
                &indicator,
            )
            .await;
    }
    Ok(Json(TypingSent {
        status: "success",
        message: "Typing indicator sent",
    }))
}

// ---------------------------------------------------------------------------------------------
// Presence

#[derive(Debug, Deserialize, ToSchema)]
pub struct PresenceBody {
    /// `away` (automatic assignment passes the admin by) or `available`.
    #[schema(pattern = "^(away|available)$")]
    status: String,
}

/// An admin says they are away or available again (admins only); their presence afterwards.
/// The staff's sockets get a `presence` event when it changes.
#[utoipa::path(put, path = "/api/chat/presence", tag = "admin", request_body = PresenceBody,
    responses(
        (status = 200, body = Success<AdminPresenceView>),
        (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody),
        (status = 403, body = super::openapi::ErrorBody), (status = 503, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn set_presence(
    State(state): State<AppState>,
    Caller(session): Caller,
    ApiJson(body): ApiJson<PresenceBody>,
) -> Result<Json<Success<AdminPresenceView>>, ApiError> {
    Ok(success(
        set_own_presence(&state, &session, &body.status).await?,
    ))
}

/// Sets the caller's away flag, for REST and Socket.IO alike.
pub(crate) async fn set_own_presence(
    state: &AppState,
    session: &Session,
    status: &str,
) -> Result<AdminPresenceView, ApiError> {
    if session.role != Role::Admin {
        return Err(ApiError::forbidden("only admins set their presence"));
    }
    let away = match status {
        "away" => true,
        "available" => false,
        _ => return Err(ApiError::validation("status must be away or available")),
    };
    let presence = state.presence.set_away(session.user_id, away).await?;
    let loads = state.store.active_conversations_per_admin().await?;
    let load = loads.get(&session.user_id).copied().unwrap_or(0);
    Ok(AdminPresenceView::new(session.user_id, presence, load))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminsPresence {
    /// Every admin presence has seen or who has active conversations, by id.
    admins: Vec<AdminPresenceView>,
}

/// The admins: online, away, last seen and active conversations (admins and auditors).
#[utoipa::path(get, path = "/api/chat/presence/admins", tag = "admin",
    responses(
        (status = 200, body = Success<AdminsPresence>),
        (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody),
        (status = 503, body = super::openapi::ErrorBody),
    ),
    security(("app_signature" = [], "bearer" = [])))]
pub(super) async fn admins_presence(
    State(state): State<AppState>,
    Caller(session): Caller,
) -> Result<Json<Success<AdminsPresence>>, ApiError> {
    if !matches!(session.role, Role::Admin | Role::Auditor) {
        return Err(ApiError::forbidden("admins and auditors only"));
    }
    state.fresh_for(&session).await;
    let loads = state.store.active_conversations_per_admin().await?;
    let mut ids = state.presence.known_admins().await?;
    ids.extend(loads.keys().copied());
    ids.sort_unstable();
    ids.dedup();
    let people = state.presence.people(Role::Admin, &ids).await?;
    let admins = ids
        .into_iter()
        .map(|id| {
            let presence = people.get(&id).copied().unwrap_or_default();
            AdminPresenceView::new(id, presence, loads.get(&id).copied().unwrap_or(0))
        })
        .collect();
    Ok(success(AdminsPresence { admins }))
}
