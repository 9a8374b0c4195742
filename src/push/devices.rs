//! The devices people register for pushes (`push_devices`): a token belongs to one person at a
//! time, the one who registered it last.

use events::Role;
use projections::{ProjectionError, ProjectionStore, SqlTxn, SqlValue};

use super::notification::{Platform, Provider};
use crate::store::EventStore;

/// Longest token taken. FCM tokens are about 160 characters and APNs tokens 64 hex digits;
/// the bound leaves room for growth and keeps the key indexable on MySQL.
pub const MAX_TOKEN_CHARS: usize = 512;

/// The characters of FCM and APNs tokens; anything else (a `/`, spaces, `..`) is not a token
/// and would not survive a URL path either.
pub fn valid_token(token: &str) -> bool {
    (1..=MAX_TOKEN_CHARS).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
}

/// Whose device a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub role: Role,
    pub user_id: u64,
}

/// Registers `token` for `owner`; true when it was not theirs before (new, or taken over from
/// someone else). Beyond `max_devices`, the owner's least recently registered devices go.
pub async fn register(
    store: &EventStore,
    owner: Owner,
    token: &str,
    platform: Platform,
    provider: Provider,
    max_devices: u32,
) -> Result<bool, ProjectionError> {
    let mut attempt = 0;
    loop {
        let mut txn = ProjectionStore::begin(store).await?;
        match register_in(txn.as_mut(), owner, token, platform, provider, max_devices).await {
            Ok(new) => {
                txn.commit().await?;
                return Ok(new);
            }
            // Two registrations of a new token raced: the second sees the first's row.
            Err(ProjectionError::Duplicate(_)) if attempt == 0 => {
                let _ = txn.rollback().await;
                attempt += 1;
            }
            Err(error) => {
                let _ = txn.rollback().await;
                return Err(error);
            }
        }
    }
}

async fn register_in(
    txn: &mut dyn SqlTxn,
    owner: Owner,
    token: &str,
    platform: Platform,
    provider: Provider,
    max_devices: u32,
) -> Result<bool, ProjectionError> {
    let now = SqlValue::Int(crate::clock::now_micros());
    let role = SqlValue::from(owner.role.as_str());
    let user = SqlValue::from(owner.user_id);
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
                    role.clone(),
                    user.clone(),
                    platform.as_str().into(),
                    provider.as_str().into(),
                    now.clone(),
                    now.clone(),
                ],
            )
            .await?;
            true
        }
        Some(row) => {
            let theirs = row.first().and_then(SqlValue::as_text) == Some(owner.role.as_str())
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
                role.clone(),
                user.clone(),
                platform.as_str().into(),
                provider.as_str().into(),
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
            &[role.clone(), user.clone()],
        )
        .await?
        .and_then(|row| row.first().and_then(SqlValue::as_i64))
        .unwrap_or(0);
    for _ in 0..count.saturating_sub(i64::from(max_devices)) {
        let oldest = txn
            .fetch_row(
                "select token from push_devices where role = ? and user_id = ? and token <> ? \
                 order by updated_at, token limit 1",
                &[role.clone(), user.clone(), token.into()],
            )
            .await?
            .and_then(|row| row.first().and_then(|v| v.as_text().map(str::to_string)));
        let Some(oldest) = oldest else { break };
        remove_in(txn, &oldest).await?;
    }
    Ok(new)
}

/// Removes the owner's device; false when they have no such device.
pub async fn unregister(
    store: &EventStore,
    owner: Owner,
    token: &str,
) -> Result<bool, ProjectionError> {
    let mut txn = ProjectionStore::begin(store).await?;
    let owned = txn
        .fetch_row(
            "select token from push_devices where token = ? and role = ? and user_id = ?",
            &[
                token.into(),
                owner.role.as_str().into(),
                owner.user_id.into(),
            ],
        )
        .await;
    let removed = match owned {
        Ok(Some(_)) => remove_in(txn.as_mut(), token).await.map(|()| true),
        Ok(None) => Ok(false),
        Err(error) => Err(error),
    };
    match removed {
        Ok(removed) => {
            txn.commit().await?;
            Ok(removed)
        }
        Err(error) => {
            let _ = txn.rollback().await;
            Err(error)
        }
    }
}

async fn remove_in(txn: &mut dyn SqlTxn, token: &str) -> Result<(), ProjectionError> {
    txn.execute("delete from push_devices where token = ?", &[token.into()])
        .await?;
    txn.execute(
        "delete from push_outbox where token = ? and state = 'pending'",
        &[token.into()],
    )
    .await?;
    Ok(())
}
