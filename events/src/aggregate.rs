//! The `Conversation` aggregate: the state a decision needs, folded from events, and the rules
//! that decide each command.
//!
//! Rules are checked in one order, and every check happens before the first event is written,
//! so a refused command writes nothing: existence (NotFound) -> role and ownership (Forbidden)
//! -> input (EmptyMessage, Validation) -> state (Conflict).

use std::collections::{BTreeMap, BTreeSet};

use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use crate::actor::{Actor, Role};
use crate::command::{
    AttachedFile, ConversationCommand, ConversationServices, NewMessage, SentMessage, UploadedFile,
};
use crate::content::{
    MAX_CLIENT_MSG_ID_CHARS, MAX_CONTENT_CHARS, MAX_DELETION_REASON_CHARS,
    MAX_ERASURE_REASON_CHARS, MAX_FEEDBACK_COMMENT_CHARS, MAX_FILE_ID_CHARS, MAX_FILE_NAME_CHARS,
    MAX_ID, MAX_READ_IDS_PER_COMMAND, is_bidi_format, sanitize_content, trimmed_len,
};
use crate::error::ConversationError;
use crate::event::ConversationEvent;
use crate::kinds::{ConversationStatus, MessageType};

/// One support conversation between a user and the support side (admins and the system).
///
/// Memory is bounded by unread messages, not by history: per side it keeps only the ids still
/// unread, plus the last message id and a count.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Conversation {
    id: Option<u64>,
    user: Option<Actor>,
    status: Option<ConversationStatus>,
    admin_id: Option<u64>,
    last_message_id: Option<u64>,
    message_count: u64,
    /// Messages the user sent that the support side has not read yet.
    #[serde(with = "id_runs")]
    unread_by_staff: BTreeSet<u64>,
    /// Messages the support side sent that the user has not read yet.
    #[serde(with = "id_runs")]
    unread_by_user: BTreeSet<u64>,
    feedback_given: bool,
    /// Files uploaded here, by id: who uploaded each, for which kind of message, and where it is.
    #[serde(default)]
    uploads: BTreeMap<String, Upload>,
    /// What the person typed here was erased: nothing more may be written to it.
    #[serde(default)]
    erased: bool,
    /// Messages deleted here: nothing more may change them (bounded by deletions, not history).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    deleted: BTreeSet<u64>,
}

/// A set of ids as its runs of consecutive ids, `[[first, last], ...]`: a conversation's unread
/// messages are mostly one side's run of sends, so a snapshot of one with thousands unread stays
/// small and loads in one pass.
mod id_runs {
    use std::collections::BTreeSet;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Far above any real conversation; a damaged snapshot cannot make a load allocate without
    /// bound (it is passed over and the stream folded instead).
    const MAX_IDS: u64 = 1 << 26;

    pub fn serialize<S: Serializer>(ids: &BTreeSet<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        let mut runs: Vec<[u64; 2]> = Vec::new();
        for &id in ids {
            match runs.last_mut() {
                Some(run) if run[1].checked_add(1) == Some(id) => run[1] = id,
                _ => runs.push([id, id]),
            }
        }
        runs.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeSet<u64>, D::Error> {
        let runs = Vec::<[u64; 2]>::deserialize(deserializer)?;
        let mut ids = Vec::new();
        for [first, last] in runs {
            if last < first || ids.last().is_some_and(|&previous| previous >= first) {
                return Err(serde::de::Error::custom("id runs out of order"));
            }
            if last - first >= MAX_IDS - ids.len() as u64 {
                return Err(serde::de::Error::custom(
                    "more ids than a conversation holds",
                ));
            }
            ids.extend(first..=last);
        }
        // Sorted and distinct: the set is built in one pass.
        Ok(ids.into_iter().collect())
    }
}

/// What a message needs to know of an upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Upload {
    by: Actor,
    kind: MessageType,
    path: String,
    file: AttachedFile,
}

impl Conversation {
    /// The conversation id, once opened.
    pub fn id(&self) -> Option<u64> {
        self.id
    }

    /// The owning user's id, once opened.
    pub fn user_id(&self) -> Option<u64> {
        self.user.as_ref().map(|u| u.id)
    }

    /// The owning user, once opened.
    pub fn user(&self) -> Option<&Actor> {
        self.user.as_ref()
    }

    pub fn status(&self) -> Option<ConversationStatus> {
        self.status
    }

    pub fn admin_id(&self) -> Option<u64> {
        self.admin_id
    }

    pub fn last_message_id(&self) -> Option<u64> {
        self.last_message_id
    }

    pub fn message_count(&self) -> u64 {
        self.message_count
    }

    /// Ids of the user's messages not yet read by the support side, ascending.
    pub fn unread_by_staff(&self) -> &BTreeSet<u64> {
        &self.unread_by_staff
    }

    /// Ids of the support side's messages not yet read by the user, ascending.
    pub fn unread_by_user(&self) -> &BTreeSet<u64> {
        &self.unread_by_user
    }

    pub fn feedback_given(&self) -> bool {
        self.feedback_given
    }

    pub fn erased(&self) -> bool {
        self.erased
    }

    /// Whether the message was deleted.
    pub fn is_deleted(&self, message_id: u64) -> bool {
        self.deleted.contains(&message_id)
    }

    /// Refuses what would write new typed text (or let it be written) to an erased conversation.
    fn not_erased(&self) -> Result<(), ConversationError> {
        if self.erased {
            return Err(ConversationError::Conflict(
                "conversation was erased; nothing more can be written to it".into(),
            ));
        }
        Ok(())
    }

    /// Whether `actor` is the owning user.
    fn is_owner(&self, actor: &Actor) -> bool {
        actor.role == Role::User && self.user_id() == Some(actor.id)
    }

    /// The cross-stream fact, ignoring a (mistaken) mention of this very conversation.
    fn other_active(&self, services: &ConversationServices, this_id: u64) -> Option<u64> {
        services
            .other_active_conversation
            .filter(|other| *other != this_id)
    }

    fn opened_status(&self) -> Result<ConversationStatus, ConversationError> {
        self.status.ok_or(ConversationError::NotFound)
    }

    /// Owner user or support side (admin, system).
    fn authorize_participant(&self, actor: &Actor) -> Result<(), ConversationError> {
        match actor.role {
            Role::Auditor => Err(auditor_forbidden()),
            Role::Admin | Role::System => Ok(()),
            Role::User if self.is_owner(actor) => Ok(()),
            Role::User => Err(not_owner()),
        }
    }

    /// Support side (admin, system) only.
    fn authorize_staff(&self, actor: &Actor, what: &str) -> Result<(), ConversationError> {
        match actor.role {
            Role::Auditor => Err(auditor_forbidden()),
            Role::Admin | Role::System => Ok(()),
            Role::User => Err(ConversationError::Forbidden(format!(
                "only an admin may {what}"
            ))),
        }
    }

    fn decide(
        &self,
        command: ConversationCommand,
        services: &ConversationServices,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        match command {
            ConversationCommand::OpenConversation {
                actor,
                conversation_id,
                initial_message,
            } => self.open(actor, conversation_id, initial_message, services),
            ConversationCommand::SendMessage { actor, message } => {
                self.send(actor, message, services)
            }
            ConversationCommand::MarkMessagesRead { actor, message_ids } => {
                self.mark_read(actor, message_ids)
            }
            ConversationCommand::CloseConversation { actor } => self.close(actor),
            ConversationCommand::ReopenConversation { actor } => self.reopen(actor, services),
            ConversationCommand::ArchiveConversation { actor } => self.archive(actor),
            ConversationCommand::AssignConversation { actor, admin_id } => {
                self.assign(actor, admin_id)
            }
            ConversationCommand::GiveFeedback {
                actor,
                rating,
                comment,
            } => self.give_feedback(actor, rating, comment),
            ConversationCommand::UploadFile { actor, file } => self.upload(actor, file),
            ConversationCommand::EraseConversation { actor, reason } => self.erase(actor, reason),
            ConversationCommand::EditMessage {
                actor,
                message,
                content,
            } => self.edit_message(actor, message, content),
            ConversationCommand::DeleteMessage {
                actor,
                message,
                reason,
            } => self.delete_message(actor, message, reason),
        }
    }

    /// A message sent here, which an edit or a deletion names.
    fn sent_here(&self, message: &SentMessage) -> Result<ConversationStatus, ConversationError> {
        let status = self.opened_status()?;
        if message.message_id == 0
            || self
                .last_message_id
                .is_none_or(|last| message.message_id > last)
        {
            return Err(ConversationError::Validation(format!(
                "message {} is not in this conversation",
                message.message_id
            )));
        }
        Ok(status)
    }

    /// What may still change a message: not in an archived or erased conversation, and not
    /// once it is deleted.
    fn message_changeable(
        &self,
        status: ConversationStatus,
        message: &SentMessage,
    ) -> Result<(), ConversationError> {
        self.not_erased()?;
        if status == ConversationStatus::Archived {
            return Err(ConversationError::Conflict(
                "conversation is archived".into(),
            ));
        }
        if self.deleted.contains(&message.message_id) {
            return Err(ConversationError::Conflict("message was deleted".into()));
        }
        Ok(())
    }

    /// A sender rewrites one of their own text messages, within the edit window.
    fn edit_message(
        &self,
        actor: Actor,
        message: SentMessage,
        content: String,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.sent_here(&message)?;
        self.authorize_participant(&actor)?;
        if !message.sent_by(&actor) {
            return Err(ConversationError::Forbidden(
                "only its sender may edit a message".into(),
            ));
        }
        if message.message_type != MessageType::Text {
            return Err(ConversationError::Validation(
                "only text messages can be edited".into(),
            ));
        }
        let content = sanitize_content(&content);
        let length = trimmed_len(&content);
        if length == 0 {
            return Err(ConversationError::EmptyMessage);
        }
        if length > MAX_CONTENT_CHARS {
            return Err(ConversationError::Validation(format!(
                "content must be at most {MAX_CONTENT_CHARS} characters"
            )));
        }
        self.message_changeable(status, &message)?;
        if !message.within_edit_window() {
            return Err(edit_window_passed(&message));
        }
        Ok(vec![ConversationEvent::MessageEdited {
            message_id: message.message_id,
            content,
            by: actor,
        }])
    }

    /// A sender withdraws their own message within the edit window; staff remove any message,
    /// saying why (moderation). A sender's own withdrawal needs no reason.
    fn delete_message(
        &self,
        actor: Actor,
        message: SentMessage,
        reason: Option<String>,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.sent_here(&message)?;
        self.authorize_participant(&actor)?;
        let own = message.sent_by(&actor) && message.within_edit_window();
        let moderation = matches!(actor.role, Role::Admin | Role::System) && !own;
        if actor.role == Role::User && !message.sent_by(&actor) {
            return Err(ConversationError::Forbidden(
                "only its sender or an admin may delete a message".into(),
            ));
        }
        let reason = if actor.role == Role::User {
            // A person's own words stay out of the clear part of the log.
            None
        } else {
            reason
                .map(|r| sanitize_content(&r).trim().to_string())
                .filter(|r| !r.is_empty())
        };
        if let Some(reason) = &reason
            && reason.chars().count() > MAX_DELETION_REASON_CHARS
        {
            return Err(ConversationError::Validation(format!(
                "reason must be at most {MAX_DELETION_REASON_CHARS} characters"
            )));
        }
        if moderation && reason.is_none() {
            return Err(ConversationError::Validation(
                "reason is required to remove someone else's message".into(),
            ));
        }
        self.message_changeable(status, &message)?;
        if !own && !moderation {
            return Err(edit_window_passed(&message));
        }
        Ok(vec![ConversationEvent::MessageDeleted {
            message_id: message.message_id,
            by: actor,
            reason,
        }])
    }

    /// Staff erase a conversation's typed text: an active one is closed first (its person is
    /// free to open another), and erasing twice writes nothing.
    fn erase(
        &self,
        actor: Actor,
        reason: String,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.opened_status()?;
        self.authorize_staff(&actor, "erase a conversation")?;
        let reason = sanitize_content(&reason).trim().to_string();
        if reason.is_empty() {
            return Err(ConversationError::Validation(
                "reason is required: say why (a request, a retention rule)".into(),
            ));
        }
        if reason.chars().count() > MAX_ERASURE_REASON_CHARS {
            return Err(ConversationError::Validation(format!(
                "reason must be at most {MAX_ERASURE_REASON_CHARS} characters"
            )));
        }
        if self.erased {
            return Ok(Vec::new());
        }
        let mut events = Vec::with_capacity(2);
        if status == ConversationStatus::Active {
            events.push(ConversationEvent::ConversationClosed { by: actor.clone() });
        }
        events.push(ConversationEvent::ConversationErased { reason, by: actor });
        Ok(events)
    }

    fn upload(
        &self,
        actor: Actor,
        file: UploadedFile,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.opened_status()?;
        self.authorize_participant(&actor)?;
        self.not_erased()?;
        if !file.kind.carries_file() {
            return Err(ConversationError::Validation(
                "message_type must be image or file".into(),
            ));
        }
        let id_ok = (32..=MAX_FILE_ID_CHARS).contains(&file.file_id.len())
            && file.file_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !id_ok {
            return Err(ConversationError::Validation(
                "file_id must be 32 or more hexadecimal digits".into(),
            ));
        }
        let original_name = sanitize_content(&file.original_name)
            .replace(['\n', '\t'], " ")
            .chars()
            .filter(|c| !is_bidi_format(*c))
            .take(MAX_FILE_NAME_CHARS)
            .collect::<String>();
        if status == ConversationStatus::Archived {
            return Err(ConversationError::Conflict(
                "conversation is archived".into(),
            ));
        }
        if self.uploads.contains_key(&file.file_id) {
            return Err(ConversationError::Conflict(
                "a file with this id is already here".into(),
            ));
        }
        Ok(vec![ConversationEvent::FileUploaded {
            file: UploadedFile {
                original_name,
                ..file
            },
            by: actor,
        }])
    }

    /// The file a message carries: it must have been uploaded here, by the sender, for this kind
    /// of message.
    fn attached_file(
        &self,
        sender: &Actor,
        message: &ValidMessage,
    ) -> Result<Option<&Upload>, ConversationError> {
        let Some(file_id) = &message.file_id else {
            return Ok(None);
        };
        let upload = self.uploads.get(file_id).ok_or_else(|| {
            ConversationError::Validation(format!(
                "file_id {file_id} names no file uploaded to this conversation"
            ))
        })?;
        if upload.by.role != sender.role || upload.by.id != sender.id {
            return Err(ConversationError::Forbidden(
                "the file was uploaded by someone else".into(),
            ));
        }
        if upload.kind != message.message_type {
            return Err(ConversationError::Validation(format!(
                "file_id {file_id} was uploaded as {}, not {}",
                upload.kind, message.message_type
            )));
        }
        Ok(Some(upload))
    }

    fn open(
        &self,
        actor: Actor,
        conversation_id: u64,
        initial_message: Option<NewMessage>,
        services: &ConversationServices,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        match actor.role {
            Role::User => {}
            Role::Auditor => return Err(auditor_forbidden()),
            Role::Admin | Role::System => {
                return Err(ConversationError::Forbidden(
                    "only a user may open a conversation".into(),
                ));
            }
        }
        if let Some(message) = &initial_message {
            authorize_message_type(&actor, message.message_type)?;
        }
        if conversation_id == 0 || conversation_id > MAX_ID {
            return Err(ConversationError::Validation(format!(
                "conversation_id must be between 1 and {MAX_ID}"
            )));
        }
        let initial_message = initial_message.map(validate_message).transpose()?;
        if self.status.is_some() {
            return Err(ConversationError::Conflict(
                "conversation already exists".into(),
            ));
        }
        if self.other_active(services, conversation_id).is_some() {
            return Err(already_active());
        }
        if initial_message.is_some() && services.next_message_id == 0 {
            return Err(out_of_order_message_id());
        }

        let mut events = vec![ConversationEvent::ConversationOpened {
            conversation_id,
            user: actor.clone(),
        }];
        if let Some(message) = initial_message {
            // A conversation being opened has no uploads yet: no file can be attached.
            let upload = self.attached_file(&actor, &message)?;
            events.push(message.into_event(services.next_message_id, actor, upload));
        }
        Ok(events)
    }

    fn send(
        &self,
        actor: Actor,
        message: NewMessage,
        services: &ConversationServices,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.opened_status()?;
        self.authorize_participant(&actor)?;
        authorize_message_type(&actor, message.message_type)?;
        let message = validate_message(message)?;
        self.not_erased()?;
        let upload = self.attached_file(&actor, &message)?;

        let mut events = Vec::with_capacity(2);
        match status {
            ConversationStatus::Active => {}
            ConversationStatus::Archived => {
                return Err(ConversationError::Conflict(
                    "conversation is archived".into(),
                ));
            }
            ConversationStatus::Closed if actor.role == Role::User => {
                let this_id = self.id.unwrap_or_default();
                if self.other_active(services, this_id).is_some() {
                    return Err(already_active());
                }
                // A user's message to their closed conversation reopens it.
                events.push(ConversationEvent::ConversationReopened { by: actor.clone() });
            }
            ConversationStatus::Closed => {
                return Err(ConversationError::Conflict(
                    "conversation is closed; reopen it before replying".into(),
                ));
            }
        }
        let message_id = services.next_message_id;
        if message_id == 0 || self.last_message_id.is_some_and(|last| message_id <= last) {
            return Err(out_of_order_message_id());
        }
        events.push(message.into_event(message_id, actor, upload));
        Ok(events)
    }

    fn mark_read(
        &self,
        actor: Actor,
        message_ids: Vec<u64>,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        self.opened_status()?;
        self.authorize_participant(&actor)?;
        if message_ids.len() > MAX_READ_IDS_PER_COMMAND {
            return Err(ConversationError::Validation(format!(
                "at most {MAX_READ_IDS_PER_COMMAND} message ids per read receipt"
            )));
        }
        // Only the other side's messages that are still unread count; the rest is ignored.
        let unread = if actor.role == Role::User {
            &self.unread_by_user
        } else {
            &self.unread_by_staff
        };
        let newly_read: BTreeSet<u64> = message_ids
            .into_iter()
            .filter(|id| unread.contains(id))
            .collect();
        if newly_read.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![ConversationEvent::MessagesRead {
            message_ids: newly_read.into_iter().collect(),
            reader: actor,
        }])
    }

    fn close(&self, actor: Actor) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.opened_status()?;
        self.authorize_participant(&actor)?;
        match status {
            ConversationStatus::Active => {
                Ok(vec![ConversationEvent::ConversationClosed { by: actor }])
            }
            ConversationStatus::Closed => Err(ConversationError::Conflict(
                "conversation is already closed".into(),
            )),
            ConversationStatus::Archived => Err(ConversationError::Conflict(
                "conversation is archived".into(),
            )),
        }
    }

    fn reopen(
        &self,
        actor: Actor,
        services: &ConversationServices,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.opened_status()?;
        self.authorize_staff(&actor, "reopen a conversation")?;
        self.not_erased()?;
        match status {
            ConversationStatus::Closed => {}
            ConversationStatus::Active => {
                return Err(ConversationError::Conflict(
                    "conversation is already active".into(),
                ));
            }
            ConversationStatus::Archived => {
                return Err(ConversationError::Conflict(
                    "conversation is archived".into(),
                ));
            }
        }
        if self
            .other_active(services, self.id.unwrap_or_default())
            .is_some()
        {
            return Err(already_active());
        }
        Ok(vec![ConversationEvent::ConversationReopened { by: actor }])
    }

    fn archive(&self, actor: Actor) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.opened_status()?;
        self.authorize_staff(&actor, "archive a conversation")?;
        if status == ConversationStatus::Archived {
            return Err(ConversationError::Conflict(
                "conversation is already archived".into(),
            ));
        }
        Ok(vec![ConversationEvent::ConversationArchived { by: actor }])
    }

    fn assign(
        &self,
        actor: Actor,
        admin_id: u64,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.opened_status()?;
        self.authorize_staff(&actor, "assign a conversation")?;
        if admin_id == 0 || admin_id > MAX_ID {
            return Err(ConversationError::Validation(format!(
                "admin_id must be between 1 and {MAX_ID}"
            )));
        }
        if status == ConversationStatus::Archived {
            return Err(ConversationError::Conflict(
                "conversation is archived".into(),
            ));
        }
        if self.admin_id == Some(admin_id) {
            return Ok(Vec::new());
        }
        Ok(vec![ConversationEvent::ConversationAssigned {
            admin_id,
            by: actor,
        }])
    }

    fn give_feedback(
        &self,
        actor: Actor,
        rating: u8,
        comment: Option<String>,
    ) -> Result<Vec<ConversationEvent>, ConversationError> {
        let status = self.opened_status()?;
        match actor.role {
            Role::Auditor => return Err(auditor_forbidden()),
            Role::Admin | Role::System => {
                return Err(ConversationError::Forbidden(
                    "only the conversation's user may give feedback".into(),
                ));
            }
            Role::User if !self.is_owner(&actor) => return Err(not_owner()),
            Role::User => {}
        }
        if !(1..=5).contains(&rating) {
            return Err(ConversationError::Validation(
                "rating must be between 1 and 5".into(),
            ));
        }
        let comment = comment.map(|c| sanitize_content(&c));
        if let Some(c) = &comment
            && trimmed_len(c) > MAX_FEEDBACK_COMMENT_CHARS
        {
            return Err(ConversationError::Validation(format!(
                "comment must be at most {MAX_FEEDBACK_COMMENT_CHARS} characters"
            )));
        }
        let comment = comment.filter(|c| trimmed_len(c) > 0);
        self.not_erased()?;
        if self.feedback_given {
            return Err(ConversationError::Conflict(
                "feedback was already given for this conversation".into(),
            ));
        }
        if status != ConversationStatus::Closed {
            return Err(ConversationError::Conflict(
                "feedback can be given only on a closed conversation".into(),
            ));
        }
        Ok(vec![ConversationEvent::FeedbackGiven {
            rating,
            comment,
            by: actor,
        }])
    }
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = ConversationError;
    type Services = ConversationServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        // Decide everything first: a refused command must write nothing.
        let events = self.decide(command, services)?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ConversationEvent::ConversationOpened {
                conversation_id,
                user,
            } => {
                self.id = Some(conversation_id);
                self.user = Some(user);
                self.status = Some(ConversationStatus::Active);
            }
            ConversationEvent::MessageSent {
                message_id, sender, ..
            } => {
                self.last_message_id = Some(
                    self.last_message_id
                        .map_or(message_id, |last| last.max(message_id)),
                );
                self.message_count += 1;
                match sender.role {
                    Role::User => {
                        self.unread_by_staff.insert(message_id);
                    }
                    Role::Admin | Role::System => {
                        self.unread_by_user.insert(message_id);
                    }
                    // Auditors never write; nothing to track should one appear in old data.
                    Role::Auditor => {}
                }
            }
            ConversationEvent::MessagesRead {
                message_ids,
                reader,
            } => {
                let unread = if reader.role == Role::User {
                    &mut self.unread_by_user
                } else {
                    &mut self.unread_by_staff
                };
                for id in message_ids {
                    unread.remove(&id);
                }
            }
            ConversationEvent::ConversationClosed { .. } => {
                self.status = Some(ConversationStatus::Closed);
            }
            ConversationEvent::ConversationReopened { .. } => {
                self.status = Some(ConversationStatus::Active);
            }
            ConversationEvent::ConversationArchived { .. } => {
                self.status = Some(ConversationStatus::Archived);
            }
            ConversationEvent::ConversationAssigned { admin_id, .. } => {
                self.admin_id = Some(admin_id);
            }
            ConversationEvent::FeedbackGiven { .. } => {
                self.feedback_given = true;
            }
            ConversationEvent::FileUploaded { file, by } => {
                let attached = file.attached();
                self.uploads.insert(
                    file.file_id,
                    Upload {
                        by,
                        kind: file.kind,
                        path: file.path,
                        file: attached,
                    },
                );
            }
            ConversationEvent::MessageEdited { .. } => {}
            ConversationEvent::MessageDeleted { message_id, .. } => {
                self.deleted.insert(message_id);
            }
            ConversationEvent::ConversationErased { .. } => {
                self.erased = true;
                // The names people gave their files go with the rest of what they typed.
                for upload in self.uploads.values_mut() {
                    upload.file.name.clear();
                }
            }
        }
    }
}

/// A message that passed validation, ready to become a `MessageSent`.
struct ValidMessage {
    message_type: MessageType,
    content: String,
    file_id: Option<String>,
    client_msg_id: Option<String>,
}

impl ValidMessage {
    fn into_event(
        self,
        message_id: u64,
        sender: Actor,
        upload: Option<&Upload>,
    ) -> ConversationEvent {
        ConversationEvent::MessageSent {
            message_id,
            sender,
            message_type: self.message_type,
            content: self.content,
            file_id: self.file_id,
            client_msg_id: self.client_msg_id,
            file_path: upload.map(|u| u.path.clone()),
            attachment: upload.map(|u| u.file.clone()),
        }
    }
}

/// Only the system may send `system` messages.
fn authorize_message_type(
    actor: &Actor,
    message_type: MessageType,
) -> Result<(), ConversationError> {
    if message_type == MessageType::System && actor.role != Role::System {
        return Err(ConversationError::Forbidden(
            "only the system may send system messages".into(),
        ));
    }
    Ok(())
}

/// Input rules of a message, independent of the conversation's state.
fn validate_message(message: NewMessage) -> Result<ValidMessage, ConversationError> {
    let NewMessage {
        message_type,
        content,
        file_id,
        client_msg_id,
    } = message;

    let content = sanitize_content(&content);
    let length = trimmed_len(&content);
    if length > MAX_CONTENT_CHARS {
        return Err(ConversationError::Validation(format!(
            "content must be at most {MAX_CONTENT_CHARS} characters"
        )));
    }
    if message_type.carries_file() {
        // The file is the message; a caption is optional.
        match &file_id {
            None => {
                return Err(ConversationError::Validation(format!(
                    "{message_type} messages need a file_id"
                )));
            }
            Some(id) if id.trim().is_empty() => {
                return Err(ConversationError::Validation(format!(
                    "{message_type} messages need a file_id"
                )));
            }
            Some(id) if id.chars().count() > MAX_FILE_ID_CHARS => {
                return Err(ConversationError::Validation(format!(
                    "file_id must be at most {MAX_FILE_ID_CHARS} characters"
                )));
            }
            Some(id) if id.chars().any(char::is_control) => {
                return Err(ConversationError::Validation(
                    "file_id must not contain control characters".into(),
                ));
            }
            Some(_) => {}
        }
    } else {
        if length == 0 {
            return Err(ConversationError::EmptyMessage);
        }
        if file_id.is_some() {
            return Err(ConversationError::Validation(format!(
                "{message_type} messages cannot carry a file_id"
            )));
        }
    }
    if let Some(id) = &client_msg_id {
        let chars = id.chars().count();
        if chars == 0 || chars > MAX_CLIENT_MSG_ID_CHARS {
            return Err(ConversationError::Validation(format!(
                "client_msg_id must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"
            )));
        }
        // Refused rather than cleaned: two keys must never become one.
        if id.chars().any(|c| c.is_control() || is_bidi_format(c)) {
            return Err(ConversationError::Validation(
                "client_msg_id must not contain control or bidirectional formatting characters"
                    .into(),
            ));
        }
    }
    Ok(ValidMessage {
        message_type,
        content,
        file_id,
        client_msg_id,
    })
}

fn edit_window_passed(message: &SentMessage) -> ConversationError {
    ConversationError::Conflict(format!(
        "a message can be changed by its sender for {} seconds after it is sent",
        message.edit_window_secs
    ))
}

fn auditor_forbidden() -> ConversationError {
    ConversationError::Forbidden("auditors have read-only access".into())
}

fn not_owner() -> ConversationError {
    ConversationError::Forbidden("this conversation belongs to another user".into())
}

fn already_active() -> ConversationError {
    ConversationError::Conflict("user already has an active conversation".into())
}

fn out_of_order_message_id() -> ConversationError {
    ConversationError::Conflict(
        "message id is not greater than the conversation's last message id".into(),
    )
}
