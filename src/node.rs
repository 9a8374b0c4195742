//! The names this process goes by.
//!
//! The log's followers (projectors, automatic assignment, push) hold their leases under a name
//! that survives a restart: a node that was killed takes its leases back at once when it
//! starts again, instead of waiting for them to expire while its read tables and broadcasts
//! stand still. Presence counts under a name of this process alone, since a restarted process
//! has none of the old one's sockets.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

/// The file in the data directory that keeps the lease holder's name.
const NODE_ID_FILE: &str = "node-id";
/// The longest name a lease row holds.
pub const MAX_NODE_ID: usize = 128;

/// The name leases are held under, and the claim that keeps a second process on the same data
/// directory from using it while this one lives.
pub struct LeaseHolder {
    pub name: String,
    _claim: Option<File>,
}

impl LeaseHolder {
    /// `CHAT_NODE_ID` when set (the operator keeps it unique among live nodes); else the name
    /// kept in the data directory, made on first start; else, when another live process has
    /// claimed that directory or it cannot be written, a name of this process alone.
    pub fn claim(configured: Option<&str>, data_dir: &Path) -> LeaseHolder {
        if let Some(name) = configured {
            return LeaseHolder {
                name: name.to_string(),
                _claim: None,
            };
        }
        match claim_in(data_dir) {
            Ok((name, file)) => LeaseHolder {
                name,
                _claim: Some(file),
            },
            Err(error) => {
                let name = process_name();
                tracing::warn!(
                    %error,
                    node = %name,
                    "no lasting node name in the data directory; after a crash this node waits \
                     for its old leases to expire"
                );
                LeaseHolder { name, _claim: None }
            }
        }
    }
}

fn claim_in(data_dir: &Path) -> std::io::Result<(String, File)> {
    std::fs::create_dir_all(data_dir)?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(data_dir.join(NODE_ID_FILE))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(std::io::Error::other(
                "another chatd process uses this data directory",
            ));
        }
        Err(std::fs::TryLockError::Error(error)) => return Err(error),
    }
    let mut kept = String::new();
    file.read_to_string(&mut kept)?;
    let kept = kept.trim();
    if is_valid(kept) {
        return Ok((kept.to_string(), file));
    }
    let name = format!("{}-{:032x}", host(), rand::random::<u128>());
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(name.as_bytes())?;
    file.sync_all()?;
    Ok((name, file))
}

/// Whether `name` may name a node in leases and presence.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NODE_ID
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A name no other process has had: the host, the process id and the start time.
pub fn process_name() -> String {
    let name = format!(
        "{}-{}-{}",
        host(),
        std::process::id(),
        crate::clock::now_micros()
    );
    name.chars().take(MAX_NODE_ID).collect()
}

fn host() -> String {
    let host: String = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if host.is_empty() { "node".into() } else { host }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_kept_across_claims_and_not_shared_while_claimed() {
        let dir = std::env::temp_dir().join(format!("chatd-node-{:x}", rand::random::<u64>()));
        let first = LeaseHolder::claim(None, &dir);
        let second = LeaseHolder::claim(None, &dir);
        assert_ne!(first.name, second.name, "two live processes, one name");
        let kept = first.name.clone();
        drop(first);
        drop(second);
        let again = LeaseHolder::claim(None, &dir);
        assert_eq!(again.name, kept, "a restart takes the kept name back");
        assert!(is_valid(&again.name));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_configured_name_wins() {
        let dir = std::env::temp_dir().join(format!("chatd-node-{:x}", rand::random::<u64>()));
        assert_eq!(LeaseHolder::claim(Some("web-1"), &dir).name, "web-1");
        assert!(!dir.exists(), "nothing is written for a configured name");
    }

    #[test]
    fn names_are_short_printable_and_never_empty() {
        assert!(is_valid("web-1.example_2"));
        assert!(!is_valid(""));
        assert!(!is_valid("a b"));
        assert!(!is_valid(&"x".repeat(MAX_NODE_ID + 1)));
        assert!(is_valid(&process_name()));
    }
}
