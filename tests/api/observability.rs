//! Request ids, request logs and metrics, through a small router built from the same middlewares
//! the server uses, over real HTTP.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::extract::Path;
use axum::routing::get;
use axum::{Extension, Router, middleware};
use chatd::http::observe::{
    ClientRequestId, RequestId, is_valid_request_id, metrics_route, request_id, track_metrics,
};
use chatd::telemetry::{self, LogFormat};
use serde_json::Value;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::support::quiet_global_logs;

fn app() -> Router {
    Router::new()
        .route("/x/{id}", get(show_x))
        .route("/metrics", get(metrics_route))
        .layer(middleware::from_fn(track_metrics))
        .layer(middleware::from_fn(request_id))
}

/// Logs twice (once in a nested span) and answers with the ids the middleware handed it: the
/// server's, then the client's (empty without one).
async fn show_x(
    Path(id): Path<String>,
    Extension(request_id): Extension<RequestId>,
    client_id: Option<Extension<ClientRequestId>>,
) -> String {
    tracing::info!(%id, "showing x");
    tracing::info_span!("lookup", step = 1).in_scope(|| tracing::info!("looked x up"));
    let client_id = client_id.map(|Extension(id)| id.as_str().to_string());
    format!("{request_id} {}", client_id.unwrap_or_default())
}

async fn spawn() -> String {
    quiet_global_logs();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app()).await });
    format!("http://{address}")
}

async fn get_with(base: &str, path: &str, request_id: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    request.send().await.expect("request")
}

fn response_id(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .expect("ascii header")
        .to_owned()
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_response_without_an_incoming_id_carries_a_generated_one() {
    let base = spawn().await;

    let first = get_with(&base, "/x/1", None).await;
    let second = get_with(&base, "/x/1", None).await;

    assert_eq!(first.status(), 200);
    let first_id = response_id(&first);
    let second_id = response_id(&second);
    assert!(is_generated(&first_id), "{first_id}");
    assert_ne!(first_id, second_id);
    assert_eq!(first.text().await.expect("body"), format!("{first_id} "));
}

#[tokio::test]
async fn a_clients_id_is_kept_beside_the_servers_own_never_in_its_place() {
    let base = spawn().await;
    // Shaped like a generated id: it must still not become one.
    let imitation = "0123456789abcdef0123456789abcdef";

    for client_id in ["client-42_a.b", imitation] {
        let response = get_with(&base, "/x/7", Some(client_id)).await;

        let id = response_id(&response);
        assert!(
            is_generated(&id) && id != client_id,
            "{client_id:?} gave {id:?}"
        );
        assert_eq!(
            response.text().await.expect("body"),
            format!("{id} {client_id}")
        );
    }
}

#[tokio::test]
async fn an_invalid_incoming_id_is_dropped() {
    let base = spawn().await;
    let too_long = "a".repeat(65);

    for bad in [too_long.as_str(), "has space", "semi;colon", "slash/x"] {
        let response = get_with(&base, "/x/1", Some(bad)).await;

        let id = response_id(&response);
        assert!(is_generated(&id), "{bad:?} gave {id:?}");
        assert_eq!(response.text().await.expect("body"), format!("{id} "));
    }
}

#[tokio::test]
async fn an_unmatched_request_still_gets_an_id() {
    let base = spawn().await;

    let response = get_with(&base, "/nowhere/else", None).await;

    assert_eq!(response.status(), 404);
    assert!(is_generated(&response_id(&response)));
}

#[tokio::test]
async fn http_metrics_are_labelled_by_route_template_not_raw_path() {
    let base = spawn().await;

    get_with(&base, "/x/1", None).await;
    get_with(&base, "/x/2", None).await;
    get_with(&base, "/nowhere/9", None).await;
    let metrics = get_with(&base, "/metrics", None).await;

    assert_eq!(metrics.status(), 200);
    let content_type = metrics
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"));
    let body = metrics.text().await.expect("body");
    let requests: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("chatd_http_requests_total{"))
        .collect();
    assert!(
        requests.iter().any(|l| l.contains(r#"route="/x/{id}""#)
            && l.contains(r#"method="GET""#)
            && l.contains(r#"status="200""#)),
        "{body}"
    );
    assert!(
        requests.iter().any(|l| l.contains(r#"route="unmatched""#)),
        "{body}"
    );
    assert!(!body.contains("/x/1"), "{body}");
    assert!(!body.contains("/x/2"), "{body}");
    assert!(!body.contains("/nowhere"), "{body}");
}

#[tokio::test]
async fn request_latency_is_a_histogram_with_buckets_up_to_ten_seconds() {
    let base = spawn().await;

    get_with(&base, "/x/3", None).await;
    let body = get_with(&base, "/metrics", None)
        .await
        .text()
        .await
        .expect("body");

    let buckets: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("chatd_http_request_duration_seconds_bucket{"))
        .filter(|l| l.contains(r#"route="/x/{id}""#))
        .collect();
    assert!(
        buckets.iter().any(|l| l.contains(r#"le="0.001""#)),
        "{body}"
    );
    assert!(buckets.iter().any(|l| l.contains(r#"le="10""#)), "{body}");
    assert!(buckets.iter().any(|l| l.contains(r#"le="+Inf""#)), "{body}");
}

#[tokio::test]
async fn accepted_messages_are_counted_by_transport() {
    let base = spawn().await;

    chatd::metrics::message_accepted("rest");
    chatd::metrics::rate_limited("messages");
    let body = get_with(&base, "/metrics", None)
        .await
        .text()
        .await
        .expect("body");

    assert!(
        body.contains(r#"chatd_messages_accepted_total{transport="rest"}"#),
        "{body}"
    );
    assert!(
        body.contains(r#"chatd_rate_limit_rejections_total{kind="messages"}"#),
        "{body}"
    );
}

#[test]
fn the_metrics_handle_is_the_same_recorder_however_often_it_is_asked_for() {
    chatd::metrics::message_accepted("handle-test");

    let first = chatd::metrics::handle().render();
    let second = chatd::metrics::handle().render();

    assert!(first.contains(r#"transport="handle-test""#));
    assert!(second.contains(r#"transport="handle-test""#));
}

#[test]
fn the_request_id_validator_accepts_safe_ids_and_refuses_the_rest() {
    let longest = "Z".repeat(64);
    let too_long = "Z".repeat(65);
    for ok in ["a", "A-b_c.9", longest.as_str()] {
        assert!(is_valid_request_id(ok), "{ok:?}");
        assert_eq!(
            ClientRequestId::parse(ok).map(|id| id.as_str().to_string()),
            Some(ok.into())
        );
    }
    for bad in [
        "",
        too_long.as_str(),
        "a b",
        "a\tb",
        "x/y",
        "x:y",
        "ü",
        "{id}",
    ] {
        assert!(!is_valid_request_id(bad), "{bad:?}");
        assert_eq!(ClientRequestId::parse(bad), None);
    }
}

#[test]
fn telemetry_init_can_be_called_twice() {
    quiet_global_logs();
    telemetry::init();
    telemetry::init();
}

/// A log sink shared between the subscriber and the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut inner) = self.0.lock() {
            inner.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Serves one request with `format` logs captured. The current-thread runtime runs the server's
/// tasks on this thread, where the scoped subscriber is the default.
async fn logs_of_one_request(format: LogFormat, id: &str) -> Vec<String> {
    quiet_global_logs();
    let captured = Captured::default();
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(
        format,
        EnvFilter::new("info"),
        captured.clone(),
    ));
    let base = spawn().await;

    let response = get_with(&base, "/x/5", Some(id)).await;
    assert_eq!(response.status(), 200);
    let _ = response.text().await;

    captured
        .lines()
        .into_iter()
        .filter(|line| !line.trim().is_empty())
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn every_json_log_line_of_a_request_carries_its_id() {
    let lines = logs_of_one_request(LogFormat::Json, "json-req-1").await;

    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).expect("a JSON log line"))
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"showing x"), "{lines:?}");
    assert!(messages.contains(&"looked x up"), "{lines:?}");
    assert!(messages.contains(&"request finished"), "{lines:?}");
    for event in &events {
        let spans = event["spans"].as_array().expect("span list");
        assert!(
            spans.iter().any(|s| s["name"] == "request"
                && s["client_request_id"] == "json-req-1"
                && s["request_id"].as_str().is_some_and(is_generated)),
            "{event}"
        );
    }
    let finished = events
        .iter()
        .find(|e| e["fields"]["message"] == "request finished")
        .expect("completion line");
    assert_eq!(finished["fields"]["status"], 200);
    assert!(finished["fields"]["latency_ms"].is_number());
    assert_eq!(finished["span"]["method"], "GET");
    assert_eq!(finished["span"]["path"], "/x/5");
}

#[tokio::test(flavor = "current_thread")]
async fn every_text_log_line_of_a_request_carries_its_id() {
    let lines = logs_of_one_request(LogFormat::Text, "text-req-1").await;

    assert!(lines.len() >= 3, "{lines:?}");
    for line in &lines {
        assert!(line.contains("client_request_id=text-req-1"), "{line}");
        assert!(
            line.contains(" request_id=") || line.contains("{request_id="),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("request finished") && l.contains("status=200")),
        "{lines:?}"
    );
}
