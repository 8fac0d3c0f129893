//! Messages in: validation of untrusted input, and the follower's side of replication
//! (AppendEntries receiver, §5.3, Figure 2; R3, R5).

use super::role::RoleState;
use super::{RawNode, StepError, INDEX_PLAUSIBLE_MAX, TERM_PLAUSIBLE_MAX};
use crate::config::Sabotage;
use crate::storage::Storage;
use crate::types::*;

impl<S: Storage> RawNode<S> {
    pub(super) fn validate(&self, message: &Message) -> Result<(), StepError> {
        if message.to != self.config.id {
            return Err(StepError::WrongRecipient);
        }
        if message.from == self.config.id || message.from == NO_NODE {
            return Err(StepError::UnknownSender(message.from));
        }
        if message.term > TERM_PLAUSIBLE_MAX {
            return Err(StepError::Malformed("term out of range"));
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

    pub(super) fn step_candidate(&mut self, message: Message) -> Result<(), StepError> {
        match message.body {
            MessageBody::Append { .. } | MessageBody::Heartbeat { .. } | MessageBody::InstallSnapshot { .. } => {
                // A leader of this very term won: the campaign is lost (§5.2).
                assert_eq!(message.term, self.term, "step_term passes only messages of this term");
                let term = self.term;
                self.become_follower(term, message.from);
                self.step_follower(message)
            }
            _ => Ok(()), // proposals and reads are dropped: there is no leader
        }
    }

    pub(super) fn step_follower(&mut self, message: Message) -> Result<(), StepError> {
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
                assert!(self.log.committed <= last_index, "a heartbeat committed beyond the log");
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
            MessageBody::Propose { commands } if self.leader() != NO_NODE && self.config.forward_proposals => {
                let forward = self.message(self.leader(), MessageBody::Propose { commands });
                self.held.push(forward);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub(super) fn note_leader_commit(&mut self, commit: Index) {
        if self.abstain_until == Some(0) {
            self.abstain_until = Some(commit.max(1));
        }
        assert!(self.abstain_until != Some(0), "a leader announced the catch-up target");
    }

    pub(super) fn maybe_stop_abstaining(&mut self) {
        if let Some(target) = self.abstain_until {
            if target > 0 && self.log.committed >= target {
                self.abstain_until = None;
            }
        }
        let committed = self.log.committed;
        assert!(
            self.abstain_until.is_none_or(|target| target == 0 || committed < target),
            "abstains after catching up"
        );
    }

    pub(super) fn heard_from_leader(&mut self, leader: NodeId) {
        assert!(leader != self.config.id && leader != NO_NODE, "a leader is another node");
        self.election_elapsed_ticks = 0;
        let RoleState::Follower(follower) = &mut self.role_state else {
            unreachable!("only a follower hears from a leader");
        };
        follower.leader = leader;
        assert!(self.leader() == leader && self.election_elapsed_ticks == 0, "the leader is recorded");
    }

    /// AppendEntries receiver (§5.3, Figure 2): consistency check, conflict truncation,
    /// commit index from the leader (R3, R5).
    pub(super) fn handle_append(
        &mut self,
        leader: NodeId,
        prev_log_index: Index,
        prev_log_term: Term,
        entries: &[Entry],
        commit: Index,
    ) -> Result<(), StepError> {
        assert!(!self.is_leader(), "a leader receives no AppendEntries of its own term");
        if prev_log_index < self.log.committed {
            let reply = self.append_response(leader, false, self.log.committed, 0, 0);
            self.held.push(reply);
            return Ok(());
        }
        if !self.log.matches(prev_log_index, prev_log_term) {
            let hint_index = self.log.find_conflict_by_term(prev_log_index, prev_log_term);
            let hint_term = self.log.term(hint_index).unwrap_or(0);
            // The hint points the leader back, never forward (R3).
            assert!(hint_index <= prev_log_index, "conflict hint {hint_index} above the probe {prev_log_index}");
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
        let last_new_term = entries.last().map_or(prev_log_term, |entry| entry.term);
        assert!(self.log.matches(last_new_index, last_new_term), "the log holds the accepted entries");
        self.log.commit_to(commit.min(last_new_index));
        let reply = self.append_response(leader, false, last_new_index, 0, 0);
        if self.config.is_sabotaged(Sabotage::FollowerAcknowledgesBeforeDurable) {
            self.outbox.push(reply);
        } else {
            self.held.push(reply);
        }
        Ok(())
    }

    pub(super) fn append_response(
        &self,
        to: NodeId,
        reject: bool,
        index: Index,
        hint_index: Index,
        hint_term: Term,
    ) -> Message {
        assert!(to != self.config.id && to != NO_NODE, "an answer to oneself or to nobody");
        assert!(!reject || hint_index <= index, "a rejection hints forward");
        self.message(to, MessageBody::AppendResponse { reject, index, hint_index, hint_term })
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
    // What the checks above established (about accepted input, not an assertion on it).
    assert_eq!(expected_index - prev_log_index - 1, entries.len() as u64, "entries counted");
    Ok(())
}
