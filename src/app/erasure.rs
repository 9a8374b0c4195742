//! Erasing a person: every conversation of theirs records who erased it and why
//! (`ConversationErased`, which destroys the conversation's data key, so the text they typed is
//! gone from the log and every projection folds it empty), then what lives outside the log goes
//! too: their uploaded files, the pushes still queued for them and their push devices. Erasing
//! again writes nothing and removes whatever an interrupted erasure left.

use events::{Actor, ConversationCommand, MAX_ERASURE_REASON_CHARS, Role};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppError;
use super::ids::wire_id;
use crate::commands::{CommandBus, Intent};
use crate::files::FileStore;
use crate::store::{EventMetadata, EventStore};

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Erasure {
    pub user_id: u64,
    /// Every conversation of the person.
    pub conversations: Vec<u64>,
    /// Those erased now (the others were erased before).
    pub erased_now: Vec<u64>,
    /// Nothing was left to erase in the log: the person was erased before.
    pub already_erased: bool,
    pub files_removed: u64,
    pub pushes_removed: u64,
    pub devices_removed: u64,
}

/// The parts an erasure uses: a server's, or the CLI's own.
pub struct Eraser<'a> {
    pub store: &'a EventStore,
    pub commands: &'a CommandBus,
    pub files: &'a FileStore,
}

/// What erasing some conversations did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub erased_now: Vec<u64>,
    pub files_removed: u64,
    pub pushes_removed: u64,
}

impl Eraser<'_> {
    /// Erases `conversations` with `reason`: their files and queued pushes go before the
    /// erasure is recorded and again after it (one uploaded meanwhile), so an erasure cut short
    /// leaves nothing that a second run would not find; the records and the key destruction are
    /// one append per conversation.
    pub async fn erase_conversations(
        &self,
        actor: Actor,
        metadata: EventMetadata,
        conversations: &[u64],
        reason: &str,
    ) -> Result<Swept, AppError> {
        let mut swept = Swept::default();
        self.sweep(conversations, &mut swept).await?;
        for &id in conversations {
            let command = ConversationCommand::EraseConversation {
                actor: actor.clone(),
                reason: reason.to_string(),
            };
            let committed = self
                .commands
                .execute(Intent::On(id, command), metadata.clone())
                .await?;
            if !committed.events.is_empty() {
                swept.erased_now.push(id);
            }
        }
        self.sweep(conversations, &mut swept).await?;
        Ok(swept)
    }

    /// Removes the files and queued pushes of `conversations`, counting them into `swept`.
    async fn sweep(&self, conversations: &[u64], swept: &mut Swept) -> Result<(), AppError> {
        for path in self.store.file_paths_in(conversations).await? {
            match self.files.delete(&path).await {
                Ok(()) => swept.files_removed += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    tracing::error!(%error, path, "erasure: a file could not be removed");
                    return Err(AppError::unavailable());
                }
            }
        }
        swept.pushes_removed += self.store.forget_pushes(conversations).await?;
        Ok(())
    }

    /// Erases user `user_id` on behalf of `actor` (an admin, or the system for an operator),
    /// recording `reason` and `metadata` in the audit trail. 404 when the person has no
    /// conversation.
    pub async fn erase_person(
        &self,
        actor: Actor,
        metadata: EventMetadata,
        user_id: u64,
        reason: &str,
    ) -> Result<Erasure, AppError> {
        if !matches!(actor.role, Role::Admin | Role::System) {
            return Err(AppError::forbidden("only an admin may erase a person"));
        }
        let user_id = wire_id(user_id, "user_id")?;
        let trimmed = reason.trim();
        if trimmed.is_empty() || trimmed.chars().count() > MAX_ERASURE_REASON_CHARS {
            return Err(AppError::validation(format!(
                "reason is required, at most {MAX_ERASURE_REASON_CHARS} characters: say why"
            )));
        }
        let conversations = self.store.conversation_ids_of_user(user_id).await?;
        if conversations.is_empty() {
            return Err(AppError::not_found(format!(
                "user {user_id} has no conversation here"
            )));
        }
        let swept = self
            .erase_conversations(actor, metadata, &conversations, trimmed)
            .await?;
        let devices_removed = self.store.forget_devices(user_id).await?;
        tracing::info!(
            user_id,
            conversations = conversations.len(),
            erased_now = swept.erased_now.len(),
            files_removed = swept.files_removed,
            "person erased"
        );
        Ok(Erasure {
            user_id,
            already_erased: swept.erased_now.is_empty(),
            conversations,
            erased_now: swept.erased_now,
            files_removed: swept.files_removed,
            pushes_removed: swept.pushes_removed,
            devices_removed,
        })
    }
}
