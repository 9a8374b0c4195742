//! Push notifications (`make bench`): 1,000 offline users each get a message from an admin; how
//! long after the commit (the event's `recorded_at`) each push request reaches the provider,
//! measured at local stand-ins for FCM (half the devices) and APNs over HTTP/2 (the other half),
//! p50 and p99, on SQLite and on MySQL with Redis.
//!
//! Sizes: `CHAT_BENCH_PUSH_USERS` (default 1000), `CHAT_BENCH_PUSH_RATE` (admin messages per
//! second, default 200). MySQL: `CHAT_BENCH_MYSQL_URL` or `CHAT_TEST_MYSQL_URL`.

mod support;

#[path = "../tests/api/push/fake.rs"]
mod fake;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chatd::commands::Intent;
use chatd::config::Config;
use chatd::push::devices::{Owner, register};
use chatd::push::{Platform, Provider};
use chatd::startup::Application;
use events::{ConversationCommand, ConversationEvent, NewMessage, Role};
use support::*;

async fn bench(name: &str, database_url: &str, redis_url: Option<String>) -> anyhow::Result<()> {
    let users = env_usize("CHAT_BENCH_PUSH_USERS", 1000);
    let rate = env_usize("CHAT_BENCH_PUSH_RATE", 200).max(1);
    let fcm = fake::FakeProvider::start().await;
    let apns = fake::FakeProvider::start().await;
    let keys = fake::Credentials::generate(&fcm);
    let push_settings = keys.settings(&fcm, &apns);
    let data_dir = std::env::temp_dir().join(format!("chatd-bench-push-{}", std::process::id()));
    let prefix = format!("chatd-bench-push-{}", std::process::id());
    let config = Config::from_lookup(|key| match key {
        "CHAT_DATABASE_URL" => Some(database_url.to_string()),
        "CHAT_REDIS_URL" => redis_url.clone(),
        "CHAT_REDIS_PREFIX" => Some(prefix.clone()),
        "CHAT_PORT" => Some("0".into()),
        "CHAT_DATA_DIR" => Some(data_dir.display().to_string()),
        "CHAT_APP_SECRET" => Some("bench-secret".into()),
        "CHAT_DB_MAX_CONNECTIONS" => Some("32".into()),
        _ => push_settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone()),
    })?;
    let app = Application::build(&config).await?;
    let state = app.state().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    // Each user: one device, one conversation (their own message pushes nothing: unassigned).
    let run = u64::from(std::process::id()) * 100_000;
    let mut conversations = Vec::with_capacity(users);
    for n in 0..users as u64 {
        let user = actor(run + n + 1, Role::User);
        let (platform, provider, token) = if n % 2 == 0 {
            (Platform::Android, Provider::Fcm, format!("bench-fcm-{n}"))
        } else {
            (Platform::Ios, Provider::Apns, format!("{:064x}", run + n))
        };
        register(
            &state.store,
            Owner {
                role: Role::User,
                user_id: user.id,
            },
            &token,
            platform,
            provider,
            10,
        )
        .await?;
        let opened = state
            .commands
            .execute(
                Intent::OpenOrContinue {
                    actor: user.clone(),
                    message: Some(NewMessage::text("my parcel has not arrived")),
                },
                metadata(&user),
            )
            .await?;
        conversations.push(opened.conversation_id);
    }

    // An admin answers each at a steady rate.
    let admin = actor(run, Role::Admin);
    let started = Instant::now();
    let mut senders = Vec::new();
    for (n, conversation) in conversations.iter().copied().enumerate() {
        let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
        let (commands, admin) = (state.commands.clone(), admin.clone());
        senders.push(tokio::spawn(async move {
            tokio::time::sleep_until(due.into()).await;
            commands
                .execute(
                    Intent::On(
                        conversation,
                        ConversationCommand::SendMessage {
                            actor: admin.clone(),
                            message: NewMessage::text("It is on its way and arrives tomorrow."),
                        },
                    ),
                    metadata(&admin),
                )
                .await
        }));
    }
    let mut sent: HashMap<u64, i64> = HashMap::new();
    for sender in senders {
        let committed = sender.await??;
        for event in &committed.events {
            if let Ok(ConversationEvent::MessageSent { message_id, .. }) = event.decode() {
                sent.insert(message_id, event.recorded_at_micros);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while fcm.pushes().len() + apns.pushes().len() < users && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::new();
    for push in fcm.pushes().iter().chain(apns.pushes().iter()) {
        let body = push.json();
        let id = body["message_id"].as_u64().or_else(|| {
            body["message"]["data"]["message_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
        });
        if let Some(recorded_at) = id.and_then(|id| sent.get(&id)) {
            let micros = u64::try_from(push.at_micros - recorded_at).unwrap_or(0);
            latencies.push(Duration::from_micros(micros));
        }
    }
    latencies.sort();
    println!(
        "push [{name}]: {} of {users} offline users pushed ({} FCM, {} APNs) at {rate} msg/s; \
         commit to provider p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        fcm.pushes().len(),
        apns.pushes().len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    let _ = stop.send(());
    server.await??;
    let _ = std::fs::remove_dir_all(&data_dir);
    if latencies.len() < users {
        anyhow::bail!("only {} of {users} pushes arrived", latencies.len());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sqlite = ScratchSqlite::new("push");
    bench("sqlite", &sqlite.url, None).await?;
    let redis = std::env::var("CHAT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_string());
    let mysql = ScratchMysql::new("push").await?;
    let result = bench("mysql + redis", &mysql.url, Some(redis)).await;
    mysql.drop().await?;
    result
}
