//! The server core: the deterministic part of a node, one level above the Raft core.
//!
//! It owns the Raft node (over the WAL), the state machine (`kv::Store`), the table of
//! client proposals waiting for their entry, the ReadIndex table, the lease timers and the
//! apply position. It takes inputs (a tick, a peer message, a proposal, a read, "this much
//! is durable") and returns what to do as values: messages to send, a batch to make
//! durable, answers for requests (by [`RequestId`]). It does no I/O of its own: it never
//! sends, never fsyncs, never reads the clock (time is passed in through [`Clock`]) and
//! draws no randomness. The I/O shell around it ([`crate::driver`] in a server) does the
//! writing, sending and answering; a simulator can drive the same core on simulated disks
//! and networks (not written yet: `crates/sim` still drives bare `RawNode`s).
//!
//! The cycle, once per loop turn (the shell's contract):
//! 1. feed inputs: [`ServerCore::step`], [`ServerCore::propose`], [`ServerCore::read`],
//!    [`ServerCore::tick`];
//! 2. [`ServerCore::issue_reads`] (one ReadIndex round for every read queued this turn);
//! 3. while [`ServerCore::next_ready`] gives a [`ReadyIo`]: send its messages (they may
//!    leave before the batch is durable: the Raft core held back whatever must wait), make
//!    its batch durable (and for a batch with a snapshot, [`ServerCore::restore_snapshot`]
//!    once it is), report durability with [`ServerCore::on_persisted`], then
//!    [`ServerCore::finish_ready`] (applies committed entries, completes reads);
//! 4. deliver [`ServerCore::take_answers`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use raft::{ConfState, EntryKind, Message, RawNode, ReadState, Role, SoftState};
use wal::{Wal, WriteBatch};

use crate::handle::ServerError;
use crate::lessor::{LeaseTimes, Lessor};
use crate::metrics::Metrics;
use crate::read_view::StoreViews;
use crate::watch::WatchHub;

/// Bytes of the proposal token that prefixes every command in the log.
pub const TOKEN_BYTES: usize = 8;
/// Client proposals waiting for their entry to apply, at most.
pub const WAITING_PROPOSALS_MAX: usize = 65_536;
/// Linearizable reads waiting (queued, asked or waiting for apply), at most.
pub const WAITING_READS_MAX: usize = 65_536;
/// Most ticks one [`ServerCore::advance_election_clock`] moves the election clock.
const ADVANCE_TICKS_MAX: u32 = 1 << 16;
/// Most `Ready`s handled in one turn before the shell goes back to its inputs.
pub const READIES_PER_TURN_MAX: usize = 64;

/// The data of the log entry that carries `command`, with room for the proposal token.
pub fn proposal_data(command: &kv::Command) -> BytesMut {
    command.encode_after_prefix(TOKEN_BYTES)
}

/// Names a request the shell waits to answer (chosen by the shell, unique among waiting ones).
pub type RequestId = u64;

/// The answer to a request.
#[derive(Debug)]
pub enum Answer {
    /// A write (proposal): the state machine's response, or why it failed.
    Write(Result<kv::Response, ServerError>),
    /// A linearizable-read barrier: the store has applied the read index, or why not.
    Read(Result<(), ServerError>),
}

/// Where the core's time comes from: the wall clock in a server, simulated time in the
/// simulator. The core reads it only to time lease deadlines and for metrics.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// The wall clock.
pub fn wall_clock() -> Clock {
    Arc::new(Instant::now)
}

/// Test-only: a deliberately broken server core, for the simulator's self-test
/// (`crates/server-sim`). Exists only with the `sabotage` cargo feature, which the
/// production build never enables: without it neither this type nor its hooks exist.
#[cfg(feature = "sabotage")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CoreSabotage {
    /// The correct core.
    #[default]
    None,
    /// A write is answered as soon as it is proposed, before its entry is durable, committed
    /// and applied (with the response of a speculative apply on a copy of the store).
    AcknowledgeBeforeDurable,
    /// A linearizable-read barrier is answered at once, without its ReadIndex round.
    ReadWithoutReadIndex,
}

/// Settings of the core.
pub struct CoreOptions {
    /// Ticks a client request may wait.
    pub request_timeout_ticks: u64,
    /// When to snapshot and compact the log.
    pub compaction: raft::CompactionPolicy,
    /// Applying one entry longer than this logs a warning
    /// (`--experimental-warning-apply-duration`, etcd: 100 ms).
    pub warning_apply_duration: Duration,
}

/// What applying committed membership changes does besides the store: the server's
/// [`crate::membership::Membership`] also updates its member table and peer transport and
/// answers waiting `member add/remove` requests.
pub trait MembershipApply {
    /// Applies the committed configuration entry `entry` (the member table lives in `store`).
    /// Must advance `store`'s applied index to `entry.index`.
    fn apply_config(&mut self, store: &mut kv::Store, entry: &raft::Entry);
    /// A committed member update of member `id` was applied to `store`.
    fn member_updated(&mut self, store: &kv::Store, id: u64);
    /// The store was replaced by a snapshot from the leader.
    fn restored(&mut self, store: &kv::Store);
}

/// The shared parts the core reports to (all in memory, no I/O).
pub struct CoreParts {
    /// The state machine. Only the core changes it (the apply loop owns the store).
    pub store: kv::Store,
    /// Where the core publishes a read view of `store` after every apply batch and
    /// restore, before it answers or tells watchers: readers never wait for apply.
    pub views: Arc<StoreViews>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Lease deadlines; expired leases are revoked through the log.
    pub lessor: Arc<Lessor>,
    /// Where applied events go, for watchers.
    pub watch_hub: WatchHub,
    /// Time.
    pub clock: Clock,
}

/// A request waiting for its answer.
///
/// Invariant: `deadline_tick` is `request_timeout_ticks` after the tick it arrived at.
struct Waiting {
    request: Option<RequestId>,
    deadline_tick: u64,
}

/// ReadIndex requests: queued (not yet asked), in flight (asked), waiting for apply.
///
/// Invariant: a read is in exactly one of the three places; their total is at most
/// [`WAITING_READS_MAX`].
#[derive(Default)]
struct Reads {
    queued: Vec<Waiting>,
    in_flight: HashMap<u64, (Instant, Vec<Waiting>)>,
    waiting_for_apply: Vec<(u64, Vec<Waiting>)>,
    next_context: u64,
    count: usize,
}

/// What one `Ready` asks the shell to do, and what the core does after it.
pub struct ReadyIo {
    /// Messages to send now.
    pub messages: Vec<Message>,
    /// What to make durable, and the persist sequence to report once it is.
    pub persist: Option<(WriteBatch, u64)>,
    /// Entries to apply and reads to complete: pass it to [`ServerCore::finish_ready`].
    pub applying: Applying,
}

/// The part of a `Ready` the core itself completes after the shell's I/O.
pub struct Applying {
    committed_entries: Vec<raft::Entry>,
    read_states: Vec<ReadState>,
}

/// The server core (see the module documentation).
pub struct ServerCore {
    node: RawNode<Wal>,
    parts: CoreParts,
    options: CoreOptions,
    /// Proposals by token (the first [`TOKEN_BYTES`] of the entry). Invariant: at most
    /// [`WAITING_PROPOSALS_MAX`].
    proposals: HashMap<u64, Waiting>,
    reads: Reads,
    /// Odd, so tokens never collide with 0 (entries without a waiting proposal).
    next_token: u64,
    ticks: u64,
    soft_state: SoftState,
    last_snapshot_index: u64,
    applied_bytes_since_snapshot: u64,
    /// Highest persist sequence reported with [`ServerCore::on_persisted`].
    reported_durable_sequence: u64,
    /// Set by the shell while this member must refuse writes (a full disk).
    writes_refused: Option<ServerError>,
    answers: Vec<(RequestId, Answer)>,
    /// The store's revision after the last apply or restore.
    revision: i64,
    /// Test-only deliberate bug (see [`CoreSabotage`]); `None` unless the simulator sets it.
    #[cfg(feature = "sabotage")]
    sabotage: CoreSabotage,
}

impl ServerCore {
    /// A core over `node` whose state machine is `parts.store`; proposal tokens start from
    /// `token_seed`.
    pub fn new(node: RawNode<Wal>, parts: CoreParts, options: CoreOptions, token_seed: u64) -> ServerCore {
        assert!(options.request_timeout_ticks > 0, "a request may wait at least a tick");
        let last_snapshot_index = node.storage().snapshot_meta().index;
        let soft_state = node.soft_state();
        let revision = parts.store.current_revision();
        parts.views.publish(&parts.store);
        ServerCore {
            node,
            parts,
            options,
            proposals: HashMap::new(),
            reads: Reads::default(),
            next_token: token_seed | 1,
            ticks: 0,
            soft_state,
            last_snapshot_index,
            applied_bytes_since_snapshot: 0,
            reported_durable_sequence: 0,
            writes_refused: None,
            answers: Vec::new(),
            revision,
            #[cfg(feature = "sabotage")]
            sabotage: CoreSabotage::None,
        }
    }

    /// Test-only: plants the deliberate bug `sabotage` (simulator self-tests alone).
    #[cfg(feature = "sabotage")]
    pub fn set_sabotage(&mut self, sabotage: CoreSabotage) {
        self.sabotage = sabotage;
    }

    /// Test-only: with [`CoreSabotage::AcknowledgeBeforeDurable`], the answer a write gets
    /// at once: its command applied to a copy of the store (nothing is durable yet).
    #[cfg(feature = "sabotage")]
    fn sabotaged_early_answer(&self, data: &[u8]) -> Option<Result<kv::Response, ServerError>> {
        if self.sabotage != CoreSabotage::AcknowledgeBeforeDurable {
            return None;
        }
        let command = kv::Command::decode(&data[TOKEN_BYTES..]).ok()?;
        let mut copy = self.parts.store.clone();
        let index = self.node.last_index().max(copy.applied_index()) + 1;
        Some(copy.apply(index, &command).result.map_err(ServerError::Kv))
    }

    /// The Raft node (read-only).
    pub fn node(&self) -> &RawNode<Wal> {
        &self.node
    }

    /// The Raft node, for the shell's membership requests and leader transfers.
    pub fn node_mut(&mut self) -> &mut RawNode<Wal> {
        &mut self.node
    }

    /// The WAL under the Raft node: the shell writes and syncs through it.
    pub fn wal_mut(&mut self) -> &mut Wal {
        self.node.storage_mut()
    }

    /// The state machine (the newest state; readers elsewhere use [`ServerCore::read_view`]).
    pub fn store(&self) -> &kv::Store {
        &self.parts.store
    }

    /// The newest published read view (equal to [`ServerCore::store`] between turns).
    pub fn read_view(&self) -> Arc<kv::Store> {
        let view = self.parts.views.latest();
        assert_eq!(view.applied_index(), self.parts.store.applied_index(), "the view is published after each change");
        view
    }

    /// The Raft node and the store, for membership requests (they read the member table).
    pub fn node_mut_and_store(&mut self) -> (&mut RawNode<Wal>, &kv::Store) {
        (&mut self.node, &self.parts.store)
    }

    /// Ticks so far.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Role, leader and term as of the last `Ready`.
    pub fn soft_state(&self) -> SoftState {
        self.soft_state
    }

    /// The store's revision after the last apply or restore (0 before either).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Proposals waiting for their entry to apply.
    pub fn waiting_proposals(&self) -> usize {
        self.proposals.len()
    }

    /// The persist sequence last reported durable.
    pub fn reported_durable_sequence(&self) -> u64 {
        self.reported_durable_sequence
    }

    /// While `Some`, every proposal (client or internal) fails with that error.
    pub fn refuse_writes(&mut self, error: Option<ServerError>) {
        self.writes_refused = error;
    }

    /// Answers produced since the last call, in order.
    pub fn take_answers(&mut self) -> Vec<(RequestId, Answer)> {
        std::mem::take(&mut self.answers)
    }

    /// A message from a peer.
    pub fn step(&mut self, message: Message) {
        if let Err(error) = self.node.step(message) {
            tracing::warn!(%error, "refused peer message");
        }
    }

    /// Proposes `data` (room for the token, then a command: see [`proposal_data`]); the
    /// answer goes to `request` once the entry applied here (`None`: nobody waits).
    pub fn propose(&mut self, request: Option<RequestId>, mut data: BytesMut) {
        assert!(data.len() > TOKEN_BYTES, "a proposal carries a token and a command");
        if let Some(error) = self.writes_refused.clone() {
            self.count_failed_proposal();
            self.answer_write(request, Err(error));
            return;
        }
        if self.proposals.len() >= WAITING_PROPOSALS_MAX {
            self.answer_write(request, Err(ServerError::TooManyRequests));
            return;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(2);
        assert!(token % 2 == 1, "tokens are odd");
        data[..TOKEN_BYTES].copy_from_slice(&token.to_le_bytes());
        self.parts.metrics.proposals.inc();
        #[cfg(feature = "sabotage")]
        let early_answer = self.sabotaged_early_answer(&data);
        match self.node.propose(data.freeze()) {
            Ok(()) => {
                #[cfg(feature = "sabotage")]
                let request = match early_answer {
                    Some(result) => {
                        self.answer_write(request, result);
                        None
                    }
                    None => request,
                };
                let deadline_tick = self.ticks + self.options.request_timeout_ticks;
                self.proposals.insert(token, Waiting { request, deadline_tick });
            }
            Err(error) => {
                self.count_failed_proposal();
                self.answer_write(request, Err(propose_error(error)));
            }
        }
    }

    /// A linearizable-read barrier (ReadIndex, R7): answered once the store applied the
    /// read index a confirmation round gave. Reads queued in one turn share one round.
    pub fn read(&mut self, request: RequestId) {
        #[cfg(feature = "sabotage")]
        if self.sabotage == CoreSabotage::ReadWithoutReadIndex {
            self.answers.push((request, Answer::Read(Ok(()))));
            return;
        }
        if self.reads.count >= WAITING_READS_MAX {
            self.answers.push((request, Answer::Read(Err(ServerError::TooManyRequests))));
            return;
        }
        let deadline_tick = self.ticks + self.options.request_timeout_ticks;
        self.reads.queued.push(Waiting { request: Some(request), deadline_tick });
        self.reads.count += 1;
    }

    /// One tick: the Raft core's clock, request deadlines, lease expiry and checkpoints.
    pub fn tick(&mut self) {
        self.node.tick();
        self.ticks += 1;
        self.expire_proposals();
        self.expire_reads();
        self.expire_leases();
    }

    /// Ticks the Raft core alone (no request deadlines, no lease work), as etcd's
    /// `advanceTicks`; skipped once a leader is known (its heartbeats keep the clock).
    pub fn advance_election_clock(&mut self, ticks: u32) {
        if self.node.leader() != raft::NO_NODE {
            return;
        }
        for _ in 0..ticks.min(ADVANCE_TICKS_MAX) {
            self.node.tick();
        }
    }

    fn expire_proposals(&mut self) {
        let now_tick = self.ticks;
        let expired: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(_, waiting)| waiting.deadline_tick <= now_tick)
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            let waiting = self.proposals.remove(&token).expect("listed above");
            self.count_failed_proposal();
            self.answer_write(waiting.request, Err(ServerError::Timeout));
        }
    }

    fn expire_reads(&mut self) {
        let now_tick = self.ticks;
        let expired: Vec<u64> = self
            .reads
            .in_flight
            .iter()
            .filter(|(_, (_, waiters))| waiters.iter().all(|waiting| waiting.deadline_tick <= now_tick))
            .map(|(context, _)| *context)
            .collect();
        for context in expired {
            let (_, waiters) = self.reads.in_flight.remove(&context).expect("listed above");
            self.answer_reads(waiters, Err(ServerError::Timeout));
        }
    }

    /// Leader only: proposes a revoke for every lease past its deadline and, with
    /// `--experimental-enable-lease-checkpoint`, the checkpoints due (see [`crate::lessor`]).
    fn expire_leases(&mut self) {
        let leading = self.soft_state.role == Role::Leader;
        let leases: Vec<LeaseTimes> =
            if leading { self.parts.store.leases().map(LeaseTimes::of).collect() } else { Vec::new() };
        let refreshed = self.parts.lessor.refresh(leading, &leases, (self.parts.clock)());
        for id in refreshed.expired {
            tracing::info!(lease = %format!("{id:x}"), "lease expired; revoking");
            let revoke = proto::etcdserverpb::LeaseRevokeRequest { id };
            self.propose(None, proposal_data(&kv::Command::new(kv::Operation::LeaseRevoke(revoke))));
        }
        if !refreshed.checkpoints.is_empty() {
            tracing::debug!(leases = refreshed.checkpoints.len(), "checkpointing lease remaining TTLs");
            let checkpoints = refreshed
                .checkpoints
                .into_iter()
                .map(|(id, remaining_ttl)| proto::etcdserverpb::LeaseCheckpoint { id, remaining_ttl })
                .collect();
            let request = proto::etcdserverpb::LeaseCheckpointRequest { checkpoints };
            self.propose(None, proposal_data(&kv::Command::new(kv::Operation::LeaseCheckpoint(request))));
        }
    }

    /// Asks one ReadIndex confirmation round for every read queued since the last call.
    pub fn issue_reads(&mut self) {
        if self.reads.queued.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.reads.queued);
        let context = self.reads.next_context;
        self.reads.next_context += 1;
        match self.node.read_index(Bytes::copy_from_slice(&context.to_le_bytes())) {
            Ok(()) => {
                let previous = self.reads.in_flight.insert(context, ((self.parts.clock)(), waiters));
                assert!(previous.is_none(), "read contexts are unique");
            }
            Err(raft::ProposeError::Busy) => self.answer_reads(waiters, Err(ServerError::TooManyRequests)),
            Err(_) => self.answer_reads(waiters, Err(ServerError::NoLeader)),
        }
    }

    /// The next `Ready`'s I/O, if the Raft core has one.
    pub fn next_ready(&mut self) -> Option<ReadyIo> {
        if !self.node.has_ready() {
            return None;
        }
        let ready = self.node.ready();
        if let Some(soft_state) = ready.soft_state {
            self.on_soft_state(soft_state);
        }
        let persist = ready.must_persist().then(|| {
            let batch = WriteBatch { snapshot: ready.snapshot, entries: ready.entries, hard_state: ready.hard_state };
            (batch, ready.persist_sequence)
        });
        let applying = Applying { committed_entries: ready.committed_entries, read_states: ready.read_states };
        Some(ReadyIo { messages: ready.messages, persist, applying })
    }

    /// Everything up to persist sequence `sequence` is durable.
    pub fn on_persisted(&mut self, sequence: u64) {
        assert!(sequence > self.reported_durable_sequence, "durability is reported once, in order");
        self.reported_durable_sequence = sequence;
        self.node.on_persisted(sequence);
    }

    /// Applies a `Ready`'s committed entries and completes the reads it confirmed.
    pub fn finish_ready(&mut self, applying: Applying, membership: &mut dyn MembershipApply) {
        self.apply(applying.committed_entries, membership);
        self.on_read_states(applying.read_states);
    }

    fn on_soft_state(&mut self, soft_state: SoftState) {
        if soft_state.leader != self.soft_state.leader {
            self.parts.metrics.leader_changes.inc();
            if soft_state.leader != 0 {
                self.parts.metrics.etcd.leader_changes.inc(); // etcd counts changes to a new leader
            }
            tracing::info!(leader = %format!("{:x}", soft_state.leader), term = soft_state.term, "leader changed");
            // Reads confirmed by the old leader can no longer be completed.
            let in_flight: Vec<Vec<Waiting>> = self.reads.in_flight.drain().map(|(_, (_, waiters))| waiters).collect();
            for waiters in in_flight {
                self.answer_reads(waiters, Err(ServerError::LeaderChanged));
            }
        }
        self.parts.metrics.is_leader.set(i64::from(soft_state.role == Role::Leader));
        self.soft_state = soft_state;
    }

    /// Restores a durable snapshot from the leader into the store. One the store cannot
    /// read (or whose applied index disagrees with its metadata) is an error: the node must
    /// stop rather than diverge.
    pub fn restore_snapshot(
        &mut self,
        data: &[u8],
        index: u64,
        membership: &mut dyn MembershipApply,
    ) -> Result<(), String> {
        use raft::Snapshottable;
        let store = &mut self.parts.store;
        store
            .restore(data)
            .map_err(|error| format!("snapshot from the leader at index {index} cannot be restored: {error}"))?;
        if store.applied_index() != index {
            return Err(format!("snapshot at index {index} holds a store applied to {}", store.applied_index()));
        }
        self.last_snapshot_index = index;
        self.revision = store.current_revision();
        membership.restored(store);
        self.parts.views.publish(store);
        self.parts.watch_hub.publish_restored(store.current_revision());
        crate::etcd_metrics::count_keys(&self.parts.metrics.etcd, store);
        tracing::info!(index, "restored snapshot from leader");
        Ok(())
    }

    fn apply(&mut self, entries: Vec<raft::Entry>, membership: &mut dyn MembershipApply) {
        if entries.is_empty() {
            return;
        }
        let started = (self.parts.clock)();
        self.applied_bytes_since_snapshot += entries.iter().map(|entry| entry.data.len() as u64).sum::<u64>();
        let mut events = Vec::new();
        for entry in entries {
            assert!(entry.index > self.parts.store.applied_index(), "entries apply once, in order");
            match entry.kind {
                EntryKind::Config => membership.apply_config(&mut self.parts.store, &entry),
                EntryKind::Normal if entry.data.len() > TOKEN_BYTES => {
                    events.extend(self.apply_command(&entry, membership))
                }
                _ => self.parts.store.advance_applied_index(entry.index),
            }
        }
        let applied_index = self.parts.store.applied_index();
        self.revision = self.parts.store.current_revision();
        // The view first: a watcher told of a revision, or a client answered, reads a view
        // that holds it.
        self.parts.views.publish(&self.parts.store);
        for (revision, revision_events) in events {
            self.parts.watch_hub.publish(revision, revision_events);
        }
        let elapsed = (self.parts.clock)().saturating_duration_since(started);
        self.parts.metrics.etcd.backend_commit_duration_seconds.observe(elapsed.as_secs_f64());
        self.release_reads(applied_index);
    }

    /// Applies one command entry; returns its revision and events for the watchers.
    fn apply_command(
        &mut self,
        entry: &raft::Entry,
        membership: &mut dyn MembershipApply,
    ) -> Option<(i64, Vec<proto::mvccpb::Event>)> {
        let store = &mut self.parts.store;
        let Some(token_bytes) = entry.data.get(..TOKEN_BYTES) else {
            tracing::error!(index = entry.index, "log entry shorter than a proposal token; skipped");
            store.advance_applied_index(entry.index);
            return None;
        };
        let token = u64::from_le_bytes(token_bytes.try_into().expect("TOKEN_BYTES bytes"));
        let command = match kv::Command::decode_shared(entry.data.slice(TOKEN_BYTES..)) {
            Ok(command) => command,
            Err(error) => {
                tracing::error!(index = entry.index, %error, "undecodable command in the log; skipped");
                store.advance_applied_index(entry.index);
                return None;
            }
        };
        let started = (self.parts.clock)();
        let applied = crate::etcd_metrics::apply_counted(&self.parts.metrics.etcd, store, entry.index, &command);
        let took = (self.parts.clock)().saturating_duration_since(started);
        warn_if_slow(took, self.options.warning_apply_duration, entry.index, &command);
        if let kv::Operation::MemberUpdate(update) = &command.operation {
            membership.member_updated(store, update.id);
        }
        if let Some(waiting) = self.proposals.remove(&token) {
            self.answer_write(waiting.request, applied.result.map_err(ServerError::Kv));
        }
        Some((applied.revision, applied.events))
    }

    fn on_read_states(&mut self, read_states: Vec<ReadState>) {
        for read_state in read_states {
            let Ok(bytes) = <[u8; 8]>::try_from(read_state.context.as_ref()) else { continue };
            let context = u64::from_le_bytes(bytes);
            if let Some((started, waiters)) = self.reads.in_flight.remove(&context) {
                let elapsed = (self.parts.clock)().saturating_duration_since(started);
                self.parts.metrics.read_index_duration_seconds.observe(elapsed.as_secs_f64());
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
            self.answer_reads(waiters, Ok(()));
        }
    }

    /// If the compaction policy asks for a snapshot now: the applied index and the
    /// configuration to write it at (the store is at that index).
    pub fn snapshot_due(&self) -> Option<(u64, ConfState)> {
        use raft::Snapshottable;
        let applied = self.node.applied_index();
        let policy = &self.options.compaction;
        if !policy.should_compact(applied, self.last_snapshot_index, self.applied_bytes_since_snapshot) {
            return None;
        }
        if Snapshottable::applied_index(&self.parts.store) != applied {
            return None; // the store lags the core only transiently; try next turn
        }
        Some((applied, self.node.conf_state()))
    }

    /// A snapshot at `index` was written and the log compacted.
    pub fn snapshot_taken(&mut self, index: u64) {
        assert!(index >= self.last_snapshot_index, "snapshots move forward");
        self.last_snapshot_index = index;
        self.applied_bytes_since_snapshot = 0;
        self.parts.metrics.snapshots_taken.inc();
    }

    fn count_failed_proposal(&self) {
        self.parts.metrics.proposals_failed.inc();
        self.parts.metrics.etcd.proposals_failed.inc();
    }

    fn answer_write(&mut self, request: Option<RequestId>, result: Result<kv::Response, ServerError>) {
        if let Some(request) = request {
            self.answers.push((request, Answer::Write(result)));
        }
    }

    fn answer_reads(&mut self, waiters: Vec<Waiting>, result: Result<(), ServerError>) {
        assert!(self.reads.count >= waiters.len(), "every read answered was counted");
        self.reads.count -= waiters.len();
        for waiting in waiters {
            let request = waiting.request.expect("every read has a request");
            self.answers.push((request, Answer::Read(result.clone())));
        }
    }
}

fn propose_error(error: raft::ProposeError) -> ServerError {
    match error {
        raft::ProposeError::Busy => ServerError::TooManyRequests,
        raft::ProposeError::TooLarge => ServerError::RequestTooLarge,
        raft::ProposeError::NoLeader | raft::ProposeError::NotLeader { .. } => ServerError::NoLeader,
        // Only membership proposals get these; a command never does.
        raft::ProposeError::ConfChangePending | raft::ProposeError::InvalidConfChange(_) => {
            unreachable!("a command proposal got a membership error: {error}")
        }
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

#[cfg(test)]
#[path = "server_core_tests.rs"]
mod tests;
