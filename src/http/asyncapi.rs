//! `/api/asyncapi.json`: the Socket.IO events as an AsyncAPI 3 document. The payloads that are
//! API shapes (messages, errors, presence) are the OpenAPI document's schemas, generated from the
//! same Rust types; the event names are the ones the server handles and emits
//! (`metrics::CLIENT_EVENTS`, `metrics::SERVER_EVENTS`), which a test checks.

use axum::Json;
use axum::routing::get;
use serde_json::{Map, Value, json};

pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new().route("/api/asyncapi.json", get(async || Json(document())))
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required})
}

/// What the client sends: name, payload, what it is for.
fn client_events() -> Vec<(&'static str, Value, &'static str)> {
    let conversation = json!({"conversation_id": {"type": "integer", "minimum": 1}});
    vec![
        (
            "join_conversation",
            object(
                json!({"conversation_id": {"type": "integer", "minimum": 1},
                       "since": {"type": "integer", "minimum": 0,
                                 "description": "the newest message id the client holds"}}),
                &["conversation_id"],
            ),
            "Joins the conversation's room; the ack's data is {conversation_id, messages, has_more, next_since}: the messages after `since` (without it, the newest 50), at most 200 and about 1 MiB; join again with `since: next_since` while has_more.",
        ),
        (
            "leave_conversation",
            object(conversation.clone(), &["conversation_id"]),
            "Leaves the room.",
        ),
        (
            "send_message",
            schema("SendMessageRequest"),
            "Sends a message; the ack's data is the stored message (a retry with the same client_msg_id answers the original).",
        ),
        (
            "edit_message",
            object(
                json!({"id": {"type": "integer", "minimum": 1, "description": "the message's id"},
                       "message": {"type": "string", "description": "the new text (or `content`)"},
                       "content": {"type": "string"}}),
                &["id"],
            ),
            "The sender rewrites their text message within CHAT_EDIT_WINDOW_SECS; the ack's data is the message with edited_at. As PATCH /api/chat/messages/{id}.",
        ),
        (
            "delete_message",
            object(
                json!({"id": {"type": "integer", "minimum": 1, "description": "the message's id"},
                       "reason": {"type": "string", "description": "staff removing someone else's message: why"}}),
                &["id"],
            ),
            "The sender withdraws their message within CHAT_EDIT_WINDOW_SECS, or an admin removes any message with a reason; the ack's data is the tombstone. As DELETE /api/chat/messages/{id}.",
        ),
        (
            "typing_start",
            object(conversation.clone(), &["conversation_id"]),
            "The caller started typing (counts against the typing limit).",
        ),
        (
            "typing_stop",
            object(conversation, &["conversation_id"]),
            "The caller stopped typing.",
        ),
        (
            "mark_read",
            schema("MarkReadBody"),
            "Marks the other side's messages read; the ack's data is {marked_read}.",
        ),
        (
            "set_presence",
            schema("PresenceBody"),
            "Admins: away or available; the ack's data is the admin's presence.",
        ),
    ]
}

/// What the server sends: name, payload, what it is for.
fn server_events() -> Vec<(&'static str, Value, &'static str)> {
    let id = json!({"type": "integer", "minimum": 1});
    let role = json!({"type": "string", "enum": ["user", "admin", "system"]});
    vec![
        (
            "new_message",
            schema("MessageView"),
            "A message committed in a room the socket joined (the sender's own socket too), or in any conversation for admin sockets.",
        ),
        (
            "message_updated",
            object(
                json!({"conversation_id": id, "id": id, "message": {"type": "string"},
                       "content": {"type": "string"},
                       "edited_at": {"type": "string", "format": "date-time"}}),
                &["conversation_id", "id", "message", "content", "edited_at"],
            ),
            "A message of the room (or, for admin sockets, of any conversation) was edited: show `message` in its place.",
        ),
        (
            "message_deleted",
            object(
                json!({"conversation_id": id, "id": id, "deleted_by": role}),
                &["conversation_id", "id", "deleted_by"],
            ),
            "A message of the room (or, for admin sockets, of any conversation) was deleted: show a tombstone in its place.",
        ),
        (
            "typing_indicator",
            object(
                json!({"conversation_id": id, "sender_role": role, "typing": {"type": "boolean"},
                       "sender_identifier": {"type": "string"}}),
                &[
                    "conversation_id",
                    "sender_role",
                    "typing",
                    "sender_identifier",
                ],
            ),
            "Someone else in the room started or stopped typing.",
        ),
        (
            "message_read",
            object(
                json!({"conversation_id": id, "message_ids": {"type": "array", "items": id},
                       "read_by": role}),
                &["conversation_id", "message_ids", "read_by"],
            ),
            "Messages of the room were read.",
        ),
        (
            "conversation_status",
            object(
                json!({"conversation_id": id,
                       "status": {"type": "string", "enum": ["active", "closed", "archived"]},
                       "changed_by": role}),
                &["conversation_id", "status", "changed_by"],
            ),
            "A conversation was closed, reopened or archived.",
        ),
        (
            "conversation_assigned",
            object(
                json!({"conversation_id": id, "admin_id": id, "assigned_by": role}),
                &["conversation_id", "admin_id", "assigned_by"],
            ),
            "A conversation was assigned (`assigned_by: system` for an automatic assignment).",
        ),
        (
            "presence",
            object(
                json!({"user_id": id, "role": {"type": "string", "enum": ["user", "admin"]},
                       "online": {"type": "boolean"},
                       "last_seen_at": {"type": ["string", "null"], "format": "date-time"},
                       "away": {"type": "boolean", "description": "admins only"}}),
                &["user_id", "role", "online", "last_seen_at"],
            ),
            "To admin and auditor sockets: someone came online, went offline or (admins) changed away.",
        ),
        (
            "server_shutdown",
            object(
                json!({"reason": {"type": "string"}, "message": {"type": "string"}}),
                &["reason", "message"],
            ),
            "A hint before a stopping node closes the transport; the client reconnects by itself and joins again with since.",
        ),
        (
            "error",
            object(
                json!({"code": schema("ErrorCode"), "message": {"type": "string"}}),
                &["code", "message"],
            ),
            "The failure of a client event sent without an ack.",
        ),
    ]
}

/// The served document.
pub fn document() -> Value {
    let openapi = serde_json::to_value(super::openapi::document()).unwrap_or_default();
    let mut schemas = openapi["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    schemas.insert(
        "Ack".into(),
        json!({
            "description": "Every client event's acknowledgement: the REST envelope.",
            "oneOf": [
                {"type": "object", "properties": {"status": {"const": "success"}, "data": {}},
                 "required": ["status", "data"]},
                schema("ErrorBody"),
            ],
        }),
    );
    schemas.insert(
        "ConnectError".into(),
        object(
            json!({"code": {"const": "UNAUTHORIZED"}, "message": {"type": "string"}}),
            &["code", "message"],
        ),
    );

    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operations = Map::new();
    let mut add = |name: &str, payload: Value, summary: &str, action: &str| {
        messages.insert(
            name.into(),
            json!({"name": name, "summary": summary, "payload": payload}),
        );
        channel_messages.insert(
            name.into(),
            json!({"$ref": format!("#/components/messages/{name}")}),
        );
        let mut operation = json!({
            "action": action,
            "channel": {"$ref": "#/channels/socket"},
            "summary": summary,
            "messages": [{"$ref": format!("#/channels/socket/messages/{name}")}],
        });
        if action == "receive" {
            operation["reply"] = json!({
                "channel": {"$ref": "#/channels/socket"},
                "messages": [{"$ref": "#/channels/socket/messages/ack"}],
            });
        }
        operations.insert(name.into(), operation);
    };
    for (name, payload, summary) in client_events() {
        add(name, payload, summary, "receive");
    }
    for (name, payload, summary) in server_events() {
        add(name, payload, summary, "send");
    }
    messages.insert(
        "ack".into(),
        json!({"name": "ack", "summary": "The acknowledgement of a client event.",
               "payload": schema("Ack")}),
    );
    channel_messages.insert("ack".into(), json!({"$ref": "#/components/messages/ack"}));
    messages.insert(
        "connect_error".into(),
        json!({"name": "connect_error", "summary": "A refused connect (bad or missing token).",
               "payload": schema("ConnectError")}),
    );
    channel_messages.insert(
        "connect_error".into(),
        json!({"$ref": "#/components/messages/connect_error"}),
    );

    json!({
        "asyncapi": "3.1.0",
        "info": {
            "title": "chatd Socket.IO events",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Socket.IO 5 (Engine.IO 4) on the API's port at /socket.io/, over websocket or long-polling. The session token goes in the handshake's auth object {token}, else an Authorization: Bearer header, else a token query parameter. Each client event answers through its acknowledgement with the REST envelope.",
        },
        "servers": {
            "chatd": {
                "host": "localhost:10000",
                "protocol": "ws",
                "pathname": "/socket.io/",
                "description": "Any chatd node; behind a proxy, its public address (wss).",
            },
        },
        "defaultContentType": "application/json",
        "channels": {
            "socket": {
                "address": "/",
                "title": "The default namespace",
                "messages": channel_messages,
            },
        },
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    })
}
