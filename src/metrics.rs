//! Process metrics: owns the one Prometheus recorder of the process and the names and labels of
//! every chatd metric. Callers record through the helpers here, never with `metrics::counter!`
//! and a name of their own, so names stay in one place and labels stay bounded.
//!
//! Labels must never carry client-controlled free text (raw paths, user ids, message content):
//! each distinct label value is a new time series kept for the life of the process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const MESSAGES_ACCEPTED: &str = "chatd_messages_accepted_total";
const RATE_LIMIT_REJECTIONS: &str = "chatd_rate_limit_rejections_total";
const HTTP_REQUESTS: &str = "chatd_http_requests_total";
const HTTP_REQUEST_DURATION: &str = "chatd_http_request_duration_seconds";
const SOCKETS_CONNECTED: &str = "chatd_sockets_connected";
const UPLOADS: &str = "chatd_uploads_total";
const UPLOAD_BYTES: &str = "chatd_upload_bytes_total";
const SOCKET_OVERFLOWS: &str = "chatd_socket_overflows_total";
const SOCKET_EVENTS_IN: &str = "chatd_socket_events_in_total";
const SOCKET_EVENTS_OUT: &str = "chatd_socket_events_out_total";
const SOCKET_EVENT_DURATION: &str = "chatd_socket_event_duration_seconds";
const BROADCAST_LAG: &str = "chatd_broadcast_lag_seconds";
const PUSHES: &str = "chatd_push_total";
const BUILD_INFO: &str = "chatd_build_info";

/// The label values a series is shown with at zero before anything happened, so that a rate
/// over it is defined from the start.
const TRANSPORTS: [&str; 2] = ["rest", "socket"];
const LIMIT_KINDS: [&str; 5] = ["messages", "uploads", "typing", "joins", "searches"];
/// The events a client may send, as the metrics label them (anything else is `unknown`).
pub const CLIENT_EVENTS: [&str; 9] = [
    "join_conversation",
    "leave_conversation",
    "send_message",
    "typing_start",
    "typing_stop",
    "mark_read",
    "set_presence",
    "edit_message",
    "delete_message",
];
/// The events the server emits.
pub const SERVER_EVENTS: [&str; 10] = [
    "new_message",
    "message_updated",
    "message_deleted",
    "typing_indicator",
    "message_read",
    "conversation_status",
    "conversation_assigned",
    "presence",
    "server_shutdown",
    "error",
];
const PUSH_PROVIDERS: [&str; 2] = ["fcm", "apns"];
const PUSH_OUTCOMES: [&str; 4] = ["sent", "invalid_token", "given_up", "failed"];

/// Upper bounds, in seconds, of latency histograms: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into buckets when nobody scrapes `/metrics`
/// (a scrape folds them too); without it unscraped samples would pile up in memory.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The handle of the process's recorder, installing it on first use. Idempotent: tests that
/// start several servers in one process share one recorder.
pub fn handle() -> PrometheusHandle {
    installed().clone()
}

/// The current metrics in the Prometheus text exposition format (version 0.0.4), with the
/// process's own (`process_*`) after chatd's.
pub fn render() -> String {
    let mut text = installed().render();
    text.push_str(&process::render());
    text
}

/// A chat message was accepted (committed) through `transport` ("rest", "socket", ...).
pub fn message_accepted(transport: &str) {
    installed();
    ::metrics::counter!(MESSAGES_ACCEPTED, "transport" => transport.to_owned()).increment(1);
}

/// A request or event was refused by a rate limit of `kind`.
pub fn rate_limited(kind: &str) {
    installed();
    ::metrics::counter!(RATE_LIMIT_REJECTIONS, "kind" => kind.to_owned()).increment(1);
}

/// One HTTP request finished. `route` must be a route template (`/x/{id}`), never a raw path.
pub fn http_request(route: &str, method: &str, status: u16, seconds: f64) {
    installed();
    let labels = [
        ("route", route.to_owned()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    ::metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    ::metrics::histogram!(HTTP_REQUEST_DURATION, &labels).record(seconds);
}

/// Sockets connected to this node went up or down by `delta`.
pub fn socket_connected(delta: i64) {
    installed();
    ::metrics::gauge!(SOCKETS_CONNECTED).increment(delta as f64);
}

/// An upload was stored.
pub fn upload_stored(bytes: u64) {
    installed();
    ::metrics::counter!(UPLOADS).increment(1);
    ::metrics::counter!(UPLOAD_BYTES).increment(bytes);
}

/// A socket stopped reading, filled its outgoing buffer and is being disconnected.
pub fn socket_overflowed() {
    installed();
    ::metrics::counter!(SOCKET_OVERFLOWS).increment(1);
}

/// A Socket.IO event arrived from a client (`event` is one of the known names or "unknown").
pub fn socket_event_in(event: &'static str) {
    installed();
    ::metrics::counter!(SOCKET_EVENTS_IN, "event" => event).increment(1);
}

/// A client event was answered, `seconds` after it arrived.
pub fn socket_event_handled(event: &'static str, seconds: f64) {
    installed();
    ::metrics::histogram!(SOCKET_EVENT_DURATION, "event" => event).record(seconds);
}

/// A Socket.IO event was emitted to clients.
pub fn socket_event_out(event: &str) {
    installed();
    ::metrics::counter!(SOCKET_EVENTS_OUT, "event" => event.to_owned()).increment(1);
}

/// A push was handed to `provider` with this `outcome` (`sent`, `invalid_token`, `given_up`,
/// `failed`).
pub fn push_outcome(provider: &'static str, outcome: &'static str) {
    installed();
    ::metrics::counter!(PUSHES, "provider" => provider, "outcome" => outcome).increment(1);
}

/// Seconds from an event's commit to its broadcast.
pub fn broadcast_lag(seconds: f64) {
    installed();
    ::metrics::histogram!(BROADCAST_LAG).record(seconds);
}

fn installed() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(install)
}

fn install() -> PrometheusHandle {
    let builder = PrometheusBuilder::new();
    // Any histogram in seconds is a latency: give it real buckets (others render as summaries).
    let builder =
        match builder.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS) {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "latency buckets refused; histograms render as summaries");
                PrometheusBuilder::new()
            }
        };
    let handle = match builder.install_recorder() {
        Ok(handle) => handle,
        Err(error) => {
            // Another recorder owns the process (a library or a test installed one first):
            // keep serving /metrics from a recorder of our own rather than failing start-up.
            tracing::warn!(%error, "a metrics recorder was already installed; /metrics stays empty");
            PrometheusBuilder::new().build_recorder().handle()
        }
    };
    describe();
    register_at_zero();
    spawn_upkeep(handle.clone());
    handle
}

/// Every family with the label values it can take, at zero (HTTP requests excepted: their
/// routes appear with their first request).
fn register_at_zero() {
    for transport in TRANSPORTS {
        ::metrics::counter!(MESSAGES_ACCEPTED, "transport" => transport).absolute(0);
    }
    for kind in LIMIT_KINDS {
        ::metrics::counter!(RATE_LIMIT_REJECTIONS, "kind" => kind).absolute(0);
    }
    for event in CLIENT_EVENTS.into_iter().chain(["unknown"]) {
        ::metrics::counter!(SOCKET_EVENTS_IN, "event" => event).absolute(0);
    }
    for event in SERVER_EVENTS {
        ::metrics::counter!(SOCKET_EVENTS_OUT, "event" => event).absolute(0);
    }
    for provider in PUSH_PROVIDERS {
        for outcome in PUSH_OUTCOMES {
            ::metrics::counter!(PUSHES, "provider" => provider, "outcome" => outcome).absolute(0);
        }
    }
    ::metrics::counter!(UPLOADS).absolute(0);
    ::metrics::counter!(UPLOAD_BYTES).absolute(0);
    ::metrics::counter!(SOCKET_OVERFLOWS).absolute(0);
    ::metrics::gauge!(SOCKETS_CONNECTED).increment(0.0);
    ::metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "git_sha" => env!("CHATD_GIT_SHA"),
    )
    .set(1.0);
}

fn describe() {
    ::metrics::describe_counter!(MESSAGES_ACCEPTED, "Chat messages accepted, by transport.");
    ::metrics::describe_counter!(
        RATE_LIMIT_REJECTIONS,
        "Requests or events refused by a rate limit, by kind."
    );
    ::metrics::describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests finished, by route template, method and status."
    );
    ::metrics::describe_histogram!(
        HTTP_REQUEST_DURATION,
        ::metrics::Unit::Seconds,
        "HTTP request latency, by route template, method and status."
    );
    ::metrics::describe_gauge!(
        SOCKETS_CONNECTED,
        "Socket.IO connections open on this node."
    );
    ::metrics::describe_counter!(UPLOADS, "Uploads stored.");
    ::metrics::describe_counter!(
        UPLOAD_BYTES,
        ::metrics::Unit::Bytes,
        "Bytes of uploads stored."
    );
    ::metrics::describe_counter!(
        SOCKET_OVERFLOWS,
        "Sockets disconnected because they stopped reading and their outgoing buffer filled."
    );
    ::metrics::describe_counter!(
        SOCKET_EVENTS_IN,
        "Socket.IO events received from clients, by event (unknown names count as unknown)."
    );
    ::metrics::describe_counter!(
        SOCKET_EVENTS_OUT,
        "Socket.IO events emitted to clients, by event."
    );
    ::metrics::describe_histogram!(
        SOCKET_EVENT_DURATION,
        ::metrics::Unit::Seconds,
        "Time from a client event's arrival to its answer, by event."
    );
    ::metrics::describe_histogram!(
        BROADCAST_LAG,
        ::metrics::Unit::Seconds,
        "Time from an event's commit to its broadcast on this node."
    );
    ::metrics::describe_counter!(
        PUSHES,
        "Push notifications handed to a provider, by outcome."
    );
    ::metrics::describe_gauge!(
        BUILD_INFO,
        "The running build: always 1, its version and commit as labels."
    );
}

/// A plain thread, so upkeep runs whether or not a Tokio runtime exists, and outlives any one
/// runtime (tests start and drop many).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start metrics upkeep; histograms fold only on scrape");
    }
}

/// The process's own figures in the names Prometheus' client libraries use, read from `/proc`
/// at each scrape (nothing elsewhere: the families are left out).
mod process {
    use std::fmt::Write;

    /// Clock ticks per second in `/proc/<pid>/stat` (USER_HZ, fixed at 100 in Linux's ABI).
    const TICKS_PER_SECOND: f64 = 100.0;

    pub(super) fn render() -> String {
        let mut text = String::new();
        let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
            return text;
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
            if let Some(value) = value {
                let _ = write!(
                    text,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
                );
            }
        };
        family(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            field(14)
                .zip(field(15))
                .map(|(user, system)| (user + system) / TICKS_PER_SECOND),
        );
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
                .map(|v| v * 1024.0)
        };
        family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            kib("VmRSS:"),
        );
        family(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            kib("VmSize:"),
        );
        let open = std::fs::read_dir("/proc/self/fd").map(|dir| dir.count() as f64);
        family(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            open.ok(),
        );
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let max_fds = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok());
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max_fds,
        );
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
            stat.lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        family(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            boot.zip(field(22))
                .map(|(boot, ticks)| boot + ticks / TICKS_PER_SECOND),
        );
        text
    }
}
