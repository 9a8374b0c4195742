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
use crate::files::FileStore;
use crate::store::legacy::{LegacyError, LegacySource};
use crate::store::{EventStore, StoreError};

/// Conversations per transaction unless told otherwise.
pub const DEFAULT_BATCH: u32 = 100;
/// Orphaned messages (no conversation) listed at most.
const ORPHANS_LISTED: u32 = 1000;
/// Events per projection transaction while this process brings the read tables up to date.
const CATCH_UP_BATCH: u32 = 5_000;
/// How long the read tables may go without progress before the wait for them gives up.
const READ_TABLES_STALL: std::time::Duration = std::time::Duration::from_secs(60);
/// How often the reservation is read again when a concurrent import moved it.
const RESERVE_ATTEMPTS: usize = 5;

/// How to import.
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// Read and check everything, write nothing.
    pub dry_run: bool,
    /// Conversations per transaction.
    pub batch: u32,
    /// `file_url` prefixes to replace (old, new), the first that matches.
    pub rewrite_file_base: Vec<(String, String)>,
    /// Where the legacy server's files are on disk, to copy into chatd's store.
    pub files: Option<LegacyFiles>,
}

/// The legacy server's uploads directory, and chatd's file store to copy them into.
#[derive(Clone)]
pub struct LegacyFiles {
    pub dir: std::path::PathBuf,
    /// None: work out where each file would go, store nothing (a dry run, a verification).
    pub store: Option<FileStore>,
    pub max_bytes: u64,
    pub max_pixels: u64,
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
    /// Imported by an earlier run, and unchanged since.
    pub already_imported: u64,
    /// Imported by an earlier run; what their legacy rows gained since was appended.
    pub updated: u64,
    /// Imported by an earlier run and changed since both in chatd and in the legacy rows: the
    /// legacy changes were not applied (each also in `skipped`).
    pub changed_in_both: u64,
    pub skipped: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessageCounts {
    pub imported: u64,
    pub skipped: u64,
}

/// Files of image and file messages: links kept as the old server showed them, rewritten, or
/// files copied into chatd's store (`--files-dir`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    pub kept: u64,
    pub rewritten: u64,
    pub copied: u64,
    /// Files under `--files-dir` that could not be copied (each also in `adjusted`): their
    /// messages keep the link.
    pub not_copied: u64,
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
        let mut page = read_page(store, source, after, options).await?;
        let Some(last) = page.last_id else {
            break;
        };
        after = last;
        report.conversations.skipped += page.unknown_users.len() as u64;
        for (conversation, messages) in std::mem::take(&mut page.unknown_users) {
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
        let conversations = std::mem::take(&mut page.conversations);
        for (conversation, outcome) in conversations.into_iter().zip(outcomes) {
            match outcome {
                ImportOutcome::Imported { events, closed_for } => {
                    report.conversations.imported += 1;
                    let id = conversation.legacy.id;
                    let history = conversation.history;
                    count_appended(&mut report, id, events, closed_for, history, &page);
                }
                ImportOutcome::Updated {
                    events,
                    closed_for,
                    history,
                } => {
                    report.conversations.updated += 1;
                    let id = conversation.legacy.id;
                    count_appended(&mut report, id, events, closed_for, *history, &page);
                }
                ImportOutcome::AlreadyImported => report.conversations.already_imported += 1,
                ImportOutcome::ChangedInBoth => {
                    report.conversations.changed_in_both += 1;
                    report.skipped.push(Note {
                        table: events::import::CONVERSATIONS_TABLE,
                        id: conversation.legacy.id,
                        reason: "changed in chatd since it was imported, and in the legacy \
                                 rows too: their later changes are not applied"
                            .into(),
                    });
                }
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
        for (messages, history) in std::mem::take(&mut page.unrepresentable) {
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
    /// Files under `--files-dir` that could not be copied.
    not_copied: Vec<Note>,
}

/// Reads the page of conversations after `after` and the domain's history of each.
pub(crate) async fn read_page(
    store: &EventStore,
    source: &LegacySource,
    after: u64,
    options: &ImportOptions,
) -> Result<Page, ImportError> {
    let rows = source
        .conversations_after(after, options.batch.max(1))
        .await?;
    let ids: Vec<u64> = rows.iter().map(|(c, _)| c.id).collect();
    let mut messages = source.messages_of(&ids).await?;
    // A later pass stores again only the files of messages chatd does not show yet (read tables
    // that lag behind the log only mean a file stored again under the same name).
    let shown = match &options.files {
        Some(LegacyFiles { store: Some(_), .. }) => store.last_message_ids(&ids).await?,
        _ => Default::default(),
    };
    let mut rewritten = HashSet::new();
    let mut not_copied = Vec::new();
    for (conversation_id, messages) in messages.iter_mut() {
        let newest_shown = shown.get(conversation_id).copied().unwrap_or(0);
        for message in messages.iter_mut() {
            if let (Some(files), Some(url), true) =
                (&options.files, &message.file_url, message.id > newest_shown)
            {
                match copy_file(
                    files,
                    message.id,
                    &message.message_type,
                    url,
                    message.timestamp,
                )
                .await
                {
                    Ok(upload) => message.upload = upload,
                    Err(reason) => not_copied.push(Note {
                        table: events::import::MESSAGES_TABLE,
                        id: message.id,
                        reason: format!("file not copied, link kept: {reason}"),
                    }),
                }
            }
            if let Some(url) = &message.file_url
                && let Some(new) = rewrite(url, &options.rewrite_file_base)
            {
                message.file_url = Some(new);
                rewritten.insert(message.id);
            }
        }
    }
    let mut admin_ids: Vec<u64> = rows
        .iter()
        .filter_map(|(c, _)| c.admin_id)
        .chain(messages.values().flatten().filter_map(|m| m.admin_id))
        .collect();
    admin_ids.sort_unstable();
    admin_ids.dedup();
    let admins = std::sync::Arc::new(source.admin_identifiers(&admin_ids).await?);
    let admin_identifier = |id: u64| admins.get(&id).cloned();

    let mut page = Page {
        last_id: ids.last().copied(),
        conversations: Vec::with_capacity(rows.len()),
        unknown_users: Vec::new(),
        unrepresentable: Vec::new(),
        rewritten,
        not_copied,
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
        page.conversations.push(ImportedConversation {
            legacy,
            messages,
            admins: admins.clone(),
            history,
        });
    }
    Ok(page)
}

/// Adds what was appended of a conversation to the report: the events, the conversation closed
/// for its user's active one in chatd (if so), and the history they record.
fn count_appended(
    report: &mut ImportReport,
    conversation_id: u64,
    events: u64,
    closed_for: Option<u64>,
    history: ImportedHistory,
    page: &Page,
) {
    report.events += events;
    if let Some(other) = closed_for {
        report.adjusted.push(Note {
            table: events::import::CONVERSATIONS_TABLE,
            id: conversation_id,
            reason: format!("closed: its user's active conversation in chatd is {other}"),
        });
    }
    report.messages.imported += history.messages;
    report.messages.skipped += history
        .skipped
        .iter()
        .filter(|note| note.row.table == events::import::MESSAGES_TABLE)
        .count() as u64;
    report.read_receipts += history.read_receipts;
    for event in &history.events {
        match &event.event {
            ConversationEvent::FileUploaded { .. } => report.files.copied += 1,
            ConversationEvent::MessageSent {
                message_id,
                file_path: Some(path),
                ..
            } if crate::files::is_external_link(path) => {
                if page.rewritten.contains(message_id) {
                    report.files.rewritten += 1;
                } else {
                    report.files.kept += 1;
                }
                if let Some(note) = page.not_copied.iter().find(|n| n.id == *message_id) {
                    report.files.not_copied += 1;
                    report.adjusted.push(note.clone());
                }
            }
            _ => {}
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

/// Waits until the read tables reach the log's head: applied by the nodes that hold the
/// projections' leases, or by this process when none does. False when they stop moving.
pub async fn read_tables_caught_up(store: &EventStore, who: &str) -> Result<bool, StoreError> {
    let head = store.head_position().await?;
    let (_wake, woken) = tokio::sync::watch::channel(head);
    let projections = projections::Projections::start(
        std::sync::Arc::new(store.clone()),
        projections::all_projectors(),
        woken,
        projections::RuntimeOptions {
            // Whole pages of imported history at a time, when this process applies them.
            batch_size: CATCH_UP_BATCH,
            ..projections::RuntimeOptions::new(format!("chatd-{who}-{}", std::process::id()))
        },
    );
    let lowest = |projections: &projections::Projections| {
        projections
            .statuses()
            .iter()
            .map(|s| s.position)
            .min()
            .unwrap_or(0)
    };
    let mut last = lowest(&projections);
    let mut stalled_since = tokio::time::Instant::now();
    let caught_up = loop {
        if projections
            .wait_for(head, std::time::Duration::from_secs(1))
            .await
        {
            break true;
        }
        let now = lowest(&projections);
        if now > last {
            last = now;
            stalled_since = tokio::time::Instant::now();
        } else if stalled_since.elapsed() >= READ_TABLES_STALL
            || projections
                .statuses()
                .iter()
                .any(|s| s.state == projections::ProjectorState::Failed)
        {
            break false;
        }
    };
    projections.stop().await;
    Ok(caught_up)
}

/// Copies the file behind a legacy link from the legacy server's uploads directory into chatd's
/// store, as an upload of the message's kind (its type decided from the bytes, as for uploads).
/// None when the message carries no file; why not, when it cannot be copied.
async fn copy_file(
    files: &LegacyFiles,
    message_id: u64,
    message_type: &str,
    url: &str,
    at: i64,
) -> Result<Option<events::UploadedFile>, String> {
    let kind = match message_type.parse::<events::MessageType>() {
        Ok(kind) if kind.carries_file() => kind,
        _ => return Ok(None),
    };
    let Some(local) = local_file(&files.dir, url) else {
        return Err(format!("no file for {url} under {}", files.dir.display()));
    };
    let length = tokio::fs::metadata(&local)
        .await
        .map_err(|e| format!("{}: {e}", local.display()))?
        .len();
    if length > files.max_bytes {
        return Err(format!(
            "{} is {length} bytes; uploads are at most {} bytes",
            local.display(),
            files.max_bytes
        ));
    }
    let bytes = tokio::fs::read(&local)
        .await
        .map_err(|e| format!("{}: {e}", local.display()))?;
    if bytes.is_empty() {
        return Err(format!("{} is empty", local.display()));
    }
    let detected = crate::files::detect(&bytes)
        .ok_or_else(|| format!("{}: {}", local.display(), crate::files::not_allowed()))?;
    if detected.kind != kind {
        return Err(format!(
            "{} is {}, not an {kind}",
            local.display(),
            detected.mime_type
        ));
    }
    let size = crate::files::image_size(&detected, &bytes, files.max_pixels)
        .map_err(|refusal| format!("{}: {refusal}", local.display()))?;
    // Named by the legacy message, so a second run stores the same file under the same name.
    let file_id = {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(format!("chatd-import:{message_id}"))[..16])
    };
    let path = crate::files::storage_path(at, &file_id, detected.extension);
    let name = local.file_name().and_then(|n| n.to_str());
    let upload = crate::files::uploaded_file(file_id, &bytes, &detected, size, name, path.clone());
    if let Some(store) = &files.store {
        store
            .put(&path, bytes.into())
            .await
            .map_err(|e| format!("storing {path}: {e}"))?;
    }
    Ok(Some(upload))
}

/// The file a legacy link names under the uploads directory: the link's path as it is below the
/// directory, then without its first segment (a directory given as `.../uploads`), then its name
/// alone. Never a path outside the directory.
fn local_file(dir: &std::path::Path, url: &str) -> Option<std::path::PathBuf> {
    let path = url.split_once("://").map_or(url, |(_, rest)| {
        rest.split_once('/').map_or("", |(_, path)| path)
    });
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments
        .iter()
        .any(|s| *s == ".." || *s == "." || s.contains('\\'))
    {
        return None;
    }
    let candidates = [
        segments.join("/"),
        segments
            .get(1..)
            .map(|rest| rest.join("/"))
            .unwrap_or_default(),
        segments.last().map(|s| s.to_string()).unwrap_or_default(),
    ];
    candidates
        .into_iter()
        .filter(|candidate| !candidate.is_empty())
        .map(|candidate| dir.join(candidate))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_link_finds_its_file_under_the_uploads_directory_and_nowhere_else() {
        let dir = std::env::temp_dir().join(format!("chatd-import-files-{}", std::process::id()));
        let nested = dir.join("uploads/chat/2025/07/14");
        std::fs::create_dir_all(&nested).expect("directories");
        std::fs::write(nested.join("a.jpg"), b"x").expect("file");
        std::fs::write(dir.join("b.png"), b"x").expect("file");
        let found = |url: &str| {
            local_file(&dir, url).map(|p| p.strip_prefix(&dir).map(|p| p.to_path_buf()))
        };
        assert_eq!(
            found("http://47.94.108.189/uploads/chat/2025/07/14/a.jpg?v=1"),
            Some(Ok("uploads/chat/2025/07/14/a.jpg".into()))
        );
        assert_eq!(found("https://x/y/b.png"), Some(Ok("b.png".into())));
        assert_eq!(found("http://x/uploads/../../etc/passwd"), None);
        assert_eq!(found("http://x/uploads/chat/missing.jpg"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rewrite_replaces_the_first_matching_base_only() {
        let rules = vec![
            (
                "http://47.94.108.189".to_string(),
                "https://files.example.com".to_string(),
            ),
            ("http://".to_string(), "https://".to_string()),
        ];
        assert_eq!(
            rewrite("http://47.94.108.189/uploads/a.jpg", &rules).as_deref(),
            Some("https://files.example.com/uploads/a.jpg")
        );
        assert_eq!(
            rewrite("http://other/a.jpg", &rules).as_deref(),
            Some("https://other/a.jpg")
        );
        assert_eq!(rewrite("uploads/a.jpg", &rules), None);
        assert!(parse_rewrite("nothing").is_err());
        assert!(parse_rewrite("=x").is_err());
    }
}
