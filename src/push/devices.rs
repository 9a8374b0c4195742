//! The devices people register for pushes (`push_devices`): a token belongs to one person at a
//! time, the one who registered it last. The statements are the store's
//! ([`EventStore::register_push_device`]).

use events::Role;
use projections::ProjectionError;

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
    store
        .register_push_device(
            owner.role,
            owner.user_id,
            token,
            platform.as_str(),
            provider.as_str(),
            max_devices,
        )
        .await
}

/// Removes the owner's device; false when they have no such device.
pub async fn unregister(
    store: &EventStore,
    owner: Owner,
    token: &str,
) -> Result<bool, ProjectionError> {
    store
        .unregister_push_device(owner.role, owner.user_id, token)
        .await
}
