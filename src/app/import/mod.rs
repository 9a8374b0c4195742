//! Moving in from the legacy Node.js system: its MySQL history becomes chatd's log, with the ids
//! its apps already hold and the times things happened.
//!
//! Page by page of conversations (in id order): the legacy rows are read, the domain reads each
//! conversation as events ([`events::import`]), and the command layer appends a page in one
//! transaction ([`crate::commands::imported`]). Before the first page the legacy id ranges are
//! reserved, so chatd's own ids continue above them even while nodes serve traffic. Everything is
//! deterministic: a run killed halfway and run again ends with the log a clean run writes.

pub mod verify;

use std::collections::HashSet;

use events::ConversationEvent;
use events::import::{ImportedHistory, LegacyConversation, LegacyMessage, RowNote, import_history};
use serde::Serialize;

use crate::commands::imported::{
    ImportOutcome, ImportedConversation, ReserveError, append_imported, legacy_reservation,
    reserve_legacy_ids,
};
use crate::store::legacy::{LegacyError, LegacySource};
use crate::store::{EventStore, StoreError};

/// Conversations per transaction unless told otherwise.
pub const DEFAULT_BATCH: u32 = 100;
/// Orphaned messages (no conversation) listed at most.
const ORPHANS_LISTED: u32 = 1000;
/// How often the reservation is read again when a concurrent import moved it.
const RESERVE_ATTEMPTS: usize = 5;

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Read and check everything, write nothing.
    pub dry_run: bool,
    /// Conversations per transaction.
    pub batch: u32,
    /// `file_url` prefixes to replace (old, new), the first that matches.
    pub rewrite_file_base: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    #[error(transparent)]
    Reserve(#[from] ReserveError),
    #[error("writing chatd's log: {0}")]
    Store(#[from] StoreError),
}

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub dry_run: bool,
    pub conversations: ConversationCounts,
    pub messages: MessageCounts,
    pub read_receipts: u64,
    pub files: FileCounts,
    /// Events appended.
    pub events: u64,
    /// Rows left out, each with its reason.
    pub skipped: Vec<Note>,
    /// Rows imported other than they stood, each with what changed.
    pub adjusted: Vec<Note>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConversationCounts {
    pub imported: u64,
    pub already_imported: u64,
    pub skipped: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageCounts {
    pub imported: u64,
    pub skipped: u64,
}

/// Links of image and file messages: kept as the old server showed them, or rewritten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    pub kept: u64,
    pub rewritten: u64,
}

/// A legacy row and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub table: &'static str,
    pub id: u64,
    pub reason: String,
}

impl From<RowNote> for Note {
    fn from(note: RowNote) -> Self {
        Note {
            table: note.row.table,
            id: note.row.id,
            reason: note.reason,
        }
    }
}

/// Imports the legacy history into the log; `progress` hears the report so far and the number
/// of legacy conversations after each page.
pub async fn import(
    store: &EventStore,
    source: &LegacySource,
    options: &ImportOptions,
    progress: &mut dyn FnMut(&ImportReport, u64),
) -> Result<ImportReport, ImportError> {
    let mut report = ImportReport {
        dry_run: options.dry_run,
        ..ImportReport::default()
    };
    let bounds = source.bounds().await?;
    reserve(
        store,
        source,
        (bounds.max_conversation_id, bounds.max_message_id),
        options.dry_run,
    )
    .await?;
    for (message, conversation) in source.orphan_messages(ORPHANS_LISTED).await? {
        report.messages.skipped += 1;
        report.skipped.push(Note {
            table: events::import::MESSAGES_TABLE,
            id: message,
            reason: format!("its conversation {conversation} does not exist"),
        });
    }

    let mut after = 0;
    loop {
        let page = read_page(source, after, options).await?;
        let Some(last) = page.last_id else {
            break;
        };
        after = last;
        report.conversations.skipped += page.unknown_users.len() as u64;
        for (conversation, messages) in page.unknown_users {
            report.messages.skipped += messages;
            report.skipped.push(Note {
                table: events::import::CONVERSATIONS_TABLE,
                id: conversation.id,
                reason: format!(
                    "unknown user {} (no row in users): not imported, nor its {messages} messages",
                    conversation.user_id
                ),
            });
        }
        let outcomes = append_imported(store, &page.conversations, options.dry_run).await?;
        for (conversation, outcome) in page.conversations.into_iter().zip(outcomes) {
            match outcome {
                ImportOutcome::Imported { events, closed_for } => {
                    report.conversations.imported += 1;
                    report.events += events;
                    if let Some(other) = closed_for {
                        report.adjusted.push(Note {
                            table: events::import::CONVERSATIONS_TABLE,
                            id: conversation.legacy.id,
                            reason: format!(
                                "closed: its user's active conversation in chatd is {other}"
                            ),
                        });
                    }
                    count_imported(&mut report, conversation.history, &page.rewritten);
                }
                ImportOutcome::AlreadyImported => report.conversations.already_imported += 1,
                ImportOutcome::Taken => {
                    report.conversations.skipped += 1;
                    report.skipped.push(Note {
                        table: events::import::CONVERSATIONS_TABLE,
                        id: conversation.legacy.id,
                        reason: "chatd has a conversation of its own with this id".into(),
                    });
                }
            }
        }
        for (messages, history) in page.unrepresentable {
            report.conversations.skipped += 1;
            report.messages.skipped += messages;
            report
                .skipped
                .extend(history.skipped.into_iter().map(Note::from));
        }
        progress(&report, bounds.conversations);
    }
    Ok(report)
}

/// Reserves the legacy id ranges, reading again while a concurrent import moves them.
async fn reserve(
    store: &EventStore,
    source: &LegacySource,
    highest: (u64, u64),
    dry_run: bool,
) -> Result<(), ImportError> {
    for _ in 0..RESERVE_ATTEMPTS {
        let reserved = legacy_reservation(store).await?;
        let lowest = source.lowest_ids_above(reserved.0, reserved.1).await?;
        if reserve_legacy_ids(store, reserved, lowest, highest, dry_run).await? {
            return Ok(());
        }
    }
    Err(StoreError::Invalid(
        "another import kept moving the reserved legacy ids; run this one when it is done".into(),
    )
    .into())
}

/// One page of legacy conversations, read as histories.
pub(crate) struct Page {
    pub last_id: Option<u64>,
    pub conversations: Vec<ImportedConversation>,
    /// Conversations whose user the legacy database does not have, with their message counts.
    unknown_users: Vec<(LegacyConversation, u64)>,
    /// Conversations the domain could not read as any history (their message counts).
    unrepresentable: Vec<(u64, ImportedHistory)>,
    /// Messages whose `file_url` was rewritten.
    rewritten: HashSet<u64>,
}

/// Reads the page of conversations after `after` and the domain's history of each.
pub(crate) async fn read_page(
    source: &LegacySource,
    after: u64,
    options: &ImportOptions,
) -> Result<Page, LegacyError> {
    let rows = source
        .conversations_after(after, options.batch.max(1))
        .await?;
    let ids: Vec<u64> = rows.iter().map(|(c, _)| c.id).collect();
    let mut messages = source.messages_of(&ids).await?;
    let mut rewritten = HashSet::new();
    for message in messages.values_mut().flatten() {
        if let Some(url) = &message.file_url
            && let Some(new) = rewrite(url, &options.rewrite_file_base)
        {
            message.file_url = Some(new);
            rewritten.insert(message.id);
        }
    }
    let mut admin_ids: Vec<u64> = rows
        .iter()
        .filter_map(|(c, _)| c.admin_id)
        .chain(messages.values().flatten().filter_map(|m| m.admin_id))
        .collect();
    admin_ids.sort_unstable();
    admin_ids.dedup();
    let admins = source.admin_identifiers(&admin_ids).await?;
    let admin_identifier = |id: u64| admins.get(&id).cloned();

    let mut page = Page {
        last_id: ids.last().copied(),
        conversations: Vec::with_capacity(rows.len()),
        unknown_users: Vec::new(),
        unrepresentable: Vec::new(),
        rewritten,
    };
    for (legacy, known_user) in rows {
        let messages: Vec<LegacyMessage> = messages.remove(&legacy.id).unwrap_or_default();
        if !known_user {
            page.unknown_users.push((legacy, messages.len() as u64));
            continue;
        }
        let history = import_history(&legacy, &messages, &admin_identifier);
        if history.events.is_empty() {
            page.unrepresentable.push((messages.len() as u64, history));
            continue;
        }
        page.conversations
            .push(ImportedConversation { legacy, history });
    }
    Ok(page)
}

/// Adds an imported conversation's history to the report.
fn count_imported(report: &mut ImportReport, history: ImportedHistory, rewritten: &HashSet<u64>) {
    report.messages.imported += history.messages;
    report.messages.skipped += history
        .skipped
        .iter()
        .filter(|note| note.row.table == events::import::MESSAGES_TABLE)
        .count() as u64;
    report.read_receipts += history.read_receipts;
    for event in &history.events {
        if let ConversationEvent::MessageSent {
            message_id,
            file_path: Some(_),
            ..
        } = &event.event
        {
            if rewritten.contains(message_id) {
                report.files.rewritten += 1;
            } else {
                report.files.kept += 1;
            }
        }
    }
    report
        .skipped
        .extend(history.skipped.into_iter().map(Note::from));
    report
        .adjusted
        .extend(history.adjusted.into_iter().map(Note::from));
}

/// `url` with the first matching old base replaced by its new one, if any matches.
pub fn rewrite(url: &str, rules: &[(String, String)]) -> Option<String> {
    rules.iter().find_map(|(old, new)| {
        url.strip_prefix(old.as_str())
            .map(|rest| format!("{new}{rest}"))
    })
}

/// Parses `OLD=NEW`, as `--rewrite-file-base` takes it.
pub fn parse_rewrite(rule: &str) -> Result<(String, String), String> {
    match rule.split_once('=') {
        Some((old, new)) if !old.is_empty() && !new.is_empty() => {
            Ok((old.to_string(), new.to_string()))
        }
        _ => Err(format!(
            "`{rule}`: expected OLD=NEW, e.g. http://47.94.108.189=https://files.example.com"
        )),
    }
}
