//! Protocol data: log entries, hard state, snapshots and messages (Raft §5, Figure 2).

use bytes::Bytes;

/// A node's identity inside one cluster. `0` means "nobody" (no vote, no known leader).
pub type NodeId = u64;
/// A Raft term (§5.1). Terms only grow.
pub type Term = u64;
/// A log index (§5.3). The first entry has index 1; index 0 is the empty log's "previous entry".
pub type Index = u64;

/// `NodeId` value meaning "no node".
pub const NO_NODE: NodeId = 0;

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A client command for the state machine.
    Normal,
    /// The no-op a new leader appends at the start of its term so that earlier entries
    /// commit with it (§5.4.2, §8).
    Blank,
    /// A membership change (the data is [`crate::ConfChange::encode`]).
    Config,
}

/// One log entry: (term, index, command) (R2). `(term, index)` identifies it (§5.3, Log Matching).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position in the log; contiguous, starting at 1.
    pub index: Index,
    /// What the entry carries.
    pub kind: EntryKind,
    /// The command (opaque to the core).
    pub data: Bytes,
}

impl Entry {
    /// Bytes this entry counts for in flow control (payload plus a fixed header estimate).
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// Per-entry overhead used by size accounting.
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

/// State that must be on stable storage before the node answers any RPC (Figure 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    /// Latest term this node has seen.
    pub term: Term,
    /// Candidate voted for in `term`, or [`NO_NODE`].
    pub vote: NodeId,
    /// Highest index known committed. Persisted so a restart re-applies no less than before.
    pub commit: Index,
}

/// Cluster membership.
///
/// Outside a joint configuration `voters_outgoing` is empty and decisions need a majority
/// of `voters`. In a joint configuration C_old,new (thesis §4.3) `voters` is C_new,
/// `voters_outgoing` is C_old, and every decision (election, commitment) needs separate
/// majorities of both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfState {
    /// Members that vote and count towards quorums (C_new while joint).
    pub voters: Vec<NodeId>,
    /// Members that receive the log but do not vote (R10).
    pub learners: Vec<NodeId>,
    /// C_old while in a joint configuration; empty otherwise.
    pub voters_outgoing: Vec<NodeId>,
}

/// Identifies the log prefix a snapshot replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub index: Index,
    /// Term of that entry.
    pub term: Term,
    /// Membership as of `index`.
    pub conf: ConfState,
}

/// A state-machine snapshot with the log position it stands for (§7).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Position and membership.
    pub meta: SnapshotMeta,
    /// The state machine's serialized state (opaque to the core).
    pub data: Bytes,
}

/// A message between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Sender's term (for pre-votes: the term the sender would campaign in).
    pub term: Term,
    /// The RPC.
    pub body: MessageBody,
}

/// The RPCs of Raft (Figure 2) and the extensions this core implements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// Pre-vote request (§9.6 of Ongaro's thesis): would you vote for me in `term`?
    PreVote {
        /// Candidate's last log index.
        last_log_index: Index,
        /// Candidate's last log term.
        last_log_term: Term,
    },
    /// Answer to `PreVote`.
    PreVoteResponse {
        /// True if the pre-vote is refused.
        reject: bool,
    },
    /// RequestVote (§5.2, Figure 2).
    Vote {
        /// Candidate's last log index.
        last_log_index: Index,
        /// Candidate's last log term.
        last_log_term: Term,
    },
    /// Answer to `Vote`.
    VoteResponse {
        /// True if the vote is refused.
        reject: bool,
    },
    /// AppendEntries (§5.3, Figure 2). Also used as the heartbeat when `entries` is empty.
    Append {
        /// Index of the entry before `entries`.
        prev_log_index: Index,
        /// Term of that entry.
        prev_log_term: Term,
        /// Entries to store (may be empty).
        entries: Vec<Entry>,
        /// Leader's commit index (R5).
        commit: Index,
    },
    /// Answer to `Append`.
    AppendResponse {
        /// False: the follower's log now matches the leader's up to `index`.
        /// True: the follower has no entry matching `(prev_log_term, index)`.
        reject: bool,
        /// On success the follower's match index; on reject the rejected `prev_log_index`.
        index: Index,
        /// On reject: the conflict hint (R3). The leader may resume at or below
        /// `hint_index`, whose term at the follower is `hint_term`.
        hint_index: Index,
        /// Term of the follower's entry at `hint_index` (0 if none).
        hint_term: Term,
    },
    /// Heartbeat carrying the commit index (R5) and a ReadIndex context (R7).
    Heartbeat {
        /// `min(leader commit, follower match)`.
        commit: Index,
        /// ReadIndex round identifier (0 when none).
        read_round: u64,
    },
    /// Answer to `Heartbeat`.
    HeartbeatResponse {
        /// Echo of `read_round`.
        read_round: u64,
        /// The follower's last log index: below the leader's match index it reveals a
        /// follower that lost acknowledged entries (wiped data), to be repaired from scratch.
        last_index: Index,
    },
    /// One chunk of InstallSnapshot (§7, Figure 13): the follower's next entries were
    /// compacted (R9). Chunks go one at a time; a lost one is re-sent from the last
    /// offset the follower acknowledged, so a transfer resumes instead of restarting.
    InstallSnapshot {
        /// Position and membership of the snapshot.
        meta: SnapshotMeta,
        /// Byte offset of `data` in the snapshot's data.
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// True for the last chunk.
        done: bool,
    },
    /// The follower's answer to a snapshot chunk: how many bytes of the snapshot at
    /// `index` it holds (the leader continues from there).
    SnapshotProgress {
        /// Index of the snapshot being received.
        index: Index,
        /// Bytes received so far, contiguous from offset 0.
        received_bytes: u64,
    },
    /// Proposals forwarded from a follower to the leader (R1).
    Propose {
        /// Commands to append.
        commands: Vec<Bytes>,
    },
    /// A ReadIndex request forwarded from a follower to the leader (R7).
    ReadIndex {
        /// The follower's request context, echoed back.
        context: Bytes,
    },
    /// The leader's answer to a forwarded ReadIndex.
    ReadIndexResponse {
        /// Echo of the request context.
        context: Bytes,
        /// Commit index the follower must apply before serving the read (0: refused).
        index: Index,
    },
    /// Leadership transfer (thesis §3.10): the leader tells its caught-up target to start
    /// an election at once.
    TimeoutNow,
    /// RequestVote of a leadership-transfer election (thesis §3.10): like `Vote`, but
    /// answered even by servers inside a leader lease (§4.2.3), since the old leader asked
    /// for it.
    TransferVote {
        /// Candidate's last log index.
        last_log_index: Index,
        /// Candidate's last log term.
        last_log_term: Term,
    },
}

impl MessageBody {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResp",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { .. } => "VoteResp",
            MessageBody::Append { .. } => "Append",
            MessageBody::AppendResponse { .. } => "AppendResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::InstallSnapshot { .. } => "InstallSnapshot",
            MessageBody::SnapshotProgress { .. } => "SnapshotProgress",
            MessageBody::Propose { .. } => "Propose",
            MessageBody::ReadIndex { .. } => "ReadIndex",
            MessageBody::ReadIndexResponse { .. } => "ReadIndexResp",
            MessageBody::TimeoutNow => "TimeoutNow",
            MessageBody::TransferVote { .. } => "TransferVote",
        }
    }
}

/// The role a node plays (§5.1), plus pre-candidate (§9.6 of the thesis).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Collecting pre-votes; has not increased its term.
    PreCandidate,
    /// Collecting votes for a new term.
    Candidate,
    /// Handles proposals and replicates the log.
    Leader,
    /// Receives the log without voting (R10).
    Learner,
}

/// The volatile view of who leads (reported in [`crate::Ready`] when it changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// Current leader, or [`NO_NODE`].
    pub leader: NodeId,
    /// Current term.
    pub term: Term,
}

/// A linearizable read that may now be served (R7): once the state machine has applied
/// `index`, reads made under `context` see every write committed before the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// Commit index at the time the read was confirmed.
    pub index: Index,
    /// The caller's request context.
    pub context: Bytes,
}
