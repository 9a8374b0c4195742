//! Who is online: a user or admin is online while at least one of their sockets is connected, on
//! any node; an admin may also say they are away.
//!
//! Every part that asks (push notifications, automatic assignment, the admin views) goes through
//! [`Presence`], so where the answer comes from (this process, or Redis across nodes) stays here.
//!
//! Without Redis the answer is this process's own socket counts. With Redis each node keeps a
//! hash of its counts (`<prefix>:presence:node:<node id>`) and a heartbeat in a sorted set of
//! nodes scored by when it expires. A node that crashes stops refreshing its score; whichever
//! node sweeps next (every node sweeps, each sweep is one atomic script) drops its hash and
//! takes its people offline unless another live node still counts them. Every change of a
//! person's state (online, offline, away) is decided by one atomic script on one node, so it is
//! reported exactly once: by the node whose script made it, through [`Presence::subscribe`].
//!
//! Presence is never in the log: it is a fact about connections, not about conversations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use events::Role;
use redis::aio::ConnectionManager;
use tokio::sync::{Mutex, broadcast, watch};

use crate::redis::bounded;

/// How many unread changes a slow subscriber may fall behind before it misses some.
const CHANGES_BUFFER: usize = 1024;

/// A person's presence as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PersonPresence {
    pub online: bool,
    /// Admins only: they said they are away.
    pub away: bool,
    /// Microseconds: now while online, else when their last socket closed; None when never seen.
    pub last_seen_at: Option<i64>,
}

/// One change of a person's presence, reported once across every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub role: Role,
    pub user_id: u64,
    pub presence: PersonPresence,
}

/// Why a presence question could not be answered (Redis did not).
#[derive(Debug, thiserror::Error)]
#[error("presence is unavailable: {0}")]
pub struct PresenceUnavailable(String);

/// Who has a connected socket, and which admins are away.
pub struct Presence {
    /// This node's sockets per person. Guarded by an async lock: with Redis, the change of the
    /// count and the script that publishes it happen under it, so the heartbeat never publishes
    /// a count older than one a connect or disconnect already published.
    local: Mutex<HashMap<(Role, u64), usize>>,
    backend: Backend,
    changes: broadcast::Sender<PresenceChange>,
}

enum Backend {
    Local(std::sync::Mutex<LocalState>),
    Redis(RedisPresence),
}

#[derive(Default)]
struct LocalState {
    seen: HashMap<(Role, u64), i64>,
    away: HashSet<u64>,
}

struct RedisPresence {
    connection: ConnectionManager,
    /// `<redis prefix>:presence:`
    prefix: String,
    node_id: String,
    ttl: Duration,
    connect: redis::Script,
    disconnect: redis::Script,
    heartbeat: redis::Script,
    sweep: redis::Script,
}

impl Default for Presence {
    fn default() -> Self {
        Self::new()
    }
}

impl Presence {
    /// This process's sockets only (no Redis).
    pub fn new() -> Self {
        Self::with_backend(Backend::Local(std::sync::Mutex::default()))
    }

    /// Across nodes through Redis: `prefix` keeps deployments sharing a Redis apart, `node_id`
    /// names this process, and a node that stops refreshing its entry stops counting after `ttl`.
    pub fn with_redis(
        connection: ConnectionManager,
        prefix: &str,
        node_id: &str,
        ttl: Duration,
    ) -> Self {
        Self::with_backend(Backend::Redis(RedisPresence {
            connection,
            prefix: format!("{prefix}:presence:"),
            node_id: node_id.to_string(),
            ttl,
            connect: redis::Script::new(&format!("{LUA_PRELUDE}{CONNECT_SCRIPT}")),
            disconnect: redis::Script::new(&format!("{LUA_PRELUDE}{DISCONNECT_SCRIPT}")),
            heartbeat: redis::Script::new(&format!("{LUA_PRELUDE}{HEARTBEAT_SCRIPT}")),
            sweep: redis::Script::new(&format!("{LUA_PRELUDE}{SWEEP_SCRIPT}")),
        }))
    }

    fn with_backend(backend: Backend) -> Self {
        Presence {
            local: Mutex::default(),
            backend,
            changes: broadcast::channel(CHANGES_BUFFER).0,
        }
    }

    /// The changes this node decided (each change is decided by exactly one node).
    pub fn subscribe(&self) -> broadcast::Receiver<PresenceChange> {
        self.changes.subscribe()
    }

    /// A socket of `user_id` (in `role`) finished its handshake.
    pub async fn socket_connected(&self, role: Role, user_id: u64) {
        if !tracked(role) {
            return;
        }
        let mut local = self.local.lock().await;
        let count = local.entry((role, user_id)).or_default();
        *count += 1;
        let first_here = *count == 1;
        match &self.backend {
            Backend::Local(state) => {
                if first_here {
                    let now = crate::clock::now_micros();
                    let away = lock(state).is_some_and(|mut s| {
                        s.seen.insert((role, user_id), now);
                        s.away.contains(&user_id)
                    });
                    self.report(role, user_id, true, away, now);
                }
            }
            Backend::Redis(redis) => {
                let mut invocation = redis.connect.prepare_invoke();
                invocation
                    .arg(&redis.prefix)
                    .arg(&redis.node_id)
                    .arg(person(role, user_id))
                    .arg(redis.ttl_ms());
                let mut connection = redis.connection.clone();
                match bounded(invocation.invoke_async::<Option<String>>(&mut connection)).await {
                    Ok(Some(now)) => {
                        let away = self.away_of(role, user_id).await;
                        self.report(role, user_id, true, away, parse_micros(&now));
                    }
                    Ok(None) => {}
                    // The heartbeat publishes this node's counts again within seconds.
                    Err(error) => tracing::warn!(%error, "presence: a connect was not published"),
                }
            }
        }
    }

    /// A socket of `user_id` (in `role`) is gone.
    pub async fn socket_disconnected(&self, role: Role, user_id: u64) {
        if !tracked(role) {
            return;
        }
        let mut local = self.local.lock().await;
        let Some(count) = local.get_mut(&(role, user_id)) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count > 0 {
            return;
        }
        local.remove(&(role, user_id));
        match &self.backend {
            Backend::Local(state) => {
                let now = crate::clock::now_micros();
                let away = lock(state).is_some_and(|mut s| {
                    s.seen.insert((role, user_id), now);
                    s.away.contains(&user_id)
                });
                self.report(role, user_id, false, away, now);
            }
            Backend::Redis(redis) => {
                let mut invocation = redis.disconnect.prepare_invoke();
                invocation
                    .arg(&redis.prefix)
                    .arg(&redis.node_id)
                    .arg(person(role, user_id));
                let mut connection = redis.connection.clone();
                match bounded(invocation.invoke_async::<Option<String>>(&mut connection)).await {
                    Ok(Some(now)) => {
                        let away = self.away_of(role, user_id).await;
                        self.report(role, user_id, false, away, parse_micros(&now));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::warn!(%error, "presence: a disconnect was not published");
                    }
                }
            }
        }
    }

    /// Whether `user_id` (in `role`) has at least one connected socket (on any node).
    pub async fn is_online(&self, role: Role, user_id: u64) -> bool {
        match &self.backend {
            Backend::Local(_) => self.local.lock().await.contains_key(&(role, user_id)),
            Backend::Redis(redis) => {
                let mut connection = redis.connection.clone();
                let key = format!("{}online:{}", redis.prefix, role.as_str());
                let mut command = redis::cmd("SISMEMBER");
                command.arg(key).arg(person(role, user_id));
                match bounded(command.query_async::<bool>(&mut connection)).await {
                    Ok(online) => online,
                    // Without Redis, this node's own sockets are the best answer there is.
                    Err(_) => self.local.lock().await.contains_key(&(role, user_id)),
                }
            }
        }
    }

    /// The presence of each of `ids` (in `role`).
    pub async fn people(
        &self,
        role: Role,
        ids: &[u64],
    ) -> Result<HashMap<u64, PersonPresence>, PresenceUnavailable> {
        let now = crate::clock::now_micros();
        let mut answer = HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(answer);
        }
        match &self.backend {
            Backend::Local(state) => {
                let local = self.local.lock().await;
                let state = lock(state);
                for id in ids {
                    let online = local.contains_key(&(role, *id));
                    let (seen, away) = state.as_ref().map_or((None, false), |s| {
                        (
                            s.seen.get(&(role, *id)).copied(),
                            role == Role::Admin && s.away.contains(id),
                        )
                    });
                    answer.insert(*id, shown(online, away, seen, now));
                }
            }
            Backend::Redis(redis) => {
                let people: Vec<String> = ids.iter().map(|id| person(role, *id)).collect();
                let mut pipe = redis::pipe();
                pipe.cmd("SMISMEMBER")
                    .arg(format!("{}online:{}", redis.prefix, role.as_str()))
                    .arg(&people)
                    .cmd("HMGET")
                    .arg(format!("{}seen:{}", redis.prefix, role.as_str()))
                    .arg(&people)
                    .cmd("SMISMEMBER")
                    .arg(format!("{}away", redis.prefix))
                    .arg(&people);
                let mut connection = redis.connection.clone();
                let (online, seen, away): (Vec<bool>, Vec<Option<String>>, Vec<bool>) =
                    bounded(pipe.query_async(&mut connection))
                        .await
                        .map_err(|e| PresenceUnavailable(e.to_string()))?;
                for (i, id) in ids.iter().enumerate() {
                    let online = online.get(i).copied().unwrap_or(false);
                    let seen = seen.get(i).cloned().flatten().map(|s| parse_micros(&s));
                    let away = role == Role::Admin && away.get(i).copied().unwrap_or(false);
                    answer.insert(*id, shown(online, away, seen, now));
                }
            }
        }
        Ok(answer)
    }

    /// Admins who are online and not away, in id order.
    pub async fn available_admins(&self) -> Result<Vec<u64>, PresenceUnavailable> {
        let mut ids: Vec<u64> = match &self.backend {
            Backend::Local(state) => {
                let local = self.local.lock().await;
                let away = lock(state).map(|s| s.away.clone()).unwrap_or_default();
                local
                    .keys()
                    .filter(|(role, id)| *role == Role::Admin && !away.contains(id))
                    .map(|(_, id)| *id)
                    .collect()
            }
            Backend::Redis(redis) => {
                let mut connection = redis.connection.clone();
                let mut command = redis::cmd("SDIFF");
                command
                    .arg(format!("{}online:admin", redis.prefix))
                    .arg(format!("{}away", redis.prefix));
                bounded(command.query_async::<Vec<String>>(&mut connection))
                    .await
                    .map_err(|e| PresenceUnavailable(e.to_string()))?
                    .iter()
                    .filter_map(|p| id_of(p))
                    .collect()
            }
        };
        ids.sort_unstable();
        Ok(ids)
    }

    /// Every admin presence has seen (online now, or once since Redis or this process started
    /// keeping track).
    pub async fn known_admins(&self) -> Result<Vec<u64>, PresenceUnavailable> {
        let mut ids: Vec<u64> = match &self.backend {
            Backend::Local(state) => lock(state)
                .map(|s| {
                    s.seen
                        .keys()
                        .filter(|(role, _)| *role == Role::Admin)
                        .map(|(_, id)| *id)
                        .chain(s.away.iter().copied())
                        .collect()
                })
                .unwrap_or_default(),
            Backend::Redis(redis) => {
                let mut pipe = redis::pipe();
                pipe.cmd("HKEYS")
                    .arg(format!("{}seen:admin", redis.prefix))
                    .cmd("SMEMBERS")
                    .arg(format!("{}away", redis.prefix));
                let mut connection = redis.connection.clone();
                let (seen, away): (Vec<String>, Vec<String>) =
                    bounded(pipe.query_async(&mut connection))
                        .await
                        .map_err(|e| PresenceUnavailable(e.to_string()))?;
                seen.iter().chain(&away).filter_map(|p| id_of(p)).collect()
            }
        };
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// An admin says they are away (or available again); their presence afterwards. A change
    /// is reported once.
    pub async fn set_away(
        &self,
        admin_id: u64,
        away: bool,
    ) -> Result<PersonPresence, PresenceUnavailable> {
        let changed = match &self.backend {
            Backend::Local(state) => {
                let mut state =
                    lock(state).ok_or_else(|| PresenceUnavailable("poisoned".into()))?;
                if away {
                    state.away.insert(admin_id)
                } else {
                    state.away.remove(&admin_id)
                }
            }
            Backend::Redis(redis) => {
                let mut connection = redis.connection.clone();
                let mut command = redis::cmd(if away { "SADD" } else { "SREM" });
                command
                    .arg(format!("{}away", redis.prefix))
                    .arg(person(Role::Admin, admin_id));
                bounded(command.query_async::<u64>(&mut connection))
                    .await
                    .map_err(|e| PresenceUnavailable(e.to_string()))?
                    == 1
            }
        };
        let now = self
            .people(Role::Admin, &[admin_id])
            .await?
            .remove(&admin_id)
            .unwrap_or_default();
        if changed {
            let _ = self.changes.send(PresenceChange {
                role: Role::Admin,
                user_id: admin_id,
                presence: now,
            });
        }
        Ok(now)
    }

    /// With Redis: refreshes this node's entry every third of the TTL and sweeps nodes that
    /// stopped refreshing theirs, until `stops` turns true. Without Redis there is nothing to do.
    pub fn start(self: &Arc<Self>, mut stops: watch::Receiver<bool>) {
        let Backend::Redis(redis) = &self.backend else {
            return;
        };
        let every = (redis.ttl / 3).max(Duration::from_millis(100));
        let presence = self.clone();
        tokio::spawn(async move {
            loop {
                presence.heartbeat().await;
                presence.sweep().await;
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stops.changed() => return,
                }
            }
        });
    }

    async fn heartbeat(&self) {
        let Backend::Redis(redis) = &self.backend else {
            return;
        };
        let local = self.local.lock().await;
        let mut invocation = redis.heartbeat.prepare_invoke();
        invocation
            .arg(&redis.prefix)
            .arg(&redis.node_id)
            .arg(redis.ttl_ms());
        for ((role, id), count) in local.iter() {
            invocation.arg(person(*role, *id)).arg(*count);
        }
        let mut connection = redis.connection.clone();
        match bounded(
            invocation.invoke_async::<(String, Vec<String>, Vec<String>)>(&mut connection),
        )
        .await
        {
            Ok((now, came, went)) => {
                drop(local);
                let now = parse_micros(&now);
                self.report_people(&came, true, now).await;
                self.report_people(&went, false, now).await;
            }
            Err(error) => tracing::warn!(%error, "presence: heartbeat failed"),
        }
    }

    async fn sweep(&self) {
        let Backend::Redis(redis) = &self.backend else {
            return;
        };
        let mut invocation = redis.sweep.prepare_invoke();
        invocation.arg(&redis.prefix);
        let mut connection = redis.connection.clone();
        match bounded(invocation.invoke_async::<(String, Vec<String>)>(&mut connection)).await {
            Ok((now, went)) => {
                if !went.is_empty() {
                    tracing::info!(
                        people = went.len(),
                        "presence: a stopped node's sockets no longer count"
                    );
                }
                self.report_people(&went, false, parse_micros(&now)).await;
            }
            Err(error) => tracing::warn!(%error, "presence: sweep failed"),
        }
    }

    async fn report_people(&self, people: &[String], online: bool, at: i64) {
        for p in people {
            if let Some((role, id)) = parse_person(p) {
                let away = self.away_of(role, id).await;
                self.report(role, id, online, away, at);
            }
        }
    }

    async fn away_of(&self, role: Role, id: u64) -> bool {
        if role != Role::Admin {
            return false;
        }
        self.people(role, &[id])
            .await
            .ok()
            .and_then(|mut p| p.remove(&id))
            .is_some_and(|p| p.away)
    }

    fn report(&self, role: Role, user_id: u64, online: bool, away: bool, at: i64) {
        let _ = self.changes.send(PresenceChange {
            role,
            user_id,
            presence: PersonPresence {
                online,
                away: role == Role::Admin && away,
                last_seen_at: Some(at),
            },
        });
    }
}

impl RedisPresence {
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Users and admins have presence; auditors and the system do not.
fn tracked(role: Role) -> bool {
    matches!(role, Role::User | Role::Admin)
}

fn lock(state: &std::sync::Mutex<LocalState>) -> Option<std::sync::MutexGuard<'_, LocalState>> {
    state.lock().ok()
}

fn shown(online: bool, away: bool, seen: Option<i64>, now: i64) -> PersonPresence {
    PersonPresence {
        online,
        away,
        last_seen_at: if online { Some(now) } else { seen },
    }
}

fn person(role: Role, id: u64) -> String {
    format!("{}:{id}", role.as_str())
}

fn parse_person(person: &str) -> Option<(Role, u64)> {
    let (role, id) = person.split_once(':')?;
    Some((role.parse().ok()?, id.parse().ok()?))
}

fn id_of(person: &str) -> Option<u64> {
    parse_person(person).map(|(_, id)| id)
}

fn parse_micros(text: &str) -> i64 {
    text.parse().unwrap_or_else(|_| crate::clock::now_micros())
}

/// Shared by every script. ARGV[1] is the key prefix. Time is Redis's own, so nodes whose clocks
/// disagree still agree on when an entry expires.
const LUA_PRELUDE: &str = r"
local prefix = ARGV[1]
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = t[1] .. string.format('%06d', tonumber(t[2]))
local function role_of(p) return string.match(p, '^(%a+):') or 'user' end
local function online_key(p) return prefix .. 'online:' .. role_of(p) end
local function seen_key(p) return prefix .. 'seen:' .. role_of(p) end
local function counted_elsewhere(p, except)
  local live = redis.call('ZRANGEBYSCORE', prefix .. 'nodes', '(' .. now_ms, '+inf')
  for _, node in ipairs(live) do
    if node ~= except then
      local c = redis.call('HGET', prefix .. 'node:' .. node, p)
      if c and tonumber(c) > 0 then return true end
    end
  end
  return false
end
local function went_offline(p)
  if redis.call('SREM', online_key(p), p) == 1 then
    redis.call('HSET', seen_key(p), p, now_us)
    return true
  end
  return false
end
local function came_online(p)
  if redis.call('SADD', online_key(p), p) == 1 then
    redis.call('HSET', seen_key(p), p, now_us)
    return true
  end
  return false
end
";

/// ARGV: prefix, node, person, ttl ms. Returns the time when the person came online, else nil.
const CONNECT_SCRIPT: &str = r"
local node, p = ARGV[2], ARGV[3]
redis.call('HINCRBY', prefix .. 'node:' .. node, p, 1)
redis.call('ZADD', prefix .. 'nodes', now_ms + tonumber(ARGV[4]), node)
if came_online(p) then return now_us end
return false
";

/// ARGV: prefix, node, person: the person's last socket on the node closed (the node's count
/// for them may be above one: the heartbeat writes the whole count). Returns the time when the
/// person went offline, else nil.
const DISCONNECT_SCRIPT: &str = r"
local node, p = ARGV[2], ARGV[3]
redis.call('HDEL', prefix .. 'node:' .. node, p)
if counted_elsewhere(p, node) then return false end
if went_offline(p) then return now_us end
return false
";

/// ARGV: prefix, node, ttl ms, then person and count pairs (this node's whole state). Replaces
/// the node's entry, so one that a sweep removed (Redis or the node stalled) comes back, and
/// people a lost disconnect left behind go. Returns {now, came online, went offline}.
const HEARTBEAT_SCRIPT: &str = r"
local node = ARGV[2]
local key = prefix .. 'node:' .. node
local before = redis.call('HKEYS', key)
redis.call('DEL', key)
redis.call('ZADD', prefix .. 'nodes', now_ms + tonumber(ARGV[3]), node)
local here, came, went = {}, {}, {}
for i = 4, #ARGV, 2 do
  local p = ARGV[i]
  here[p] = true
  redis.call('HSET', key, p, ARGV[i + 1])
  if came_online(p) then table.insert(came, p) end
end
for _, p in ipairs(before) do
  if not here[p] and not counted_elsewhere(p, node) and went_offline(p) then
    table.insert(went, p)
  end
end
return {now_us, came, went}
";

/// ARGV: prefix. Drops every node whose entry expired; its people go offline unless a live node
/// counts them. Returns {now, went offline}.
const SWEEP_SCRIPT: &str = r"
local nodes = prefix .. 'nodes'
local expired = redis.call('ZRANGEBYSCORE', nodes, '-inf', now_ms)
local went = {}
for _, node in ipairs(expired) do
  local key = prefix .. 'node:' .. node
  local people = redis.call('HKEYS', key)
  redis.call('DEL', key)
  redis.call('ZREM', nodes, node)
  for _, p in ipairs(people) do
    if not counted_elsewhere(p, node) and went_offline(p) then table.insert(went, p) end
  end
end
return {now_us, went}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_person_is_online_while_one_socket_is_connected_and_each_change_is_reported_once() {
        let presence = Presence::new();
        let mut changes = presence.subscribe();
        presence.socket_connected(Role::User, 7).await;
        presence.socket_connected(Role::User, 7).await;
        presence.socket_disconnected(Role::User, 7).await;
        assert!(presence.is_online(Role::User, 7).await);
        presence.socket_disconnected(Role::User, 7).await;
        assert!(!presence.is_online(Role::User, 7).await);
        let first = changes.try_recv().unwrap();
        assert!(first.presence.online);
        let second = changes.try_recv().unwrap();
        assert!(!second.presence.online);
        assert!(second.presence.last_seen_at.is_some());
        assert!(changes.try_recv().is_err());
    }

    #[tokio::test]
    async fn an_away_admin_is_not_available_and_auditors_have_no_presence() {
        let presence = Presence::new();
        presence.socket_connected(Role::Admin, 1).await;
        presence.socket_connected(Role::Admin, 2).await;
        presence.socket_connected(Role::Auditor, 3).await;
        presence.set_away(2, true).await.unwrap();
        assert_eq!(presence.available_admins().await.unwrap(), vec![1]);
        assert!(!presence.is_online(Role::Auditor, 3).await);
        assert_eq!(presence.known_admins().await.unwrap(), vec![1, 2]);
    }

    #[test]
    fn people_are_keyed_by_role_and_id() {
        assert_eq!(
            parse_person(&person(Role::Admin, 42)),
            Some((Role::Admin, 42))
        );
        assert_eq!(parse_person("nobody"), None);
    }
}
