//! State Machine Safety (Raft paper §5.4.3, Figure 3): if a server has applied a log
//! entry at a given index to its state machine, no other server will ever apply a
//! different log entry for the same index.
//!
//! The checker records, for every index, the first entry any node applied there, and
//! compares every later application with it. It also checks each node's own sequence:
//! indexes strictly increase, and nothing beyond the node's commit index is applied.

use raft::Index;

use super::{violation, Checker};
use crate::view::{AppliedView, ClusterView, NodeView};
use crate::Violation;

const NAME: &str = "state_machine_safety";

#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    incarnation: u64,
    generation: u64,
    length: usize,
}

/// Checks that all nodes apply the same entry at each index.
#[derive(Debug, Default)]
pub struct StateMachineSafety {
    /// `applied[index - 1]`: the first entry applied at `index` and the node that did.
    applied: Vec<Option<(AppliedView, raft::NodeId)>>,
    seen_by_position: Vec<Option<Seen>>,
}

impl StateMachineSafety {
    fn check_node(&mut self, node: &NodeView, seen: Option<Seen>) -> Option<String> {
        let start = match seen {
            Some(seen) if seen.incarnation == node.incarnation && seen.generation == node.applied_generation => {
                seen.length.min(node.applied.len())
            }
            _ => 0,
        };
        let mut previous_index: Index = if start == 0 { 0 } else { node.applied[start - 1].index };
        for applied in &node.applied[start..] {
            if applied.index <= previous_index {
                return Some(format!("node {} applied index {} after index {previous_index}", node.id, applied.index));
            }
            previous_index = applied.index;
            if self.applied.len() < applied.index as usize {
                self.applied.resize(applied.index as usize, None);
            }
            let slot = &mut self.applied[applied.index as usize - 1];
            let (first, first_node) = *slot.get_or_insert((*applied, node.id));
            if first != *applied {
                return Some(format!(
                    "index {}: node {} applied (term {}, hash {:x}) but node {first_node} applied (term {}, hash {:x})",
                    applied.index, node.id, applied.term, applied.data_hash, first.term, first.data_hash
                ));
            }
        }
        if previous_index > node.commit {
            return Some(format!(
                "node {} applied index {previous_index} beyond its commit index {}",
                node.id, node.commit
            ));
        }
        None
    }
}

impl Checker for StateMachineSafety {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&mut self, view: &ClusterView, changed_nodes: &[usize]) -> Vec<Violation> {
        if self.seen_by_position.len() < view.nodes.len() {
            self.seen_by_position.resize(view.nodes.len(), None);
        }
        let mut violations = Vec::new();
        for &position in changed_nodes {
            let node = &view.nodes[position];
            if !node.alive {
                continue;
            }
            let seen = self.seen_by_position[position];
            if let Some(message) = self.check_node(node, seen) {
                violations.push(violation(NAME, view.step, message));
            }
            let length = node.applied.len();
            let seen = Seen { incarnation: node.incarnation, generation: node.applied_generation, length };
            self.seen_by_position[position] = Some(seen);
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

    fn applied(entries: &[(Index, u64, u64)]) -> Vec<AppliedView> {
        entries.iter().map(|&(index, term, data_hash)| AppliedView { index, term, data_hash }).collect()
    }

    #[test]
    fn same_sequences_pass() {
        let mut checker = StateMachineSafety::default();
        let mut first = node(1, Role::Leader, 1, 3, &[(1, 10), (1, 11), (1, 12)]);
        first.applied = applied(&[(1, 1, 10), (2, 1, 11), (3, 1, 12)]);
        let mut second = node(2, Role::Follower, 1, 2, &[(1, 10), (1, 11), (1, 12)]);
        second.applied = applied(&[(1, 1, 10), (2, 1, 11)]);
        let view = cluster(1, vec![first, second]);
        assert!(checker.check(&view, &every_node(&view)).is_empty());
    }

    #[test]
    fn different_entries_at_one_index_fire() {
        let mut checker = StateMachineSafety::default();
        let mut first = node(1, Role::Leader, 2, 2, &[]);
        first.applied = applied(&[(1, 1, 10), (2, 2, 11)]);
        let mut second = node(2, Role::Follower, 2, 2, &[]);
        second.applied = applied(&[(1, 1, 10), (2, 1, 99)]);
        let view = cluster(1, vec![first, second]);
        let violations = checker.check(&view, &every_node(&view));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.starts_with("index 2:"), "{}", violations[0].message);
    }

    #[test]
    fn applying_beyond_commit_fires() {
        let mut checker = StateMachineSafety::default();
        let mut only = node(1, Role::Leader, 1, 1, &[(1, 10), (1, 11)]);
        only.applied = applied(&[(1, 1, 10), (2, 1, 11)]);
        let view = cluster(1, vec![only]);
        assert!(checker.check(&view, &every_node(&view))[0].message.contains("beyond its commit"));
    }

    #[test]
    fn applying_out_of_order_fires() {
        let mut checker = StateMachineSafety::default();
        let mut only = node(1, Role::Leader, 1, 3, &[]);
        only.applied = applied(&[(2, 1, 10), (1, 1, 11)]);
        let view = cluster(1, vec![only]);
        assert!(checker.check(&view, &every_node(&view))[0].message.contains("after index 2"));
    }
}
