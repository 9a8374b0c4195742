//! Runs projectors: each reads the log from its checkpoint in position order and writes its
//! tables and its new checkpoint in one transaction, so each event is applied exactly once and a
//! crash resumes cleanly.
//!
//! One node at a time applies each projector, under a lease in `projector_state`: the holder
//! renews it every `lease_renew`; a stopped node loses it after `lease_ttl`. The checkpoint update
//! is fenced by the holder, so a node that lost its lease mid-batch cannot commit that batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::{LoggedEvent, ProjectionError, ProjectionStore, Projector, SqlTxn, SqlValue, Tables};

#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Names this node in leases; unique per process.
    pub node_id: String,
    /// Events applied per transaction at most.
    pub batch_size: u32,
    /// How often an idle projector looks for other nodes' commits, and a standby for the lease.
    pub poll_interval: Duration,
    pub lease_ttl: Duration,
    pub lease_renew: Duration,
}

impl RuntimeOptions {
    pub fn new(node_id: impl Into<String>) -> Self {
        RuntimeOptions {
            node_id: node_id.into(),
            batch_size: 500,
            poll_interval: Duration::from_millis(100),
            lease_ttl: Duration::from_secs(5),
            lease_renew: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectorState {
    /// Another node holds the lease (or this one is about to take it).
    Standby,
    /// This node holds the lease and applies events.
    Running,
    /// An event could not be applied: the projector stopped; see `last_error`.
    Failed,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectorStatus {
    pub name: &'static str,
    pub state: ProjectorState,
    /// The last position applied (as far as this node knows).
    pub position: u64,
    pub head: u64,
    pub lag: u64,
    pub last_error: Option<String>,
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

type Statuses = Arc<Mutex<HashMap<&'static str, ProjectorStatus>>>;

/// The running projectors of this node.
pub struct Projections {
    store: Arc<dyn ProjectionStore>,
    statuses: Statuses,
    progressed: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Projections {
    /// Starts one task per projector. `wake` changes whenever this node commits to the log.
    pub fn start(
        store: Arc<dyn ProjectionStore>,
        projectors: Vec<Arc<dyn Projector>>,
        wake: watch::Receiver<u64>,
        options: RuntimeOptions,
    ) -> Self {
        let statuses: Statuses = Arc::new(Mutex::new(HashMap::new()));
        let progressed = Arc::new(Notify::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for projector in projectors {
            let status = ProjectorStatus {
                name: projector.name(),
                state: ProjectorState::Standby,
                position: 0,
                head: 0,
                lag: 0,
                last_error: None,
            };
            if let Ok(mut all) = statuses.lock() {
                all.insert(projector.name(), status);
            }
            let worker = Worker {
                store: store.clone(),
                projector,
                options: options.clone(),
                statuses: statuses.clone(),
                progressed: progressed.clone(),
                leader: false,
                renewed_at: None,
                position: 0,
            };
            tasks.push(tokio::spawn(worker.run(wake.clone(), shutdown_rx.clone())));
        }
        Projections {
            store,
            statuses,
            progressed,
            shutdown,
            tasks: Mutex::new(tasks),
        }
    }

    pub fn statuses(&self) -> Vec<ProjectorStatus> {
        let mut all: Vec<_> = self
            .statuses
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by_key(|s| s.name);
        all
    }

    /// Waits until every projector has applied `position`, at most `timeout`. False on timeout
    /// or when a projector has failed (it will not get there).
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        self.wait_for_these(position, timeout, &[]).await
    }

    /// As [`Projections::wait_for`], for the named projectors only (all when `names` is empty):
    /// a reader of some tables need not wait for the others.
    pub async fn wait_for_these(&self, position: u64, timeout: Duration, names: &[&str]) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.progressed.notified();
            let statuses: Vec<ProjectorStatus> = self
                .statuses()
                .into_iter()
                .filter(|s| names.is_empty() || names.contains(&s.name))
                .collect();
            if statuses.iter().any(|s| s.state == ProjectorState::Failed) {
                return false;
            }
            if statuses.iter().all(|s| s.position >= position) {
                return true;
            }
            // Projectors led by another node: their checkpoints are in the database.
            if statuses.iter().any(|s| s.state != ProjectorState::Running)
                && self.database_positions_reach(&statuses, position).await
            {
                return true;
            }
            let tick = Duration::from_millis(5);
            if tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + tick), notified)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return false;
            }
        }
    }

    async fn database_positions_reach(&self, statuses: &[ProjectorStatus], position: u64) -> bool {
        let Ok(mut txn) = self.store.begin().await else {
            return false;
        };
        let mut reached = true;
        for status in statuses.iter().filter(|s| s.position < position) {
            let row = txn
                .fetch_row(
                    "select position from projector_state where name = ?",
                    &[status.name.into()],
                )
                .await;
            let checkpoint = row
                .ok()
                .flatten()
                .and_then(|r| r.first().and_then(SqlValue::as_i64));
            if checkpoint.is_none_or(|p| p < position as i64) {
                reached = false;
                break;
            }
        }
        let _ = txn.rollback().await;
        reached
    }

    /// Stops every projector after its current batch and releases its lease.
    pub async fn stop(&self) {
        let _ = self.shutdown.send(true);
        let tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Stops at once, as a crash would: no lease is released, a batch in flight is rolled back.
    pub fn abort(&self) {
        if let Ok(tasks) = self.tasks.lock() {
            for task in tasks.iter() {
                task.abort();
            }
        }
    }
}

struct Worker {
    store: Arc<dyn ProjectionStore>,
    projector: Arc<dyn Projector>,
    options: RuntimeOptions,
    statuses: Statuses,
    progressed: Arc<Notify>,
    leader: bool,
    renewed_at: Option<tokio::time::Instant>,
    position: u64,
}

impl Worker {
    fn name(&self) -> &'static str {
        self.projector.name()
    }

    fn publish(&self, update: impl FnOnce(&mut ProjectorStatus)) {
        if let Ok(mut all) = self.statuses.lock()
            && let Some(status) = all.get_mut(self.name())
        {
            update(status);
            status.lag = status.head.saturating_sub(status.position);
        }
        self.progressed.notify_waiters();
    }

    async fn run(mut self, mut wake: watch::Receiver<u64>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let idle = match self.step().await {
                // A batch short of full reached the head as it was read: wait for the next
                // commit rather than read the log again to find nothing.
                Ok(applied) => applied < self.options.batch_size as usize,
                Err(ProjectionError::Apply { position, reason }) => {
                    let message =
                        format!("cannot apply the event at position {position}: {reason}");
                    tracing::error!(projector = self.name(), position, %reason, "projector stopped");
                    self.record_failure(&message).await;
                    self.publish(|s| {
                        s.state = ProjectorState::Failed;
                        s.last_error = Some(message);
                    });
                    return;
                }
                Err(ProjectionError::LeaseLost) => {
                    tracing::info!(projector = self.name(), "lease lost to another node");
                    self.leader = false;
                    self.publish(|s| s.state = ProjectorState::Standby);
                    true
                }
                Err(error) => {
                    tracing::warn!(projector = self.name(), %error, "projector will retry");
                    self.leader = false;
                    self.publish(|s| {
                        s.state = ProjectorState::Standby;
                        s.last_error = Some(error.to_string());
                    });
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = shutdown.changed() => {}
                    () = tokio::time::sleep(self.options.poll_interval) => {}
                }
                let pace = self.projector.pace();
                if !pace.is_zero() {
                    tokio::select! {
                        _ = shutdown.changed() => {}
                        () = tokio::time::sleep(pace) => {}
                    }
                }
            }
        }
        self.release().await;
        self.publish(|s| s.state = ProjectorState::Stopped);
    }

    /// Takes or renews the lease when due, then applies one batch. Returns how many events it
    /// applied (0 when idle or standing by).
    async fn step(&mut self) -> Result<usize, ProjectionError> {
        let renew_due = self
            .renewed_at
            .is_none_or(|at| at.elapsed() >= self.options.lease_renew);
        if !self.leader || renew_due {
            let was_leader = self.leader;
            self.leader = self.take_lease().await?;
            if !self.leader {
                self.publish(|s| s.state = ProjectorState::Standby);
                return Ok(0);
            }
            self.renewed_at = Some(tokio::time::Instant::now());
            if !was_leader {
                self.position = self.load_checkpoint().await?;
                tracing::info!(
                    projector = self.name(),
                    position = self.position,
                    "projector leads"
                );
            }
            let position = self.position;
            self.publish(|s| {
                s.state = ProjectorState::Running;
                s.position = position;
            });
        }
        let batch = self
            .store
            .read_from(self.position, self.options.batch_size)
            .await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            let head = self.store.head().await?;
            self.publish(|s| {
                s.head = head;
                s.last_error = None;
            });
            return Ok(0);
        };
        let mut txn = self.store.begin().await?;
        let applied = self.apply_batch(txn.as_mut(), &batch, last).await;
        if let Err(error) = applied {
            let _ = txn.rollback().await;
            return Err(error);
        }
        txn.commit().await?;
        self.position = last;
        let count = batch.len();
        self.publish(|s| {
            s.position = last;
            s.head = s.head.max(last);
            s.last_error = None;
        });
        Ok(count)
    }

    async fn apply_batch(
        &self,
        txn: &mut dyn SqlTxn,
        batch: &[LoggedEvent],
        last: u64,
    ) -> Result<(), ProjectionError> {
        self.projector.apply(txn, &Tables::LIVE, batch).await?;
        move_checkpoint(txn, self.name(), &self.options.node_id, self.position, last).await
    }

    async fn take_lease(&self) -> Result<bool, ProjectionError> {
        ensure_state_row(self.store.as_ref(), self.name(), 0).await?;
        take_lease(
            self.store.as_ref(),
            self.name(),
            &self.options.node_id,
            self.options.lease_ttl,
            None,
        )
        .await
    }

    async fn load_checkpoint(&self) -> Result<u64, ProjectionError> {
        load_checkpoint(self.store.as_ref(), self.name()).await
    }

    async fn record_failure(&self, message: &str) {
        let Ok(mut txn) = self.store.begin().await else {
            return;
        };
        let recorded = txn
            .execute(
                "update projector_state set last_error = ?, holder = null, lease_expires_at = 0 \
                 where name = ? and holder = ?",
                &[
                    message.into(),
                    self.name().into(),
                    self.options.node_id.as_str().into(),
                ],
            )
            .await;
        if recorded.is_ok() {
            let _ = txn.commit().await;
        } else {
            let _ = txn.rollback().await;
        }
    }

    /// Hands the lease back so another node takes over at once.
    async fn release(&self) {
        if !self.leader {
            return;
        }
        let _ = release_lease(
            self.store.as_ref(),
            self.name(),
            &self.options.node_id,
            None,
        )
        .await;
    }
}

/// Creates the `projector_state` row of `name` at `position` if it does not exist yet (two
/// nodes may race: one wins). Projectors start at 0; followers that must not act on the history
/// (push, automatic assignment) start at the log's head.
pub async fn ensure_state_row(
    store: &dyn ProjectionStore,
    name: &str,
    position: u64,
) -> Result<(), ProjectionError> {
    let mut txn = store.begin().await?;
    let exists = txn
        .fetch_row(
            "select position from projector_state where name = ?",
            &[name.into()],
        )
        .await?;
    if exists.is_some() {
        txn.rollback().await?;
        return Ok(());
    }
    let inserted = txn
        .execute(
            "insert into projector_state (name, position, holder, lease_expires_at, last_error, updated_at) \
             values (?, ?, null, 0, null, ?)",
            &[name.into(), position.into(), SqlValue::Int(now_micros())],
        )
        .await;
    match inserted {
        Ok(_) => txn.commit().await,
        Err(ProjectionError::Duplicate(_)) => txn.rollback().await,
        Err(error) => {
            let _ = txn.rollback().await;
            Err(error)
        }
    }
}

/// Takes or renews the lease on `name` for `node_id` until `ttl` from now; whether it is held.
/// With a `checkpoint`, a holder renewing it saves its position in the same statement (for a
/// follower that writes nothing else while it has nothing to do).
pub async fn take_lease(
    store: &dyn ProjectionStore,
    name: &str,
    node_id: &str,
    ttl: Duration,
    checkpoint: Option<u64>,
) -> Result<bool, ProjectionError> {
    let now = now_micros();
    let mut params: Vec<SqlValue> = vec![node_id.into(), SqlValue::Int(now + micros(ttl))];
    let save = match checkpoint {
        Some(position) => {
            params.extend([position.into(), SqlValue::Int(now)]);
            ", position = ?, updated_at = ?"
        }
        None => "",
    };
    params.extend([name.into(), node_id.into(), SqlValue::Int(now)]);
    let sql = format!(
        "update projector_state set holder = ?, lease_expires_at = ?{save} \
         where name = ? and (holder is null or holder = ? or lease_expires_at < ?)"
    );
    let mut txn = store.begin().await?;
    match txn.execute(&sql, &params).await {
        Ok(rows) => {
            txn.commit().await?;
            Ok(rows == 1)
        }
        Err(error) => {
            let _ = txn.rollback().await;
            Err(error)
        }
    }
}

/// The checkpoint saved for `name` (0 when it has none).
pub async fn load_checkpoint(
    store: &dyn ProjectionStore,
    name: &str,
) -> Result<u64, ProjectionError> {
    let mut txn = store.begin().await?;
    let row = txn
        .fetch_row(
            "select position from projector_state where name = ?",
            &[name.into()],
        )
        .await;
    let _ = txn.rollback().await;
    let position = row?
        .and_then(|r| r.first().and_then(SqlValue::as_i64))
        .unwrap_or(0);
    Ok(u64::try_from(position).unwrap_or(0))
}

/// Hands the lease on `name` back if `node_id` holds it, so another node takes over at once;
/// with a `checkpoint`, saves that position in the same statement.
pub async fn release_lease(
    store: &dyn ProjectionStore,
    name: &str,
    node_id: &str,
    checkpoint: Option<u64>,
) -> Result<(), ProjectionError> {
    let (sql, params): (&str, Vec<SqlValue>) = match checkpoint {
        None => (
            "update projector_state set holder = null, lease_expires_at = 0 where name = ? and holder = ?",
            vec![name.into(), node_id.into()],
        ),
        Some(position) => (
            "update projector_state set holder = null, lease_expires_at = 0, position = ? \
             where name = ? and holder = ?",
            vec![position.into(), name.into(), node_id.into()],
        ),
    };
    let mut txn = store.begin().await?;
    match txn.execute(sql, &params).await {
        Ok(_) => txn.commit().await,
        Err(error) => {
            let _ = txn.rollback().await;
            Err(error)
        }
    }
}

/// Moves the checkpoint of `name` from `from` to `to` inside `txn`, only while `node_id` holds
/// the lease and nobody moved it meanwhile: otherwise the batch must not commit.
pub async fn move_checkpoint(
    txn: &mut dyn SqlTxn,
    name: &str,
    node_id: &str,
    from: u64,
    to: u64,
) -> Result<(), ProjectionError> {
    let moved = txn
        .execute(
            "update projector_state set position = ?, updated_at = ?, last_error = null \
             where name = ? and holder = ? and position = ?",
            &[
                to.into(),
                SqlValue::Int(now_micros()),
                name.into(),
                node_id.into(),
                from.into(),
            ],
        )
        .await?;
    if moved != 1 {
        return Err(ProjectionError::LeaseLost);
    }
    Ok(())
}

/// How far a replay has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Events handed to every projector (each may still be applying its last two batches; the
    /// replay returns only once all are applied).
    pub applied: u64,
    pub position: u64,
    pub head: u64,
}

/// Rebuilds the projectors' tables from position 0 into fresh copies, then swaps them in, so live
/// readers never see a half-built table. Live projectors keep serving until the swap; for the
/// swap the replay takes their leases, catches up with what was appended meanwhile, replaces the
/// tables and sets the checkpoints. Returns the position the rebuilt tables reflect.
pub async fn replay(
    store: &dyn ProjectionStore,
    projectors: &[Arc<dyn Projector>],
    batch_size: u32,
    mut progress: impl FnMut(ReplayProgress),
) -> Result<u64, ProjectionError> {
    let tables: Vec<&'static str> = projectors
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();
    let mut txn = store.begin().await?;
    for table in &tables {
        txn.create_empty_copy(table, &Tables::REBUILD.name(table))
            .await?;
    }
    txn.commit().await?;

    let head = store.head().await?;
    let mut position = 0;
    let mut applied = 0;
    position = fold_into_rebuild(
        store,
        projectors,
        position,
        head,
        batch_size,
        &mut applied,
        &mut progress,
    )
    .await?;

    // The copies' deferred indexes are built while the live projectors still run.
    let mut txn = store.begin().await?;
    for table in &tables {
        txn.index_copy(table, &Tables::REBUILD.name(table)).await?;
    }
    txn.commit().await?;

    // Swap: stop the live projectors by taking their leases, catch up, replace, hand back.
    let holder = format!("replay-{}", std::process::id());
    for projector in projectors {
        ensure_state_row(store, projector.name(), 0).await?;
        let mut txn = store.begin().await?;
        txn.execute(
            "update projector_state set holder = ?, lease_expires_at = ? where name = ?",
            &[
                holder.as_str().into(),
                SqlValue::Int(now_micros() + micros(Duration::from_secs(60))),
                projector.name().into(),
            ],
        )
        .await?;
        txn.commit().await?;
    }
    let head = store.head().await?;
    position = fold_into_rebuild(
        store,
        projectors,
        position,
        head,
        batch_size,
        &mut applied,
        &mut progress,
    )
    .await?;

    let mut txn = store.begin().await?;
    for table in &tables {
        txn.replace_table(table, &Tables::REBUILD.name(table))
            .await?;
    }
    txn.commit().await?;
    for projector in projectors {
        let mut txn = store.begin().await?;
        projector.finish_rebuild(txn.as_mut()).await?;
        txn.commit().await?;
    }
    // After the swap (MySQL commits DDL at once): if this step is lost, the live projector meets
    // rows it already has and stops loudly instead of silently skipping events.
    let mut txn = store.begin().await?;
    for projector in projectors {
        txn.execute(
            "update projector_state set position = ?, holder = null, lease_expires_at = 0, \
             last_error = null, updated_at = ? where name = ?",
            &[
                position.into(),
                SqlValue::Int(now_micros()),
                projector.name().into(),
            ],
        )
        .await?;
    }
    txn.commit().await?;
    Ok(position)
}

/// Folds the log after `position` up to `head` into the rebuild tables. Each batch is read once
/// and handed to every projector; each applies it in its own transaction, concurrently with the
/// others and with the reading of the next batch, so the database works on one statement while
/// this process prepares the next.
async fn fold_into_rebuild(
    store: &dyn ProjectionStore,
    projectors: &[Arc<dyn Projector>],
    position: u64,
    head: u64,
    batch_size: u32,
    applied: &mut u64,
    progress: &mut impl FnMut(ReplayProgress),
) -> Result<u64, ProjectionError> {
    if position >= head {
        return Ok(position);
    }
    let mut feeds = Vec::new();
    let mut workers = Vec::new();
    for projector in projectors {
        let (feed, mut batches) = tokio::sync::mpsc::channel::<Arc<Vec<LoggedEvent>>>(2);
        feeds.push(feed);
        workers.push(async move {
            while let Some(batch) = batches.recv().await {
                let mut txn = store.begin().await?;
                if let Err(error) = projector
                    .apply(txn.as_mut(), &Tables::REBUILD, &batch)
                    .await
                {
                    let _ = txn.rollback().await;
                    return Err(error);
                }
                txn.commit().await?;
            }
            Ok(())
        });
    }
    let reader = async move {
        let mut position = position;
        while position < head {
            let batch = Arc::new(store.read_from(position, batch_size).await?);
            let Some(last) = batch.last().map(|e| e.position) else {
                break;
            };
            for feed in &feeds {
                if feed.send(batch.clone()).await.is_err() {
                    // That projector failed: its error is the one returned.
                    return Ok(position);
                }
            }
            position = last;
            *applied += batch.len() as u64;
            progress(ReplayProgress {
                applied: *applied,
                position,
                head,
            });
        }
        Ok::<u64, ProjectionError>(position)
    };
    let (position, folded) = tokio::join!(reader, futures::future::try_join_all(workers));
    folded?;
    position
}
