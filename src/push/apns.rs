//! Apple Push Notification service over HTTP/2 with token authentication: `POST
//! {base}/3/device/{token}` with an ES256 provider token (`kid` = key id, `iss` = team id, `iat`)
//! signed by the .p8 key and renewed every 50 minutes (Apple refuses one older than an hour and
//! one renewed more often than every 20 minutes).

use std::time::{Duration, Instant};

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::config::ApnsSettings;
use super::notification::{Delivery, Outcome, retry_after, transport_failure};

const TOKEN_LIFETIME: Duration = Duration::from_secs(50 * 60);

#[derive(Serialize)]
struct ProviderClaims<'a> {
    iss: &'a str,
    iat: u64,
}

#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    reason: String,
}

struct ProviderToken {
    value: String,
    issued: Instant,
}

pub struct Apns {
    client: push_http::Client,
    base_url: String,
    topic: String,
    key_id: String,
    team_id: String,
    key: EncodingKey,
    token: std::sync::Mutex<Option<ProviderToken>>,
}

impl Apns {
    pub fn new(settings: &ApnsSettings) -> anyhow::Result<Self> {
        let file = &settings.key_file;
        let pem = std::fs::read(file)
            .with_context(|| format!("reading CHAT_APNS_KEY_FILE ({})", file.display()))?;
        let key = EncodingKey::from_ec_pem(&pem).with_context(|| {
            format!(
                "CHAT_APNS_KEY_FILE ({}) is not a .p8 (PKCS#8 P-256) key",
                file.display()
            )
        })?;
        let builder = push_http::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        // APNs speaks only HTTP/2: over TLS it is negotiated, over plain HTTP (a local stand-in)
        // it must be assumed.
        let builder = if settings.base_url.starts_with("http://") {
            builder.http2_prior_knowledge()
        } else {
            builder
        };
        Ok(Apns {
            client: builder.build().context("building the APNs client")?,
            base_url: settings.base_url.clone(),
            topic: settings.topic.clone(),
            key_id: settings.key_id.clone(),
            team_id: settings.team_id.clone(),
            key,
            token: std::sync::Mutex::new(None),
        })
    }

    fn provider_token(&self) -> Result<String, Outcome> {
        let mut cached = self
            .token
            .lock()
            .map_err(|_| Outcome::Failed("the APNs token cache is poisoned".into()))?;
        if let Some(token) = cached.as_ref()
            && token.issued.elapsed() < TOKEN_LIFETIME
        {
            return Ok(token.value.clone());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = ProviderClaims {
            iss: &self.team_id,
            iat: jsonwebtoken::get_current_timestamp(),
        };
        let value = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Outcome::Failed(format!("cannot sign the APNs provider token: {e}")))?;
        *cached = Some(ProviderToken {
            value: value.clone(),
            issued: Instant::now(),
        });
        Ok(value)
    }

    fn forget_token(&self) {
        if let Ok(mut cached) = self.token.lock() {
            *cached = None;
        }
    }

    pub async fn send(&self, delivery: &Delivery) -> Outcome {
        let token = match self.provider_token() {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        let n = &delivery.notification;
        let response = self
            .client
            .post(format!("{}/3/device/{}", self.base_url, delivery.token))
            .bearer_auth(token)
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-collapse-id", n.collapse_id())
            .json(&payload(delivery))
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) => return transport_failure(&error),
        };
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Outcome::Sent;
        }
        let after = retry_after(response.headers());
        let reason = response
            .json::<Refusal>()
            .await
            .map(|r| r.reason)
            .unwrap_or_default();
        let described = format!("APNs answered {status} {reason}");
        match (status, reason.as_str()) {
            (410, _) | (400, "BadDeviceToken" | "Unregistered") => Outcome::InvalidToken(described),
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.forget_token();
                Outcome::Retry {
                    after,
                    reason: described,
                }
            }
            (429 | 500..=599, _) => Outcome::Retry {
                after,
                reason: described,
            },
            _ => Outcome::Failed(described),
        }
    }
}

/// The APNs payload: the alert, the badge, and beside `aps` the ids as numbers (the app reads
/// `userInfo["conversation_id"] as? Int`) and what the message carries.
pub fn payload(delivery: &Delivery) -> Value {
    let n = &delivery.notification;
    let mut payload = n.custom_data();
    payload.insert(
        "aps".into(),
        json!({
            "alert": {"title": n.title, "body": n.body},
            "badge": n.badge,
            "sound": "default",
            "thread-id": n.collapse_id(),
        }),
    );
    Value::Object(payload)
}
