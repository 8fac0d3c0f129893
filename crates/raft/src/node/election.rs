//! Elections (§5.2, §5.4.1), pre-vote (thesis §9.6) and the term rules of Figure 2: role
//! changes, vote requests and answers, the election timer.

use bytes::Bytes;

use super::role::{CandidateState, FollowerState, LeaderState, RoleState};
use super::RawNode;
use crate::config::Sabotage;
use crate::quorum::{self, VoteResult};
use crate::storage::Storage;
use crate::types::*;

impl<S: Storage> RawNode<S> {
    /// Enters `term` (or stays in it; never goes back) and restarts the election timer with
    /// a fresh randomized timeout. The caller then installs the new role's state.
    pub(super) fn reset_term(&mut self, term: Term) {
        if term > self.term {
            self.term = term;
            self.vote = NO_NODE;
        }
        assert!(self.term >= term, "term went backwards");
        self.election_elapsed_ticks = 0;
        self.randomize_election_timeout();
    }

    /// Draws this term's election timeout from `election_ticks..2 * election_ticks` (§5.2).
    fn randomize_election_timeout(&mut self) {
        let election_ticks = self.config.election_ticks;
        self.randomized_election_ticks = election_ticks + self.rng.range(0, election_ticks as u64) as u32;
        let randomized = self.randomized_election_ticks;
        assert!(randomized >= election_ticks && randomized < 2 * election_ticks, "election timeout out of range");
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: NodeId) {
        assert!(leader != self.config.id, "a follower of itself");
        self.reset_term(term);
        self.role_state = RoleState::Follower(FollowerState::new(leader));
        assert!(self.term >= term && self.leader() == leader, "a follower of term {term} or later");
    }

    pub(super) fn become_pre_candidate(&mut self) {
        assert!(!self.is_leader(), "a leader does not campaign");
        let term_before = self.term;
        self.role_state = RoleState::PreCandidate(CandidateState::new());
        self.election_elapsed_ticks = 0;
        self.randomize_election_timeout();
        self.request_votes_with(true, false);
        // Pre-vote never raises the term by itself; winning it starts the real campaign.
        let campaigning = matches!(self.role_state, RoleState::Candidate(_));
        assert!(self.term == term_before || (campaigning && self.term == term_before + 1), "pre-vote changed the term");
    }

    pub(super) fn become_candidate(&mut self) {
        self.start_campaign(false);
        assert!(self.campaign_state().is_some_and(|campaign| campaign.own_vote_unhanded), "own vote not yet durable");
    }

    /// Becomes a candidate of the next term and asks for votes; `transfer` sends
    /// `TransferVote`s (a leadership-transfer election, answered inside leader leases).
    pub(super) fn start_campaign(&mut self, transfer: bool) {
        assert!(!self.is_leader(), "a leader does not campaign");
        let term = self.term + 1;
        self.reset_term(term);
        self.vote = self.config.id;
        self.role_state = RoleState::Candidate(CandidateState::new());
        self.request_votes_with(false, transfer);
        assert_eq!(self.term, term, "a campaign stays in its term");
    }

    /// Sends (pre-)vote requests and counts this node's own vote (§5.2): at once for a
    /// pre-vote, once durable for a vote (see `CandidateState::own_vote_unhanded`).
    /// `transfer` sends `TransferVote`s (a leadership-transfer election, answered inside
    /// leader leases).
    pub(super) fn request_votes_with(&mut self, pre_vote: bool, transfer: bool) {
        match &mut self.role_state {
            RoleState::PreCandidate(campaign) if pre_vote => {
                campaign.record(self.config.id, true);
                if self.tally() == VoteResult::Won {
                    return self.win_election(pre_vote);
                }
            }
            RoleState::Candidate(campaign) if !pre_vote => {
                assert_eq!(self.vote, self.config.id, "a candidate votes for itself");
                campaign.own_vote_unhanded = true;
            }
            _ => unreachable!("votes requested outside a campaign"),
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

    /// The hard state recording the own vote is durable: it counts now (Figure 2).
    pub(super) fn count_own_vote(&mut self) {
        let RoleState::Candidate(campaign) = &mut self.role_state else { return };
        if campaign.own_vote_unhanded || campaign.has_answer_from(self.config.id) {
            return;
        }
        campaign.record(self.config.id, true);
        match self.tally() {
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, NO_NODE);
            }
            VoteResult::Pending => {}
        }
    }

    /// The campaign's outcome so far (counting only voters of the latest configuration).
    pub(super) fn tally(&self) -> VoteResult {
        let campaign = self.campaign_state().expect("a tally outside a campaign");
        quorum::joint_vote_result(&self.conf.voters, &self.conf.voters_outgoing, &campaign.votes)
    }

    pub(super) fn win_election(&mut self, pre_vote: bool) {
        assert_eq!(self.tally(), VoteResult::Won, "an election won without a quorum");
        if pre_vote {
            self.become_candidate();
        } else {
            self.become_leader();
        }
    }

    pub(super) fn become_leader(&mut self) {
        assert!(matches!(self.role_state, RoleState::Candidate(_)), "only a candidate becomes leader");
        let term = self.term;
        self.reset_term(term);
        self.role_state = RoleState::Leader(LeaderState::new());
        let next_index = self.log.last_index() + 1;
        self.sync_progress(next_index);
        // §8: a no-op entry of the new term lets earlier entries commit with it (Figure 8).
        let blank = Entry { term, index: next_index, kind: EntryKind::Blank, data: Bytes::new() };
        self.append_to_log(&[blank]);
        self.leader_state_mut().broadcast_pending = true;
        self.leader_self_persisted();
        // A leader that finds its configuration joint (its predecessor crashed mid-change)
        // leaves it as soon as the joint entry is applied here (§4.3).
        self.maybe_leave_joint();
        assert_eq!(self.log.last_term(), term, "a new leader's log ends in its own term");
    }

    pub(super) fn tick_election(&mut self) {
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
        // Leadership needs this node's own vote to be durable first: never within a tick.
        assert!(!self.is_leader(), "a tick made a leader");
        assert!(!promotable || self.election_elapsed_ticks < self.randomized_election_ticks, "an election overdue");
    }

    /// Applies Raft's term rules (§5.1, Figure 2 "Rules for Servers"); false if the
    /// message must be ignored.
    pub(super) fn step_term(&mut self, message: &Message) -> bool {
        if message.term > self.term {
            return self.step_higher_term(message);
        }
        if message.term < self.term {
            self.step_lower_term(message);
            return false;
        }
        true
    }

    pub(super) fn step_higher_term(&mut self, message: &Message) -> bool {
        let heard = match &message.body {
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
        };
        // Only (pre-)vote requests and granted pre-votes leave this node's term unchanged.
        let keeps_term = matches!(
            message.body,
            MessageBody::PreVote { .. } | MessageBody::Vote { .. } | MessageBody::PreVoteResponse { reject: false }
        );
        assert!(keeps_term || self.term == message.term, "a higher term not adopted");
        heard
    }

    pub(super) fn step_lower_term(&mut self, message: &Message) {
        assert!(message.term < self.term, "a message of term {} is not stale", message.term);
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
    pub(super) fn in_leader_lease(&self) -> bool {
        self.config.check_quorum && self.leader() != NO_NODE && self.election_elapsed_ticks < self.config.election_ticks
    }

    /// RequestVote receiver (§5.2, §5.4.1 election restriction, R6).
    pub(super) fn handle_vote_request(&mut self, message: &Message) {
        let (pre_vote, last_log_index, last_log_term) = match message.body {
            MessageBody::PreVote { last_log_index, last_log_term } => (true, last_log_index, last_log_term),
            MessageBody::Vote { last_log_index, last_log_term }
            | MessageBody::TransferVote { last_log_index, last_log_term } => (false, last_log_index, last_log_term),
            _ => unreachable!("only vote requests"),
        };
        let can_vote = self.vote == message.from
            || (self.vote == NO_NODE && self.leader() == NO_NODE)
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
        assert!(!grant || self.vote == message.from || pre_vote, "a granted vote is recorded");
        self.held.push(Message { from: self.config.id, to: message.from, term, body });
    }

    pub(super) fn handle_vote_response(&mut self, message: &Message) {
        let (pre_vote, reject) = match message.body {
            MessageBody::PreVoteResponse { reject } => (true, reject),
            MessageBody::VoteResponse { reject } => (false, reject),
            _ => unreachable!("only vote responses"),
        };
        let campaign = match &mut self.role_state {
            RoleState::PreCandidate(campaign) if pre_vote => campaign,
            RoleState::Candidate(campaign) if !pre_vote => campaign,
            _ => return, // a late answer to an earlier campaign
        };
        if campaign.has_answer_from(message.from) {
            return; // a duplicate
        }
        campaign.record(message.from, !reject);
        match self.tally() {
            VoteResult::Won => self.win_election(pre_vote),
            VoteResult::Lost => {
                let term = self.term;
                self.become_follower(term, NO_NODE);
            }
            VoteResult::Pending => {}
        }
    }
}
