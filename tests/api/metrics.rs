//! `/metrics` as Prometheus' own tools read it: after real traffic (REST and Socket.IO),
//! `promtool check metrics` finds nothing to complain of, every family has its HELP and TYPE,
//! counters exist at zero before their first increment, and the build and the process describe
//! themselves.

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::process::{ChatdProcess, call_process, cli_session};
use crate::support::*;

/// promtool (Debian's `prometheus` package); a missing one fails the test, never skips it.
fn promtool_check(exposition: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("promtool could not start ({error}): install Debian's `prometheus` package")
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write the exposition");
    let output = child.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_traffic_pass_promtool_with_help_zeroes_build_and_process_figures() {
    for db in TestDb::each().await {
        // A process of its own: the test binary's recorder is shared by every test in it.
        let node = ChatdProcess::start(&db, &[]).await;
        let scrape = || async {
            reqwest::get(format!("{}/metrics", node.url))
                .await
                .expect("scrape")
                .text()
                .await
                .expect("metrics")
        };
        let before = scrape().await;
        for zero in [
            "chatd_uploads_total 0\n",
            "chatd_upload_bytes_total 0\n",
            "chatd_socket_overflows_total 0\n",
            "chatd_messages_accepted_total{transport=\"socket\"} 0\n",
            "chatd_push_total{provider=\"apns\",outcome=\"given_up\"} 0\n",
            "chatd_socket_events_in_total{event=\"set_presence\"} 0\n",
        ] {
            assert!(
                before.contains(zero),
                "{}: before any traffic /metrics shows {zero}{before}",
                db.name()
            );
        }

        let token = cli_session(&db, "user", fresh_id());
        let (status, sent) = call_process(
            &node.url,
            Method::POST,
            "/api/chat/messages",
            &token,
            &json!({"message": "hello over REST"}),
        )
        .await;
        assert_eq!(status, 201, "{sent}");
        let mut socket = crate::shutdown::raw_socket(&node.url, &token).await;
        socket
            .send(Message::text(format!(
                "421{}",
                json!(["send_message", {"content": "hello over Socket.IO", "client_msg_id": "metrics-1"}])
            )))
            .await
            .expect("send_message");
        loop {
            let frame = socket.next().await.expect("an answer").expect("frame");
            let text = frame.to_text().unwrap_or_default().to_string();
            if text == "2" {
                socket.send(Message::text("3")).await.expect("pong");
            } else if text.starts_with("431[") {
                assert!(text.contains("\"success\""), "{text}");
                break;
            }
        }

        let exposition = scrape().await;
        let (passed, said) = promtool_check(&exposition);
        assert!(
            passed && said.trim().is_empty(),
            "{}: promtool check metrics: {said}\n{exposition}",
            db.name()
        );
        for family in exposition
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| line.split(['{', ' ']).next())
        {
            let base = family
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                exposition.contains(&format!("# HELP {base} "))
                    || exposition.contains(&format!("# HELP {family} ")),
                "{}: {family} has no HELP",
                db.name()
            );
        }
        for expected in [
            "chatd_messages_accepted_total{transport=\"socket\"} 1\n",
            "chatd_messages_accepted_total{transport=\"rest\"} 1\n",
            "chatd_socket_event_duration_seconds_bucket{event=\"send_message\",le=\"10\"} 1\n",
            &format!(
                "chatd_build_info{{version=\"{}\",git_sha=",
                env!("CARGO_PKG_VERSION")
            ),
            "# TYPE process_cpu_seconds_total counter",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(
                exposition.contains(expected),
                "{}: /metrics lacks {expected}\n{exposition}",
                db.name()
            );
        }
        node.stop();
        db.cleanup().await;
    }
}
