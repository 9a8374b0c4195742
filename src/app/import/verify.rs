//! `chatd import verify`: the legacy rows against what chatd's API shows of them, per
//! conversation (status, assignment, user; each message's id, sender, type, content, file link,
//! read flag and time), stopping at the first difference.
//!
//! The expected view is the domain's reading of the same rows, with the same rules: a row the
//! import skips is expected absent, an adjusted one as adjusted. Messages chatd recorded after
//! the import (ids above the reserved legacy range) are not compared.

use events::ConversationEvent;
use events::import::ImportedEvent;

use super::{ImportError, ImportOptions, read_page};
use crate::commands::imported::{ImportedConversation, legacy_reservation};
use crate::store::legacy::LegacySource;
use crate::store::{EventStore, MessageRow, MessageWindow};

/// Messages read from chatd per page.
const MESSAGES_PER_READ: u32 = 200;

/// What a verification compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub conversations: u64,
    pub messages: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("conversation {conversation}: {difference}")]
    Difference {
        conversation: u64,
        difference: String,
    },
}

impl From<crate::store::StoreError> for VerifyError {
    fn from(error: crate::store::StoreError) -> Self {
        VerifyError::Import(error.into())
    }
}

impl From<crate::store::legacy::LegacyError> for VerifyError {
    fn from(error: crate::store::legacy::LegacyError) -> Self {
        VerifyError::Import(error.into())
    }
}

/// Compares every importable legacy conversation with chatd's view of it; `progress` hears the
/// report so far and the number of legacy conversations after each page.
pub async fn verify(
    store: &EventStore,
    source: &LegacySource,
    options: &ImportOptions,
    progress: &mut dyn FnMut(&VerifyReport, u64),
) -> Result<VerifyReport, VerifyError> {
    let total = source.bounds().await?.conversations;
    let (_, legacy_messages_high) = legacy_reservation(store).await?;
    let mut report = VerifyReport::default();
    let mut after = 0;
    loop {
        let page = read_page(store, source, after, options).await?;
        let Some(last) = page.last_id else {
            break;
        };
        after = last;
        for conversation in &page.conversations {
            report.messages += compare(store, conversation, legacy_messages_high).await?;
            report.conversations += 1;
        }
        progress(&report, total);
    }
    Ok(report)
}

/// Compares one conversation; how many messages matched.
async fn compare(
    store: &EventStore,
    imported: &ImportedConversation,
    legacy_messages_high: u64,
) -> Result<u64, VerifyError> {
    let id = imported.legacy.id;
    let differs = |difference: String| VerifyError::Difference {
        conversation: id,
        difference,
    };
    let Some(row) = store.conversation(id).await? else {
        return Err(differs("not in chatd (was it imported?)".into()));
    };
    let expected = &imported.history.conversation;
    let expected_status = expected.status().map(|s| s.as_str()).unwrap_or_default();
    if row.status != expected_status && !closed_for_another(store, imported, &row.status).await? {
        return Err(differs(format!(
            "status is {}, the legacy row says {expected_status}",
            row.status
        )));
    }
    if row.user_id != imported.legacy.user_id {
        return Err(differs(format!(
            "user is {}, the legacy row says {}",
            row.user_id, imported.legacy.user_id
        )));
    }
    if row.admin_id != expected.admin_id() {
        return Err(differs(format!(
            "assigned to {:?}, the legacy row says {:?}",
            row.admin_id,
            expected.admin_id()
        )));
    }

    let expected: Vec<&ImportedEvent> = imported
        .history
        .events
        .iter()
        .filter(|e| matches!(e.event, ConversationEvent::MessageSent { .. }))
        .collect();
    let shown = messages_of(store, id, legacy_messages_high).await?;
    if shown.len() != expected.len() {
        return Err(differs(format!(
            "chatd shows {} messages, the legacy rows make {}",
            shown.len(),
            expected.len()
        )));
    }
    let unread_by_staff = imported.history.conversation.unread_by_staff();
    let unread_by_user = imported.history.conversation.unread_by_user();
    for (message, imported_event) in shown.iter().zip(expected) {
        let ConversationEvent::MessageSent {
            message_id,
            sender,
            message_type,
            content,
            file_id,
            file_path,
            ..
        } = &imported_event.event
        else {
            continue;
        };
        let is_read = !unread_by_staff.contains(message_id) && !unread_by_user.contains(message_id);
        let mut differences = Vec::new();
        if message.id != *message_id {
            differences.push(format!(
                "id {} where the legacy row has {message_id}",
                message.id
            ));
        }
        if message.sender_role != sender.role.as_str()
            || message.sender_identifier != sender.identifier
        {
            differences.push(format!(
                "sender {} {:?}, expected {} {:?}",
                message.sender_role, message.sender_identifier, sender.role, sender.identifier
            ));
        }
        if message.message_type != message_type.as_str() {
            differences.push(format!(
                "type {}, expected {message_type}",
                message.message_type
            ));
        }
        if message.content != *content && !message.erased {
            differences.push("content differs".into());
        }
        if message.file_id != *file_id || message.file_url != *file_path {
            differences.push(format!(
                "file {:?} at {:?}, expected {file_id:?} at {file_path:?}",
                message.file_id, message.file_url
            ));
        }
        if message.is_read != is_read {
            differences.push(format!("is_read {}, expected {is_read}", message.is_read));
        }
        if message.timestamp != imported_event.at {
            differences.push(format!(
                "timestamp {}, expected {}",
                crate::wire::wire_time(message.timestamp),
                crate::wire::wire_time(imported_event.at)
            ));
        }
        if !differences.is_empty() {
            return Err(differs(format!(
                "message {message_id}: {}",
                differences.join("; ")
            )));
        }
    }
    Ok(shown.len() as u64)
}

/// Whether an active legacy conversation shows closed because its user already had another
/// active conversation in chatd when it was imported (the import closes it then, and says so).
async fn closed_for_another(
    store: &EventStore,
    imported: &ImportedConversation,
    shown_status: &str,
) -> Result<bool, VerifyError> {
    let active = events::ConversationStatus::Active;
    if shown_status != events::ConversationStatus::Closed.as_str()
        || imported.history.conversation.status() != Some(active)
    {
        return Ok(false);
    }
    Ok(store
        .latest_conversation_of(imported.legacy.user_id)
        .await?
        .is_some_and(|other| other.id != imported.legacy.id && other.status == active.as_str()))
}

/// A conversation's messages as chatd shows them, up to the legacy id range's end.
async fn messages_of(
    store: &EventStore,
    conversation_id: u64,
    legacy_messages_high: u64,
) -> Result<Vec<MessageRow>, VerifyError> {
    let mut shown = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .messages(
                conversation_id,
                MessageWindow {
                    after_id: Some(after),
                    before_id: None,
                    limit: MESSAGES_PER_READ,
                },
            )
            .await?;
        let Some(last) = page.last().map(|m| m.id) else {
            break;
        };
        let full = page.len() == MESSAGES_PER_READ as usize;
        shown.extend(page.into_iter().filter(|m| m.id <= legacy_messages_high));
        if !full || last >= legacy_messages_high {
            break;
        }
        after = last;
    }
    Ok(shown)
}
