//! The Raft state machine: elections (§5.2), log replication (§5.3), safety (§5.4),
//! pre-vote and check-quorum (thesis §9.6, §6.2), ReadIndex (thesis §6.4).
//!
//! [`RawNode`] is one type whose `impl` blocks are spread over one file per concern:
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the type, its fields and their invariants, construction, the inputs |
//! | `role.rs` | role-typed state (`RoleState`: follower, candidates, leader) and its invariants |
//! | `ready.rs` | the ready/persist pipeline (`Ready`, `on_persisted`) |
//! | `election.rs` | role changes, (pre-)vote requests and answers, term rules, election timer |
//! | `follower.rs` | validation of received messages, the AppendEntries receiver |
//! | `leader.rs` | heartbeats, check-quorum, proposals, replication and commitment |
//! | `snapshot.rs` | snapshot transfer, both sides |
//! | `read_index.rs` | ReadIndex |
//! | `membership_ops.rs` | configuration changes and leadership transfer |
//! | `status.rs` | read-only views |

use std::collections::VecDeque;

use bytes::Bytes;

use crate::config::{Config, ConfigError};
use crate::log::RaftLog;
use crate::membership::ConfChange;
use crate::progress::ProgressState;
use crate::rng::SplitMix64;
use crate::storage::Storage;
use crate::types::*;
use role::{FollowerState, RoleState};

mod election;
mod follower;
mod leader;
mod membership_ops;
mod read_index;
mod ready;
mod role;
mod snapshot;
mod status;

/// Highest log index accepted from the network (far beyond any real log; keeps `index + 1`
/// arithmetic from overflowing on hostile input).
const INDEX_PLAUSIBLE_MAX: Index = u64::MAX >> 2;

/// Highest term accepted from the network or the disk (keeps `term + 1` from wrapping: a
/// candidate of term `u64::MAX` would otherwise campaign in that same term again; found by
/// the assertions in `become_candidate` under tests/fuzz_step.rs).
pub(super) const TERM_PLAUSIBLE_MAX: Term = u64::MAX >> 2;

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

/// A Raft node without I/O.
///
/// Invariants (checked by `assert_invariants` after every input):
/// - `term` never decreases; `vote` changes only when `term` increases or from `NO_NODE`.
/// - Only a leader appends entries of its own term, and never removes its own entries.
/// - Messages that reveal state (votes, acknowledgements) leave only after that state is
///   durable (`held` → `persist_queue` → `outbox`).
/// - What only one role has lives in `role_state` (see `role.rs`), built fresh on every
///   role change; the fields here hold for every role.
pub struct RawNode<S: Storage> {
    config: Config,
    /// Seeded from the configuration; drawn once per role change (the election timeout).
    rng: SplitMix64,
    log: RaftLog<S>,
    /// Invariant: never decreases.
    term: Term,
    /// Invariant: this node while it is a candidate or the leader (a pre-candidate has not
    /// voted in the next term yet).
    vote: NodeId,
    /// The role and the state only that role has.
    role_state: RoleState,
    /// The latest configuration in the log, committed or not: every decision uses it
    /// (thesis §4.1). Derived from `applied_conf` plus `pending_confs`.
    conf: ConfState,
    /// The configuration as of the last entry handed out to apply (`conf_state()`).
    applied_conf: ConfState,
    /// Index of the last Config entry folded into `applied_conf` (0: none since the base).
    /// Invariant: at most the applied index.
    applied_conf_index: Index,
    /// Config entries in the log above the applied index, in log order. Invariant: indexes
    /// strictly increase, each above `applied_conf_index` and within the log.
    pending_confs: Vec<(Index, (ConfChange, Option<ConfState>))>,
    /// Ticks since the election timer last restarted (a leader: since the last
    /// check-quorum round).
    election_elapsed_ticks: u32,
    /// This term's randomized election timeout. Invariant: in
    /// `election_ticks..2 * election_ticks` (§5.2).
    randomized_election_ticks: u32,
    /// ReadIndex rounds started by this node as leader; never decreases, so a round number
    /// is never reused (answers of an earlier leadership carry a lower term and are dropped).
    read_round: u64,
    /// Reads answered and not yet handed out in a `Ready`.
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
    /// `Config::snapshot_bytes_max`). Kept across role changes: a new leader sending the
    /// same snapshot continues it.
    incoming_snapshot: Option<(SnapshotMeta, bytes::BytesMut)>,
    /// While set, this node neither votes nor campaigns (see `Config::abstain_until_caught_up`);
    /// `Some(0)` until a leader announced its commit index, then `Some(target)`.
    abstain_until: Option<Index>,
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
        if term > TERM_PLAUSIBLE_MAX {
            return Err(ConfigError(format!("storage: term {term} out of range")));
        }
        let vote = if term > hard_state.term { NO_NODE } else { hard_state.vote };
        let soft_state = SoftState { role: Role::Follower, leader: NO_NODE, term };
        let mut node = RawNode {
            rng: SplitMix64::new(config.random_seed ^ config.id.rotate_left(32)),
            config,
            log,
            term,
            vote,
            role_state: RoleState::Follower(FollowerState::new(NO_NODE)),
            conf: initial.conf_state.clone(),
            applied_conf: initial.conf_state.clone(),
            applied_conf_index: 0,
            pending_confs: Vec::new(),
            election_elapsed_ticks: 0,
            randomized_election_ticks: 0,
            read_round: 0,
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
        assert!(node.term >= hard_state.term, "recovered term below the durable one");
        assert!(matches!(node.role_state, RoleState::Follower(_)), "a node starts as a follower");
        assert!(node.vote == NO_NODE || node.term == hard_state.term, "a vote carried into a later term");
        node.assert_invariants();
        Ok(node)
    }

    /// Advances logical time by one tick (elections, heartbeats, check-quorum).
    pub fn tick(&mut self) {
        let (term_before, commit_before) = (self.term, self.log.committed);
        if self.is_leader() {
            self.tick_leader();
        } else {
            self.tick_election();
        }
        self.assert_progressed_from(term_before, commit_before);
    }

    /// Processes a message received from a peer. Bad input is refused with an error and
    /// changes nothing; this never panics on network input.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        let (term_before, commit_before) = (self.term, self.log.committed);
        let result = self.step_message(message);
        self.assert_progressed_from(term_before, commit_before);
        result
    }

    /// `step` without the checks after it.
    fn step_message(&mut self, message: Message) -> Result<(), StepError> {
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
        match self.role_state {
            RoleState::Leader(_) => self.step_leader(message),
            RoleState::Candidate(_) | RoleState::PreCandidate(_) => self.step_candidate(message),
            RoleState::Follower(_) => self.step_follower(message),
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
        if self.is_leader() {
            let result = self.append_commands(commands);
            self.assert_invariants();
            return result;
        }
        let leader = self.forwarding_target()?;
        assert!(leader != self.config.id && leader != NO_NODE, "forwarding to no other node");
        let message = self.message(leader, MessageBody::Propose { commands });
        self.held.push(message);
        Ok(())
    }

    /// Requests a linearizable read (R7); a [`ReadState`] with `context` appears in a later
    /// `Ready` once the leader has confirmed it still leads.
    pub fn read_index(&mut self, context: Bytes) -> Result<(), ProposeError> {
        if self.is_leader() {
            let result = self.leader_read_index(self.config.id, context);
            self.assert_invariants();
            return result;
        }
        let leader = self.forwarding_target()?;
        assert!(leader != self.config.id && leader != NO_NODE, "forwarding to no other node");
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
        let result = self.leader_propose_conf_change(change);
        self.assert_invariants();
        result
    }

    /// Transfers leadership to `target` (thesis §3.10): the leader refuses proposals
    /// ([`ProposeError::Busy`]) meanwhile, brings `target` up to date, then tells it to
    /// campaign at once. Abandoned after an election timeout. Leader only; `target` must be
    /// a voter ([`ProposeError::InvalidConfChange`] otherwise); `target` == self does nothing.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), ProposeError> {
        let result = self.start_leader_transfer(target);
        assert!(result.is_err() || self.is_leader(), "only a leader transfers leadership");
        self.assert_invariants();
        result
    }

    /// Starts an election now (tests and scenarios), skipping pre-vote.
    pub fn campaign(&mut self) {
        let leading = self.is_leader();
        if self.may_campaign() && !leading && !self.log.pending_snapshot() {
            self.become_candidate();
        }
        // A campaign wins only once this node's own vote is durable: never here.
        assert_eq!(self.is_leader(), leading, "a campaign changed leadership at once");
        self.assert_invariants();
    }

    /// After an input: term and commit index never decrease, and the invariants hold.
    fn assert_progressed_from(&self, term_before: Term, commit_before: Index) {
        assert!(self.term >= term_before, "term went backwards: {term_before} to {}", self.term);
        assert!(self.log.committed >= commit_before, "commit index went backwards");
        self.assert_invariants();
    }

    /// The invariants written at the fields of [`RawNode`] and of its role's state (cheap:
    /// O(members); on in release).
    pub(super) fn assert_invariants(&self) {
        let (election_ticks, randomized) = (self.config.election_ticks, self.randomized_election_ticks);
        assert!(randomized >= election_ticks && randomized < 2 * election_ticks, "election timeout out of range");
        assert_eq!(
            self.is_leader(),
            self.leader() == self.config.id,
            "leader {} in role {:?}",
            self.leader(),
            self.role()
        );
        let incoming_bytes = self.incoming_snapshot.as_ref().map_or(0, |(_, buffer)| buffer.len() as u64);
        assert!(incoming_bytes <= self.config.snapshot_bytes_max, "incoming snapshot over snapshot_bytes_max");
        self.assert_configurations();
        self.assert_role_state();
        self.assert_persist_pipeline();
        self.log.assert_invariants();
    }

    /// The configuration fields: pending entries ordered, above the applied ones, in the log.
    fn assert_configurations(&self) {
        assert!(self.applied_conf_index <= self.log.applied, "a configuration adopted before it is applied");
        let mut previous_index = self.applied_conf_index;
        for (index, _) in &self.pending_confs {
            assert!(*index > previous_index, "pending configuration {index} out of order");
            previous_index = *index;
        }
        assert!(previous_index <= self.log.last_index(), "a pending configuration beyond the log");
    }

    pub(super) fn is_voter(&self, id: NodeId) -> bool {
        self.conf.is_voter(id)
    }

    /// Nodes the leader replicates to: members of the latest and of the applied
    /// configuration (a removed node still learns of its removal), except itself.
    pub(super) fn peers(&self) -> Vec<NodeId> {
        let mut peers = self.conf.members();
        peers.extend(self.applied_conf.members());
        peers.sort_unstable();
        peers.dedup();
        peers.retain(|peer| *peer != self.config.id);
        assert!(peers.windows(2).all(|pair| pair[0] < pair[1]), "peers sorted without duplicates");
        peers
    }

    pub(super) fn forwarding_target(&self) -> Result<NodeId, ProposeError> {
        if !self.config.forward_proposals {
            return Err(ProposeError::NotLeader { leader_hint: self.leader() });
        }
        let leader = self.leader();
        if leader == NO_NODE || leader == self.config.id {
            return Err(ProposeError::NoLeader);
        }
        Ok(leader)
    }

    pub(super) fn message(&self, to: NodeId, body: MessageBody) -> Message {
        assert!(to != self.config.id, "a message to oneself");
        Message { from: self.config.id, to, term: self.term, body }
    }
}
