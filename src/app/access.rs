//! Who may read what, and how much a caller may do: the checks every transport runs before a use
//! case touches state.

use events::Role;

use super::{App, AppError};
use crate::auth::Session;
use crate::limits::{LimitKind, Limited};
use crate::store::ConversationRow;

/// Admins, auditors and the system see every conversation.
pub fn is_staff(session: &Session) -> bool {
    matches!(session.role, Role::Admin | Role::Auditor | Role::System)
}

/// A `user_id` a user sends must be their own.
pub fn own_user_id(session: &Session, user_id: Option<u64>) -> Result<(), AppError> {
    match user_id {
        Some(id) if session.role == Role::User && id != session.user_id => {
            Err(AppError::forbidden("user_id does not match the session"))
        }
        _ => Ok(()),
    }
}

/// The conversation, if the caller may read it: NOT_FOUND when it does not exist, FORBIDDEN
/// when it is another user's.
pub async fn readable(app: &App, session: &Session, id: u64) -> Result<ConversationRow, AppError> {
    let row = app
        .store
        .conversation(id)
        .await?
        .ok_or_else(|| AppError::not_found("no such conversation"))?;
    if session.role == Role::User && row.user_id != session.user_id {
        return Err(AppError::forbidden("the conversation is not yours"));
    }
    Ok(row)
}

/// The name a caller's limits are kept under: a user and an admin with the same id are two
/// callers.
pub fn limit_key(session: &Session) -> String {
    format!("{}:{}", session.role.as_str(), session.user_id)
}

/// Counts one action of `kind` against the caller's limit.
pub async fn within_limit(app: &App, session: &Session, kind: LimitKind) -> Result<(), AppError> {
    app.limits
        .check(kind, &limit_key(session))
        .await
        .map_err(|limited| limit_refusal(kind, limited))
}

/// A refusal by the limiter as the caller sees it, counted in the metrics when over the limit.
pub fn limit_refusal(kind: LimitKind, limited: Limited) -> AppError {
    if matches!(limited, Limited::Over { .. }) {
        crate::metrics::rate_limited(kind.as_str());
    }
    AppError::from(limited)
}

/// Auditors only read: refused before anything else is looked at.
pub fn writer(session: &Session) -> Result<(), AppError> {
    if session.role == Role::Auditor {
        Err(AppError::forbidden("auditors only read"))
    } else {
        Ok(())
    }
}
