//! The chat API of the spec and the contract: messages, conversations, read receipts, admin
//! routes (assign, status, bulk), feedback, typing and admins' presence. Each handler parses its
//! request, calls the application layer and answers in the envelope; none writes a read table.

pub(super) mod admin;
pub(super) mod admins;
pub(super) mod conversations;
pub(super) mod messages;

use axum::Json;
use axum::routing::{get, post, put};
use events::{ConversationCommand, Role};

use crate::app::{App, AppError, Origin, access, presence};
use crate::auth::Session;
use crate::commands::Intent;
use crate::wire::{ConversationView, Success, success};

pub fn router() -> axum::Router<App> {
    axum::Router::new()
        .route(
            "/api/chat/messages",
            get(messages::list_messages).post(messages::send_message),
        )
        .route(
            "/api/chat/messages/{id}",
            axum::routing::patch(messages::edit_message).delete(messages::delete_message),
        )
        .route(
            "/api/chat/conversations",
            get(conversations::list_conversations).post(conversations::open_conversation),
        )
        .route("/api/chat/conversations/bulk", post(admin::bulk))
        .route(
            "/api/chat/conversations/{id}",
            get(conversations::get_conversation),
        )
        .route(
            "/api/chat/conversations/{id}/read",
            put(conversations::mark_read),
        )
        .route("/api/chat/conversations/{id}/assign", put(admin::assign))
        .route(
            "/api/chat/conversations/{id}/status",
            put(admin::set_status),
        )
        .route(
            "/api/chat/conversations/{id}/feedback",
            post(conversations::feedback),
        )
        .route(
            "/api/chat/conversations/{id}/typing",
            post(conversations::typing),
        )
        .route("/api/chat/admin/erasures", post(admin::erase_person))
        .route("/api/chat/presence", put(admins::set_presence))
        .route("/api/chat/presence/admins", get(admins::admins_presence))
}

/// Executes `command` on conversation `id`, then answers the conversation as it now reads.
pub(super) async fn conversation_after(
    app: &App,
    origin: &Origin,
    session: &Session,
    id: u64,
    command: ConversationCommand,
) -> Result<Json<Success<ConversationView>>, AppError> {
    app.execute(origin, session, Intent::On(id, command), None)
        .await?;
    app.fresh_for(session).await;
    let row = access::readable(app, session, id).await?;
    let view = ConversationView::new(row, session.role == Role::User);
    Ok(Json(success(presence::with(app, view).await)))
}
