//! Local stand-ins for FCM (its OAuth token endpoint included) and APNs: HTTP/1.1 and h2c on one
//! port, recording every request and answering from a script, and the keys they are configured
//! with (generated per test).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

pub const FCM_PROJECT: &str = "chatd-test";
pub const FCM_CLIENT_EMAIL: &str = "chatd@chatd-test.iam.gserviceaccount.com";
pub const FCM_ACCESS_TOKEN: &str = "ya29.test-access-token";
pub const APNS_KEY_ID: &str = "KEY1234567";
pub const APNS_TEAM_ID: &str = "TEAM123456";
pub const APNS_TOPIC: &str = "com.example.supportchat";
/// A scripted status that means: keep the request and never answer.
pub const HANG: u16 = 0;

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub version: hyper::Version,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
    /// When it arrived, microseconds since the epoch.
    pub at_micros: i64,
}

impl Recorded {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    /// Answers for the next pushes (status, body); then 200.
    script: Mutex<VecDeque<(u16, String)>>,
    token_path: &'static str,
}

/// One fake provider.
#[derive(Clone)]
pub struct FakeProvider {
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake provider");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            token_path: "/token",
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(answer(&shared, request).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeProvider { url, shared }
    }

    /// The next pushes get these answers, in order.
    pub fn script(&self, answers: &[(u16, Value)]) {
        let mut script = self.shared.script.lock().expect("script");
        for (status, body) in answers {
            script.push_back((*status, body.to_string()));
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// The push requests (not the OAuth token requests).
    pub fn pushes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path != self.shared.token_path)
            .collect()
    }

    pub fn token_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == self.shared.token_path)
            .collect()
    }

    /// Waits until at least `count` pushes arrived (at most `within`); all of them.
    pub async fn wait_for_pushes(&self, count: usize, within: Duration) -> Vec<Recorded> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let pushes = self.pushes();
            if pushes.len() >= count || tokio::time::Instant::now() >= deadline {
                return pushes;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn answer(
    shared: &Shared,
    request: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let at_micros = chrono::Utc::now().timestamp_micros();
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        version: parts.version,
        headers: parts.headers,
        body,
        at_micros,
    };
    let is_token = recorded.path == shared.token_path;
    shared.requests.lock().expect("requests").push(recorded);
    let (status, body) = if is_token {
        (
            200,
            json!({"access_token": FCM_ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
                .to_string(),
        )
    } else {
        shared
            .script
            .lock()
            .expect("script")
            .pop_front()
            .unwrap_or((
                200,
                json!({"name": "projects/chatd-test/messages/1"}).to_string(),
            ))
    };
    if status == HANG {
        // A provider that took the request and never answers (the sender dies meanwhile).
        std::future::pending::<()>().await;
    }
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The keys and credential files a test's chatd is configured with.
pub struct Credentials {
    pub dir: std::path::PathBuf,
    pub service_account: std::path::PathBuf,
    pub apns_key: std::path::PathBuf,
    /// PKCS#1 RSAPublicKey, for verifying the FCM grant's RS256 signature.
    pub rsa_public: Vec<u8>,
    /// The uncompressed P-256 point, for verifying the APNs token's ES256 signature.
    pub ec_public: Vec<u8>,
}

impl Credentials {
    pub fn generate(fcm: &FakeProvider) -> Credentials {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let rsa =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let rsa_der: aws_lc_rs::encoding::Pkcs8V1Der = rsa.as_der().expect("PKCS#8");
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        )
        .expect("P-256 key");
        let ec_der = ec.to_pkcs8v1().expect("PKCS#8");
        let dir = std::env::temp_dir().join(format!(
            "chatd-push-keys-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).expect("key directory");
        let service_account = dir.join("service-account.json");
        let account = json!({
            "type": "service_account",
            "project_id": FCM_PROJECT,
            "private_key_id": "0123456789abcdef",
            "private_key": pem("PRIVATE KEY", rsa_der.as_ref()),
            "client_email": FCM_CLIENT_EMAIL,
            "token_uri": format!("{}/token", fcm.url),
        });
        std::fs::write(&service_account, account.to_string()).expect("service account");
        let apns_key = dir.join("AuthKey.p8");
        std::fs::write(&apns_key, pem("PRIVATE KEY", ec_der.as_ref())).expect("p8");
        Credentials {
            dir,
            service_account,
            apns_key,
            rsa_public: rsa.public_key().as_ref().to_vec(),
            ec_public: ec.public_key().as_ref().to_vec(),
        }
    }

    /// chatd's push settings for these stand-ins.
    pub fn settings(&self, fcm: &FakeProvider, apns: &FakeProvider) -> Vec<(String, String)> {
        vec![
            (
                "CHAT_FCM_CREDENTIALS".into(),
                self.service_account.display().to_string(),
            ),
            ("CHAT_FCM_BASE_URL".into(), fcm.url.clone()),
            (
                "CHAT_APNS_KEY_FILE".into(),
                self.apns_key.display().to_string(),
            ),
            ("CHAT_APNS_KEY_ID".into(), APNS_KEY_ID.into()),
            ("CHAT_APNS_TEAM_ID".into(), APNS_TEAM_ID.into()),
            ("CHAT_APNS_TOPIC".into(), APNS_TOPIC.into()),
            ("CHAT_APNS_BASE_URL".into(), apns.url.clone()),
            ("CHAT_PUSH_RETRY_BASE_MS".into(), "100".into()),
        ]
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JWT's header and claims, after checking its signature with `verify`.
pub fn verified_jwt(
    jwt: &str,
    algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
    public_key: &[u8],
) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {jwt}");
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
    let signed = format!("{}.{}", parts[0], parts[1]);
    aws_lc_rs::signature::UnparsedPublicKey::new(algorithm, public_key)
        .verify(signed.as_bytes(), &signature)
        .expect("the JWT's signature verifies with the public key");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}
