//! Leader Append-Only (Raft paper §5.3, Figure 3): a leader never overwrites or deletes
//! entries in its log; it only appends new entries.
//!
//! While a node stays leader of one term (in one incarnation) the checker keeps a copy
//! of its log and verifies at every step that every entry it had is still there,
//! unchanged. Entries that disappear into a snapshot (compaction) are not deletions.

use raft::{Role, Term};

use super::{violation, Checker, LogCopy};
use crate::view::{ClusterView, NodeView};
use crate::Violation;

#[derive(Debug)]
struct Leadership {
    incarnation: u64,
    term: Term,
    log: LogCopy,
}

const NAME: &str = "leader_append_only";

/// Checks that leaders only append.
#[derive(Debug, Default)]
pub struct LeaderAppendOnly {
    leadership_by_position: Vec<Option<Leadership>>,
}

impl LeaderAppendOnly {
    fn check_node(step: u64, node: &NodeView, previous: &Leadership) -> Option<Violation> {
        let log = &node.log;
        let first_checked = node.log_changed_from.max(log.snapshot_index + 1).max(previous.log.snapshot_index() + 1);
        for index in first_checked..=previous.log.last_index() {
            let Some(before) = previous.log.entry(index) else { continue };
            let message = match log.entry(index) {
                Some(now) if now == before => continue,
                Some(now) => format!(
                    "leader {} of term {} overwrote index {index}: (term {}, hash {:x}) became (term {}, hash {:x})",
                    node.id, node.term, before.term, before.data_hash, now.term, now.data_hash
                ),
                None => format!(
                    "leader {} of term {} deleted index {index} (its log now ends at {})",
                    node.id,
                    node.term,
                    log.last_index()
                ),
            };
            return Some(violation(NAME, step, message));
        }
        None
    }
}

impl Checker for LeaderAppendOnly {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&mut self, view: &ClusterView, changed_nodes: &[usize]) -> Vec<Violation> {
        let mut violations = Vec::new();
        if self.leadership_by_position.len() < view.nodes.len() {
            self.leadership_by_position.resize_with(view.nodes.len(), || None);
        }
        for &position in changed_nodes {
            let node = &view.nodes[position];
            if !node.alive || node.role != Role::Leader {
                self.leadership_by_position[position] = None;
                continue;
            }
            let same =
                |leadership: &Leadership| leadership.incarnation == node.incarnation && leadership.term == node.term;
            match self.leadership_by_position[position].take() {
                Some(mut leadership) if same(&leadership) => {
                    violations.extend(Self::check_node(view.step, node, &leadership));
                    leadership.log.sync(&node.log, node.log_changed_from);
                    self.leadership_by_position[position] = Some(leadership);
                }
                _ => {
                    let log = LogCopy::of(&node.log);
                    let leadership = Leadership { incarnation: node.incarnation, term: node.term, log };
                    self.leadership_by_position[position] = Some(leadership);
                }
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invariants::every_node;
    use crate::view::build::{cluster, node};

    #[test]
    fn appending_leader_passes() {
        let mut checker = LeaderAppendOnly::default();
        let before = cluster(1, vec![node(1, Role::Leader, 2, 1, &[(1, 10), (2, 0)])]);
        assert!(checker.check(&before, &every_node(&before)).is_empty());
        let after = cluster(2, vec![node(1, Role::Leader, 2, 1, &[(1, 10), (2, 0), (2, 11)])]);
        assert!(checker.check(&after, &every_node(&after)).is_empty());
    }

    #[test]
    fn overwriting_leader_fires() {
        let mut checker = LeaderAppendOnly::default();
        let before = cluster(1, vec![node(1, Role::Leader, 2, 1, &[(1, 10), (2, 11)])]);
        assert!(checker.check(&before, &every_node(&before)).is_empty());
        let after = cluster(2, vec![node(1, Role::Leader, 2, 1, &[(1, 10), (2, 12)])]);
        let violations = checker.check(&after, &every_node(&after));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("overwrote index 2"));
    }

    #[test]
    fn deleting_leader_fires() {
        let mut checker = LeaderAppendOnly::default();
        let before = cluster(1, vec![node(1, Role::Leader, 2, 1, &[(1, 10), (2, 11)])]);
        assert!(checker.check(&before, &every_node(&before)).is_empty());
        let after = cluster(2, vec![node(1, Role::Leader, 2, 1, &[(1, 10)])]);
        assert!(checker.check(&after, &every_node(&after))[0].message.contains("deleted index 2"));
    }

    #[test]
    fn new_term_may_differ() {
        let mut checker = LeaderAppendOnly::default();
        let before = cluster(1, vec![node(1, Role::Leader, 2, 1, &[(1, 10), (2, 11)])]);
        assert!(checker.check(&before, &every_node(&before)).is_empty());
        let after = cluster(2, vec![node(1, Role::Leader, 4, 1, &[(1, 10), (3, 12)])]);
        assert!(checker.check(&after, &every_node(&after)).is_empty());
    }
}
