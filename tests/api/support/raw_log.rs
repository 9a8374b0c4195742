//! Events written straight into the log through the append transaction the command layer
//! drives (sequencer lock, stream head, insert, commit), without the domain deciding: what
//! another node, an older chatd or a damaged history would have left there.

use chatd::store::{CONVERSATION_STREAM, EventStore, GENESIS_HASH, StoreError, StoredEvent};
use serde_json::{Value, json};

/// One event of a conversation stream, at a sequence the caller chooses.
#[derive(Debug, Clone)]
pub struct RawEvent {
    pub stream_id: String,
    pub sequence: u64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
}

pub fn raw_event(
    stream_id: &str,
    sequence: u64,
    event_type: &str,
    version: &str,
    payload: Value,
) -> RawEvent {
    RawEvent {
        stream_id: stream_id.to_string(),
        sequence,
        event_type: event_type.to_string(),
        event_version: version.to_string(),
        payload,
    }
}

/// Appends the events in one transaction, chained to their streams' heads; the stored rows.
/// A sequence already taken is the store's `StoreError::Conflict`, and nothing is written.
pub async fn append_raw(
    store: &EventStore,
    events: &[RawEvent],
) -> Result<Vec<StoredEvent>, StoreError> {
    macro_rules! append {
        ($sql:expr) => {{
            let mut txn = $sql.begin_append().await?;
            let mut heads: std::collections::HashMap<String, String> = Default::default();
            let mut rows = Vec::with_capacity(events.len());
            let recorded_at = chatd::clock::now_micros();
            for event in events {
                let previous = match heads.get(&event.stream_id) {
                    Some(hash) => hash.clone(),
                    None => txn
                        .stream_head(CONVERSATION_STREAM, &event.stream_id)
                        .await?
                        .map_or_else(|| GENESIS_HASH.to_string(), |(_, hash)| hash),
                };
                let mut row = StoredEvent {
                    position: txn.state.next_position,
                    stream_type: CONVERSATION_STREAM.to_string(),
                    stream_id: event.stream_id.clone(),
                    sequence: event.sequence,
                    event_type: event.event_type.clone(),
                    event_version: event.event_version.clone(),
                    payload: event.payload.to_string(),
                    metadata: json!({"actor_id": 1, "actor_role": "system"}).to_string(),
                    recorded_at_micros: recorded_at,
                    hash: String::new(),
                };
                row.hash = row.expected_hash(&previous);
                txn.state.next_position += 1;
                heads.insert(row.stream_id.clone(), row.hash.clone());
                rows.push(row);
            }
            match txn.insert_events(&rows).await {
                Ok(()) => {
                    txn.commit().await?;
                    Ok(rows)
                }
                Err(error) => {
                    let _ = txn.rollback().await;
                    Err(error)
                }
            }
        }};
    }
    match store {
        EventStore::MySql(s) => append!(s),
        EventStore::Sqlite(s) => append!(s),
    }
}
