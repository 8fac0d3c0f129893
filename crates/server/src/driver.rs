//! The Raft loop: one thread that owns the core, the WAL and the state machine, and runs
//! the driver cycle: inputs → `Ready` → send → append to the WAL → apply → answer clients.
//!
//! The fsync runs on its own thread ([`crate::wal_sync`]): while the disk syncs, the loop
//! goes on taking proposals and peer messages, sending appends and applying; each sync
//! covers every append made before it started (group commit), and the core learns what
//! is durable through `on_persisted`. The core holds back every message that must wait
//! for durability (votes, append acknowledgements) and applies only locally durable
//! entries, so nothing is acknowledged before it is on disk.
//!
//! A full disk (`ENOSPC` on a WAL append or a snapshot write) does not stop the node
//! (see [`DiskFull`]): the batch the disk had no room for, and every later one, wait in
//! order and are written again with a bounded exponential backoff; the core is told
//! nothing is durable until they are, so it keeps holding back votes and append
//! acknowledgements. Meanwhile this member refuses client writes, drops incoming entries
//! (the leader sends them again later), and a leader hands leadership to a follower.
//! Once a retry succeeds everything continues with exactly the entries it had.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use raft::{EntryKind, Message, RawNode, ReadState, Ready, Role, SoftState};
use tokio::sync::{oneshot, RwLock};
use wal::{Wal, WriteBatch};

use crate::handle::{NodeStatus, ServerError};
use crate::lessor::{LeaseTimes, Lessor};
use crate::membership::{Membership, MembershipAnswer, MembershipRequest};
use crate::metrics::Metrics;
use crate::transport::Transport;
use crate::wal_sync::SyncWorker;
use crate::watch::WatchHub;

/// Inputs handled per loop turn at most before the loop processes a `Ready` (batching bound).
const INPUTS_PER_TURN_MAX: usize = 4096;
/// Client proposals waiting for their entry to apply, at most.
pub const WAITING_PROPOSALS_MAX: usize = 65_536;
/// Bytes of the proposal token that prefixes every command in the log.
pub const TOKEN_BYTES: usize = 8;

/// The data of the log entry that carries `command`, with room for the proposal token.
pub fn proposal_data(command: &kv::Command) -> BytesMut {
    command.encode_after_prefix(TOKEN_BYTES)
}

/// Most ticks one [`Input::AdvanceTicks`] moves the election clock.
const ADVANCE_TICKS_MAX: u32 = 1 << 16;

/// Something for the Raft loop to do.
pub enum Input {
    /// A message from a peer.
    Peer(Message),
    /// A client write: replicate a command and answer with the state machine's result.
    Propose {
        /// The log entry's data: [`TOKEN_BYTES`] of room for the proposal token, then the
        /// encoded command (see [`proposal_data`]; encoded by the sender, off this loop).
        data: BytesMut,
        /// Where the answer goes.
        respond: oneshot::Sender<Result<kv::Response, ServerError>>,
    },
    /// A linearizable-read barrier (ReadIndex, R7).
    Read {
        /// Answered once the store has applied the read index.
        respond: oneshot::Sender<Result<(), ServerError>>,
    },
    /// The WAL sync worker made more data durable (a wake-up; the sequence is read from
    /// the worker).
    Synced,
    /// A membership change or leader transfer (see [`crate::membership`]).
    Membership {
        /// What to change.
        request: MembershipRequest,
        /// Answered once the change applied on this node (or the transfer completed).
        respond: oneshot::Sender<MembershipAnswer>,
    },
    /// `--initial-election-tick-advance` once peers answered (etcd's `adjustTicks`): moves
    /// the election clock `ticks` forward, if no leader has been heard of yet.
    AdvanceTicks {
        /// Ticks to advance (at most an election timeout).
        ticks: u32,
    },
    /// Stop the loop.
    Stop,
}

/// The node's status, readable from any thread.
#[derive(Default)]
pub struct SharedStatus {
    /// Member id.
    pub member_id: u64,
    /// Cluster id.
    pub cluster_id: u64,
    /// Known leader.
    pub leader: AtomicU64,
    /// Term.
    pub term: AtomicU64,
    /// Commit index.
    pub commit_index: AtomicU64,
    /// Applied index.
    pub applied_index: AtomicU64,
    /// Store revision.
    pub revision: AtomicI64,
    /// Bytes of WAL data on disk (approximate).
    pub db_size_bytes: AtomicI64,
}

impl SharedStatus {
    /// A plain copy.
    pub fn load(&self) -> NodeStatus {
        NodeStatus {
            member_id: self.member_id,
            cluster_id: self.cluster_id,
            leader: self.leader.load(Ordering::Relaxed),
            term: self.term.load(Ordering::Relaxed),
            commit_index: self.commit_index.load(Ordering::Relaxed),
            applied_index: self.applied_index.load(Ordering::Relaxed),
            revision: self.revision.load(Ordering::Relaxed),
            db_size_bytes: self.db_size_bytes.load(Ordering::Relaxed),
            is_learner: false,
        }
    }
}

struct Waiter<T> {
    respond: oneshot::Sender<Result<T, ServerError>>,
    deadline_tick: u64,
}

/// ReadIndex requests: queued (not yet asked), in flight (asked), waiting for apply.
#[derive(Default)]
struct Reads {
    queued: Vec<Waiter<()>>,
    in_flight: HashMap<u64, (Instant, Vec<Waiter<()>>)>,
    waiting_for_apply: Vec<(u64, Vec<Waiter<()>>)>,
    next_context: u64,
}

/// First wait before writing again after the disk was full; doubles up to
/// [`DISK_FULL_RETRY_MAX`].
const DISK_FULL_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest wait between two write attempts on a full disk.
const DISK_FULL_RETRY_MAX: Duration = Duration::from_secs(2);
/// First wait before the next snapshot attempt after one did not fit; doubles up to
/// [`SNAPSHOT_RETRY_MAX`].
const SNAPSHOT_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two snapshot attempts that do not fit on the disk.
const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(30);

/// The error a client write gets from a member whose disk is full (gRPC
/// `RESOURCE_EXHAUSTED`, "etcdserver: no space left on device"; not the quota's error,
/// which compaction cures); the log names the full file system.
fn disk_full_error() -> ServerError {
    ServerError::DiskFull
}

/// A bounded exponential backoff: waits double from `first` up to `max`.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(first: Duration, max: Duration) -> Backoff {
        assert!(first > Duration::ZERO && first <= max, "a backoff waits, boundedly");
        Backoff { first, max, next: first }
    }

    /// The wait before the next attempt; the one after is twice as long, at most `max`.
    fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

/// The WAL could not write for lack of space: what waits to be written again.
///
/// Invariants: `batches` holds, oldest first, every persist batch handed out by the core
/// since (and including) the one that failed, with strictly increasing sequences, none
/// reported durable; while this exists, no batch is written or handed to the sync
/// worker except by [`Driver::retry_disk_full`], in order.
struct DiskFull {
    batches: VecDeque<(WriteBatch, u64)>,
    retry_at: Instant,
    backoff: Backoff,
    since: Instant,
    attempts: u64,
}

impl DiskFull {
    /// Queues the batch of persist sequence `sequence`. A batch of only a hard state is
    /// merged into the last one (it replaces that one's hard state and takes its
    /// sequence: writing it covers both), so elections and commit updates while the
    /// disk is full do not grow the queue.
    fn push(&mut self, batch: WriteBatch, sequence: u64) {
        let last = self.batches.back_mut().expect("a full disk has a batch waiting");
        assert!(last.1 < sequence, "persist sequences increase");
        if batch.snapshot.is_none() && batch.entries.is_empty() {
            if batch.hard_state.is_some() {
                last.0.hard_state = batch.hard_state;
            }
            last.1 = sequence;
            return;
        }
        self.batches.push_back((batch, sequence));
    }
}

/// Least time between two introspection updates.
const INTROSPECTION_INTERVAL: Duration = Duration::from_millis(100);

/// Where the loop reports to: peers, metrics, status readers, the dashboard.
pub struct DriverOutputs {
    /// Peer transport.
    pub transport: Transport,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Status for services.
    pub status: Arc<SharedStatus>,
    /// Raft state as JSON for the dashboard.
    pub introspection: tokio::sync::watch::Sender<Arc<serde_json::Value>>,
    /// Where applied events go, for watchers.
    pub watch_hub: WatchHub,
    /// Lease deadlines, refreshed every tick; expired leases are revoked through the log.
    pub lessor: Arc<Lessor>,
    /// Membership changes: checks, waiting requests, member table and transport updates.
    pub membership: Membership,
    /// The thread that fsyncs the WAL.
    pub sync_worker: SyncWorker,
}

/// Settings of the loop.
pub struct DriverOptions {
    /// Wall time of one Raft tick.
    pub tick_interval: Duration,
    /// Ticks a client request may wait.
    pub request_timeout_ticks: u64,
    /// When to snapshot and compact the log.
    pub compaction: raft::CompactionPolicy,
    /// Applying one entry longer than this logs a warning
    /// (`--experimental-warning-apply-duration`, etcd: 100 ms).
    pub warning_apply_duration: Duration,
}

/// The Raft loop's state. Run it on its own thread with [`Driver::run`].
pub struct Driver {
    node: RawNode<Wal>,
    store: Arc<RwLock<kv::Store>>,
    transport: Transport,
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
    options: DriverOptions,
    proposals: HashMap<u64, Waiter<kv::Response>>,
    reads: Reads,
    next_token: u64,
    ticks: u64,
    last_snapshot_index: u64,
    soft_state: SoftState,
    /// Latest Raft state as JSON for the dashboard (`/api/state`, `/api/events`).
    introspection: tokio::sync::watch::Sender<Arc<serde_json::Value>>,
    last_introspection: Instant,
    last_introspected: (u64, u64, u64, u64, u64),
    next_size_tick: u64,
    applied_bytes_since_snapshot: u64,
    watch_hub: WatchHub,
    lessor: Arc<Lessor>,
    membership: Membership,
    sync_worker: SyncWorker,
    /// Highest persist sequence reported to the core with `on_persisted`.
    reported_durable_sequence: u64,
    /// Highest persist sequence handed to the sync worker.
    requested_sequence: u64,
    /// Inputs handled this loop turn: more than one means load, so the fsync goes to the
    /// sync worker and overlaps the next turns.
    inputs_this_turn: usize,
    /// Set while the disk is full (see [`DiskFull`]).
    disk_full: Option<DiskFull>,
    /// When a snapshot that did not fit on the disk is tried again, and the backoff.
    snapshot_retry: (Option<Instant>, Backoff),
}

impl Driver {
    /// A loop over `node` whose state machine is `store`.
    pub fn new(
        node: RawNode<Wal>,
        store: Arc<RwLock<kv::Store>>,
        outputs: DriverOutputs,
        options: DriverOptions,
        token_seed: u64,
    ) -> Driver {
        let DriverOutputs { transport, metrics, status, introspection, watch_hub, lessor, sync_worker, membership } =
            outputs;
        assert!(options.tick_interval > Duration::ZERO, "a tick takes time");
        let last_snapshot_index = node.storage().snapshot_meta().index;
        let soft_state = node.soft_state();
        Driver {
            node,
            store,
            transport,
            metrics,
            status,
            options,
            proposals: HashMap::new(),
            reads: Reads::default(),
            next_token: token_seed | 1,
            ticks: 0,
            last_snapshot_index,
            soft_state,
            introspection,
            last_introspection: Instant::now(),
            last_introspected: (0, 0, 0, 0, 0),
            next_size_tick: 0,
            applied_bytes_since_snapshot: 0,
            watch_hub,
            lessor,
            membership,
            sync_worker,
            reported_durable_sequence: 0,
            requested_sequence: 0,
            inputs_this_turn: 0,
            disk_full: None,
            snapshot_retry: (None, Backoff::new(SNAPSHOT_RETRY_FIRST, SNAPSHOT_RETRY_MAX)),
        }
    }

    /// Runs until [`Input::Stop`] or until every sender is gone. Returns an error if the
    /// WAL fails (the node must stop: it can no longer promise durability).
    pub fn run(mut self, inputs: Receiver<Input>) -> Result<(), wal::WalError> {
        crate::etcd_metrics::count_keys(&self.metrics.etcd, &self.store.blocking_read());
        let mut next_tick = Instant::now() + self.options.tick_interval;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            self.inputs_this_turn = 0;
            match inputs.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
            for _ in 0..INPUTS_PER_TURN_MAX {
                match inputs.try_recv() {
                    Ok(Input::Stop) => return Ok(()),
                    Ok(input) => self.handle(input),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick();
                next_tick = (next_tick + self.options.tick_interval).max(now);
            }
            self.issue_reads();
            self.collect_durable()?;
            self.retry_disk_full()?;
            self.process_ready()?;
            if self.membership.should_stop(self.ticks) {
                return Ok(()); // "this member has been removed from the cluster" (logged on apply)
            }
        }
    }

    fn handle(&mut self, input: Input) {
        if !matches!(input, Input::Synced) {
            self.inputs_this_turn += 1;
        }
        match input {
            Input::Peer(message) if self.disk_full.is_some() && would_store_entries(&message) => {
                // As if lost: the leader sends entries again once this member can write; a
                // follower's forwarded proposal times out (this leader hands over anyway).
                tracing::trace!(from = %format!("{:x}", message.from), "disk full: dropped entries");
            }
            Input::Peer(message) => {
                if let Err(error) = self.node.step(message) {
                    tracing::warn!(%error, "refused peer message");
                }
            }
            Input::Propose { data, respond } => self.propose(data, respond),
            Input::Read { respond } => {
                let deadline_tick = self.ticks + self.options.request_timeout_ticks;
                self.reads.queued.push(Waiter { respond, deadline_tick });
            }
            Input::Synced => {} // read in `collect_durable`
            Input::Membership { request, respond } => {
                let deadline_tick = self.ticks + self.options.request_timeout_ticks;
                let store = self.store.clone();
                let store = store.blocking_read();
                self.membership.handle(&mut self.node, &store, request, respond, deadline_tick);
            }
            Input::AdvanceTicks { ticks } => self.advance_election_clock(ticks),
            Input::Stop => unreachable!("handled by the loop"),
        }
    }

    fn propose(&mut self, mut data: BytesMut, respond: oneshot::Sender<Result<kv::Response, ServerError>>) {
        assert!(data.len() > TOKEN_BYTES, "a proposal carries a token and a command");
        if self.disk_full.is_some() {
            self.metrics.proposals_failed.inc();
            self.metrics.etcd.proposals_failed.inc();
            let _ = respond.send(Err(disk_full_error()));
            return;
        }
        if self.proposals.len() >= WAITING_PROPOSALS_MAX {
            let _ = respond.send(Err(ServerError::TooManyRequests));
            return;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(2);
        data[..TOKEN_BYTES].copy_from_slice(&token.to_le_bytes());
        self.metrics.proposals.inc();
        match self.node.propose(data.freeze()) {
            Ok(()) => {
                let deadline_tick = self.ticks + self.options.request_timeout_ticks;
                self.proposals.insert(token, Waiter { respond, deadline_tick });
            }
            Err(error) => {
                self.metrics.proposals_failed.inc();
                self.metrics.etcd.proposals_failed.inc();
                let error = match error {
                    raft::ProposeError::Busy => ServerError::TooManyRequests,
                    raft::ProposeError::TooLarge => ServerError::RequestTooLarge,
                    raft::ProposeError::NoLeader | raft::ProposeError::NotLeader { .. } => ServerError::NoLeader,
                    // Only membership proposals get these; a command never does.
                    raft::ProposeError::ConfChangePending | raft::ProposeError::InvalidConfChange(_) => {
                        unreachable!("a command proposal got a membership error: {error}")
                    }
                };
                let _ = respond.send(Err(error));
            }
        }
    }

    /// Ticks the core alone (no request deadlines, no lease work), as etcd's
    /// `advanceTicks`; skipped once a leader is known (its heartbeats keep the clock).
    fn advance_election_clock(&mut self, ticks: u32) {
        if self.node.leader() != raft::NO_NODE {
            return;
        }
        for _ in 0..ticks.min(ADVANCE_TICKS_MAX) {
            self.node.tick();
        }
    }

    fn tick(&mut self) {
        self.node.tick();
        self.ticks += 1;
        let now_tick = self.ticks;
        let expired: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, waiter)| waiter.deadline_tick <= now_tick)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            let waiter = self.proposals.remove(&token).expect("listed above");
            self.metrics.proposals_failed.inc();
            self.metrics.etcd.proposals_failed.inc();
            let _ = waiter.respond.send(Err(ServerError::Timeout));
        }
        let expired_reads: Vec<u64> = self
            .reads
            .in_flight
            .iter()
            .filter(|(_, (_, waiters))| waiters.iter().all(|waiter| waiter.deadline_tick <= now_tick))
            .map(|(context, _)| *context)
            .collect();
        for context in expired_reads {
            let (_, waiters) = self.reads.in_flight.remove(&context).expect("listed above");
            answer_all(waiters, || Err(ServerError::Timeout));
        }
        self.expire_leases();
        self.membership.on_tick(self.ticks, self.node.leader());
        if self.membership.has_learners_to_promote() {
            let store = self.store.clone();
            let store = store.blocking_read();
            self.membership.promote_caught_up_learners(&mut self.node, &store);
        }
        for (peer, length) in self.transport.queue_lengths() {
            self.metrics.peer_queue_length.with_label_values(&[&format!("{peer:x}")]).set(length as i64);
        }
    }

    /// Leader only: proposes a revoke for every lease past its deadline and, with
    /// `--experimental-enable-lease-checkpoint`, the checkpoints due (see [`crate::lessor`]).
    fn expire_leases(&mut self) {
        let leading = self.soft_state.role == Role::Leader;
        let leases: Vec<LeaseTimes> =
            if leading { self.store.blocking_read().leases().map(LeaseTimes::of).collect() } else { Vec::new() };
        let refreshed = self.lessor.refresh(leading, &leases, Instant::now());
        for id in refreshed.expired {
            tracing::info!(lease = %format!("{id:x}"), "lease expired; revoking");
            let (respond, _) = oneshot::channel();
            let revoke = proto::etcdserverpb::LeaseRevokeRequest { id };
            self.propose(proposal_data(&kv::Command::new(kv::Operation::LeaseRevoke(revoke))), respond);
        }
        if !refreshed.checkpoints.is_empty() {
            tracing::debug!(leases = refreshed.checkpoints.len(), "checkpointing lease remaining TTLs");
            let checkpoints = refreshed
                .checkpoints
                .into_iter()
                .map(|(id, remaining_ttl)| proto::etcdserverpb::LeaseCheckpoint { id, remaining_ttl })
                .collect();
            let request = proto::etcdserverpb::LeaseCheckpointRequest { checkpoints };
            let (respond, _) = oneshot::channel();
            self.propose(proposal_data(&kv::Command::new(kv::Operation::LeaseCheckpoint(request))), respond);
        }
    }

    fn issue_reads(&mut self) {
        if self.reads.queued.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.reads.queued);
        let context = self.reads.next_context;
        self.reads.next_context += 1;
        match self.node.read_index(Bytes::copy_from_slice(&context.to_le_bytes())) {
            Ok(()) => {
                self.reads.in_flight.insert(context, (Instant::now(), waiters));
            }
            Err(raft::ProposeError::Busy) => answer_all(waiters, || Err(ServerError::TooManyRequests)),
            Err(_) => answer_all(waiters, || Err(ServerError::NoLeader)),
        }
    }

    fn process_ready(&mut self) -> Result<(), wal::WalError> {
        for _ in 0..64 {
            if !self.node.has_ready() {
                break;
            }
            let ready = self.node.ready();
            self.handle_ready(ready)?;
        }
        self.maybe_snapshot();
        self.publish_status();
        self.maybe_publish_introspection();
        Ok(())
    }

    fn maybe_publish_introspection(&mut self) {
        let now = Instant::now();
        let key = (
            self.node.term(),
            self.node.last_index(),
            self.node.commit_index(),
            self.node.leader(),
            self.node.applied_index(),
        );
        let changed = key != self.last_introspected;
        let elapsed = now.duration_since(self.last_introspection);
        if !(changed && elapsed >= INTROSPECTION_INTERVAL) && elapsed < Duration::from_secs(2) {
            return;
        }
        self.last_introspection = now;
        self.last_introspected = key;
        let _ = self.introspection.send(Arc::new(crate::introspection::raft_state(&self.node)));
    }

    fn handle_ready(&mut self, ready: Ready) -> Result<(), wal::WalError> {
        if let Some(soft_state) = ready.soft_state {
            self.on_soft_state(soft_state);
        }
        // Messages may leave before our own fsync: the core held back whatever must wait.
        let must_persist = ready.must_persist();
        for message in ready.messages {
            self.transport.send(message);
        }
        if must_persist {
            let batch = WriteBatch { snapshot: ready.snapshot, entries: ready.entries, hard_state: ready.hard_state };
            self.persist(batch, ready.persist_sequence)?;
        }
        self.apply(ready.committed_entries);
        self.on_read_states(ready.read_states);
        Ok(())
    }

    /// Appends `batch` to the WAL and makes it durable: on the sync worker when the loop
    /// is under load (the fsync then overlaps the next turns, whose appends the next sync
    /// covers), here when this turn had at most one input and no sync is running (two
    /// thread hand-offs would only add latency to a lone request). A batch with a
    /// snapshot is always synced here (the WAL removes obsolete files once it is durable).
    /// An inline sync covers every earlier append, so reporting `sequence` at once is right.
    /// A snapshot from the leader is restored into the store once it is durable.
    ///
    /// If the disk has no room, the batch waits in [`DiskFull`] (as does every later
    /// one, in order) and nothing is reported durable; any other WAL error stops the node.
    fn persist(&mut self, batch: WriteBatch, sequence: u64) -> Result<(), wal::WalError> {
        assert!(sequence > self.reported_durable_sequence, "each Ready is persisted once, in order");
        if let Some(disk_full) = &mut self.disk_full {
            disk_full.push(batch, sequence);
            return Ok(());
        }
        match self.write_batch(&batch, sequence) {
            Err(error) if error.is_no_space() => {
                self.enter_disk_full(&error, batch, sequence);
                Ok(())
            }
            other => other,
        }
    }

    /// Writes `batch` (see [`Driver::persist`]); on `Ok` it is durable or handed to the
    /// sync worker. On a [`wal::WalError::NoSpace`] nothing of it is durable.
    fn write_batch(&mut self, batch: &WriteBatch, sequence: u64) -> Result<(), wal::WalError> {
        let worker_idle = self.sync_worker.durable_sequence() >= self.requested_sequence;
        if batch.snapshot.is_some() || (self.inputs_this_turn <= 1 && worker_idle) {
            return self.write_durably(batch, sequence);
        }
        self.node.storage_mut().append_batch(batch)?;
        let handle = self.node.storage_mut().detached_sync()?;
        self.sync_worker.request(sequence, handle);
        self.requested_sequence = sequence;
        Ok(())
    }

    /// Writes `batch` and syncs here, then reports `sequence` durable (and restores the
    /// snapshot it carries).
    fn write_durably(&mut self, batch: &WriteBatch, sequence: u64) -> Result<(), wal::WalError> {
        let started = Instant::now();
        self.node.storage_mut().write(batch)?;
        let write_seconds = started.elapsed().as_secs_f64();
        self.metrics.fsync_duration_seconds.observe(write_seconds);
        self.metrics.etcd.wal_fsync_duration_seconds.observe(write_seconds);
        if let Some(snapshot) = &batch.snapshot {
            self.restore_snapshot(&snapshot.data, snapshot.meta.index)?;
        }
        self.reported_durable_sequence = sequence;
        self.node.on_persisted(sequence);
        Ok(())
    }

    /// The disk had no room for the batch of `sequence`: keep it (and every later batch)
    /// to write again, refuse client writes, and hand leadership away.
    fn enter_disk_full(&mut self, error: &wal::WalError, batch: WriteBatch, sequence: u64) {
        tracing::error!(
            %error,
            "write-ahead log: no space left on device; this member stops accepting writes and retries \
             until space is freed (nothing acknowledged is lost)"
        );
        let now = Instant::now();
        let mut backoff = Backoff::new(DISK_FULL_RETRY_FIRST, DISK_FULL_RETRY_MAX);
        let retry_at = now + backoff.next_wait();
        let batches = VecDeque::from([(batch, sequence)]);
        self.disk_full = Some(DiskFull { batches, retry_at, backoff, since: now, attempts: 1 });
        self.hand_leadership_away();
    }

    /// On a full disk the leader cannot store new entries: it transfers leadership to the
    /// voter most up to date, so the others go on taking writes. Repeated at every retry
    /// (a transfer is abandoned after an election timeout).
    fn hand_leadership_away(&mut self) {
        if self.node.role() != Role::Leader || self.node.transfer_target().is_some() {
            return;
        }
        let own_id = self.node.id();
        let voters = self.node.latest_conf_state().voters.clone();
        let target = voters
            .into_iter()
            .filter(|voter| *voter != own_id)
            .filter_map(|voter| self.node.progress(voter).map(|progress| (progress.match_index, voter)))
            .max();
        let Some((_, target)) = target else { return };
        match self.node.transfer_leader(target) {
            Ok(()) => tracing::warn!(target = %format!("{target:x}"), "disk full: transferring leadership"),
            Err(error) => tracing::warn!(%error, "disk full: could not transfer leadership"),
        }
    }

    /// On a full disk, when the backoff is over: writes the waiting batches again, in
    /// order, each made durable before it is reported. Stops at the first that still
    /// does not fit (waiting longer next time); once all are written, the member takes
    /// writes again. Any other WAL error stops the node.
    fn retry_disk_full(&mut self) -> Result<(), wal::WalError> {
        let Some(disk_full) = &mut self.disk_full else { return Ok(()) };
        let now = Instant::now();
        if now < disk_full.retry_at {
            return Ok(());
        }
        disk_full.attempts += 1;
        while let Some((batch, sequence)) = self.disk_full.as_mut().and_then(|disk_full| disk_full.batches.pop_front())
        {
            if let Err(error) = self.write_durably(&batch, sequence) {
                if !error.is_no_space() {
                    return Err(error);
                }
                let disk_full = self.disk_full.as_mut().expect("still full");
                disk_full.batches.push_front((batch, sequence));
                disk_full.retry_at = now + disk_full.backoff.next_wait();
                tracing::debug!(%error, attempts = disk_full.attempts, "disk still full");
                self.hand_leadership_away();
                return Ok(());
            }
        }
        let disk_full = self.disk_full.take().expect("was full");
        let full_ms = disk_full.since.elapsed().as_millis() as u64;
        tracing::warn!(
            full_ms,
            attempts = disk_full.attempts,
            "write-ahead log: space available again; writes resumed, this member accepts writes again"
        );
        Ok(())
    }

    /// Tells the core what the sync worker made durable; a failed sync stops the node.
    fn collect_durable(&mut self) -> Result<(), wal::WalError> {
        if let Some(error) = self.sync_worker.take_failure() {
            return Err(error);
        }
        let durable = self.sync_worker.durable_sequence();
        if durable > self.reported_durable_sequence {
            self.reported_durable_sequence = durable;
            self.node.on_persisted(durable);
        }
        Ok(())
    }

    fn on_soft_state(&mut self, soft_state: SoftState) {
        if soft_state.leader != self.soft_state.leader {
            self.metrics.leader_changes.inc();
            if soft_state.leader != 0 {
                self.metrics.etcd.leader_changes.inc(); // etcd counts changes to a new leader
            }
            tracing::info!(leader = %format!("{:x}", soft_state.leader), term = soft_state.term, "leader changed");
            // Reads confirmed by the old leader can no longer be completed.
            for (_, (_, waiters)) in self.reads.in_flight.drain() {
                answer_all(waiters, || Err(ServerError::LeaderChanged));
            }
        }
        self.metrics.is_leader.set(i64::from(soft_state.role == Role::Leader));
        self.soft_state = soft_state;
    }

    /// Restores a snapshot from the leader into the store. One the store cannot read (or
    /// whose applied index disagrees with its metadata) stops the node with an error rather
    /// than letting it diverge; it is not a panic of the Raft thread.
    fn restore_snapshot(&mut self, data: &[u8], index: u64) -> Result<(), wal::WalError> {
        use raft::Snapshottable;
        let mut store = self.store.blocking_write();
        if let Err(error) = store.restore(data) {
            tracing::error!(index, %error, "snapshot from the leader cannot be restored; stopping");
            let reason = format!("snapshot from the leader at index {index} cannot be restored: {error}");
            return Err(wal::WalError::InvalidWrite(reason));
        }
        if store.applied_index() != index {
            let reason = format!("snapshot at index {index} holds a store applied to {}", store.applied_index());
            return Err(wal::WalError::InvalidWrite(reason));
        }
        self.last_snapshot_index = index;
        self.membership.after_restore(&store);
        self.watch_hub.publish_restored(store.current_revision());
        crate::etcd_metrics::count_keys(&self.metrics.etcd, &store);
        tracing::info!(index, "restored snapshot from leader");
        Ok(())
    }

    fn apply(&mut self, entries: Vec<raft::Entry>) {
        if entries.is_empty() {
            return;
        }
        let started = Instant::now();
        self.applied_bytes_since_snapshot += entries.iter().map(|entry| entry.data.len() as u64).sum::<u64>();
        let mut store = self.store.blocking_write();
        for entry in entries {
            if entry.kind == EntryKind::Config {
                self.membership.apply_entry(&mut store, &entry);
                continue;
            }
            if entry.kind != EntryKind::Normal || entry.data.len() < TOKEN_BYTES {
                store.advance_applied_index(entry.index);
                continue;
            }
            let token = u64::from_le_bytes(entry.data[..TOKEN_BYTES].try_into().expect("8 bytes"));
            let command = match kv::Command::decode_shared(entry.data.slice(TOKEN_BYTES..)) {
                Ok(command) => command,
                Err(error) => {
                    tracing::error!(index = entry.index, %error, "undecodable command in the log; skipped");
                    store.advance_applied_index(entry.index);
                    continue;
                }
            };
            let apply_started = Instant::now();
            let applied = crate::etcd_metrics::apply_counted(&self.metrics.etcd, &mut store, entry.index, &command);
            warn_if_slow(apply_started.elapsed(), self.options.warning_apply_duration, entry.index, &command);
            if let kv::Operation::MemberUpdate(update) = &command.operation {
                self.membership.apply_update(&store, update.id);
            }
            self.watch_hub.publish(applied.revision, applied.events);
            if let Some(waiter) = self.proposals.remove(&token) {
                let _ = waiter.respond.send(applied.result.map_err(ServerError::Kv));
            }
        }
        self.status.revision.store(store.current_revision(), Ordering::Relaxed);
        let applied_index = store.applied_index();
        drop(store);
        self.metrics.etcd.backend_commit_duration_seconds.observe(started.elapsed().as_secs_f64());
        self.release_reads(applied_index);
    }

    fn on_read_states(&mut self, read_states: Vec<ReadState>) {
        for read_state in read_states {
            let Ok(bytes) = <[u8; 8]>::try_from(read_state.context.as_ref()) else { continue };
            let context = u64::from_le_bytes(bytes);
            if let Some((started, waiters)) = self.reads.in_flight.remove(&context) {
                self.metrics.read_index_duration_seconds.observe(started.elapsed().as_secs_f64());
                self.reads.waiting_for_apply.push((read_state.index, waiters));
            }
        }
        let applied_index = self.node.applied_index();
        self.release_reads(applied_index);
    }

    fn release_reads(&mut self, applied_index: u64) {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads.waiting_for_apply)
            .into_iter()
            .partition(|(index, _)| *index <= applied_index);
        self.reads.waiting_for_apply = waiting;
        for (_, waiters) in ready {
            answer_all(waiters, || Ok(()));
        }
    }

    fn maybe_snapshot(&mut self) {
        use raft::Snapshottable;
        if self.disk_full.is_some() || self.snapshot_retry.0.is_some_and(|retry_at| Instant::now() < retry_at) {
            return;
        }
        let applied = self.node.applied_index();
        if !self.options.compaction.should_compact(applied, self.last_snapshot_index, self.applied_bytes_since_snapshot)
        {
            return;
        }
        let store = self.store.blocking_read();
        if Snapshottable::applied_index(&*store) != applied {
            return; // the store lags the core only transiently; try next turn
        }
        let conf = self.node.conf_state();
        let started = std::time::Instant::now();
        // Streamed from the store into the snapshot file: no serialized copy in memory.
        let compacted = self.node.storage_mut().compact_from(applied, conf, &*store);
        drop(store);
        match compacted {
            Ok(()) => {
                self.snapshot_retry.0 = None;
                self.snapshot_retry.1.reset();
                self.last_snapshot_index = applied;
                self.applied_bytes_since_snapshot = 0;
                self.metrics.snapshots_taken.inc();
                self.metrics.etcd.backend_snapshot_duration_seconds.observe(started.elapsed().as_secs_f64());
                let elapsed_ms = started.elapsed().as_millis() as u64;
                tracing::info!(index = applied, elapsed_ms, "snapshot taken, log compacted");
            }
            Err(error) if error.is_no_space() => {
                let wait = self.snapshot_retry.1.next_wait();
                self.snapshot_retry.0 = Some(Instant::now() + wait);
                let retry_ms = wait.as_millis() as u64;
                tracing::error!(%error, retry_ms, "snapshot does not fit on the disk; the old one is kept, will retry");
            }
            Err(error) => tracing::error!(%error, "snapshot failed; will retry"),
        }
    }

    fn publish_status(&mut self) {
        let hard_state = self.node.hard_state();
        self.status.term.store(hard_state.term, Ordering::Relaxed);
        self.status.leader.store(self.node.leader(), Ordering::Relaxed);
        self.status.commit_index.store(hard_state.commit, Ordering::Relaxed);
        self.status.applied_index.store(self.node.applied_index(), Ordering::Relaxed);
        if self.ticks >= self.next_size_tick {
            self.next_size_tick = self.ticks + 50;
            let size = crate::introspection::directory_size_bytes(self.node.storage().directory());
            self.status.db_size_bytes.store(size as i64, Ordering::Relaxed);
            crate::etcd_metrics::set_store_sizes(&self.metrics.etcd, size, &self.store.blocking_read());
        }
        let leader = self.node.leader();
        let is_leader = self.soft_state.role == Role::Leader;
        self.metrics.etcd.set_raft_state(leader, is_leader, hard_state.commit, self.node.applied_index());
        let is_learner = self.node.learners().contains(&self.node.id());
        self.metrics.etcd.is_learner.set(i64::from(is_learner));
        self.metrics.etcd.proposals_pending.set(self.proposals.len() as i64);
        self.metrics.term.set(hard_state.term as i64);
        self.metrics.commit_index.set(hard_state.commit as i64);
        self.metrics.applied_index.set(self.node.applied_index() as i64);
        self.metrics.apply_lag_entries.set(hard_state.commit.saturating_sub(self.node.applied_index()) as i64);
    }
}

/// True for a peer message that would make this node store entries or a snapshot:
/// entries from the leader, a snapshot chunk, proposals forwarded to this leader.
fn would_store_entries(message: &Message) -> bool {
    match &message.body {
        raft::MessageBody::Append { entries, .. } => !entries.is_empty(),
        raft::MessageBody::InstallSnapshot { .. } | raft::MessageBody::Propose { .. } => true,
        _ => false,
    }
}

/// etcd's "apply request took too long" warning.
fn warn_if_slow(took: Duration, expected: Duration, index: u64, command: &kv::Command) {
    if took <= expected || expected.is_zero() {
        return;
    }
    let request: String = format!("{:?}", command.operation).chars().take(200).collect();
    tracing::warn!(?took, expected_duration = ?expected, index, %request, "apply request took too long");
}

fn answer_all<T>(waiters: Vec<Waiter<T>>, answer: impl Fn() -> Result<T, ServerError>) {
    for waiter in waiters {
        let _ = waiter.respond.send(answer());
    }
}
