//! The Raft state machine: elections (§5.2), log replication (§5.3), safety (§5.4),
//! pre-vote and check-quorum (thesis §9.6, §6.2), ReadIndex (thesis §6.4).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use crate::config::{Config, ConfigError, Sabotage};
use crate::log::RaftLog;
use crate::membership::ConfChange;
use crate::progress::{Progress, ProgressState};
use crate::quorum::{self, VoteResult};
use crate::rng::SplitMix64;
use crate::storage::Storage;
use crate::types::*;

mod membership_ops;

/// Highest log index accepted from the network (far beyond any real log; keeps `index + 1`
/// arithmetic from overflowing on hostile input).
const INDEX_PLAUSIBLE_MAX: Index = u64::MAX >> 2;

/// Most ReadIndex requests waiting on a leader (a bound on the read queue).
const PENDING_READS_MAX: usize = 65_536;

/// Why a message was refused by [`RawNode::step`]. Refused messages change nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepError {
    /// The message is addressed to another node.
    WrongRecipient,
    /// The sender is not a member of this cluster.
    UnknownSender(NodeId),
    /// The message is internally inconsistent (e.g. non-contiguous entries).
    Malformed(&'static str),
}

impl std::fmt::Display for StepError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::WrongRecipient => write!(formatter, "message addressed to another node"),
            StepError::UnknownSender(id) => write!(formatter, "message from unknown member {id:x}"),
            StepError::Malformed(reason) => write!(formatter, "malformed message: {reason}"),
        }
    }
}

impl std::error::Error for StepError {}

/// Why a proposal or read was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This node is not the leader and forwarding is off; `leader_hint` may lead ([`NO_NODE`]: unknown).
    NotLeader {
        /// The leader this node knows of, or [`NO_NODE`].
        leader_hint: NodeId,
    },
    /// No leader is known; retry later.
    NoLeader,
    /// Too many uncommitted bytes or pending reads; retry later (back-pressure).
    Busy,
    /// The proposal is larger than the uncommitted-bytes bound.
    TooLarge,
    /// A membership change is refused because an earlier one is not yet applied, or the
    /// joint configuration it entered is not yet left; retry later.
    ConfChangePending,
    /// A membership change is refused as invalid here (the reason says why): e.g. removing
    /// the last voter, adding an existing voter, the same node twice.
    InvalidConfChange(String),
}

impl std::fmt::Display for ProposeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProposeError::NotLeader { leader_hint } => write!(formatter, "not the leader (leader: {leader_hint:x})"),
            ProposeError::NoLeader => write!(formatter, "no leader"),
            ProposeError::Busy => write!(formatter, "too many pending proposals"),
            ProposeError::TooLarge => write!(formatter, "proposal too large"),
            ProposeError::ConfChangePending => write!(formatter, "an earlier membership change is still in progress"),
            ProposeError::InvalidConfChange(reason) => write!(formatter, "invalid membership change: {reason}"),
        }
    }
}

impl std::error::Error for ProposeError {}

/// What the driver must do next, as a value (like etcd-raft's `Ready`).
///
/// Rules for the driver:
/// - Persist `snapshot`, then `entries` (overwriting any stored suffix from
///   `entries[0].index`), then `hard_state`, in the order Readys are returned; when all of
///   it is durable call [`RawNode::on_persisted`] with `persist_sequence`.
/// - `messages` may be sent at once (the core holds back anything that must wait for
///   durability and releases it in a later `Ready`).
/// - Apply `committed_entries` in order, after restoring `snapshot` into the state machine
///   if one is present.
#[derive(Clone, Debug, Default)]
pub struct Ready {
    /// Role, leader or term changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// Hard state to persist (changed since the last `Ready`).
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader, to persist and restore (R9).
    pub snapshot: Option<Snapshot>,
    /// Entries to append to stable storage.
    pub entries: Vec<Entry>,
    /// Messages to send.
    pub messages: Vec<Message>,
    /// Committed entries to apply, in order, each exactly once (R5).
    pub committed_entries: Vec<Entry>,
    /// Linearizable reads now safe to serve once their index is applied (R7).
    pub read_states: Vec<ReadState>,
    /// Pass to [`RawNode::on_persisted`] once the above is durable; 0 if nothing to persist.
    pub persist_sequence: u64,
}

impl Ready {
    /// True if this `Ready` asks the driver to persist something.
    pub fn must_persist(&self) -> bool {
        self.persist_sequence != 0
    }
}

/// The leader's view of one follower (for dashboards and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgressView {
    /// Highest index known replicated on the follower.
    pub match_index: Index,
    /// Next index to send.
    pub next_index: Index,
    /// Replication mode.
    pub state: ProgressState,
    /// AppendEntries messages in flight.
    pub inflight_messages: usize,
}

/// What one handed-out `Ready` asked to persist, and the messages waiting for it.
struct PersistRecord {
    sequence: u64,
    last_entry: Option<(Index, Term)>,
    snapshot_index: Option<Index>,
    held_messages: Vec<Message>,
    /// The candidate's vote for itself in this term becomes durable with this record.
    self_vote_term: Option<Term>,
}

/// A ReadIndex request waiting for leadership confirmation (thesis §6.4).
struct PendingRead {
    round: u64,
    index: Index,
    requester: NodeId,
    context: Bytes,
}

/// A Raft node without I/O.
///
/// Invariants (checked with assertions where they change):
/// - `term` never decreases; `vote` changes only when `term` increases or from `NO_NODE`.
/// - Only a leader appends entries of its own term, and never removes its own entries.
/// - Messages that reveal state (votes, acknowledgements) leave only after that state is
///   durable (`held` → `persist_queue` → `outbox`).
pub struct RawNode<S: Storage> {
    config: Config,
    rng: SplitMix64,
    log: RaftLog<S>,
    term: Term,
    vote: NodeId,
    role: Role,
    leader: NodeId,
    /// The latest configuration in the log, committed or not: every decision uses it
    /// (thesis §4.1). Derived from `applied_conf` plus `pending_confs`.
    conf: ConfState,
    /// The configuration as of the last entry handed out to apply (`conf_state()`).
    applied_conf: ConfState,
    /// Index of the last Config entry folded into `applied_conf` (0: none since the base).
    applied_conf_index: Index,
    /// Config entries in the log above the applied index, in log order.
    pending_confs: Vec<(Index, (ConfChange, Option<ConfState>))>,
    /// Leader only: the leadership-transfer target (thesis §3.10) and ticks since it began.
    transfer_target: Option<NodeId>,
    transfer_elapsed_ticks: u32,
    /// Votes (or pre-votes) received in the current campaign.
    votes: Vec<(NodeId, bool)>,
    /// Leader only: one entry per other member.
    progress: BTreeMap<NodeId, Progress>,
    election_elapsed_ticks: u32,
    heartbeat_elapsed_ticks: u32,
    randomized_election_ticks: u32,
    /// Leader only: bytes appended and not yet applied (bounded by `uncommitted_bytes_max`).
    uncommitted_bytes: u64,
    /// Leader only: set when new entries wait to be sent.
    broadcast_pending: bool,
    read_round: u64,
    pending_reads: VecDeque<PendingRead>,
    /// Leader only: reads that arrived before the leader committed an entry of its term.
    reads_before_commit: Vec<(NodeId, Bytes)>,
    read_states: Vec<ReadState>,
    outbox: Vec<Message>,
    /// Messages waiting for the state they reveal to become durable.
    held: Vec<Message>,
    persist_queue: VecDeque<PersistRecord>,
    next_persist_sequence: u64,
    last_handed_sequence: u64,
    persisted_sequence: u64,
    previous_hard_state: HardState,
    previous_soft_state: SoftState,
    /// A snapshot being received in chunks: its metadata and the bytes so far (bounded by
    /// `Config::snapshot_bytes_max`).
    incoming_snapshot: Option<(SnapshotMeta, bytes::BytesMut)>,
    /// While set, this node neither votes nor campaigns (see `Config::abstain_until_caught_up`);
    /// `Some(0)` until a leader announced its commit index, then `Some(target)`.
    abstain_until: Option<Index>,
    /// A candidate counts its own vote only once the hard state recording it is durable
    /// (Figure 2: persist before acting); set until that hard state is handed out.
    self_vote_waiting: Option<Term>,
}

impl<S: Storage> RawNode<S> {
    /// A node recovering from `storage` (an empty storage with voters set starts a new cluster).
    pub fn new(config: Config, storage: S) -> Result<Self, ConfigError> {
        config.validate()?;
        let initial = storage.initial_state().map_err(|error| ConfigError(format!("storage: {error}")))?;
        let hard_state = initial.hard_state;
        let log = RaftLog::new(storage, hard_state.commit, config.applied)
            .map_err(|reason| ConfigError(format!("storage: {reason}")))?;
        // A crash may keep entries of a term whose hard state was not yet durable. Never
        // campaign into a term already in our log (Log Matching, §5.3). No vote in that term
        // was ever sent: votes leave only after the hard state holding them is durable.
        let term = hard_state.term.max(log.last_term());
        let vote = if term > hard_state.term { NO_NODE } else { hard_state.vote };
        let soft_state = SoftState { role: Role::Follower, leader: NO_NODE, term };
        let mut node = RawNode {
            rng: SplitMix64::new(config.random_seed ^ config.id.rotate_left(32)),
            config,
            log,
            term,
            vote,
            role: Role::Follower,
            leader: NO_NODE,
            conf: initial.conf_state.clone(),
            applied_conf: initial.conf_state.clone(),
            applied_conf_index: 0,
            pending_confs: Vec::new(),
            transfer_target: None,
            transfer_elapsed_ticks: 0,
            votes: Vec::new(),
            progress: BTreeMap::new(),
            election_elapsed_ticks: 0,
            heartbeat_elapsed_ticks: 0,
            randomized_election_ticks: 0,
            uncommitted_bytes: 0,
            broadcast_pending: false,
            read_round: 0,
            pending_reads: VecDeque::new(),
            reads_before_commit: Vec::new(),
            read_states: Vec::new(),
            outbox: Vec::new(),
            held: Vec::new(),
            persist_queue: VecDeque::new(),
            next_persist_sequence: 1,
            last_handed_sequence: 0,
            persisted_sequence: 0,
            previous_hard_state: hard_state,
            previous_soft_state: soft_state,
            abstain_until: None,
            self_vote_waiting: None,
            incoming_snapshot: None,
        };
        // An empty log abstains even with a term on disk: the node may have crashed after
        // learning a term but before receiving any entry (found by the simulator, seed 9287).
        let empty = node.log.last_index() == 0;
        if node.config.abstain_until_caught_up && empty {
            node.abstain_until = Some(0);
        }
        node.load_configuration()?;
        node.become_follower(term, NO_NODE);
        node.previous_soft_state = node.soft_state();
        Ok(node)
    }

    // ---------------------------------------------------------------- inputs

    /// Advances logical time by one tick (elections, heartbeats, check-quorum).
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    /// Processes a message received from a peer. Bad input is refused with an error and
    /// changes nothing; this never panics on network input.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        self.validate(&message)?;
        if !self.accepts_sender(&message) {
            // A member removed (or not yet known): its answers are stale news, ignored.
            return Ok(());
        }
        if !self.step_term(&message) {
            return Ok(());
        }
        match &message.body {
            MessageBody::PreVote { .. } | MessageBody::Vote { .. } | MessageBody::TransferVote { .. } => {
                self.handle_vote_request(&message);
                return Ok(());
            }
            MessageBody::PreVoteResponse { .. } | MessageBody::VoteResponse { .. } => {
                self.handle_vote_response(&message);
                return Ok(());
            }
            _ => {}
        }
        match self.role {
            Role::Leader => self.step_leader(message),
            Role::Candidate | Role::PreCandidate => self.step_candidate(message),
            Role::Follower | Role::Learner => self.step_follower(message),
        }
    }

    /// Proposes one command (R1): appended on the leader, forwarded from a follower.
    pub fn propose(&mut self, command: Bytes) -> Result<(), ProposeError> {
        self.propose_batch(vec![command])
    }

    /// Proposes several commands at once; they stay in order.
    pub fn propose_batch(&mut self, commands: Vec<Bytes>) -> Result<(), ProposeError> {
        if commands.is_empty() {
            return Ok(());
        }
        if self.role == Role::Leader {
            return self.append_commands(commands);
        }
        let leader = self.forwarding_target()?;
        let message = self.message(leader, MessageBody::Propose { commands });
        self.held.push(message);
        Ok(())
    }

    /// Requests a linearizable read (R7); a [`ReadState`] with `context` appears in a later
    /// `Ready` once the leader has confirmed it still leads.
    pub fn read_index(&mut self, context: Bytes) -> Result<(), ProposeError> {
        if self.role == Role::Leader {
            return self.leader_read_index(self.config.id, context);
        }
        let leader = self.forwarding_target()?;
        let message = self.message(leader, MessageBody::ReadIndex { context });
        self.held.push(message);
        Ok(())
    }

    /// Proposes a membership change (thesis chapter 4); leader only ([`ProposeError::NotLeader`]
    /// or [`ProposeError::NoLeader`] elsewhere). One change is a single-server change (§4.1);
    /// several enter joint consensus (§4.3), which the leader leaves by itself once the joint
    /// entry is applied. The entry reaches `Ready::committed_entries` as an
    /// [`EntryKind::Config`] entry; the core adopts it when handing it out.
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<(), ProposeError> {
        self.leader_propose_conf_change(change)
    }

    /// Transfers leadership to `target` (thesis §3.10): the leader refuses proposals
    /// ([`ProposeError::Busy`]) meanwhile, brings `target` up to date, then tells it to
    /// campaign at once. Abandoned after an election timeout. Leader only; `target` must be
    /// a voter ([`ProposeError::InvalidConfChange`] otherwise); `target` == self does nothing.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), ProposeError> {
        self.start_leader_transfer(target)
    }

    /// The configuration as of the last entry handed out to apply (apply-time view, as in
    /// etcd); `voters_outgoing` is non-empty while joint.
    pub fn conf_state(&self) -> ConfState {
        self.applied_conf.clone()
    }

    /// The latest configuration in the log, committed or not (the one this node uses for
    /// elections and commitment, thesis §4.1).
    pub fn latest_conf_state(&self) -> &ConfState {
        &self.conf
    }

    /// On the leader, the target of a leadership transfer in progress.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer_target
    }

    /// Starts an election now (tests and scenarios), skipping pre-vote.
    pub fn campaign(&mut self) {
        if self.may_campaign() && self.role != Role::Leader && !self.log.pending_snapshot() {
            self.become_candidate();
        }
    }

    /// True if [`RawNode::ready`] has anything to return.
    pub fn has_ready(&self) -> bool {
        self.soft_state() != self.previous_soft_state
            || self.hard_state() != self.previous_hard_state
            || self.log.has_unhanded()
            || !self.outbox.is_empty()
            || !self.held.is_empty()
            || self.broadcast_pending
            || self.log.has_committed_to_apply()
            || !self.read_states.is_empty()
    }

    /// Collects everything the driver must do now.
    pub fn ready(&mut self) -> Ready {
        if self.broadcast_pending {
            self.broadcast_pending = false;
            self.broadcast_append();
        }
        let mut ready = Ready::default();
        let soft_state = self.soft_state();
        if soft_state != self.previous_soft_state {
            ready.soft_state = Some(soft_state);
            self.previous_soft_state = soft_state;
        }
        self.collect_persist(&mut ready);
        ready.messages = std::mem::take(&mut self.outbox);
        ready.committed_entries = self.log.take_committed_to_apply(self.config.apply_batch_bytes_max);
        self.adopt_applied_configurations(&ready.committed_entries);
        if self.role == Role::Leader {
            let applied_bytes: u64 = ready.committed_entries.iter().map(Entry::size_bytes).sum();
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(applied_bytes);
        }
        ready.read_states = std::mem::take(&mut self.read_states);
        ready
    }

    fn collect_persist(&mut self, ready: &mut Ready) {
        let hard_state = self.hard_state();
        if hard_state != self.previous_hard_state {
            ready.hard_state = Some(hard_state);
            self.previous_hard_state = hard_state;
        }
        ready.snapshot = self.log.take_snapshot_to_persist();
        ready.entries = self.log.take_entries_to_persist();
        let held_messages = std::mem::take(&mut self.held);
        if ready.hard_state.is_some() || ready.snapshot.is_some() || !ready.entries.is_empty() {
            let sequence = self.next_persist_sequence;
            self.next_persist_sequence += 1;
            self.last_handed_sequence = sequence;
            ready.persist_sequence = sequence;
            let self_vote_term = if ready.hard_state.is_some() { self.self_vote_waiting.take() } else { None };
            self.persist_queue.push_back(PersistRecord {
                sequence,
                last_entry: ready.entries.last().map(|entry| (entry.index, entry.term)),
                snapshot_index: ready.snapshot.as_ref().map(|snapshot| snapshot.meta.index),
                held_messages,
                self_vote_term,
            });
        } else if let Some(record) = self.persist_queue.back_mut() {
            record.held_messages.extend(held_messages);
        } else {
            self.outbox.extend(held_messages);
        }
        self.assert_persist_pipeline();
    }

    /// The persist pipeline's order: persisted ≤ handed < next, one record per handed,
    /// unpersisted Ready (cheap; on in release).
    fn assert_persist_pipeline(&self) {
        assert!(
            self.persisted_sequence <= self.last_handed_sequence
                && self.last_handed_sequence < self.next_persist_sequence,
            "persist pipeline out of order: persisted {} handed {} next {}",
            self.persisted_sequence,
            self.last_handed_sequence,
            self.next_persist_sequence
        );
        assert!(
            self.persist_queue.len() as u64 <= self.last_handed_sequence - self.persisted_sequence,
            "more persist records than unpersisted Readys"
        );
    }

    /// Reports that what `Ready` number `persist_sequence` (and all before it) asked to
    /// persist is durable. Releases held messages and lets the leader count its own copy.
    pub fn on_persisted(&mut self, persist_sequence: u64) {
        if persist_sequence == 0 || persist_sequence <= self.persisted_sequence {
            return;
        }
        assert!(persist_sequence <= self.last_handed_sequence, "persisted a Ready not handed out");
        self.persisted_sequence = persist_sequence;
        while let Some(record) = self.persist_queue.front() {
            if record.sequence > persist_sequence {
                break;
            }
            let record = self.persist_queue.pop_front().expect("front exists");
            if let Some(index) = record.snapshot_index {
                self.log.stable_snapshot_to(index);
            }
            if let Some((index, term)) = record.last_entry {
                self.log.stable_to(index, term);
            }
            self.outbox.extend(record.held_messages);
            if record.self_vote_term.is_some() && record.self_vote_term == Some(self.term) {
                self.count_own_vote();
            }
        }
        if self.role == Role::Leader {
            self.leader_self_persisted();
        }
        self.assert_persist_pipeline();
    }

    // ---------------------------------------------------------------- status

    /// The storage (read-only).
    pub fn storage(&self) -> &S {
        &self.log.storage
    }

    /// The storage, for the driver's writes.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.log.storage
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Known leader, or [`NO_NODE`].
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// Current hard state (term, vote, commit), persisted or not.
    pub fn hard_state(&self) -> HardState {
        HardState { term: self.term, vote: self.vote, commit: self.log.committed }
    }

    /// Role, leader and term.
    pub fn soft_state(&self) -> SoftState {
        SoftState { role: self.role, leader: self.leader, term: self.term }
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> Index {
        self.log.committed
    }

    /// Highest index handed out for applying.
    pub fn applied_index(&self) -> Index {
        self.log.applied
    }

    /// Index of the first entry still in the log (after the snapshot).
    pub fn first_index(&self) -> Index {
        self.log.first_index()
    }

    /// Index of the last entry in the log, persisted or not.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// Term of the entry at `index` (persisted or not), if still in the log or the snapshot.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }

    /// Entries `first_index()..=last_index()`, persisted or not (for checkers and dashboards).
    pub fn log_entries(&self) -> Vec<Entry> {
        self.log.entries(self.log.first_index(), self.log.last_index() + 1, u64::MAX).unwrap_or_default()
    }

    /// Entries `low..high` that are still in the log (persisted or not); empty if compacted.
    pub fn entries(&self, low: Index, high: Index) -> Vec<Entry> {
        self.log.entries(low.max(self.log.first_index()), high, u64::MAX).unwrap_or_default()
    }

    /// Voting members of the latest configuration (C_new while joint; see
    /// [`RawNode::latest_conf_state`] for C_old).
    pub fn voters(&self) -> &[NodeId] {
        &self.conf.voters
    }

    /// Non-voting members of the latest configuration.
    pub fn learners(&self) -> &[NodeId] {
        &self.conf.learners
    }

    /// On the leader, its view of `peer`'s replication; `None` elsewhere.
    pub fn progress(&self, peer: NodeId) -> Option<ProgressView> {
        if self.role != Role::Leader {
            return None;
        }
        if peer == self.config.id {
            let match_index = self.log.durable_index();
            return Some(ProgressView {
                match_index,
                next_index: self.log.last_index() + 1,
                state: ProgressState::Replicate,
                inflight_messages: 0,
            });
        }
        self.progress.get(&peer).map(|progress| ProgressView {
            match_index: progress.match_index,
            next_index: progress.next_index,
            state: progress.state,
            inflight_messages: progress.inflights.count(),
        })
    }

    // ---------------------------------------------------------------- roles

    fn is_voter(&self, id: NodeId) -> bool {
        self.conf.is_voter(id)
    }

    /// Nodes the leader replicates to: members of the latest and of the applied
    /// configuration (a removed node still learns of its removal), except itself.
    fn peers(&self) -> Vec<NodeId> {
        let mut peers = self.conf.members();
        peers.extend(self.applied_conf.members());
        peers.sort_unstable();
        peers.dedup();
        peers.retain(|peer| *peer != self.config.id);
        peers
    }

    fn reset(&mut self, term: Term) {
        if term > self.term {
            self.term = term;
            self.vote = NO_NODE;
        }
        assert!(self.term >= term, "term went backwards");
        self.leader = NO_NODE;
        self.election_elapsed_ticks = 0;
        self.heartbeat_elapsed_ticks = 0;
        self.randomized_election_ticks =
            self.config.election_ticks + self.rng.range(0, self.config.election_ticks as u64) as u32;
        self.votes.clear();
        self.self_vote_waiting = None;
        self.progress.clear();
        self.pending_reads.clear();
        self.reads_before_commit.clear();
        self.broadcast_pending = false;
        self.uncommitted_bytes = 0;
        self.transfer_target = None;
        self.transfer_elapsed_ticks = 0;
    }

    fn become_follower(&mut self, term: Term, leader: NodeId) {
        self.reset(term);
        self.leader = leader;
        self.role = if self.is_voter(self.config.id) { Role::Follower } else { Role::Learner };
    }

    fn become_pre_candidate(&mut self) {
        assert!(self.role != Role::Leader, "a leader does not campaign");
        self.votes.clear();
        self.leader = NO_NODE;
        self.role = Role::PreCandidate;
        self.election_elapsed_ticks = 0;
        self.randomized_election_ticks =
            self.config.election_ticks + self.rng.range(0, self.config.election_ticks as u64) as u32;
        self.request_votes(true);
    }

    fn become_candidate(&mut self) {
        assert!(self.role != Role::Leader, "a leader does not campaign");
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.config.id;
        self.role = Role::Candidate;
        self.request_votes(false);
    }

    /// Sends (pre-)vote requests and counts this node's own vote (§5.2): at once for a
    /// pre-vote, once durable for a vote (see `self_vote_waiting`).
    fn request_votes(&mut self, pre_vote: bool) {
        self.request_votes_with(pre_vote, false);
    }

    /// As `request_votes`; `transfer` sends `TransferVote`s (a leadership-transfer
    /// election, answered inside leader leases).
    fn request_votes_with(&mut self, pre_vote: bool, transfer: bool) {
        if pre_vote {
            self.votes.push((self.config.id, true));
            if self.tally() == VoteResult::Won {
                return self.win_election(pre_vote);
            }
        } else {
            assert_eq!(self.vote, self.config.id, "a candidate votes for itself");
            self.self_vote_waiting = Some(self.term);
        }
        let term = self.term + u64::from(pre_vote);
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let mut voters: Vec<NodeId> = self.conf.voters.iter().chain(&self.conf.voters_outgoing).copied().collect();
        voters.sort_unstable();
        voters.dedup();
        for voter in voters {
            if voter == self.config.id {
                continue;
            }
            let body = if pre_vote {
                MessageBody::PreVote { last_log_index, last_log_term }
            } else if transfer {
                MessageBody::TransferVote { last_log_index, last_log_term }
            } else {
                MessageBody::Vote { last_log_index, last_log_term }
            };
            let message = Message { from: self.config.id, to: voter, term, body };
            self.held.push(message);
        }
    }

    fn count_own_vote(&mut self) {
        if self.role != Role::Candidate || self.votes.iter().any(|(voter, _)| *voter == self.config.id) {
            return;
        }
        self.votes.push((self.config.id, true));
        match self.tally() {
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, NO_NODE);
            }
            VoteResult::Pending => {}
        }
    }

    fn tally(&self) -> VoteResult {
        quorum::joint_vote_result(&self.conf.voters, &self.conf.voters_outgoing, &self.votes)
    }

    fn win_election(&mut self, pre_vote: bool) {
        if pre_vote {
            self.become_candidate();
        } else {
            self.become_leader();
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate, "only a candidate becomes leader");
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = self.config.id;
        let next_index = self.log.last_index() + 1;
        self.sync_progress(next_index);
        // §8: a no-op entry of the new term lets earlier entries commit with it (Figure 8).
        let blank = Entry { term, index: next_index, kind: EntryKind::Blank, data: Bytes::new() };
        self.append_to_log(&[blank]);
        self.broadcast_pending = true;
        self.leader_self_persisted();
        // A leader that finds its configuration joint (its predecessor crashed mid-change)
        // leaves it as soon as the joint entry is applied here (§4.3).
        self.maybe_leave_joint();
    }

    // ---------------------------------------------------------------- ticks

    fn tick_election(&mut self) {
        self.election_elapsed_ticks += 1;
        let promotable = self.may_campaign() && !self.log.pending_snapshot() && self.abstain_until.is_none();
        if promotable && self.election_elapsed_ticks >= self.randomized_election_ticks {
            self.election_elapsed_ticks = 0;
            if self.config.pre_vote {
                self.become_pre_candidate();
            } else {
                self.become_candidate();
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed_ticks += 1;
        self.election_elapsed_ticks += 1;
        if self.election_elapsed_ticks >= self.config.election_ticks {
            self.election_elapsed_ticks = 0;
            if self.config.check_quorum && !self.quorum_recently_active() {
                // Thesis §6.2: a leader cut off from a majority steps down.
                let term = self.term;
                self.become_follower(term, NO_NODE);
                return;
            }
        }
        if self.role != Role::Leader {
            return; // stepped down (e.g. removed from the configuration)
        }
        self.tick_leader_transfer();
        self.retry_stalled_snapshots();
        if self.heartbeat_elapsed_ticks >= self.config.heartbeat_ticks {
            self.heartbeat_elapsed_ticks = 0;
            self.broadcast_heartbeat();
        }
    }

    fn quorum_recently_active(&mut self) -> bool {
        let mut active = vec![self.config.id];
        for (peer, progress) in self.progress.iter_mut() {
            if progress.recent_active {
                active.push(*peer);
            }
            progress.recent_active = false;
        }
        quorum::joint_has_quorum(&self.conf.voters, &self.conf.voters_outgoing, &active)
    }

    /// A snapshot chunk unanswered for an election timeout is re-sent from the last offset
    /// the follower acknowledged (the transfer resumes; it does not restart).
    fn retry_stalled_snapshots(&mut self) {
        let timeout_ticks = self.config.election_ticks;
        let mut stalled = Vec::new();
        for (peer, progress) in self.progress.iter_mut() {
            if progress.state == ProgressState::Snapshot {
                progress.snapshot_wait_ticks += 1;
                if progress.snapshot_wait_ticks >= timeout_ticks {
                    progress.snapshot_wait_ticks = 0;
                    progress.snapshot_chunk_in_flight = false;
                    stalled.push(*peer);
                }
            }
        }
        for peer in stalled {
            self.send_snapshot_chunk(peer);
        }
    }

    // ---------------------------------------------------------------- messages in

    fn validate(&self, message: &Message) -> Result<(), StepError> {
        if message.to != self.config.id {
            return Err(StepError::WrongRecipient);
        }
        if message.from == self.config.id || message.from == NO_NODE {
            return Err(StepError::UnknownSender(message.from));
        }
        match &message.body {
            MessageBody::Append { prev_log_index, prev_log_term, entries, .. } => {
                validate_entries(message.term, *prev_log_index, *prev_log_term, entries)
            }
            MessageBody::InstallSnapshot { meta, .. } if meta.index > INDEX_PLAUSIBLE_MAX => {
                // Found by tests/fuzz_step.rs: an index near u64::MAX overflowed the log's offset.
                Err(StepError::Malformed("snapshot index out of range"))
            }
            MessageBody::InstallSnapshot { meta, .. } if meta.term > message.term => {
                Err(StepError::Malformed("snapshot from a future term"))
            }
            MessageBody::InstallSnapshot { meta, .. } if meta.conf.voters.is_empty() => {
                Err(StepError::Malformed("snapshot without voters"))
            }
            MessageBody::InstallSnapshot { offset, data, .. }
                if offset.saturating_add(data.len() as u64) > self.config.snapshot_bytes_max =>
            {
                Err(StepError::Malformed("snapshot larger than snapshot_bytes_max"))
            }
            _ => Ok(()),
        }
    }

    /// Applies Raft's term rules (§5.1, Figure 2 "Rules for Servers"); false if the
    /// message must be ignored.
    fn step_term(&mut self, message: &Message) -> bool {
        if message.term > self.term {
            return self.step_higher_term(message);
        }
        if message.term < self.term {
            self.step_lower_term(message);
            return false;
        }
        true
    }

    fn step_higher_term(&mut self, message: &Message) -> bool {
        match &message.body {
            MessageBody::PreVote { .. } | MessageBody::Vote { .. } if self.in_leader_lease() => false,
            MessageBody::PreVote { .. } => true,
            MessageBody::PreVoteResponse { reject: false } => true,
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                self.become_follower(message.term, message.from);
                true
            }
            _ => {
                self.become_follower(message.term, NO_NODE);
                true
            }
        }
    }

    fn step_lower_term(&mut self, message: &Message) {
        match &message.body {
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                // A deposed leader learns the new term from this answer and steps down.
                let last_index = self.log.last_index();
                let reply = self.message(message.from, MessageBody::HeartbeatResponse { read_round: 0, last_index });
                self.held.push(reply);
            }
            MessageBody::PreVote { .. } => {
                let reply = self.message(message.from, MessageBody::PreVoteResponse { reject: true });
                self.held.push(reply);
            }
            _ => {}
        }
    }

    /// With check-quorum, a node that heard from a leader within the election timeout
    /// ignores (pre-)votes: a rejoining node cannot depose a healthy leader.
    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum && self.leader != NO_NODE && self.election_elapsed_ticks < self.config.election_ticks
    }

    /// RequestVote receiver (§5.2, §5.4.1 election restriction, R6).
    fn handle_vote_request(&mut self, message: &Message) {
        let (pre_vote, last_log_index, last_log_term) = match message.body {
            MessageBody::PreVote { last_log_index, last_log_term } => (true, last_log_index, last_log_term),
            MessageBody::Vote { last_log_index, last_log_term }
            | MessageBody::TransferVote { last_log_index, last_log_term } => (false, last_log_index, last_log_term),
            _ => unreachable!("only vote requests"),
        };
        let can_vote = self.vote == message.from
            || (self.vote == NO_NODE && self.leader == NO_NODE)
            || (pre_vote && message.term > self.term);
        let our_last_term = self.log.last_term();
        let up_to_date = last_log_term > our_last_term
            || (last_log_term == our_last_term && last_log_index >= self.log.last_index())
            || (!pre_vote && self.config.is_sabotaged(Sabotage::VoteWithoutElectionRestriction));
        // Like etcd, a node answers even if its own (possibly stale) configuration does not
        // list it as a voter: the candidate counts only the voters of its configuration.
        let grant = can_vote && up_to_date && self.abstain_until.is_none();
        let term = if grant { message.term } else { self.term };
        let body = if pre_vote {
            MessageBody::PreVoteResponse { reject: !grant }
        } else {
            MessageBody::VoteResponse { reject: !grant }
        };
        if grant && !pre_vote {
            assert_eq!(message.term, self.term);
            self.election_elapsed_ticks = 0;
            self.vote = message.from;
        }
        self.held.push(Message { from: self.config.id, to: message.from, term, body });
    }

    fn handle_vote_response(&mut self, message: &Message) {
        let (pre_vote, reject) = match message.body {
            MessageBody::PreVoteResponse { reject } => (true, reject),
            MessageBody::VoteResponse { reject } => (false, reject),
            _ => unreachable!("only vote responses"),
        };
        let expected_role = if pre_vote { Role::PreCandidate } else { Role::Candidate };
        if self.role != expected_role || self.votes.iter().any(|(voter, _)| *voter == message.from) {
            return;
        }
        self.votes.push((message.from, !reject));
        match self.tally() {
            VoteResult::Won => self.win_election(pre_vote),
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, NO_NODE);
            }
            VoteResult::Pending => {}
        }
    }

    fn step_candidate(&mut self, message: Message) -> Result<(), StepError> {
        match message.body {
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                let term = self.term;
                self.become_follower(term, message.from);
                self.step_follower(message)
            }
            _ => Ok(()), // proposals and reads are dropped: there is no leader
        }
    }

    fn step_follower(&mut self, message: Message) -> Result<(), StepError> {
        match message.body {
            MessageBody::Append { prev_log_index, prev_log_term, entries, commit } => {
                self.heard_from_leader(message.from);
                self.note_leader_commit(commit);
                let result = self.handle_append(message.from, prev_log_index, prev_log_term, &entries, commit);
                self.maybe_stop_abstaining();
                result
            }
            MessageBody::Heartbeat { commit, read_round } => {
                self.heard_from_leader(message.from);
                self.log.commit_to(commit.min(self.log.last_index()));
                let last_index = self.log.last_index();
                let reply = self.message(message.from, MessageBody::HeartbeatResponse { read_round, last_index });
                self.held.push(reply);
                Ok(())
            }
            MessageBody::InstallSnapshot { meta, offset, data, done } => {
                self.heard_from_leader(message.from);
                self.note_leader_commit(meta.index);
                if let Some(snapshot) = self.receive_snapshot_chunk(message.from, meta, offset, &data, done) {
                    self.handle_snapshot(message.from, snapshot);
                }
                self.maybe_stop_abstaining();
                Ok(())
            }
            MessageBody::ReadIndexResponse { context, index } => {
                if index > 0 {
                    self.read_states.push(ReadState { index, context });
                }
                Ok(())
            }
            MessageBody::TimeoutNow => {
                self.campaign_for_transfer();
                Ok(())
            }
            MessageBody::Propose { commands } if self.leader != NO_NODE && self.config.forward_proposals => {
                let forward = self.message(self.leader, MessageBody::Propose { commands });
                self.held.push(forward);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn note_leader_commit(&mut self, commit: Index) {
        if self.abstain_until == Some(0) {
            self.abstain_until = Some(commit.max(1));
        }
    }

    fn maybe_stop_abstaining(&mut self) {
        if let Some(target) = self.abstain_until {
            if target > 0 && self.log.committed >= target {
                self.abstain_until = None;
            }
        }
    }

    fn heard_from_leader(&mut self, leader: NodeId) {
        self.election_elapsed_ticks = 0;
        self.leader = leader;
    }

    /// AppendEntries receiver (§5.3, Figure 2): consistency check, conflict truncation,
    /// commit index from the leader (R3, R5).
    fn handle_append(
        &mut self,
        leader: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: &[Entry],
        commit: Index,
    ) -> Result<(), StepError> {
        if prev_log_index < self.log.committed {
            let reply = self.append_response(leader, false, self.log.committed, 0, 0);
            self.held.push(reply);
            return Ok(());
        }
        if !self.log.matches(prev_log_index, prev_log_term) {
            let hint_index = self.log.find_conflict_by_term(prev_log_index, prev_log_term);
            let hint_term = self.log.term(hint_index).unwrap_or(0);
            let reply = self.append_response(leader, true, prev_log_index, hint_index, hint_term);
            self.held.push(reply);
            return Ok(());
        }
        let conflict = self.log.find_conflict(entries);
        if conflict != 0 {
            if conflict <= self.log.committed {
                return Err(StepError::Malformed("entries conflict with committed entries"));
            }
            let start = (conflict - prev_log_index - 1) as usize;
            self.append_to_log(&entries[start..]);
        }
        let last_new_index = prev_log_index + entries.len() as u64;
        self.log.commit_to(commit.min(last_new_index));
        let reply = self.append_response(leader, false, last_new_index, 0, 0);
        if self.config.is_sabotaged(Sabotage::FollowerAcknowledgesBeforeDurable) {
            self.outbox.push(reply);
        } else {
            self.held.push(reply);
        }
        Ok(())
    }

    fn append_response(&self, to: NodeId, reject: bool, index: Index, hint_index: Index, hint_term: Term) -> Message {
        self.message(to, MessageBody::AppendResponse { reject, index, hint_index, hint_term })
    }

    /// Reassembles snapshot chunks (§7, Figure 13: offset, data, done); returns the whole
    /// snapshot once its last chunk arrived. Every chunk is answered with the bytes held.
    fn receive_snapshot_chunk(
        &mut self,
        leader: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: &[u8],
        done: bool,
    ) -> Option<Snapshot> {
        if meta.index <= self.log.committed {
            // Already have it (e.g. the answer to the last chunk was lost): say so.
            self.incoming_snapshot = None;
            let reply = self.append_response(leader, false, self.log.committed, 0, 0);
            self.held.push(reply);
            return None;
        }
        let same = self.incoming_snapshot.as_ref().is_some_and(|(current, _)| *current == meta);
        if offset == 0 && !same {
            self.incoming_snapshot = Some((meta.clone(), bytes::BytesMut::new()));
        }
        let index = meta.index;
        let received_bytes = match self.incoming_snapshot.as_mut() {
            Some((current, buffer)) if *current == meta => {
                if buffer.len() as u64 == offset {
                    buffer.extend_from_slice(data);
                }
                buffer.len() as u64
            }
            _ => 0, // a chunk of a snapshot we are not receiving: ask for it from the start
        };
        let complete = done && received_bytes == offset + data.len() as u64;
        if complete {
            let (meta, buffer) = self.incoming_snapshot.take().expect("matched above");
            return Some(Snapshot { meta, data: buffer.freeze() });
        }
        let reply = self.message(leader, MessageBody::SnapshotProgress { index, received_bytes });
        self.held.push(reply);
        None
    }

    /// InstallSnapshot receiver (§7, R9).
    fn handle_snapshot(&mut self, leader: NodeId, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        if index <= self.log.committed {
            let reply = self.append_response(leader, false, self.log.committed, 0, 0);
            self.held.push(reply);
            return;
        }
        if self.log.matches(index, snapshot.meta.term) {
            // We already have the entries: only the commit index moves.
            self.log.commit_to(index);
        } else {
            self.restore_configuration(snapshot.meta.index, snapshot.meta.conf.clone());
            self.log.restore(snapshot);
        }
        let reply = self.append_response(leader, false, index, 0, 0);
        self.held.push(reply);
    }

    // ---------------------------------------------------------------- leader

    fn step_leader(&mut self, message: Message) -> Result<(), StepError> {
        if let Some(progress) = self.progress.get_mut(&message.from) {
            progress.recent_active = true;
        }
        match message.body {
            MessageBody::AppendResponse { reject, index, hint_index, hint_term } => {
                if index > self.log.last_index() {
                    return Err(StepError::Malformed("acknowledged index beyond the leader's log"));
                }
                if reject {
                    self.handle_append_reject(message.from, index, hint_index, hint_term);
                } else {
                    self.handle_append_success(message.from, index);
                }
                Ok(())
            }
            MessageBody::HeartbeatResponse { read_round, last_index } => {
                self.handle_heartbeat_response(message.from, read_round, last_index);
                Ok(())
            }
            MessageBody::SnapshotProgress { index, received_bytes } => {
                self.handle_snapshot_progress(message.from, index, received_bytes);
                Ok(())
            }
            MessageBody::Propose { commands } => {
                let _ = self.append_commands(commands); // the follower's client retries on timeout
                Ok(())
            }
            MessageBody::ReadIndex { context } => {
                if self.leader_read_index(message.from, context.clone()).is_err() {
                    let reply = self.message(message.from, MessageBody::ReadIndexResponse { context, index: 0 });
                    self.outbox.push(reply);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Appends client commands, local or forwarded by a follower. Refused while a leadership
    /// transfer runs (§3.10): an entry appended after TimeoutNow could reach a majority
    /// without the target, whose log would then be too short to win the election it starts.
    fn append_commands(&mut self, commands: Vec<Bytes>) -> Result<(), ProposeError> {
        if self.transfer_target.is_some() {
            return Err(ProposeError::Busy);
        }
        let bytes: u64 = commands.iter().map(|command| command.len() as u64 + ENTRY_OVERHEAD_BYTES).sum();
        if bytes > self.config.uncommitted_bytes_max {
            return Err(ProposeError::TooLarge);
        }
        if self.uncommitted_bytes > 0 && self.uncommitted_bytes + bytes > self.config.uncommitted_bytes_max {
            return Err(ProposeError::Busy);
        }
        self.uncommitted_bytes += bytes;
        let first_index = self.log.last_index() + 1;
        let entries: Vec<Entry> = commands
            .into_iter()
            .enumerate()
            .map(|(offset, data)| Entry {
                term: self.term,
                index: first_index + offset as u64,
                kind: EntryKind::Normal,
                data,
            })
            .collect();
        self.append_to_log(&entries);
        self.broadcast_pending = true;
        let single_voter = self.conf.voters == [self.config.id] && self.conf.voters_outgoing.is_empty();
        if single_voter || self.config.is_sabotaged(Sabotage::LeaderCountsUndurableEntries) {
            self.leader_self_persisted();
        }
        Ok(())
    }

    /// The leader's own copy counts toward the majority only once durable.
    fn leader_self_persisted(&mut self) {
        if self.maybe_commit() {
            self.on_commit_advanced();
        }
    }

    /// Commits the highest index stored on a majority, if it is of the current term
    /// (§5.4.2, Figure 8, R4).
    fn maybe_commit(&mut self) -> bool {
        let own_index = if self.config.is_sabotaged(Sabotage::LeaderCountsUndurableEntries) {
            self.log.last_index()
        } else {
            self.log.durable_index().min(self.log.last_index())
        };
        let match_index = |voter: NodeId| {
            if voter == self.config.id {
                own_index
            } else {
                self.progress.get(&voter).map_or(0, |progress| progress.match_index)
            }
        };
        let quorum_index = quorum::joint_committed_index(&self.conf.voters, &self.conf.voters_outgoing, match_index);
        let counted_term_ok = self.log.term(quorum_index) == Some(self.term)
            || (self.config.is_sabotaged(Sabotage::CommitPreviousTermByCounting)
                && quorum_index <= self.log.last_index());
        if quorum_index > self.log.committed && counted_term_ok {
            self.log.commit_to(quorum_index);
            return true;
        }
        false
    }

    fn on_commit_advanced(&mut self) {
        if self.log.term(self.log.committed) == Some(self.term) && !self.reads_before_commit.is_empty() {
            for (requester, context) in std::mem::take(&mut self.reads_before_commit) {
                let _ = self.leader_read_index(requester, context);
            }
        }
        // Idle followers learn the new commit index now; busy ones with their next append.
        for peer in self.peers() {
            self.send_commit_if_idle(peer);
        }
        self.maybe_step_down_when_removed();
    }

    fn handle_append_success(&mut self, from: NodeId, index: Index) {
        let Some(progress) = self.progress.get_mut(&from) else { return };
        if !progress.maybe_update(index) {
            return;
        }
        match progress.state {
            ProgressState::Probe => progress.become_replicate(),
            ProgressState::Snapshot if progress.match_index >= progress.pending_snapshot => progress.become_probe(),
            ProgressState::Snapshot => {}
            ProgressState::Replicate => progress.inflights.free_to(index),
        }
        if self.maybe_commit() {
            self.on_commit_advanced();
        }
        self.send_appends_while_possible(from);
        self.send_commit_if_idle(from);
        self.maybe_send_timeout_now(from);
    }

    /// A follower with nothing in flight that does not know the latest commit index gets
    /// it now (R5) instead of waiting for the next heartbeat.
    fn send_commit_if_idle(&mut self, peer: NodeId) {
        let Some(progress) = self.progress.get(&peer) else { return };
        let idle = progress.state == ProgressState::Replicate && progress.inflights.count() == 0;
        if idle && progress.sent_commit < self.log.committed.min(progress.match_index) {
            self.send_append(peer, true);
        }
    }

    fn handle_append_reject(&mut self, from: NodeId, rejected: Index, hint_index: Index, hint_term: Term) {
        let next_probe = if hint_term > 0 { self.log.find_conflict_by_term(hint_index, hint_term) } else { hint_index };
        let Some(progress) = self.progress.get_mut(&from) else { return };
        if progress.maybe_decrease_to(rejected, next_probe) {
            if progress.state == ProgressState::Replicate {
                progress.become_probe();
            }
            self.send_append(from, true);
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64, last_index: Index) {
        let Some(progress) = self.progress.get_mut(&from) else { return };
        progress.acknowledged_read_round = progress.acknowledged_read_round.max(read_round);
        if last_index < progress.match_index {
            // The follower lost entries it acknowledged (or this answer is stale): probe it
            // from its log's end. Lowering match never lowers the commit index.
            progress.match_index = last_index;
            progress.become_probe();
        }
        match progress.state {
            ProgressState::Probe => progress.probe_sent = false,
            // Appends in flight may have died with a restarted follower; without a free
            // slot nothing would ever be sent to it again (found by the chaos tests).
            ProgressState::Replicate if progress.inflights.full() => progress.inflights.free_first_one(),
            _ => {}
        }
        let behind = progress.match_index < self.log.last_index();
        if behind {
            self.send_append(from, true);
        }
        self.release_confirmed_reads();
        self.maybe_send_timeout_now(from);
    }

    fn send_appends_while_possible(&mut self, peer: NodeId) {
        let bound = self.config.inflight_messages_max + 1;
        for _ in 0..bound {
            let caught_up = self.progress.get(&peer).is_none_or(|progress| progress.next_index > self.log.last_index());
            if caught_up || !self.send_append(peer, false) {
                break;
            }
        }
    }

    fn broadcast_append(&mut self) {
        for peer in self.peers() {
            self.send_appends_while_possible(peer);
        }
    }

    /// Sends AppendEntries (or a snapshot when the entries are compacted) to `peer`;
    /// false if nothing was sent.
    fn send_append(&mut self, peer: NodeId, send_if_empty: bool) -> bool {
        let Some(progress) = self.progress.get(&peer) else { return false };
        if progress.is_paused() {
            return false;
        }
        let next_index = progress.next_index;
        let prev_log_index = next_index - 1;
        let prev_log_term = self.log.term(prev_log_index);
        let entries = self.log.entries(next_index, self.log.last_index() + 1, self.config.append_size_bytes_max);
        let (Some(prev_log_term), Ok(entries)) = (prev_log_term, entries) else {
            return self.send_snapshot(peer);
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let progress = self.progress.get_mut(&peer).expect("checked above");
        if let Some(last) = entries.last() {
            if progress.state == ProgressState::Replicate {
                let bytes: u64 = entries.iter().map(Entry::size_bytes).sum();
                progress.next_index = last.index + 1;
                progress.inflights.add(last.index, bytes);
            }
        }
        if progress.state == ProgressState::Probe {
            progress.probe_sent = true;
        }
        let commit = self.log.committed;
        let last_sent_index = entries.last().map_or(prev_log_index, |entry| entry.index);
        progress.sent_commit = progress.sent_commit.max(commit.min(last_sent_index));
        let body = MessageBody::Append { prev_log_index, prev_log_term, entries, commit };
        let message = self.message(peer, body);
        self.outbox.push(message);
        true
    }

    /// Starts sending the latest snapshot to `peer` (its next entries were compacted).
    fn send_snapshot(&mut self, peer: NodeId) -> bool {
        let Ok(snapshot) = self.log.storage.snapshot() else { return false };
        if snapshot.meta.index == 0 {
            return false;
        }
        let Some(progress) = self.progress.get_mut(&peer) else { return false };
        progress.become_snapshot(snapshot.meta.index);
        self.send_snapshot_chunk(peer)
    }

    /// Sends the next chunk after what `peer` acknowledged (one chunk in flight at a time).
    fn send_snapshot_chunk(&mut self, peer: NodeId) -> bool {
        let Ok(snapshot) = self.log.storage.snapshot() else { return false };
        let chunk_bytes_max = self.config.snapshot_chunk_bytes_max;
        let Some(progress) = self.progress.get_mut(&peer) else { return false };
        if progress.state != ProgressState::Snapshot || progress.snapshot_chunk_in_flight {
            return false;
        }
        if snapshot.meta.index != progress.pending_snapshot {
            // A newer snapshot replaced the one being sent: start it from the beginning.
            progress.become_snapshot(snapshot.meta.index);
        }
        let total_bytes = snapshot.data.len() as u64;
        let offset = progress.snapshot_acknowledged_bytes.min(total_bytes);
        let end = (offset + chunk_bytes_max).min(total_bytes);
        progress.snapshot_chunk_in_flight = true;
        let body = MessageBody::InstallSnapshot {
            meta: snapshot.meta,
            offset,
            data: snapshot.data.slice(offset as usize..end as usize),
            done: end == total_bytes,
        };
        let message = self.message(peer, body);
        self.outbox.push(message);
        true
    }

    fn handle_snapshot_progress(&mut self, from: NodeId, index: Index, received_bytes: u64) {
        let Some(progress) = self.progress.get_mut(&from) else { return };
        if progress.state != ProgressState::Snapshot || progress.pending_snapshot != index {
            return; // stale: about another snapshot
        }
        // Less than acknowledged before means the follower lost its partial copy: resend.
        progress.snapshot_acknowledged_bytes = received_bytes;
        progress.snapshot_chunk_in_flight = false;
        progress.snapshot_wait_ticks = 0;
        self.send_snapshot_chunk(from);
    }

    fn broadcast_heartbeat(&mut self) {
        for peer in self.peers() {
            let Some(progress) = self.progress.get_mut(&peer) else { continue };
            let commit = progress.match_index.min(self.log.committed);
            progress.sent_commit = progress.sent_commit.max(commit);
            let body = MessageBody::Heartbeat { commit, read_round: self.read_round };
            let message = self.message(peer, body);
            self.outbox.push(message);
        }
    }

    // ---------------------------------------------------------------- ReadIndex (R7)

    /// Thesis §6.4: record the commit index, confirm leadership with a heartbeat round,
    /// then the read may be served once that index is applied.
    fn leader_read_index(&mut self, requester: NodeId, context: Bytes) -> Result<(), ProposeError> {
        if self.pending_reads.len() + self.reads_before_commit.len() >= PENDING_READS_MAX {
            return Err(ProposeError::Busy);
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            self.reads_before_commit.push((requester, context));
            return Ok(());
        }
        let index = self.log.committed;
        let alone = quorum::joint_has_quorum(&self.conf.voters, &self.conf.voters_outgoing, &[self.config.id]);
        if alone || self.config.is_sabotaged(Sabotage::ReadIndexWithoutConfirmation) {
            self.answer_read(requester, index, context);
            return Ok(());
        }
        self.read_round += 1;
        let round = self.read_round;
        self.pending_reads.push_back(PendingRead { round, index, requester, context });
        self.broadcast_heartbeat();
        Ok(())
    }

    fn release_confirmed_reads(&mut self) {
        while let Some(read) = self.pending_reads.front() {
            let mut confirmed = vec![self.config.id];
            for (peer, progress) in &self.progress {
                if progress.acknowledged_read_round >= read.round {
                    confirmed.push(*peer);
                }
            }
            if !quorum::joint_has_quorum(&self.conf.voters, &self.conf.voters_outgoing, &confirmed) {
                break;
            }
            let read = self.pending_reads.pop_front().expect("front exists");
            self.answer_read(read.requester, read.index, read.context);
        }
    }

    fn answer_read(&mut self, requester: NodeId, index: Index, context: Bytes) {
        if requester == self.config.id {
            self.read_states.push(ReadState { index, context });
        } else {
            let message = self.message(requester, MessageBody::ReadIndexResponse { context, index });
            self.outbox.push(message);
        }
    }

    // ---------------------------------------------------------------- helpers

    fn forwarding_target(&self) -> Result<NodeId, ProposeError> {
        if !self.config.forward_proposals {
            return Err(ProposeError::NotLeader { leader_hint: self.leader });
        }
        if self.leader == NO_NODE || self.leader == self.config.id {
            return Err(ProposeError::NoLeader);
        }
        Ok(self.leader)
    }

    fn message(&self, to: NodeId, body: MessageBody) -> Message {
        Message { from: self.config.id, to, term: self.term, body }
    }
}

/// Checks an AppendEntries payload: contiguous indexes after `prev_log_index`, terms not
/// decreasing and not above the sender's term.
fn validate_entries(
    term: Term,
    prev_log_index: Index,
    prev_log_term: Term,
    entries: &[Entry],
) -> Result<(), StepError> {
    if prev_log_term > term {
        return Err(StepError::Malformed("previous entry from a future term"));
    }
    let mut expected_index = prev_log_index.checked_add(1).ok_or(StepError::Malformed("index overflow"))?;
    let mut previous_term = prev_log_term;
    for entry in entries {
        if entry.index != expected_index {
            return Err(StepError::Malformed("entries are not contiguous"));
        }
        if entry.term < previous_term || entry.term > term {
            return Err(StepError::Malformed("entry terms out of order"));
        }
        previous_term = entry.term;
        expected_index = expected_index.checked_add(1).ok_or(StepError::Malformed("index overflow"))?;
    }
    Ok(())
}
