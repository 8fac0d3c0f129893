//! Read-only views of the node's state, for drivers, checkers and dashboards.

use super::{ProgressView, RawNode};
use crate::progress::ProgressState;
use crate::storage::Storage;
use crate::types::*;

impl<S: Storage> RawNode<S> {
    /// The configuration as of the last entry handed out to apply (apply-time view, as in
    /// etcd); `voters_outgoing` is non-empty while joint.
    pub fn conf_state(&self) -> ConfState {
        self.applied_conf.clone()
    }

    /// The latest configuration in the log, committed or not (the one this node uses for
    /// elections and commitment, thesis §4.1).
    pub fn latest_conf_state(&self) -> &ConfState {
        &self.conf
    }

    /// On the leader, the target of a leadership transfer in progress.
    pub fn transfer_target(&self) -> Option<NodeId> {
        let target = self.leader_state().and_then(|leader| leader.transfer_target());
        assert!(target != Some(self.config.id), "a transfer to itself");
        target
    }

    /// The storage (read-only).
    pub fn storage(&self) -> &S {
        &self.log.storage
    }

    /// The storage, for the driver's writes.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.log.storage
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Current hard state (term, vote, commit), persisted or not.
    pub fn hard_state(&self) -> HardState {
        let hard_state = HardState { term: self.term, vote: self.vote, commit: self.log.committed };
        assert!(hard_state.commit <= self.log.last_index(), "a commit index beyond the log");
        hard_state
    }

    /// Role, leader and term.
    pub fn soft_state(&self) -> SoftState {
        let soft_state = SoftState { role: self.role(), leader: self.leader(), term: self.term };
        assert_eq!(soft_state.role == Role::Leader, soft_state.leader == self.config.id, "leader iff leading");
        soft_state
    }

    /// Highest index known committed.
    pub fn commit_index(&self) -> Index {
        self.log.committed
    }

    /// Highest index handed out for applying.
    pub fn applied_index(&self) -> Index {
        // R7: what is handed out to apply, and so what reads see, is committed.
        assert!(self.log.applied <= self.log.committed, "an uncommitted entry handed out to apply");
        self.log.applied
    }

    /// Index of the first entry still in the log (after the snapshot).
    pub fn first_index(&self) -> Index {
        self.log.first_index()
    }

    /// Index of the last entry in the log, persisted or not.
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// Term of the entry at `index` (persisted or not), if still in the log or the snapshot.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }

    /// Entries `first_index()..=last_index()`, persisted or not (for checkers and dashboards).
    pub fn log_entries(&self) -> Vec<Entry> {
        let entries = self.log.entries(self.log.first_index(), self.log.last_index() + 1, u64::MAX).unwrap_or_default();
        debug_assert!(entries.windows(2).all(|pair| pair[1].index == pair[0].index + 1), "contiguous");
        entries
    }

    /// Entries `low..high` that are still in the log (persisted or not); empty if compacted.
    pub fn entries(&self, low: Index, high: Index) -> Vec<Entry> {
        let entries = self.log.entries(low.max(self.log.first_index()), high, u64::MAX).unwrap_or_default();
        assert!(entries.iter().all(|entry| entry.index >= low && entry.index < high), "entries outside low..high");
        entries
    }

    /// Voting members of the latest configuration (C_new while joint; see
    /// [`RawNode::latest_conf_state`] for C_old).
    pub fn voters(&self) -> &[NodeId] {
        &self.conf.voters
    }

    /// Non-voting members of the latest configuration.
    pub fn learners(&self) -> &[NodeId] {
        &self.conf.learners
    }

    /// On the leader, its view of `peer`'s replication; `None` elsewhere.
    pub fn progress(&self, peer: NodeId) -> Option<ProgressView> {
        let leader = self.leader_state()?;
        if peer == self.config.id {
            let match_index = self.log.durable_index();
            return Some(ProgressView {
                match_index,
                next_index: self.log.last_index() + 1,
                state: ProgressState::Replicate,
                inflight_messages: 0,
            });
        }
        let view = leader.progress.get(&peer).map(|progress| ProgressView {
            match_index: progress.match_index,
            next_index: progress.next_index,
            state: progress.state,
            inflight_messages: progress.inflights.count(),
        });
        assert!(view.is_none_or(|view| view.next_index > view.match_index), "next index above match");
        view
    }
}
