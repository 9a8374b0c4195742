//! Who is online: a user or admin is online while at least one of their sockets is connected.
//!
//! Every part that asks (push notifications, automatic assignment, the admin views) goes through
//! [`Presence`], so where the answer comes from (this process, or Redis across nodes) stays here.

use std::collections::HashMap;
use std::sync::Mutex;

use events::Role;

/// The sockets connected to this node, per person.
#[derive(Default)]
pub struct Presence {
    local: Mutex<HashMap<(Role, u64), usize>>,
}

impl Presence {
    pub fn new() -> Self {
        Self::default()
    }

    /// A socket of `user_id` (in `role`) finished its handshake.
    pub async fn socket_connected(&self, role: Role, user_id: u64) {
        if let Ok(mut local) = self.local.lock() {
            *local.entry((role, user_id)).or_default() += 1;
        }
    }

    /// A socket of `user_id` (in `role`) is gone.
    pub async fn socket_disconnected(&self, role: Role, user_id: u64) {
        if let Ok(mut local) = self.local.lock()
            && let Some(count) = local.get_mut(&(role, user_id))
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                local.remove(&(role, user_id));
            }
        }
    }

    /// Whether `user_id` (in `role`) has at least one connected socket.
    pub async fn is_online(&self, role: Role, user_id: u64) -> bool {
        self.local
            .lock()
            .map(|local| local.contains_key(&(role, user_id)))
            .unwrap_or(false)
    }
}
