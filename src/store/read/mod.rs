//! The read side: the API's queries on the read tables (`conversations`, `messages`, `files`;
//! the search index in `search.rs`, the analytics facts in `analytics.rs`), and in
//! `projection.rs` the `projections::ProjectionStore` through which projectors read the log and
//! write those tables. Queries here only read: the tables belong to the projectors.

mod analytics;
mod projection;
mod search;

pub use search::{
    DEFAULT_SEARCH_READ_BUDGET, RECENT_MATCHES, SearchHit, SearchRequest, SearchResults,
    SearchScope,
};

use projections::SqlValue;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{EventStore, SqlStore, StoreError, on_backend};

/// Largest page the list routes serve.
pub const MAX_PAGE_SIZE: u32 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationRow {
    pub id: u64,
    pub user_id: u64,
    pub user_identifier: String,
    pub admin_id: Option<u64>,
    pub status: String,
    pub last_message_id: Option<u64>,
    pub last_message_preview: Option<String>,
    pub last_message_sender_role: Option<String>,
    pub last_message_type: Option<String>,
    pub last_message_at: Option<i64>,
    pub message_count: u64,
    pub unread_for_user: u64,
    pub unread_for_admin: u64,
    pub feedback_rating: Option<u64>,
    pub feedback_comment: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const CONVERSATION_COLUMNS: &str = "id, user_id, user_identifier, admin_id, status, last_message_id, \
     last_message_preview, last_message_sender_role, last_message_type, last_message_at, message_count, \
     unread_for_user, unread_for_admin, feedback_rating, feedback_comment, created_at, updated_at";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub id: u64,
    pub conversation_id: u64,
    pub sender_role: String,
    /// The user's or admin's id (0 for the system).
    pub sender_id: u64,
    pub sender_identifier: String,
    pub message_type: String,
    pub content: String,
    pub file_id: Option<String>,
    pub file_url: Option<String>,
    /// What the message says of its file (none in messages recorded before messages carried it).
    pub attachment: Option<events::AttachedFile>,
    pub client_msg_id: Option<String>,
    pub is_read: bool,
    pub timestamp: i64,
    /// Its text (and file name) was erased with its person.
    pub erased: bool,
    /// When its text was last edited.
    pub edited_at: Option<i64>,
    /// Who deleted it (`user`, `admin` or `system`); its text and file name are then empty.
    pub deleted_by: Option<String>,
}

const MESSAGE_COLUMNS: &str = "id, conversation_id, sender_role, sender_identifier, message_type, content, \
     file_id, file_url, client_msg_id, is_read, timestamp, file_name, file_size, mime_type, width, height, \
     erased, edited_at, deleted_by, coalesce(user_id, admin_id, 0) as sender_id";

/// One upload, as the `files` projection keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub file_id: String,
    pub conversation_id: u64,
    pub kind: String,
    pub original_name: String,
    pub size: u64,
    pub mime_type: String,
    pub path: String,
}

/// Which conversations a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    pub user_id: Option<u64>,
    pub status: Option<String>,
    pub assigned_to: Option<u64>,
    pub unassigned: bool,
}

/// Which messages of a conversation: the newest `limit`, or those after or before an id; always
/// returned oldest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageWindow {
    pub after_id: Option<u64>,
    pub before_id: Option<u64>,
    pub limit: u32,
}

/// Where the projections keep archived conversations and their messages.
pub(in crate::store) const ARCHIVED_CONVERSATIONS: &str = "conversations_archive";
pub(in crate::store) const ARCHIVED_MESSAGES: &str = "messages_archive";

/// A statement parameter of the read queries (this module's and the search's).
#[derive(Debug, Clone)]
pub(in crate::store) enum Bind {
    Int(i64),
    Text(String),
}

/// `sql` with `binds` bound in order.
pub(in crate::store) fn bound<DB>(
    sql: &str,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'_, DB, DB::Arguments<'_>>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    binds
        .into_iter()
        .fold(sqlx::query(sql), |query, bind| match bind {
            Bind::Int(v) => query.bind(v),
            Bind::Text(v) => query.bind(v),
        })
}

pub(in crate::store) fn int(value: u64) -> Bind {
    Bind::Int(i64::try_from(value).unwrap_or(i64::MAX))
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl EventStore {
    pub async fn conversation(&self, id: u64) -> Result<Option<ConversationRow>, StoreError> {
        on_backend!(self, s => s.conversation(id).await)
    }

    /// The user's active conversation, or else their newest.
    pub async fn latest_conversation_of(
        &self,
        user_id: u64,
    ) -> Result<Option<ConversationRow>, StoreError> {
        on_backend!(self, s => s.latest_conversation_of(user_id).await)
    }

    /// One page (from 1) of conversations, most recently active first, and the total count.
    pub async fn conversations(
        &self,
        filter: &ConversationFilter,
        page: u32,
        limit: u32,
    ) -> Result<(Vec<ConversationRow>, u64), StoreError> {
        on_backend!(self, s => s.conversations(filter, page, limit).await)
    }

    pub async fn messages(
        &self,
        conversation_id: u64,
        window: MessageWindow,
    ) -> Result<Vec<MessageRow>, StoreError> {
        on_backend!(self, s => s.messages(conversation_id, window).await)
    }

    /// One message by its id, wherever its conversation is (live or archived).
    pub async fn message(&self, message_id: u64) -> Result<Option<MessageRow>, StoreError> {
        on_backend!(self, s => s.message(message_id).await)
    }

    pub async fn file(&self, file_id: &str) -> Result<Option<FileRow>, StoreError> {
        on_backend!(self, s => s.file(file_id).await)
    }

    /// How many active conversations each admin is assigned (admins with none are absent).
    pub async fn active_conversations_per_admin(
        &self,
    ) -> Result<std::collections::HashMap<u64, u64>, StoreError> {
        on_backend!(self, s => s.active_conversations_per_admin().await)
    }

    /// The newest message id the read tables show of each of these conversations that has one.
    pub async fn last_message_ids(
        &self,
        conversation_ids: &[u64],
    ) -> Result<std::collections::HashMap<u64, u64>, StoreError> {
        on_backend!(self, s => s.last_message_ids(conversation_ids).await)
    }

    /// Active conversations nobody is assigned to, oldest first: (id, created_at). Not those
    /// `chatd import` brought in (ids up to the reserved legacy range): their assignment was the
    /// legacy system's to decide, and they wait in the unassigned list for an admin to take.
    pub async fn unassigned_active(&self, limit: u32) -> Result<Vec<(u64, i64)>, StoreError> {
        on_backend!(self, s => s.unassigned_active(limit).await)
    }
}

impl EventStore {
    /// Every row of a query, each column an integer, text or null: for the typed methods of the
    /// followers' own tables (`push`, `assignment`), read outside a transaction.
    pub(in crate::store) async fn value_rows(
        &self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<Vec<SqlValue>>, StoreError> {
        let binds: Vec<Bind> = params
            .iter()
            .map(|p| match p {
                SqlValue::Int(v) => Bind::Int(*v),
                SqlValue::Text(v) => Bind::Text(v.clone()),
                // No statement here binds a null.
                SqlValue::Null => Bind::Text(String::new()),
            })
            .collect();
        on_backend!(self, s => Ok(s
            .fetch(sql, binds)
            .await?
            .iter()
            .map(projection::row_values)
            .collect()))
    }
}

impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    pub(in crate::store) async fn fetch(
        &self,
        sql: &str,
        binds: Vec<Bind>,
    ) -> Result<Vec<DB::Row>, StoreError> {
        bound(sql, binds)
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::from_sqlx)
    }

    async fn message(&self, message_id: u64) -> Result<Option<MessageRow>, StoreError> {
        let sql = format!(
            "select {MESSAGE_COLUMNS} from messages where id = ? union all \
             select {MESSAGE_COLUMNS} from {ARCHIVED_MESSAGES} where id = ?"
        );
        let rows = self
            .fetch(&sql, vec![int(message_id), int(message_id)])
            .await?;
        rows.first().map(message_from_row::<DB>).transpose()
    }

    async fn file(&self, file_id: &str) -> Result<Option<FileRow>, StoreError> {
        let rows = self
            .fetch(
                "select file_id, conversation_id, kind, original_name, size, mime_type, path \
                 from files where file_id = ?",
                vec![Bind::Text(file_id.to_string())],
            )
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
        let text = |i: usize| row.try_get::<String, _>(i).map_err(StoreError::from_sqlx);
        Ok(Some(FileRow {
            file_id: text(0)?,
            conversation_id: unsigned(int(1)?),
            kind: text(2)?,
            original_name: text(3)?,
            size: unsigned(int(4)?),
            mime_type: text(5)?,
            path: text(6)?,
        }))
    }

    async fn active_conversations_per_admin(
        &self,
    ) -> Result<std::collections::HashMap<u64, u64>, StoreError> {
        let rows = self
            .fetch(
                "select admin_id, count(*) from conversations \
                 where status = 'active' and admin_id is not null group by admin_id",
                Vec::new(),
            )
            .await?;
        rows.iter()
            .map(|row| {
                let admin = row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?;
                let count = row.try_get::<i64, _>(1).map_err(StoreError::from_sqlx)?;
                Ok((unsigned(admin), unsigned(count)))
            })
            .collect()
    }

    async fn last_message_ids(
        &self,
        conversation_ids: &[u64],
    ) -> Result<std::collections::HashMap<u64, u64>, StoreError> {
        let mut found = std::collections::HashMap::new();
        for chunk in conversation_ids.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "select id, last_message_id from conversations where id in ({placeholders}) \
                 and last_message_id is not null union all \
                 select id, last_message_id from {ARCHIVED_CONVERSATIONS} \
                 where id in ({placeholders}) and last_message_id is not null"
            );
            let ids = chunk.iter().map(|id| Bind::Int(*id as i64));
            let rows = self.fetch(&sql, ids.clone().chain(ids).collect()).await?;
            for row in rows {
                let id = row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?;
                let last = row.try_get::<i64, _>(1).map_err(StoreError::from_sqlx)?;
                found.insert(unsigned(id), unsigned(last));
            }
        }
        Ok(found)
    }

    async fn unassigned_active(&self, limit: u32) -> Result<Vec<(u64, i64)>, StoreError> {
        let rows = self
            .fetch(
                "select id, created_at from conversations \
                 where status = 'active' and admin_id is null \
                 and id > (select coalesce(max(conversation_id_high), 0) from legacy_import) \
                 order by created_at, id limit ?",
                vec![Bind::Int(i64::from(limit))],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let id = row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?;
                let created = row.try_get::<i64, _>(1).map_err(StoreError::from_sqlx)?;
                Ok((unsigned(id), created))
            })
            .collect()
    }

    async fn conversation(&self, id: u64) -> Result<Option<ConversationRow>, StoreError> {
        // One round trip: the row is in one of the two tables.
        let sql = format!(
            "select {CONVERSATION_COLUMNS} from conversations where id = ? union all \
             select {CONVERSATION_COLUMNS} from {ARCHIVED_CONVERSATIONS} where id = ?"
        );
        let rows = self.fetch(&sql, vec![int(id), int(id)]).await?;
        rows.first().map(conversation_from_row::<DB>).transpose()
    }

    async fn latest_conversation_of(
        &self,
        user_id: u64,
    ) -> Result<Option<ConversationRow>, StoreError> {
        let sql = format!(
            "select {CONVERSATION_COLUMNS} from conversations where user_id = ? \
             order by case when status = 'active' then 0 else 1 end, id desc limit 1"
        );
        let live = self.fetch(&sql, vec![int(user_id)]).await?;
        let live = live.first().map(conversation_from_row::<DB>).transpose()?;
        if live.as_ref().is_some_and(|c| c.status == "active") {
            return Ok(live);
        }
        let sql = format!(
            "select {CONVERSATION_COLUMNS} from {ARCHIVED_CONVERSATIONS} where user_id = ? \
             order by id desc limit 1"
        );
        let archived = self.fetch(&sql, vec![int(user_id)]).await?;
        let archived = archived
            .first()
            .map(conversation_from_row::<DB>)
            .transpose()?;
        Ok(live.into_iter().chain(archived).max_by_key(|c| c.id))
    }

    async fn conversations(
        &self,
        filter: &ConversationFilter,
        page: u32,
        limit: u32,
    ) -> Result<(Vec<ConversationRow>, u64), StoreError> {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        if let Some(user_id) = filter.user_id {
            conditions.push("user_id = ?");
            binds.push(int(user_id));
        }
        // Archived conversations are only in the archive (where every row is archived), the
        // others never are.
        let tables = match filter.status.as_deref() {
            Some("archived") => vec![ARCHIVED_CONVERSATIONS],
            Some(status) => {
                conditions.push("status = ?");
                binds.push(Bind::Text(status.to_string()));
                vec!["conversations"]
            }
            None => vec!["conversations", ARCHIVED_CONVERSATIONS],
        };
        if let Some(admin_id) = filter.assigned_to {
            conditions.push("admin_id = ?");
            binds.push(int(admin_id));
        }
        if filter.unassigned {
            conditions.push("admin_id is null");
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("where {}", conditions.join(" and "))
        };
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let offset = u64::from(page.max(1) - 1) * u64::from(limit);
        let mut total = 0;
        for table in &tables {
            let rows = self
                .fetch(
                    &format!("select count(*) from {table} {where_clause}"),
                    binds.clone(),
                )
                .await?;
            if let Some(row) = rows.first() {
                total += unsigned(row.try_get::<i64, _>(0).map_err(StoreError::from_sqlx)?);
            }
        }
        // Each table gives its first `offset + limit` in list order (an index walk), and the
        // page is cut from those.
        let order = "order by activity_at desc, id desc";
        let mut page_binds = Vec::new();
        let branches: Vec<String> = tables
            .iter()
            .map(|table| {
                page_binds.extend(binds.iter().cloned());
                page_binds.push(int(offset + u64::from(limit)));
                format!(
                    "select * from (select {CONVERSATION_COLUMNS}, activity_at from {table} \
                     {where_clause} {order} limit ?) {table}"
                )
            })
            .collect();
        page_binds.push(Bind::Int(i64::from(limit)));
        page_binds.push(int(offset));
        let sql = format!("{} {order} limit ? offset ?", branches.join(" union all "));
        let rows = self.fetch(&sql, page_binds).await?;
        let conversations = rows
            .iter()
            .map(conversation_from_row::<DB>)
            .collect::<Result<_, _>>()?;
        Ok((conversations, total))
    }

    async fn messages(
        &self,
        conversation_id: u64,
        window: MessageWindow,
    ) -> Result<Vec<MessageRow>, StoreError> {
        // One over the page size: a caller asks it to learn whether more follow.
        let limit = Bind::Int(i64::from(window.limit.clamp(1, MAX_PAGE_SIZE + 1)));
        let (condition, order, binds) = match (window.after_id, window.before_id) {
            (Some(after), before) => (
                "and id > ? and id < ?",
                "id",
                vec![
                    int(conversation_id),
                    int(after),
                    int(before.unwrap_or(u64::MAX >> 1)),
                    limit,
                ],
            ),
            (None, Some(before)) => (
                "and id < ?",
                "id desc",
                vec![int(conversation_id), int(before), limit],
            ),
            (None, None) => ("", "id desc", vec![int(conversation_id), limit]),
        };
        // A conversation's messages are all in one table, the archive's once it is archived: one
        // statement (one snapshot) asks both.
        let page = |table: &str| {
            format!(
                "select * from (select {MESSAGE_COLUMNS} from {table} where conversation_id = ? \
                 {condition} order by {order} limit ?) {table}"
            )
        };
        let sql = format!("{} union all {}", page("messages"), page(ARCHIVED_MESSAGES));
        let rows = self
            .fetch(&sql, binds.iter().chain(&binds).cloned().collect())
            .await?;
        let mut messages: Vec<MessageRow> = rows
            .iter()
            .map(message_from_row::<DB>)
            .collect::<Result<_, _>>()?;
        messages.sort_by_key(|message| message.id);
        Ok(messages)
    }
}

fn conversation_from_row<DB>(row: &DB::Row) -> Result<ConversationRow, StoreError>
where
    DB: Database,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
    let opt_int = |i: usize| {
        row.try_get::<Option<i64>, _>(i)
            .map_err(StoreError::from_sqlx)
    };
    let text = |i: usize| row.try_get::<String, _>(i).map_err(StoreError::from_sqlx);
    let opt_text = |i: usize| {
        row.try_get::<Option<String>, _>(i)
            .map_err(StoreError::from_sqlx)
    };
    Ok(ConversationRow {
        id: unsigned(int(0)?),
        user_id: unsigned(int(1)?),
        user_identifier: text(2)?,
        admin_id: opt_int(3)?.map(unsigned),
        status: text(4)?,
        last_message_id: opt_int(5)?.map(unsigned),
        last_message_preview: opt_text(6)?,
        last_message_sender_role: opt_text(7)?,
        last_message_type: opt_text(8)?,
        last_message_at: opt_int(9)?,
        message_count: unsigned(int(10)?),
        unread_for_user: unsigned(int(11)?),
        unread_for_admin: unsigned(int(12)?),
        feedback_rating: opt_int(13)?.map(unsigned),
        feedback_comment: opt_text(14)?,
        created_at: int(15)?,
        updated_at: int(16)?,
    })
}

fn message_from_row<DB>(row: &DB::Row) -> Result<MessageRow, StoreError>
where
    DB: Database,
    i64: for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    let int = |i: usize| row.try_get::<i64, _>(i).map_err(StoreError::from_sqlx);
    let text = |i: usize| row.try_get::<String, _>(i).map_err(StoreError::from_sqlx);
    let opt_text = |i: usize| {
        row.try_get::<Option<String>, _>(i)
            .map_err(StoreError::from_sqlx)
    };
    Ok(MessageRow {
        id: unsigned(int(0)?),
        conversation_id: unsigned(int(1)?),
        sender_role: text(2)?,
        sender_id: unsigned(int(19)?),
        sender_identifier: text(3)?,
        message_type: text(4)?,
        content: text(5)?,
        file_id: opt_text(6)?,
        file_url: opt_text(7)?,
        attachment: attachment_from_row(row, 11)?,
        client_msg_id: opt_text(8)?,
        is_read: int(9)? != 0,
        timestamp: int(10)?,
        erased: int(16)? != 0,
        edited_at: row
            .try_get::<Option<i64>, _>(17)
            .map_err(StoreError::from_sqlx)?,
        deleted_by: opt_text(18)?,
    })
}

/// The five file columns from `first` on (`file_name, file_size, mime_type, width, height`), as
/// one attachment: present when the name is.
pub(crate) fn attachment_from_row<R: sqlx::Row>(
    row: &R,
    first: usize,
) -> Result<Option<events::AttachedFile>, StoreError>
where
    i64: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    String: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    usize: ColumnIndex<R>,
{
    let opt_int = |i: usize| {
        row.try_get::<Option<i64>, _>(i)
            .map_err(StoreError::from_sqlx)
    };
    let Some(name) = row
        .try_get::<Option<String>, _>(first)
        .map_err(StoreError::from_sqlx)?
    else {
        return Ok(None);
    };
    let pixels = |i: usize| -> Result<Option<u32>, StoreError> {
        Ok(opt_int(i)?.and_then(|v| u32::try_from(v).ok()))
    };
    Ok(Some(events::AttachedFile {
        name,
        size: opt_int(first + 1)?.map_or(0, unsigned),
        mime_type: row
            .try_get::<Option<String>, _>(first + 2)
            .map_err(StoreError::from_sqlx)?
            .unwrap_or_default(),
        width: pixels(first + 3)?,
        height: pixels(first + 4)?,
    }))
}
