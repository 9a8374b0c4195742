//! What the projector tests share: a log made in memory from real domain events, and a
//! [`ProjectionStore`] over SQLite in memory with the service's migrations applied.
//!
//! The store mirrors the service's SQLite store (`src/store/projection.rs`) only as far as the
//! projectors and `replay` need: statements with parameters, unique violations as `Duplicate`,
//! and rebuild tables that are swapped in with the live table's indexes.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use events::{Actor, AttachedFile, ConversationEvent, MessageType, Role, UploadedFile};
use projections::{
    LoggedEvent, ProjectionError, ProjectionStore, Projector, SqlTxn, SqlValue, Tables,
};
use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};
use sqlx::{Row, Sqlite, Transaction};

/// Every table a projector of `all_projectors()` owns.
pub fn projected_tables() -> Vec<&'static str> {
    projections::all_projectors()
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect()
}

/// A conversation log built event by event, as the appender would record it: global positions
/// from 1, per-stream sequences from 1, the payload as the JSON text the store keeps.
#[derive(Default)]
pub struct Log {
    events: Vec<LoggedEvent>,
    sequences: HashMap<u64, u64>,
}

impl Log {
    pub fn record(&mut self, conversation_id: u64, at_micros: i64, event: ConversationEvent) {
        let sequence = self.sequences.entry(conversation_id).or_insert(0);
        *sequence += 1;
        let event_type = event.type_name();
        // Through text, as the store writes and reads the payload column.
        let text = serde_json::to_string(&event.payload_json()).expect("payload serializes");
        self.events.push(LoggedEvent {
            position: self.events.len() as u64 + 1,
            stream_type: "conversation".to_string(),
            stream_id: conversation_id.to_string(),
            sequence: *sequence,
            event_type: event_type.to_string(),
            event_version: ConversationEvent::current_version(event_type)
                .expect("a known event type")
                .to_string(),
            payload: text,
            recorded_at_micros: at_micros,
            decoded: Default::default(),
        });
    }

    pub fn events(&self) -> &[LoggedEvent] {
        &self.events
    }
}

pub fn user(id: u64) -> Actor {
    Actor::new(id, Role::User, format!("user_uuid_{id}"))
}

pub fn admin(id: u64, name: &str) -> Actor {
    Actor::new(id, Role::Admin, name)
}

pub fn system() -> Actor {
    Actor::new(0, Role::System, "system")
}

pub fn opened(conversation_id: u64, by: Actor) -> ConversationEvent {
    ConversationEvent::ConversationOpened {
        conversation_id,
        user: by,
    }
}

pub fn text(message_id: u64, sender: Actor, content: &str) -> ConversationEvent {
    ConversationEvent::MessageSent {
        message_id,
        sender,
        message_type: MessageType::Text,
        content: content.to_string(),
        file_id: None,
        client_msg_id: None,
        file_path: None,
        attachment: None,
    }
}

pub fn with_client_msg_id(mut event: ConversationEvent, id: &str) -> ConversationEvent {
    if let ConversationEvent::MessageSent { client_msg_id, .. } = &mut event {
        *client_msg_id = Some(id.to_string());
    }
    event
}

pub fn read(message_ids: &[u64], reader: Actor) -> ConversationEvent {
    ConversationEvent::MessagesRead {
        message_ids: message_ids.to_vec(),
        reader,
    }
}

pub const FILE_ID: &str = "0123456789abcdef0123456789abcdef";
pub const FILE_PATH: &str = "uploads/chat/2025/01/02/0123456789abcdef0123456789abcdef.png";
pub const FILE_SHA256: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

pub fn receipt_upload(by: Actor) -> ConversationEvent {
    ConversationEvent::FileUploaded {
        file: UploadedFile {
            file_id: FILE_ID.to_string(),
            kind: MessageType::Image,
            original_name: "receipt.png".to_string(),
            size: 2048,
            mime_type: "image/png".to_string(),
            sha256: FILE_SHA256.to_string(),
            path: FILE_PATH.to_string(),
            width: Some(640),
            height: Some(480),
        },
        by,
    }
}

/// Two conversations with every kind of event, interleaved, one second apart or so:
///
/// 1. user 10 asks about a refund (text, Chinese text, an image with a caption); admin 20
///    ("alice") assigns it to admin 22, reads two of the three messages and replies herself; the
///    user reads the reply; alice closes; the user rates it 5.
/// 2. user 11 asks, a system message answers, admin 21 ("bob") replies; bob closes, the user
///    reopens and asks again, bob replies and archives it (nobody was ever assigned).
pub fn story() -> Log {
    let (u10, u11) = (user(10), user(11));
    let (alice, bob) = (admin(20, "alice"), admin(21, "bob"));
    let mut log = Log::default();
    log.record(1, 1_000_000, opened(1, u10.clone())); // 1
    log.record(2, 1_500_000, opened(2, u11.clone())); // 2
    log.record(
        1,
        2_000_000,
        with_client_msg_id(text(1, u10.clone(), "Hello, I need a refund"), "c-1"),
    ); // 3
    log.record(2, 2_500_000, text(2, u11.clone(), "anyone there? ANYONE?")); // 4
    log.record(
        2,
        2_600_000,
        ConversationEvent::MessageSent {
            message_id: 3,
            sender: system(),
            message_type: MessageType::System,
            content: "An agent will join shortly".to_string(),
            file_id: None,
            client_msg_id: None,
            file_path: None,
            attachment: None,
        },
    ); // 5
    log.record(1, 3_000_000, text(4, u10.clone(), "我需要帮助")); // 6
    log.record(2, 3_500_000, text(5, bob.clone(), "Hi, how can I help?")); // 7
    log.record(
        1,
        4_000_000,
        ConversationEvent::ConversationAssigned {
            admin_id: 22,
            by: alice.clone(),
        },
    ); // 8
    log.record(
        2,
        4_500_000,
        ConversationEvent::ConversationClosed { by: bob.clone() },
    ); // 9
    log.record(
        2,
        4_800_000,
        ConversationEvent::ConversationReopened { by: u11.clone() },
    ); // 10
    log.record(2, 4_900_000, text(6, u11.clone(), "still broken")); // 11
    log.record(1, 5_000_000, receipt_upload(u10.clone())); // 12
    log.record(
        1,
        5_500_000,
        ConversationEvent::MessageSent {
            message_id: 7,
            sender: u10.clone(),
            message_type: MessageType::Image,
            content: "receipt".to_string(),
            file_id: Some(FILE_ID.to_string()),
            client_msg_id: None,
            file_path: Some(FILE_PATH.to_string()),
            attachment: Some(AttachedFile {
                name: "receipt.png".to_string(),
                size: 2048,
                mime_type: "image/png".to_string(),
                width: Some(640),
                height: Some(480),
            }),
        },
    ); // 13
    log.record(1, 6_000_000, read(&[1, 4], alice.clone())); // 14
    log.record(2, 6_200_000, text(8, bob.clone(), "  Fixed now  ")); // 15
    log.record(
        2,
        6_500_000,
        ConversationEvent::ConversationArchived { by: bob.clone() },
    ); // 16
    log.record(
        1,
        7_000_000,
        with_client_msg_id(text(9, alice.clone(), "Refund approved"), "a-9"),
    ); // 17
    log.record(1, 8_000_000, read(&[9], u10.clone())); // 18
    log.record(
        1,
        9_000_000,
        ConversationEvent::ConversationClosed { by: alice },
    ); // 19
    log.record(
        1,
        10_000_000,
        ConversationEvent::FeedbackGiven {
            rating: 5,
            comment: Some("thanks".to_string()),
            by: u10,
        },
    ); // 20
    log
}

/// The story followed by a busy stretch: twelve conversations with reads, closes, assignments and
/// ratings along the way, then one where the user sends 450 messages nobody answers, so that one
/// batch needs several multi-row inserts of messages (400 rows each) and of search terms (500).
pub fn busy_log() -> Log {
    let mut log = story();
    let mut at = 20_000_000;
    let mut next_message = 100;
    let staff = [admin(20, "alice"), admin(21, "bob")];
    for conversation in 3..=14u64 {
        let customer = user(100 + conversation);
        let agent = staff[(conversation % 2) as usize].clone();
        at += 1_000;
        log.record(conversation, at, opened(conversation, customer.clone()));
        if conversation % 3 == 0 {
            at += 1_000;
            log.record(
                conversation,
                at,
                ConversationEvent::ConversationAssigned {
                    admin_id: agent.id,
                    by: agent.clone(),
                },
            );
        }
        for round in 0..40u64 {
            let from_user = round % 3 != 2;
            let sender = if from_user {
                customer.clone()
            } else {
                agent.clone()
            };
            at += 7_000 + (round * conversation) as i64 % 5_000;
            let content = format!(
                "round {round} of conversation {conversation}: order{} 订单{}号 status",
                round % 7,
                round % 4
            );
            log.record(conversation, at, text(next_message, sender, &content));
            if !from_user {
                at += 500;
                let unread: Vec<u64> = (next_message - 2..next_message).collect();
                log.record(conversation, at, read(&unread, agent.clone()));
            }
            next_message += 1;
        }
        if conversation % 4 != 1 {
            at += 1_000;
            log.record(
                conversation,
                at,
                ConversationEvent::ConversationClosed { by: agent },
            );
            at += 1_000;
            log.record(
                conversation,
                at,
                ConversationEvent::FeedbackGiven {
                    rating: (conversation % 5 + 1) as u8,
                    comment: None,
                    by: customer,
                },
            );
        }
    }
    let (conversation, customer) = (15, user(115));
    at += 1_000;
    log.record(conversation, at, opened(conversation, customer.clone()));
    for n in 0..450 {
        at += 1_000;
        let content = format!("ping {n}");
        log.record(
            conversation,
            at,
            text(next_message, customer.clone(), &content),
        );
        next_message += 1;
    }
    log
}

/// [`busy_log`], then some of its conversations archived, erased, or both: what a replay must
/// defer until the rebuilt tables have their indexes.
pub fn busy_log_archived_and_erased() -> Log {
    let mut log = busy_log();
    let alice = admin(20, "alice");
    let mut at = 900_000_000;
    let mut record = |conversation: u64, event: ConversationEvent| {
        at += 1_000;
        log.record(conversation, at, event);
    };
    record(
        6,
        ConversationEvent::ConversationArchived { by: alice.clone() },
    );
    for conversation in [10, 6] {
        record(
            conversation,
            ConversationEvent::ConversationErased {
                reason: "a request".into(),
                by: alice.clone(),
            },
        );
    }
    log
}

pub fn int(v: i64) -> SqlValue {
    SqlValue::Int(v)
}

pub fn txt(v: &str) -> SqlValue {
    SqlValue::Text(v.to_string())
}

pub const NULL: SqlValue = SqlValue::Null;

/// SQLite in memory with the service's migrations, and a log in memory.
#[derive(Clone)]
pub struct MemoryStore {
    pool: SqlitePool,
    log: Arc<Vec<LoggedEvent>>,
    /// Every statement run through a transaction, in order.
    executed: Arc<Mutex<Vec<String>>>,
}

impl MemoryStore {
    pub async fn new(log: &[LoggedEvent]) -> MemoryStore {
        // One connection that never closes: an in-memory database lives as long as it does.
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect("sqlite::memory:")
            .await
            .expect("SQLite in memory opens");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .expect("the SQLite migrations are readable")
            .map(|entry| entry.expect("a migration file").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no migrations in {}", dir.display());
        for file in files {
            let sql = std::fs::read_to_string(&file).expect("a readable migration");
            sqlx::raw_sql(&sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("migration {} fails: {e}", file.display()));
        }
        MemoryStore {
            pool,
            log: Arc::new(log.to_vec()),
            executed: Arc::default(),
        }
    }

    /// Applies `projectors` to `events` in one transaction, as the runtime applies a batch.
    pub async fn apply(&self, projectors: &[Arc<dyn Projector>], events: &[LoggedEvent]) {
        self.try_apply(projectors, events)
            .await
            .expect("the batch applies");
    }

    /// As [`MemoryStore::apply`]; on an error the transaction is rolled back.
    pub async fn try_apply(
        &self,
        projectors: &[Arc<dyn Projector>],
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError> {
        let mut txn = self.begin().await?;
        for projector in projectors {
            if let Err(error) = projector.apply(txn.as_mut(), &Tables::LIVE, events).await {
                txn.rollback().await?;
                return Err(error);
            }
        }
        txn.commit().await
    }

    /// Every row of `table`, in the order of its columns' values, so that two tables holding
    /// the same rows compare equal whatever order they were written in.
    pub async fn rows(&self, table: &str) -> Vec<Vec<SqlValue>> {
        self.query(&format!("select * from {table}")).await
    }

    /// The rows a query returns, sorted (see [`MemoryStore::rows`]).
    pub async fn query(&self, sql: &str) -> Vec<Vec<SqlValue>> {
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut rows: Vec<Vec<SqlValue>> = rows.iter().map(row_values).collect();
        rows.sort_by_key(|row| row.iter().map(sort_key).collect::<Vec<_>>());
        rows
    }

    /// The rows of each multi-row insert into `table` run so far, in order.
    pub fn inserts_into(&self, table: &str) -> Vec<usize> {
        let prefix = format!("insert into {table} (");
        self.executed
            .lock()
            .unwrap()
            .iter()
            .filter(|sql| sql.starts_with(&prefix))
            .map(|sql| sql.matches("), (").count() + 1)
            .collect()
    }

    /// Every projected table by name.
    pub async fn tables(&self) -> Vec<(&'static str, Vec<Vec<SqlValue>>)> {
        let mut all = Vec::new();
        for table in projected_tables() {
            all.push((table, self.rows(table).await));
        }
        all
    }
}

fn sort_key(value: &SqlValue) -> (u8, i64, String) {
    match value {
        SqlValue::Null => (0, 0, String::new()),
        SqlValue::Int(v) => (1, *v, String::new()),
        SqlValue::Text(v) => (2, 0, v.clone()),
    }
}

fn row_values(row: &sqlx::sqlite::SqliteRow) -> Vec<SqlValue> {
    (0..row.len())
        .map(|i| match row.try_get::<Option<i64>, _>(i) {
            Ok(Some(v)) => SqlValue::Int(v),
            Ok(None) => SqlValue::Null,
            Err(_) => match row.try_get::<Option<String>, _>(i) {
                Ok(Some(v)) => SqlValue::Text(v),
                _ => SqlValue::Null,
            },
        })
        .collect()
}

fn sql_error(error: sqlx::Error) -> ProjectionError {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        return ProjectionError::Duplicate(db.message().to_string());
    }
    ProjectionError::Database(error.to_string())
}

#[async_trait]
impl ProjectionStore for MemoryStore {
    async fn read_from(
        &self,
        position: u64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>, ProjectionError> {
        Ok(self
            .log
            .iter()
            .filter(|e| e.position > position)
            .take(limit.max(1) as usize)
            .cloned()
            .collect())
    }

    async fn head(&self) -> Result<u64, ProjectionError> {
        Ok(self.log.last().map_or(0, |e| e.position))
    }

    async fn begin(&self) -> Result<Box<dyn SqlTxn>, ProjectionError> {
        Ok(Box::new(MemoryTxn {
            tx: self.pool.begin().await.map_err(sql_error)?,
            executed: self.executed.clone(),
        }))
    }
}

pub struct MemoryTxn {
    tx: Transaction<'static, Sqlite>,
    executed: Arc<Mutex<Vec<String>>>,
}

impl MemoryTxn {
    fn query<'q>(
        sql: &'q str,
        params: &'q [SqlValue],
    ) -> sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        let mut query = sqlx::query(sql);
        for param in params {
            query = match param {
                SqlValue::Null => query.bind(None::<i64>),
                SqlValue::Int(v) => query.bind(*v),
                SqlValue::Text(v) => query.bind(v.as_str()),
            };
        }
        query
    }

    async fn run(&mut self, sql: &str) -> Result<(), ProjectionError> {
        sqlx::query(sql)
            .execute(&mut *self.tx)
            .await
            .map(|_| ())
            .map_err(sql_error)
    }
}

#[async_trait]
impl SqlTxn for MemoryTxn {
    async fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64, ProjectionError> {
        self.executed.lock().unwrap().push(sql.to_string());
        let done = Self::query(sql, params)
            .execute(&mut *self.tx)
            .await
            .map_err(sql_error)?;
        Ok(done.rows_affected())
    }

    async fn fetch_row(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Option<Vec<SqlValue>>, ProjectionError> {
        let row = Self::query(sql, params)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(sql_error)?;
        Ok(row.as_ref().map(row_values))
    }

    async fn fetch_all(
        &mut self,
        sql: &str,
        params: &[SqlValue],
    ) -> Result<Vec<Vec<SqlValue>>, ProjectionError> {
        self.executed.lock().unwrap().push(sql.to_string());
        let rows = Self::query(sql, params)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(sql_error)?;
        Ok(rows.iter().map(row_values).collect())
    }

    /// As the service does on SQLite: the live table's columns, no indexes until the swap.
    async fn create_empty_copy(&mut self, from: &str, to: &str) -> Result<(), ProjectionError> {
        let ddl: Option<(String,)> =
            sqlx::query_as("select sql from sqlite_master where type = 'table' and name = ?")
                .bind(from)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(sql_error)?;
        let Some((ddl,)) = ddl else {
            return Err(ProjectionError::Database(format!("no table {from}")));
        };
        let columns = ddl
            .find('(')
            .ok_or_else(|| ProjectionError::Database(format!("unexpected definition of {from}")))?;
        self.run(&format!("drop table if exists {to}")).await?;
        self.run(&format!("create table {to} {}", &ddl[columns..]))
            .await
    }

    async fn replace_table(&mut self, live: &str, rebuilt: &str) -> Result<(), ProjectionError> {
        let indexes: Vec<(String,)> = sqlx::query_as(
            "select sql from sqlite_master where type = 'index' and tbl_name = ? and sql is not null",
        )
        .bind(live)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(sql_error)?;
        self.run(&format!("drop table {live}")).await?;
        self.run(&format!("alter table {rebuilt} rename to {live}"))
            .await?;
        for (sql,) in indexes {
            self.run(&sql).await?;
        }
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), ProjectionError> {
        self.tx.commit().await.map_err(sql_error)
    }

    async fn rollback(self: Box<Self>) -> Result<(), ProjectionError> {
        self.tx.rollback().await.map_err(sql_error)
    }
}
