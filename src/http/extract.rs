//! Extractors whose rejections answer in the contract's envelope: JSON bodies, query strings,
//! path ids; the caller's session (`Caller`) comes from [`super::auth`].

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub use super::auth::Caller;

use crate::app::AppError;
use crate::app::ids::MAX_WIRE_ID;

/// A JSON body; malformed JSON, wrong types and a wrong content type are VALIDATION_ERROR.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        if !is_json(request.headers()) {
            return Err(AppError::validation(
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| AppError::validation(rejection.body_text()))?;
        let refused = match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => return Ok(ApiJson(value)),
            Err(rejection) => AppError::validation(rejection.body_text()),
        };
        // Only a body the typed parse refused pays for a second look: `5.0` where an integer
        // belongs.
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Err(refused);
        };
        if !integral_numbers_as_integers(&mut value) {
            return Err(refused);
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|error| {
                AppError::validation(format!(
                    "the JSON body does not fit: {}: {}",
                    error.path(),
                    error.inner()
                ))
            })
    }
}

/// The `user_id` a client also puts in the JSON body of a GET (as today's iOS client does),
/// for the handler to check like the query's: the contract wants any `user_id` sent to be the
/// caller's. A body that is not a JSON object names none; a `user_id` that is not an id is
/// VALIDATION_ERROR. It reads the body, so it comes last among a handler's extractors.
pub struct BodyUserId(pub Option<u64>);

impl<S: Send + Sync> FromRequest<S> for BodyUserId {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| AppError::validation(rejection.body_text()))?;
        let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(&bytes) else {
            return Ok(BodyUserId(None));
        };
        match body.get("user_id") {
            None | Some(serde_json::Value::Null) => Ok(BodyUserId(None)),
            Some(id) => id
                .as_u64()
                .filter(|id| (1..=MAX_WIRE_ID).contains(id))
                .map(|id| BodyUserId(Some(id)))
                .ok_or_else(|| AppError::validation("user_id must be a positive integer id")),
        }
    }
}

/// `application/json` or `application/*+json`, parameters aside.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// JSON has one number type: `5.0` is the integer 5 to a JSON Schema validator and to
/// JavaScript, so an id or a rating written that way is taken as the integer it is. True when
/// it changed anything.
fn integral_numbers_as_integers(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            let Some(float) = number.as_f64().filter(|f| f.fract() == 0.0) else {
                return false;
            };
            if (0.0..=MAX_WIRE_ID as f64).contains(&float) {
                *value = Value::from(float as u64);
                true
            } else if (-(MAX_WIRE_ID as f64)..0.0).contains(&float) {
                *value = Value::from(float as i64);
                true
            } else {
                false
            }
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= integral_numbers_as_integers(item);
            }
            changed
        }
        Value::Object(fields) => {
            let mut changed = false;
            for item in fields.values_mut() {
                changed |= integral_numbers_as_integers(item);
            }
            changed
        }
        _ => false,
    }
}

/// A query string; unparsable or out-of-range values are VALIDATION_ERROR.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| AppError::validation(rejection.body_text()))
    }
}

/// A conversation id in the path: a positive integer below 2^53.
pub struct ConversationId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for ConversationId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        path_id(parts, state, "conversation")
            .await
            .map(ConversationId)
    }
}

/// A message id in the path: a positive integer below 2^53.
pub struct MessageId(pub u64);

impl<S: Send + Sync> FromRequestParts<S> for MessageId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        path_id(parts, state, "message").await.map(MessageId)
    }
}

/// The path's one id, named `what` in the refusal.
async fn path_id<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    what: &str,
) -> Result<u64, AppError> {
    let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|rejection| AppError::validation(rejection.body_text()))?;
    // `1.0` is the integer 1, as in a JSON body.
    raw.parse::<u64>()
        .ok()
        .or_else(|| {
            raw.parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0 && (1.0..=MAX_WIRE_ID as f64).contains(f))
                .map(|f| f as u64)
        })
        .filter(|id| (1..=MAX_WIRE_ID).contains(id))
        .ok_or_else(|| {
            AppError::validation(format!(
                "the {what} id must be a positive integer below 2^53"
            ))
        })
}

/// A JSON body a request may leave out (a `DELETE`): absent or empty, the default; present, as
/// [`ApiJson`].
pub struct OptionalApiJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        let headers = request.headers();
        let no_body = !headers.contains_key(axum::http::header::CONTENT_TYPE)
            && match headers.get(axum::http::header::CONTENT_LENGTH) {
                Some(length) => length == "0",
                None => !headers.contains_key(axum::http::header::TRANSFER_ENCODING),
            };
        if no_body {
            return Ok(OptionalApiJson(T::default()));
        }
        // `null` is no body too.
        ApiJson::<Option<T>>::from_request(request, state)
            .await
            .map(|ApiJson(value)| OptionalApiJson(value.unwrap_or_default()))
    }
}

/// A paging value from a query: `default` when absent, else within `1..=max`.
pub fn bounded(value: Option<u32>, default: u32, max: u32, name: &str) -> Result<u32, AppError> {
    let value = value.unwrap_or(default);
    if (1..=max).contains(&value) {
        Ok(value)
    } else {
        Err(AppError::validation(format!(
            "{name} must be between 1 and {max}"
        )))
    }
}

#[cfg(test)]
mod integral_number_tests {
    use super::integral_numbers_as_integers;
    use serde_json::json;

    #[test]
    fn whole_floats_become_integers_and_others_stay() {
        let mut body = json!({"ids": [1.0, 2], "rating": 2.5, "nested": {"id": -3.0}});
        assert!(integral_numbers_as_integers(&mut body));
        assert_eq!(
            body,
            json!({"ids": [1, 2], "rating": 2.5, "nested": {"id": -3}})
        );
        let mut unchanged = json!({"ids": [1, 2], "rating": 2.5});
        assert!(!integral_numbers_as_integers(&mut unchanged));
    }
}
