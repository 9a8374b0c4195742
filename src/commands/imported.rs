//! Appending a history imported from the legacy system: the domain has read each legacy
//! conversation as events ([`events::import`]); this writes them to the log as the appender
//! writes decided events (positions, sealed text, hash chain, the active-conversation index,
//! a snapshot), one transaction per page of conversations under the sequencer lock.
//!
//! A conversation is imported whole or not at all, and at most once: one whose stream exists
//! is recognised by its opening's metadata (imported from the same legacy row) and left as it is,
//! so a second run, or a run after a crash, adds nothing twice.

use std::collections::HashMap;
use std::sync::Arc;

use events::import::{
    ImportedHistory, LegacyConversation, LegacyMessage, LegacyRow, import_actor, import_changes,
};
use events::{Conversation, ConversationEvent, ConversationStatus};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};

use super::{SNAPSHOT_EVERY, SNAPSHOT_FORMAT};
use crate::store::{
    AppendTxn, CONVERSATION_STREAM, EventMetadata, EventStore, GENESIS_HASH, ImportedRow, SqlStore,
    StoreError, StoredEvent, on_backend,
};

/// The name the import gives the legacy system in each event's metadata.
pub const LEGACY_SYSTEM: &str = "node";

/// A legacy conversation, its rows, and the history the domain read from them.
#[derive(Debug, Clone)]
pub struct ImportedConversation {
    pub legacy: LegacyConversation,
    /// Its legacy messages, in id order (read again against an earlier import's state).
    pub messages: Vec<LegacyMessage>,
    /// The identifiers of the admins its rows name.
    pub admins: Arc<HashMap<u64, String>>,
    /// The whole history, for a conversation not imported yet.
    pub history: ImportedHistory,
}

/// What became of one conversation of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    /// Its events were appended (or, in a dry run, would be).
    Imported {
        events: u64,
        /// Its user already has this active conversation in chatd, so it was closed after its
        /// history (chatd keeps one active conversation per user).
        closed_for: Option<u64>,
    },
    /// An earlier run imported it, and its legacy rows have not changed since.
    AlreadyImported,
    /// An earlier run imported it, and what its legacy rows say now beyond that was appended.
    Updated {
        events: u64,
        closed_for: Option<u64>,
        /// What was appended.
        history: Box<ImportedHistory>,
    },
    /// An earlier run imported it, its legacy rows have changed since, and so has the
    /// conversation in chatd: the legacy changes are not applied (the two would contradict).
    ChangedInBoth,
    /// chatd has a conversation of its own under this id.
    Taken,
}

/// Why the legacy ids cannot be reserved.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error(
        "chatd has already handed out {what} ids up to {used}, and the legacy database holds \
         {what} {legacy} that it has not imported: importing would give two {what}s one id. \
         Import into a chatd that has not served traffic yet"
    )]
    Collision {
        what: &'static str,
        used: u64,
        legacy: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The highest legacy conversation and message ids reserved so far (0, 0 before any import).
pub async fn legacy_reservation(store: &EventStore) -> Result<(u64, u64), StoreError> {
    on_backend!(store, s => reservation_on(s).await)
}

/// Reserves the legacy ids up to `highest` (conversation, message) so chatd's own ids continue
/// above them, after checking that chatd has handed out none of the legacy ids not yet reserved:
/// `lowest_unreserved` are the lowest legacy ids above `reserved`, the reservation the caller
/// read them against. Returns false, writing nothing, when the reservation has moved since (a
/// concurrent import): read again and retry. A dry run checks and writes nothing.
pub async fn reserve_legacy_ids(
    store: &EventStore,
    reserved: (u64, u64),
    lowest_unreserved: (Option<u64>, Option<u64>),
    highest: (u64, u64),
    dry_run: bool,
) -> Result<bool, ReserveError> {
    on_backend!(store, s => reserve_on(s, reserved, lowest_unreserved, highest, dry_run).await)
}

/// Appends the histories of a page of conversations in one transaction (a dry run rolls it back
/// instead of committing); what became of each, in the page's order. Each history holds at
/// least its opening.
pub async fn append_imported(
    store: &EventStore,
    page: &[ImportedConversation],
    dry_run: bool,
) -> Result<Vec<ImportOutcome>, StoreError> {
    on_backend!(store, s => append_on(s, page, dry_run).await)
}

async fn reservation_on<DB>(store: &SqlStore<DB>) -> Result<(u64, u64), StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let mut txn = store.begin_append().await?;
    let reserved = txn.legacy_reservation().await?;
    txn.rollback().await?;
    Ok(reserved.unwrap_or((0, 0)))
}

async fn reserve_on<DB>(
    store: &SqlStore<DB>,
    reserved: (u64, u64),
    lowest_unreserved: (Option<u64>, Option<u64>),
    highest: (u64, u64),
    dry_run: bool,
) -> Result<bool, ReserveError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let mut txn = store.begin_append().await?;
    if txn.legacy_reservation().await?.unwrap_or((0, 0)) != reserved {
        txn.rollback().await?;
        return Ok(false);
    }
    let state = txn.state;
    let checks = [
        (
            "conversation",
            lowest_unreserved.0,
            state.next_conversation_id,
        ),
        ("message", lowest_unreserved.1, state.next_message_id),
    ];
    for (what, lowest, next) in checks {
        if let Some(legacy) = lowest.filter(|lowest| *lowest < next) {
            txn.rollback().await?;
            return Err(ReserveError::Collision {
                what,
                used: next - 1,
                legacy,
            });
        }
    }
    let highest = (highest.0.max(reserved.0), highest.1.max(reserved.1));
    if dry_run || highest == reserved {
        txn.rollback().await?;
    } else {
        txn.reserve_legacy_ids(highest.0, highest.1).await?;
        txn.commit().await?;
    }
    Ok(true)
}

async fn append_on<DB>(
    store: &SqlStore<DB>,
    page: &[ImportedConversation],
    dry_run: bool,
) -> Result<Vec<ImportOutcome>, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let mut txn = store.begin_append().await?;
    let ids: Vec<u64> = page.iter().map(|c| c.legacy.id).collect();
    let openings = txn.openings(&ids).await?;
    let mut outcomes = Vec::with_capacity(page.len());
    let mut sealed = Vec::new();
    for conversation in page {
        let outcome = match openings.get(&conversation.legacy.id) {
            Some(metadata) if imported_from(metadata, conversation.legacy.id) => {
                append_changes(&mut txn, conversation, &mut sealed).await?
            }
            Some(_) => ImportOutcome::Taken,
            None => {
                let (events, closed_for) = append_history(
                    &mut txn,
                    &conversation.legacy,
                    None,
                    conversation.history.clone(),
                    &mut sealed,
                )
                .await?;
                ImportOutcome::Imported { events, closed_for }
            }
        };
        outcomes.push(outcome);
    }
    txn.insert_events(&sealed).await?;
    if dry_run {
        txn.rollback().await?;
    } else {
        txn.commit().await?;
    }
    Ok(outcomes)
}

/// Whether an opening's metadata says the import recorded it from this legacy conversation.
fn imported_from(metadata: &str, legacy_id: u64) -> bool {
    serde_json::from_str::<EventMetadata>(metadata).is_ok_and(|m| {
        m.imported.is_some_and(|row| {
            row.system == LEGACY_SYSTEM
                && row.table == events::import::CONVERSATIONS_TABLE
                && row.id == legacy_id
        })
    })
}

/// What the legacy rows say now beyond an earlier import of the conversation, appended.
async fn append_changes<DB>(
    txn: &mut AppendTxn<DB>,
    conversation: &ImportedConversation,
    sealed: &mut Vec<StoredEvent>,
) -> Result<ImportOutcome, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let id = conversation.legacy.id;
    let stream = txn
        .read_stream(CONVERSATION_STREAM, &id.to_string(), 0)
        .await?;
    let Some(last) = stream.last() else {
        return Ok(ImportOutcome::AlreadyImported);
    };
    let mut state = Conversation::default();
    for stored in &stream {
        cqrs_es::Aggregate::apply(&mut state, stored.decode()?);
    }
    let admins = &conversation.admins;
    let history = import_changes(
        &state,
        last.recorded_at_micros,
        &conversation.legacy,
        &conversation.messages,
        &|admin| admins.get(&admin).cloned(),
    );
    if history.events.is_empty() {
        return Ok(ImportOutcome::AlreadyImported);
    }
    if !last.is_imported() {
        return Ok(ImportOutcome::ChangedInBoth);
    }
    let head = Head {
        sequence: last.sequence,
        hash: last.hash.clone(),
        status: state.status(),
    };
    let (events, closed_for) = append_history(
        txn,
        &conversation.legacy,
        Some(head),
        history.clone(),
        sealed,
    )
    .await?;
    Ok(ImportOutcome::Updated {
        events,
        closed_for,
        history: Box::new(history),
    })
}

/// Where an imported conversation's stream stands before more of its history is appended.
struct Head {
    sequence: u64,
    hash: String,
    status: Option<ConversationStatus>,
}

/// Appends a history to a conversation's stream (after `head`, or as its start), keeping the
/// active-conversation index in step; the events appended and, when its user has another
/// active conversation in chatd, that one (this one is then closed after its history).
async fn append_history<DB>(
    txn: &mut AppendTxn<DB>,
    legacy: &LegacyConversation,
    head: Option<Head>,
    mut history: ImportedHistory,
    sealed: &mut Vec<StoredEvent>,
) -> Result<(u64, Option<u64>), StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let id = legacy.id;
    let user_id = legacy.user_id;
    let Head {
        mut sequence,
        mut hash,
        status: prior_status,
    } = head.unwrap_or(Head {
        sequence: 0,
        hash: GENESIS_HASH.to_string(),
        status: None,
    });
    let first_sequence = sequence;
    let mut closed_for = None;
    let active = Some(ConversationStatus::Active);
    if history.conversation.status() == active {
        match txn.active_conversation(user_id).await? {
            Some(other) if other != id => {
                // The user opened a conversation in chatd meanwhile: theirs stays the active one.
                let at = history.events.last().map_or(0, |e| e.at);
                let event = ConversationEvent::ConversationClosed { by: import_actor() };
                cqrs_es::Aggregate::apply(&mut history.conversation, event.clone());
                history.events.push(events::import::ImportedEvent {
                    event,
                    at,
                    row: LegacyRow {
                        table: events::import::CONVERSATIONS_TABLE,
                        id,
                    },
                });
                closed_for = Some(other);
            }
            Some(_) => {}
            None => txn.set_active_conversation(user_id, Some(id)).await?,
        }
    } else if prior_status == active && txn.active_conversation(user_id).await? == Some(id) {
        txn.set_active_conversation(user_id, None).await?;
    }
    for imported in &history.events {
        let actor = imported.event.actor();
        let metadata = EventMetadata {
            actor_id: actor.id,
            actor_role: actor.role.as_str().to_string(),
            imported: Some(ImportedRow {
                system: LEGACY_SYSTEM.to_string(),
                table: imported.row.table.to_string(),
                id: imported.row.id,
            }),
            ..EventMetadata::default()
        };
        let metadata = serde_json::to_string(&metadata)
            .map_err(|e| StoreError::Invalid(format!("metadata: {e}")))?;
        let (row, stored) = txn
            .next_event(id, sequence, &hash, &imported.event, &metadata, imported.at)
            .await?;
        sequence = row.sequence;
        hash = row.hash;
        sealed.push(stored);
    }
    if sequence / SNAPSHOT_EVERY > first_sequence / SNAPSHOT_EVERY {
        let state = serde_json::to_string(&history.conversation)
            .map_err(|e| StoreError::Invalid(format!("snapshot: {e}")))?;
        txn.save_snapshot(id, sequence, &hash, SNAPSHOT_FORMAT, &state)
            .await?;
    }
    Ok((sequence - first_sequence, closed_for))
}
