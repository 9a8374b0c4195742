//! The command layer: turns a caller's intent into a decision of the domain and appends the
//! decided events, with the idempotency keys and the active-conversation index, in one
//! transaction under the sequencer lock.
//!
//! One appender task per node takes commands from a queue and handles whatever has queued up as
//! one batch in one transaction (group commit): one lock, one disk flush for many commands. The
//! domain decides inside that transaction, so the message ids it is handed increase in commit
//! order, and concurrent senders to one conversation never conflict. Aggregates are kept in a
//! bounded cache; the cache is trusted only while this node was the last writer (the sequencer's
//! next position is the one this node left), otherwise it is dropped and streams are reloaded.
//!
//! Architecture Invariant: a reply is sent only after the transaction holding its events has
//! committed.

pub mod imported;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use events::{
    Actor, Conversation, ConversationCommand, ConversationError, ConversationEvent,
    ConversationServices, ConversationStatus, NewMessage,
};
use lru::LruCache;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Type};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::clock::now_micros;
use crate::store::{
    AppendTxn, CONVERSATION_STREAM, EventMetadata, EventStore, GENESIS_HASH, SqlStore, StoreError,
    StoredEvent, on_backend,
};

/// Commands handled in one transaction at most.
const MAX_BATCH: usize = 256;
/// How many times a batch that met a concurrent writer is tried again before callers see an error.
const MAX_CONFLICT_RETRIES: usize = 3;
/// A conversation's fold is saved as a snapshot each time its stream passes a multiple of this.
pub(crate) const SNAPSHOT_EVERY: u64 = 250;
/// The shape of a snapshot's state: changed when `Conversation` changes how it serializes.
pub(crate) const SNAPSHOT_FORMAT: i64 = 3;
/// Committed batches a slow subscriber may fall behind by; one that falls further reads the log.
const COMMITTED_FEED_CAPACITY: usize = 1024;

/// The events of one committed batch, in position order, with no gap between them.
pub type CommittedBatch = Arc<[StoredEvent]>;

/// What a caller wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// A command on a named conversation.
    On(u64, ConversationCommand),
    /// The user's active conversation, opened when they have none, and the message (if any) sent
    /// to it.
    OpenOrContinue {
        actor: Actor,
        message: Option<NewMessage>,
    },
}

impl Intent {
    fn actor(&self) -> &Actor {
        match self {
            Intent::On(_, command) => command.actor(),
            Intent::OpenOrContinue { actor, .. } => actor,
        }
    }

    fn client_msg_id(&self) -> Option<&str> {
        match self {
            Intent::On(_, command) => command.client_msg_id(),
            Intent::OpenOrContinue { message, .. } => {
                message.as_ref().and_then(|m| m.client_msg_id.as_deref())
            }
        }
    }
}

/// What an accepted command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub conversation_id: u64,
    /// The events appended (empty when the command changed nothing), or for a retried
    /// client_msg_id, the original message's event.
    pub events: Vec<StoredEvent>,
    /// The conversation was opened by this command.
    pub opened: bool,
    /// A retry of a message already accepted: nothing was appended.
    pub duplicate: bool,
}

impl Committed {
    /// How many messages this command's read receipt marked read.
    pub fn messages_marked_read(&self) -> usize {
        self.events
            .iter()
            .filter_map(|event| event.decode().ok())
            .map(|event| match event {
                ConversationEvent::MessagesRead { message_ids, .. } => message_ids.len(),
                _ => 0,
            })
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] ConversationError),
    /// Nothing was written (or, after a failed commit, the outcome is unknown: a retry with the
    /// same client_msg_id finds the original if it was written).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for CommandError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            CommandError::Unavailable(error.to_string())
        } else {
            CommandError::Internal(error.to_string())
        }
    }
}

struct Job {
    intent: Intent,
    metadata: EventMetadata,
    reply: oneshot::Sender<Result<Committed, CommandError>>,
}

/// The handle callers use; cheap to clone.
#[derive(Clone)]
pub struct CommandBus {
    jobs: mpsc::Sender<Job>,
    head: watch::Receiver<u64>,
    committed: broadcast::Sender<CommittedBatch>,
}

impl CommandBus {
    /// Starts the appender task on the store.
    pub async fn start(store: EventStore, cache_capacity: usize) -> Result<Self, StoreError> {
        let head = store.head_position().await?;
        let (head_tx, head_rx) = watch::channel(head);
        let (jobs, queue) = mpsc::channel(MAX_BATCH * 4);
        let (committed, _) = broadcast::channel(COMMITTED_FEED_CAPACITY);
        let capacity = NonZeroUsize::new(cache_capacity).unwrap_or(NonZeroUsize::MIN);
        let feed = committed.clone();
        on_backend!(store, s => {
            tokio::spawn(Appender::new(s, capacity, head_tx, feed).run(queue));
        });
        Ok(CommandBus {
            jobs,
            head: head_rx,
            committed,
        })
    }

    /// Decides and appends; returns once the events are committed.
    pub async fn execute(
        &self,
        intent: Intent,
        metadata: EventMetadata,
    ) -> Result<Committed, CommandError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                intent,
                metadata,
                reply,
            })
            .await
            .map_err(|_| CommandError::Unavailable("the appender has stopped".into()))?;
        answer
            .await
            .map_err(|_| CommandError::Internal("the appender dropped the command".into()))?
    }

    /// The newest position this node has committed; changes wake projectors at once.
    pub fn committed_head(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    /// This node's batches as they commit, before the head moves: a subscriber can act on them
    /// without reading them back from the log. Only this node's commits; one that lags behind
    /// by more than the feed holds is told so (`Lagged`) and reads the log instead.
    pub fn committed_batches(&self) -> broadcast::Receiver<CommittedBatch> {
        self.committed.subscribe()
    }
}

/// A cached aggregate with the stream position it was folded to.
struct Folded {
    conversation: Conversation,
    sequence: u64,
    hash: String,
}

struct Appender<DB: Database> {
    store: SqlStore<DB>,
    cache: LruCache<u64, Folded>,
    /// The sequencer's next position after this node's last commit; None when unknown.
    expected_next_position: Option<u64>,
    last_recorded_at: i64,
    head: watch::Sender<u64>,
    committed: broadcast::Sender<CommittedBatch>,
    /// The next batch's transaction, being opened since the last one committed because more
    /// commands were waiting: its lock request queued behind that commit instead of starting
    /// after it.
    next_txn: Option<tokio::task::JoinHandle<Result<AppendTxn<DB>, StoreError>>>,
}

/// One job's outcome inside a batch, before commit.
enum Decided {
    Appended(Committed),
    Reply(Result<Committed, CommandError>),
}

/// Why a batch stopped before commit.
enum BatchError {
    Conflict,
    /// A command repeats a client_msg_id its sender already used in that conversation, and the
    /// batch had not looked it up: it runs again, looking every key up first.
    KeyTaken,
    Store(StoreError),
}

impl From<StoreError> for BatchError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict { .. } => BatchError::Conflict,
            other => BatchError::Store(other),
        }
    }
}

/// What a batch accumulates before it writes: events, and idempotency keys visible to later jobs
/// of the same batch.
#[derive(Default)]
struct Pending {
    /// The batch's events as readers see them (typed text in the clear).
    events: Vec<StoredEvent>,
    /// The same events as the log stores them (typed text sealed).
    stored: Vec<StoredEvent>,
    keys: HashMap<(String, u64, String), (u64, u64)>,
    /// Idempotency keys already in the database for this batch's senders: (conversation, position).
    known: HashMap<(String, u64, String), Vec<(u64, u64)>>,
    /// Users' active conversations as this batch has them (fetched, then kept up to date).
    active: HashMap<u64, Option<u64>>,
}

impl<DB> Appender<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    i64: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + for<'r> Decode<'r, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    fn new(
        store: SqlStore<DB>,
        capacity: NonZeroUsize,
        head: watch::Sender<u64>,
        committed: broadcast::Sender<CommittedBatch>,
    ) -> Self {
        Appender {
            store,
            cache: LruCache::new(capacity),
            expected_next_position: None,
            last_recorded_at: 0,
            head,
            committed,
            next_txn: None,
        }
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let jobs = std::mem::take(&mut batch);
            self.handle_batch(jobs, &queue).await;
        }
    }

    async fn handle_batch(&mut self, jobs: Vec<Job>, queue: &mpsc::Receiver<Job>) {
        let mut attempt = 0;
        let mut look_up_every_key = false;
        let outcome = loop {
            match self.try_batch(&jobs, queue, look_up_every_key).await {
                Err(BatchError::Conflict) if attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    self.forget_everything();
                }
                Err(BatchError::KeyTaken) if !look_up_every_key => look_up_every_key = true,
                other => break other,
            }
        };
        match outcome {
            Ok(decided) => {
                for (job, decided) in jobs.into_iter().zip(decided) {
                    let result = match decided {
                        Decided::Appended(committed) => Ok(committed),
                        Decided::Reply(result) => result,
                    };
                    // A caller that gave up does not undo a commit.
                    let _ = job.reply.send(result);
                }
            }
            Err(error) => {
                self.forget_everything();
                let error = match error {
                    BatchError::Conflict => CommandError::Internal(
                        "the conversation kept changing under concurrent writers".into(),
                    ),
                    BatchError::KeyTaken => CommandError::Internal(
                        "a client_msg_id was recorded that the batch did not find".into(),
                    ),
                    BatchError::Store(error) => {
                        tracing::error!(%error, "append batch failed");
                        CommandError::from(error)
                    }
                };
                for job in jobs {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn forget_everything(&mut self) {
        self.cache.clear();
        self.expected_next_position = None;
        self.next_txn = None;
    }

    async fn try_batch(
        &mut self,
        jobs: &[Job],
        queue: &mpsc::Receiver<Job>,
        look_up_every_key: bool,
    ) -> Result<Vec<Decided>, BatchError> {
        let opened = match self.next_txn.take() {
            Some(opening) => opening.await.ok().and_then(Result::ok),
            None => None,
        };
        let mut txn = match opened {
            Some(txn) => txn,
            None => self.store.begin_append().await?,
        };
        if self.expected_next_position != Some(txn.state.next_position) {
            // Another node (or a raw append) wrote since our last commit: cached folds may be stale.
            self.cache.clear();
        }
        let first_position = txn.state.next_position;
        let mut pending = match Self::prefetch(&mut txn, jobs, look_up_every_key).await {
            Ok(pending) => pending,
            Err(error) => {
                let _ = txn.rollback().await;
                return Err(error.into());
            }
        };
        let mut touched = Vec::new();
        let mut decided = Vec::with_capacity(jobs.len());
        for job in jobs {
            match self.decide(&mut txn, &mut pending, job).await {
                Ok(Decided::Appended(committed)) => {
                    touched.push(committed.conversation_id);
                    decided.push(Decided::Appended(committed));
                }
                Ok(other) => decided.push(other),
                Err(error) => {
                    let _ = txn.rollback().await;
                    return Err(error);
                }
            }
        }
        if !look_up_every_key
            && let Err(error) = self
                .answer_refused_retries(&mut txn, &mut pending, jobs, &mut decided)
                .await
        {
            let _ = txn.rollback().await;
            return Err(error.into());
        }
        let written = async {
            txn.insert_events(&pending.stored).await?;
            let keys: Vec<_> = pending
                .keys
                .iter()
                .map(
                    |((role, sender, client_msg_id), (conversation_id, position))| {
                        (
                            *conversation_id,
                            role.clone(),
                            *sender,
                            client_msg_id.clone(),
                            *position,
                        )
                    },
                )
                .collect();
            let keys_new = txn.insert_idempotency_many(&keys).await?;
            Ok::<_, StoreError>((txn, keys_new))
        }
        .await;
        let txn = match written {
            Ok((txn, true)) => txn,
            Ok((txn, false)) => {
                let _ = txn.rollback().await;
                // What was folded here was never committed.
                for id in touched {
                    self.cache.pop(&id);
                }
                return Err(BatchError::KeyTaken);
            }
            Err(error) => return Err(error.into()),
        };
        let next_position = txn.state.next_position;
        // With more commands waiting, the next batch's transaction opens now: its begin and its
        // lock request travel while this commit is flushed, and the lock is granted the moment
        // this one is released, so a busy appender spends two round trips less per batch. Idle,
        // it opens none, so no lock is held while there is nothing to write.
        if !queue.is_empty() {
            let store = self.store.clone();
            self.next_txn = Some(tokio::spawn(async move { store.begin_append().await }));
        }
        let committed = txn.commit().await;
        if let Err(error) = committed {
            self.next_txn = None;
            // The commit may or may not have happened: forget what we folded.
            for id in touched {
                self.cache.pop(&id);
            }
            return Err(error.into());
        }
        self.expected_next_position = Some(next_position);
        if next_position > first_position {
            if !pending.events.is_empty() {
                // No subscriber is not an error: the log holds the batch either way.
                let _ = self.committed.send(Arc::from(pending.events));
            }
            self.head.send_replace(next_position - 1);
        }
        Ok(decided)
    }

    /// What the batch's commands will look up, fetched in two queries instead of one per command:
    /// the senders' earlier client_msg_ids and the opening users' active conversations.
    ///
    /// A command naming its conversation has its client_msg_id looked up only with
    /// `look_up_every_key`: its key is recorded under that conversation, whose primary key refuses
    /// a repeat when the batch writes its keys, and the batch then runs again with every key
    /// looked up. A retry is rare, so most batches save this round trip. A command that opens or
    /// continues a conversation is always looked up: its original may be in another one.
    async fn prefetch(
        txn: &mut AppendTxn<DB>,
        jobs: &[Job],
        look_up_every_key: bool,
    ) -> Result<Pending, StoreError> {
        let mut pending = Pending::default();
        let keys: Vec<(String, u64, String)> = jobs
            .iter()
            .filter(|job| look_up_every_key || matches!(job.intent, Intent::OpenOrContinue { .. }))
            .filter_map(|job| {
                let actor = job.intent.actor();
                let client_msg_id = job.intent.client_msg_id()?;
                Some((
                    actor.role.as_str().to_string(),
                    actor.id,
                    client_msg_id.to_string(),
                ))
            })
            .collect();
        if !keys.is_empty() {
            for (role, sender, client_msg_id, conversation, position) in
                txn.find_idempotent_many(&keys).await?
            {
                pending
                    .known
                    .entry((role, sender, client_msg_id))
                    .or_default()
                    .push((conversation, position));
            }
        }
        let users: Vec<u64> = jobs
            .iter()
            .filter_map(|job| match &job.intent {
                Intent::OpenOrContinue { actor, .. } => Some(actor.id),
                Intent::On(..) => None,
            })
            .collect();
        if !users.is_empty() {
            let active = txn.active_conversations_of(&users).await?;
            for user in users {
                pending.active.insert(user, active.get(&user).copied());
            }
        }
        Ok(pending)
    }

    /// The user's active conversation as of this point of the batch.
    async fn active_of(
        txn: &mut AppendTxn<DB>,
        pending: &mut Pending,
        user_id: u64,
    ) -> Result<Option<u64>, StoreError> {
        if let Some(active) = pending.active.get(&user_id) {
            return Ok(*active);
        }
        let active = txn.active_conversation(user_id).await?;
        pending.active.insert(user_id, active);
        Ok(active)
    }

    async fn set_active(
        txn: &mut AppendTxn<DB>,
        pending: &mut Pending,
        user_id: u64,
        conversation_id: Option<u64>,
    ) -> Result<(), StoreError> {
        txn.set_active_conversation(user_id, conversation_id)
            .await?;
        pending.active.insert(user_id, conversation_id);
        Ok(())
    }

    async fn decide(
        &mut self,
        txn: &mut AppendTxn<DB>,
        pending: &mut Pending,
        job: &Job,
    ) -> Result<Decided, BatchError> {
        let actor = job.intent.actor().clone();
        let named_conversation = match &job.intent {
            Intent::On(id, _) => Some(*id),
            Intent::OpenOrContinue { .. } => None,
        };
        if let Some(client_msg_id) = job.intent.client_msg_id()
            && let Some(original) = self
                .find_original(txn, pending, named_conversation, &actor, client_msg_id)
                .await?
        {
            return Ok(Decided::Reply(Ok(original)));
        }

        let (conversation_id, command, opening) = match &job.intent {
            Intent::On(id, command) => (*id, command.clone(), false),
            Intent::OpenOrContinue { actor, message } => {
                match Self::active_of(txn, pending, actor.id).await? {
                    Some(id) => match message {
                        Some(message) => (
                            id,
                            ConversationCommand::SendMessage {
                                actor: actor.clone(),
                                message: message.clone(),
                            },
                            false,
                        ),
                        None => {
                            return Ok(Decided::Reply(Ok(Committed {
                                conversation_id: id,
                                events: Vec::new(),
                                opened: false,
                                duplicate: false,
                            })));
                        }
                    },
                    None => {
                        let id = txn.state.next_conversation_id;
                        let command = ConversationCommand::OpenConversation {
                            actor: actor.clone(),
                            conversation_id: id,
                            initial_message: message.clone(),
                        };
                        (id, command, true)
                    }
                }
            }
        };

        let mut folded = self.load(txn, conversation_id).await?;
        let other_active_conversation = match (&command, folded.conversation.status()) {
            (ConversationCommand::OpenConversation { .. }, _) => {
                Self::active_of(txn, pending, actor.id).await?
            }
            (_, Some(ConversationStatus::Closed)) => match folded.conversation.user_id() {
                Some(user_id) => Self::active_of(txn, pending, user_id)
                    .await?
                    .filter(|id| *id != conversation_id),
                None => None,
            },
            _ => None,
        };
        let services = ConversationServices {
            next_message_id: txn.state.next_message_id,
            other_active_conversation,
        };
        let prior_status = folded.conversation.status();
        let prior_sequence = folded.sequence;
        let sink = cqrs_es::event_sink::EventSink::default();
        // Decided in place, without a copy: the domain checks everything before it writes its
        // first event, so a refused command leaves the state as it was. If the batch fails
        // later, the whole cache is dropped.
        let decision =
            cqrs_es::Aggregate::handle(&mut folded.conversation, command, &services, &sink).await;
        let new_events = sink.collect().await;
        if let Err(rejected) = decision {
            self.cache.put(conversation_id, folded);
            return Ok(Decided::Reply(Err(rejected.into())));
        }
        if new_events.is_empty() {
            self.cache.put(conversation_id, folded);
            return Ok(Decided::Reply(Ok(Committed {
                conversation_id,
                events: Vec::new(),
                opened: false,
                duplicate: false,
            })));
        }

        let recorded_at = now_micros().max(self.last_recorded_at);
        self.last_recorded_at = recorded_at;
        let metadata = serde_json::to_string(&job.metadata)
            .map_err(|e| StoreError::Invalid(format!("metadata: {e}")))?;
        let mut rows = Vec::with_capacity(new_events.len());
        for event in &new_events {
            let (row, sealed) = txn
                .next_event(
                    conversation_id,
                    folded.sequence,
                    &folded.hash,
                    event,
                    &metadata,
                    recorded_at,
                )
                .await?;
            pending.stored.push(sealed);
            folded.sequence = row.sequence;
            folded.hash = row.hash.clone();
            let user_id = folded.conversation.user_id();
            Self::index(
                txn,
                pending,
                conversation_id,
                user_id,
                event,
                &row,
                prior_status,
            )
            .await?;
            rows.push(row);
        }
        if opening {
            txn.state.next_conversation_id = conversation_id + 1;
        }
        if folded.sequence / SNAPSHOT_EVERY > prior_sequence / SNAPSHOT_EVERY {
            let state = serde_json::to_string(&folded.conversation)
                .map_err(|e| StoreError::Invalid(format!("snapshot: {e}")))?;
            txn.save_snapshot(
                conversation_id,
                folded.sequence,
                &folded.hash,
                SNAPSHOT_FORMAT,
                &state,
            )
            .await?;
        }
        self.cache.put(conversation_id, folded);
        pending.events.extend(rows.iter().cloned());
        Ok(Decided::Appended(Committed {
            conversation_id,
            events: rows,
            opened: opening,
            duplicate: false,
        }))
    }

    /// Keeps the write-side indexes in step with one decided event.
    async fn index(
        txn: &mut AppendTxn<DB>,
        pending: &mut Pending,
        conversation_id: u64,
        user_id: Option<u64>,
        event: &ConversationEvent,
        row: &StoredEvent,
        prior_status: Option<ConversationStatus>,
    ) -> Result<(), StoreError> {
        match event {
            ConversationEvent::MessageSent {
                message_id,
                sender,
                client_msg_id,
                ..
            } => {
                txn.state.next_message_id = txn.state.next_message_id.max(message_id + 1);
                if let Some(client_msg_id) = client_msg_id {
                    pending.keys.insert(
                        (
                            sender.role.as_str().to_string(),
                            sender.id,
                            client_msg_id.clone(),
                        ),
                        (conversation_id, row.position),
                    );
                }
            }
            ConversationEvent::ConversationOpened { user, .. } => {
                Self::set_active(txn, pending, user.id, Some(conversation_id)).await?;
            }
            ConversationEvent::ConversationReopened { .. } => {
                if let Some(user_id) = user_id {
                    Self::set_active(txn, pending, user_id, Some(conversation_id)).await?;
                }
            }
            ConversationEvent::ConversationErased { .. } => {
                txn.destroy_data_key(conversation_id).await?;
            }
            ConversationEvent::ConversationClosed { .. }
            | ConversationEvent::ConversationArchived { .. }
                if prior_status == Some(ConversationStatus::Active) =>
            {
                if let Some(user_id) = user_id {
                    Self::set_active(txn, pending, user_id, None).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The fold of a conversation at its newest sequence, taken out of the cache (the caller puts
    /// it back) or folded from its stream, after its snapshot when it has one.
    async fn load(
        &mut self,
        txn: &mut AppendTxn<DB>,
        conversation_id: u64,
    ) -> Result<Folded, StoreError> {
        if let Some(folded) = self.cache.pop(&conversation_id) {
            return Ok(folded);
        }
        let mut folded = Folded {
            conversation: Conversation::default(),
            sequence: 0,
            hash: GENESIS_HASH.to_string(),
        };
        if let Some((sequence, hash, format, state)) = txn.snapshot(conversation_id).await?
            && format == SNAPSHOT_FORMAT
        {
            match serde_json::from_str::<Conversation>(&state) {
                Ok(conversation) => {
                    folded = Folded {
                        conversation,
                        sequence,
                        hash,
                    }
                }
                // A snapshot is only a shortcut: fold the whole stream instead.
                Err(error) => tracing::warn!(conversation_id, %error, "unreadable snapshot"),
            }
        }
        let stream = txn
            .read_stream(
                CONVERSATION_STREAM,
                &conversation_id.to_string(),
                folded.sequence,
            )
            .await?;
        for stored in stream {
            cqrs_es::Aggregate::apply(&mut folded.conversation, stored.decode()?);
            folded.sequence = stored.sequence;
            folded.hash = stored.hash;
        }
        Ok(folded)
    }

    /// A refused command naming its conversation may repeat one that was accepted (the
    /// conversation closed since), and its key was not looked up before the batch: the keys of
    /// all such commands are looked up in one query, and each original found answers its repeat.
    async fn answer_refused_retries(
        &mut self,
        txn: &mut AppendTxn<DB>,
        pending: &mut Pending,
        jobs: &[Job],
        decided: &mut [Decided],
    ) -> Result<(), StoreError> {
        let refused: Vec<(usize, u64, &str)> = jobs
            .iter()
            .zip(decided.iter())
            .enumerate()
            .filter_map(|(index, (job, decided))| match (&job.intent, decided) {
                (Intent::On(conversation_id, _), Decided::Reply(Err(_))) => {
                    Some((index, *conversation_id, job.intent.client_msg_id()?))
                }
                _ => None,
            })
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, u64, String)> = refused
            .iter()
            .map(|(index, _, client_msg_id)| {
                let actor = jobs[*index].intent.actor();
                (
                    actor.role.as_str().to_string(),
                    actor.id,
                    client_msg_id.to_string(),
                )
            })
            .collect();
        for (role, sender, client_msg_id, conversation, position) in
            txn.find_idempotent_many(&keys).await?
        {
            let sent = pending
                .known
                .entry((role, sender, client_msg_id))
                .or_default();
            if !sent.contains(&(conversation, position)) {
                sent.push((conversation, position));
            }
        }
        for (index, conversation_id, client_msg_id) in refused {
            let actor = jobs[index].intent.actor();
            if let Some(original) = self
                .find_original(txn, pending, Some(conversation_id), actor, client_msg_id)
                .await?
            {
                decided[index] = Decided::Reply(Ok(original));
            }
        }
        Ok(())
    }

    /// The message a sender already sent with this client_msg_id, if any.
    async fn find_original(
        &mut self,
        txn: &mut AppendTxn<DB>,
        pending: &Pending,
        conversation_id: Option<u64>,
        sender: &Actor,
        client_msg_id: &str,
    ) -> Result<Option<Committed>, StoreError> {
        let key = (
            sender.role.as_str().to_string(),
            sender.id,
            client_msg_id.to_string(),
        );
        let in_batch = pending
            .keys
            .get(&key)
            .filter(|(conversation, _)| conversation_id.is_none_or(|id| id == *conversation));
        let original = match in_batch {
            Some((_, position)) => pending
                .events
                .iter()
                .find(|e| e.position == *position)
                .cloned(),
            None => {
                let stored = pending.known.get(&key).and_then(|sent| {
                    sent.iter()
                        .filter(|(conversation, _)| {
                            conversation_id.is_none_or(|id| id == *conversation)
                        })
                        .map(|(_, position)| *position)
                        .max()
                });
                match stored {
                    Some(position) => txn.event_at(position).await?,
                    None => None,
                }
            }
        };
        let Some(original) = original else {
            return Ok(None);
        };
        let conversation_id = original
            .stream_id
            .parse()
            .map_err(|_| StoreError::Corrupt {
                position: original.position,
                reason: format!(
                    "stream id {:?} is not a conversation id",
                    original.stream_id
                ),
            })?;
        Ok(Some(Committed {
            conversation_id,
            events: vec![original],
            opened: false,
            duplicate: true,
        }))
    }
}
