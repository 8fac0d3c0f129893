//! A plain-data picture of the cluster, the input of every invariant checker.
//!
//! The simulator refreshes the view of the nodes a step touched; tests build views by
//! hand (including impossible ones) to make checkers fire without running the core.

use raft::{Index, NodeId, Role, Term};

/// One log entry as the checkers see it: position, term and a hash of its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EntryView {
    /// Log index.
    pub index: Index,
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Hash of kind and payload (see [`crate::hash_entry`]).
    pub data_hash: u64,
}

/// One entry a node's state machine applied (blank entries are not applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppliedView {
    /// Log index of the applied entry.
    pub index: Index,
    /// Term of the applied entry.
    pub term: Term,
    /// Hash of kind and payload, comparable with [`EntryView::data_hash`].
    pub data_hash: u64,
}

/// A node's log: the compacted prefix (snapshot position) and the entries after it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogView {
    /// Index of the last entry covered by the snapshot (0: none).
    pub snapshot_index: Index,
    /// Term of that entry (0: none).
    pub snapshot_term: Term,
    /// Entries `snapshot_index + 1 ..= last_index()`, in order.
    pub entries: Vec<EntryView>,
}

impl LogView {
    /// Index of the last entry (the snapshot index when `entries` is empty).
    pub fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as Index
    }

    /// The entry at `index`, if it is in `entries` (not compacted, not beyond the end).
    pub fn entry(&self, index: Index) -> Option<&EntryView> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    /// Term at `index`: from `entries`, or the snapshot term at `snapshot_index`.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot_index {
            return Some(self.snapshot_term);
        }
        self.entry(index).map(|entry| entry.term)
    }
}

/// One node as the checkers see it after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Node id.
    pub id: NodeId,
    /// Restart counter: state that is volatile may reset when it changes.
    pub incarnation: u64,
    /// False while the node is crashed (its other fields keep their last values).
    pub alive: bool,
    /// Role.
    pub role: Role,
    /// Current term.
    pub term: Term,
    /// Commit index.
    pub commit: Index,
    /// The node's log, persisted or not.
    pub log: LogView,
    /// Entries at index `>= log_changed_from` may differ from the previous view of this
    /// node; `Index::MAX` if the log did not change. Hand-made views use 0 (rescan all).
    pub log_changed_from: Index,
    /// Everything the state machine applied, in order.
    pub applied: Vec<AppliedView>,
    /// Changes whenever `applied` is replaced rather than extended (snapshot restore,
    /// restart). Checkers rescan `applied` when it changes.
    pub applied_generation: u64,
    /// On a leader that appended a Config entry in its term not yet committed: the Config
    /// entries above its commit index (membership changes in flight); 0 otherwise.
    pub uncommitted_config_entries: u64,
}

impl NodeView {
    /// A live follower with an empty log (a starting point for hand-made views).
    pub fn new(id: NodeId) -> Self {
        NodeView {
            id,
            incarnation: 0,
            alive: true,
            role: Role::Follower,
            term: 0,
            commit: 0,
            log: LogView::default(),
            log_changed_from: 0,
            applied: Vec::new(),
            applied_generation: 0,
            uncommitted_config_entries: 0,
        }
    }
}

/// The whole cluster after one step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// Step number (for reports).
    pub step: u64,
    /// One view per node, in id order.
    pub nodes: Vec<NodeView>,
}

#[cfg(test)]
pub(crate) mod build {
    //! Helpers for hand-made views in checker tests.
    use super::*;

    /// A log of `(term, data_hash)` pairs starting at index 1.
    pub fn log(entries: &[(Term, u64)]) -> LogView {
        LogView {
            snapshot_index: 0,
            snapshot_term: 0,
            entries: entries
                .iter()
                .enumerate()
                .map(|(position, &(term, data_hash))| EntryView { index: position as Index + 1, term, data_hash })
                .collect(),
        }
    }

    /// A node with the given role, term, commit and log.
    pub fn node(id: NodeId, role: Role, term: Term, commit: Index, entries: &[(Term, u64)]) -> NodeView {
        NodeView { role, term, commit, log: log(entries), ..NodeView::new(id) }
    }

    /// A cluster view at `step`.
    pub fn cluster(step: u64, nodes: Vec<NodeView>) -> ClusterView {
        ClusterView { step, nodes }
    }
}
