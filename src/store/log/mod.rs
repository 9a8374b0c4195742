//! The log: the events table (global positions, per-stream sequences, the hash chain), the
//! sequencer row, the idempotency keys and the write-side index of active conversations.
//!
//! `sql.rs` holds its statements once for both back ends, and the connection set-up of each;
//! `hash.rs` the hash chain. The service appends only through the command layer, which drives an
//! [`AppendTxn`].

mod hash;
mod keyring;
mod seal;
mod sql;

pub use hash::{GENESIS_HASH, chain_digest};
pub use keyring::Keyring;
pub use seal::{KEY_FILE_VARIABLE, KeyError, MasterKey, PREVIOUS_KEY_FILE_VARIABLE};
pub use sql::{AppendTxn, ChainBreak, ChainReport, MAX_READ_BATCH, SequencerState, SqlStore};

use super::{EventStore, StoreError, StoredEvent, on_backend};

impl EventStore {
    /// The position of the newest committed event (0 for an empty log).
    pub async fn head_position(&self) -> Result<u64, StoreError> {
        on_backend!(self, s => s.head_position().await)
    }

    /// Up to `limit` events after `position`, in position order.
    pub async fn read_from(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        on_backend!(self, s => s.read_from(position, limit).await)
    }

    /// The events of one stream after `sequence`, in sequence order.
    pub async fn read_stream(
        &self,
        stream_type: &str,
        stream_id: &str,
        after_sequence: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        on_backend!(self, s => s.read_stream(stream_type, stream_id, after_sequence).await)
    }

    /// Up to `limit` events of one stream after `sequence`, in sequence order.
    pub async fn read_stream_page(
        &self,
        stream_type: &str,
        stream_id: &str,
        after_sequence: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        on_backend!(self, s => s.read_stream_page(stream_type, stream_id, after_sequence, limit).await)
    }

    /// Checks that the data keys open with the configured master keys; with `wrap_unwrapped`,
    /// wraps those stored as they are when there is a master key. How many it wrapped.
    pub async fn check_data_keys(&self, wrap_unwrapped: bool) -> Result<u64, StoreError> {
        on_backend!(self, s => s.check_data_keys(wrap_unwrapped).await)
    }

    /// How many data keys each master key wraps (None: stored as they are).
    pub async fn data_key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        on_backend!(self, s => s.data_key_counts().await)
    }

    /// Wraps every data key not yet wrapped by `target` under it, while servers run; how many.
    pub async fn rotate_data_keys(
        &self,
        target: &MasterKey,
        progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
        on_backend!(self, s => s.rotate_data_keys(target, progress).await)
    }

    /// Checks every stream's hash chain; the first broken link, if any.
    pub async fn verify_chains(&self) -> Result<Option<ChainBreak>, StoreError> {
        on_backend!(self, s => s.verify_chains().await)
    }

    /// Checks every stream's hash chain, counting the events and reporting progress (events
    /// checked, head position) after each batch.
    pub async fn verify_log(
        &self,
        progress: impl FnMut(u64, u64),
    ) -> Result<ChainReport, StoreError> {
        on_backend!(self, s => s.verify_log(progress).await)
    }
}
