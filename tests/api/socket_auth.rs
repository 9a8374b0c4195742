//! A session token that travels in the Socket.IO connection's URL (Socket.IO-Client-Swift's
//! `.connectParams`) or in a header of its requests (`.extraHeaders`) authenticates the socket and
//! never reaches the logs, even at the most verbose level, on a real `chatd` process.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::process::{ChatdProcess, cli_session};
use crate::support::*;

/// The Socket.IO connect answer after a `40` without a handshake `auth` object.
async fn connect_answer_over_websocket(url: &str, query: &str, header: Option<&str>) -> String {
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket{query}",
        url.replacen("http", "ws", 1)
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(ws_url)
            .expect("request");
    if let Some(value) = header {
        request
            .headers_mut()
            .insert("Authorization", value.parse().expect("header value"));
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket");
    let open = socket.next().await.expect("open packet").expect("frame");
    assert!(open.to_text().unwrap_or_default().starts_with('0'));
    socket.send(Message::text("40")).await.expect("connect");
    loop {
        let frame = socket.next().await.expect("connect answer").expect("frame");
        let text = frame.to_text().unwrap_or_default().to_string();
        if text != "2" {
            return text;
        }
        socket.send(Message::text("3")).await.expect("pong");
    }
}

/// The same over long-polling: open, `40`, then the poll that carries the answer.
async fn connect_answer_over_polling(url: &str, query: &str) -> String {
    let client = reqwest::Client::new();
    let base = format!("{url}/socket.io/?EIO=4&transport=polling{query}");
    let open = client
        .get(&base)
        .send()
        .await
        .expect("open")
        .text()
        .await
        .expect("open text");
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("an Engine.IO open packet: {open}"))
        .to_string();
    let with_sid = format!("{base}&sid={sid}");
    let posted = client
        .post(&with_sid)
        .body("40")
        .send()
        .await
        .expect("post 40");
    assert_eq!(posted.status(), 200);
    // A poll may carry only a ping: poll again until the connect answer comes. A payload holds
    // packets separated by 0x1e.
    for _ in 0..10 {
        let polled = client
            .get(&with_sid)
            .send()
            .await
            .expect("poll")
            .text()
            .await
            .expect("poll text");
        if let Some(answer) = polled
            .split('\u{1e}')
            .find(|packet| packet.starts_with('4'))
        {
            return answer.to_string();
        }
        if polled.split('\u{1e}').any(|packet| packet == "2") {
            let ponged = client.post(&with_sid).body("3").send().await.expect("pong");
            assert_eq!(ponged.status(), 200);
        }
    }
    panic!("no connect answer over polling within ten polls")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_url_or_a_header_connects_and_never_reaches_the_logs() {
    for db in TestDb::each().await {
        let node = ChatdProcess::start(&db, &[("RUST_LOG", "trace")]).await;
        let token = cli_session(&db, "user", fresh_id());
        let query = format!("&token={token}");
        let bearer = format!("Bearer {token}");

        let answers = [
            (
                "websocket, token in the query",
                connect_answer_over_websocket(&node.url, &query, None).await,
            ),
            (
                "websocket, Authorization header",
                connect_answer_over_websocket(&node.url, "", Some(&bearer)).await,
            ),
            (
                "polling, token in the query",
                connect_answer_over_polling(&node.url, &query).await,
            ),
        ];
        for (how, answer) in &answers {
            assert!(
                answer.starts_with("40{\"sid\":"),
                "{}: {how} connects: {answer}",
                db.name()
            );
        }
        let refused =
            connect_answer_over_websocket(&node.url, "&token=not-a-session-token", None).await;
        assert!(
            refused.starts_with("44{\"code\":\"UNAUTHORIZED\""),
            "{}: {refused}",
            db.name()
        );

        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let log = node.log_text();
        assert!(
            log.lines().count() > 20,
            "{}: the node logs at trace level",
            db.name()
        );
        assert!(
            !log.contains(&token),
            "{}: the token is in the log:\n{}",
            db.name(),
            log.lines()
                .filter(|line| line.contains(&token))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
        node.stop();
        db.cleanup().await;
    }
}
