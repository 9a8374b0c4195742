//! The statements of push notifications (`crate::push`, which owns `push_devices` and
//! `push_outbox` and decides what goes in them). Lists are read from the pool; writes go through
//! the read side's transactions (`projections::SqlTxn`), so the follower's jobs commit with its
//! checkpoint, under its lease.

use events::Role;
use projections::{ProjectionError, ProjectionStore, SqlTxn, SqlValue};

use super::{EventStore, StoreError};

/// One registered device of a person, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDevice {
    pub token: String,
    pub platform: String,
    pub provider: String,
}

/// A push to queue: one message for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPush<'a> {
    pub token: &'a str,
    pub provider: &'a str,
    pub platform: &'a str,
    pub conversation_id: u64,
    pub message_id: u64,
    /// The notification, as JSON.
    pub payload: String,
    /// When its message was recorded (µs).
    pub recorded_at: i64,
}

/// A job claimed for sending, as stored (unreadable columns read as empty or 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedPush {
    pub id: i64,
    pub provider: String,
    pub platform: String,
    pub token: String,
    pub payload: String,
    pub attempts: i64,
    pub conversation_id: i64,
}

/// Where a batch of the push follower's moves its checkpoint: from `from` to `to`, only while
/// `node_id` holds the lease on `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointMove<'a> {
    pub name: &'a str,
    pub node_id: &'a str,
    pub from: u64,
    pub to: u64,
}

fn int(value: Option<&SqlValue>) -> i64 {
    value.and_then(SqlValue::as_i64).unwrap_or_default()
}

fn text(value: Option<&SqlValue>) -> String {
    value
        .and_then(SqlValue::as_text)
        .unwrap_or_default()
        .to_string()
}

/// Runs `$body` in one read-side transaction, with `$txn` the transaction: commits when it
/// returns Ok, rolls back when it returns an error.
macro_rules! in_txn {
    ($store:expr, |$txn:ident| $body:block) => {{
        let mut open = ProjectionStore::begin($store).await?;
        let done: Result<_, ProjectionError> = async {
            let $txn: &mut dyn SqlTxn = open.as_mut();
            $body
        }
        .await;
        match done {
            Ok(value) => {
                open.commit().await?;
                Ok(value)
            }
            Err(error) => {
                let _ = open.rollback().await;
                Err(error)
            }
        }
    }};
}

impl EventStore {
    /// Registers `token` for a person; true when it was not theirs before (new, or taken over
    /// from someone else). A token belongs to one person at a time, the one who registered it
    /// last. Beyond `max_devices`, the person's least recently registered devices go.
    pub async fn register_push_device(
        &self,
        role: Role,
        user_id: u64,
        token: &str,
        platform: &str,
        provider: &str,
        max_devices: u32,
    ) -> Result<bool, ProjectionError> {
        let mut attempt = 0;
        loop {
            let registered = in_txn!(self, |txn| {
                register_in(txn, role, user_id, token, platform, provider, max_devices).await
            });
            match registered {
                // Two registrations of a new token raced: the second sees the first's row.
                Err(ProjectionError::Duplicate(_)) if attempt == 0 => attempt += 1,
                other => return other,
            }
        }
    }

    /// Removes a person's device and what was queued for it; false when they have no such
    /// device.
    pub async fn unregister_push_device(
        &self,
        role: Role,
        user_id: u64,
        token: &str,
    ) -> Result<bool, ProjectionError> {
        in_txn!(self, |txn| {
            let owned = txn
                .fetch_row(
                    "select token from push_devices where token = ? and role = ? and user_id = ?",
                    &[token.into(), role.as_str().into(), user_id.into()],
                )
                .await?;
            match owned {
                Some(_) => remove_device(txn, token).await.map(|()| true),
                None => Ok(false),
            }
        })
    }

    /// A person's devices.
    pub async fn push_devices_of(
        &self,
        role: Role,
        user_id: u64,
    ) -> Result<Vec<PushDevice>, StoreError> {
        Ok(self
            .value_rows(
                "select token, platform, provider from push_devices where role = ? and user_id = ?",
                &[role.as_str().into(), user_id.into()],
            )
            .await?
            .iter()
            .map(|row| PushDevice {
                token: text(row.first()),
                platform: text(row.get(1)),
                provider: text(row.get(2)),
            })
            .collect())
    }

    /// The unread messages a person's app badge shows: a user's in all their conversations, an
    /// admin's in those assigned to them and not archived.
    pub async fn unread_badge(&self, role: Role, id: u64) -> Result<i64, StoreError> {
        // A user's archived conversations count too: the archive keeps their rows.
        let (sql, params): (&str, &[SqlValue]) = match role {
            Role::User => (
                "select cast(coalesce(sum(unread_for_user), 0) as signed) from \
                 (select unread_for_user from conversations where user_id = ? union all \
                 select unread_for_user from conversations_archive where user_id = ?) c",
                &[id.into(), id.into()],
            ),
            _ => (
                "select cast(coalesce(sum(unread_for_admin), 0) as signed) from conversations \
                 where admin_id = ? and status <> 'archived'",
                &[id.into()],
            ),
        };
        Ok(self
            .value_rows(sql, params)
            .await?
            .first()
            .map(|row| int(row.first()))
            .unwrap_or(0))
    }

    /// Queues pushes and moves the follower's checkpoint, in one transaction: both commit or
    /// neither. A device's pending push of the same conversation takes the newer content instead
    /// of a second row; a new one waits `collapse_window` (µs) after the conversation's last
    /// push to the device.
    pub async fn queue_pushes(
        &self,
        pushes: &[NewPush<'_>],
        collapse_window: i64,
        now: i64,
        checkpoint: CheckpointMove<'_>,
    ) -> Result<(), ProjectionError> {
        in_txn!(self, |txn| {
            for push in pushes {
                queue_in(txn, push, collapse_window, now).await?;
            }
            let CheckpointMove {
                name,
                node_id,
                from,
                to,
            } = checkpoint;
            projections::move_checkpoint(txn, name, node_id, from, to).await
        })
    }

    /// The ids of up to `limit` pending jobs due by `now`, soonest first.
    pub async fn due_pushes(&self, now: i64, limit: usize) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .value_rows(
                &format!(
                    "select id from push_outbox where state = 'pending' and not_before <= ? \
                     order by not_before, id limit {limit}"
                ),
                &[SqlValue::Int(now)],
            )
            .await?
            .iter()
            .filter_map(|row| row.first().and_then(SqlValue::as_i64))
            .collect())
    }

    /// Claims those of `ids` still pending under the name `claim`, and commits: from then on
    /// they are never claimed again.
    pub async fn claim_pushes(
        &self,
        claim: &str,
        now: i64,
        ids: &[i64],
    ) -> Result<(), ProjectionError> {
        let placeholders = vec!["?"; ids.len()].join(", ");
        let mut params = vec![SqlValue::from(claim), SqlValue::Int(now)];
        params.extend(ids.iter().map(|id| SqlValue::Int(*id)));
        let sql = format!(
            "update push_outbox set state = 'sending', claimed_by = ?, claimed_at = ? \
             where state = 'pending' and id in ({placeholders})"
        );
        in_txn!(self, |txn| { txn.execute(&sql, &params).await.map(drop) })
    }

    /// The jobs claimed under `claim` and not settled yet.
    pub async fn claimed_pushes(&self, claim: &str) -> Result<Vec<ClaimedPush>, StoreError> {
        Ok(self
            .value_rows(
                "select id, provider, platform, token, payload, attempts, conversation_id \
                 from push_outbox where claimed_by = ? and state = 'sending'",
                &[claim.into()],
            )
            .await?
            .iter()
            .map(|row| ClaimedPush {
                id: int(row.first()),
                provider: text(row.get(1)),
                platform: text(row.get(2)),
                token: text(row.get(3)),
                payload: text(row.get(4)),
                attempts: int(row.get(5)),
                conversation_id: int(row.get(6)),
            })
            .collect())
    }

    /// Opens the transaction that records what became of claimed jobs.
    pub async fn begin_push_settlement(&self) -> Result<PushSettlement, ProjectionError> {
        Ok(PushSettlement {
            txn: ProjectionStore::begin(self).await?,
        })
    }

    /// Forgets the jobs claimed before `before` (sent, or claimed by a node that crashed: never
    /// sent again).
    pub async fn forget_pushes_claimed_before(&self, before: i64) -> Result<(), ProjectionError> {
        in_txn!(self, |txn| {
            txn.execute(
                "delete from push_outbox where state <> 'pending' and claimed_at < ?",
                &[SqlValue::Int(before)],
            )
            .await
            .map(drop)
        })
    }
}

/// What became of claimed jobs, recorded in one transaction.
pub struct PushSettlement {
    txn: Box<dyn SqlTxn>,
}

impl PushSettlement {
    pub async fn sent(&mut self, id: i64) -> Result<(), ProjectionError> {
        self.txn
            .execute(
                "update push_outbox set state = 'sent' where id = ?",
                &[SqlValue::Int(id)],
            )
            .await
            .map(drop)
    }

    /// The provider refused the token: the device goes, with what was queued for it and the
    /// job `id`.
    pub async fn token_refused(
        &mut self,
        token: &str,
        provider: &str,
        id: i64,
    ) -> Result<(), ProjectionError> {
        self.txn
            .execute(
                "delete from push_devices where token = ? and provider = ?",
                &[token.into(), provider.into()],
            )
            .await?;
        self.txn
            .execute(
                "delete from push_outbox where token = ? and (state = 'pending' or id = ?)",
                &[token.into(), SqlValue::Int(id)],
            )
            .await
            .map(drop)
    }

    /// Whether a push of the conversation to the device is pending.
    pub async fn has_pending(
        &mut self,
        token: &str,
        conversation_id: u64,
    ) -> Result<bool, ProjectionError> {
        Ok(pending_push(self.txn.as_mut(), token, conversation_id)
            .await?
            .is_some())
    }

    /// Forgets the job (given up, or refused for good).
    pub async fn drop_job(&mut self, id: i64) -> Result<(), ProjectionError> {
        self.txn
            .execute("delete from push_outbox where id = ?", &[SqlValue::Int(id)])
            .await
            .map(drop)
    }

    /// Puts the job back in the queue, to be tried again from `not_before`.
    pub async fn retry_later(
        &mut self,
        id: i64,
        attempts: u32,
        not_before: i64,
    ) -> Result<(), ProjectionError> {
        self.txn
            .execute(
                "update push_outbox set state = 'pending', attempts = ?, not_before = ?, \
                 claimed_by = null, claimed_at = null where id = ?",
                &[
                    SqlValue::from(u64::from(attempts)),
                    SqlValue::Int(not_before),
                    SqlValue::Int(id),
                ],
            )
            .await
            .map(drop)
    }

    pub async fn commit(self) -> Result<(), ProjectionError> {
        self.txn.commit().await
    }

    pub async fn rollback(self) -> Result<(), ProjectionError> {
        self.txn.rollback().await
    }
}

async fn pending_push(
    txn: &mut dyn SqlTxn,
    token: &str,
    conversation_id: u64,
) -> Result<Option<i64>, ProjectionError> {
    Ok(txn
        .fetch_row(
            "select id from push_outbox where token = ? and conversation_id = ? \
             and state = 'pending'",
            &[token.into(), conversation_id.into()],
        )
        .await?
        .and_then(|row| row.first().and_then(SqlValue::as_i64)))
}

async fn queue_in(
    txn: &mut dyn SqlTxn,
    push: &NewPush<'_>,
    collapse_window: i64,
    now: i64,
) -> Result<(), ProjectionError> {
    if let Some(id) = pending_push(txn, push.token, push.conversation_id).await? {
        txn.execute(
            "update push_outbox set message_id = ?, payload = ?, recorded_at = ?, \
             provider = ?, platform = ? where id = ?",
            &[
                push.message_id.into(),
                push.payload.as_str().into(),
                SqlValue::Int(push.recorded_at),
                push.provider.into(),
                push.platform.into(),
                SqlValue::Int(id),
            ],
        )
        .await?;
        return Ok(());
    }
    let last_sent = txn
        .fetch_row(
            "select max(claimed_at) from push_outbox where token = ? \
             and conversation_id = ? and state <> 'pending'",
            &[push.token.into(), push.conversation_id.into()],
        )
        .await?
        .and_then(|row| row.first().and_then(SqlValue::as_i64));
    let not_before = last_sent.map_or(now, |at| now.max(at.saturating_add(collapse_window)));
    txn.execute(
        "insert into push_outbox (token, provider, platform, conversation_id, message_id, \
         payload, state, attempts, not_before, claimed_by, claimed_at, recorded_at, created_at) \
         values (?, ?, ?, ?, ?, ?, 'pending', 0, ?, null, null, ?, ?)",
        &[
            push.token.into(),
            push.provider.into(),
            push.platform.into(),
            push.conversation_id.into(),
            push.message_id.into(),
            push.payload.as_str().into(),
            SqlValue::Int(not_before),
            SqlValue::Int(push.recorded_at),
            SqlValue::Int(now),
        ],
    )
    .await
    .map(drop)
}

async fn register_in(
    txn: &mut dyn SqlTxn,
    role: Role,
    user_id: u64,
    token: &str,
    platform: &str,
    provider: &str,
    max_devices: u32,
) -> Result<bool, ProjectionError> {
    let now = SqlValue::Int(crate::clock::now_micros());
    let role_value = SqlValue::from(role.as_str());
    let user = SqlValue::from(user_id);
    let current = txn
        .fetch_row(
            "select role, user_id from push_devices where token = ?",
            &[token.into()],
        )
        .await?;
    let new = match current {
        None => {
            txn.execute(
                "insert into push_devices (token, role, user_id, platform, provider, created_at, updated_at) \
                 values (?, ?, ?, ?, ?, ?, ?)",
                &[
                    token.into(),
                    role_value.clone(),
                    user.clone(),
                    platform.into(),
                    provider.into(),
                    now.clone(),
                    now.clone(),
                ],
            )
            .await?;
            true
        }
        Some(row) => {
            let theirs = row.first().and_then(SqlValue::as_text) == Some(role.as_str())
                && row.get(1).and_then(SqlValue::as_i64) == user.as_i64();
            if !theirs {
                // The phone changed hands (or accounts): what was queued for the previous
                // owner must not show on it.
                txn.execute(
                    "delete from push_outbox where token = ? and state = 'pending'",
                    &[token.into()],
                )
                .await?;
            }
            // A device taken over counts as registered now (its age decides which device a
            // full list drops first).
            let mut params = vec![
                role_value.clone(),
                user.clone(),
                platform.into(),
                provider.into(),
                now.clone(),
            ];
            let created = if theirs {
                ""
            } else {
                params.push(now.clone());
                ", created_at = ?"
            };
            params.push(token.into());
            txn.execute(
                &format!(
                    "update push_devices set role = ?, user_id = ?, platform = ?, provider = ?, \
                     updated_at = ?{created} where token = ?"
                ),
                &params,
            )
            .await?;
            !theirs
        }
    };
    let count = txn
        .fetch_row(
            "select count(*) from push_devices where role = ? and user_id = ?",
            &[role_value.clone(), user.clone()],
        )
        .await?
        .and_then(|row| row.first().and_then(SqlValue::as_i64))
        .unwrap_or(0);
    for _ in 0..count.saturating_sub(i64::from(max_devices)) {
        let oldest = txn
            .fetch_row(
                "select token from push_devices where role = ? and user_id = ? and token <> ? \
                 order by updated_at, token limit 1",
                &[role_value.clone(), user.clone(), token.into()],
            )
            .await?
            .and_then(|row| row.first().and_then(|v| v.as_text().map(str::to_string)));
        let Some(oldest) = oldest else { break };
        remove_device(txn, &oldest).await?;
    }
    Ok(new)
}

async fn remove_device(txn: &mut dyn SqlTxn, token: &str) -> Result<(), ProjectionError> {
    txn.execute("delete from push_devices where token = ?", &[token.into()])
        .await?;
    txn.execute(
        "delete from push_outbox where token = ? and state = 'pending'",
        &[token.into()],
    )
    .await?;
    Ok(())
}
