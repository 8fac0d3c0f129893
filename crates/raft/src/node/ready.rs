//! The ready/persist pipeline: what the driver must do next ([`Ready`](super::Ready)) and
//! the acknowledgement that it is durable ([`RawNode::on_persisted`](super::RawNode::on_persisted)).
//!
//! Sequence numbers order the pipeline: `persisted_sequence ≤ last_handed_sequence <
//! next_persist_sequence`; one [`PersistRecord`](super::PersistRecord) per handed, unpersisted
//! `Ready`. Messages revealing state wait in `held`, then in the record, then in `outbox`.

use super::role::RoleState;
use super::{PersistRecord, RawNode, Ready};
use crate::storage::Storage;
use crate::types::*;

impl<S: Storage> RawNode<S> {
    /// True if [`RawNode::ready`] has anything to return.
    pub fn has_ready(&self) -> bool {
        self.soft_state() != self.previous_soft_state
            || self.hard_state() != self.previous_hard_state
            || self.log.has_unhanded()
            || !self.outbox.is_empty()
            || !self.held.is_empty()
            || self.leader_state().is_some_and(|leader| leader.broadcast_pending)
            || self.log.has_committed_to_apply()
            || !self.read_states.is_empty()
    }

    /// Collects everything the driver must do now.
    pub fn ready(&mut self) -> Ready {
        if let RoleState::Leader(leader) = &mut self.role_state {
            if std::mem::take(&mut leader.broadcast_pending) {
                self.broadcast_append();
            }
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
        if let RoleState::Leader(leader) = &mut self.role_state {
            let applied_bytes: u64 = ready.committed_entries.iter().map(Entry::size_bytes).sum();
            leader.uncommitted_bytes = leader.uncommitted_bytes.saturating_sub(applied_bytes);
        }
        ready.read_states = std::mem::take(&mut self.read_states);
        let last_applied = ready.committed_entries.last().map_or(self.log.applied, |entry| entry.index);
        assert_eq!(last_applied, self.log.applied, "the applied index is the last entry handed to apply");
        assert!(!ready.must_persist() || ready.persist_sequence == self.last_handed_sequence, "stale sequence");
        let from_here = |message: &Message| message.from == self.config.id && message.to != self.config.id;
        assert!(ready.messages.iter().all(from_here), "a message not from this node to another");
        self.assert_invariants();
        ready
    }

    pub(super) fn collect_persist(&mut self, ready: &mut Ready) {
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
            let newest = self.persist_queue.back().map_or(self.persisted_sequence, |record| record.sequence);
            assert!(newest < sequence, "persist records out of order");
            debug_assert!(ready.entries.windows(2).all(|pair| pair[1].index == pair[0].index + 1));
            self.next_persist_sequence += 1;
            self.last_handed_sequence = sequence;
            ready.persist_sequence = sequence;
            let self_vote_term = if ready.hard_state.is_some() { self.hand_out_own_vote() } else { None };
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

    /// A candidate's vote for itself goes out in this `Ready`'s hard state: returns the term
    /// it becomes durable in (see `CandidateState::own_vote_unhanded`).
    fn hand_out_own_vote(&mut self) -> Option<Term> {
        let RoleState::Candidate(campaign) = &mut self.role_state else { return None };
        if !std::mem::take(&mut campaign.own_vote_unhanded) {
            return None;
        }
        assert_eq!(self.previous_hard_state.vote, self.config.id, "the own vote is in the hard state handed out");
        Some(self.term)
    }

    /// The persist pipeline's order: persisted ≤ handed < next, one record per handed,
    /// unpersisted Ready (cheap; on in release).
    pub(super) fn assert_persist_pipeline(&self) {
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
        if self.is_leader() {
            self.leader_self_persisted();
        }
        assert!(self.persist_queue.front().is_none_or(|record| record.sequence > persist_sequence));
        assert_eq!(self.persisted_sequence, persist_sequence, "persisted sequence recorded");
        self.assert_invariants();
    }
}
