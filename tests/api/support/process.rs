//! A real `chatd serve` process on the test database (and Redis for MySQL), on a free port, with
//! its log kept for the failure message.

use std::path::PathBuf;
use std::time::Duration;

use super::{APP_SECRET, TestDb, redis_url};
use chatd::store::Backend;
use serde_json::Value;

pub struct ChatdProcess {
    pub process: std::process::Child,
    pub url: String,
    port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

/// A session made by `chatd session create` against the same stores as chatd processes.
pub fn cli_session(db: &TestDb, role: &str, user_id: u64) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"));
    command
        .args(["session", "create", "--user-id", &user_id.to_string()])
        .args(["--role", role, "--identifier", &format!("{role}_{user_id}")])
        .env("CHAT_DATABASE_URL", &db.url)
        .env("CHAT_APP_SECRET", APP_SECRET);
    if db.backend == chatd::store::Backend::MySql {
        command.env("CHAT_REDIS_URL", redis_url());
    }
    let output = command.output().expect("chatd session create");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A port nothing listens on now (the kernel's pick, released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free local port")
}

/// Whether a server on `port` answers `/healthz` with 200 within 10 s (it may be starting).
pub async fn answers_healthz(port: u16) -> bool {
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            return response.status() == 200;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `path`, opened for appending (created when missing), so that two streams share it.
fn append_to(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("chatd log file")
}

impl ChatdProcess {
    /// Starts chatd and waits (up to a minute: a debug build migrating on a busy machine) until
    /// /readyz answers 200.
    pub async fn start(db: &TestDb, settings: &[(&str, &str)]) -> ChatdProcess {
        let suffix = format!("{}-{}", std::process::id(), free_port());
        let data_dir = std::env::temp_dir().join(format!("chatd-process-{suffix}"));
        Self::start_in(db, settings, data_dir, free_port()).await
    }

    /// SIGTERMs it, waits (up to 30 s) for a clean exit and starts chatd again on the same port
    /// and data directory: a rolling deploy's restart, which clients reconnect to by themselves.
    pub async fn terminate_and_restart(
        mut self,
        db: &TestDb,
        settings: &[(&str, &str)],
    ) -> ChatdProcess {
        let pid = self.process.id().to_string();
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(signalled.success());
        let mut exited = None;
        for _ in 0..300 {
            if let Ok(Some(status)) = self.process.try_wait() {
                exited = Some(status);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match exited {
            Some(status) if status.success() => {}
            other => panic!("{other:?} 30 s after SIGTERM\n{}", self.log_text()),
        }
        let data_dir = std::mem::take(&mut self.data_dir);
        Self::start_in(db, settings, data_dir, self.port).await
    }

    /// SIGKILLs it and starts chatd again on the same data directory (a new port): a crashed
    /// node coming back.
    pub async fn kill_and_restart(
        mut self,
        db: &TestDb,
        settings: &[(&str, &str)],
    ) -> ChatdProcess {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let data_dir = std::mem::take(&mut self.data_dir);
        Self::start_in(db, settings, data_dir, free_port()).await
    }

    async fn start_in(
        db: &TestDb,
        settings: &[(&str, &str)],
        data_dir: PathBuf,
        port: u16,
    ) -> ChatdProcess {
        let _ = std::fs::create_dir_all(&data_dir);
        let log = data_dir.join(format!("chatd-{port}.log"));
        let database = db.url.rsplit('/').next().unwrap_or("db").to_string();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatd"));
        command
            .arg("serve")
            .env("CHAT_DATABASE_URL", &db.url)
            .env("CHAT_REDIS_PREFIX", format!("chatd-test-{database}"))
            .env("CHAT_APP_SECRET", APP_SECRET)
            .env("CHAT_DATA_DIR", &data_dir)
            .env("CHAT_PORT", port.to_string())
            // Logs go to stdout, start-up failures to stderr: both into one file.
            .stdout(append_to(&log))
            .stderr(append_to(&log));
        if db.backend == Backend::MySql {
            command.env("CHAT_REDIS_URL", redis_url());
        }
        for (name, value) in settings {
            command.env(name, value);
        }
        let process = command.spawn().expect("start chatd");
        let node = ChatdProcess {
            process,
            url: format!("http://127.0.0.1:{port}"),
            port,
            data_dir,
            log,
        };
        let client = reqwest::Client::new();
        let mut last = String::from("no answer");
        for _ in 0..1200 {
            if let Ok(response) = client.get(format!("{}/readyz", node.url)).send().await {
                if response.status() == 200 {
                    return node;
                }
                last = format!(
                    "{} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = node.url.clone();
        let log = node.log_text();
        node.stop();
        panic!("chatd did not become ready on {url}: {last}\nits log:\n{log}");
    }

    /// What the process wrote so far (its log lines and anything on stderr).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it (SIGKILL) and removes its files.
    pub fn stop(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A test that fails before `stop` must not leave its node running (and using the machine).
impl Drop for ChatdProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// A signed request to a chatd process as `token`; a `Null` body sends none.
pub async fn call_process(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let (timestamp, signature) = super::sign_now(&method, path, &body);
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
        .header("X-Timestamp", timestamp)
        .header("X-Signature", signature)
        .bearer_auth(token);
    if !body.is_empty() {
        request = request
            .header("Content-Type", "application/json")
            .body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
