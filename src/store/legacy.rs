//! The legacy Node.js system's MySQL tables (`users`, `conversations`, `messages`, as the spec's
//! schema has them), read for `chatd import`. Extra columns are ignored; only reads, never a
//! write, so an import can run against the live legacy database.

use std::collections::HashMap;
use std::time::Duration;

use events::ConversationStatus;
use events::import::{LegacyConversation, LegacyMessage};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{MySql, QueryBuilder, Row};

/// The tables of the spec's "Database Schema" section, with the `users` table its foreign key
/// names (whose other columns the spec leaves open): the shape this module reads, for
/// benchmarks and tests that make a legacy database.
pub const SPEC_SCHEMA: [&str; 3] = [
    "create table users (id int unsigned auto_increment primary key, \
     identifier varchar(64) not null)",
    "create table conversations (
        id int unsigned auto_increment primary key, user_id int unsigned not null,
        admin_id int unsigned null, status enum('active', 'closed', 'archived') default 'active',
        last_message_at timestamp null, created_at timestamp default current_timestamp,
        updated_at timestamp default current_timestamp on update current_timestamp,
        index idx_user_id (user_id), index idx_admin_id (admin_id), index idx_status (status),
        index idx_last_message (last_message_at),
        foreign key (user_id) references users(id) on delete cascade)",
    "create table messages (
        id int unsigned auto_increment primary key, conversation_id int unsigned not null,
        user_id int unsigned null, admin_id int unsigned null,
        sender_role enum('user', 'admin') not null,
        message_type enum('text', 'image', 'file', 'system') default 'text',
        content text not null, file_id varchar(255) null, file_url varchar(500) null,
        metadata json null, is_read boolean default false,
        timestamp timestamp default current_timestamp,
        index idx_conversation (conversation_id), index idx_timestamp (timestamp),
        index idx_sender (sender_role, user_id, admin_id), index idx_read (is_read),
        fulltext idx_content (content),
        foreign key (conversation_id) references conversations(id) on delete cascade)",
];

/// Columns of `users` that may name a user, in the order they are preferred.
const USER_IDENTIFIER_COLUMNS: [&str; 3] = ["identifier", "uuid", "username"];
/// Columns of an `admins` table that may name an admin, in the order they are preferred.
const ADMIN_IDENTIFIER_COLUMNS: [&str; 3] = ["identifier", "username", "name"];

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    #[error("cannot reach the legacy database {target}: {reason}")]
    Unreachable { target: String, reason: String },
    #[error("the legacy database has no table `{0}` (expected the spec's schema)")]
    MissingTable(&'static str),
    #[error("the legacy table `{table}` has no column `{column}`")]
    MissingColumn { table: &'static str, column: String },
    #[error("reading the legacy database: {0}")]
    Read(String),
}

impl From<sqlx::Error> for LegacyError {
    fn from(error: sqlx::Error) -> Self {
        LegacyError::Read(error.to_string())
    }
}

/// Counts and id ranges of the legacy tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegacyBounds {
    pub conversations: u64,
    pub messages: u64,
    pub max_conversation_id: u64,
    pub max_message_id: u64,
}

/// The legacy database, open for reading.
pub struct LegacySource {
    pool: MySqlPool,
    /// The `users` column naming a user, if `users` has one.
    user_identifier: Option<String>,
    users_table: bool,
    /// The `admins` table's column naming an admin, when the database has such a table.
    admin_identifier: Option<String>,
}

impl LegacySource {
    /// Connects and checks the tables; `user_identifier_column` overrides which column of
    /// `users` names a user.
    pub async fn open(
        url: &str,
        user_identifier_column: Option<&str>,
    ) -> Result<Self, LegacyError> {
        let target = super::redact_url(url);
        let unreachable = |reason: String| LegacyError::Unreachable {
            target: target.clone(),
            reason,
        };
        let options: MySqlConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| unreachable(e.to_string()))?;
        // One connection first, so that a refusal is reported as itself rather than as the
        // pool's timeout.
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            <sqlx::MySqlConnection as sqlx::Connection>::connect_with(&options),
        )
        .await
        .map_err(|_| unreachable("no answer within 10 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let _ = sqlx::Connection::close(probe).await;
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let columns = |table: &'static str| {
            let pool = pool.clone();
            async move {
                let rows = sqlx::query(
                    "select column_name from information_schema.columns \
                     where table_schema = database() and table_name = ?",
                )
                .bind(table)
                .fetch_all(&pool)
                .await?;
                rows.iter()
                    .map(|row| row.try_get::<String, _>(0))
                    .collect::<Result<Vec<String>, _>>()
            }
        };
        for (table, needed) in [
            (
                "conversations",
                &[
                    "id",
                    "user_id",
                    "admin_id",
                    "status",
                    "created_at",
                    "updated_at",
                ][..],
            ),
            (
                "messages",
                &[
                    "id",
                    "conversation_id",
                    "user_id",
                    "admin_id",
                    "sender_role",
                    "message_type",
                    "content",
                    "file_id",
                    "file_url",
                    "is_read",
                    "timestamp",
                ][..],
            ),
        ] {
            let found = columns(table).await?;
            if found.is_empty() {
                return Err(LegacyError::MissingTable(table));
            }
            if let Some(missing) = needed
                .iter()
                .find(|column| !found.iter().any(|f| f.eq_ignore_ascii_case(column)))
            {
                return Err(LegacyError::MissingColumn {
                    table,
                    column: missing.to_string(),
                });
            }
        }
        let user_columns = columns("users").await?;
        let user_identifier = match user_identifier_column {
            Some(column) => {
                if !user_columns.iter().any(|c| c.eq_ignore_ascii_case(column)) {
                    return Err(LegacyError::MissingColumn {
                        table: "users",
                        column: column.to_string(),
                    });
                }
                Some(column.to_string())
            }
            None => pick(&user_columns, &USER_IDENTIFIER_COLUMNS),
        };
        let admin_identifier = pick(&columns("admins").await?, &ADMIN_IDENTIFIER_COLUMNS);
        Ok(LegacySource {
            pool,
            user_identifier: user_identifier.map(|c| quoted(&c)),
            users_table: !user_columns.is_empty(),
            admin_identifier: admin_identifier.map(|c| quoted(&c)),
        })
    }

    /// Whether the database has a `users` table (without one, users have no identifier and no
    /// conversation can be refused for an unknown user).
    pub fn has_users(&self) -> bool {
        self.users_table
    }

    pub async fn bounds(&self) -> Result<LegacyBounds, LegacyError> {
        let row = sqlx::query(
            "select (select count(*) from conversations), (select count(*) from messages), \
             (select cast(coalesce(max(id), 0) as signed) from conversations), \
             (select cast(coalesce(max(id), 0) as signed) from messages)",
        )
        .fetch_one(&self.pool)
        .await?;
        let count = |i: usize| -> Result<u64, LegacyError> {
            let value: i64 = row.try_get(i)?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        Ok(LegacyBounds {
            conversations: count(0)?,
            messages: count(1)?,
            max_conversation_id: u64_of(&row, 2)?,
            max_message_id: u64_of(&row, 3)?,
        })
    }

    /// The lowest conversation id and message id above these, if any.
    pub async fn lowest_ids_above(
        &self,
        conversation_id: u64,
        message_id: u64,
    ) -> Result<(Option<u64>, Option<u64>), LegacyError> {
        let row = sqlx::query(
            "select (select cast(min(id) as signed) from conversations where id > ?), \
             (select cast(min(id) as signed) from messages where id > ?)",
        )
        .bind(conversation_id)
        .bind(message_id)
        .fetch_one(&self.pool)
        .await?;
        let get = |i: usize| -> Result<Option<u64>, LegacyError> {
            let value: Option<i64> = row.try_get(i)?;
            Ok(value.and_then(|v| u64::try_from(v).ok()))
        };
        Ok((get(0)?, get(1)?))
    }

    /// Up to `limit` conversations with ids above `after`, in id order. `None` for the user
    /// (and a row of `users` missing): the conversation names a user the database does not have.
    pub async fn conversations_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(LegacyConversation, bool)>, LegacyError> {
        let identifier = match (&self.user_identifier, self.users_table) {
            (Some(column), true) => format!("cast(u.{column} as char)"),
            _ => "null".to_string(),
        };
        let (join, known) = if self.users_table {
            ("left join users u on u.id = c.user_id", "u.id is not null")
        } else {
            ("", "1")
        };
        let sql = format!(
            "select c.id, c.user_id, c.admin_id, cast(c.status as char), \
             cast(coalesce(unix_timestamp(c.created_at), 0) * 1000000 as signed), \
             cast(coalesce(unix_timestamp(c.updated_at), unix_timestamp(c.created_at), 0) * 1000000 as signed), \
             {identifier}, {known}, \
             (c.status = 'active' and exists (select 1 from conversations n \
                 where n.user_id = c.user_id and n.status = 'active' and n.id > c.id)) \
             from conversations c {join} where c.id > ? order by c.id limit ?"
        );
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let status: Option<String> = row.try_get(3)?;
                let status = match status.as_deref().unwrap_or("active") {
                    "" | "active" => ConversationStatus::Active,
                    "closed" => ConversationStatus::Closed,
                    "archived" => ConversationStatus::Archived,
                    other => {
                        return Err(LegacyError::Read(format!(
                            "conversation {}: unknown status `{other}`",
                            u64_of(row, 0)?
                        )));
                    }
                };
                let identifier: Option<String> = row.try_get(6)?;
                let known: i64 = row.try_get(7)?;
                let superseded: Option<i64> = row.try_get(8)?;
                Ok((
                    LegacyConversation {
                        id: u64_of(row, 0)?,
                        user_id: u64_of(row, 1)?,
                        user_identifier: identifier.unwrap_or_default(),
                        admin_id: optional_u64_of(row, 2)?,
                        status,
                        created_at: row.try_get(4)?,
                        updated_at: row.try_get(5)?,
                        superseded: superseded.unwrap_or(0) != 0,
                    },
                    known != 0,
                ))
            })
            .collect()
    }

    /// The messages of these conversations, each conversation's in id order.
    pub async fn messages_of(
        &self,
        conversation_ids: &[u64],
    ) -> Result<HashMap<u64, Vec<LegacyMessage>>, LegacyError> {
        let mut found: HashMap<u64, Vec<LegacyMessage>> = HashMap::new();
        if conversation_ids.is_empty() {
            return Ok(found);
        }
        let mut query: QueryBuilder<MySql> = QueryBuilder::new(
            "select id, conversation_id, user_id, admin_id, cast(sender_role as char), \
             cast(coalesce(message_type, 'text') as char), content, file_id, file_url, \
             cast(coalesce(is_read, 0) as signed), \
             cast(coalesce(unix_timestamp(timestamp), 0) * 1000000 as signed) \
             from messages where conversation_id in (",
        );
        let mut ids = query.separated(", ");
        for id in conversation_ids {
            ids.push_bind(*id);
        }
        query.push(") order by id");
        for row in query.build().fetch_all(&self.pool).await? {
            let conversation_id = u64_of(&row, 1)?;
            let is_read: i64 = row.try_get(9)?;
            found
                .entry(conversation_id)
                .or_default()
                .push(LegacyMessage {
                    id: u64_of(&row, 0)?,
                    user_id: optional_u64_of(&row, 2)?,
                    admin_id: optional_u64_of(&row, 3)?,
                    sender_role: row.try_get::<Option<String>, _>(4)?.unwrap_or_default(),
                    message_type: row.try_get::<Option<String>, _>(5)?.unwrap_or_default(),
                    content: text_of(&row, 6)?.unwrap_or_default(),
                    file_id: text_of(&row, 7)?,
                    file_url: text_of(&row, 8)?,
                    upload: None,
                    is_read: is_read != 0,
                    timestamp: row.try_get(10)?,
                });
        }
        Ok(found)
    }

    /// Messages whose conversation does not exist (a schema without the foreign key), at most
    /// `limit`, as (message id, conversation id).
    pub async fn orphan_messages(&self, limit: u32) -> Result<Vec<(u64, u64)>, LegacyError> {
        let rows = sqlx::query(
            "select m.id, m.conversation_id from messages m \
             left join conversations c on c.id = m.conversation_id \
             where c.id is null order by m.id limit ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((u64_of(row, 0)?, u64_of(row, 1)?)))
            .collect()
    }

    /// The identifiers of these admins: empty for each when the database keeps no admins table;
    /// absent for an id such a table does not have.
    pub async fn admin_identifiers(
        &self,
        admin_ids: &[u64],
    ) -> Result<HashMap<u64, String>, LegacyError> {
        let Some(column) = &self.admin_identifier else {
            return Ok(admin_ids.iter().map(|id| (*id, String::new())).collect());
        };
        let mut found = HashMap::new();
        if admin_ids.is_empty() {
            return Ok(found);
        }
        let mut query: QueryBuilder<MySql> = QueryBuilder::new(format!(
            "select id, cast({column} as char) from admins where id in ("
        ));
        let mut ids = query.separated(", ");
        for id in admin_ids {
            ids.push_bind(*id);
        }
        query.push(")");
        for row in query.build().fetch_all(&self.pool).await? {
            found.insert(u64_of(&row, 0)?, text_of(&row, 1)?.unwrap_or_default());
        }
        Ok(found)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The first of `preferred` that `columns` holds (compared without case).
fn pick(columns: &[String], preferred: &[&str]) -> Option<String> {
    preferred
        .iter()
        .find_map(|p| columns.iter().find(|c| c.eq_ignore_ascii_case(p)).cloned())
}

/// A column name for a statement (names come from the schema or the operator's flag).
fn quoted(column: &str) -> String {
    format!("`{}`", column.replace('`', "``"))
}

/// An id column: unsigned in the spec's schema, signed in some others.
fn u64_of(row: &sqlx::mysql::MySqlRow, index: usize) -> Result<u64, LegacyError> {
    optional_u64_of(row, index)?
        .ok_or_else(|| LegacyError::Read(format!("column {index} is NULL where an id belongs")))
}

fn optional_u64_of(row: &sqlx::mysql::MySqlRow, index: usize) -> Result<Option<u64>, LegacyError> {
    if let Ok(value) = row.try_get::<Option<u64>, _>(index) {
        return Ok(value);
    }
    let value: Option<i64> = row.try_get(index)?;
    value
        .map(|v| {
            u64::try_from(v)
                .map_err(|_| LegacyError::Read(format!("negative id {v} in column {index}")))
        })
        .transpose()
}

/// Text, whether the column is a character type or binary (as `content` is under some
/// collations); invalid UTF-8 is replaced rather than refused.
fn text_of(row: &sqlx::mysql::MySqlRow, index: usize) -> Result<Option<String>, LegacyError> {
    if let Ok(value) = row.try_get::<Option<String>, _>(index) {
        return Ok(value);
    }
    let bytes: Option<Vec<u8>> = row.try_get(index)?;
    Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
}
