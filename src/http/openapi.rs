//! The OpenAPI 3 document (`/api/openapi.json`), generated from the handlers' annotations, and
//! its browsable UI (`/api/docs`, assets embedded in the binary).

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{audit, chat, devices, files, health, search};
use crate::wire::{
    AdminPresenceView, ConversationView, ErrorBody, ErrorCode, FeedbackView, LastMessageView,
    MessageView, Pagination,
};

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "app_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Signature",
                "Lowercase hex HMAC-SHA256(app secret, X-Timestamp + \"\\n\" + METHOD + \"\\n\" + \
                 path-and-query + \"\\n\" + hex SHA-256 of the body), with X-Timestamp (ms since the \
                 epoch, within 300 s) on every /api request; each signature is accepted once.",
            ))),
        );
        components.add_security_scheme(
            "admin_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::cookie::COOKIE_NAME,
                "The web manager's session (POST /admin/session); the same API is under \
                 /admin/api with this cookie instead of the signature, and every request other \
                 than GET and HEAD carries X-CSRF-Token.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token (`chatd session create`, or the login system via Redis).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Prometheus metrics: requests by route and status with latency histograms, messages accepted,
/// rate-limit rejections.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[allow(dead_code)]
fn metrics() {}

#[derive(OpenApi)]
#[openapi(
    info(title = "chatd", description = "Support chat between app users and admins. Every response uses the envelope {status, data} or {status, message, error_code}."),
    paths(
        chat::messages::list_messages, chat::messages::send_message, chat::messages::edit_message,
        chat::messages::delete_message,
        chat::conversations::list_conversations, chat::conversations::open_conversation,
        chat::conversations::get_conversation, chat::conversations::mark_read,
        chat::admin::assign, chat::admin::set_status, chat::admin::bulk, chat::admin::erase_person,
        chat::conversations::feedback, chat::conversations::typing,
        chat::admins::set_presence, chat::admins::admins_presence,
        devices::register, devices::unregister,
        search::search_messages,
        super::analytics::analytics,
        audit::conversation_events, audit::conversation_state, audit::verify,
        health::healthz, health::readyz, metrics,
        files::upload::upload, files::download::download,
        super::admin::session::sign_in, super::admin::session::who_am_i, super::admin::session::sign_out,
    ),
    components(schemas(ErrorBody, ErrorCode, files::UploadView, MessageView, ConversationView, LastMessageView, FeedbackView, Pagination, AdminPresenceView)),
    modifiers(&SecuritySchemes),
    tags((name = "messages"), (name = "files"), (name = "conversations"), (name = "devices"), (name = "admin"), (name = "audit"), (name = "operations"), (name = "web manager")),
)]
pub struct ApiDoc;

/// The page's start-up script: Swagger UI with a request interceptor that signs "Try it out"
/// requests with an app secret the operator types in (kept in the page's memory only).
const SIGNING_INITIALIZER: &str = include_str!("docs/swagger-initializer.js");

pub fn router<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route(
            "/api/docs/swagger-initializer.js",
            axum::routing::get(async || {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/javascript; charset=utf-8",
                    )],
                    SIGNING_INITIALIZER,
                )
            }),
        )
        .merge(utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/openapi.json", document()))
}

/// The document served: the handlers' annotations, plus the rules every route shares, applied
/// here once rather than repeated on each handler.
pub fn document() -> utoipa::openapi::OpenApi {
    let generated = ApiDoc::openapi();
    let Ok(mut value) = serde_json::to_value(&generated) else {
        return generated;
    };
    shared_rules(&mut value);
    serde_json::from_value(value).unwrap_or(generated)
}

/// Ids on the wire are 1..=2^53-1 wherever they appear (parameters, bodies, views); every
/// `/api` route can answer 400 (a malformed parameter), 401 (signature or session) and 503 (the
/// database or Redis unreachable), and a route with a body 413.
fn shared_rules(document: &mut serde_json::Value) {
    use serde_json::{Value, json};
    fn constrain_ids(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(parameters)) = map.get_mut("parameters") {
                    for parameter in parameters {
                        let name = parameter["name"].as_str().unwrap_or_default().to_string();
                        if is_id(&name)
                            && let Some(schema) = parameter.get_mut("schema")
                        {
                            constrain_id(schema);
                            // History's `after_id=0` means "from the first message".
                            if name == "after_id" {
                                schema["minimum"] = json!(0);
                            }
                        }
                    }
                }
                if let Some(Value::Object(properties)) = map.get_mut("properties") {
                    for (name, schema) in properties.iter_mut() {
                        if is_id(name) {
                            constrain_id(schema);
                        } else if name.ends_with("_ids") {
                            if let Some(items) = schema.get_mut("items") {
                                constrain_id(items);
                            }
                            // A bulk action names each conversation once.
                            if name == "conversation_ids" {
                                schema["uniqueItems"] = json!(true);
                            }
                        }
                    }
                }
                for child in map.values_mut() {
                    constrain_ids(child);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(constrain_ids),
            _ => {}
        }
    }
    fn is_id(name: &str) -> bool {
        name == "id" || name == "assigned_to" || (name.ends_with("_id") && name != "file_id")
    }
    fn constrain_id(schema: &mut Value) {
        let integer = schema["type"] == "integer"
            || schema["type"]
                .as_array()
                .is_some_and(|types| types.iter().any(|t| t == "integer"));
        if let (true, Some(schema)) = (integer, schema.as_object_mut()) {
            schema.insert("minimum".into(), json!(1));
            schema.insert("maximum".into(), json!(crate::app::ids::MAX_WIRE_ID));
        }
    }
    constrain_ids(document);

    let error = json!({"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    if let Some(Value::Object(paths)) = document.get_mut("paths") {
        for (path, item) in paths.iter_mut() {
            if !path.starts_with("/api/chat") && !path.starts_with("/api/audit") {
                continue;
            }
            let Some(operations) = item.as_object_mut() else {
                continue;
            };
            for operation in operations.values_mut() {
                let has_body = operation.get("requestBody").is_some();
                let Some(Value::Object(responses)) = operation.get_mut("responses") else {
                    continue;
                };
                let mut shared = vec![
                    ("400", "VALIDATION_ERROR"),
                    (
                        "401",
                        "INVALID_SIGNATURE, STALE_TIMESTAMP, REPLAYED_REQUEST or UNAUTHORIZED",
                    ),
                    ("503", "UNAVAILABLE"),
                ];
                if has_body {
                    shared.push(("413", "PAYLOAD_TOO_LARGE"));
                }
                for (status, description) in shared {
                    responses.entry(status).or_insert_with(|| {
                        let mut response = error.clone();
                        response["description"] = json!(description);
                        response
                    });
                }
            }
        }
    }
    describe_responses(document);
    exemplify_responses(document);
}

/// Calls `visit` with each response of each operation, and its status.
fn each_response(
    document: &mut serde_json::Value,
    mut visit: impl FnMut(&str, &mut serde_json::Map<String, serde_json::Value>),
) {
    use serde_json::Value;
    let Some(Value::Object(paths)) = document.get_mut("paths") else {
        return;
    };
    for operations in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in operations.values_mut() {
            let Some(Value::Object(responses)) = operation.get_mut("responses") else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                if let Some(response) = response.as_object_mut() {
                    visit(status, response);
                }
            }
        }
    }
}

/// Every JSON response gets an example, made from its schema (and the `example`s the shapes
/// carry), so a reader and a code generator see a whole answer.
fn exemplify_responses(document: &mut serde_json::Value) {
    use serde_json::Value;
    let schemas = document["components"]["schemas"].clone();
    each_response(document, |_, response| {
        let Some(Value::Object(content)) = response.get_mut("content") else {
            return;
        };
        for media in content.values_mut().filter_map(Value::as_object_mut) {
            if media.contains_key("example") || media.contains_key("examples") {
                continue;
            }
            let example = match media.get("schema") {
                Some(schema) => example_of(schema, &schemas, 0),
                // `/metrics`: Prometheus' text format.
                None => Value::String(
                    "# TYPE chatd_messages_accepted_total counter\n\
                     chatd_messages_accepted_total{transport=\"rest\"} 12\n"
                        .into(),
                ),
            };
            media.insert("example".into(), example);
        }
    });
}

/// A value `schema` accepts: its own example where it has one, else one built from its type.
fn example_of(
    schema: &serde_json::Value,
    schemas: &serde_json::Value,
    depth: usize,
) -> serde_json::Value {
    use serde_json::{Map, Value, json};
    if depth > 24 {
        return Value::Null;
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return example_of(&schemas[name], schemas, depth + 1);
    }
    for given in ["example", "const", "default"] {
        if let Some(value) = schema.get(given) {
            return value.clone();
        }
    }
    if let Some(first) = schema["examples"].as_array().and_then(|all| all.first()) {
        return first.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|all| all.first()) {
        return first.clone();
    }
    for choice in ["oneOf", "anyOf"] {
        if let Some(first) = schema[choice]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["type"] != "null"))
        {
            return example_of(first, schemas, depth + 1);
        }
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut merged = Map::new();
        for part in parts {
            if let Value::Object(fields) = example_of(part, schemas, depth + 1) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.as_str(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|kind| *kind != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => return json!({}),
    };
    match kind {
        "object" => {
            let mut fields = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    fields.insert(name.clone(), example_of(property, schemas, depth + 1));
                }
            }
            Value::Object(fields)
        }
        "array" => json!([example_of(&schema["items"], schemas, depth + 1)]),
        "integer" => json!(schema["minimum"].as_i64().unwrap_or(1)),
        "number" => json!(schema["minimum"].as_f64().unwrap_or(1.0)),
        "boolean" => json!(true),
        "string" => match schema["format"].as_str() {
            Some("date-time") => json!("2025-07-14T10:30:00Z"),
            Some("date") => json!("2025-07-14"),
            _ => json!("text"),
        },
        _ => Value::Null,
    }
}

/// OpenAPI requires a description on every response; an annotation that gave none gets what its
/// status means here (the error codes are the contract's).
fn describe_responses(document: &mut serde_json::Value) {
    use serde_json::Value;
    each_response(document, |status, response| {
        let missing = response
            .get("description")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if missing {
            response.insert("description".into(), status_meaning(status).into());
        }
    });
}

fn status_meaning(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "created",
        "204" => "done; no content",
        "400" => "VALIDATION_ERROR or EMPTY_MESSAGE",
        "401" => "INVALID_SIGNATURE, STALE_TIMESTAMP, REPLAYED_REQUEST or UNAUTHORIZED",
        "403" => "FORBIDDEN: the conversation or action is not the caller's",
        "404" => "NOT_FOUND",
        "405" => "the route does not take this method",
        "408" => "REQUEST_TIMEOUT: the body stalled or took too long",
        "409" => "CONFLICT: the transition is not allowed",
        "413" => "PAYLOAD_TOO_LARGE",
        "415" => "UNSUPPORTED_MEDIA_TYPE",
        "429" => "RATE_LIMITED (Retry-After says when)",
        "500" => "INTERNAL",
        "503" => "UNAVAILABLE: the database or Redis is unreachable; nothing was written",
        _ => "see the status code",
    }
}
