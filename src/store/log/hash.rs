//! The hash chain: each event's SHA-256 covers the previous event's hash in its stream and every
//! stored field of its own, so a changed, removed or reordered event breaks the chain.

use sha2::{Digest, Sha256};

/// The "previous hash" of a stream's first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lowercase hex SHA-256 over the previous hash and the event's stored fields, each on its own
/// line. The payload and metadata are compact JSON, which never holds a raw newline, and come last.
#[allow(clippy::too_many_arguments)]
pub fn chain_hash(
    previous_hash: &str,
    stream_type: &str,
    stream_id: &str,
    sequence: u64,
    event_type: &str,
    event_version: &str,
    recorded_at_micros: i64,
    payload: &str,
    metadata: &str,
) -> String {
    let mut hasher = Sha256::new();
    for part in [
        previous_hash,
        stream_type,
        stream_id,
        &sequence.to_string(),
        event_type,
        event_version,
        &recorded_at_micros.to_string(),
        payload,
    ] {
        hasher.update(part.as_bytes());
        hasher.update(b"\n");
    }
    hasher.update(metadata.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(payload: &str) -> String {
        chain_hash(
            GENESIS_HASH,
            "conversation",
            "1",
            1,
            "MessageSent",
            "2",
            5,
            payload,
            "{}",
        )
    }

    #[test]
    fn the_same_fields_give_the_same_hash() {
        assert_eq!(sample(r#"{"a":1}"#), sample(r#"{"a":1}"#));
        assert_eq!(sample(r#"{"a":1}"#).len(), 64);
    }

    #[test]
    fn one_changed_byte_changes_the_hash() {
        assert_ne!(sample(r#"{"a":1}"#), sample(r#"{"a":2}"#));
    }

    #[test]
    fn the_previous_hash_is_part_of_the_chain() {
        let first = sample("{}");
        let after_genesis = chain_hash(
            GENESIS_HASH,
            "conversation",
            "1",
            2,
            "T",
            "1",
            5,
            "{}",
            "{}",
        );
        let after_first = chain_hash(&first, "conversation", "1", 2, "T", "1", 5, "{}", "{}");
        assert_ne!(after_genesis, after_first);
    }
}
