//! The client events: join_conversation, leave_conversation, send_message, edit_message,
//! delete_message, typing_start, typing_stop, mark_read, set_presence. Each answers through the acknowledgement with the REST
//! envelope when the client asked for one, else failures come back as an `error` event
//! `{code, message}`. Every decision is the application layer's, shared with REST.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;

use super::in_flight::{Handling, InFlightEvents};
use super::{SocketCaller, conversation_room};
use crate::app::access::{readable, within_limit};
use crate::app::ids::wire_id;
use crate::app::{App, AppError, Origin, messages, presence, reads, typing};
use crate::auth::Session;
use crate::limits::LimitKind;
use crate::metrics::CLIENT_EVENTS;
use crate::wire::{ErrorCode, SendMessageRequest, success};

pub(super) fn register<A: Adapter>(socket: &SocketRef<A>) {
    socket.on("join_conversation", join_conversation::<A>);
    socket.on("leave_conversation", leave_conversation::<A>);
    socket.on("send_message", send_message::<A>);
    socket.on("edit_message", edit_message::<A>);
    socket.on("delete_message", delete_message::<A>);
    socket.on("typing_start", typing_start::<A>);
    socket.on("typing_stop", typing_stop::<A>);
    socket.on("mark_read", mark_read::<A>);
    socket.on("set_presence", set_presence::<A>);
    socket.on_fallback(unknown_event::<A>);
}

/// One client event as every handler starts from it: counted in the metrics, its caller (the
/// session the socket authenticated with) and its payload decoded, either refused with the
/// envelope's error.
pub(crate) struct ClientEvent<T> {
    caller: Result<Session, AppError>,
    payload: Result<T, AppError>,
    /// Where the command came from, for the events' metadata.
    origin: Origin,
    /// Counts the event as in progress until the handler has taken its parts; the handler's
    /// [`Reply`] counts it from then until the answer is sent.
    _handling: Option<Handling>,
}

impl<T> ClientEvent<T> {
    /// The caller and the payload, or why the event is refused.
    fn parts(self) -> Result<(Session, T, Origin), AppError> {
        Ok((self.caller?, self.payload?, self.origin))
    }
}

impl<A: Adapter, T: DeserializeOwned> FromMessageParts<A> for ClientEvent<T> {
    type Error = Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        value: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let name = event_name(socket, value, ack_id);
        crate::metrics::socket_event_in(name);
        let handling = handling(socket, value, ack_id);
        let caller = match &handling {
            Some(handling) if handling.is_closing() => Err(AppError::new(
                ErrorCode::Unavailable,
                "the server is restarting; send this again after reconnecting",
            )),
            _ => socket
                .extensions
                .get::<SocketCaller>()
                .map(|caller| caller.session)
                .ok_or_else(|| AppError::unauthorized("not authenticated")),
        };
        // No client event takes binary data (files go through the upload route). Refused before
        // decoding, whatever the placeholders look like: a decoder that missed one would drop the
        // attachment silently.
        let carries_binary = match &*value {
            socketioxide::handler::Value::Str(_, Some(attachments)) => !attachments.is_empty(),
            socketioxide::handler::Value::Str(_, None) => false,
            socketioxide::handler::Value::Bytes(_) => true,
        };
        let Ok(TryData(data)) = TryData::<Value>::from_message_parts(socket, value, ack_id);
        let payload = if carries_binary {
            Err(AppError::validation(
                "client events take no binary data: upload a file with POST /api/chat/upload, \
                 then send its file_id",
            ))
        } else {
            payload(data)
        };
        Ok(ClientEvent {
            caller,
            payload,
            origin: Origin {
                request_id: Some(format!("socket-{}", socket.id)),
                client_request_id: None,
                // Where the request that opened the socket came from.
                remote_addr: socket
                    .req_parts()
                    .extensions
                    .get::<crate::peer::ClientAddr>()
                    .map(|client| client.0.to_string()),
            },
            _handling: handling,
        })
    }
}

/// The event's name as the metrics label it: one of [`CLIENT_EVENTS`] or `unknown`.
fn event_name<A: Adapter>(
    socket: &Arc<Socket<A>>,
    value: &mut socketioxide::handler::Value,
    ack_id: &Option<i64>,
) -> &'static str {
    Event::from_message_parts(socket, value, ack_id)
        .ok()
        .and_then(|Event(name)| CLIENT_EVENTS.into_iter().find(|known| *known == name))
        .unwrap_or("unknown")
}

/// Counts one client event as in progress on this node (see [`InFlightEvents`]).
fn handling<A: Adapter>(
    socket: &Arc<Socket<A>>,
    value: &mut socketioxide::handler::Value,
    ack_id: &Option<i64>,
) -> Option<Handling> {
    State::<Arc<InFlightEvents>>::from_message_parts(socket, value, ack_id)
        .ok()
        .map(|State(events)| events.enter())
}

/// How a handler answers: through the acknowledgement when the client asked for one (the REST
/// envelope), else a failure goes out as an `error` event.
pub(crate) struct Reply<A: Adapter> {
    socket: SocketRef<A>,
    ack: AckSender<A>,
    wants_ack: bool,
    /// A shutdown closes the transport only after this answer is sent.
    _handling: Option<Handling>,
    /// The event's metrics label and when it arrived: its answer's latency is recorded.
    event: &'static str,
    arrived: std::time::Instant,
}

impl<A: Adapter> FromMessageParts<A> for Reply<A> {
    type Error = Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        value: &mut socketioxide::handler::Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let Ok(ack) = AckSender::from_message_parts(socket, value, ack_id);
        Ok(Reply {
            socket: SocketRef::from(socket.clone()),
            ack,
            wants_ack: ack_id.is_some(),
            _handling: handling(socket, value, ack_id),
            event: event_name(socket, value, ack_id),
            arrived: std::time::Instant::now(),
        })
    }
}

impl<A: Adapter> Reply<A> {
    fn send(self, result: Result<impl Serialize, AppError>) {
        crate::metrics::socket_event_handled(self.event, self.arrived.elapsed().as_secs_f64());
        match result {
            Ok(data) => {
                let _ = self.ack.send(&success(data));
            }
            Err(error) if self.wants_ack => {
                let _ = self.ack.send(&error.body());
            }
            Err(error) => {
                let _ = self.socket.emit(
                    "error",
                    &json!({"code": error.code, "message": error.message}),
                );
            }
        }
    }
}

/// Decodes `data` as the payload of the client event `event` and checks its ids, as the
/// event's handler does before it touches any state (the fuzz target's way in).
pub fn decode_client_payload(event: &str, data: Value) -> Result<(), AppError> {
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
        "send_message" => payload::<SendMessageRequest>(data).map(drop),
        "edit_message" => {
            let EditPayload { id, .. } = payload(data)?;
            wire_id(id, "id").map(drop)
        }
        "delete_message" => {
            let DeletePayload { id, .. } = payload(data)?;
            wire_id(id, "id").map(drop)
        }
        "mark_read" => {
            let MarkReadPayload {
                conversation_id,
                message_ids,
            } = payload(data)?;
            wire_id(conversation_id, "conversation_id")?;
            message_ids
                .into_iter()
                .try_for_each(|id| wire_id(id, "message_ids").map(drop))
        }
        "set_presence" => payload::<PresencePayload>(data).map(drop),
        _ => Err(AppError::validation(format!("unknown event {event}"))),
    }
}

fn payload<T: DeserializeOwned>(
    data: Result<Value, impl std::fmt::Display>,
) -> Result<T, AppError> {
    let data = data.map_err(|e| AppError::validation(format!("malformed payload: {e}")))?;
    serde_json::from_value(data)
        .map_err(|e| AppError::validation(format!("malformed payload: {e}")))
}

#[derive(Debug, serde::Deserialize)]
struct ConversationPayload {
    conversation_id: u64,
}

#[derive(Debug, serde::Deserialize)]
struct JoinPayload {
    conversation_id: u64,
    since: Option<u64>,
}

#[derive(Debug, serde::Deserialize)]
struct MarkReadPayload {
    conversation_id: u64,
    message_ids: Vec<u64>,
}

#[derive(Debug, serde::Deserialize)]
struct EditPayload {
    /// The message's id.
    id: u64,
    message: Option<String>,
    content: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct DeletePayload {
    /// The message's id.
    id: u64,
    reason: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct PresencePayload {
    /// `away` or `available`.
    status: String,
}

async fn join_conversation<A: Adapter>(
    socket: SocketRef<A>,
    State(app): State<App>,
    event: ClientEvent<JoinPayload>,
    reply: Reply<A>,
) {
    let holds = socket.extensions.get::<super::JoinHolds>();
    // The conversation whose broadcasts wait for this answer, and the messages it holds.
    let mut held: Option<(u64, HashSet<u64>)> = None;
    let result = async {
        let (
            session,
            JoinPayload {
                conversation_id,
                since,
            },
            _,
        ) = event.parts()?;
        let id = wire_id(conversation_id, "conversation_id")?;
        within_limit(&app, &session, LimitKind::Joins).await?;
        app.fresh_for(&session).await;
        readable(&app, &session, id).await?;
        if let Some(holds) = &holds {
            holds.hold(id);
            held = Some((id, HashSet::new()));
        }
        socket.join(conversation_room(id));
        // Everything committed from now on reaches this socket through the room; everything
        // committed before must be in what the join answers, or a reconnecting client would
        // never see it: wait (bounded) until the read tables hold the whole log as of now. If
        // they do not (their projector's node died and its lease has not expired yet), an
        // answer from them would silently skip messages the client then never asks for again:
        // refuse the join instead, out of the room, and let the client join again.
        let caught_up = match app.store.head_position().await {
            Ok(head) => app.await_position(head).await,
            Err(error) => {
                socket.leave(conversation_room(id));
                return Err(error.into());
            }
        };
        if !caught_up {
            socket.leave(conversation_room(id));
            return Err(AppError::new(
                ErrorCode::Unavailable,
                "the conversation's messages are catching up; join again shortly",
            ));
        }
        let page = messages::on_join(&app, id, since).await?;
        if let Some((_, answered)) = &mut held {
            answered.extend(page.messages.iter().map(|message| message.id));
        }
        // Where the next join continues when this one could not hold everything.
        let next_since = page
            .has_more
            .then(|| page.messages.last().map_or(since, |last| Some(last.id)))
            .flatten();
        Ok(json!({
            "conversation_id": id,
            "messages": page.messages,
            "has_more": page.has_more,
            "next_since": next_since,
        }))
    }
    .await;
    reply.send(result);
    if let (Some(holds), Some((id, answered))) = (holds, held) {
        holds.release(&socket, id, &answered);
    }
}

async fn leave_conversation<A: Adapter>(
    socket: SocketRef<A>,
    event: ClientEvent<ConversationPayload>,
    reply: Reply<A>,
) {
    let result = event
        .parts()
        .map(|(_, ConversationPayload { conversation_id }, _)| {
            socket.leave(conversation_room(conversation_id));
            json!({"conversation_id": conversation_id})
        });
    reply.send(result);
}

async fn send_message<A: Adapter>(
    State(app): State<App>,
    event: ClientEvent<SendMessageRequest>,
    reply: Reply<A>,
) {
    let result = async {
        let (session, request, origin) = event.parts()?;
        let sent = messages::send(&app, &origin, &session, request, "socket").await?;
        Ok(sent.message)
    }
    .await;
    reply.send(result);
}

async fn edit_message<A: Adapter>(
    State(app): State<App>,
    event: ClientEvent<EditPayload>,
    reply: Reply<A>,
) {
    let result = async {
        let (
            session,
            EditPayload {
                id,
                message,
                content,
            },
            origin,
        ) = event.parts()?;
        let content = message.or(content).unwrap_or_default();
        let change = messages::MessageChange::Edit { content };
        messages::change(&app, &origin, &session, id, change).await
    }
    .await;
    reply.send(result);
}

async fn delete_message<A: Adapter>(
    State(app): State<App>,
    event: ClientEvent<DeletePayload>,
    reply: Reply<A>,
) {
    let result = async {
        let (session, DeletePayload { id, reason }, origin) = event.parts()?;
        let change = messages::MessageChange::Delete { reason };
        messages::change(&app, &origin, &session, id, change).await
    }
    .await;
    reply.send(result);
}

async fn typing_start<A: Adapter>(
    socket: SocketRef<A>,
    app: State<App>,
    event: ClientEvent<ConversationPayload>,
    reply: Reply<A>,
) {
    typing_event(socket, app, event, reply, true).await
}

async fn typing_stop<A: Adapter>(
    socket: SocketRef<A>,
    app: State<App>,
    event: ClientEvent<ConversationPayload>,
    reply: Reply<A>,
) {
    typing_event(socket, app, event, reply, false).await
}

async fn typing_event<A: Adapter>(
    socket: SocketRef<A>,
    State(app): State<App>,
    event: ClientEvent<ConversationPayload>,
    reply: Reply<A>,
    is_typing: bool,
) {
    let result = async {
        let (session, ConversationPayload { conversation_id }, _) = event.parts()?;
        let id = wire_id(conversation_id, "conversation_id")?;
        let indicator = typing::indicator(&app, &session, id, is_typing).await?;
        // To the others in the room, on every node.
        if let Err(error) = socket
            .to(conversation_room(id))
            .emit(typing::TYPING_EVENT, &indicator)
            .await
        {
            tracing::debug!(%error, "typing indicator not delivered everywhere");
        }
        crate::metrics::socket_event_out(typing::TYPING_EVENT);
        Ok(json!({"conversation_id": id, "typing": is_typing}))
    }
    .await;
    reply.send(result);
}

async fn mark_read<A: Adapter>(
    State(app): State<App>,
    event: ClientEvent<MarkReadPayload>,
    reply: Reply<A>,
) {
    let result = async {
        let (
            session,
            MarkReadPayload {
                conversation_id,
                message_ids,
            },
            origin,
        ) = event.parts()?;
        let marked_read =
            reads::mark_read(&app, &origin, &session, conversation_id, message_ids).await?;
        Ok(json!({"marked_read": marked_read}))
    }
    .await;
    reply.send(result);
}

/// An admin says they are away or available again; the ack's data is their presence.
async fn set_presence<A: Adapter>(
    State(app): State<App>,
    event: ClientEvent<PresencePayload>,
    reply: Reply<A>,
) {
    let result = async {
        let (session, PresencePayload { status }, _) = event.parts()?;
        presence::set_own(&app, &session, &status).await
    }
    .await;
    reply.send(result);
}

async fn unknown_event<A: Adapter>(Event(name): Event, reply: Reply<A>) {
    crate::metrics::socket_event_in("unknown");
    let error = AppError::validation(format!(
        "unknown event {:?}",
        name.chars().take(64).collect::<String>()
    ));
    reply.send(Err::<(), _>(error));
}
