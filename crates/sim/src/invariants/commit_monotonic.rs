//! Commit monotonicity (Raft paper §5.3–§5.4; Figure 2 "commitIndex … increases
//! monotonically"): within one incarnation a node's commit index never decreases and
//! never exceeds its log; and a committed entry never changes — no node ever holds a
//! different entry at a committed index (the "committed entries are durable and will
//! eventually be executed by all of the available state machines" promise of §5.3).
//!
//! Restarts may lower the commit index (it is volatile state), but not what was committed.

use raft::{Index, NodeId};

use super::{violation, Checker, LogCopy};
use crate::view::{ClusterView, EntryView, NodeView};
use crate::Violation;

const NAME: &str = "commit_monotonic";

#[derive(Debug)]
struct Seen {
    incarnation: u64,
    commit: Index,
    log: LogCopy,
}

/// Checks that commit indexes only grow and committed entries never change.
#[derive(Debug, Default)]
pub struct CommitMonotonic {
    /// `committed[index - 1]`: the entry first seen committed at `index`, and by whom.
    committed: Vec<Option<(EntryView, NodeId)>>,
    seen_by_position: Vec<Option<Seen>>,
}

impl CommitMonotonic {
    fn check_own_history(node: &NodeView, seen: &Seen) -> Option<String> {
        if node.commit < seen.commit {
            return Some(format!("node {}: commit index went from {} down to {}", node.id, seen.commit, node.commit));
        }
        let log = &node.log;
        let first = node.log_changed_from.max(log.snapshot_index + 1).max(seen.log.snapshot_index() + 1);
        for index in first..=seen.commit.min(seen.log.last_index()) {
            let before = seen.log.entry(index);
            let now = log.entry(index);
            if before.is_some() && before != now {
                return Some(format!("node {}: committed index {index} changed from {before:?} to {now:?}", node.id));
            }
        }
        None
    }

    fn check_committed(&mut self, node: &NodeView, previous_commit: Index) -> Option<String> {
        let log = &node.log;
        if node.commit > log.last_index() {
            return Some(format!(
                "node {}: commit index {} beyond its last index {}",
                node.id,
                node.commit,
                log.last_index()
            ));
        }
        let first = (previous_commit + 1).min(node.log_changed_from).max(log.snapshot_index + 1);
        for index in first..=node.commit {
            let Some(entry) = log.entry(index) else { continue };
            if self.committed.len() < index as usize {
                self.committed.resize(index as usize, None);
            }
            let (first_entry, first_node) = *self.committed[index as usize - 1].get_or_insert((*entry, node.id));
            if first_entry != *entry {
                return Some(format!(
                    "index {index} committed as {entry:?} on node {} but as {first_entry:?} on node {first_node}",
                    node.id
                ));
            }
        }
        None
    }
}

impl Checker for CommitMonotonic {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&mut self, view: &ClusterView, changed_nodes: &[usize]) -> Vec<Violation> {
        if self.seen_by_position.len() < view.nodes.len() {
            self.seen_by_position.resize_with(view.nodes.len(), || None);
        }
        let mut violations = Vec::new();
        for &position in changed_nodes {
            let node = &view.nodes[position];
            if !node.alive {
                continue;
            }
            let mut previous_commit = 0;
            let message = match self.seen_by_position[position].take() {
                Some(mut seen) if seen.incarnation == node.incarnation => {
                    previous_commit = seen.commit;
                    let message = Self::check_own_history(node, &seen);
                    seen.log.sync(&node.log, node.log_changed_from);
                    seen.commit = node.commit;
                    self.seen_by_position[position] = Some(seen);
                    message
                }
                _ => {
                    let seen = Seen { incarnation: node.incarnation, commit: node.commit, log: LogCopy::of(&node.log) };
                    self.seen_by_position[position] = Some(seen);
                    None
                }
            };
            let message = message.or_else(|| self.check_committed(node, previous_commit));
            violations.extend(message.map(|message| violation(NAME, view.step, message)));
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::every_node;
    use crate::view::build::{cluster, node};
    use raft::Role;

    #[test]
    fn growing_commit_passes() {
        let mut checker = CommitMonotonic::default();
        let first = cluster(1, vec![node(1, Role::Follower, 1, 1, &[(1, 10), (1, 11)])]);
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(2, vec![node(1, Role::Follower, 2, 2, &[(1, 10), (1, 11), (2, 12)])]);
        assert!(checker.check(&second, &every_node(&second)).is_empty());
    }

    #[test]
    fn decreasing_commit_fires() {
        let mut checker = CommitMonotonic::default();
        let first = cluster(1, vec![node(1, Role::Follower, 1, 2, &[(1, 10), (1, 11)])]);
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(2, vec![node(1, Role::Follower, 1, 1, &[(1, 10), (1, 11)])]);
        assert!(checker.check(&second, &every_node(&second))[0].message.contains("went from 2 down to 1"));
    }

    #[test]
    fn decrease_after_restart_is_allowed() {
        let mut checker = CommitMonotonic::default();
        let first = cluster(1, vec![node(1, Role::Follower, 1, 2, &[(1, 10), (1, 11)])]);
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let mut restarted = node(1, Role::Follower, 1, 1, &[(1, 10), (1, 11)]);
        restarted.incarnation = 1;
        let second = cluster(2, vec![restarted]);
        assert!(checker.check(&second, &every_node(&second)).is_empty());
    }

    #[test]
    fn changed_committed_entry_fires() {
        let mut checker = CommitMonotonic::default();
        let first = cluster(1, vec![node(1, Role::Follower, 1, 2, &[(1, 10), (1, 11)])]);
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(2, vec![node(1, Role::Follower, 2, 2, &[(1, 10), (2, 12)])]);
        assert!(checker.check(&second, &every_node(&second))[0].message.contains("committed index 2 changed"));
    }

    #[test]
    fn conflicting_commit_on_another_node_fires() {
        let mut checker = CommitMonotonic::default();
        let view = cluster(
            1,
            vec![node(1, Role::Leader, 2, 2, &[(1, 10), (2, 11)]), node(2, Role::Follower, 2, 2, &[(1, 10), (1, 12)])],
        );
        assert!(checker.check(&view, &every_node(&view))[0].message.contains("index 2 committed as"));
    }

    #[test]
    fn commit_beyond_log_fires() {
        let mut checker = CommitMonotonic::default();
        let view = cluster(1, vec![node(1, Role::Follower, 1, 3, &[(1, 10)])]);
        assert!(checker.check(&view, &every_node(&view))[0].message.contains("beyond its last index"));
    }
}
