//! `deploy/nginx.conf` as shipped (ports and paths substituted), run by Debian's nginx in front
//! of two chatd processes on MariaDB and Redis, over HTTPS with a certificate made here: signed
//! REST, Socket.IO over long-polling upgraded to a websocket, and the web manager's sign-in (its
//! cookie `Secure`) all go through it, before and after one node restarts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::process::{ChatdProcess, cli_session, free_port};
use crate::support::*;

/// Debian's nginx, wherever PATH leaves /usr/sbin.
fn nginx() -> Command {
    let installed = Path::new("/usr/sbin/nginx");
    Command::new(if installed.exists() {
        installed
    } else {
        Path::new("nginx")
    })
}

/// nginx running `deploy/nginx.conf` in its own prefix; stopped when dropped.
struct Proxy {
    process: Child,
    prefix: PathBuf,
    url: String,
    /// The certificate it serves, which clients are told to trust.
    certificate: PathBuf,
}

impl Drop for Proxy {
    /// SIGTERM, so the master stops its workers (a SIGKILLed master leaves them running), then
    /// SIGKILL if it is still there after five seconds.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.process.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

impl Proxy {
    async fn start(nodes: [&str; 2]) -> Proxy {
        let prefix = std::env::temp_dir().join(format!("chatd-nginx-{}", fresh_id()));
        std::fs::create_dir_all(prefix.join("logs")).expect("the nginx prefix");
        let (cert, key) = (prefix.join("cert.pem"), prefix.join("key.pem"));
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(made.success(), "a self-signed certificate");
        let (http_port, https_port) = (free_port(), free_port());
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf"),
        )
        .expect("deploy/nginx.conf");
        let node = |address: &str| address.trim_start_matches("http://").to_string();
        let config = [
            ("listen 80;", format!("listen 127.0.0.1:{http_port};")),
            (
                "listen 443 ssl;",
                format!("listen 127.0.0.1:{https_port} ssl;"),
            ),
            (
                "server 127.0.0.1:10000;",
                format!("server {};", node(nodes[0])),
            ),
            (
                "server 127.0.0.1:10001;",
                format!("server {};", node(nodes[1])),
            ),
            ("/etc/ssl/chatd/fullchain.pem", cert.display().to_string()),
            ("/etc/ssl/chatd/privkey.pem", key.display().to_string()),
            ("worker_processes auto;", "worker_processes 1;".to_string()),
            (
                "worker_connections 16384;",
                "worker_connections 1024;".to_string(),
            ),
        ]
        .iter()
        .fold(shipped.clone(), |text, (from, to)| {
            assert!(text.contains(from), "deploy/nginx.conf has `{from}`");
            text.replace(from, to)
        });
        // The access log in the prefix: the test reads which transports went through.
        let config = config.replacen(
            "http {\n",
            &format!(
                "http {{\n    access_log {};\n",
                prefix.join("logs/access.log").display()
            ),
            1,
        );
        let config_path = prefix.join("nginx.conf");
        std::fs::write(&config_path, config).expect("write the configuration");
        let globals = format!(
            "daemon off; pid {}; error_log {} warn;",
            prefix.join("nginx.pid").display(),
            prefix.join("logs/error.log").display()
        );
        let tested = nginx()
            .arg("-t")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&config_path)
            .args(["-g", &globals])
            .output()
            .unwrap_or_else(|error| {
                panic!("nginx could not start ({error}): install Debian's nginx-light")
            });
        assert!(
            tested.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&tested.stderr)
        );
        let process = nginx()
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&config_path)
            .args(["-g", &globals])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let proxy = Proxy {
            process,
            prefix,
            url: format!("https://127.0.0.1:{https_port}"),
            certificate: cert,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", https_port)).is_ok() {
                return proxy;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nginx did not listen on {https_port}");
    }
}

/// A client that accepts the test's self-signed certificate.
fn https_client() -> push_http::Client {
    push_http::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("an HTTPS client")
}

async fn signed_get(base: &str, path: &str, token: &str) -> (u16, Value) {
    let (timestamp, signature) = sign_now(&reqwest::Method::GET, path, "");
    let response = https_client()
        .get(format!("{base}{path}"))
        .header("X-Timestamp", timestamp)
        .header("X-Signature", signature)
        .bearer_auth(token)
        .send()
        .await
        .expect("a signed GET through the proxy");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// python-socketio through the proxy: long-polling first, then the upgrade to a websocket;
/// joins and sends. What it saw, as JSON.
fn socket_round_trip(proxy: &Proxy, token: &str, conversation: u64, text: &str) -> Value {
    let base = &proxy.url;
    let script = r#"
import json, sys, time
import socketio
cfg = json.load(sys.stdin)
sio = socketio.Client(reconnection=False)
sio.connect(cfg["url"], auth={"token": cfg["token"]}, transports=["polling", "websocket"],
            wait_timeout=10)
for _ in range(50):
    if sio.transport() == "websocket":
        break
    time.sleep(0.1)
joined = sio.call("join_conversation", {"conversation_id": cfg["conversation"]}, timeout=10)
sent = sio.call("send_message", {"conversation_id": cfg["conversation"], "message_type": "text",
                                 "content": cfg["text"]}, timeout=10)
print(json.dumps({"upgraded": sio.transport(), "joined": joined, "sent": sent}))
sio.disconnect()
"#;
    // The proxy's certificate is the one authority both the polling requests and the websocket
    // trust.
    let mut child = Command::new("python3")
        .args(["-c", script])
        .env("REQUESTS_CA_BUNDLE", &proxy.certificate)
        .env("SSL_CERT_FILE", &proxy.certificate)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    {
        use std::io::Write;
        let config =
            json!({"url": base, "token": token, "conversation": conversation, "text": text});
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(config.to_string().as_bytes())
            .expect("write the config");
    }
    let output = child.wait_with_output().expect("the socket client");
    assert!(
        output.status.success(),
        "the Socket.IO client through the proxy: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("what the client saw")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_behind_the_shipped_nginx_serve_rest_sockets_and_the_manager_over_https() {
    let db = TestDb::mysql().await;
    let settings = [("CHAT_TRUSTED_PROXIES", "127.0.0.1")];
    let first = ChatdProcess::start(&db, &settings).await;
    let second = ChatdProcess::start(&db, &settings).await;
    let proxy = Proxy::start([&first.url, &second.url]).await;
    let user = cli_session(&db, "user", fresh_id());
    let admin = cli_session(&db, "admin", fresh_id());

    let (status, opened) = {
        let body = json!({"initial_message": "Hello through the proxy"}).to_string();
        let (timestamp, signature) =
            sign_now(&reqwest::Method::POST, "/api/chat/conversations", &body);
        let response = https_client()
            .post(format!("{}/api/chat/conversations", proxy.url))
            .header("X-Timestamp", timestamp)
            .header("X-Signature", signature)
            .header("Content-Type", "application/json")
            .bearer_auth(&user)
            .body(body)
            .send()
            .await
            .expect("open a conversation through the proxy");
        let status = response.status().as_u16();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    };
    assert_eq!(status, 201, "{opened}");
    let conversation = opened["data"]["conversation_id"].as_u64().expect("id");

    // The web manager's sign-in: the proxy says the request came over TLS, so the cookie is
    // Secure although the node itself speaks plain HTTP.
    let signed_in = https_client()
        .post(format!("{}/admin/session", proxy.url))
        .header("Content-Type", "application/json")
        .body(json!({"token": admin}).to_string())
        .send()
        .await
        .expect("sign in through the proxy");
    assert_eq!(signed_in.status().as_u16(), 200);
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        cookie.starts_with("chatd_admin=") && cookie.contains("; Secure"),
        "{cookie}"
    );

    let seen = socket_round_trip(
        &proxy,
        &user,
        conversation,
        "over polling, then a websocket",
    );
    assert_eq!(seen["upgraded"], "websocket", "{seen}");
    // The client opened over long-polling and upgraded on the same session (python-socketio
    // does both inside connect): the proxy saw both.
    let access = std::fs::read_to_string(proxy.prefix.join("logs/access.log")).unwrap_or_default();
    assert!(
        access.contains("transport=polling") && access.contains(" 101 "),
        "polling, then a websocket (101) through the proxy:\n{access}"
    );
    assert_eq!(seen["joined"]["status"], "success", "{seen}");
    assert_eq!(seen["sent"]["status"], "success", "{seen}");

    // One node restarts while a client keeps reading through the proxy: every read is answered.
    let path = format!("/api/chat/messages?conversation_id={conversation}&after_id=0");
    let reading = {
        let (base, user, path) = (proxy.url.clone(), user.clone(), path.clone());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let until = stop.clone();
        let reads = tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !until.load(std::sync::atomic::Ordering::SeqCst) {
                statuses.push(signed_get(&base, &path, &user).await.0);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            statuses
        });
        (stop, reads)
    };
    let first = first.terminate_and_restart(&db, &settings).await;
    reading.0.store(true, std::sync::atomic::Ordering::SeqCst);
    let statuses = reading.1.await.expect("the reader");
    assert!(
        statuses.len() > 3 && statuses.iter().all(|status| *status == 200),
        "reads while a node restarted: {statuses:?}"
    );
    for round in 0..3 {
        let (status, listed) = signed_get(&proxy.url, &path, &user).await;
        assert_eq!(status, 200, "round {round} after the restart: {listed}");
        assert!(
            listed["data"]["messages"]
                .as_array()
                .is_some_and(|messages| messages.len() >= 2),
            "{listed}"
        );
    }
    let again = socket_round_trip(&proxy, &user, conversation, "after a node restarted");
    assert_eq!(again["upgraded"], "websocket", "{again}");
    assert_eq!(again["sent"]["status"], "success", "{again}");

    drop(proxy);
    first.stop();
    second.stop();
    db.cleanup().await;
}

/// `deploy/chatd.service` is a unit systemd accepts (with the binary it starts put where the
/// unit expects one: here, the one under test).
#[test]
fn the_shipped_systemd_unit_verifies() {
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/chatd.service"))
            .expect("deploy/chatd.service");
    for directive in [
        "ExecReload=",
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "User=chatd",
    ] {
        assert!(unit.contains(directive), "the unit sets {directive}");
    }
    let directory = std::env::temp_dir().join(format!("chatd-unit-{}", fresh_id()));
    std::fs::create_dir_all(&directory).expect("a directory");
    let path = directory.join("chatd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/chatd", env!("CARGO_BIN_EXE_chatd")),
    )
    .expect("write the unit");
    let verified = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap_or_else(|error| {
            panic!("systemd-analyze could not start ({error}): install Debian's systemd")
        });
    let said = String::from_utf8_lossy(&verified.stderr);
    let _ = std::fs::remove_dir_all(&directory);
    assert!(
        verified.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}
