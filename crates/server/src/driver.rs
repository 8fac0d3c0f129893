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
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use crossbeam_channel::RecvTimeoutError;
use raft::{Message, RawNode, Role};
use tokio::sync::oneshot;
use wal::{Wal, WriteBatch};

use crate::handle::{NodeStatus, ServerError};
use crate::inputs::{InputReceiver, PEER_QUEUE_MAX};
use crate::lessor::Lessor;
use crate::membership::{Membership, MembershipAnswer, MembershipRequest};
use crate::metrics::Metrics;
use crate::server_core::{Answer, CoreOptions, CoreParts, MembershipApply, ReadyIo, RequestId, ServerCore};
use crate::snapshot_worker::{FinishedSnapshot, SnapshotWorker};
use crate::transport::{PeerObservation, Transport, TRANSPORT_REPORTS_MAX};
use crate::wal_sync::SyncWorker;
use crate::watch::WatchHub;

/// Client inputs handled per loop turn at most before the loop processes a `Ready`
/// (batching bound; every waiting peer input is handled first).
const INPUTS_PER_TURN_MAX: usize = 4096;
pub use crate::server_core::{proposal_data, TOKEN_BYTES, WAITING_PROPOSALS_MAX};

/// Something for the Raft loop to do.
pub enum Input {
    /// A message from a peer.
    Peer(Message),
    /// What a network task saw about a peer (its handshake, a removal notice, whether it
    /// can be reached): the loop decides what changes ([`Membership::observe`]).
    PeerObserved(PeerObservation),
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
    /// The snapshot worker finished writing a snapshot file (a wake-up; the result is
    /// read from the worker in `maybe_snapshot`).
    SnapshotWritten,
    /// Stop the loop.
    Stop,
}

/// Whether the loop goes on after a batch of inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
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
    /// Writes the log snapshots off the Raft thread.
    pub snapshot_worker: SnapshotWorker,
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

/// The Raft loop's state: the [`ServerCore`] and the I/O around it. Run it on its own
/// thread with [`Driver::run`].
pub struct Driver {
    core: ServerCore,
    transport: Transport,
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
    tick_interval: Duration,
    request_timeout_ticks: u64,
    /// Writes waiting for their answer, by request id. Invariant: every id here is waiting
    /// in the core (or its answer is in the core's answers).
    writes: HashMap<RequestId, oneshot::Sender<Result<kv::Response, ServerError>>>,
    /// Linearizable-read barriers waiting for their answer, by request id.
    reads: HashMap<RequestId, oneshot::Sender<Result<(), ServerError>>>,
    next_request: RequestId,
    /// Latest Raft state as JSON for the dashboard (`/api/state`, `/api/events`).
    introspection: tokio::sync::watch::Sender<Arc<serde_json::Value>>,
    last_introspection: Instant,
    last_introspected: (u64, u64, u64, u64, u64),
    next_size_tick: u64,
    membership: Membership,
    sync_worker: SyncWorker,
    /// Highest persist sequence handed to the sync worker.
    requested_sequence: u64,
    /// Inputs handled this loop turn: more than one means load, so the fsync goes to the
    /// sync worker and overlaps the next turns.
    inputs_this_turn: usize,
    /// The leader and arrival time of the last heartbeat (for the heartbeat-gap metric).
    last_heartbeat: Option<(u64, Instant)>,
    /// Set while the disk is full (see [`DiskFull`]).
    disk_full: Option<DiskFull>,
    /// When a snapshot that did not fit on the disk is tried again, and the backoff.
    snapshot_retry: (Option<Instant>, Backoff),
    /// Writes the log snapshot file from a read view (one at a time), off this thread.
    snapshot_worker: SnapshotWorker,
}

impl Driver {
    /// A loop over `node` whose state machine is `store`; it publishes the store's read
    /// views to `views`.
    pub fn new(
        node: RawNode<Wal>,
        (store, views): (kv::Store, Arc<crate::read_view::StoreViews>),
        outputs: DriverOutputs,
        options: DriverOptions,
        token_seed: u64,
    ) -> Driver {
        let DriverOutputs {
            transport,
            metrics,
            status,
            introspection,
            watch_hub,
            lessor,
            sync_worker,
            membership,
            snapshot_worker,
        } = outputs;
        assert!(options.tick_interval > Duration::ZERO, "a tick takes time");
        let parts = CoreParts {
            store,
            views,
            metrics: metrics.clone(),
            lessor,
            watch_hub,
            clock: crate::server_core::wall_clock(),
        };
        let core_options = CoreOptions {
            request_timeout_ticks: options.request_timeout_ticks,
            compaction: options.compaction,
            warning_apply_duration: options.warning_apply_duration,
        };
        Driver {
            core: ServerCore::new(node, parts, core_options, token_seed),
            transport,
            metrics,
            status,
            tick_interval: options.tick_interval,
            request_timeout_ticks: options.request_timeout_ticks,
            writes: HashMap::new(),
            reads: HashMap::new(),
            next_request: 1,
            introspection,
            last_introspection: Instant::now(),
            last_introspected: (0, 0, 0, 0, 0),
            next_size_tick: 0,
            membership,
            sync_worker,
            requested_sequence: 0,
            inputs_this_turn: 0,
            last_heartbeat: None,
            disk_full: None,
            snapshot_retry: (None, Backoff::new(SNAPSHOT_RETRY_FIRST, SNAPSHOT_RETRY_MAX)),
            snapshot_worker,
        }
    }

    /// Runs until [`Input::Stop`] or until every sender is gone. Returns an error if the
    /// WAL fails (the node must stop: it can no longer promise durability).
    pub fn run(mut self, inputs: InputReceiver) -> Result<(), wal::WalError> {
        crate::etcd_metrics::count_keys(&self.metrics.etcd, self.core.store());
        let mut next_tick = Instant::now() + self.tick_interval;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            self.inputs_this_turn = 0;
            match inputs.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if self.take_waiting_inputs(&inputs) == Flow::Stop {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick();
                next_tick = (next_tick + self.tick_interval).max(now);
            }
            self.core.issue_reads();
            self.collect_durable()?;
            self.retry_disk_full()?;
            self.process_ready()?;
            if self.membership.should_stop(self.core.ticks()) {
                return Ok(()); // "this member has been removed from the cluster" (logged on apply)
            }
        }
    }

    /// Handles every waiting peer input (votes, acknowledgements, heartbeats, wake-ups) and
    /// the transport's reports, then at most [`INPUTS_PER_TURN_MAX`] client inputs: clients
    /// never delay peers.
    fn take_waiting_inputs(&mut self, inputs: &InputReceiver) -> Flow {
        for _ in 0..TRANSPORT_REPORTS_MAX {
            let Some(observation) = self.transport.next_report() else { break };
            self.handle(Input::PeerObserved(observation));
        }
        for _ in 0..PEER_QUEUE_MAX {
            match inputs.try_recv_peer() {
                Some(Input::Stop) => return Flow::Stop,
                Some(input) => self.handle(input),
                None => break,
            }
        }
        for _ in 0..INPUTS_PER_TURN_MAX {
            match inputs.try_recv_client() {
                Some(input) => self.handle(input),
                None => break,
            }
        }
        Flow::Continue
    }

    /// Counts a heartbeat and keeps the largest gap between two from the same leader.
    fn note_heartbeat(&mut self, message: &Message) {
        if !matches!(message.body, raft::MessageBody::Heartbeat { .. }) {
            return;
        }
        let now = Instant::now();
        self.metrics.heartbeats_received.inc();
        if let Some((leader, at)) = self.last_heartbeat {
            if leader == message.from {
                let gap_microseconds = i64::try_from(now.duration_since(at).as_micros()).unwrap_or(i64::MAX);
                if gap_microseconds > self.metrics.heartbeat_gap_max_microseconds.get() {
                    self.metrics.heartbeat_gap_max_microseconds.set(gap_microseconds);
                }
            }
        }
        self.last_heartbeat = Some((message.from, now));
    }

    fn handle(&mut self, input: Input) {
        if !matches!(input, Input::Synced | Input::SnapshotWritten | Input::PeerObserved(_)) {
            self.inputs_this_turn += 1;
        }
        match input {
            Input::Peer(message) if self.disk_full.is_some() && would_store_entries(&message) => {
                // As if lost: the leader sends entries again once this member can write; a
                // follower's forwarded proposal times out (this leader hands over anyway).
                tracing::trace!(from = %format!("{:x}", message.from), "disk full: dropped entries");
            }
            Input::Peer(message) => {
                self.note_heartbeat(&message);
                self.core.step(message)
            }
            Input::Propose { data, respond } => {
                let request = self.next_request_id();
                self.writes.insert(request, respond);
                self.core.propose(Some(request), data);
            }
            Input::Read { respond } => {
                let request = self.next_request_id();
                self.reads.insert(request, respond);
                self.core.read(request);
            }
            Input::Synced => {}          // read in `collect_durable`
            Input::SnapshotWritten => {} // read in `maybe_snapshot`
            Input::PeerObserved(observation) => self.membership.observe(observation),
            Input::Membership { request, respond } => {
                let deadline_tick = self.core.ticks() + self.request_timeout_ticks;
                let (node, store) = self.core.node_mut_and_store();
                self.membership.handle(node, store, request, respond, deadline_tick);
            }
            Input::AdvanceTicks { ticks } => self.core.advance_election_clock(ticks),
            Input::Stop => unreachable!("handled by the loop"),
        }
    }

    fn next_request_id(&mut self) -> RequestId {
        let request = self.next_request;
        self.next_request += 1;
        request
    }

    /// Hands the core's answers to the clients waiting for them.
    fn deliver_answers(&mut self) {
        for (request, answer) in self.core.take_answers() {
            match answer {
                Answer::Write(result) => {
                    if let Some(respond) = self.writes.remove(&request) {
                        let _ = respond.send(result);
                    }
                }
                Answer::Read(result) => {
                    if let Some(respond) = self.reads.remove(&request) {
                        let _ = respond.send(result);
                    }
                }
            }
        }
        assert!(self.writes.len() <= WAITING_PROPOSALS_MAX + INPUTS_PER_TURN_MAX, "writes are bounded by the core");
    }

    fn tick(&mut self) {
        self.core.tick();
        let (ticks, leader) = (self.core.ticks(), self.core.node().leader());
        self.membership.on_tick(ticks, leader);
        if self.membership.has_learners_to_promote() {
            let (node, store) = self.core.node_mut_and_store();
            self.membership.promote_caught_up_learners(node, store);
        }
        for (peer, length) in self.transport.queue_lengths() {
            self.metrics.peer_queue_length.with_label_values(&[&format!("{peer:x}")]).set(length as i64);
        }
    }

    fn process_ready(&mut self) -> Result<(), wal::WalError> {
        self.push_peers(); // a snapshot restored by `retry_disk_full` may have changed them
        for _ in 0..crate::server_core::READIES_PER_TURN_MAX {
            let Some(ready) = self.core.next_ready() else { break };
            self.handle_ready(ready)?;
        }
        self.deliver_answers();
        self.maybe_snapshot();
        self.publish_status();
        self.maybe_publish_introspection();
        Ok(())
    }

    fn maybe_publish_introspection(&mut self) {
        let now = Instant::now();
        let node = self.core.node();
        let key = (node.term(), node.last_index(), node.commit_index(), node.leader(), node.applied_index());
        let changed = key != self.last_introspected;
        let elapsed = now.duration_since(self.last_introspection);
        if !(changed && elapsed >= INTROSPECTION_INTERVAL) && elapsed < Duration::from_secs(2) {
            return;
        }
        self.last_introspection = now;
        self.last_introspected = key;
        let _ = self.introspection.send(Arc::new(crate::introspection::raft_state(self.core.node())));
    }

    fn handle_ready(&mut self, ready: ReadyIo) -> Result<(), wal::WalError> {
        // Messages may leave before our own fsync: the core held back whatever must wait.
        for message in ready.messages {
            self.transport.send(message);
        }
        if let Some((batch, sequence)) = ready.persist {
            self.persist(batch, sequence)?;
        }
        self.core.finish_ready(ready.applying, &mut self.membership);
        // Before the next Ready's messages: they may go to a member this batch added.
        self.push_peers();
        self.status.revision.store(self.core.revision(), Ordering::Relaxed);
        Ok(())
    }

    /// Tells the transport the peer set, if applying (or a restore) changed it: the one
    /// place membership reaches the transport.
    fn push_peers(&mut self) {
        if let Some(peers) = self.membership.take_peer_change() {
            assert!(!peers.contains_key(&self.core.node().id()), "a node is not its own peer");
            self.transport.set_peers(&peers);
        }
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
        assert!(sequence > self.core.reported_durable_sequence(), "each Ready is persisted once, in order");
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
        self.core.wal_mut().append_batch(batch)?;
        let handle = self.core.wal_mut().detached_sync()?;
        self.sync_worker.request(sequence, handle);
        self.requested_sequence = sequence;
        Ok(())
    }

    /// Writes `batch` and syncs here, then reports `sequence` durable (and restores the
    /// snapshot it carries: one the store cannot read stops the node with an error rather
    /// than letting it diverge).
    fn write_durably(&mut self, batch: &WriteBatch, sequence: u64) -> Result<(), wal::WalError> {
        let started = Instant::now();
        self.core.wal_mut().write(batch)?;
        let write_seconds = started.elapsed().as_secs_f64();
        self.metrics.fsync_duration_seconds.observe(write_seconds);
        self.metrics.etcd.wal_fsync_duration_seconds.observe(write_seconds);
        if let Some(snapshot) = &batch.snapshot {
            let (data, index) = (&snapshot.data, snapshot.meta.index);
            if let Err(reason) = self.core.restore_snapshot(data, index, &mut self.membership) {
                tracing::error!(index, %reason, "stopping");
                return Err(wal::WalError::InvalidWrite(reason));
            }
        }
        self.core.on_persisted(sequence);
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
        self.core.refuse_writes(Some(ServerError::DiskFull));
        self.hand_leadership_away();
    }

    /// On a full disk the leader cannot store new entries: it transfers leadership to the
    /// voter most up to date, so the others go on taking writes. Repeated at every retry
    /// (a transfer is abandoned after an election timeout).
    fn hand_leadership_away(&mut self) {
        let node = self.core.node_mut();
        if node.role() != Role::Leader || node.transfer_target().is_some() {
            return;
        }
        let own_id = node.id();
        let voters = node.latest_conf_state().voters.clone();
        let target = voters
            .into_iter()
            .filter(|voter| *voter != own_id)
            .filter_map(|voter| node.progress(voter).map(|progress| (progress.match_index, voter)))
            .max();
        let Some((_, target)) = target else { return };
        match node.transfer_leader(target) {
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
        self.core.refuse_writes(None);
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
        if durable > self.core.reported_durable_sequence() {
            self.core.on_persisted(durable);
        }
        Ok(())
    }

    /// Installs the snapshot the worker finished, if any; then, if the compaction policy
    /// asks for one and none is in flight, starts the next on the worker from a read view
    /// (the file is written off this thread; see [`crate::snapshot_worker`]).
    fn maybe_snapshot(&mut self) {
        if let Some(finished) = self.snapshot_worker.take_finished() {
            self.finish_snapshot(finished);
        }
        if self.snapshot_worker.is_busy()
            || self.disk_full.is_some()
            || self.snapshot_retry.0.is_some_and(|retry_at| Instant::now() < retry_at)
        {
            return;
        }
        let Some((applied, conf)) = self.core.snapshot_due() else { return };
        let view = self.core.read_view();
        match self.core.wal_mut().snapshot_writer(applied, conf) {
            Ok(Some(writer)) => match self.snapshot_worker.start(writer, view) {
                Ok(()) => assert!(self.snapshot_worker.is_busy(), "a snapshot is in flight"),
                Err(error) => tracing::error!(%error, "cannot start the snapshot thread; will retry"),
            },
            // The log's snapshot is already at or past `applied` (one from the leader).
            Ok(None) => self.core.snapshot_taken(applied),
            Err(error) => tracing::error!(%error, "snapshot failed; will retry"),
        }
    }

    /// Installs a snapshot the worker wrote (a short step: rename, marker record, sync), or
    /// discards it: on a full disk (its space is freed; snapshots wait until writes resume)
    /// or when the log moved past it meanwhile. A snapshot that does not fit on the disk
    /// keeps the old one and is tried again with a backoff.
    fn finish_snapshot(&mut self, finished: FinishedSnapshot) {
        let FinishedSnapshot { index, started, result } = finished;
        let installed = match result {
            Ok(prepared) if self.disk_full.is_some() => {
                prepared.discard();
                return;
            }
            Ok(prepared) => self.core.wal_mut().install_snapshot(prepared),
            Err(error) => Err(error),
        };
        match installed {
            Ok(wal::SnapshotInstall::Installed) => {
                self.snapshot_retry.0 = None;
                self.snapshot_retry.1.reset();
                self.core.snapshot_taken(index);
                self.metrics.etcd.backend_snapshot_duration_seconds.observe(started.elapsed().as_secs_f64());
                let elapsed_ms = started.elapsed().as_millis() as u64;
                tracing::info!(index, elapsed_ms, "snapshot taken, log compacted");
            }
            Ok(wal::SnapshotInstall::Discarded { reason }) => {
                tracing::info!(index, %reason, "snapshot discarded: the log moved past it");
            }
            Err(error) => {
                // Any failure keeps the old snapshot; the next attempt waits (a failing disk
                // does not start a snapshot thread every turn).
                let wait = self.snapshot_retry.1.next_wait();
                self.snapshot_retry.0 = Some(Instant::now() + wait);
                let retry_ms = wait.as_millis() as u64;
                if error.is_no_space() {
                    tracing::error!(%error, retry_ms, "snapshot does not fit on the disk; the old one is kept, will retry");
                } else {
                    tracing::error!(%error, retry_ms, "snapshot failed; the old one is kept, will retry");
                }
            }
        }
    }

    fn publish_status(&mut self) {
        let node = self.core.node();
        let hard_state = node.hard_state();
        let applied_index = node.applied_index();
        self.status.term.store(hard_state.term, Ordering::Relaxed);
        self.status.leader.store(node.leader(), Ordering::Relaxed);
        self.status.commit_index.store(hard_state.commit, Ordering::Relaxed);
        self.status.applied_index.store(applied_index, Ordering::Relaxed);
        if self.core.ticks() >= self.next_size_tick {
            self.next_size_tick = self.core.ticks() + 50;
            // The data directory's size is sampled off this thread (see `sample_data_size`).
            let size = self.status.db_size_bytes.load(Ordering::Relaxed).max(0) as u64;
            crate::etcd_metrics::set_store_sizes(&self.metrics.etcd, size, self.core.store());
        }
        let is_leader = self.core.soft_state().role == Role::Leader;
        let etcd = &self.metrics.etcd;
        etcd.set_raft_state(node.leader(), is_leader, hard_state.commit, applied_index);
        etcd.is_learner.set(i64::from(node.learners().contains(&node.id())));
        etcd.proposals_pending.set(self.core.waiting_proposals() as i64);
        self.metrics.term.set(hard_state.term as i64);
        self.metrics.commit_index.set(hard_state.commit as i64);
        self.metrics.applied_index.set(applied_index as i64);
        self.metrics.apply_lag_entries.set(hard_state.commit.saturating_sub(applied_index) as i64);
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

/// The server's membership applies committed changes to its member table, its peer set
/// and its waiting requests (the loop hands the peer set to the transport afterwards,
/// see `Driver::push_peers`).
impl MembershipApply for Membership {
    fn apply_config(&mut self, store: &mut kv::Store, entry: &raft::Entry) {
        self.apply_entry(store, entry);
    }

    fn member_updated(&mut self, store: &kv::Store, id: u64) {
        self.apply_update(store, id);
    }

    fn restored(&mut self, store: &kv::Store) {
        self.after_restore(store);
    }
}

/// Samples the size of the WAL directory into `status` every `interval`, on a blocking
/// task: walking a directory is slow I/O that must not run on the Raft thread. Ends once
/// the node's status is dropped (the node stopped).
pub fn sample_data_size(directory: std::path::PathBuf, status: &Arc<SharedStatus>, interval: Duration) {
    assert!(interval > Duration::ZERO, "a sampling interval takes time");
    let status = Arc::downgrade(status);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(status) = status.upgrade() else { return };
            let directory = directory.clone();
            let measured = tokio::task::spawn_blocking(move || crate::introspection::directory_size_bytes(&directory));
            let Ok(size_bytes) = measured.await else { return };
            status.db_size_bytes.store(i64::try_from(size_bytes).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
    });
}
