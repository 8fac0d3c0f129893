//! Membership changes inside the node (thesis chapter 4) and leadership transfer (§3.10).
//!
//! Configurations: every node uses the latest configuration in its log, committed or not
//! (§4.1), derived as the applied configuration plus the Config entries above the applied
//! index. A leader accepts a new change only when the previous one is applied and an entry
//! of its own term is committed (the fix for the single-server-change bug, thesis errata),
//! so at most one configuration entry is ever uncommitted.

use bytes::Bytes;

use super::role::{LeaderTransfer, RoleState};
use super::{ProposeError, RawNode};
use crate::config::ConfigError;
use crate::membership::{decode_config_entry, ConfChange, CONF_CHANGES_MAX, CONF_CONTEXT_BYTES_MAX};
use crate::progress::Progress;
use crate::storage::Storage;
use crate::types::*;

/// Bytes read at a time while scanning the log for Config entries on start.
const LOAD_CHUNK_BYTES: u64 = 16 << 20;

impl<S: Storage> RawNode<S> {
    /// On start: the base configuration (the snapshot's, from `InitialState`) plus every
    /// Config entry in the log; entries up to the applied index form `conf_state()`.
    pub(super) fn load_configuration(&mut self) -> Result<(), ConfigError> {
        let mut low = self.log.first_index();
        let high = self.log.last_index() + 1;
        while low < high {
            let entries = self
                .log
                .entries(low, high, LOAD_CHUNK_BYTES)
                .map_err(|error| ConfigError(format!("storage: reading the log: {error}")))?;
            let Some(last) = entries.last() else { break };
            low = last.index + 1;
            for entry in entries.iter().filter(|entry| entry.kind == EntryKind::Config) {
                let Ok(decoded) = decode_config_entry(&entry.data) else { continue };
                if entry.index <= self.log.applied {
                    self.applied_conf = fold(&self.applied_conf, &decoded);
                    self.applied_conf_index = entry.index;
                } else {
                    self.pending_confs.push((entry.index, decoded));
                }
            }
        }
        let applied = self.log.applied;
        assert!(self.applied_conf_index <= applied, "a configuration above the applied index folded");
        assert!(self.pending_confs.iter().all(|(index, _)| *index > applied), "an applied configuration pending");
        self.recompute_conf();
        Ok(())
    }

    /// Appends to the log (truncating a conflicting suffix) and keeps the latest
    /// configuration in step with the log's Config entries.
    pub(super) fn append_to_log(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let before = self.pending_confs.len();
        self.pending_confs.retain(|(index, _)| *index < first.index);
        let mut changed = self.pending_confs.len() != before;
        for entry in entries.iter().filter(|entry| entry.kind == EntryKind::Config) {
            if let Ok(decoded) = decode_config_entry(&entry.data) {
                self.pending_confs.push((entry.index, decoded));
                changed = true;
            }
        }
        self.log.truncate_and_append(entries);
        let last_index = self.log.last_index();
        let ordered = self.pending_confs.windows(2).all(|pair| pair[0].0 < pair[1].0);
        assert!(ordered, "pending configurations out of log order");
        assert!(
            self.pending_confs.last().is_none_or(|(index, _)| *index <= last_index),
            "a configuration past the log"
        );
        if changed {
            self.recompute_conf();
        }
    }

    /// Folds the Config entries among `entries` (just handed out to apply) into
    /// `conf_state()`; the leader then leaves a joint configuration or steps down if removed.
    pub(super) fn adopt_applied_configurations(&mut self, entries: &[Entry]) {
        let mut adopted = false;
        for entry in entries.iter().filter(|entry| entry.kind == EntryKind::Config) {
            if entry.index <= self.applied_conf_index {
                continue;
            }
            if let Ok(decoded) = decode_config_entry(&entry.data) {
                self.applied_conf = fold(&self.applied_conf, &decoded);
            }
            self.applied_conf_index = entry.index;
            self.pending_confs.retain(|(index, _)| *index > entry.index);
            adopted = true;
        }
        let applied_conf_index = self.applied_conf_index;
        assert!(applied_conf_index <= self.log.applied, "a configuration adopted before it is handed out");
        assert!(self.pending_confs.iter().all(|(index, _)| *index > applied_conf_index), "an adopted entry pending");
        if adopted {
            self.recompute_conf();
            self.maybe_leave_joint();
            self.maybe_step_down_when_removed();
        }
    }

    /// A snapshot replaces the log: its configuration becomes the applied one.
    pub(super) fn restore_configuration(&mut self, index: Index, conf: ConfState) {
        assert!(!self.is_leader(), "a leader never restores a snapshot");
        self.applied_conf = conf;
        self.applied_conf_index = index;
        self.pending_confs.clear();
        self.recompute_conf();
        assert_eq!(self.conf, self.applied_conf, "nothing pending above a snapshot");
    }

    fn recompute_conf(&mut self) {
        let mut conf = self.applied_conf.clone();
        for (_, decoded) in &self.pending_confs {
            conf = fold(&conf, decoded);
        }
        self.conf = conf;
        let voter = self.conf.is_voter(self.config.id);
        match &self.role_state {
            RoleState::Leader(leader) => {
                let target_removed = leader.transfer_target().is_some_and(|target| !self.conf.is_voter(target));
                // New peers start probing at the Config entry that added them.
                let next_index = self.log.last_index().max(1);
                self.sync_progress(next_index);
                if target_removed {
                    self.leader_state_mut().transfer = None;
                }
            }
            // A follower's role (follower or learner) follows the configuration by itself.
            RoleState::Follower(_) => {}
            RoleState::Candidate(_) | RoleState::PreCandidate(_) if !voter => {
                let term = self.term;
                self.become_follower(term, NO_NODE);
            }
            RoleState::Candidate(_) | RoleState::PreCandidate(_) => {}
        }
        let campaigning = matches!(self.role_state, RoleState::Candidate(_) | RoleState::PreCandidate(_));
        assert!(!campaigning || voter, "a campaign by a non-voter of the latest configuration");
    }

    /// Leader: one progress per replication target; new ones start probing at
    /// `next_index` and count as recently active (a grace period for check-quorum).
    pub(super) fn sync_progress(&mut self, next_index: Index) {
        assert!(next_index > 0 && next_index <= self.log.last_index() + 1, "new peers probe within the log");
        let peers = self.peers();
        let (inflight_messages_max, inflight_bytes_max) =
            (self.config.inflight_messages_max, self.config.inflight_bytes_max);
        let progress = &mut self.leader_state_mut().progress;
        progress.retain(|peer, _| peers.contains(peer));
        for peer in &peers {
            progress.entry(*peer).or_insert_with(|| {
                let mut progress = Progress::new(next_index, inflight_messages_max, inflight_bytes_max);
                progress.recent_active = true;
                progress
            });
        }
        assert!(progress.keys().eq(peers.iter()), "one progress per replication target");
    }

    /// A voter of the latest configuration campaigns; so does a node whose removal is in
    /// its log but not yet applied (thesis §4.2.2: it may still be needed to commit C_new —
    /// e.g. it alone holds the entry that removes it; its own vote does not count). Once
    /// the removal is applied it never campaigns again (§4.2.3).
    pub(super) fn may_campaign(&self) -> bool {
        self.conf.is_voter(self.config.id) || self.applied_conf.is_voter(self.config.id)
    }

    /// Index of the Config entry the latest configuration comes from.
    fn latest_conf_index(&self) -> Index {
        let index = self.pending_confs.last().map_or(self.applied_conf_index, |(index, _)| *index);
        assert!(index >= self.applied_conf_index, "the latest configuration is older than the applied one");
        index
    }

    /// Leader: once the joint entry is applied, append the empty change that leaves C_old,new
    /// (§4.3). Also run by a new leader that inherits a joint configuration. Not during a
    /// leadership transfer (§3.10: the target's log must stay as long as the leader's); the
    /// target leaves joint once it leads, or this leader does if the transfer is abandoned.
    pub(super) fn maybe_leave_joint(&mut self) {
        let transfer_running = self.leader_state().is_none_or(|leader| leader.transfer.is_some());
        if transfer_running || !self.conf.is_joint() || !self.pending_confs.is_empty() {
            return;
        }
        let leave = ConfChange::default();
        let next = fold(&self.conf, &(leave.clone(), None));
        assert!(!next.is_joint() && next.voters == self.conf.voters, "leaving joint keeps C_new");
        self.append_conf_entry(leave.encode_entry(&next));
    }

    /// Appends a Config entry on the leader. Its bytes count toward the uncommitted bound up
    /// to the bound: the entry that leaves a joint configuration must be appended even when
    /// proposals have used the whole budget.
    fn append_conf_entry(&mut self, data: Bytes) {
        let entry = Entry { term: self.term, index: self.log.last_index() + 1, kind: EntryKind::Config, data };
        let uncommitted_bytes_max = self.config.uncommitted_bytes_max;
        let leader = self.leader_state_mut();
        leader.uncommitted_bytes = (leader.uncommitted_bytes + entry.size_bytes()).min(uncommitted_bytes_max);
        leader.broadcast_pending = true;
        let index = entry.index;
        self.append_to_log(&[entry]);
        assert_eq!(self.latest_conf_index(), index, "the latest configuration comes from the new entry");
        assert_eq!(self.log.last_term(), self.term, "a leader appends entries of its term");
        self.leader_self_persisted();
    }

    /// Thesis §4.2.2: a leader removed from the configuration manages the cluster until
    /// the removing entry commits, then steps down and asks the most up-to-date voter to
    /// campaign at once (so the cluster does not wait an election timeout).
    pub(super) fn maybe_step_down_when_removed(&mut self) {
        let Some(leader) = self.leader_state() else { return };
        if self.conf.is_voter(self.config.id) || self.latest_conf_index() > self.log.committed {
            return;
        }
        let successor = self
            .conf
            .voters
            .iter()
            .filter_map(|voter| leader.progress.get(voter).map(|progress| (progress.match_index, *voter)))
            .max()
            .map(|(_, voter)| voter);
        let term = self.term;
        self.become_follower(term, NO_NODE);
        assert!(successor != Some(self.config.id), "a removed leader hands over to another voter");
        if let Some(successor) = successor {
            let message = self.message(successor, MessageBody::TimeoutNow);
            self.outbox.push(message);
        }
    }

    /// Senders outside both known configurations are heard only for messages a leader or
    /// candidate of a configuration this node has not seen yet may send; their other
    /// messages (answers of a removed member) are ignored.
    pub(super) fn accepts_sender(&self, message: &Message) -> bool {
        let from = message.from;
        if self.conf.is_empty() || self.conf.is_member(from) || self.applied_conf.is_member(from) {
            return true;
        }
        matches!(
            message.body,
            MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
                | MessageBody::PreVote { .. }
                | MessageBody::Vote { .. }
                | MessageBody::TransferVote { .. }
                | MessageBody::TimeoutNow
        )
    }

    fn not_leader_error(&self) -> ProposeError {
        let leader = self.leader();
        if leader != NO_NODE && leader != self.config.id {
            ProposeError::NotLeader { leader_hint: leader }
        } else {
            ProposeError::NoLeader
        }
    }

    pub(super) fn leader_propose_conf_change(&mut self, change: ConfChange) -> Result<(), ProposeError> {
        let Some(leader) = self.leader_state() else { return Err(self.not_leader_error()) };
        if leader.transfer.is_some() {
            return Err(ProposeError::Busy);
        }
        let uncommitted_bytes = leader.uncommitted_bytes;
        // One change at a time: the previous one applied, and an entry of this term
        // committed (otherwise a configuration entry of an earlier term might still be
        // replaced, the single-server-change bug of the thesis's errata).
        let own_term_committed = self.log.term(self.log.committed) == Some(self.term);
        if !self.pending_confs.is_empty() || self.conf.is_joint() || !own_term_committed {
            return Err(ProposeError::ConfChangePending);
        }
        if change.changes.len() > CONF_CHANGES_MAX || change.context.len() > CONF_CONTEXT_BYTES_MAX {
            // No node could decode the entry (decoding bounds its input).
            return Err(ProposeError::InvalidConfChange("too many changes or too large a context".into()));
        }
        let next = self.conf.apply_change(&change).map_err(ProposeError::InvalidConfChange)?;
        let data = change.encode_entry(&next);
        let bytes = data.len() as u64 + ENTRY_OVERHEAD_BYTES;
        if bytes > self.config.uncommitted_bytes_max {
            return Err(ProposeError::TooLarge);
        }
        if uncommitted_bytes > 0 && uncommitted_bytes + bytes > self.config.uncommitted_bytes_max {
            return Err(ProposeError::Busy); // as for commands: back-pressure
        }
        self.append_conf_entry(data);
        assert!(!self.pending_confs.is_empty(), "the change is pending until applied");
        Ok(())
    }

    pub(super) fn start_leader_transfer(&mut self, target: NodeId) -> Result<(), ProposeError> {
        let Some(leader) = self.leader_state() else { return Err(self.not_leader_error()) };
        if target == self.config.id || leader.transfer_target() == Some(target) {
            return Ok(());
        }
        if !self.conf.is_voter(target) {
            return Err(ProposeError::InvalidConfChange(format!("transfer target {target:x} is not a voter")));
        }
        self.leader_state_mut().transfer = Some(LeaderTransfer { target, elapsed_ticks: 0 });
        if !self.maybe_send_timeout_now(target) {
            self.send_append(target, true);
        }
        assert_eq!(self.transfer_target(), Some(target), "the transfer is under way");
        Ok(())
    }

    /// Sends TimeoutNow once the transfer target holds the leader's whole log.
    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) -> bool {
        let Some(leader) = self.leader_state() else { return false };
        if leader.transfer_target() != Some(peer) {
            return false;
        }
        let last_index = self.log.last_index();
        let caught_up = leader.progress.get(&peer).is_some_and(|progress| progress.match_index == last_index);
        if caught_up {
            assert!(self.conf.is_voter(peer), "only a voter is told to campaign");
            let message = self.message(peer, MessageBody::TimeoutNow);
            self.outbox.push(message);
        }
        caught_up
    }

    /// A transfer not done within an election timeout is abandoned (§3.10).
    pub(super) fn tick_leader_transfer(&mut self) {
        let election_ticks = self.config.election_ticks;
        let leader = self.leader_state_mut();
        let Some(transfer) = leader.transfer.as_mut() else { return };
        transfer.elapsed_ticks += 1;
        if transfer.elapsed_ticks >= election_ticks {
            leader.transfer = None;
            self.maybe_leave_joint();
        }
        let transfer = self.leader_state().and_then(|leader| leader.transfer);
        assert!(transfer.is_none_or(|transfer| transfer.elapsed_ticks < election_ticks), "a transfer overdue");
    }

    /// TimeoutNow received: campaign at once, without pre-vote, with votes that bypass
    /// leader leases (§3.10).
    pub(super) fn campaign_for_transfer(&mut self) {
        let promotable = self.conf.is_voter(self.config.id)
            && !self.log.pending_snapshot()
            && self.abstain_until.is_none()
            && !self.is_leader();
        if !promotable {
            return;
        }
        self.start_campaign(true);
        assert!(matches!(self.role_state, RoleState::Candidate(_)), "a transfer target campaigns at once");
    }
}

/// `conf` after a Config entry: the configuration the entry carries (entries written by the
/// core), else the change applied to `conf`; a change that does not apply (refused when
/// proposed, so only a forged entry) leaves the configuration unchanged on every node alike.
fn fold(conf: &ConfState, (change, result): &(ConfChange, Option<ConfState>)) -> ConfState {
    match result {
        Some(result) => result.clone(),
        None => conf.apply_change(change).unwrap_or_else(|_| conf.clone()),
    }
}
