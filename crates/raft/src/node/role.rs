//! Role-typed state: what only one role has lives in that role's variant of [`RoleState`].
//! Becoming a role constructs its state fresh, so no state of an earlier role (votes,
//! progress, queued reads, a leadership transfer) can survive a role change.
//!
//! The invariants of each state are written next to its fields and checked by
//! [`RawNode::assert_role_state`] after every input.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{RawNode, PENDING_READS_MAX};
use crate::progress::Progress;
use crate::quorum::VoteResult;
use crate::storage::Storage;
use crate::types::*;

/// The node's role and the state only that role has.
pub(super) enum RoleState {
    /// A follower, or a learner: a follower that is not a voter of the latest
    /// configuration (see [`RawNode::role`]).
    Follower(FollowerState),
    /// Collecting pre-votes for the next term without having increased its own (thesis §9.6).
    PreCandidate(CandidateState),
    /// Collecting votes for the current term (§5.2).
    Candidate(CandidateState),
    /// Handles proposals and replicates the log (§5.3).
    Leader(LeaderState),
}

/// State of a follower (or learner) in the current term.
pub(super) struct FollowerState {
    /// The leader heard from in this term, or [`NO_NODE`]. Invariant: never this node.
    pub(super) leader: NodeId,
}

/// State of one campaign (pre-vote or vote) in the current term.
pub(super) struct CandidateState {
    /// Answers received in this campaign, (node, granted), this node's own vote included
    /// once it counts. Invariants: at most one answer per node, at most one per member of
    /// the latest or the applied configuration; once an answer is counted the tally is
    /// undecided (a decided campaign has changed role in the same input; before any answer
    /// a configuration without voters, written by a faulty leader, is already "won").
    pub(super) votes: Vec<(NodeId, bool)>,
    /// Candidate only: the hard state recording this node's vote for itself is not yet
    /// handed out in a `Ready`; the own vote counts only once that hard state is durable
    /// (Figure 2: persist before acting). Invariant: false for a pre-candidate; while true,
    /// the own vote is not in `votes`.
    pub(super) own_vote_unhanded: bool,
}

/// A leadership transfer in progress (thesis §3.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LeaderTransfer {
    /// Invariant: a voter of the latest configuration, not this node.
    pub(super) target: NodeId,
    /// Ticks since the transfer began. Invariant: below the election timeout (a transfer
    /// not done by then is abandoned).
    pub(super) elapsed_ticks: u32,
}

/// A ReadIndex request waiting for its leadership confirmation round (thesis §6.4).
pub(super) struct PendingRead {
    /// The heartbeat round whose acknowledgement by a quorum confirms this read.
    pub(super) round: u64,
    /// The commit index when the read arrived: it is served at this index.
    pub(super) index: Index,
    /// Who asked (this node, or a follower to answer with `ReadIndexResponse`).
    pub(super) requester: NodeId,
    /// The requester's context, returned with the answer.
    pub(super) context: Bytes,
}

/// State of a leader in the current term.
pub(super) struct LeaderState {
    /// One entry per replication target. Invariants: the keys are exactly
    /// [`RawNode::peers`] (never this node); each match index is within the leader's log.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Ticks since the last heartbeat broadcast. Invariant: below `heartbeat_ticks` after
    /// every input.
    pub(super) heartbeat_elapsed_ticks: u32,
    /// A leadership transfer in progress; proposals are refused meanwhile.
    pub(super) transfer: Option<LeaderTransfer>,
    /// Bytes appended in this leadership and not yet handed out to apply. Invariant: at
    /// most `uncommitted_bytes_max` (back-pressure on proposals).
    pub(super) uncommitted_bytes: u64,
    /// New entries wait to be sent (by the next `ready`).
    pub(super) broadcast_pending: bool,
    /// ReadIndex requests waiting for confirmation, oldest first. Invariants: rounds
    /// strictly increase, none above the node's `read_round`; each index is committed;
    /// together with `reads_before_commit` at most `PENDING_READS_MAX` (a bound on the queue).
    pub(super) pending_reads: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term (their index
    /// would not be safe). Invariant: empty once an entry of the leader's term is committed.
    pub(super) reads_before_commit: Vec<(NodeId, Bytes)>,
}

impl FollowerState {
    /// A follower of `leader` ([`NO_NODE`]: not known yet).
    pub(super) fn new(leader: NodeId) -> Self {
        FollowerState { leader }
    }
}

impl CandidateState {
    /// A campaign without any vote yet.
    pub(super) fn new() -> Self {
        CandidateState { votes: Vec::new(), own_vote_unhanded: false }
    }

    /// True if `voter` has answered in this campaign.
    pub(super) fn has_answer_from(&self, voter: NodeId) -> bool {
        self.votes.iter().any(|(answered, _)| *answered == voter)
    }

    /// Records `voter`'s answer (its first one; later ones are ignored by the caller).
    pub(super) fn record(&mut self, voter: NodeId, granted: bool) {
        assert!(!self.has_answer_from(voter), "a second answer from {voter:x}");
        self.votes.push((voter, granted));
        assert!(self.has_answer_from(voter), "the answer is recorded");
    }
}

impl LeaderState {
    /// A new leadership: no peers yet (see `sync_progress`), nothing in flight or queued.
    pub(super) fn new() -> Self {
        LeaderState {
            progress: BTreeMap::new(),
            heartbeat_elapsed_ticks: 0,
            transfer: None,
            uncommitted_bytes: 0,
            broadcast_pending: false,
            pending_reads: VecDeque::new(),
            reads_before_commit: Vec::new(),
        }
    }

    /// The target of the leadership transfer in progress, if any.
    pub(super) fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|transfer| transfer.target)
    }

    /// Reads queued, confirmed or not (bounded by `PENDING_READS_MAX`).
    pub(super) fn queued_reads(&self) -> usize {
        self.pending_reads.len() + self.reads_before_commit.len()
    }
}

impl<S: Storage> RawNode<S> {
    /// Current role (a follower that is not a voter of the latest configuration is a learner).
    pub fn role(&self) -> Role {
        match &self.role_state {
            RoleState::Follower(_) if self.is_voter(self.config.id) => Role::Follower,
            RoleState::Follower(_) => Role::Learner,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }

    /// Known leader, or [`NO_NODE`].
    pub fn leader(&self) -> NodeId {
        match &self.role_state {
            RoleState::Follower(follower) => follower.leader,
            RoleState::PreCandidate(_) | RoleState::Candidate(_) => NO_NODE,
            RoleState::Leader(_) => self.config.id,
        }
    }

    /// True if this node leads.
    pub(super) fn is_leader(&self) -> bool {
        matches!(self.role_state, RoleState::Leader(_))
    }

    /// The leader's state; `None` on any other role.
    pub(super) fn leader_state(&self) -> Option<&LeaderState> {
        match &self.role_state {
            RoleState::Leader(leader) => Some(leader),
            _ => None,
        }
    }

    /// The leader's state, for a caller that runs only on a leader.
    pub(super) fn leader_state_mut(&mut self) -> &mut LeaderState {
        match &mut self.role_state {
            RoleState::Leader(leader) => leader,
            _ => unreachable!("leader state outside leadership"),
        }
    }

    /// The campaign's state on a candidate or pre-candidate; `None` on any other role.
    pub(super) fn campaign_state(&self) -> Option<&CandidateState> {
        match &self.role_state {
            RoleState::PreCandidate(campaign) | RoleState::Candidate(campaign) => Some(campaign),
            _ => None,
        }
    }

    /// The invariants written at the fields of the current role's state (cheap: O(members)).
    pub(super) fn assert_role_state(&self) {
        match &self.role_state {
            RoleState::Follower(follower) => {
                assert!(follower.leader != self.config.id, "a follower follows itself");
            }
            RoleState::PreCandidate(campaign) => {
                assert!(!campaign.own_vote_unhanded, "a pre-candidate's vote waits for durability");
                self.assert_campaign(campaign);
            }
            RoleState::Candidate(campaign) => {
                assert_eq!(self.vote, self.config.id, "a candidate votes for itself");
                self.assert_campaign(campaign);
            }
            RoleState::Leader(leader) => {
                assert_eq!(self.vote, self.config.id, "a leader voted for itself");
                self.assert_leader_state(leader);
            }
        }
    }

    fn assert_campaign(&self, campaign: &CandidateState) {
        let answers_max = self.conf.members().len() + self.applied_conf.members().len() + 1;
        assert!(campaign.votes.len() <= answers_max, "more answers than members");
        for (position, (voter, _)) in campaign.votes.iter().enumerate() {
            assert!(!campaign.votes[..position].iter().any(|(other, _)| other == voter), "two answers from {voter:x}");
        }
        let own_counted = campaign.has_answer_from(self.config.id);
        assert!(!(campaign.own_vote_unhanded && own_counted), "an own vote counted before it is durable");
        let undecided = campaign.votes.is_empty() || self.tally() == VoteResult::Pending;
        assert!(undecided, "a decided campaign did not change role");
    }

    fn assert_leader_state(&self, leader: &LeaderState) {
        assert_eq!(self.log.last_term(), self.term, "a leader's log ends in its own term");
        assert!(leader.heartbeat_elapsed_ticks < self.config.heartbeat_ticks, "a heartbeat overdue");
        assert!(self.election_elapsed_ticks < self.config.election_ticks, "check-quorum overdue");
        assert!(leader.uncommitted_bytes <= self.config.uncommitted_bytes_max, "uncommitted bytes over the bound");
        let peers = self.peers();
        assert!(leader.progress.keys().eq(peers.iter()), "progress {:?} for peers {peers:?}", leader.progress.keys());
        let next_index_max = self.log.last_index() + 1;
        for progress in leader.progress.values() {
            assert!(progress.match_index < next_index_max, "match {} beyond the log", progress.match_index);
            progress.assert_invariants();
        }
        if let Some(transfer) = leader.transfer {
            assert!(transfer.target != self.config.id && self.conf.is_voter(transfer.target), "transfer target");
            assert!(transfer.elapsed_ticks < self.config.election_ticks, "a transfer outlived its timeout");
        }
        self.assert_leader_reads(leader);
    }

    fn assert_leader_reads(&self, leader: &LeaderState) {
        assert!(leader.queued_reads() <= PENDING_READS_MAX, "read queue over its bound");
        let own_term_committed = self.log.term(self.log.committed) == Some(self.term);
        assert!(!own_term_committed || leader.reads_before_commit.is_empty(), "reads wait for a commit that happened");
        let mut previous_round = 0;
        for read in &leader.pending_reads {
            assert!(read.round > previous_round && read.round <= self.read_round, "read round {}", read.round);
            assert!(read.index <= self.log.committed, "a read waits at an uncommitted index");
            previous_round = read.round;
        }
    }
}
