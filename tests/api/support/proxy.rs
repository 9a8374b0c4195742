//! A TCP proxy between chatd and a real server (MariaDB, Redis) that a test can break: take the
//! server away (every connection cut, new ones closed at once, as a stopped server's would be),
//! bring it back, or let one MySQL COMMIT through and swallow its answer (the ambiguous commit).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// MySQL's COM_QUERY command byte.
const COM_QUERY: u8 = 0x03;

pub struct Proxy {
    address: SocketAddr,
    /// Bumped to cut every open connection; `up` false refuses new ones.
    generation: watch::Sender<u64>,
    up: Arc<AtomicBool>,
    cut_next_commit: Arc<AtomicBool>,
    commits_cut: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free local port and forwards to `target` (host:port).
    pub async fn start(target: &str) -> Proxy {
        let target: SocketAddr = tokio::net::lookup_host(target)
            .await
            .expect("resolve proxy target")
            .next()
            .expect("proxy target address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let (generation, _) = watch::channel(0u64);
        let up = Arc::new(AtomicBool::new(true));
        let cut_next_commit = Arc::new(AtomicBool::new(false));
        let commits_cut = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn({
            let generation = generation.clone();
            let up = up.clone();
            let cut_next_commit = cut_next_commit.clone();
            let commits_cut = commits_cut.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let cut = generation.subscribe();
                    tokio::spawn(relay(
                        client,
                        target,
                        cut,
                        cut_next_commit.clone(),
                        commits_cut.clone(),
                    ));
                }
            }
        });
        Proxy {
            address,
            generation,
            up,
            cut_next_commit,
            commits_cut,
            accept,
        }
    }

    /// `host:port` to connect to instead of the server.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The server goes away: open connections are cut, new ones closed at once.
    pub fn take_down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// The server is back.
    pub fn bring_up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// The next MySQL COMMIT reaches the server, and its answer is swallowed: the connection
    /// breaks before the client learns whether it committed.
    pub fn swallow_next_commit_answer(&self) {
        self.cut_next_commit.store(true, Ordering::SeqCst);
    }

    /// How many COMMIT answers were swallowed.
    pub fn commits_cut(&self) -> u64 {
        self.commits_cut.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

async fn relay(
    client: TcpStream,
    target: SocketAddr,
    mut cut: watch::Receiver<u64>,
    cut_next_commit: Arc<AtomicBool>,
    commits_cut: Arc<AtomicU64>,
) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when a COMMIT was forwarded under `cut_next_commit`: the server's answer is dropped.
    let swallow = Arc::new(AtomicBool::new(false));
    let upstream = {
        let swallow = swallow.clone();
        async move {
            let mut packets = PacketReader::default();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let commit = packets.feed(&buf[..n]);
                if commit && cut_next_commit.swap(false, Ordering::SeqCst) {
                    swallow.store(true, Ordering::SeqCst);
                }
                if server_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallow.load(Ordering::SeqCst) {
                // The COMMIT's answer arrived: the client never sees it.
                commits_cut.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
        _ = cut.changed() => {}
    }
}

/// Splits the client's side of a MySQL connection into packets (3-byte length, sequence byte,
/// payload) and says whether a chunk completed a `COMMIT` query.
#[derive(Default)]
struct PacketReader {
    pending: Vec<u8>,
}

impl PacketReader {
    fn feed(&mut self, bytes: &[u8]) -> bool {
        self.pending.extend_from_slice(bytes);
        let mut commit = false;
        loop {
            if self.pending.len() < 4 {
                return commit;
            }
            let length = usize::from(self.pending[0])
                | usize::from(self.pending[1]) << 8
                | usize::from(self.pending[2]) << 16;
            if self.pending.len() < 4 + length {
                return commit;
            }
            let payload = &self.pending[4..4 + length];
            if payload.first() == Some(&COM_QUERY)
                && payload[1..].trim_ascii().eq_ignore_ascii_case(b"commit")
            {
                commit = true;
            }
            self.pending.drain(..4 + length);
        }
    }
}
