//! The analytics facts: what the support report is computed from. Each event becomes zero or
//! more [`AnalyticsFact`]s (a conversation opened or closed, a message by side, an admin reply
//! with how long the user waited, a first response, a rating), stamped with the event's
//! `recorded_at`. The report (`chatd::analytics`) is a pure function of the facts in a time
//! range, so the API (facts from the `analytics_facts` table) and `chatd analytics` (facts folded
//! from the log in memory, by the same [`ConversationFacts::fold`]) give identical answers.
//!
//! Tables: `analytics_facts` (one row per fact, keyed by position and kind) and
//! `analytics_conversations` (the small per-conversation state the fold carries between
//! batches: since when the user has waited, whether the first response happened, the assignee
//! and the last admin who replied). Both are disposable: `chatd replay` rebuilds them.
//!
//! Per-admin rule: a reply, first response or admin message belongs to the admin who sent it;
//! a close or a rating belongs to the conversation's assignee at that moment, else to the last
//! admin who replied in it, else to nobody (counted only overall). System messages are neither
//! side and answer nothing.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use events::{ConversationEvent, Role};

use crate::{LoggedEvent, ProjectionError, Projector, SqlTxn, SqlValue, Tables};

/// Rows per multi-row insert of facts (7 parameters each).
const FACT_CHUNK: usize = 500;
/// Rows per multi-row insert (and delete) of conversation state (5 parameters each).
const STATE_CHUNK: usize = 500;

/// What a fact records. The numbers are stored; they never change once written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FactKind {
    Opened = 1,
    Closed = 2,
    UserMessage = 3,
    AdminMessage = 4,
    /// An admin answered a user message (or run of user messages); value: the wait in µs.
    Reply = 5,
    /// The first reply of a conversation; value: µs since its first user message.
    FirstResponse = 6,
    /// value: the rating, 1..=5.
    Feedback = 7,
}

impl FactKind {
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => FactKind::Opened,
            2 => FactKind::Closed,
            3 => FactKind::UserMessage,
            4 => FactKind::AdminMessage,
            5 => FactKind::Reply,
            6 => FactKind::FirstResponse,
            7 => FactKind::Feedback,
            _ => return None,
        })
    }
}

/// One fact, as the `analytics_facts` table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsFact {
    pub position: u64,
    pub kind: FactKind,
    pub conversation_id: u64,
    /// The event's `recorded_at`, µs since the epoch.
    pub at: i64,
    /// The admin the fact belongs to (see the module's per-admin rule).
    pub admin_id: Option<u64>,
    /// The wait in µs (Reply, FirstResponse), the rating (Feedback), else 0.
    pub value: i64,
}

/// What the fold remembers about one conversation between events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationFacts {
    /// The first unanswered user message of the current run.
    pub waiting_since: Option<i64>,
    /// The conversation has had its first response.
    pub answered: bool,
    pub assignee: Option<u64>,
    pub last_admin: Option<u64>,
}

impl ConversationFacts {
    fn owner(&self) -> Option<u64> {
        self.assignee.or(self.last_admin)
    }

    /// Folds one event of this conversation, pushing the facts it makes onto `out`. Every event
    /// is decoded, so an event this build cannot read stops the fold at its position.
    pub fn fold(
        &mut self,
        event: &LoggedEvent,
        out: &mut Vec<AnalyticsFact>,
    ) -> Result<(), ProjectionError> {
        let decoded = event.decode()?;
        let conversation_id = event.conversation_id()?;
        let at = event.recorded_at_micros;
        let mut push = |kind: FactKind, admin_id: Option<u64>, value: i64| {
            out.push(AnalyticsFact {
                position: event.position,
                kind,
                conversation_id,
                at,
                admin_id,
                value,
            })
        };
        match decoded {
            ConversationEvent::ConversationOpened { .. } => push(FactKind::Opened, None, 0),
            ConversationEvent::MessageSent { sender, .. } => match sender.role {
                Role::User => {
                    push(FactKind::UserMessage, None, 0);
                    self.waiting_since.get_or_insert(at);
                }
                Role::Admin => {
                    let admin = Some(sender.id);
                    push(FactKind::AdminMessage, admin, 0);
                    if let Some(since) = self.waiting_since.take() {
                        push(FactKind::Reply, admin, at.saturating_sub(since));
                        if !self.answered {
                            // Nothing answered before, so the run began with the first user
                            // message.
                            push(FactKind::FirstResponse, admin, at.saturating_sub(since));
                            self.answered = true;
                        }
                    }
                    self.last_admin = admin;
                }
                Role::System | Role::Auditor => {}
            },
            ConversationEvent::ConversationClosed { .. } => push(FactKind::Closed, self.owner(), 0),
            ConversationEvent::ConversationAssigned { admin_id, .. } => {
                self.assignee = Some(*admin_id)
            }
            ConversationEvent::FeedbackGiven { rating, .. } => {
                push(FactKind::Feedback, self.owner(), i64::from(*rating))
            }
            _ => {}
        }
        Ok(())
    }
}

pub struct AnalyticsProjector;

fn int_of(row: &[SqlValue], i: usize) -> Option<i64> {
    row.get(i).and_then(SqlValue::as_i64)
}

fn id_of(row: &[SqlValue], i: usize) -> Option<u64> {
    int_of(row, i).and_then(|v| u64::try_from(v).ok())
}

/// The saved state of each conversation in `ids` (default for one with none), a query per chunk.
async fn load_states(
    txn: &mut dyn SqlTxn,
    table: &str,
    ids: &[u64],
) -> Result<BTreeMap<u64, ConversationFacts>, ProjectionError> {
    let mut states: BTreeMap<u64, ConversationFacts> = ids
        .iter()
        .map(|id| (*id, ConversationFacts::default()))
        .collect();
    for chunk in ids.chunks(STATE_CHUNK) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let params: Vec<SqlValue> = chunk.iter().map(|id| SqlValue::from(*id)).collect();
        let rows = txn
            .fetch_all(
                &format!(
                    "select conversation_id, waiting_since, answered, assignee, last_admin \
                     from {table} where conversation_id in ({placeholders})"
                ),
                &params,
            )
            .await?;
        for row in rows {
            let Some(id) = id_of(&row, 0) else { continue };
            states.insert(
                id,
                ConversationFacts {
                    waiting_since: int_of(&row, 1),
                    answered: int_of(&row, 2).unwrap_or(0) != 0,
                    assignee: id_of(&row, 3),
                    last_admin: id_of(&row, 4),
                },
            );
        }
    }
    Ok(states)
}

async fn insert_facts(
    txn: &mut dyn SqlTxn,
    table: &str,
    facts: &[AnalyticsFact],
) -> Result<(), ProjectionError> {
    for chunk in facts.chunks(FACT_CHUNK) {
        let values = vec!["(?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "insert into {table} (position, kind, conversation_id, recorded_at, admin_id, value) \
             values {values}"
        );
        let mut params = Vec::with_capacity(chunk.len() * 6);
        for fact in chunk {
            params.extend([
                fact.position.into(),
                SqlValue::Int(fact.kind.code()),
                fact.conversation_id.into(),
                SqlValue::Int(fact.at),
                fact.admin_id.into(),
                SqlValue::Int(fact.value),
            ]);
        }
        match txn.execute(&sql, &params).await {
            Ok(_) => {}
            Err(ProjectionError::Duplicate(reason)) => {
                let position = chunk.first().map_or(0, |f| f.position);
                return Err(ProjectionError::Apply {
                    position,
                    reason: format!("analytics facts already in {table}: {reason}"),
                });
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

async fn save_states(
    txn: &mut dyn SqlTxn,
    table: &str,
    states: &BTreeMap<u64, ConversationFacts>,
) -> Result<(), ProjectionError> {
    let states: Vec<_> = states.iter().collect();
    for chunk in states.chunks(STATE_CHUNK) {
        // Delete and insert: the same statements on both back ends.
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let ids: Vec<SqlValue> = chunk.iter().map(|(id, _)| SqlValue::from(**id)).collect();
        txn.execute(
            &format!("delete from {table} where conversation_id in ({placeholders})"),
            &ids,
        )
        .await?;
        let values = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        let mut params = Vec::with_capacity(chunk.len() * 5);
        for (id, state) in chunk {
            params.extend([
                SqlValue::from(**id),
                state.waiting_since.map_or(SqlValue::Null, SqlValue::Int),
                state.answered.into(),
                state.assignee.into(),
                state.last_admin.into(),
            ]);
        }
        txn.execute(
            &format!(
                "insert into {table} (conversation_id, waiting_since, answered, assignee, \
                 last_admin) values {values}"
            ),
            &params,
        )
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Projector for AnalyticsProjector {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["analytics_facts", "analytics_conversations"]
    }

    fn pace(&self) -> std::time::Duration {
        crate::FOLLOWER_PACE
    }

    async fn apply(
        &self,
        txn: &mut dyn SqlTxn,
        tables: &Tables,
        events: &[LoggedEvent],
    ) -> Result<(), ProjectionError> {
        let facts_table = tables.name("analytics_facts");
        let state_table = tables.name("analytics_conversations");
        let mut touched = BTreeSet::new();
        for event in events {
            touched.insert(event.conversation_id()?);
        }
        let touched: Vec<u64> = touched.into_iter().collect();
        let mut states = load_states(txn, &state_table, &touched).await?;
        // Every event is decoded (in `fold`) before anything is written, so an unreadable one
        // stops the projector at its position with nothing of the batch applied.
        let mut facts = Vec::new();
        for event in events {
            let id = event.conversation_id()?;
            states.entry(id).or_default().fold(event, &mut facts)?;
        }
        insert_facts(txn, &facts_table, &facts).await?;
        save_states(txn, &state_table, &states).await
    }
}
