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

/// The current metrics in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    installed().render()
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
    ::metrics::gauge!("chatd_sockets_connected").increment(delta as f64);
}

/// An upload was stored.
pub fn upload_stored(bytes: u64) {
    installed();
    ::metrics::counter!("chatd_uploads_total").increment(1);
    ::metrics::counter!("chatd_upload_bytes_total").increment(bytes);
}

/// A socket stopped reading, filled its outgoing buffer and is being disconnected.
pub fn socket_overflowed() {
    installed();
    ::metrics::counter!("chatd_socket_overflows_total").increment(1);
}

/// A Socket.IO event arrived from a client (`event` is one of the known names or "unknown").
pub fn socket_event_in(event: &'static str) {
    installed();
    ::metrics::counter!("chatd_socket_events_in_total", "event" => event).increment(1);
}

/// A Socket.IO event was emitted to clients.
pub fn socket_event_out(event: &str) {
    installed();
    ::metrics::counter!("chatd_socket_events_out_total", "event" => event.to_owned()).increment(1);
}

/// Seconds from an event's commit to its broadcast.
pub fn broadcast_lag(seconds: f64) {
    installed();
    ::metrics::histogram!("chatd_broadcast_lag_seconds").record(seconds);
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
    spawn_upkeep(handle.clone());
    handle
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
