//! `chatd import` of a legacy Node.js deployment's MySQL history, through the real binary and
//! real HTTP on both back ends: a generated legacy database (the spec's tables on the test
//! MariaDB server) is imported, and chatd's API then shows every conversation and message as the
//! legacy rows had them, with their ids and times; bad rows are skipped and reported, a second
//! run or a run after a crash adds nothing twice, and a dry run writes nothing.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use chatd::store::EventStore;
use events::Role;
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{MySql, QueryBuilder};
use support::legacy::{LegacyDb, chatd, chatd_command};
use support::*;

/// Where the legacy server's links point.
const LEGACY_FILE_BASE: &str = "http://47.94.108.189";
const DAY: i64 = 86_400;
/// 2025-05-01T00:00:00Z: the legacy history starts on this day.
const HISTORY_START: i64 = 1_746_057_600;
/// The legacy admins (the legacy database keeps no table of them).
const ADMINS: [u64; 5] = [9001, 9002, 9003, 9004, 9005];
/// The generated history: its seed, its conversations, and messages per conversation on average.
const SEED: u64 = 20_250_714;
const CONVERSATIONS: usize = 200;
const MESSAGES_PER_CONVERSATION: u64 = 100;
/// The conversation (by index) without any message.
const EMPTY_CONVERSATION: usize = 50;
/// The conversation (by index) whose last row is a bad one.
const ENDS_WITH_A_BAD_ROW: usize = 15;

// ---------------------------------------------------------------------------------------------
// The legacy history: generated, deterministic, inserted into a database of its own.

/// A small linear congruential generator: the same seed, the same history.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    fn hex(&mut self) -> String {
        format!(
            "{:08x}{:08x}{:08x}{:08x}",
            self.next(),
            self.next(),
            self.next(),
            self.next()
        )
    }
}

/// A row of the legacy `conversations` table.
#[derive(Debug, Clone)]
struct LegacyConversation {
    id: u64,
    user_id: u64,
    admin_id: Option<u64>,
    status: &'static str,
    /// The legacy column, which the import ignores (NULL, stale or right).
    last_message_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

/// A row of the legacy `messages` table.
#[derive(Debug, Clone)]
struct LegacyMessage {
    id: u64,
    conversation_id: u64,
    user_id: Option<u64>,
    admin_id: Option<u64>,
    sender_role: &'static str,
    message_type: &'static str,
    content: String,
    file_id: Option<String>,
    file_url: Option<String>,
    metadata: Option<&'static str>,
    is_read: bool,
    timestamp: i64,
}

/// The legacy rows, and which message rows the import must skip.
#[derive(Debug, Clone, Default)]
struct History {
    /// (id, identifier)
    users: Vec<(u64, String)>,
    conversations: Vec<LegacyConversation>,
    messages: Vec<LegacyMessage>,
    /// Ids of the deliberately bad message rows, one of each reason to skip.
    bad: BTreeSet<u64>,
}

const TEXTS: [&str; 10] = [
    "Hello, my order has not arrived yet",
    "您好，我的订单还没有到，请帮我查一下",
    "مرحبا، لم يصل طلبي بعد",
    "שלום, ההזמנה שלי עדיין לא הגיעה",
    "👍🏽 thanks so much! 🎉🙏",
    "こんにちは、返品したいです",
    "line one\nline two\twith a tab",
    "Ok 好的 حسنا טוב 👌",
    "Quote \"this\" and 'that' & <b>not bold</b> \\ backslash; -- not a comment",
    "Mixed: order 订单 رقم 12345 מספר",
];

const SYSTEM_TEXTS: [&str; 3] = [
    "Conversation assigned to support",
    "会话已转接给客服",
    "تم نقل المحادثة",
];

/// What turns a generated message into a bad row.
type Spoiler = dyn Fn(&mut LegacyMessage);

impl History {
    /// `conversations` conversations of `mean` messages on average (none for one of them),
    /// over about 60 days of 2025; ids with gaps, message ids increasing with time across
    /// conversations; with one bad row of each kind in conversations 10 to 17.
    fn generate(seed: u64, conversations: usize, mean: u64) -> History {
        let mut rng = Lcg(seed);
        let mut history = History::default();
        // Each conversation's messages before ids are given: (timestamp, conversation, row).
        let mut pending: Vec<(i64, usize, usize, LegacyMessage)> = Vec::new();
        for i in 0..conversations {
            let id = i as u64 * 3 + 7;
            let user_id = 1000 + i as u64 * 5;
            history
                .users
                .push((user_id, format!("{:08x}-legacy-{i}", rng.next())));
            let status = match rng.below(100) {
                0..40 => "closed",
                40..55 => "archived",
                _ => "active",
            };
            let admin_id = (!rng.percent(25)).then(|| ADMINS[rng.below(5) as usize]);
            let created_at = HISTORY_START + rng.below(55 * DAY as u64) as i64;
            let count = if i == EMPTY_CONVERSATION {
                0
            } else {
                mean / 2 + rng.below(mean)
            };
            let mut at = created_at + rng.below(600) as i64;
            for j in 0..count as usize {
                // Conversation 0's fourth message shares its third one's second.
                if j > 0 && !(i == 0 && j == 3) {
                    at += rng.below(4000) as i64;
                }
                let message_type = match rng.below(100) {
                    0..72 => "text",
                    72..82 => "image",
                    82..90 => "file",
                    _ => "system",
                };
                let by_user = message_type != "system" && rng.percent(55);
                let sender_admin = admin_id.unwrap_or(ADMINS[rng.below(5) as usize]);
                let hex = rng.hex();
                let day = chrono::DateTime::from_timestamp(at, 0)
                    .expect("a time of 2025")
                    .format("%Y/%m/%d");
                let (content, file) = match message_type {
                    "image" => (
                        format!("IMG_{}.jpg", &hex[..8]),
                        Some(format!("{LEGACY_FILE_BASE}/uploads/chat/{day}/{hex}.jpg")),
                    ),
                    "file" => (
                        format!("报告_{}.pdf", &hex[..6]),
                        Some(format!("{LEGACY_FILE_BASE}/uploads/chat/{day}/{hex}.pdf")),
                    ),
                    "system" => (
                        SYSTEM_TEXTS[rng.below(SYSTEM_TEXTS.len() as u64) as usize].to_string(),
                        None,
                    ),
                    _ => (
                        format!("{} #{i}.{j}", TEXTS[rng.below(TEXTS.len() as u64) as usize]),
                        None,
                    ),
                };
                let message = LegacyMessage {
                    id: 0,
                    conversation_id: id,
                    user_id: by_user.then_some(user_id),
                    admin_id: (!by_user).then_some(sender_admin),
                    sender_role: if by_user { "user" } else { "admin" },
                    message_type,
                    content,
                    file_id: file.as_ref().map(|_| hex.clone()),
                    file_url: file,
                    metadata: rng.percent(10).then_some(r#"{"client": "web"}"#),
                    is_read: rng.percent(70),
                    timestamp: at,
                };
                pending.push((at, i, j, message));
            }
            let last = if count > 0 { at } else { created_at };
            let updated_at = last
                + match status {
                    "active" => rng.below(3600),
                    _ => rng.below(DAY as u64),
                } as i64;
            history.conversations.push(LegacyConversation {
                id,
                user_id,
                admin_id,
                status,
                last_message_at: match i % 6 {
                    0 => None,
                    1 => Some(created_at),
                    _ => (count > 0).then_some(last),
                },
                created_at,
                updated_at,
            });
        }
        // Message ids increase with time across conversations, with gaps.
        pending.sort_by_key(|(at, i, j, _)| (*at, *i, *j));
        let mut next_id = 101;
        let mut by_place = BTreeMap::new();
        for (_, i, j, mut message) in pending {
            message.id = next_id;
            next_id += 1 + rng.below(3);
            by_place.insert((i, j), history.messages.len());
            history.messages.push(message);
        }
        if conversations > 17 {
            history.spoil(&by_place);
        }
        history
    }

    /// Turns one message of each of conversations 10 to 17 into a row the import must skip.
    fn spoil(&mut self, by_place: &BTreeMap<(usize, usize), usize>) {
        fn user_of(i: usize) -> u64 {
            1000 + i as u64 * 5
        }
        let last_of = |i: usize| {
            by_place
                .range((i, 0)..(i + 1, 0))
                .last()
                .map(|((_, j), _)| *j)
                .expect("a conversation with messages")
        };
        let spoilers: [(usize, usize, &Spoiler); 8] = [
            // A user message from another user than the conversation's.
            (10, 3, &|m| {
                m.sender_role = "user";
                m.message_type = "text";
                m.user_id = Some(user_of(11));
                m.admin_id = None;
            }),
            // A user message with admin_id set.
            (11, 4, &|m| {
                m.sender_role = "user";
                m.message_type = "text";
                m.user_id = Some(user_of(11));
                m.admin_id = Some(ADMINS[0]);
            }),
            // An admin message without admin_id.
            (12, 2, &|m| {
                m.sender_role = "admin";
                m.message_type = "text";
                m.user_id = None;
                m.admin_id = None;
            }),
            // An admin message with user_id set.
            (13, 5, &|m| {
                m.sender_role = "admin";
                m.message_type = "text";
                m.user_id = Some(user_of(13));
                m.admin_id = Some(ADMINS[1]);
            }),
            // Only whitespace.
            (14, 1, &|m| {
                m.message_type = "text";
                m.content = "  \n\t  ".into();
                m.file_id = None;
                m.file_url = None;
            }),
            // 5001 characters (the row before it holds exactly 5000: kept).
            (ENDS_WITH_A_BAD_ROW, last_of(ENDS_WITH_A_BAD_ROW), &|m| {
                m.message_type = "text";
                m.content = "长".repeat(5001);
                m.file_id = None;
                m.file_url = None;
            }),
            // An image without its file_url.
            (16, 6, &|m| {
                m.message_type = "image";
                m.content = "IMG_lost.jpg".into();
                m.file_id = Some("lost".into());
                m.file_url = None;
            }),
            // A file without its file_url.
            (17, 7, &|m| {
                m.message_type = "file";
                m.content = "lost.pdf".into();
                m.file_id = None;
                m.file_url = None;
            }),
        ];
        for (i, j, spoil) in spoilers {
            let message = &mut self.messages[by_place[&(i, j)]];
            spoil(message);
            self.bad.insert(message.id);
        }
        // Exactly at the limit, in three-byte characters: imported.
        let at_limit =
            &mut self.messages[by_place[&(ENDS_WITH_A_BAD_ROW, last_of(ENDS_WITH_A_BAD_ROW) - 1)]];
        at_limit.message_type = "text";
        at_limit.content = "字".repeat(5000);
        at_limit.file_id = None;
        at_limit.file_url = None;
    }

    fn good_messages(&self) -> impl Iterator<Item = &LegacyMessage> {
        self.messages.iter().filter(|m| !self.bad.contains(&m.id))
    }

    fn identifier_of(&self, user_id: u64) -> &str {
        self.users
            .iter()
            .find(|(id, _)| *id == user_id)
            .map(|(_, identifier)| identifier.as_str())
            .expect("the conversation's user")
    }

    fn max_conversation_id(&self) -> u64 {
        self.conversations.iter().map(|c| c.id).max().unwrap_or(0)
    }

    fn max_message_id(&self) -> u64 {
        self.messages.iter().map(|m| m.id).max().unwrap_or(0)
    }

    /// The generated history holds every kind of row the import must carry over.
    fn assert_varied(&self) {
        let messages = self.good_messages().count();
        assert!((15_000..=25_000).contains(&messages), "{messages} messages");
        for kind in ["text", "image", "file", "system"] {
            for read in [false, true] {
                assert!(
                    self.good_messages()
                        .any(|m| m.message_type == kind && m.is_read == read),
                    "a {kind} message with is_read {read}"
                );
            }
        }
        for status in ["active", "closed", "archived"] {
            assert!(
                self.conversations.iter().any(|c| c.status == status),
                "{status}"
            );
        }
        assert!(
            self.conversations
                .iter()
                .any(|c| c.last_message_at.is_none())
        );
        assert!(
            self.messages
                .windows(2)
                .any(|w| w[0].conversation_id == w[1].conversation_id
                    && w[0].timestamp == w[1].timestamp),
            "two messages of a conversation at the same second"
        );
        let days = self.messages.iter().map(|m| m.timestamp / DAY);
        let span = days.clone().max().unwrap_or(0) - days.min().unwrap_or(0);
        assert!((50..=70).contains(&span), "{span} days");
        assert_eq!(self.bad.len(), 8, "one bad row of each kind");
    }

    /// A conversation as chatd's API must show it.
    fn conversation_view(&self, conversation: &LegacyConversation) -> Value {
        let last = self
            .good_messages()
            .filter(|m| m.conversation_id == conversation.id)
            .map(|m| m.timestamp)
            .max();
        json!({
            "id": conversation.id,
            "user_id": conversation.user_id,
            "user_identifier": self.identifier_of(conversation.user_id),
            "admin_id": conversation.admin_id,
            "status": conversation.status,
            "created_at": wire(conversation.created_at),
            "last_message_at": last.map(wire),
        })
    }

    /// A conversation's imported messages as chatd's API must show them, oldest first.
    fn message_views(&self, conversation: &LegacyConversation) -> Vec<Value> {
        self.good_messages()
            .filter(|m| m.conversation_id == conversation.id)
            .map(|m| {
                let mut view = json!({
                    "id": m.id,
                    "conversation_id": m.conversation_id,
                    "sender_role": if m.message_type == "system" { "system" } else { m.sender_role },
                    "message_type": m.message_type,
                    "content": m.content,
                    "message": m.content,
                    "file_id": m.file_id,
                    "file_url": m.file_url,
                    "is_read": m.is_read,
                    "timestamp": wire(m.timestamp),
                });
                match (m.message_type, m.sender_role) {
                    ("system", _) => {}
                    (_, "user") => {
                        view["sender_identifier"] = json!(self.identifier_of(conversation.user_id))
                    }
                    _ => view["sender_identifier"] = json!(""),
                }
                view
            })
            .collect()
    }
}

/// RFC 3339, whole seconds, `Z`: the API's times.
fn wire(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .expect("a time of 2025")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl LegacyDb {
    /// The spec's tables holding `history`.
    async fn holding(history: &History) -> LegacyDb {
        let legacy = LegacyDb::create().await;
        legacy.insert(history).await;
        legacy
    }

    /// Multi-row inserts, explicit ids, every time written (so ON UPDATE moves none).
    async fn insert(&self, history: &History) {
        let mut db = self.connect().await;
        for users in history.users.chunks(1000) {
            let mut insert: QueryBuilder<MySql> =
                QueryBuilder::new("insert into users (id, identifier) ");
            insert.push_values(users, |mut row, (id, identifier)| {
                row.push_bind(*id).push_bind(identifier.as_str());
            });
            insert.build().execute(&mut db).await.expect("insert users");
        }
        for conversations in history.conversations.chunks(1000) {
            let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
                "insert into conversations \
                 (id, user_id, admin_id, status, last_message_at, created_at, updated_at) ",
            );
            insert.push_values(conversations, |mut row, c| {
                row.push_bind(c.id)
                    .push_bind(c.user_id)
                    .push_bind(c.admin_id)
                    .push_bind(c.status);
                for time in [c.last_message_at, Some(c.created_at), Some(c.updated_at)] {
                    row.push("from_unixtime(")
                        .push_bind_unseparated(time)
                        .push_unseparated(")");
                }
            });
            insert
                .build()
                .execute(&mut db)
                .await
                .expect("insert conversations");
        }
        for messages in history.messages.chunks(1000) {
            let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
                "insert into messages (id, conversation_id, user_id, admin_id, sender_role, \
                 message_type, content, file_id, file_url, metadata, is_read, timestamp) ",
            );
            insert.push_values(messages, |mut row, m| {
                row.push_bind(m.id)
                    .push_bind(m.conversation_id)
                    .push_bind(m.user_id)
                    .push_bind(m.admin_id)
                    .push_bind(m.sender_role)
                    .push_bind(m.message_type)
                    .push_bind(m.content.as_str())
                    .push_bind(m.file_id.as_deref())
                    .push_bind(m.file_url.as_deref())
                    .push_bind(m.metadata)
                    .push_bind(m.is_read)
                    .push("from_unixtime(")
                    .push_bind_unseparated(m.timestamp)
                    .push_unseparated(")");
            });
            insert
                .build()
                .execute(&mut db)
                .await
                .expect("insert messages");
        }
    }

    /// (day number since the epoch, a count, another count) rows of a query.
    async fn per_day(&self, sql: &str) -> BTreeMap<i64, (i64, i64)> {
        let mut db = self.connect().await;
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(sql)
            .fetch_all(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|(d, a, b)| (d, (a, b))).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The binary and the target store.

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `chatd import --from <legacy> --json <more>`, which must succeed: its one JSON object.
fn import(db: &TestDb, legacy: &LegacyDb, more: &[&str]) -> Value {
    let mut args = vec!["import", "--from", &legacy.url, "--json"];
    args.extend_from_slice(more);
    let output = chatd(db, &args);
    assert!(
        output.status.success(),
        "{}: chatd {args:?} failed: {}",
        db.name(),
        text(&output.stderr)
    );
    let stdout = text(&output.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    let report: Value = last
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("{}: no JSON summary on stdout:\n{stdout}", db.name()));
    assert!(report.is_object(), "{}: {report}", db.name());
    report
}

/// The (table, id) of each row a summary lists, each with a reason given.
fn rows_listed(report: &Value, list: &str) -> BTreeSet<(String, u64)> {
    report[list]
        .as_array()
        .unwrap_or_else(|| panic!("`{list}` in {report}"))
        .iter()
        .map(|note| {
            assert!(
                note["reason"]
                    .as_str()
                    .is_some_and(|r| !r.trim().is_empty()),
                "a reason for {note}"
            );
            (
                note["table"].as_str().expect("table").to_string(),
                note["id"].as_u64().expect("id"),
            )
        })
        .collect()
}

fn bad_rows(history: &History) -> BTreeSet<(String, u64)> {
    history
        .bad
        .iter()
        .map(|id| ("messages".to_string(), *id))
        .collect()
}

async fn scalar(store: &EventStore, sql: &str) -> i64 {
    match store {
        EventStore::MySql(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
        EventStore::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn events_in(db: &TestDb) -> i64 {
    scalar(&db.store, "select count(*) from events").await
}

/// Every row of a query, its columns as text.
async fn rows_of(store: &EventStore, sql: &str) -> Vec<String> {
    use sqlx::Row;
    macro_rules! rows {
        ($pool:expr) => {
            sqlx::query(sql)
                .fetch_all($pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| {
                            if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                                format!("{v:?}")
                            } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                                format!("{v:?}")
                            } else if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(i) {
                                format!("{:?}", v.map(hex::encode))
                            } else {
                                "?".to_string()
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect()
        };
    }
    match store {
        EventStore::MySql(s) => rows!(s.pool()),
        EventStore::Sqlite(s) => rows!(s.pool()),
    }
}

/// Every row of every table of the target, sorted: to show that nothing was written.
async fn every_row(store: &EventStore) -> Vec<String> {
    let tables_sql = match store {
        EventStore::MySql(_) => {
            "select cast(table_name as char) from information_schema.tables \
             where table_schema = database()"
        }
        EventStore::Sqlite(_) => "select name from sqlite_master where type = 'table'",
    };
    let mut all = Vec::new();
    for table in rows_of(store, tables_sql).await {
        let table = table.trim_start_matches("Some(\"").trim_end_matches("\")");
        for row in rows_of(store, &format!("select * from {table}")).await {
            all.push(format!("{table}: {row}"));
        }
    }
    all.sort();
    all
}

/// The tables a replay rebuilds.
const READ_TABLES: [&str; 4] = [
    "conversations",
    "messages",
    "conversations_archive",
    "messages_archive",
];

async fn read_tables(db: &TestDb) -> Vec<Vec<String>> {
    let mut tables = Vec::new();
    for table in READ_TABLES {
        tables.push(dump(&db.store, table).await);
    }
    tables
}

/// The log as stored, but the payloads in the clear (the stored ones are sealed with random
/// nonces) and without hashes (which cover the sealed bytes).
async fn log_of(db: &TestDb) -> (Vec<String>, Vec<(u64, String)>) {
    let rows = rows_of(
        &db.store,
        "select position, stream_type, stream_id, sequence, event_type, event_version, \
         metadata, recorded_at from events order by position",
    )
    .await;
    let mut payloads = Vec::new();
    let mut after = 0;
    loop {
        let page = db
            .store
            .read_from(after, 10_000)
            .await
            .expect("read the log");
        let Some(last) = page.last() else { break };
        after = last.position;
        payloads.extend(page.into_iter().map(|e| (e.position, e.payload)));
    }
    (rows, payloads)
}

// ---------------------------------------------------------------------------------------------
// What the API shows.

/// Only `keys` of `object`.
fn pick(object: &Value, keys: &[&str]) -> Value {
    Value::Object(
        keys.iter()
            .filter_map(|k| object.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect(),
    )
}

/// Every conversation, through the admin's list, page by page: by id.
async fn every_conversation(app: &TestApp, admin: &str) -> BTreeMap<u64, Value> {
    let mut found = BTreeMap::new();
    for page in 1.. {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/api/chat/conversations?limit=50&page={page}"),
                Some(admin),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let conversations = body["data"]["conversations"]
            .as_array()
            .expect("conversations");
        if conversations.is_empty() {
            break;
        }
        for conversation in conversations {
            let id = conversation["id"].as_u64().expect("id");
            assert!(
                found.insert(id, conversation.clone()).is_none(),
                "conversation {id} listed twice"
            );
        }
    }
    found
}

/// Every message of a conversation, oldest first, 200 at a time.
async fn every_message(app: &TestApp, token: &str, conversation_id: u64) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = app
            .call(
                Method::GET,
                &format!(
                    "/api/chat/messages?conversation_id={conversation_id}&after_id={after}&limit=200"
                ),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 200, "conversation {conversation_id}: {body}");
        let page = body["data"]["messages"].as_array().expect("messages");
        messages.extend(page.iter().cloned());
        match page.last() {
            Some(last) if body["data"]["has_more"] == true => {
                after = last["id"].as_u64().expect("id")
            }
            _ => break,
        }
    }
    messages
}

/// The first message where chatd shows other than expected, described.
fn first_difference(expected: &[Value], shown: &[Value]) -> Option<String> {
    for (i, want) in expected.iter().enumerate() {
        let keys: Vec<&str> = want
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        match shown.get(i) {
            None => return Some(format!("message {} is missing: {want}", want["id"])),
            Some(got) if pick(got, &keys) != *want => {
                return Some(format!(
                    "message #{i}:\n expected {want}\n      got {}",
                    pick(got, &keys)
                ));
            }
            Some(_) => {}
        }
    }
    (shown.len() > expected.len())
        .then(|| format!("extra messages: {:?}", &shown[expected.len()..]))
}

/// The analytics report of `[from, to)` (seconds) in UTC days.
async fn analytics(app: &TestApp, admin: &str, from: i64, to: i64) -> Value {
    let (status, body) = app
        .call(
            Method::GET,
            &format!(
                "/api/chat/analytics?from={}&to={}&bucket=day&tz=UTC",
                wire(from),
                wire(to)
            ),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// The analytics over the imported range against plain SQL on the legacy rows: messages per
/// UTC day by side (system messages on neither), conversations opened and closed per day.
async fn check_analytics(
    name: &str,
    app: &TestApp,
    admin: &str,
    legacy: &LegacyDb,
    history: &History,
) {
    let bad = history
        .bad
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let day = "cast(floor(unix_timestamp({}) / 86400) as signed)";
    let volume = legacy
        .per_day(&format!(
            "select {} d, cast(sum(sender_role = 'user') as signed), \
             cast(sum(sender_role = 'admin') as signed) from messages \
             where message_type <> 'system' and id not in ({bad}) group by d",
            day.replace("{}", "timestamp")
        ))
        .await;
    let opened = legacy
        .per_day(&format!(
            "select {} d, count(*), 0 from conversations group by d",
            day.replace("{}", "created_at")
        ))
        .await;
    let closed = legacy
        .per_day(&format!(
            "select {} d, count(*), 0 from conversations where status = 'closed' group by d",
            day.replace("{}", "updated_at")
        ))
        .await;
    let first = *opened.keys().next().expect("conversations");
    let last = *closed.keys().chain(volume.keys()).max().expect("messages");
    let whole = analytics(app, admin, first * DAY, (last + 1) * DAY).await;
    let buckets: Vec<(String, i64, i64)> = whole["volume"]
        .as_array()
        .expect("volume")
        .iter()
        .map(|b| {
            (
                b["start"].as_str().expect("start").to_string(),
                b["user"].as_i64().expect("user"),
                b["admin"].as_i64().expect("admin"),
            )
        })
        .collect();
    let expected: Vec<(String, i64, i64)> = (first..=last)
        .map(|d| {
            let (user, admin) = volume.get(&d).copied().unwrap_or_default();
            let start = wire(d * DAY)[..10].to_string();
            (start, user, admin)
        })
        .collect();
    assert_eq!(buckets, expected, "{name}: messages per day by side");
    let total = |per_day: &BTreeMap<i64, (i64, i64)>| per_day.values().map(|(n, _)| n).sum::<i64>();
    assert_eq!(
        (
            whole["conversations"]["opened"].as_i64(),
            whole["conversations"]["closed"].as_i64()
        ),
        (Some(total(&opened)), Some(total(&closed))),
        "{name}: conversations opened and closed over the whole range"
    );
    // The report counts conversations over its range: one report per day gives them per day.
    for d in first..=last {
        let report = analytics(app, admin, d * DAY, (d + 1) * DAY).await;
        let want = (
            opened.get(&d).map_or(0, |(n, _)| *n),
            closed.get(&d).map_or(0, |(n, _)| *n),
        );
        let got = (
            report["conversations"]["opened"].as_i64().unwrap_or(-1),
            report["conversations"]["closed"].as_i64().unwrap_or(-1),
        );
        assert_eq!(
            got,
            want,
            "{name}: conversations (opened, closed) on {}",
            wire(d * DAY)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// A generated legacy history (200 conversations, ~20,000 messages, every kind of row and a bad
/// row of each kind) imported into each back end reads through the API as it was: every
/// conversation and message with its ids, content, type, read flag, time, link and sender; its
/// user sees it; new ids continue above the legacy ones; analytics put it where it happened; a
/// replay rebuilds the same read tables, the audit chain verifies, and a second import adds
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_history_reads_as_it_was_on_both_back_ends() {
    let history = History::generate(SEED, CONVERSATIONS, MESSAGES_PER_CONVERSATION);
    history.assert_varied();
    let legacy = LegacyDb::holding(&history).await;
    let good = history.good_messages().count() as u64;
    let files = history
        .good_messages()
        .filter(|m| m.file_url.is_some())
        .count() as u64;
    for db in TestDb::each().await {
        let name = db.name();

        let report = import(&db, &legacy, &[]);
        assert_eq!(report["dry_run"], false, "{name}: {report}");
        assert_eq!(
            report["conversations"],
            json!({"imported": CONVERSATIONS, "already_imported": 0, "updated": 0,
                   "changed_in_both": 0, "skipped": 0}),
            "{name}"
        );
        assert_eq!(
            report["messages"],
            json!({"imported": good, "skipped": history.bad.len()}),
            "{name}"
        );
        assert_eq!(
            rows_listed(&report, "skipped"),
            bad_rows(&history),
            "{name}"
        );
        assert_eq!(report["adjusted"], json!([]), "{name}: a clean history");
        assert_eq!(
            (
                report["files"]["kept"].as_u64(),
                report["files"]["rewritten"].as_u64()
            ),
            (Some(files), Some(0)),
            "{name}: {report}"
        );
        assert!(
            report["read_receipts"].as_u64() > Some(0),
            "{name}: {report}"
        );
        let events = events_in(&db).await;
        assert_eq!(report["events"].as_i64(), Some(events), "{name}");

        let verified = chatd(&db, &["import", "verify", "--from", &legacy.url]);
        assert!(
            verified.status.success(),
            "{name}: import verify: {}",
            text(&verified.stderr)
        );

        let app = TestApp::spawn(&db).await;
        let (_, admin) = app.session(Role::Admin, None).await;

        // Every conversation, through the admin's list.
        let listed = every_conversation(&app, &admin).await;
        assert_eq!(
            listed.keys().copied().collect::<Vec<_>>(),
            history
                .conversations
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>(),
            "{name}: the conversations listed"
        );
        let keys = [
            "id",
            "user_id",
            "user_identifier",
            "admin_id",
            "status",
            "created_at",
            "last_message_at",
        ];
        for conversation in &history.conversations {
            assert_eq!(
                pick(&listed[&conversation.id], &keys),
                history.conversation_view(conversation),
                "{name}: conversation {}",
                conversation.id
            );
        }

        // Every message of every conversation.
        for conversation in &history.conversations {
            let shown = every_message(&app, &admin, conversation.id).await;
            if let Some(difference) = first_difference(&history.message_views(conversation), &shown)
            {
                panic!("{name}: conversation {}: {difference}", conversation.id);
            }
        }

        // Its user sees their conversation.
        let mine = history
            .conversations
            .iter()
            .find(|c| c.status == "active" && c.id > history.conversations[20].id)
            .expect("an active conversation");
        let (_, user) = app.session(Role::User, Some(mine.user_id)).await;
        let (status, body) = app
            .call(Method::GET, "/api/chat/conversations", Some(&user), None)
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(
            body["data"]["conversations"]
                .as_array()
                .map(|c| c.iter().map(|c| c["id"].clone()).collect::<Vec<_>>()),
            Some(vec![json!(mine.id)]),
            "{name}: the user's conversations"
        );
        let (status, body) = app
            .call(
                Method::GET,
                "/api/chat/messages?limit=200",
                Some(&user),
                None,
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["data"]["conversation_id"], json!(mine.id), "{name}");

        check_analytics(name, &app, &admin, &legacy, &history).await;

        // chatd's own ids continue above the legacy ones.
        let (status, sent) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&user),
                Some(&json!({"message": "after the move 搬家以后"})),
            )
            .await;
        assert_eq!(status, 201, "{name}: {sent}");
        assert_eq!(sent["data"]["conversation_id"], json!(mine.id), "{name}");
        assert!(
            sent["data"]["id"].as_u64() > Some(history.max_message_id()),
            "{name}: message id {} after legacy ids up to {}",
            sent["data"]["id"],
            history.max_message_id()
        );
        let (_, newcomer) = app.session(Role::User, None).await;
        let (status, opened) = app
            .call(
                Method::POST,
                "/api/chat/messages",
                Some(&newcomer),
                Some(&json!({"message": "first time here"})),
            )
            .await;
        assert_eq!(status, 201, "{name}: {opened}");
        assert!(
            opened["data"]["conversation_id"].as_u64() > Some(history.max_conversation_id()),
            "{name}: conversation id {} after legacy ids up to {}",
            opened["data"]["conversation_id"],
            history.max_conversation_id()
        );
        assert!(
            opened["data"]["id"].as_u64() > Some(history.max_message_id()),
            "{name}: {opened}"
        );
        // Read back by their senders, so the read tables hold both before they are compared.
        for token in [&user, &newcomer] {
            let (status, body) = app
                .call(Method::GET, "/api/chat/messages?limit=1", Some(token), None)
                .await;
            assert_eq!(status, 200, "{name}: {body}");
        }
        app.stop().await;

        // A replay rebuilds the same read tables; the hash chains verify.
        let before = read_tables(&db).await;
        let replayed = chatd(&db, &["replay"]);
        assert!(
            replayed.status.success(),
            "{name}: replay: {}",
            text(&replayed.stderr)
        );
        for (table, rows) in READ_TABLES.iter().zip(&before) {
            assert_eq!(
                &dump(&db.store, table).await,
                rows,
                "{name}: {table} after a replay"
            );
        }
        let audited = chatd(&db, &["audit", "verify"]);
        assert!(
            audited.status.success(),
            "{name}: audit verify: {}{}",
            text(&audited.stdout),
            text(&audited.stderr)
        );

        // A second import adds nothing.
        let events = events_in(&db).await;
        let again = import(&db, &legacy, &[]);
        assert_eq!(
            again["conversations"],
            json!({"imported": 0, "already_imported": CONVERSATIONS, "updated": 0,
                   "changed_in_both": 0, "skipped": 0}),
            "{name}: {again}"
        );
        assert_eq!(again["events"], json!(0), "{name}: {again}");
        assert_eq!(
            events_in(&db).await,
            events,
            "{name}: events after a second import"
        );

        // A legacy row edited since the import is a difference `import verify` names.
        let edited = history
            .good_messages()
            .find(|m| m.conversation_id == history.conversations[30].id)
            .expect("a message of conversation 30");
        let edit = format!(
            "update messages set content = concat(content, ' (edited)') where id = {}",
            edited.id
        );
        sqlx::query(&edit)
            .execute(&mut legacy.connect().await)
            .await
            .expect("edit a legacy message");
        let differs = chatd(&db, &["import", "verify", "--from", &legacy.url]);
        let restore = format!("update messages set content = ? where id = {}", edited.id);
        sqlx::query(&restore)
            .bind(&edited.content)
            .execute(&mut legacy.connect().await)
            .await
            .expect("restore the legacy message");
        let stderr = text(&differs.stderr);
        assert!(!differs.status.success(), "{name}: verify after an edit");
        assert!(
            stderr.contains(&edited.conversation_id.to_string())
                && stderr.contains(&edited.id.to_string()),
            "{name}: verify names conversation {} and message {}: {stderr}",
            edited.conversation_id,
            edited.id
        );

        db.cleanup().await;
    }
    legacy.drop().await;
}

/// An import SIGKILLed halfway (one conversation per transaction) and run again ends with the
/// same log, event for event, and the same read tables as an import that ran through at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_halfway_ends_as_a_clean_one() {
    let history = History::generate(SEED + 1, CONVERSATIONS, MESSAGES_PER_CONVERSATION);
    let legacy = LegacyDb::holding(&history).await;
    let total = CONVERSATIONS as i64;
    for (clean, killed) in TestDb::each().await.into_iter().zip(TestDb::each().await) {
        let name = clean.name();
        import(&clean, &legacy, &[]);

        let mut child = chatd_command(&killed, &["import", "--from", &legacy.url, "--batch", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chatd import");
        let streams = "select count(distinct stream_id) from events";
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{name}: the import ended ({status}) before it could be killed halfway");
            }
            if scalar(&killed.store, streams).await >= total / 10 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(3)).await;
        }
        child.kill().expect("SIGKILL the import");
        child.wait().expect("reap the import");
        let imported_before = scalar(&killed.store, streams).await;
        assert!(
            0 < imported_before && imported_before < total,
            "{name}: killed with {imported_before} of {total} conversations in: not halfway"
        );

        // Conversations go in id order, each whole: the first ones are in, the rest are not.
        let mut streams_in = rows_of(&killed.store, "select distinct stream_id from events").await;
        streams_in.sort();
        let done: BTreeSet<u64> = history.conversations[..imported_before as usize]
            .iter()
            .map(|c| c.id)
            .collect();
        let mut expected_streams: Vec<String> = done
            .iter()
            .map(|id| format!("{:?}", Some(id.to_string())))
            .collect();
        expected_streams.sort();
        assert_eq!(
            streams_in, expected_streams,
            "{name}: what the killed run left"
        );

        let resumed = import(&killed, &legacy, &[]);
        assert_eq!(
            resumed["conversations"],
            json!({
                "imported": total - imported_before,
                "already_imported": imported_before,
                "updated": 0,
                "changed_in_both": 0,
                "skipped": 0
            }),
            "{name}: {resumed}"
        );
        // The resumed run reports the bad rows of the conversations it imported.
        let skipped_after_resume: BTreeSet<(String, u64)> = history
            .messages
            .iter()
            .filter(|m| history.bad.contains(&m.id) && !done.contains(&m.conversation_id))
            .map(|m| ("messages".to_string(), m.id))
            .collect();
        assert_eq!(
            rows_listed(&resumed, "skipped"),
            skipped_after_resume,
            "{name}: {resumed}"
        );

        let (clean_rows, clean_payloads) = log_of(&clean).await;
        let (killed_rows, killed_payloads) = log_of(&killed).await;
        assert_eq!(clean_rows.len(), killed_rows.len(), "{name}: events");
        if let Some((a, b)) = clean_rows.iter().zip(&killed_rows).find(|(a, b)| a != b) {
            panic!("{name}: the logs differ:\n clean {a}\nkilled {b}");
        }
        if let Some((a, b)) = clean_payloads
            .iter()
            .zip(&killed_payloads)
            .find(|(a, b)| a != b)
        {
            panic!("{name}: the payloads differ:\n clean {a:?}\nkilled {b:?}");
        }
        for table in READ_TABLES.iter().chain(&["event_sequencer"]) {
            assert_eq!(
                dump(&killed.store, table).await,
                dump(&clean.store, table).await,
                "{name}: {table}"
            );
        }
        clean.cleanup().await;
        killed.cleanup().await;
    }
    legacy.drop().await;
}

/// `--dry-run` reads and checks everything and reports the rows it would skip, exactly as the
/// real import then does, without writing a row to the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reports_and_writes_nothing() {
    let history = History::generate(SEED + 2, 40, 30);
    let legacy = LegacyDb::holding(&history).await;
    for db in TestDb::each().await {
        let name = db.name();
        let before = every_row(&db.store).await;
        assert!(
            before
                .iter()
                .any(|row| row.starts_with("event_sequencer: ")),
            "{name}: every_row reads the tables: {before:?}"
        );

        let dry = import(&db, &legacy, &["--dry-run"]);
        assert_eq!(dry["dry_run"], true, "{name}: {dry}");
        assert_eq!(rows_listed(&dry, "skipped"), bad_rows(&history), "{name}");
        assert_eq!(events_in(&db).await, 0, "{name}: events after a dry run");
        assert_eq!(
            every_row(&db.store).await,
            before,
            "{name}: rows after a dry run"
        );

        let real = import(&db, &legacy, &[]);
        assert_eq!(real["dry_run"], false, "{name}");
        assert_eq!(
            dry["skipped"], real["skipped"],
            "{name}: the same rows skipped"
        );
        assert_eq!(
            dry["messages"]["skipped"], real["messages"]["skipped"],
            "{name}"
        );
        assert_eq!(
            dry["conversations"]["skipped"], real["conversations"]["skipped"],
            "{name}"
        );
        assert!(events_in(&db).await > 0, "{name}: the real import writes");
        db.cleanup().await;
    }
    legacy.drop().await;
}

/// A legacy database that cannot be reached, or lacks the `messages` table, stops the import
/// with a message saying so, and nothing is written to the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_legacy_input_is_refused_clearly() {
    let no_messages = LegacyDb::with_tables(&chatd::store::legacy::SPEC_SCHEMA[..2]).await;
    {
        let mut db = no_messages.connect().await;
        for sql in [
            "insert into users (id, identifier) values (1, 'one')",
            "insert into conversations (id, user_id, status, created_at, updated_at) \
             values (7, 1, 'active', from_unixtime(1746057600), from_unixtime(1746057600))",
        ] {
            sqlx::query(sql).execute(&mut db).await.expect(sql);
        }
    }
    for db in TestDb::each().await {
        let name = db.name();
        let before = every_row(&db.store).await;

        let unreachable = chatd(
            &db,
            &[
                "import",
                "--from",
                "mysql://root@127.0.0.1:1/nope",
                "--json",
            ],
        );
        let stderr = text(&unreachable.stderr);
        assert!(!unreachable.status.success(), "{name}: {unreachable:?}");
        assert!(
            stderr.to_lowercase().contains("cannot reach"),
            "{name}: stderr says the legacy database cannot be reached: {stderr}"
        );

        let missing = chatd(&db, &["import", "--from", &no_messages.url, "--json"]);
        let stderr = text(&missing.stderr);
        assert!(!missing.status.success(), "{name}: {missing:?}");
        assert!(
            stderr.contains("messages"),
            "{name}: stderr names the missing table: {stderr}"
        );

        assert_eq!(events_in(&db).await, 0, "{name}");
        assert_eq!(
            every_row(&db.store).await,
            before,
            "{name}: nothing written"
        );
        db.cleanup().await;
    }
    no_messages.drop().await;
}

/// `--rewrite-file-base OLD=NEW` shows the legacy links under the new base; links under other
/// bases are shown as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_file_bases_show_the_new_urls() {
    let at = HISTORY_START + 74 * DAY;
    let message =
        |id: u64, message_type: &'static str, content: &str, url: Option<&str>| LegacyMessage {
            id,
            conversation_id: 3,
            user_id: Some(41),
            admin_id: None,
            sender_role: "user",
            message_type,
            content: content.to_string(),
            file_id: url.map(|_| format!("f{id}")),
            file_url: url.map(str::to_string),
            metadata: None,
            is_read: false,
            timestamp: at + id as i64,
        };
    let history = one_conversation(
        3,
        41,
        at,
        vec![
            message(11, "text", "here is the photo", None),
            message(
                12,
                "image",
                "a.jpg",
                Some("http://47.94.108.189/uploads/chat/2025/07/14/0a1b2c.jpg"),
            ),
            message(
                13,
                "file",
                "b.pdf",
                Some("https://cdn.elsewhere.example/b.pdf"),
            ),
        ],
    );
    let legacy = LegacyDb::holding(&history).await;
    for db in TestDb::each().await {
        let name = db.name();
        let report = import(
            &db,
            &legacy,
            &[
                "--rewrite-file-base",
                "http://47.94.108.189=https://files.example.com",
            ],
        );
        assert_eq!(
            (
                report["files"]["kept"].as_u64(),
                report["files"]["rewritten"].as_u64()
            ),
            (Some(1), Some(1)),
            "{name}: {report}"
        );
        let app = TestApp::spawn(&db).await;
        let (_, admin) = app.session(Role::Admin, None).await;
        let links: Vec<Value> = every_message(&app, &admin, 3)
            .await
            .iter()
            .map(|m| pick(m, &["id", "file_id", "file_url"]))
            .collect();
        assert_eq!(
            links,
            [
                json!({"id": 11, "file_id": null, "file_url": null}),
                json!({
                    "id": 12,
                    "file_id": "f12",
                    "file_url": "https://files.example.com/uploads/chat/2025/07/14/0a1b2c.jpg"
                }),
                json!({"id": 13, "file_id": "f13", "file_url": "https://cdn.elsewhere.example/b.pdf"}),
            ],
            "{name}"
        );
        app.stop().await;
        db.cleanup().await;
    }
    legacy.drop().await;
}

/// With `--files-dir` (the old server's uploads directory), a legacy file found there is copied
/// into chatd's store as its sender's upload, its type decided from its bytes and an image
/// measured, so the message carries chatd's own file and signed link and the bytes download; a
/// file that is missing, or is not what its message says, is reported and its message keeps the
/// legacy link. `import verify` given the same directory agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_under_files_dir_are_copied_in_as_uploads() {
    let at = HISTORY_START + 80 * DAY;
    let base = "http://47.94.108.189/uploads/chat/2025/07/20";
    let message = |id: u64, message_type: &'static str, name: &str| LegacyMessage {
        id,
        conversation_id: 5,
        user_id: Some(51),
        admin_id: None,
        sender_role: "user",
        message_type,
        content: String::new(),
        file_id: Some(format!("f{id}")),
        file_url: Some(format!("{base}/{name}")),
        metadata: None,
        is_read: false,
        timestamp: at + id as i64,
    };
    let history = one_conversation(
        5,
        51,
        at,
        vec![
            message(21, "image", "photo.jpg"),
            message(22, "image", "missing.jpg"),
            message(23, "file", "notes.pdf"),
        ],
    );
    let legacy = LegacyDb::holding(&history).await;
    let files = std::env::temp_dir().join(format!("chatd-legacy-files-{}", fresh_id()));
    let dir = files.join("uploads/chat/2025/07/20");
    std::fs::create_dir_all(&dir).expect("the legacy uploads directory");
    let photo = crate::uploads::png(640, 480);
    std::fs::write(dir.join("photo.jpg"), &photo).expect("a legacy photo");
    // A file message whose file is in fact a picture.
    std::fs::write(dir.join("notes.pdf"), crate::uploads::png(2, 2)).expect("a legacy file");
    let files_dir = files.display().to_string();

    for db in TestDb::each().await {
        let name = db.name();
        let data_dir = std::env::temp_dir().join(format!("chatd-files-{}", fresh_id()));
        let data_dir_text = data_dir.display().to_string();
        let run = |args: &[&str]| {
            chatd_command(&db, args)
                .env("CHAT_DATA_DIR", &data_dir)
                .output()
                .expect("run chatd")
        };
        let output = run(&[
            "import",
            "--from",
            &legacy.url,
            "--files-dir",
            &files_dir,
            "--json",
        ]);
        assert!(output.status.success(), "{name}: {output:?}");
        let report: Value = serde_json::from_slice(&output.stdout).expect("the JSON report");
        assert_eq!(
            pick(
                &report["files"],
                &["copied", "not_copied", "kept", "rewritten"]
            ),
            json!({"copied": 1, "not_copied": 2, "kept": 2, "rewritten": 0}),
            "{name}: {report}"
        );
        let adjusted = rows_listed(&report, "adjusted");
        assert_eq!(
            adjusted,
            BTreeSet::from([("messages".to_string(), 22), ("messages".to_string(), 23)]),
            "{name}: {report}"
        );
        let verified = run(&[
            "import",
            "verify",
            "--from",
            &legacy.url,
            "--files-dir",
            &files_dir,
        ]);
        assert!(verified.status.success(), "{name}: {verified:?}");

        // A second pass stores nothing again: the file keeps the time it was written.
        let stored = files_under(&data_dir)
            .into_iter()
            .find(|(path, _)| path.extension().is_some_and(|e| e == "png"))
            .map(|(path, _)| path)
            .expect("the copied file in chatd's store");
        let written = std::fs::metadata(&stored)
            .and_then(|m| m.modified())
            .expect("mtime");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let again = run(&[
            "import",
            "--from",
            &legacy.url,
            "--files-dir",
            &files_dir,
            "--json",
        ]);
        assert!(again.status.success(), "{name}: {again:?}");
        let again: Value = serde_json::from_slice(&again.stdout).expect("the JSON report");
        assert_eq!(
            again["conversations"]["already_imported"], 1,
            "{name}: {again}"
        );
        assert_eq!(
            std::fs::metadata(&stored)
                .and_then(|m| m.modified())
                .expect("mtime"),
            written,
            "{name}: the second pass stored {} again",
            stored.display()
        );

        let app = TestApp::spawn_with(&db, &[("CHAT_DATA_DIR", &data_dir_text)]).await;
        let (_, user) = app.session(Role::User, Some(51)).await;
        let shown = every_message(&app, &user, 5).await;
        let copied = &shown[0];
        let file_id = copied["file_id"].as_str().expect("a file id");
        assert!(
            file_id.len() == 32 && file_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: chatd's own file id, not the legacy one: {copied}"
        );
        assert_eq!(
            pick(copied, &["mime_type", "width", "height", "file_size"]),
            json!({"mime_type": "image/png", "width": 640, "height": 480, "file_size": photo.len()}),
            "{name}: {copied}"
        );
        let link = copied["file_url"].as_str().expect("a link");
        assert!(link.starts_with(&app.address), "{name}: {link}");
        let downloaded = app.client.get(link).send().await.expect("download");
        assert_eq!(downloaded.status(), 200, "{name}: {link}");
        assert_eq!(
            downloaded.bytes().await.expect("the bytes").to_vec(),
            photo,
            "{name}"
        );
        for (kept, id, file) in [(&shown[1], 22, "missing.jpg"), (&shown[2], 23, "notes.pdf")] {
            assert_eq!(
                pick(kept, &["file_id", "file_url"]),
                json!({"file_id": format!("f{id}"), "file_url": format!("{base}/{file}")}),
                "{name}: {kept}"
            );
        }
        app.stop().await;
        db.cleanup().await;
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    let _ = std::fs::remove_dir_all(&files);
    legacy.drop().await;
}

/// A second pass brings what the legacy rows gained since the first (a new message, a read
/// flag, an assignment, the closing), so a first pass can run while the old server still
/// serves; a conversation that has changed in chatd too is left as chatd has it and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pass_brings_what_the_legacy_rows_gained_since() {
    for db in TestDb::each().await {
        let name = db.name();
        let legacy = LegacyDb::create().await;
        for sql in [
            "insert into users (id, identifier) values (71, 'u71'), (81, 'u81')",
            "insert into conversations (id, user_id, admin_id, status, created_at, updated_at) \
             values (7, 71, null, 'active', '2025-07-01 10:00:00', '2025-07-01 10:05:00'), \
             (8, 81, null, 'active', '2025-07-01 11:00:00', '2025-07-01 11:05:00')",
            "insert into messages (id, conversation_id, user_id, admin_id, sender_role, content, \
             is_read, timestamp) values \
             (1, 7, 71, null, 'user', 'is it shipped?', 0, '2025-07-01 10:00:00'), \
             (2, 7, null, 9001, 'admin', 'checking', 0, '2025-07-01 10:05:00'), \
             (3, 8, 81, null, 'user', 'hello', 0, '2025-07-01 11:00:00')",
        ] {
            legacy.execute(sql).await;
        }
        let first = import(&db, &legacy, &[]);
        assert_eq!(first["conversations"]["imported"], 2, "{name}: {first}");

        // The old server goes on serving for a while.
        for sql in [
            "insert into messages (id, conversation_id, user_id, admin_id, sender_role, content, \
             is_read, timestamp) values \
             (4, 7, 71, null, 'user', 'thanks!', 0, '2025-07-02 09:00:00'), \
             (5, 8, 81, null, 'user', 'anyone?', 0, '2025-07-02 09:30:00')",
            "update messages set is_read = 1 where id = 1",
            "update conversations set admin_id = 9001, status = 'closed', \
             updated_at = '2025-07-02 10:00:00' where id = 7",
        ] {
            legacy.execute(sql).await;
        }
        // ... while an admin already reads conversation 8 in chatd (a message from chatd would
        // take an id the legacy server may still hand out: the import refuses that).
        let app = TestApp::spawn(&db).await;
        let (_, admin) = app.session(Role::Admin, Some(9002)).await;
        let (status, body) = app
            .call(
                Method::PUT,
                "/api/chat/conversations/8/read",
                Some(&admin),
                Some(&json!({"message_ids": [3]})),
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["data"]["marked_read"], 1, "{name}: {body}");

        let second = import(&db, &legacy, &[]);
        assert_eq!(
            pick(
                &second["conversations"],
                &["imported", "already_imported", "updated", "changed_in_both"]
            ),
            json!({"imported": 0, "already_imported": 0, "updated": 1, "changed_in_both": 1}),
            "{name}: {second}"
        );
        assert_eq!(second["messages"]["imported"], 1, "{name}: {second}");
        assert_eq!(second["read_receipts"], 1, "{name}: {second}");
        assert!(
            rows_listed(&second, "skipped").contains(&("conversations".to_string(), 8)),
            "{name}: {second}"
        );

        let seven = &every_conversation(&app, &admin).await[&7];
        assert_eq!(
            pick(seven, &["status", "admin_id", "last_message_at"]),
            json!({"status": "closed", "admin_id": 9001, "last_message_at": "2025-07-02T09:00:00Z"}),
            "{name}: {seven}"
        );
        let shown: Vec<Value> = every_message(&app, &admin, 7)
            .await
            .iter()
            .map(|m| pick(m, &["id", "is_read"]))
            .collect();
        assert_eq!(
            shown,
            [
                json!({"id": 1, "is_read": true}),
                json!({"id": 2, "is_read": false}),
                json!({"id": 4, "is_read": false}),
            ],
            "{name}"
        );
        let eight: Vec<Value> = every_message(&app, &admin, 8)
            .await
            .iter()
            .map(|m| pick(m, &["id", "is_read"]))
            .collect();
        assert_eq!(eight, [json!({"id": 3, "is_read": true})], "{name}");

        // Verify names the conversation whose legacy changes were left out.
        let verified = chatd(&db, &["import", "verify", "--from", &legacy.url]);
        assert!(!verified.status.success(), "{name}: {verified:?}");
        assert!(
            text(&verified.stderr).contains("conversation 8"),
            "{name}: {}",
            text(&verified.stderr)
        );

        // A third pass finds nothing new to bring.
        let third = import(&db, &legacy, &[]);
        assert_eq!(third["conversations"]["updated"], 0, "{name}: {third}");
        assert_eq!(third["events"], 0, "{name}: {third}");
        app.stop().await;
        legacy.drop().await;
        db.cleanup().await;
    }
}

/// A user who already opened a conversation in chatd keeps it as their active one: their active
/// legacy conversation is imported closed after its history, reported as adjusted, and
/// `import verify` knows why it shows closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_active_in_chatd_keeps_that_conversation_and_the_legacy_one_closes() {
    for db in TestDb::each().await {
        let name = db.name();
        let app = TestApp::spawn(&db).await;
        let (_, user) = app.session(Role::User, Some(91)).await;
        let (status, body) = app
            .call(
                Method::POST,
                "/api/chat/conversations",
                Some(&user),
                Some(&json!({"initial_message": "hello from the new app"})),
            )
            .await;
        assert_eq!(status, 201, "{name}: {body}");
        let in_chatd = body["data"]["conversation_id"].as_u64().expect("an id");

        let legacy = LegacyDb::create().await;
        for sql in [
            "insert into users (id, identifier) values (91, 'u91')",
            "insert into conversations (id, user_id, status, created_at, updated_at) \
             values (500, 91, 'active', '2025-07-01 10:00:00', '2025-07-01 10:05:00')",
            "insert into messages (id, conversation_id, user_id, sender_role, content, timestamp) \
             values (70000, 500, 91, 'user', 'hello from the old app', '2025-07-01 10:00:00')",
        ] {
            legacy.execute(sql).await;
        }
        let report = import(&db, &legacy, &[]);
        assert_eq!(report["conversations"]["imported"], 1, "{name}: {report}");
        assert!(
            rows_listed(&report, "adjusted").contains(&("conversations".to_string(), 500)),
            "{name}: {report}"
        );
        let verified = chatd(&db, &["import", "verify", "--from", &legacy.url]);
        assert!(verified.status.success(), "{name}: {verified:?}");

        let (_, admin) = app.session(Role::Admin, None).await;
        let conversations = every_conversation(&app, &admin).await;
        assert_eq!(conversations[&500]["status"], "closed", "{name}");
        assert_eq!(conversations[&in_chatd]["status"], "active", "{name}");
        app.stop().await;
        legacy.drop().await;
        db.cleanup().await;
    }
}

/// One active conversation of one user (`the-user`), opened at `at`, with these messages.
fn one_conversation(id: u64, user_id: u64, at: i64, messages: Vec<LegacyMessage>) -> History {
    History {
        users: vec![(user_id, "the-user".into())],
        conversations: vec![LegacyConversation {
            id,
            user_id,
            admin_id: None,
            status: "active",
            last_message_at: None,
            created_at: at,
            updated_at: at + 100,
        }],
        messages,
        bad: BTreeSet::new(),
    }
}
