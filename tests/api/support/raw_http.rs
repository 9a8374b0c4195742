//! HTTP/1.1 by hand over a plain TCP connection, for clients no HTTP library would be: one that
//! sends its headers and part of its body and then stops, or sends the rest a little at a time.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// An open request: its head and as much of its body as was sent so far. The connection stays
/// open (nothing more is sent, and it is not shut down) until this is dropped.
pub struct RawRequest {
    reader: OwnedReadHalf,
    writer: Option<OwnedWriteHalf>,
    trickle: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for RawRequest {
    fn drop(&mut self) {
        if let Some(trickle) = self.trickle.take() {
            trickle.abort();
        }
    }
}

/// What the server answered.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl RawAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl RawRequest {
    /// Connects to `address` (`http://host:port`) and sends `POST path` with `headers` (a
    /// `Content-Length` among them, as the client means to send) and then `body_start`.
    pub async fn post(
        address: &str,
        path: &str,
        headers: &[(&str, String)],
        body_start: &[u8],
    ) -> RawRequest {
        let host = address.trim_start_matches("http://");
        let stream = TcpStream::connect(host).await.expect("connect");
        let (reader, mut stream) = stream.into_split();
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream.write_all(body_start).await.expect("send body");
        stream.flush().await.expect("flush");
        RawRequest {
            reader,
            writer: Some(stream),
            trickle: None,
        }
    }

    /// From now on sends `piece` of the body every `every`, until the server stops taking it.
    pub fn trickle(&mut self, every: Duration, piece: &'static [u8]) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        self.trickle = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if writer.write_all(piece).await.is_err() || writer.flush().await.is_err() {
                    return;
                }
            }
        }));
    }

    /// The server's answer, if a whole one arrives within `wait`.
    pub async fn answer(&mut self, wait: Duration) -> Option<RawAnswer> {
        tokio::time::timeout(wait, read_answer(&mut self.reader))
            .await
            .ok()
            .flatten()
    }
}

async fn read_answer(stream: &mut OwnedReadHalf) -> Option<RawAnswer> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        received.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = received[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buffer[..n]);
    }
    Some(RawAnswer {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}
