//! Membership changes inside the node (thesis chapter 4) and leadership transfer (§3.10).
//!
//! Configurations: every node uses the latest configuration in its log, committed or not
//! (§4.1), derived as the applied configuration plus the Config entries above the applied
//! index. A leader accepts a new change only when the previous one is applied and an entry
//! of its own term is committed (the fix for the single-server-change bug, thesis errata),
//! so at most one configuration entry is ever uncommitted.

use bytes::Bytes;

use super::{ProposeError, RawNode};
use crate::config::ConfigError;
use crate::membership::{decode_config_entry, ConfChange};
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
        if adopted {
            self.recompute_conf();
            self.maybe_leave_joint();
            self.maybe_step_down_when_removed();
        }
    }

    /// A snapshot replaces the log: its configuration becomes the applied one.
    pub(super) fn restore_configuration(&mut self, index: Index, conf: ConfState) {
        self.applied_conf = conf;
        self.applied_conf_index = index;
        self.pending_confs.clear();
        self.recompute_conf();
    }

    fn recompute_conf(&mut self) {
        let mut conf = self.applied_conf.clone();
        for (_, decoded) in &self.pending_confs {
            conf = fold(&conf, decoded);
        }
        self.conf = conf;
        let voter = self.conf.is_voter(self.config.id);
        match self.role {
            Role::Leader => {
                // New peers start probing at the Config entry that added them.
                let next_index = self.log.last_index().max(1);
                self.sync_progress(next_index);
                if self.transfer_target.is_some_and(|target| !self.conf.is_voter(target)) {
                    self.transfer_target = None;
                }
            }
            Role::Follower | Role::Learner => self.role = if voter { Role::Follower } else { Role::Learner },
            Role::Candidate | Role::PreCandidate if !voter => {
                let term = self.term;
                self.become_follower(term, NO_NODE);
            }
            Role::Candidate | Role::PreCandidate => {}
        }
    }

    /// Leader: one progress per replication target; new ones start probing at
    /// `next_index` and count as recently active (a grace period for check-quorum).
    pub(super) fn sync_progress(&mut self, next_index: Index) {
        let peers = self.peers();
        self.progress.retain(|peer, _| peers.contains(peer));
        for peer in peers {
            self.progress.entry(peer).or_insert_with(|| {
                let mut progress =
                    Progress::new(next_index, self.config.inflight_messages_max, self.config.inflight_bytes_max);
                progress.recent_active = true;
                progress
            });
        }
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
        self.pending_confs.last().map_or(self.applied_conf_index, |(index, _)| *index)
    }

    /// Leader: once the joint entry is applied, append the empty change that leaves C_old,new
    /// (§4.3). Also run by a new leader that inherits a joint configuration. Not during a
    /// leadership transfer (§3.10: the target's log must stay as long as the leader's); the
    /// target leaves joint once it leads, or this leader does if the transfer is abandoned.
    pub(super) fn maybe_leave_joint(&mut self) {
        if self.role != Role::Leader
            || !self.conf.is_joint()
            || !self.pending_confs.is_empty()
            || self.transfer_target.is_some()
        {
            return;
        }
        let leave = ConfChange::default();
        let next = fold(&self.conf, &(leave.clone(), None));
        self.append_conf_entry(leave.encode_entry(&next));
    }

    fn append_conf_entry(&mut self, data: Bytes) {
        let entry = Entry { term: self.term, index: self.log.last_index() + 1, kind: EntryKind::Config, data };
        self.uncommitted_bytes += entry.size_bytes();
        self.append_to_log(&[entry]);
        self.broadcast_pending = true;
        self.leader_self_persisted();
    }

    /// Thesis §4.2.2: a leader removed from the configuration manages the cluster until
    /// the removing entry commits, then steps down and asks the most up-to-date voter to
    /// campaign at once (so the cluster does not wait an election timeout).
    pub(super) fn maybe_step_down_when_removed(&mut self) {
        if self.role != Role::Leader
            || self.conf.is_voter(self.config.id)
            || self.latest_conf_index() > self.log.committed
        {
            return;
        }
        let successor = self
            .conf
            .voters
            .iter()
            .filter_map(|voter| self.progress.get(voter).map(|progress| (progress.match_index, *voter)))
            .max()
            .map(|(_, voter)| voter);
        let term = self.term;
        self.become_follower(term, NO_NODE);
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
        if self.leader != NO_NODE && self.leader != self.config.id {
            ProposeError::NotLeader { leader_hint: self.leader }
        } else {
            ProposeError::NoLeader
        }
    }

    pub(super) fn leader_propose_conf_change(&mut self, change: ConfChange) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(self.not_leader_error());
        }
        if self.transfer_target.is_some() {
            return Err(ProposeError::Busy);
        }
        // One change at a time: the previous one applied, and an entry of this term
        // committed (otherwise a configuration entry of an earlier term might still be
        // replaced, the single-server-change bug of the thesis's errata).
        let own_term_committed = self.log.term(self.log.committed) == Some(self.term);
        if !self.pending_confs.is_empty() || self.conf.is_joint() || !own_term_committed {
            return Err(ProposeError::ConfChangePending);
        }
        let next = self.conf.apply_change(&change).map_err(ProposeError::InvalidConfChange)?;
        let data = change.encode_entry(&next);
        if data.len() as u64 + ENTRY_OVERHEAD_BYTES > self.config.uncommitted_bytes_max {
            return Err(ProposeError::TooLarge);
        }
        self.append_conf_entry(data);
        Ok(())
    }

    pub(super) fn start_leader_transfer(&mut self, target: NodeId) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(self.not_leader_error());
        }
        if target == self.config.id || self.transfer_target == Some(target) {
            return Ok(());
        }
        if !self.conf.is_voter(target) {
            return Err(ProposeError::InvalidConfChange(format!("transfer target {target:x} is not a voter")));
        }
        self.transfer_target = Some(target);
        self.transfer_elapsed_ticks = 0;
        if !self.maybe_send_timeout_now(target) {
            self.send_append(target, true);
        }
        Ok(())
    }

    /// Sends TimeoutNow once the transfer target holds the leader's whole log.
    pub(super) fn maybe_send_timeout_now(&mut self, peer: NodeId) -> bool {
        if self.transfer_target != Some(peer) {
            return false;
        }
        let caught_up = self.progress.get(&peer).is_some_and(|progress| progress.match_index == self.log.last_index());
        if caught_up {
            let message = self.message(peer, MessageBody::TimeoutNow);
            self.outbox.push(message);
        }
        caught_up
    }

    /// A transfer not done within an election timeout is abandoned (§3.10).
    pub(super) fn tick_leader_transfer(&mut self) {
        if self.transfer_target.is_some() {
            self.transfer_elapsed_ticks += 1;
            if self.transfer_elapsed_ticks >= self.config.election_ticks {
                self.transfer_target = None;
                self.transfer_elapsed_ticks = 0;
                self.maybe_leave_joint();
            }
        }
    }

    /// TimeoutNow received: campaign at once, without pre-vote, with votes that bypass
    /// leader leases (§3.10).
    pub(super) fn campaign_for_transfer(&mut self) {
        let promotable = self.conf.is_voter(self.config.id)
            && !self.log.pending_snapshot()
            && self.abstain_until.is_none()
            && self.role != Role::Leader;
        if !promotable {
            return;
        }
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.config.id;
        self.role = Role::Candidate;
        self.request_votes_with(false, true);
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
