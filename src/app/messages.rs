//! Sending messages and reading them back: one implementation for REST and Socket.IO.

use events::{ConversationCommand, MessageType, NewMessage, Role};

use super::access::{own_user_id, within_limit};
use super::ids::wire_id;
use super::{App, AppError, Origin};
use crate::auth::Session;
use crate::commands::Intent;
use crate::limits::LimitKind;
use crate::store::{MAX_PAGE_SIZE, MessageRow, MessageWindow};
use crate::wire::{MessageView, SendMessageRequest};

/// Messages a join with `since` returns at most; `has_more` says when there are more.
pub const MAX_CATCH_UP: usize = 5000;
/// Messages a join without `since` returns: the newest ones.
pub const JOIN_PAGE: u32 = 50;

/// `text` when absent.
pub fn parse_message_type(raw: Option<&str>) -> Result<MessageType, AppError> {
    match raw {
        None => Ok(MessageType::Text),
        Some(raw) => raw
            .parse()
            .map_err(|_| AppError::validation("message_type must be text, image or file")),
    }
}

/// A message sent: the stored message, and whether it repeats one already accepted (same
/// `client_msg_id`).
pub struct Sent {
    pub message: MessageView,
    pub duplicate: bool,
}

/// Sends a message. `transport` labels the accepted-messages metric (`rest`, `socket`).
pub async fn send(
    app: &App,
    origin: &Origin,
    session: &Session,
    request: SendMessageRequest,
    transport: &str,
) -> Result<Sent, AppError> {
    own_user_id(session, request.user_id)?;
    let message_type = parse_message_type(request.message_type.as_deref())?;
    let message = NewMessage {
        message_type,
        content: request.content.or(request.message).unwrap_or_default(),
        file_id: request.file_id,
        client_msg_id: request.client_msg_id.clone(),
    };
    let actor = session.actor();
    let intent = match request.conversation_id {
        Some(id) => Intent::On(
            wire_id(id, "conversation_id")?,
            ConversationCommand::SendMessage { actor, message },
        ),
        None if session.role == Role::User => Intent::OpenOrContinue {
            actor,
            message: Some(message),
        },
        None if session.role == Role::Auditor => {
            return Err(AppError::forbidden("auditors only read"));
        }
        None => return Err(AppError::validation("admins must name conversation_id")),
    };
    within_limit(app, session, LimitKind::Messages).await?;
    let committed = app
        .execute(origin, session, intent, request.client_msg_id)
        .await?;
    let message = committed
        .events
        .iter()
        .rev()
        .find_map(|event| {
            MessageView::from_event(committed.conversation_id, event, &app.attachments)
        })
        .ok_or_else(AppError::internal)?;
    if !committed.duplicate {
        crate::metrics::message_accepted(transport);
    }
    Ok(Sent {
        message,
        duplicate: committed.duplicate,
    })
}

/// What a socket joining a conversation is answered with: every message after `since` (up to
/// [`MAX_CATCH_UP`], and whether more follow), or without `since` the newest [`JOIN_PAGE`].
pub async fn on_join(
    app: &App,
    conversation_id: u64,
    since: Option<u64>,
) -> Result<(Vec<MessageView>, bool), AppError> {
    let (rows, has_more) = match since {
        Some(since) => catch_up(app, conversation_id, since).await?,
        None => {
            let window = MessageWindow {
                limit: JOIN_PAGE,
                ..MessageWindow::default()
            };
            (app.store.messages(conversation_id, window).await?, false)
        }
    };
    let views = rows
        .into_iter()
        .map(|row| MessageView::new(row, &app.attachments))
        .collect();
    Ok((views, has_more))
}

/// Every message after `since`, in order (up to `MAX_CATCH_UP`).
async fn catch_up(app: &App, id: u64, since: u64) -> Result<(Vec<MessageRow>, bool), AppError> {
    let mut messages = Vec::new();
    let mut cursor = since;
    loop {
        let window = MessageWindow {
            after_id: Some(cursor),
            before_id: None,
            limit: MAX_PAGE_SIZE,
        };
        let page = app.store.messages(id, window).await?;
        let full = page.len() == MAX_PAGE_SIZE as usize;
        if let Some(last) = page.last() {
            cursor = last.id;
        }
        messages.extend(page);
        if messages.len() >= MAX_CATCH_UP {
            messages.truncate(MAX_CATCH_UP);
            return Ok((messages, true));
        }
        if !full {
            return Ok((messages, false));
        }
    }
}
