//! The leader: heartbeats and check-quorum (thesis §6.2), proposals (R1), replication and
//! commitment (§5.3, §5.4.2, R4).

use bytes::Bytes;

use super::role::RoleState;
use super::{ProposeError, RawNode, StepError};
use crate::config::Sabotage;
use crate::progress::ProgressState;
use crate::quorum;
use crate::storage::Storage;
use crate::types::*;

impl<S: Storage> RawNode<S> {
    pub(super) fn tick_leader(&mut self) {
        self.leader_state_mut().heartbeat_elapsed_ticks += 1;
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
        if !self.is_leader() {
            return; // stepped down (e.g. removed from the configuration)
        }
        self.tick_leader_transfer();
        if !self.is_leader() {
            return; // an abandoned transfer's leave-joint entry may have removed this node
        }
        self.retry_stalled_snapshots();
        let heartbeat_ticks = self.config.heartbeat_ticks;
        let leader = self.leader_state_mut();
        if leader.heartbeat_elapsed_ticks >= heartbeat_ticks {
            leader.heartbeat_elapsed_ticks = 0;
            self.broadcast_heartbeat();
        }
        let heartbeat_elapsed_ticks = self.leader_state().map_or(0, |leader| leader.heartbeat_elapsed_ticks);
        assert!(heartbeat_elapsed_ticks < heartbeat_ticks, "a heartbeat overdue");
    }

    pub(super) fn quorum_recently_active(&mut self) -> bool {
        let RoleState::Leader(leader) = &mut self.role_state else { unreachable!("check-quorum on a leader") };
        let mut active = vec![self.config.id];
        for (peer, progress) in leader.progress.iter_mut() {
            if progress.recent_active {
                active.push(*peer);
            }
            progress.recent_active = false;
        }
        assert!(leader.progress.values().all(|progress| !progress.recent_active), "a new check-quorum round");
        quorum::joint_has_quorum(&self.conf.voters, &self.conf.voters_outgoing, &active)
    }

    pub(super) fn step_leader(&mut self, message: Message) -> Result<(), StepError> {
        // A higher term deposed this leader in `step_term`; a lower one was dropped there.
        assert_eq!(message.term, self.term, "a leader handles messages of its own term");
        if let Some(progress) = self.leader_state_mut().progress.get_mut(&message.from) {
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
    pub(super) fn append_commands(&mut self, commands: Vec<Bytes>) -> Result<(), ProposeError> {
        let uncommitted_bytes_max = self.config.uncommitted_bytes_max;
        let leader = self.leader_state_mut();
        if leader.transfer.is_some() {
            return Err(ProposeError::Busy);
        }
        let bytes: u64 = commands.iter().map(|command| command.len() as u64 + ENTRY_OVERHEAD_BYTES).sum();
        if bytes > uncommitted_bytes_max {
            return Err(ProposeError::TooLarge);
        }
        if leader.uncommitted_bytes > 0 && leader.uncommitted_bytes + bytes > uncommitted_bytes_max {
            return Err(ProposeError::Busy);
        }
        leader.uncommitted_bytes += bytes;
        assert!(leader.uncommitted_bytes <= uncommitted_bytes_max, "uncommitted bytes over the bound");
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
        let count = entries.len() as u64;
        self.append_to_log(&entries);
        assert_eq!(self.log.last_term(), self.term, "a leader appends entries of its term");
        assert_eq!(self.log.last_index(), first_index + count - 1, "the commands follow the log, in order (R2)");
        self.leader_state_mut().broadcast_pending = true;
        let single_voter = self.conf.voters == [self.config.id] && self.conf.voters_outgoing.is_empty();
        if single_voter || self.config.is_sabotaged(Sabotage::LeaderCountsUndurableEntries) {
            self.leader_self_persisted();
        }
        Ok(())
    }

    /// The leader's own copy counts toward the majority only once durable.
    pub(super) fn leader_self_persisted(&mut self) {
        assert!(self.is_leader(), "only a leader counts its own copy");
        if self.maybe_commit() {
            self.on_commit_advanced();
        }
    }

    /// Commits the highest index stored on a majority, if it is of the current term
    /// (§5.4.2, Figure 8, R4).
    pub(super) fn maybe_commit(&mut self) -> bool {
        let own_index = if self.config.is_sabotaged(Sabotage::LeaderCountsUndurableEntries) {
            self.log.last_index()
        } else {
            self.log.durable_index().min(self.log.last_index())
        };
        let progress = &self.leader_state().expect("a leader commits").progress;
        let match_index = |voter: NodeId| {
            if voter == self.config.id {
                own_index
            } else {
                progress.get(&voter).map_or(0, |progress| progress.match_index)
            }
        };
        let quorum_index = quorum::joint_committed_index(&self.conf.voters, &self.conf.voters_outgoing, match_index);
        let counted_term_ok = self.log.term(quorum_index) == Some(self.term)
            || (self.config.is_sabotaged(Sabotage::CommitPreviousTermByCounting)
                && quorum_index <= self.log.last_index());
        assert!(quorum_index <= self.log.last_index(), "a quorum index beyond the leader's log");
        if quorum_index > self.log.committed && counted_term_ok {
            self.log.commit_to(quorum_index);
            let by_rule = !self.config.is_sabotaged(Sabotage::CommitPreviousTermByCounting);
            assert!(!by_rule || self.log.term(quorum_index) == Some(self.term), "committed by counting an old term");
            return true;
        }
        false
    }

    pub(super) fn on_commit_advanced(&mut self) {
        let own_term_committed = self.log.term(self.log.committed) == Some(self.term);
        let leader = self.leader_state_mut();
        if own_term_committed && !leader.reads_before_commit.is_empty() {
            for (requester, context) in std::mem::take(&mut leader.reads_before_commit) {
                let _ = self.leader_read_index(requester, context);
            }
        }
        let waiting = self.leader_state().map_or(0, |leader| leader.reads_before_commit.len());
        assert!(!own_term_committed || waiting == 0, "reads wait for a commit that happened");
        // Idle followers learn the new commit index now; busy ones with their next append.
        for peer in self.peers() {
            self.send_commit_if_idle(peer);
        }
        self.maybe_step_down_when_removed();
    }

    pub(super) fn handle_append_success(&mut self, from: NodeId, index: Index) {
        assert!(index <= self.log.last_index(), "step_leader refuses acknowledgements beyond the log");
        let Some(progress) = self.leader_state_mut().progress.get_mut(&from) else { return };
        if !progress.maybe_update(index) {
            return;
        }
        assert!(progress.match_index >= index, "an acknowledgement raises the match index");
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
    pub(super) fn send_commit_if_idle(&mut self, peer: NodeId) {
        let Some(progress) = self.leader_state().and_then(|leader| leader.progress.get(&peer)) else { return };
        let idle = progress.state == ProgressState::Replicate && progress.inflights.count() == 0;
        if idle && progress.sent_commit < self.log.committed.min(progress.match_index) {
            self.send_append(peer, true);
        }
    }

    pub(super) fn handle_append_reject(&mut self, from: NodeId, rejected: Index, hint_index: Index, hint_term: Term) {
        let next_probe = if hint_term > 0 { self.log.find_conflict_by_term(hint_index, hint_term) } else { hint_index };
        let Some(progress) = self.leader_state_mut().progress.get_mut(&from) else { return };
        if progress.maybe_decrease_to(rejected, next_probe) {
            if progress.state == ProgressState::Replicate {
                progress.become_probe();
            }
            self.send_append(from, true);
        }
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64, last_index: Index) {
        let log_last_index = self.log.last_index();
        let Some(progress) = self.leader_state_mut().progress.get_mut(&from) else { return };
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
        assert!(progress.match_index <= log_last_index, "a follower matches beyond the leader's log");
        let behind = progress.match_index < log_last_index;
        if behind {
            self.send_append(from, true);
        }
        self.release_confirmed_reads();
        self.maybe_send_timeout_now(from);
    }

    pub(super) fn send_appends_while_possible(&mut self, peer: NodeId) {
        let bound = self.config.inflight_messages_max + 1;
        for _ in 0..bound {
            let last_index = self.log.last_index();
            let progress = self.leader_state().and_then(|leader| leader.progress.get(&peer));
            let caught_up = progress.is_none_or(|progress| progress.next_index > last_index);
            if caught_up || !self.send_append(peer, false) {
                break;
            }
        }
    }

    pub(super) fn broadcast_append(&mut self) {
        for peer in self.peers() {
            self.send_appends_while_possible(peer);
        }
    }

    /// Sends AppendEntries (or a snapshot when the entries are compacted) to `peer`;
    /// false if nothing was sent.
    pub(super) fn send_append(&mut self, peer: NodeId, send_if_empty: bool) -> bool {
        let Some(progress) = self.leader_state().and_then(|leader| leader.progress.get(&peer)) else { return false };
        if progress.is_paused() {
            return false;
        }
        let next_index = progress.next_index;
        assert!(next_index > 0 && next_index <= self.log.last_index() + 1, "next index outside the log");
        let prev_log_index = next_index - 1;
        let prev_log_term = self.log.term(prev_log_index);
        let entries = self.log.entries(next_index, self.log.last_index() + 1, self.config.append_size_bytes_max);
        let (Some(prev_log_term), Ok(entries)) = (prev_log_term, entries) else {
            return self.send_snapshot(peer);
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let commit = self.log.committed;
        let progress = self.leader_state_mut().progress.get_mut(&peer).expect("checked above");
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
        assert!(entries.first().is_none_or(|entry| entry.index == next_index), "entries start at next");
        let last_sent_index = entries.last().map_or(prev_log_index, |entry| entry.index);
        progress.sent_commit = progress.sent_commit.max(commit.min(last_sent_index));
        let body = MessageBody::Append { prev_log_index, prev_log_term, entries, commit };
        let message = self.message(peer, body);
        self.outbox.push(message);
        true
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        let (committed, read_round) = (self.log.committed, self.read_round);
        for peer in self.peers() {
            let Some(progress) = self.leader_state_mut().progress.get_mut(&peer) else { continue };
            let commit = progress.match_index.min(committed);
            progress.sent_commit = progress.sent_commit.max(commit);
            assert!(progress.sent_commit <= committed, "a commit index sent before it is reached");
            let body = MessageBody::Heartbeat { commit, read_round };
            let message = self.message(peer, body);
            self.outbox.push(message);
        }
    }
}
