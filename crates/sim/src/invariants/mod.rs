//! Safety invariant checkers, one per Raft safety property (Raft paper, Figure 3), plus
//! the commit-index monotonicity the core promises and one membership change at a time
//! (thesis ch. 4). They hold unchanged while the configuration changes: election safety
//! and leader completeness are global properties, whatever quorums elected the leaders.
//!
//! Each checker is fed the [`ClusterView`] after every step, together with the positions
//! of the nodes whose view changed in that step; checkers keep whatever history they need
//! (per-term leaders, committed entries, copies of logs) so each step costs time
//! proportional to what changed, not to the size of the logs.

mod commit_monotonic;
mod config_change_in_flight;
mod election_safety;
mod leader_append_only;
mod leader_completeness;
mod log_matching;
mod state_machine_safety;

pub use commit_monotonic::CommitMonotonic;
pub use config_change_in_flight::ConfigChangeInFlight;
pub use election_safety::ElectionSafety;
pub use leader_append_only::LeaderAppendOnly;
pub use leader_completeness::LeaderCompleteness;
pub use log_matching::LogMatching;
pub use state_machine_safety::StateMachineSafety;

use raft::Index;

use crate::view::{ClusterView, EntryView, LogView};
use crate::Violation;

/// A safety property checked after every step.
pub trait Checker {
    /// The invariant's name as it appears in reports.
    fn name(&self) -> &'static str;

    /// Checks `view`; `changed_nodes` are positions in `view.nodes` whose view may differ
    /// from the previous call (pass every position to check everything).
    fn check(&mut self, view: &ClusterView, changed_nodes: &[usize]) -> Vec<Violation>;
}

/// One checker of every kind, freshly initialised.
pub fn all_checkers() -> Vec<Box<dyn Checker>> {
    vec![
        Box::new(ElectionSafety::default()),
        Box::new(LeaderAppendOnly::default()),
        Box::new(LogMatching::default()),
        Box::new(LeaderCompleteness::default()),
        Box::new(StateMachineSafety::default()),
        Box::new(CommitMonotonic::default()),
        Box::new(ConfigChangeInFlight),
    ]
}

/// Every position of `view.nodes` (for hand-made checks).
pub fn every_node(view: &ClusterView) -> Vec<usize> {
    (0..view.nodes.len()).collect()
}

/// Builds a violation report.
pub(crate) fn violation(invariant: &str, step: u64, message: String) -> Violation {
    Violation { invariant: invariant.to_string(), message, step }
}

/// A checker's own copy of a node's log, updated incrementally from `log_changed_from`.
#[derive(Clone, Debug, Default)]
pub(crate) struct LogCopy {
    snapshot_index: Index,
    entries: Vec<EntryView>,
}

impl LogCopy {
    /// A full copy of `log`.
    pub(crate) fn of(log: &LogView) -> Self {
        LogCopy { snapshot_index: log.snapshot_index, entries: log.entries.clone() }
    }

    /// The copied entry at `index`, if present.
    pub(crate) fn entry(&self, index: Index) -> Option<&EntryView> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    /// Index of the last copied entry.
    pub(crate) fn last_index(&self) -> Index {
        self.snapshot_index + self.entries.len() as Index
    }

    /// Index of the last compacted entry of the copy.
    pub(crate) fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// Brings the copy up to date with `log`, whose entries below `changed_from` are
    /// known to be unchanged.
    pub(crate) fn sync(&mut self, log: &LogView, changed_from: Index) {
        if log.snapshot_index != self.snapshot_index {
            *self = LogCopy::of(log);
            return;
        }
        let keep = changed_from.saturating_sub(self.snapshot_index + 1).min(self.entries.len() as Index) as usize;
        let keep = keep.min(log.entries.len());
        self.entries.truncate(keep);
        self.entries.extend_from_slice(&log.entries[keep..]);
        debug_assert_eq!(self.entries.len(), log.entries.len(), "log copy out of sync");
    }
}
