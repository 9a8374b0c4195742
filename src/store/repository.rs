//! cqrs-es's `PersistedEventRepository` over our store, so cqrs-es tooling (event stores,
//! `QueryReplay`) works on the same log. The service itself appends through
//! [`crate::commands::CommandBus`], which also keeps the idempotency keys and the
//! active-conversation index; this repository appends raw events only.

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use serde_json::Value;

use super::sql::{AppendTxn, MAX_READ_BATCH, SqlStore};
use super::{EventStore, GENESIS_HASH, StoreError, StoredEvent, on_backend};

impl From<StoreError> for PersistenceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => PersistenceError::OptimisticLockError,
            StoreError::Unavailable(e) => PersistenceError::ConnectionError(Box::new(e)),
            StoreError::Corrupt { .. } => PersistenceError::DeserializationError(Box::new(error)),
            other => PersistenceError::UnknownError(Box::new(other)),
        }
    }
}

fn serialized(event: StoredEvent) -> Result<SerializedEvent, PersistenceError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt {
        position: event.position,
        reason: e.to_string(),
    };
    let payload: Value = serde_json::from_str(&event.payload).map_err(corrupt)?;
    let metadata: Value = serde_json::from_str(&event.metadata).map_err(corrupt)?;
    let sequence = usize::try_from(event.sequence)
        .map_err(|_| StoreError::Invalid(format!("sequence {} too large", event.sequence)))?;
    Ok(SerializedEvent {
        aggregate_id: event.stream_id,
        sequence,
        aggregate_type: event.stream_type,
        event_type: event.event_type,
        event_version: event.event_version,
        payload,
        metadata,
    })
}

fn stream_of(events: Vec<StoredEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    for event in events {
        // The queue holds every event, so pushing never waits; a closed stream ends the feed.
        let item = serialized(event);
        if futures::FutureExt::now_or_never(feed.push(item)).is_none() {
            break;
        }
    }
    stream
}

impl EventStore {
    /// Appends already-decided events, checking each stream's next sequence (optimistic
    /// concurrency): a stream that moved on gives `StoreError::Conflict`.
    pub async fn append_serialized(
        &self,
        events: &[SerializedEvent],
    ) -> Result<Vec<StoredEvent>, StoreError> {
        on_backend!(self, s => append_serialized(s, events).await)
    }
}

async fn append_serialized<DB>(
    store: &SqlStore<DB>,
    events: &[SerializedEvent],
) -> Result<Vec<StoredEvent>, StoreError>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let mut txn: AppendTxn<DB> = store.begin_append().await?;
    let mut heads: std::collections::HashMap<(String, String), (u64, String)> = Default::default();
    let mut rows = Vec::with_capacity(events.len());
    let recorded_at = crate::clock::now_micros();
    for event in events {
        let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let (sequence, previous_hash) = match heads.get(&key) {
            Some(head) => head.clone(),
            None => txn
                .stream_head(&key.0, &key.1)
                .await?
                .unwrap_or((0, GENESIS_HASH.to_string())),
        };
        let expected = sequence + 1;
        if event.sequence as u64 != expected {
            let _ = txn.rollback().await;
            return Err(StoreError::Conflict {
                stream_id: event.aggregate_id.clone(),
                sequence: event.sequence as u64,
            });
        }
        let payload = serde_json::to_string(&event.payload)
            .map_err(|e| StoreError::Invalid(format!("payload: {e}")))?;
        let metadata = serde_json::to_string(&event.metadata)
            .map_err(|e| StoreError::Invalid(format!("metadata: {e}")))?;
        let mut row = StoredEvent {
            position: txn.state.next_position,
            stream_type: key.0.clone(),
            stream_id: key.1.clone(),
            sequence: expected,
            event_type: event.event_type.clone(),
            event_version: event.event_version.clone(),
            payload,
            metadata,
            recorded_at_micros: recorded_at,
            hash: String::new(),
        };
        row.hash = row.expected_hash(&previous_hash);
        txn.state.next_position += 1;
        heads.insert(key, (expected, row.hash.clone()));
        rows.push(row);
    }
    if let Err(error) = txn.insert_events(&rows).await {
        let _ = txn.rollback().await;
        return Err(error);
    }
    txn.commit().await?;
    Ok(rows)
}

impl PersistedEventRepository for EventStore {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.get_last_events::<A>(aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.read_stream(A::TYPE, aggregate_id, last_sequence as u64)
            .await?
            .into_iter()
            .map(serialized)
            .collect()
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        // Aggregates are kept in the command layer's cache, checked against the stream's
        // sequence; there are no stored snapshots.
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.append_serialized(events).await?;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        Ok(stream_of(self.read_stream(A::TYPE, aggregate_id, 0).await?))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let (mut feed, stream) = ReplayStream::new(1024);
        let store = self.clone();
        tokio::spawn(async move {
            let mut position = 0;
            loop {
                let batch = match store.read_from(position, MAX_READ_BATCH).await {
                    Ok(batch) if batch.is_empty() => return,
                    Ok(batch) => batch,
                    Err(error) => {
                        let _ = feed.push(Err(error.into())).await;
                        return;
                    }
                };
                for event in batch {
                    position = event.position;
                    if event.stream_type != A::TYPE {
                        continue;
                    }
                    if feed.push(serialized(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }
}
