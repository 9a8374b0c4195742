//! Firebase Cloud Messaging, HTTP v1: `POST {base}/v1/projects/{project}/messages:send` with an
//! OAuth2 access token from the service account's JWT-bearer grant, cached until shortly before
//! it expires.

use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::FcmSettings;
use super::notification::{Delivery, Outcome, Platform, retry_after, transport_failure};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// A token is renewed this long before Google says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// The fields of a service-account JSON file that FCM needs. No `Debug`: it holds the key.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    private_key: String,
    client_email: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct CachedToken {
    value: String,
    renew_at: Instant,
}

pub struct Fcm {
    client: push_http::Client,
    send_url: String,
    token_url: String,
    client_email: String,
    key_id: Option<String>,
    key: EncodingKey,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

impl Fcm {
    pub fn new(settings: &FcmSettings) -> anyhow::Result<Self> {
        let file = &settings.credentials_file;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading CHAT_FCM_CREDENTIALS ({})", file.display()))?;
        let account: ServiceAccount = serde_json::from_str(&text).with_context(|| {
            format!(
                "CHAT_FCM_CREDENTIALS ({}) is not a service-account JSON file",
                file.display()
            )
        })?;
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .context("the service account's private_key is not an RSA key in PEM")?;
        let token_url = settings
            .token_url
            .clone()
            .or(account.token_uri)
            .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_string());
        let client = push_http::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the FCM client")?;
        Ok(Fcm {
            client,
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                settings.base_url, account.project_id
            ),
            token_url,
            client_email: account.client_email,
            key_id: account.private_key_id,
            key,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub async fn send(&self, delivery: &Delivery) -> Outcome {
        let token = match self.access_token().await {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        let response = self
            .client
            .post(&self.send_url)
            .bearer_auth(token)
            .json(&message(delivery))
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return transport_failure(&error),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Sent;
        }
        let after = retry_after(response.headers());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        classify(status.as_u16(), &body, after, || {
            // A refused access token: the next attempt asks for a new one.
            if let Ok(mut cached) = self.token.try_lock() {
                *cached = None;
            }
        })
    }

    async fn access_token(&self) -> Result<String, Outcome> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.renew_at
        {
            return Ok(token.value.clone());
        }
        let iat = jsonwebtoken::get_current_timestamp();
        let claims = GrantClaims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_url,
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Outcome::Failed(format!("cannot sign the FCM token request: {e}")))?;
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let response = self
            .client
            .post(&self.token_url)
            .header(
                push_http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(|e| transport_failure(&e))?;
        let status = response.status();
        if !status.is_success() {
            let after = retry_after(response.headers());
            // Bad credentials do not heal by themselves, but an operator may fix them while the
            // push still has retries left: every refusal here counts as one of the moment.
            return Err(Outcome::Retry {
                after,
                reason: format!("the OAuth token endpoint answered {status}"),
            });
        }
        let answer: TokenAnswer = response.json().await.map_err(|_| Outcome::Retry {
            after: None,
            reason: "the OAuth token endpoint answered something other than a token".into(),
        })?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let token = CachedToken {
            value: answer.access_token,
            renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        };
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }
}

/// The HTTP v1 message. `data` values are strings (FCM refuses anything else); the badge and the
/// collapse key go into each platform's block.
pub fn message(delivery: &Delivery) -> Value {
    let n = &delivery.notification;
    let collapse = n.collapse_id();
    let mut message = json!({
        "token": delivery.token,
        "notification": {"title": n.title, "body": n.body},
    });
    match delivery.platform {
        Platform::Android => {
            // FCM's `data` takes strings only.
            message["data"] = n
                .custom_data()
                .into_iter()
                .map(|(key, value)| match value {
                    Value::String(text) => (key, Value::String(text)),
                    other => (key, Value::String(other.to_string())),
                })
                .collect();
            message["android"] = json!({
                "priority": "high",
                "collapse_key": collapse,
                "notification": {"tag": collapse, "notification_count": n.badge.min(i32::MAX as u64)},
            });
        }
        Platform::Ios => {
            message["apns"] = json!({
                "headers": {
                    "apns-push-type": "alert",
                    "apns-priority": "10",
                    "apns-collapse-id": collapse,
                },
            });
            // Beside `aps`, as numbers: the iOS app reads `userInfo["conversation_id"] as? Int`,
            // which a string from `data` would fail.
            let mut payload = n.custom_data();
            payload.insert(
                "aps".into(),
                json!({"badge": n.badge, "sound": "default", "thread-id": collapse}),
            );
            message["apns"]["payload"] = Value::Object(payload);
        }
    }
    json!({"message": message})
}

/// What an FCM error answer means (the `errorCode` of its `FcmError` detail decides).
fn classify(
    status: u16,
    body: &Value,
    after: Option<Duration>,
    forget_token: impl FnOnce(),
) -> Outcome {
    let error = &body["error"];
    let code = error["details"]
        .as_array()
        .and_then(|details| {
            details
                .iter()
                .find_map(|d| d["errorCode"].as_str().map(str::to_string))
        })
        .unwrap_or_default();
    let message = error["message"].as_str().unwrap_or_default().to_string();
    let about_token = message.to_lowercase().contains("registration token")
        || error["details"].as_array().is_some_and(|details| {
            details.iter().any(|d| {
                d["fieldViolations"].as_array().is_some_and(|v| {
                    v.iter()
                        .any(|f| f["field"].as_str() == Some("message.token"))
                })
            })
        });
    let reason = format!("FCM answered {status} {code}: {message}");
    match status {
        404 if code == "UNREGISTERED" => Outcome::InvalidToken(reason),
        400 if (code == "INVALID_ARGUMENT" || error["status"] == "INVALID_ARGUMENT")
            && about_token =>
        {
            Outcome::InvalidToken(reason)
        }
        401 => {
            forget_token();
            Outcome::Retry { after, reason }
        }
        429 | 500..=599 => Outcome::Retry { after, reason },
        _ => Outcome::Failed(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unregistered_token_and_a_malformed_one_are_invalid_but_a_bad_payload_is_not() {
        let unregistered = json!({"error": {"code": 404, "message": "Requested entity was not found.",
            "status": "NOT_FOUND", "details": [{"errorCode": "UNREGISTERED"}]}});
        assert!(matches!(
            classify(404, &unregistered, None, || {}),
            Outcome::InvalidToken(_)
        ));
        let malformed = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "The registration token is not a valid FCM registration token",
            "details": [{"errorCode": "INVALID_ARGUMENT"}]}});
        assert!(matches!(
            classify(400, &malformed, None, || {}),
            Outcome::InvalidToken(_)
        ));
        let payload = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
            "message": "Invalid JSON payload received.", "details": [{"errorCode": "INVALID_ARGUMENT"}]}});
        assert!(matches!(
            classify(400, &payload, None, || {}),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            classify(404, &json!("<html>"), None, || {}),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            classify(503, &Value::Null, None, || {}),
            Outcome::Retry { .. }
        ));
    }
}
