//! The `files` table: one row per upload, so that a download can find the file, its type, its
//! name and the conversation that decides who may read it.

use async_trait::async_trait;
use events::ConversationEvent;

use crate::{LoggedEvent, ProjectionError, Projector, SqlTxn, SqlValue, Tables};

const COLUMNS: &str = "file_id, conversation_id, uploader_role, uploader_id, kind, original_name, \
     size, mime_type, sha256, path, width, height, uploaded_at, position";

pub struct FilesProjector;

#[async_trait]
impl Projector for FilesProjector {
    fn name(&self) -> &'static str {
        "files"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["files"]
    }

    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError> {
        let table = tables.name("files");
        let sql = format!(
            "insert into {table} ({COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        );
        for event in events {
            // Every event is decoded, so that one this build cannot read stops this projector
            // too, at its position.
            let (file, by) = match event.decode()? {
                ConversationEvent::FileUploaded { file, by } => (file, by),
                ConversationEvent::ConversationErased { .. } => {
                    // The name its person gave each file goes; the row stays, so a download
                    // of the (removed) file is refused as missing, not as unknown.
                    let erase =
                        format!("update {table} set original_name = '' where conversation_id = ?");
                    txn.execute(&erase, &[event.conversation_id()?.into()])
                        .await?;
                    continue;
                }
                _ => continue,
            };
            let params = [
                (&file.file_id).into(),
                event.conversation_id()?.into(),
                by.role.as_str().into(),
                by.id.into(),
                file.kind.as_str().into(),
                (&file.original_name).into(),
                file.size.into(),
                (&file.mime_type).into(),
                (&file.sha256).into(),
                (&file.path).into(),
                file.width.map(u64::from).into(),
                file.height.map(u64::from).into(),
                SqlValue::Int(event.recorded_at_micros),
                event.position.into(),
            ];
            txn.execute(&sql, &params)
                .await
                .map_err(|error| match error {
                    ProjectionError::Duplicate(reason) => ProjectionError::Apply {
                        position: event.position,
                        reason: format!("the file is already in {table}: {reason}"),
                    },
                    other => other,
                })?;
        }
        Ok(())
    }
}
