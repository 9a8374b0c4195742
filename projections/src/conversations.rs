//! The `conversations` table: one row per conversation with its status, assignee, unread counts
//! for each side, last message preview and time, feedback, and the stream version it reflects.
//!
//! A batch is folded in memory first, one change per conversation (later values win, counts
//! add up), then written with one statement per conversation touched. An archived conversation's
//! row moves to `conversations_archive`, where what may still follow its archival is written.

use std::collections::BTreeMap;

use async_trait::async_trait;
use events::{ConversationEvent, Role};

use crate::archive::{archive_of, move_rows};
use crate::{LoggedEvent, ProjectionError, Projector, SqlTxn, SqlValue, Tables};

/// Every column, in the order of the table's definition, for moving a row to the archive.
const COLUMNS: &str = "id, user_id, user_identifier, admin_id, status, last_message_id, \
     last_message_preview, last_message_sender_role, last_message_type, last_message_at, \
     message_count, unread_for_user, unread_for_admin, feedback_rating, feedback_comment, \
     feedback_at, closed_at, created_at, updated_at, version, erased, activity_at";

/// Characters of the last message kept for the conversation list.
pub const PREVIEW_CHARS: usize = 100;

pub struct ConversationsProjector;

fn preview(content: &str) -> String {
    content.trim().chars().take(PREVIEW_CHARS).collect()
}

/// What a batch does to one conversation row.
struct Change {
    /// Opened in this batch: the row is inserted, with every column below folded in.
    opened: Option<(u64, String, i64)>,
    columns: BTreeMap<&'static str, SqlValue>,
    message_count: i64,
    unread_for_user: i64,
    unread_for_admin: i64,
    /// The first event of the batch for this conversation (named when the row is missing).
    first_position: u64,
    /// Erased after its last message: the stored preview is emptied.
    erase_preview: bool,
    /// The last message folded in this batch, if any.
    last_message_here: Option<u64>,
    /// A message of an earlier batch changed (edited, deleted): its new preview, written only if
    /// it is still the last one.
    changed_preview: Option<(u64, String)>,
    /// Archived in this batch: the row ends up in the archive table.
    archived: bool,
}

impl Change {
    fn new(position: u64) -> Self {
        Change {
            opened: None,
            columns: BTreeMap::new(),
            message_count: 0,
            unread_for_user: 0,
            unread_for_admin: 0,
            first_position: position,
            erase_preview: false,
            last_message_here: None,
            changed_preview: None,
            archived: false,
        }
    }

    fn fold(&mut self, event: &LoggedEvent) -> Result<(), ProjectionError> {
        let at = SqlValue::Int(event.recorded_at_micros);
        let mut set = |column: &'static str, value: SqlValue| {
            self.columns.insert(column, value);
        };
        set("updated_at", at.clone());
        set("version", event.sequence.into());
        let mut erased = false;
        match event.decode()? {
            ConversationEvent::ConversationOpened { user, .. } => {
                set("status", "active".into());
                set("activity_at", at.clone());
                self.opened = Some((user.id, user.identifier.clone(), event.recorded_at_micros));
            }
            ConversationEvent::MessageSent {
                message_id,
                sender,
                message_type,
                content,
                ..
            } => {
                self.last_message_here = Some(*message_id);
                self.changed_preview = None;
                set("last_message_id", message_id.into());
                set("last_message_preview", preview(content).into());
                set("last_message_sender_role", sender.role.as_str().into());
                set("last_message_type", message_type.as_str().into());
                set("last_message_at", at.clone());
                set("activity_at", at);
                self.message_count += 1;
                if sender.role == Role::User {
                    self.unread_for_admin += 1;
                } else {
                    self.unread_for_user += 1;
                }
            }
            ConversationEvent::MessagesRead {
                message_ids,
                reader,
            } => {
                let read = i64::try_from(message_ids.len()).unwrap_or(i64::MAX);
                if reader.role == Role::User {
                    self.unread_for_user -= read;
                } else {
                    self.unread_for_admin -= read;
                }
            }
            ConversationEvent::ConversationClosed { .. } => {
                set("status", "closed".into());
                set("closed_at", at);
            }
            ConversationEvent::ConversationReopened { .. } => {
                set("status", "active".into());
                set("closed_at", SqlValue::Null);
            }
            ConversationEvent::ConversationArchived { .. } => {
                set("status", "archived".into());
                self.archived = true;
            }
            ConversationEvent::ConversationAssigned { admin_id, .. } => {
                set("admin_id", admin_id.into())
            }
            ConversationEvent::FeedbackGiven {
                rating, comment, ..
            } => {
                set("feedback_rating", rating.into());
                // An erased comment reads empty; no comment is ever given empty.
                set(
                    "feedback_comment",
                    comment.as_ref().filter(|c| !c.is_empty()).into(),
                );
                set("feedback_at", at);
            }
            // Files are listed by their own projection; a message carrying one counts above.
            ConversationEvent::FileUploaded { .. } => {}
            ConversationEvent::MessageEdited {
                message_id,
                content,
                ..
            } => self.change_preview(*message_id, preview(content)),
            ConversationEvent::MessageDeleted { message_id, .. } => {
                self.change_preview(*message_id, String::new())
            }
            ConversationEvent::ConversationErased { .. } => {
                set("erased", SqlValue::Int(1));
                set("feedback_comment", SqlValue::Null);
                erased = true;
                self.changed_preview = None;
            }
        }
        if erased {
            // The preview of a message folded in this batch is known here; an earlier one is
            // emptied in place (and stays null when there was no message).
            if self.columns.contains_key("last_message_preview") {
                self.columns
                    .insert("last_message_preview", SqlValue::from(""));
            } else {
                self.erase_preview = true;
            }
        }
        Ok(())
    }

    /// The conversation list previews the last message as it reads now.
    fn change_preview(&mut self, message_id: u64, preview: String) {
        if self.last_message_here == Some(message_id) {
            self.columns
                .insert("last_message_preview", SqlValue::from(preview));
        } else if self.last_message_here.is_none() {
            self.changed_preview = Some((message_id, preview));
        }
    }

    /// Writes the change to the row in `live` or, once archived, in `archive`.
    async fn write(
        self,
        txn: &mut dyn SqlTxn,
        live: &str,
        archive: &str,
        id: u64,
    ) -> Result<(), ProjectionError> {
        let counters = [
            ("message_count", self.message_count),
            ("unread_for_user", self.unread_for_user),
            ("unread_for_admin", self.unread_for_admin),
        ];
        if let Some((user_id, identifier, created_at)) = self.opened {
            // Opened and archived in one batch (a replay): straight into the archive.
            let table = if self.archived { archive } else { live };
            let mut names = vec!["id", "user_id", "user_identifier", "created_at"];
            let mut params: Vec<SqlValue> = vec![
                id.into(),
                user_id.into(),
                identifier.into(),
                SqlValue::Int(created_at),
            ];
            for (name, value) in counters {
                names.push(name);
                params.push(SqlValue::Int(value));
            }
            for (name, value) in self.columns {
                names.push(name);
                params.push(value);
            }
            let placeholders = vec!["?"; names.len()].join(", ");
            let sql = format!(
                "insert into {table} ({}) values ({placeholders})",
                names.join(", ")
            );
            return match txn.execute(&sql, &params).await {
                Err(ProjectionError::Duplicate(reason)) => Err(ProjectionError::Apply {
                    position: self.first_position,
                    reason: format!("conversation {id} is already in {table}: {reason}"),
                }),
                other => other.map(|_| ()),
            };
        }
        let mut assignments: Vec<String> = counters
            .iter()
            .filter(|(_, delta)| *delta != 0)
            .map(|(name, _)| format!("{name} = {name} + ?"))
            .collect();
        let mut params: Vec<SqlValue> = counters
            .iter()
            .filter(|(_, delta)| *delta != 0)
            .map(|(_, delta)| SqlValue::Int(*delta))
            .collect();
        for (name, value) in self.columns {
            assignments.push(format!("{name} = ?"));
            params.push(value);
        }
        if self.erase_preview {
            assignments.push(
                "last_message_preview = case when last_message_preview is null then null else '' end"
                    .to_string(),
            );
        }
        if let Some((message_id, preview)) = self.changed_preview {
            assignments.push(
                "last_message_preview = case when last_message_id = ? then ? \
                 else last_message_preview end"
                    .to_string(),
            );
            params.push(message_id.into());
            params.push(preview.into());
        }
        params.push(id.into());
        let update =
            |table: &str| format!("update {table} set {} where id = ?", assignments.join(", "));
        // A conversation archived before this batch is in the archive.
        if txn.execute(&update(live), &params).await? != 1
            && txn.execute(&update(archive), &params).await? != 1
        {
            return Err(ProjectionError::Apply {
                position: self.first_position,
                reason: format!("conversation {id} is neither in {live} nor in {archive}"),
            });
        }
        if self.archived {
            move_rows(txn, live, archive, COLUMNS, "id", id).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Projector for ConversationsProjector {
    fn name(&self) -> &'static str {
        "conversations"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["conversations", "conversations_archive"]
    }

    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError> {
        let live = tables.name("conversations");
        let archive = archive_of(tables, "conversations");
        let mut changes: BTreeMap<u64, Change> = BTreeMap::new();
        for event in events {
            let id = event.conversation_id()?;
            changes
                .entry(id)
                .or_insert_with(|| Change::new(event.position))
                .fold(event)?;
        }
        for (id, change) in changes {
            change.write(txn, &live, &archive, id).await?;
        }
        Ok(())
    }
}
