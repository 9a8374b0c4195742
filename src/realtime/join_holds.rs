//! A join's answer and the broadcasts around it, in order. A socket joins the conversation's room
//! before its answer is read (so nothing committed meanwhile is missed), which lets the
//! broadcaster reach the socket first with messages newer than those the answer then carries.
//! While a join is in progress the broadcaster holds that conversation's events for the socket;
//! once the answer has been queued they follow it, less the messages it already held.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::emit_one;

/// A socket's joins in progress, kept in its extensions.
#[derive(Clone, Default)]
pub(crate) struct JoinHolds(Arc<Mutex<HashMap<u64, Held>>>);

#[derive(Default)]
struct Held {
    /// Joins of this conversation in progress on this socket.
    joins: usize,
    events: Vec<(&'static str, Value)>,
}

impl JoinHolds {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Held>> {
        // A panic while holding it left a plain map behind: still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From now until [`release`](Self::release), the conversation's broadcasts wait.
    pub(crate) fn hold(&self, conversation_id: u64) {
        self.lock().entry(conversation_id).or_default().joins += 1;
    }

    /// Emits the event now, or keeps it for after the join's answer; under the lock that
    /// `release` takes, so nothing overtakes what it sends.
    pub(crate) fn emit_or_hold<A: Adapter>(
        &self,
        socket: &SocketRef<A>,
        conversation_id: u64,
        event: &'static str,
        data: &Value,
    ) {
        let mut holds = self.lock();
        match holds.get_mut(&conversation_id) {
            Some(held) => held.events.push((event, data.clone())),
            None => emit_one(socket, event, data),
        }
    }

    /// The join's answer has been queued: what was held follows it, in order, except the
    /// messages the answer carried.
    pub(crate) fn release<A: Adapter>(
        &self,
        socket: &SocketRef<A>,
        conversation_id: u64,
        answered: &HashSet<u64>,
    ) {
        let mut holds = self.lock();
        let Some(held) = holds.get_mut(&conversation_id) else {
            return;
        };
        held.joins = held.joins.saturating_sub(1);
        if held.joins > 0 {
            return;
        }
        if let Some(held) = holds.remove(&conversation_id) {
            for (event, data) in held.events {
                let repeated = event == "new_message"
                    && data["id"].as_u64().is_some_and(|id| answered.contains(&id));
                if !repeated {
                    emit_one(socket, event, &data);
                }
            }
        }
    }
}
