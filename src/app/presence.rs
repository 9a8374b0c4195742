//! Presence as the use cases show it: admins set themselves away or available, the staff see
//! every admin's presence and load, and conversation views carry their user's presence.

use events::Role;

use super::{App, AppError};
use crate::auth::Session;
use crate::wire::{AdminPresenceView, ConversationView};

/// Sets the caller's away flag (`away` or `available`; admins only); their presence afterwards.
pub async fn set_own(
    app: &App,
    session: &Session,
    status: &str,
) -> Result<AdminPresenceView, AppError> {
    if session.role != Role::Admin {
        return Err(AppError::forbidden("only admins set their presence"));
    }
    let away = match status {
        "away" => true,
        "available" => false,
        _ => return Err(AppError::validation("status must be away or available")),
    };
    let presence = app.presence.set_away(session.user_id, away).await?;
    let loads = app.store.active_conversations_per_admin().await?;
    let load = loads.get(&session.user_id).copied().unwrap_or(0);
    Ok(AdminPresenceView::new(session.user_id, presence, load))
}

/// Every admin presence has seen or who has active conversations, by id (admins and auditors).
pub async fn admins(app: &App, session: &Session) -> Result<Vec<AdminPresenceView>, AppError> {
    if !matches!(session.role, Role::Admin | Role::Auditor) {
        return Err(AppError::forbidden("admins and auditors only"));
    }
    app.fresh_for(session).await;
    let loads = app.store.active_conversations_per_admin().await?;
    let mut ids = app.presence.known_admins().await?;
    ids.extend(loads.keys().copied());
    ids.sort_unstable();
    ids.dedup();
    let people = app.presence.people(Role::Admin, &ids).await?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let presence = people.get(&id).copied().unwrap_or_default();
            AdminPresenceView::new(id, presence, loads.get(&id).copied().unwrap_or(0))
        })
        .collect())
}

/// The users' presence in conversation views, computed when read (it is not in the log). When
/// presence cannot answer, the views go out without it rather than not at all.
pub async fn add_to(app: &App, views: &mut [ConversationView]) {
    let mut users: Vec<u64> = views.iter().map(|view| view.user_id).collect();
    users.sort_unstable();
    users.dedup();
    match app.presence.people(Role::User, &users).await {
        Ok(people) => {
            for view in views {
                view.set_presence(people.get(&view.user_id));
            }
        }
        Err(error) => tracing::warn!(%error, "conversations shown without presence"),
    }
}

/// One conversation view with its user's presence.
pub async fn with(app: &App, mut view: ConversationView) -> ConversationView {
    add_to(app, std::slice::from_mut(&mut view)).await;
    view
}
