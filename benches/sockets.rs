//! Socket.IO under load (`make bench`), against a real `chatd` process on MariaDB and Redis:
//!
//! - 1,000 connected clients in 500 conversations sending 2,000 messages/s in all: p50/p99 from
//!   send to receipt by the other side (the user's second device by default; an admin socket with
//!   `CHAT_BENCH_SOCKET_OTHER_SIDE=admin`, where every message also fans out to all admin
//!   sockets);
//! - the highest rate (stepping up) at which that p99 stays under 100 ms;
//! - slow readers: 200 admin sockets that never read (each is sent every message) while the
//!   pairs chat at 200 msg/s for 30 s: how many the server disconnects, its peak RSS meanwhile,
//!   and the chatting sockets' p99 against the pairs alone (before and after, averaged), and
//!   beside 200 admin sockets that read;
//! - memory per idle connection with 10,000 idle sockets (the server's RSS before and after),
//!   and whether it grows while they are held (`CHAT_BENCH_IDLE_HOLD_SECONDS`, 600).
//!
//! The load client speaks Socket.IO v5 over websocket itself (a few lines of protocol), so that
//! thousands of clients fit in one process. `make bench` raises the file descriptor limit.
//! Sizes: `CHAT_BENCH_SOCKET_PAIRS` (500), `CHAT_BENCH_SOCKET_RATE` (2000),
//! `CHAT_BENCH_IDLE_SOCKETS` (10000), `CHAT_BENCH_SOCKET_SECONDS` (5 per step),
//! `CHAT_BENCH_SOCKET_MAX_RATE` (40000: where stepping up stops), `CHAT_BENCH_SLOW_SOCKETS` (200),
//! `CHAT_BENCH_SLOW_RATE` (200), `CHAT_BENCH_SLOW_SECONDS` (30), `CHAT_BENCH_IDLE_HOLD_SECONDS`
//! (600).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::*;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "bench-app-secret";

/// Server events a client received: (event name, data).
type ServerEvents = mpsc::UnboundedReceiver<(String, Value)>;

/// One Socket.IO client over a websocket: emits with acks, and a channel of server events.
struct Client {
    outgoing: mpsc::UnboundedSender<String>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_ack: AtomicU64,
    /// The reading and writing tasks: they answer pings, so they would hold the connection
    /// open after the client is dropped.
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Client {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Client {
    /// Connects and authenticates; server events arrive on the returned receiver.
    async fn connect(
        base: &str,
        token: &str,
    ) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<(String, Value)>)> {
        let url = format!(
            "{}/socket.io/?EIO=4&transport=websocket",
            base.replace("http://", "ws://")
        );
        let (stream, _) = tokio_tungstenite::connect_async(url).await?;
        let (mut sink, mut source) = stream.split();
        // Engine.IO open packet, then the Socket.IO connect with the token.
        match source.next().await {
            Some(Ok(Message::Text(open))) if open.starts_with('0') => {}
            other => anyhow::bail!("no engine.io open packet: {other:?}"),
        }
        sink.send(Message::Text(
            format!("40{}", json!({"token": token})).into(),
        ))
        .await?;
        loop {
            match source.next().await {
                Some(Ok(Message::Text(ping))) if ping.as_str() == "2" => {
                    sink.send(Message::Text("3".into())).await?;
                }
                Some(Ok(Message::Text(connected))) if connected.starts_with("40") => break,
                other => anyhow::bail!("socket.io connect refused: {other:?}"),
            }
        }
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<String>();
        let (events, received) = mpsc::unbounded_channel();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let writing = tokio::spawn(async move {
            while let Some(text) = to_send.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
        });
        let acks = pending.clone();
        let pong = outgoing.clone();
        let reading = tokio::spawn(async move {
            while let Some(Ok(message)) = source.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let text = text.as_str();
                if text == "2" {
                    let _ = pong.send("3".into());
                } else if let Some(rest) = text.strip_prefix("43") {
                    let digits = rest.chars().take_while(char::is_ascii_digit).count();
                    let (id, body) = rest.split_at(digits);
                    if let (Ok(id), Ok(Value::Array(mut args))) =
                        (id.parse::<u64>(), serde_json::from_str(body))
                        && let Some(reply) = acks.lock().await.remove(&id)
                    {
                        let _ = reply.send(args.pop().unwrap_or_default());
                    }
                } else if let Some(rest) = text.strip_prefix("42")
                    && let Ok(Value::Array(args)) = serde_json::from_str(rest)
                    && let [Value::String(name), data, ..] = args.as_slice()
                {
                    let _ = events.send((name.clone(), data.clone()));
                }
            }
        });
        Ok((
            Client {
                outgoing,
                pending,
                next_ack: AtomicU64::new(1),
                tasks: [reading, writing],
            },
            received,
        ))
    }

    async fn call(&self, event: &str, data: Value) -> anyhow::Result<Value> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.pending.lock().await.insert(id, reply);
        self.outgoing
            .send(format!("42{id}{}", json!([event, data])))?;
        Ok(tokio::time::timeout(Duration::from_secs(60), answer).await??)
    }

    /// Joins the conversation's room. A join refused while the read tables catch up has not
    /// joined, so it is asked again; any other refusal ends the benchmark.
    async fn join(&self, conversation: u64) -> anyhow::Result<()> {
        for _ in 0..100 {
            let ack = self
                .call(
                    "join_conversation",
                    json!({"conversation_id": conversation}),
                )
                .await?;
            if ack["status"] == "success" {
                return Ok(());
            }
            if ack["error_code"] != "UNAVAILABLE" {
                anyhow::bail!("join_conversation {conversation}: {ack}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("join_conversation {conversation}: still UNAVAILABLE after 100 attempts")
    }

    fn emit(&self, event: &str, data: Value) {
        let _ = self.outgoing.send(format!("42{}", json!([event, data])));
    }
}

/// The server as its own process, so its memory can be read.
struct Server {
    process: std::process::Child,
    base: String,
}

impl Server {
    async fn start(database_url: &str, redis_url: &str) -> anyhow::Result<Server> {
        let port = 40_000 + (std::process::id() % 20_000) as u16;
        let data_dir =
            std::env::temp_dir().join(format!("chatd-bench-sockets-{}", std::process::id()));
        let process = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
            .arg("serve")
            .env("CHAT_DATABASE_URL", database_url)
            .env("CHAT_REDIS_URL", redis_url)
            .env(
                "CHAT_REDIS_PREFIX",
                format!("chatd-bench-{}", std::process::id()),
            )
            .env("CHAT_APP_SECRET", SECRET)
            .env("CHAT_DATA_DIR", &data_dir)
            .env("CHAT_PORT", port.to_string())
            .env("CHAT_LIMIT_MESSAGES_PER_MIN", "1000000")
            .env("CHAT_LIMIT_JOINS_PER_MIN", "1000000")
            .env("CHAT_DB_MAX_CONNECTIONS", "32")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let server = Server {
            process,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        for _ in 0..400 {
            if let Ok(response) = http.get(format!("{}/readyz", server.base)).send().await
                && response.status() == 200
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.stop();
        anyhow::bail!("chatd did not become ready")
    }

    /// The server's count of sockets it disconnected for not reading.
    async fn overflows(&self) -> u64 {
        let text = match reqwest::get(format!("{}/metrics", self.base)).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => return 0,
        };
        text.lines()
            .filter(|line| line.starts_with("chatd_socket_overflows_total"))
            .filter_map(|line| line.split_whitespace().last())
            .filter_map(|value| value.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        rss_of(self.process.id())
    }

    fn stop(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Stores a session in Redis as the login system would; returns its token.
async fn session(
    redis: &mut redis::aio::MultiplexedConnection,
    id: u64,
    role: &str,
) -> anyhow::Result<String> {
    let token = format!(
        "{:064x}",
        (std::process::id() as u128) << 64 | (id as u128) << 8 | role.len() as u128
    );
    let session = json!({"user_id": id, "role": role, "identifier": format!("{role}_{id}")});
    redis::cmd("SET")
        .arg(format!("chat:session:{token}"))
        .arg(session.to_string())
        .arg("EX")
        .arg(3600)
        .query_async::<()>(redis)
        .await?;
    Ok(token)
}

/// Two clients in one conversation: the user's socket and the other side's.
struct Pair {
    first: Arc<Client>,
    second: Arc<Client>,
    conversation: u64,
}

/// Listens on every client for `new_message`; each latency (send to receipt) goes to the channel.
fn listen(
    receivers: Vec<(&'static str, u64, ServerEvents)>,
    epoch: Instant,
) -> mpsc::UnboundedReceiver<Duration> {
    let (latency_tx, latency_rx) = mpsc::unbounded_channel();
    for (side, conversation, mut receiver) in receivers {
        let latency_tx = latency_tx.clone();
        tokio::spawn(async move {
            while let Some((name, data)) = receiver.recv().await {
                // Only arrivals on the other side of the same conversation count (admin sockets
                // also get every other conversation's messages). Content: "t=<µs>;s=<side>".
                let Some((sent, from)) = data["content"]
                    .as_str()
                    .and_then(|c| c.strip_prefix("t="))
                    .and_then(|c| c.split_once(";s="))
                else {
                    continue;
                };
                if name == "new_message"
                    && from != side
                    && data["conversation_id"].as_u64() == Some(conversation)
                    && let Ok(sent) = sent.parse::<u64>()
                {
                    let now = epoch.elapsed().as_micros() as u64;
                    let _ = latency_tx.send(Duration::from_micros(now.saturating_sub(sent)));
                }
            }
        });
    }
    latency_rx
}

/// Sends at `rate` messages/s for `seconds`, spread over the pairs and alternating sides; returns
/// the latencies of the messages that arrived at the other side, and how many were sent.
async fn run_rate(
    pairs: &[Pair],
    latencies: &mut mpsc::UnboundedReceiver<Duration>,
    rate: usize,
    seconds: u64,
    epoch: Instant,
) -> (Vec<Duration>, usize) {
    while latencies.try_recv().is_ok() {}
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_tick = rate / 100;
    let total = per_tick * 100 * seconds as usize;
    let mut n = 0;
    while n < total {
        ticker.tick().await;
        for _ in 0..per_tick {
            let pair = &pairs[n % pairs.len()];
            let (sender, side) = if (n / pairs.len()).is_multiple_of(2) {
                (&pair.first, "a")
            } else {
                (&pair.second, "b")
            };
            let content = format!("t={};s={side}", epoch.elapsed().as_micros());
            sender.emit(
                "send_message",
                json!({"conversation_id": pair.conversation, "message_type": "text", "content": content}),
            );
            n += 1;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut collected = Vec::new();
    while let Ok(latency) = latencies.try_recv() {
        collected.push(latency);
    }
    collected.sort();
    (collected, total)
}

async fn bench(database_url: &str, redis_url: &str) -> anyhow::Result<()> {
    let pairs_wanted = env_usize("CHAT_BENCH_SOCKET_PAIRS", 500);
    let rate = env_usize("CHAT_BENCH_SOCKET_RATE", 2000);
    let seconds = env_usize("CHAT_BENCH_SOCKET_SECONDS", 5) as u64;
    let idle = env_usize("CHAT_BENCH_IDLE_SOCKETS", 10_000);
    let server = Server::start(database_url, redis_url).await?;
    let result = measure(&server, redis_url, pairs_wanted, rate, seconds, idle).await;
    server.stop();
    result
}

async fn measure(
    server: &Server,
    redis_url: &str,
    pairs_wanted: usize,
    rate: usize,
    seconds: u64,
    idle: usize,
) -> anyhow::Result<()> {
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let http = reqwest::Client::new();
    let base_id = std::process::id() as u64 * 100_000;
    println!("mysql + redis, chatd as its own process:");

    // The other side of each conversation: an admin (every admin socket is in the staff room, so
    // each message fans out to all of them), or by default the user's second device.
    let admins_answer = std::env::var("CHAT_BENCH_SOCKET_OTHER_SIDE").as_deref() == Ok("admin");
    let mut pairs = Vec::new();
    let mut receivers = Vec::new();
    for n in 0..pairs_wanted as u64 {
        let user_token = session(&mut redis, base_id + n + 1, "user").await?;
        let admin_token = session(&mut redis, base_id + n + 1, "admin").await?;
        let conversation =
            open_conversation(&http, &server.base, SECRET, &user_token, "hello").await?;
        let second_token = if admins_answer {
            &admin_token
        } else {
            &user_token
        };
        let (first, first_events) = Client::connect(&server.base, &user_token).await?;
        let (second, second_events) = Client::connect(&server.base, second_token).await?;
        for client in [&first, &second] {
            client.join(conversation).await?;
        }
        pairs.push(Pair {
            first: Arc::new(first),
            second: Arc::new(second),
            conversation,
        });
        receivers.push(("a", conversation, first_events));
        receivers.push(("b", conversation, second_events));
    }
    let other_side = if admins_answer {
        "an admin socket, which also gets every conversation's messages (staff room)"
    } else {
        "the same user's second device"
    };
    println!(
        "  {} clients connected in {} conversations; the other side of each is {other_side}",
        pairs.len() * 2,
        pairs.len(),
    );

    let epoch = Instant::now();
    let mut latencies = listen(receivers, epoch);
    let report = |rate: usize, (arrived, sent): &(Vec<Duration>, usize)| {
        println!(
            "  {rate:>5} msg/s for {} s: {} of {sent} delivered, send to receipt p50 {:.1} ms, p99 {:.1} ms",
            sent / rate.max(1),
            arrived.len(),
            percentile(arrived, 0.50),
            percentile(arrived, 0.99)
        );
    };
    let first = run_rate(&pairs, &mut latencies, rate, seconds, epoch).await;
    report(rate, &first);
    let mut sustained = (percentile(&first.0, 0.99) < 100.0).then_some(rate);
    let mut step = rate;
    let max_rate = env_usize("CHAT_BENCH_SOCKET_MAX_RATE", 40_000);
    while sustained == Some(step) && step < max_rate {
        step += rate / 2;
        let result = run_rate(&pairs, &mut latencies, step, seconds, epoch).await;
        report(step, &result);
        if percentile(&result.0, 0.99) < 100.0 && result.0.len() >= result.1 * 99 / 100 {
            sustained = Some(step);
        } else {
            break;
        }
    }
    match sustained {
        Some(rate) => println!("  highest rate with p99 under 100 ms: {rate} msg/s"),
        None => println!("  p99 is over 100 ms already at {rate} msg/s"),
    }

    // Slow readers: admin sockets (each gets every message through the staff room) that never
    // read. The chatting pairs run alone before and after them, so that drift over the run (the
    // tables growing, the machine's other work) does not count as their cost; a run beside as
    // many admin sockets that read shows what the same fan-out costs when it is read.
    let slow = env_usize("CHAT_BENCH_SLOW_SOCKETS", 200);
    let slow_rate = env_usize("CHAT_BENCH_SLOW_RATE", 200);
    let slow_seconds = env_usize("CHAT_BENCH_SLOW_SECONDS", 30) as u64;
    println!("  the pairs alone:");
    let alone_before = run_rate(&pairs, &mut latencies, slow_rate, slow_seconds, epoch).await;
    report(slow_rate, &alone_before);
    let mut readers = Vec::with_capacity(slow);
    for n in 0..slow as u64 {
        let token = session(&mut redis, base_id + 50_000 + n, "admin").await?;
        let (client, mut events) = Client::connect(&server.base, &token).await?;
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        readers.push(client);
    }
    println!("  beside {slow} admin sockets that read:");
    let with_readers = run_rate(&pairs, &mut latencies, slow_rate, slow_seconds, epoch).await;
    report(slow_rate, &with_readers);
    drop(readers);
    let mut slow_sockets = Vec::with_capacity(slow);
    for n in 0..slow as u64 {
        let token = session(&mut redis, base_id + 60_000 + n, "admin").await?;
        slow_sockets.push(connect_and_stop_reading(&server.base, &token).await?);
    }
    let overflows_before = server.overflows().await;
    let rss_before = server.rss_kib();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let sampling = {
        let peak = peak.clone();
        let pid = server.process.id();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_of(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    println!("  beside {slow} admin sockets that never read:");
    let with_slow = run_rate(&pairs, &mut latencies, slow_rate, slow_seconds, epoch).await;
    sampling.abort();
    let disconnected = server.overflows().await.saturating_sub(overflows_before);
    report(slow_rate, &with_slow);
    drop(slow_sockets);
    println!("  the pairs alone again:");
    let alone_after = run_rate(&pairs, &mut latencies, slow_rate, slow_seconds, epoch).await;
    report(slow_rate, &alone_after);
    let p99 = |run: &(Vec<Duration>, usize)| percentile(&run.0, 0.99);
    let alone = (p99(&alone_before) + p99(&alone_after)) / 2.0;
    let change = |p: f64| (p - alone) / alone.max(0.001) * 100.0;
    println!(
        "  {slow} admin sockets that never read, at {slow_rate} msg/s for {slow_seconds} s: \
         {disconnected} of them disconnected; server RSS {rss_before} KiB before, peak {} KiB; \
         the chatting sockets' p99 {:.1} ms against {alone:.1} ms alone (the mean of {:.1} ms \
         before and {:.1} ms after): {:+.1}% (beside {slow} that read: {:.1} ms, {:+.1}%)",
        peak.load(Ordering::Relaxed),
        p99(&with_slow),
        p99(&alone_before),
        p99(&alone_after),
        change(p99(&with_slow)),
        p99(&with_readers),
        change(p99(&with_readers)),
    );
    drop(pairs);

    if idle == 0 {
        return Ok(());
    }
    let before = server.rss_kib();
    let token = session(&mut redis, base_id + 99_999, "user").await?;
    let mut idle_clients = Vec::with_capacity(idle);
    let connect_started = Instant::now();
    for _ in 0..idle {
        idle_clients.push(Client::connect(&server.base, &token).await?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss_kib();
    println!(
        "  {idle} idle sockets (connected in {:.1} s): server RSS {} KiB -> {} KiB, {:.1} KiB per connection",
        connect_started.elapsed().as_secs_f64(),
        before,
        after,
        after.saturating_sub(before) as f64 / idle as f64
    );
    let hold = env_usize("CHAT_BENCH_IDLE_HOLD_SECONDS", 600) as u64;
    if hold > 0 {
        let mut samples = vec![after];
        let held = Instant::now();
        while held.elapsed() < Duration::from_secs(hold) {
            tokio::time::sleep(Duration::from_secs(hold.min(30))).await;
            samples.push(server.rss_kib());
        }
        println!(
            "  held {idle} idle sockets for {hold} s: server RSS {} KiB at the start, {} KiB at the end, \
             highest {} KiB",
            after,
            samples.last().copied().unwrap_or(after),
            samples.iter().max().copied().unwrap_or(after),
        );
    }
    drop(idle_clients);
    Ok(())
}

/// Resident memory of a process, in KiB.
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// A socket that completes the Socket.IO handshake and is then never read: what the server sends
/// it piles up in the kernel's buffers and then in the server's.
async fn connect_and_stop_reading(
    base: &str,
    token: &str,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.replace("http://", "ws://")
    );
    // A small receive buffer: the kernel holds little for it, so the server's side fills soon.
    let address = base
        .trim_start_matches("http://")
        .parse::<std::net::SocketAddr>()?;
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let tcp = socket.connect(address).await?;
    let (mut stream, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?;
    match stream.next().await {
        Some(Ok(Message::Text(open))) if open.starts_with('0') => {}
        other => anyhow::bail!("no engine.io open packet: {other:?}"),
    }
    stream
        .send(Message::Text(
            format!("40{}", json!({"token": token})).into(),
        ))
        .await?;
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) if text.starts_with("40") => return Ok(stream),
            Some(Ok(_)) => {}
            other => anyhow::bail!("no connect answer: {other:?}"),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let redis =
        std::env::var("CHAT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let mysql = ScratchMysql::new("sockets").await?;
    let result = bench(&mysql.url, &redis).await;
    mysql.drop().await?;
    result
}
