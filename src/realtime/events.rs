//! The client events: join_conversation, leave_conversation, send_message, typing_start,
//! typing_stop, mark_read, set_presence. Each answers through the acknowledgement with the REST envelope when
//! the client asked for one, else failures come back as an `error` event `{code, message}`.
//! Authorization and limits are the REST routes' own.

use std::convert::Infallible;
use std::sync::Arc;

use ::events::{ConversationCommand, Role};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;

use super::{SocketCaller, conversation_room, error_envelope, success_envelope};
use crate::commands::Intent;
use crate::http::chat::{self, SendMessageBody};
use crate::http::extract::wire_id;
use crate::http::views::MessageView;
use crate::http::{ApiError, AppState, Origin};
use crate::limits::LimitKind;
use crate::store::MessageWindow;

/// Messages a join with `since` returns at most; `has_more` says when there are more.
const MAX_CATCH_UP: usize = 5000;
/// Messages a join without `since` returns: the newest ones.
const JOIN_PAGE: u32 = 50;

pub(super) fn register<A: Adapter>(socket: &SocketRef<A>) {
    socket.on("join_conversation", join_conversation::<A>);
    socket.on("leave_conversation", leave_conversation::<A>);
    socket.on("send_message", send_message::<A>);
    socket.on("typing_start", typing_start::<A>);
    socket.on("typing_stop", typing_stop::<A>);
    socket.on("mark_read", mark_read::<A>);
    socket.on("set_presence", set_presence::<A>);
    socket.on_fallback(unknown_event::<A>);
}

/// Whether the client asked for an acknowledgement.
pub(crate) struct WantsAck(bool);

impl<A: Adapter> FromMessageParts<A> for WantsAck {
    type Error = Infallible;

    fn from_message_parts(
        _: &Arc<Socket<A>>,
        _: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(WantsAck(ack_id.is_some()))
    }
}

fn answer<A: Adapter>(
    socket: &SocketRef<A>,
    ack: AckSender<A>,
    WantsAck(wants): WantsAck,
    result: Result<Value, ApiError>,
) {
    match result {
        Ok(data) => {
            let _ = ack.send(&success_envelope(data));
        }
        Err(error) if wants => {
            let _ = ack.send(&error_envelope(&error));
        }
        Err(error) => {
            let _ = socket.emit(
                "error",
                &json!({"code": error.code, "message": error.message}),
            );
        }
    }
}

fn caller<A: Adapter>(socket: &SocketRef<A>) -> Result<SocketCaller, ApiError> {
    socket.extensions.get::<SocketCaller>().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "not authenticated",
        )
    })
}

/// Decodes `data` as the payload of the client event `event` and checks its ids, as the
/// event's handler does before it touches any state (the fuzz target's way in).
pub fn decode_client_payload(event: &str, data: Value) -> Result<(), ApiError> {
    let data = Ok::<_, String>(data);
    match event {
        "join_conversation" => {
            let JoinPayload {
                conversation_id, ..
            } = payload(data)?;
            wire_id(conversation_id, "conversation_id").map(drop)
        }
        "leave_conversation" | "typing_start" | "typing_stop" => {
            let ConversationPayload { conversation_id } = payload(data)?;
            wire_id(conversation_id, "conversation_id").map(drop)
        }
        "send_message" => payload::<SendMessageBody>(data).map(drop),
        "mark_read" => {
            let MarkReadPayload {
                conversation_id, ..
            } = payload(data)?;
            wire_id(conversation_id, "conversation_id").map(drop)
        }
        "set_presence" => payload::<PresencePayload>(data).map(drop),
        _ => Err(ApiError::validation(format!("unknown event {event}"))),
    }
}

fn payload<T: DeserializeOwned>(
    data: Result<Value, impl std::fmt::Display>,
) -> Result<T, ApiError> {
    let data = data.map_err(|e| ApiError::validation(format!("malformed payload: {e}")))?;
    serde_json::from_value(data)
        .map_err(|e| ApiError::validation(format!("malformed payload: {e}")))
}

fn origin<A: Adapter>(socket: &SocketRef<A>) -> Origin {
    Origin {
        request_id: Some(format!("socket-{}", socket.id)),
        remote_addr: None,
    }
}

#[derive(Debug, Deserialize)]
struct ConversationPayload {
    conversation_id: u64,
}

#[derive(Debug, Deserialize)]
struct JoinPayload {
    conversation_id: u64,
    since: Option<u64>,
}

async fn join_conversation<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    wants: WantsAck,
) {
    crate::metrics::socket_event_in("join_conversation");
    let result = async {
        let caller = caller(&socket)?;
        let JoinPayload {
            conversation_id,
            since,
        } = payload(data)?;
        let id = wire_id(conversation_id, "conversation_id")?;
        state.fresh_for(&caller.session).await;
        chat::readable(&state, &caller.session, id).await?;
        socket.join(conversation_room(id));
        // Everything committed from now on reaches this socket through the room; everything
        // committed before must be in what the join answers, or a reconnecting client would
        // never see it: wait (bounded) until the read tables hold the whole log as of now. If
        // they do not (their projector's node died and its lease has not expired yet), an
        // answer from them would silently skip messages the client then never asks for again:
        // refuse the join instead, out of the room, and let the client join again.
        let caught_up = match state.store.head_position().await {
            Ok(head) => state.await_position(head).await,
            Err(error) => {
                socket.leave(conversation_room(id));
                return Err(error.into());
            }
        };
        if !caught_up {
            socket.leave(conversation_room(id));
            return Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "the conversation's messages are catching up; join again shortly",
            ));
        }
        let (messages, has_more) = match since {
            Some(since) => catch_up(&state, id, since).await?,
            None => {
                let window = MessageWindow {
                    limit: JOIN_PAGE,
                    ..MessageWindow::default()
                };
                (state.store.messages(id, window).await?, false)
            }
        };
        let messages: Vec<MessageView> = messages
            .into_iter()
            .map(|row| MessageView::from(row).linked(&state.attachments))
            .collect();
        Ok(json!({"conversation_id": id, "messages": messages, "has_more": has_more}))
    }
    .await;
    answer(&socket, ack, wants, result);
}

/// Every message after `since`, in order (up to `MAX_CATCH_UP`).
async fn catch_up(
    state: &AppState,
    id: u64,
    since: u64,
) -> Result<(Vec<crate::store::MessageRow>, bool), ApiError> {
    let mut messages = Vec::new();
    let mut cursor = since;
    loop {
        let window = MessageWindow {
            after_id: Some(cursor),
            before_id: None,
            limit: crate::store::MAX_PAGE_SIZE,
        };
        let page = state.store.messages(id, window).await?;
        let full = page.len() == crate::store::MAX_PAGE_SIZE as usize;
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

async fn leave_conversation<A: Adapter>(
    socket: SocketRef<A>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    wants: WantsAck,
) {
    crate::metrics::socket_event_in("leave_conversation");
    let result =
        payload::<ConversationPayload>(data).map(|ConversationPayload { conversation_id }| {
            socket.leave(conversation_room(conversation_id));
            json!({"conversation_id": conversation_id})
        });
    answer(&socket, ack, wants, result);
}

async fn send_message<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    wants: WantsAck,
) {
    crate::metrics::socket_event_in("send_message");
    let result = async {
        let caller = caller(&socket)?;
        let body: SendMessageBody = payload(data)?;
        let (view, _) =
            chat::send(&state, &origin(&socket), &caller.session, body, "socket").await?;
        serde_json::to_value(view).map_err(|_| ApiError::internal())
    }
    .await;
    answer(&socket, ack, wants, result);
}

async fn typing_start<A: Adapter>(
    socket: SocketRef<A>,
    state: State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    wants: WantsAck,
) {
    typing(socket, state, data, ack, wants, true).await
}

async fn typing_stop<A: Adapter>(
    socket: SocketRef<A>,
    state: State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    wants: WantsAck,
) {
    typing(socket, state, data, ack, wants, false).await
}

async fn typing<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<AppState>,
    data: Result<Value, socketioxide::ParserError>,
    ack: AckSender<A>,
    wants: WantsAck,
    typing: bool,
) {
    crate::metrics::socket_event_in(if typing {
        "typing_start"
    } else {
        "typing_stop"
    });
    let result = async {
        let caller = caller(&socket)?;
        let ConversationPayload { conversation_id } = payload(data)?;
        let id = wire_id(conversation_id, "conversation_id")?;
        let indicator = typing_indicator(&state, &caller.session, id, typing).await?;
        // To the others in the room, on every node.
        if let Err(error) = socket
            .to(conversation_room(id))
            .emit("typing_indicator", &indicator)
            .await
        {
            tracing::debug!(%error, "typing indicator not delivered everywhere");
        }
        crate::metrics::socket_event_out("typing_indicator");
        Ok(json!({"conversation_id": id, "typing": typing}))
    }
    .await;
    answer(&socket, ack, wants, result);
}

/// Checks that the caller may type in the conversation and is under the typing limit (counted
/// on starts: a stop only clears the indicator), and builds the indicator.
pub(crate) async fn typing_indicator(
    state: &AppState,
    session: &crate::auth::Session,
    id: u64,
    typing: bool,
) -> Result<Value, ApiError> {
    if session.role == Role::Auditor {
        return Err(ApiError::forbidden("auditors only read"));
    }
    chat::readable(state, session, id).await?;
    if typing {
        chat::within_limit(state, session, LimitKind::Typing).await?;
    }
    Ok(json!({
        "conversation_id": id,
        "sender_role": session.role.as_str(),
        "typing": typing,
        "sender_identifier": session.identifier,
    }))
}

#[derive(Debug, Deserialize)]
struct MarkReadPayload {
    conversation_id: u64,
    message_ids: Vec<u64>,
}

async fn mark_read<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    wants: WantsAck,
) {
    crate::metrics::socket_event_in("mark_read");
    let result = async {
        let caller = caller(&socket)?;
        let MarkReadPayload {
            conversation_id,
            message_ids,
        } = payload(data)?;
        let id = wire_id(conversation_id, "conversation_id")?;
        let command = ConversationCommand::MarkMessagesRead {
            actor: caller.session.actor(),
            message_ids,
        };
        let committed = chat::execute(
            &state,
            &origin(&socket),
            &caller.session,
            Intent::On(id, command),
            None,
        )
        .await?;
        let marked_read = committed.messages_marked_read();
        Ok(json!({"marked_read": marked_read}))
    }
    .await;
    answer(&socket, ack, wants, result);
}

#[derive(Debug, Deserialize)]
struct PresencePayload {
    /// `away` or `available`.
    status: String,
}

/// An admin says they are away or available again; the ack's data is their presence.
async fn set_presence<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    wants: WantsAck,
) {
    crate::metrics::socket_event_in("set_presence");
    let result = async {
        let caller = caller(&socket)?;
        let PresencePayload { status } = payload(data)?;
        let view = chat::set_own_presence(&state, &caller.session, &status).await?;
        serde_json::to_value(view).map_err(|_| ApiError::internal())
    }
    .await;
    answer(&socket, ack, wants, result);
}

async fn unknown_event<A: Adapter>(
    socket: SocketRef<A>,
    Event(name): Event,
    ack: AckSender<A>,
    wants: WantsAck,
) {
    crate::metrics::socket_event_in("unknown");
    let error = ApiError::validation(format!(
        "unknown event {:?}",
        name.chars().take(64).collect::<String>()
    ));
    answer(&socket, ack, wants, Err(error));
}
