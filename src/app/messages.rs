//! Sending messages and reading them back: one implementation for REST and Socket.IO.

use events::{ConversationCommand, ConversationEvent, MessageType, NewMessage, Role, SentMessage};

use super::access::{own_user_id, readable, within_limit, writer};
use super::ids::wire_id;
use super::{App, AppError, Origin};
use crate::auth::Session;
use crate::commands::Intent;
use crate::limits::LimitKind;
use crate::store::{MAX_PAGE_SIZE, MessageWindow};
use crate::wire::{MessageView, SendMessageRequest};

/// Messages one join answers with at most; `has_more` says when there are more.
pub const JOIN_PAGE: u32 = MAX_PAGE_SIZE;
/// Messages a join without `since` answers with: the newest ones.
pub const JOIN_NEWEST: u32 = 50;
/// Bytes of message text (counted as the wire carries it: `content` and `message`) one answer
/// holds at most, so no history a client can write makes an answer a client can ask for large.
pub const MAX_ANSWER_TEXT_BYTES: usize = 1 << 20;

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

/// A change to a message already sent.
pub enum MessageChange {
    Edit { content: String },
    Delete { reason: Option<String> },
}

/// Edits or deletes a message (by its sender within `CHAT_EDIT_WINDOW_SECS`; a deletion also
/// by staff, with a reason), and answers with the message as it now reads.
pub async fn change(
    app: &App,
    origin: &Origin,
    session: &Session,
    message_id: u64,
    change: MessageChange,
) -> Result<MessageView, AppError> {
    writer(session)?;
    let message_id = wire_id(message_id, "id")?;
    within_limit(app, session, LimitKind::Messages).await?;
    // The caller's own newest message must be found.
    app.fresh_for(session).await;
    let mut row = app
        .store
        .message(message_id)
        .await?
        .ok_or_else(|| AppError::not_found("no such message"))?;
    readable(app, session, row.conversation_id).await?;
    let sender_role: Role = row.sender_role.parse().map_err(|_| AppError::internal())?;
    let message = SentMessage {
        message_id,
        sender_role,
        sender_id: row.sender_id,
        message_type: row.message_type.parse().map_err(|_| AppError::internal())?,
        sent_at_micros: row.timestamp,
        now_micros: crate::clock::now_micros(),
        edit_window_secs: app.edit_window_secs,
    };
    let actor = session.actor();
    let command = match change {
        MessageChange::Edit { content } => ConversationCommand::EditMessage {
            actor,
            message,
            content,
        },
        MessageChange::Delete { reason } => ConversationCommand::DeleteMessage {
            actor,
            message,
            reason,
        },
    };
    let committed = app
        .execute(
            origin,
            session,
            Intent::On(row.conversation_id, command),
            None,
        )
        .await?;
    for event in &committed.events {
        match event.decode() {
            Ok(ConversationEvent::MessageEdited { content, .. }) => {
                row.content = content;
                row.edited_at = Some(event.recorded_at_micros);
            }
            Ok(ConversationEvent::MessageDeleted { by, .. }) => {
                row.content.clear();
                row.deleted_by = Some(by.role.as_str().to_string());
            }
            _ => {}
        }
    }
    Ok(MessageView::new(row, &app.attachments))
}

/// A page of history, oldest first, and whether more lie beyond it in the page's direction
/// (after it for a page `after_id`, before it otherwise).
pub struct Page {
    pub messages: Vec<MessageView>,
    pub has_more: bool,
}

/// The messages of a conversation in `window`, at most [`MAX_ANSWER_TEXT_BYTES`] of text: a page
/// after an id keeps its oldest messages, any other its newest. One rule for REST history and
/// Socket.IO joins.
pub async fn history(
    app: &App,
    conversation_id: u64,
    window: MessageWindow,
) -> Result<Page, AppError> {
    let limit = window.limit.clamp(1, MAX_PAGE_SIZE);
    // One more than asked says whether more follow without a second query.
    let mut rows = app
        .store
        .messages(
            conversation_id,
            MessageWindow {
                limit: limit + 1,
                ..window
            },
        )
        .await?;
    let forward = window.after_id.is_some();
    if !forward {
        rows.reverse();
    }
    // Newest first for a backward page, so both directions keep what comes first.
    let mut has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let mut text_bytes = 0;
    let fitting = rows
        .iter()
        .position(|row| {
            text_bytes += 2 * row.content.len();
            text_bytes > MAX_ANSWER_TEXT_BYTES
        })
        // The first message always goes, or a page could never move on.
        .map_or(rows.len(), |over| over.max(1));
    has_more |= fitting < rows.len();
    rows.truncate(fitting);
    if !forward {
        rows.reverse();
    }
    Ok(Page {
        messages: rows
            .into_iter()
            .map(|row| MessageView::new(row, &app.attachments))
            .collect(),
        has_more,
    })
}

/// What a socket joining a conversation is answered with: the messages after `since` (one
/// [`history`] page; `has_more` asks the client to join again from the last one), or without
/// `since` the newest [`JOIN_NEWEST`].
pub async fn on_join(
    app: &App,
    conversation_id: u64,
    since: Option<u64>,
) -> Result<Page, AppError> {
    let window = match since {
        Some(since) => MessageWindow {
            after_id: Some(since),
            before_id: None,
            limit: JOIN_PAGE,
        },
        None => MessageWindow {
            limit: JOIN_NEWEST,
            ..MessageWindow::default()
        },
    };
    let mut page = history(app, conversation_id, window).await?;
    // Older messages than the newest page are REST history's, not a catch-up.
    if since.is_none() {
        page.has_more = false;
    }
    Ok(page)
}
