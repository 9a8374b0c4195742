//! The data keys of conversations, as the store finds, makes and caches them, and the opening of
//! sealed payloads on every read of the log (see [`super::seal`]).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::seal::{
    DataKey, KeyError, MasterKey, StoredDataKey, is_sealed, open_payload, payload_aad,
};
use crate::store::{RowsAffected, StoreError, StoredEvent};

/// Data keys kept in memory.
const CACHE_CAPACITY: usize = 10_000;
/// How long a key found in the database is used before it is looked up again: a key destroyed
/// by another node stops opening events here within this time.
const CACHE_TTL: Duration = Duration::from_secs(60);
/// Conversations per key lookup.
const LOOKUP_CHUNK: usize = 500;
/// The event that destroys its conversation's key.
const ERASED_EVENT: &str = "ConversationErased";

/// The master keys and the data keys in use.
pub struct Keyring {
    /// Wraps new data keys, and opens those it wrapped.
    master: Option<Arc<MasterKey>>,
    /// The key being rotated away from: opens what it wrapped, wraps nothing.
    previous: Option<Arc<MasterKey>>,
    cache: Mutex<LruCache<u64, (Arc<DataKey>, Instant)>>,
}

impl Keyring {
    pub fn new(master: Option<Arc<MasterKey>>, previous: Option<Arc<MasterKey>>) -> Self {
        Keyring {
            master,
            previous,
            cache: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    pub fn master(&self) -> Option<&MasterKey> {
        self.master.as_deref()
    }

    /// Every master key that may have wrapped a data key here.
    fn unwrapping(&self) -> Vec<&MasterKey> {
        self.master
            .iter()
            .chain(self.previous.iter())
            .map(|key| &**key)
            .collect()
    }

    pub(super) fn cached(&self, conversation_id: u64) -> Option<Arc<DataKey>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.get(&conversation_id) {
            Some((key, since)) if since.elapsed() < CACHE_TTL => Some(key.clone()),
            Some(_) => {
                cache.pop(&conversation_id);
                None
            }
            None => None,
        }
    }

    pub(super) fn remember(&self, conversation_id: u64, key: Arc<DataKey>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.put(conversation_id, (key, Instant::now()));
    }

    /// Drops a conversation's key from memory (its erasure was committed or read).
    pub(super) fn forget(&self, conversation_id: u64) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.pop(&conversation_id);
    }

    /// Forgets the keys of the conversations whose erasure is among `events`: their text then
    /// reads erased here at once, whatever this node had cached.
    fn forget_erased(&self, events: &[StoredEvent]) {
        for event in events.iter().filter(|e| e.event_type == ERASED_EVENT) {
            if let Ok(id) = event.stream_id.parse() {
                self.forget(id);
            }
        }
    }

    /// The data keys of `conversation_ids` that exist, from the cache or read on `conn`.
    pub(super) async fn keys_of<DB>(
        &self,
        conn: &mut DB::Connection,
        conversation_ids: &[u64],
    ) -> Result<HashMap<u64, Arc<DataKey>>, StoreError>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
        String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
        usize: ColumnIndex<DB::Row>,
    {
        let mut keys = HashMap::with_capacity(conversation_ids.len());
        let mut missing = Vec::new();
        for &id in conversation_ids {
            match self.cached(id) {
                Some(key) => {
                    keys.insert(id, key);
                }
                None => missing.push(id),
            }
        }
        for stored in stored_keys::<DB>(conn, &missing).await? {
            let key =
                Arc::new(DataKey::from_stored(&stored, &self.unwrapping()).map_err(key_error)?);
            self.remember(stored.conversation_id, key.clone());
            keys.insert(stored.conversation_id, key);
        }
        Ok(keys)
    }

    /// Puts back the sealed fields of `events` (read on `conn`), or marks them erased where
    /// their conversation's key is gone. Called when [`Keyring::open_cached`] could not, which
    /// has already forgotten the keys of the erasures among them.
    pub(super) async fn open<DB>(
        &self,
        conn: &mut DB::Connection,
        events: &mut [StoredEvent],
    ) -> Result<(), StoreError>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
        i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
        String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
        usize: ColumnIndex<DB::Row>,
    {
        let mut conversations: Vec<u64> = events
            .iter()
            .filter(|event| is_sealed(&event.payload))
            .filter_map(|event| event.stream_id.parse().ok())
            .collect();
        if conversations.is_empty() {
            return Ok(());
        }
        conversations.sort_unstable();
        conversations.dedup();
        let keys = self.keys_of::<DB>(conn, &conversations).await?;
        for event in events.iter_mut().filter(|event| is_sealed(&event.payload)) {
            open_event(event, &keys)?;
        }
        Ok(())
    }

    /// Whether every sealed event can be opened without the database: the keys are cached.
    pub(super) fn open_cached(&self, events: &mut [StoredEvent]) -> Result<bool, StoreError> {
        self.forget_erased(events);
        let mut keys = HashMap::new();
        for event in events.iter().filter(|event| is_sealed(&event.payload)) {
            let Ok(id) = event.stream_id.parse::<u64>() else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(entry) = keys.entry(id) {
                match self.cached(id) {
                    Some(key) => {
                        entry.insert(key);
                    }
                    None => return Ok(false),
                }
            }
        }
        for event in events.iter_mut().filter(|event| is_sealed(&event.payload)) {
            open_event(event, &keys)?;
        }
        Ok(true)
    }
}

fn open_event(
    event: &mut StoredEvent,
    keys: &HashMap<u64, Arc<DataKey>>,
) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        position: event.position,
        reason,
    };
    let mut payload: serde_json::Value =
        serde_json::from_str(&event.payload).map_err(|e| corrupt(format!("payload: {e}")))?;
    let key = event
        .stream_id
        .parse::<u64>()
        .ok()
        .and_then(|id| keys.get(&id));
    let aad = payload_aad(
        &event.stream_type,
        &event.stream_id,
        event.sequence,
        &event.event_type,
    );
    open_payload(&mut payload, &aad, key.map(|key| &**key)).map_err(|e| corrupt(e.0))?;
    event.payload = payload.to_string();
    Ok(())
}

pub(super) fn key_error(error: KeyError) -> StoreError {
    StoreError::Invalid(error.0)
}

/// The stored data keys of those of `conversation_ids` that have one.
pub(super) async fn stored_keys<DB>(
    conn: &mut DB::Connection,
    conversation_ids: &[u64],
) -> Result<Vec<StoredDataKey>, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let mut found = Vec::new();
    for chunk in conversation_ids.chunks(LOOKUP_CHUNK) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "select conversation_id, key_id, master_key_id, material from data_keys \
             where conversation_id in ({placeholders})"
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(i64::try_from(*id).unwrap_or(i64::MAX));
        }
        for row in query
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::from_sqlx)?
        {
            found.push(stored_key_of(&row)?);
        }
    }
    Ok(found)
}

/// A data key from a row of (conversation_id, key_id, master_key_id, material).
pub(super) fn stored_key_of<R: Row>(row: &R) -> Result<StoredDataKey, StoreError>
where
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    let conversation_id: i64 = row.try_get(0).map_err(StoreError::from_sqlx)?;
    Ok(StoredDataKey {
        conversation_id: u64::try_from(conversation_id).unwrap_or_default(),
        key_id: row.try_get(1).map_err(StoreError::from_sqlx)?,
        master_key_id: row.try_get(2).map_err(StoreError::from_sqlx)?,
        material: row.try_get(3).map_err(StoreError::from_sqlx)?,
    })
}

/// Stores a new data key of a conversation on `conn` (inside the append transaction).
pub(super) async fn insert_key<DB>(
    conn: &mut DB::Connection,
    stored: &StoredDataKey,
    created_at_micros: i64,
) -> Result<(), StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    // The master key's id as a literal null or a parameter: an optional parameter is not
    // encodable on every back end through one generic bound.
    let master = if stored.master_key_id.is_some() {
        "?"
    } else {
        "null"
    };
    let sql = format!(
        "insert into data_keys (conversation_id, key_id, material, created_at, master_key_id) \
         values (?, ?, ?, ?, {master})"
    );
    let mut query = sqlx::query(&sql)
        .bind(i64::try_from(stored.conversation_id).unwrap_or(i64::MAX))
        .bind(stored.key_id.clone())
        .bind(stored.material.clone())
        .bind(created_at_micros);
    if let Some(master) = &stored.master_key_id {
        query = query.bind(master.clone());
    }
    query
        .execute(&mut *conn)
        .await
        .map_err(StoreError::from_sqlx)?;
    Ok(())
}

impl<DB> super::SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Checks that the data keys open with the configured master keys (and that none is wrapped
    /// when there is none); with `wrap_unwrapped`, wraps the keys stored as they are when there
    /// is a master key. How many keys it wrapped.
    pub async fn check_data_keys(&self, wrap_unwrapped: bool) -> Result<u64, StoreError> {
        let master = self.keyring().master();
        let mut conn = self.pool().acquire().await.map_err(StoreError::from_sqlx)?;
        let wrapped_by: Vec<String> = sqlx::query(
            "select distinct master_key_id from data_keys where master_key_id is not null",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::from_sqlx)?
        .iter()
        .map(|row| row.try_get::<String, _>(0).map_err(StoreError::from_sqlx))
        .collect::<Result<_, _>>()?;
        for id in &wrapped_by {
            let one = sqlx::query(
                "select conversation_id, key_id, master_key_id, material from data_keys \
                 where master_key_id = ? limit 1",
            )
            .bind(id.clone())
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::from_sqlx)?;
            DataKey::from_stored(&stored_key_of(&one)?, &self.keyring().unwrapping())
                .map_err(key_error)?;
        }
        let Some(master) = master.filter(|_| wrap_unwrapped) else {
            return Ok(0);
        };
        let mut wrapped = 0;
        loop {
            let rows = sqlx::query(
                "select conversation_id, key_id, master_key_id, material from data_keys \
                 where master_key_id is null limit 500",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(StoreError::from_sqlx)?;
            if rows.is_empty() {
                return Ok(wrapped);
            }
            for row in &rows {
                let stored = stored_key_of(row)?;
                let key = DataKey::from_stored(&stored, &[]).map_err(key_error)?;
                let rewrapped = key
                    .to_stored(stored.conversation_id, Some(master))
                    .map_err(key_error)?;
                sqlx::query(
                    "update data_keys set master_key_id = ?, material = ? \
                     where conversation_id = ? and master_key_id is null",
                )
                .bind(master.id().to_string())
                .bind(rewrapped.material)
                .bind(i64::try_from(stored.conversation_id).unwrap_or(i64::MAX))
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_sqlx)?;
                wrapped += 1;
            }
        }
    }

    /// How many data keys each master key wraps (None: stored as they are).
    pub async fn data_key_counts(&self) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let rows = sqlx::query(
            "select master_key_id, count(*) from data_keys group by master_key_id \
             order by master_key_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::from_sqlx)?;
        rows.iter()
            .map(|row| {
                let id: Option<String> = row.try_get(0).map_err(StoreError::from_sqlx)?;
                let count: i64 = row.try_get(1).map_err(StoreError::from_sqlx)?;
                Ok((id, u64::try_from(count).unwrap_or_default()))
            })
            .collect()
    }

    /// Wraps every data key not yet wrapped by `target` under it, a batch at a time, while
    /// servers run: each row changes only if it is still as read (an erasure may have destroyed
    /// it meanwhile). The keys themselves do not change, so nothing sealed under them does.
    /// How many it rewrapped; `progress` hears the running count.
    pub async fn rotate_data_keys(
        &self,
        target: &MasterKey,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError>
    where
        DB::QueryResult: RowsAffected,
    {
        let masters: Vec<&MasterKey> = std::iter::once(target)
            .chain(self.keyring().unwrapping())
            .collect();
        let mut rewrapped = 0;
        let mut after = -1i64;
        loop {
            let rows = sqlx::query(
                "select conversation_id, key_id, master_key_id, material from data_keys \
                 where conversation_id > ? and (master_key_id is null or master_key_id <> ?) \
                 order by conversation_id limit 500",
            )
            .bind(after)
            .bind(target.id().to_string())
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::from_sqlx)?;
            let Some(last) = rows.last() else {
                return Ok(rewrapped);
            };
            after = last.try_get(0).map_err(StoreError::from_sqlx)?;
            for row in &rows {
                let stored = stored_key_of(row)?;
                let key = DataKey::from_stored(&stored, &masters).map_err(key_error)?;
                let wrapped = key
                    .to_stored(stored.conversation_id, Some(target))
                    .map_err(key_error)?;
                let changed = sqlx::query(
                    "update data_keys set master_key_id = ?, material = ? \
                     where conversation_id = ? and material = ?",
                )
                .bind(target.id().to_string())
                .bind(wrapped.material)
                .bind(i64::try_from(stored.conversation_id).unwrap_or(i64::MAX))
                .bind(stored.material)
                .execute(self.pool())
                .await
                .map_err(StoreError::from_sqlx)?;
                if changed.changed() > 0 {
                    rewrapped += 1;
                }
            }
            progress(rewrapped);
        }
    }
}
