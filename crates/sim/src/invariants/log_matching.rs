//! Log Matching (Raft paper §5.3, Figure 3): if two logs contain an entry with the same
//! index and term, then the logs are identical in all entries up through that index.
//!
//! Checked incrementally with the inductive form of the property: `(index, term)` must
//! identify one entry for the whole run — the same payload hash and the same term of the
//! entry before it. If every node agrees on that for every entry, equal `(index, term)`
//! implies equal prefixes (by induction on the index). Also checks the structure each log
//! must have: indexes contiguous and terms never decreasing along the log.

use std::collections::HashMap;

use raft::{Index, Term};

use super::{violation, Checker};
use crate::view::{ClusterView, EntryView, NodeView};
use crate::Violation;

const NAME: &str = "log_matching";

#[derive(Clone, Copy, Debug)]
struct Identity {
    data_hash: u64,
    previous_term: Term,
    first_seen_on: raft::NodeId,
}

/// Checks that `(index, term)` identifies an entry and its whole prefix.
#[derive(Debug, Default)]
pub struct LogMatching {
    identity_by_position: HashMap<(Index, Term), Identity>,
}

impl LogMatching {
    fn check_entry(&mut self, node: &NodeView, entry: &EntryView, previous_term: Term) -> Option<String> {
        let log = &node.log;
        if previous_term > entry.term {
            return Some(format!(
                "node {}: term decreases along the log at index {} ({} after {previous_term})",
                node.id, entry.index, entry.term
            ));
        }
        let seen = Identity { data_hash: entry.data_hash, previous_term, first_seen_on: node.id };
        let identity = *self.identity_by_position.entry((entry.index, entry.term)).or_insert(seen);
        if identity.data_hash != entry.data_hash || identity.previous_term != previous_term {
            return Some(format!(
                "entry (index {}, term {}) differs: node {} has hash {:x} after term {}, node {} had hash {:x} after term {} (log ends at {})",
                entry.index,
                entry.term,
                node.id,
                entry.data_hash,
                previous_term,
                identity.first_seen_on,
                identity.data_hash,
                identity.previous_term,
                log.last_index()
            ));
        }
        None
    }

    fn check_node(&mut self, node: &NodeView) -> Option<String> {
        let log = &node.log;
        let first = node.log_changed_from.max(log.snapshot_index + 1);
        if first > log.last_index() {
            return None;
        }
        let mut previous_term = log.term_at(first - 1).unwrap_or(0);
        for offset in (first - log.snapshot_index - 1) as usize..log.entries.len() {
            let entry = &log.entries[offset];
            let expected_index = log.snapshot_index + 1 + offset as Index;
            if entry.index != expected_index {
                return Some(format!("node {}: entry at position {expected_index} has index {}", node.id, entry.index));
            }
            if let Some(message) = self.check_entry(node, entry, previous_term) {
                return Some(message);
            }
            previous_term = entry.term;
        }
        None
    }
}

impl Checker for LogMatching {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&mut self, view: &ClusterView, changed_nodes: &[usize]) -> Vec<Violation> {
        let mut violations = Vec::new();
        for &position in changed_nodes {
            let node = &view.nodes[position];
            if !node.alive {
                continue;
            }
            if let Some(message) = self.check_node(node) {
                violations.push(violation(NAME, view.step, message));
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
    use raft::Role;

    #[test]
    fn matching_logs_pass() {
        let mut checker = LogMatching::default();
        let view = cluster(
            1,
            vec![
                node(1, Role::Leader, 3, 2, &[(1, 10), (1, 11), (3, 12)]),
                node(2, Role::Follower, 3, 2, &[(1, 10), (1, 11)]),
                node(3, Role::Follower, 2, 1, &[(1, 10), (2, 13)]),
            ],
        );
        assert!(checker.check(&view, &every_node(&view)).is_empty());
    }

    #[test]
    fn same_index_and_term_with_different_prefix_fires() {
        let mut checker = LogMatching::default();
        let view = cluster(
            1,
            vec![node(1, Role::Leader, 3, 0, &[(1, 10), (3, 12)]), node(2, Role::Follower, 3, 0, &[(2, 99), (3, 12)])],
        );
        let violations = checker.check(&view, &every_node(&view));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("(index 2, term 3) differs"), "{}", violations[0].message);
    }

    #[test]
    fn same_index_and_term_with_different_payload_fires_across_steps() {
        let mut checker = LogMatching::default();
        let first = cluster(1, vec![node(1, Role::Leader, 1, 0, &[(1, 10)])]);
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(2, vec![node(1, Role::Leader, 1, 0, &[(1, 11)])]);
        assert_eq!(checker.check(&second, &every_node(&second)).len(), 1);
    }

    #[test]
    fn decreasing_terms_fire() {
        let mut checker = LogMatching::default();
        let view = cluster(1, vec![node(1, Role::Follower, 3, 0, &[(3, 10), (2, 11)])]);
        assert!(checker.check(&view, &every_node(&view))[0].message.contains("term decreases"));
    }
}
