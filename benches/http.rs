//! The REST API under load (`make bench`): 64 concurrent clients, each signing every request
//! like the iOS app, against the real server over real HTTP; on SQLite and on MySQL with Redis.
//!
//! Reports POST /api/chat/messages throughput with p50/p99 latency, GET /api/chat/messages
//! (50 messages) throughput, and POST /api/chat/upload of 1 MiB files (uploads/s and MiB/s). Rate limits are raised through configuration for the run.
//! Sizes: `CHAT_BENCH_HTTP_SECONDS` (per phase, default 10). MySQL: `CHAT_BENCH_MYSQL_URL` or
//! `CHAT_TEST_MYSQL_URL`; Redis: `CHAT_TEST_REDIS_URL`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

use chatd::auth::{Session, sign};
use chatd::config::Config;
use chatd::startup::Application;
use events::Role;

const CLIENTS: usize = 64;
const SECRET: &str = "bench-app-secret";

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<u16> {
        let body = body.unwrap_or_default();
        let timestamp = chrono::Utc::now().timestamp_millis();
        let signature = sign(SECRET, timestamp, method.as_str(), path, body.as_bytes());
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("X-Timestamp", timestamp.to_string())
            .header("X-Signature", signature);
        if !body.is_empty() {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        response.bytes().await?;
        Ok(status)
    }
}

const BOUNDARY: &str = "chatd-bench-boundary";
const UPLOAD_BYTES: usize = 1024 * 1024;
/// Concurrent uploaders (each upload is held in memory up to the limit on the server).
const UPLOADERS: usize = 16;

impl Client {
    /// A signed multipart upload of `file` into `conversation`.
    async fn upload(&self, conversation: u64, file: &[u8]) -> anyhow::Result<u16> {
        let mut body = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"conversation_id\"\r\n\r\n{conversation}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"message_type\"\r\n\r\nfile\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"load.txt\"\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(file);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let timestamp = chrono::Utc::now().timestamp_millis();
        let signature = sign(SECRET, timestamp, "POST", "/api/chat/upload", &body);
        let response = self
            .http
            .post(format!("{}/api/chat/upload", self.base))
            .bearer_auth(&self.token)
            .header("X-Timestamp", timestamp.to_string())
            .header("X-Signature", signature)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        response.bytes().await?;
        Ok(status)
    }
}

/// Every client repeats `request` for `seconds`; returns the latencies of the successful ones.
async fn phase<F, Fut>(
    clients: &[Arc<Client>],
    seconds: u64,
    request: F,
) -> anyhow::Result<(Vec<Duration>, usize)>
where
    F: Fn(Arc<Client>, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<u16>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for client in clients {
        let client = client.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            let mut n = 0;
            while Instant::now() < deadline {
                let started = Instant::now();
                match request(client.clone(), n).await {
                    Ok(status) if status < 300 => latencies.push(started.elapsed()),
                    _ => failures += 1,
                }
                n += 1;
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await?;
        latencies.extend(l);
        failures += f;
    }
    latencies.sort();
    Ok((latencies, failures))
}

async fn bench(name: &str, database_url: &str, redis_url: Option<String>) -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("CHAT_BENCH_HTTP_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let data_dir = std::env::temp_dir().join(format!("chatd-bench-http-{}", std::process::id()));
    let config = Config::from_lookup(|key| match key {
        "CHAT_DATABASE_URL" => Some(database_url.to_string()),
        "CHAT_REDIS_URL" => redis_url.clone(),
        "CHAT_PORT" => Some("0".into()),
        "CHAT_DATA_DIR" => Some(data_dir.display().to_string()),
        "CHAT_APP_SECRET" => Some(SECRET.into()),
        "CHAT_LIMIT_MESSAGES_PER_MIN" => Some("1000000000".into()),
        "CHAT_LIMIT_UPLOADS_PER_MIN" => Some("1000000000".into()),
        "CHAT_DB_MAX_CONNECTIONS" => Some("32".into()),
        _ => None,
    })?;
    let app = Application::build(&config).await?;
    let base = format!("http://{}", app.local_addr()?);
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let run = std::process::id() as u64 * 1000;
    let mut clients = Vec::new();
    for n in 0..CLIENTS as u64 {
        let session = Session {
            user_id: run + n + 1,
            role: Role::User,
            identifier: format!("bench_user_{n}"),
        };
        let token = state
            .auth
            .create_session(&session, Duration::from_secs(3600))
            .await?;
        clients.push(Arc::new(Client {
            http: http.clone(),
            base: base.clone(),
            token,
        }));
    }
    println!("{name}:");

    let started = Instant::now();
    let (latencies, failures) = phase(&clients, seconds, |client: Arc<Client>, n| async move {
        let body = format!(
            r#"{{"message":"load message {n}","client_msg_id":"bench-{n}-{}"}}"#,
            client.token.len() + n
        );
        client
            .call(reqwest::Method::POST, "/api/chat/messages", Some(body))
            .await
    })
    .await?;
    println!(
        "  POST /api/chat/messages, 64 clients   {:>7.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} failed)",
        latencies.len() as f64 / started.elapsed().as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        failures
    );

    let started = Instant::now();
    let (latencies, failures) = phase(&clients, seconds, |client: Arc<Client>, _| async move {
        client
            .call(reqwest::Method::GET, "/api/chat/messages?limit=50", None)
            .await
    })
    .await?;
    println!(
        "  GET /api/chat/messages (50), 64 clients {:>5.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} failed)",
        latencies.len() as f64 / started.elapsed().as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        failures
    );

    // Each uploader owns a conversation (opened by a first message), then uploads 1 MiB files.
    let mut uploaders = Vec::new();
    for client in clients.iter().take(UPLOADERS) {
        let conversation = open_conversation(
            &client.http,
            &client.base,
            SECRET,
            &client.token,
            "about to upload",
        )
        .await?;
        uploaders.push((client.clone(), conversation));
    }
    let file: Arc<Vec<u8>> = Arc::new(
        (0..UPLOAD_BYTES)
            .map(|i| {
                if i % 64 == 63 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect(),
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (client, conversation) in uploaders {
        let file = file.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            while Instant::now() < deadline {
                let at = Instant::now();
                match client.upload(conversation, &file).await {
                    Ok(201) => latencies.push(at.elapsed()),
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = 0;
    for task in tasks {
        let (l, f) = task.await?;
        latencies.extend(l);
        failures += f;
    }
    latencies.sort();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "  POST /api/chat/upload (1 MiB), {UPLOADERS} clients {:>5.1} uploads/s {:>6.1} MiB/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} failed)",
        latencies.len() as f64 / elapsed,
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        failures
    );

    let _ = stop.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sqlite = ScratchSqlite::new("http");
    bench("sqlite", &sqlite.url, None).await?;
    let redis =
        std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let mysql = ScratchMysql::new("http").await?;
    let result = bench("mysql + redis", &mysql.url, Some(redis)).await;
    mysql.drop().await?;
    result
}
