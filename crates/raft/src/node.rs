//! The Raft state machine: elections (§5.2), log replication (§5.3), safety (§5.4).
//! (skeleton: implementation in progress)

use bytes::Bytes;

use crate::config::{Config, ConfigError};
use crate::progress::ProgressState;
use crate::storage::{Storage, StorageError};
use crate::types::*;

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
    /// Too many uncommitted bytes; retry later (back-pressure).
    Busy,
    /// The proposal is empty or larger than one message may carry.
    TooLarge,
}

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

/// A Raft node without I/O.
pub struct RawNode<S: Storage> {
    storage: S,
    config: Config,
}

impl<S: Storage> RawNode<S> {
    /// A node recovering from `storage` (an empty storage with voters set starts a new cluster).
    pub fn new(config: Config, storage: S) -> Result<Self, ConfigError> {
        let _ = &storage;
        todo!("{config:?}")
    }

    /// Advances logical time by one tick (elections, heartbeats, check-quorum).
    pub fn tick(&mut self) {
        todo!()
    }

    /// Processes a message received from a peer.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        todo!("{message:?}")
    }

    /// Proposes one command (R1): appended on the leader, forwarded from a follower.
    pub fn propose(&mut self, command: Bytes) -> Result<(), ProposeError> {
        self.propose_batch(vec![command])
    }

    /// Proposes several commands at once; they stay in order.
    pub fn propose_batch(&mut self, commands: Vec<Bytes>) -> Result<(), ProposeError> {
        todo!("{}", commands.len())
    }

    /// Requests a linearizable read (R7); a [`ReadState`] with `context` appears in a later
    /// `Ready` once this node knows it is (or the leader is) still the leader.
    pub fn read_index(&mut self, context: Bytes) -> Result<(), ProposeError> {
        todo!("{context:?}")
    }

    /// Starts an election now (tests and scenarios), skipping pre-vote.
    pub fn campaign(&mut self) {
        todo!()
    }

    /// True if [`RawNode::ready`] has anything to return.
    pub fn has_ready(&self) -> bool {
        todo!()
    }

    /// Collects everything the driver must do now.
    pub fn ready(&mut self) -> Ready {
        todo!()
    }

    /// Reports that what `Ready` number `persist_sequence` (and all before it) asked to
    /// persist is durable. Releases held messages and lets the leader count its own copy.
    pub fn on_persisted(&mut self, persist_sequence: u64) {
        todo!("{persist_sequence}")
    }

    /// The storage (read-only).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, for the driver's writes.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Current role.
    pub fn role(&self) -> Role {
        todo!()
    }

    /// Current term.
    pub fn term(&self) -> Term {
        todo!()
    }

    /// Known leader, or [`NO_NODE`].
    pub fn leader(&self) -> NodeId {
        todo!()
    }

    /// Current hard state (term, vote, commit), persisted or not.
    pub fn hard_state(&self) -> HardState {
        todo!()
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> Index {
        todo!()
    }

    /// Highest index handed out for applying.
    pub fn applied_index(&self) -> Index {
        todo!()
    }

    /// Index of the first entry still in the log (after the snapshot).
    pub fn first_index(&self) -> Index {
        todo!()
    }

    /// Index of the last entry in the log, persisted or not.
    pub fn last_index(&self) -> Index {
        todo!()
    }

    /// Term of the entry at `index` (persisted or not), if still in the log or the snapshot.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        todo!("{index}")
    }

    /// Entries `first_index()..=last_index()`, persisted or not (for checkers and dashboards).
    pub fn log_entries(&self) -> Vec<Entry> {
        todo!()
    }

    /// Voting members.
    pub fn voters(&self) -> &[NodeId] {
        todo!()
    }

    /// On the leader, its view of `peer`'s replication; `None` elsewhere.
    pub fn progress(&self, peer: NodeId) -> Option<ProgressView> {
        todo!("{peer}")
    }
}

#[allow(dead_code)]
fn unused(_: StorageError) {}
