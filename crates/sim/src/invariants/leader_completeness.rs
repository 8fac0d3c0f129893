//! Leader Completeness (Raft paper §5.4, Figure 3): if a log entry is committed in a
//! given term, then that entry will be present in the logs of the leaders for all
//! higher-numbered terms.
//!
//! The checker records every entry some node reports committed, with the lowest term of
//! a node seen reporting it (never lower than the term it was committed in, so the check
//! has no false alarms). A leader of a higher term must hold the entry — checked when the
//! node is first seen leading, and for every current leader when a new commit is seen.
//! Entries a leader has compacted into its snapshot count as present.

use raft::{Index, Role, Term};

use super::{violation, Checker};
use crate::view::{ClusterView, EntryView, NodeView};
use crate::Violation;

const NAME: &str = "leader_completeness";

#[derive(Clone, Copy, Debug)]
struct Committed {
    entry: EntryView,
    term_seen: Term,
}

#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    incarnation: u64,
    commit: Index,
    leading_term: Option<Term>,
}

/// Checks that leaders hold every entry committed in earlier terms.
#[derive(Debug, Default)]
pub struct LeaderCompleteness {
    /// `committed[index - 1]`: the committed entry at `index`, once seen.
    committed: Vec<Option<Committed>>,
    seen_by_position: Vec<Option<Seen>>,
}

/// Why `leader` fails to hold `committed`, if it does.
fn missing(leader: &NodeView, committed: &Committed) -> Option<String> {
    let entry = &committed.entry;
    if leader.role != Role::Leader || !leader.alive || leader.term <= committed.term_seen {
        return None;
    }
    if entry.index <= leader.log.snapshot_index {
        return None;
    }
    let found = leader.log.entry(entry.index);
    if found == Some(entry) {
        return None;
    }
    Some(format!(
        "leader {} of term {} lacks entry (index {}, term {}, hash {:x}) committed by term {}: it has {:?}",
        leader.id, leader.term, entry.index, entry.term, entry.data_hash, committed.term_seen, found
    ))
}

impl LeaderCompleteness {
    /// Records entries `node` reports committed; returns the positions newly recorded.
    fn record_commits(&mut self, node: &NodeView, seen: Seen) -> Vec<Index> {
        let log = &node.log;
        let previous_commit = if seen.incarnation == node.incarnation { seen.commit } else { 0 };
        let first = (previous_commit + 1).min(node.log_changed_from).max(log.snapshot_index + 1);
        let mut recorded = Vec::new();
        for index in first..=node.commit.min(log.last_index()) {
            let Some(entry) = log.entry(index) else { continue };
            if self.committed.len() < index as usize {
                self.committed.resize(index as usize, None);
            }
            let slot = &mut self.committed[index as usize - 1];
            match slot {
                Some(committed) if committed.entry == *entry => {
                    committed.term_seen = committed.term_seen.min(node.term);
                }
                Some(_) => {}
                None => {
                    *slot = Some(Committed { entry: *entry, term_seen: node.term });
                    recorded.push(index);
                }
            }
        }
        recorded
    }

    fn check_new_leader(&self, leader: &NodeView) -> Option<String> {
        self.committed.iter().flatten().find_map(|committed| missing(leader, committed))
    }

    fn check_node(&mut self, view: &ClusterView, position: usize) -> Option<String> {
        let node = &view.nodes[position];
        let seen = self.seen_by_position[position].unwrap_or_default();
        let recorded = self.record_commits(node, seen);
        let leading_term = (node.role == Role::Leader).then_some(node.term);
        let newly_leading =
            leading_term.is_some() && (seen.incarnation != node.incarnation || seen.leading_term != leading_term);
        self.seen_by_position[position] =
            Some(Seen { incarnation: node.incarnation, commit: node.commit, leading_term });
        if newly_leading {
            if let Some(message) = self.check_new_leader(node) {
                return Some(message);
            }
        }
        for index in recorded {
            let committed = self.committed[index as usize - 1].expect("just recorded");
            if let Some(message) = view.nodes.iter().find_map(|leader| missing(leader, &committed)) {
                return Some(message);
            }
        }
        None
    }
}

impl Checker for LeaderCompleteness {
    fn name(&self) -> &'static str {
        NAME
    }

    fn check(&mut self, view: &ClusterView, changed_nodes: &[usize]) -> Vec<Violation> {
        if self.seen_by_position.len() < view.nodes.len() {
            self.seen_by_position.resize(view.nodes.len(), None);
        }
        let mut violations = Vec::new();
        for &position in changed_nodes {
            if !view.nodes[position].alive {
                continue;
            }
            if let Some(message) = self.check_node(view, position) {
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

    #[test]
    fn later_leader_with_committed_entries_passes() {
        let mut checker = LeaderCompleteness::default();
        let first = cluster(
            1,
            vec![node(1, Role::Leader, 2, 2, &[(1, 10), (2, 11)]), node(2, Role::Follower, 2, 2, &[(1, 10), (2, 11)])],
        );
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(
            2,
            vec![
                node(1, Role::Follower, 3, 2, &[(1, 10), (2, 11)]),
                node(2, Role::Leader, 3, 2, &[(1, 10), (2, 11), (3, 0)]),
            ],
        );
        assert!(checker.check(&second, &every_node(&second)).is_empty());
    }

    #[test]
    fn later_leader_missing_a_committed_entry_fires() {
        let mut checker = LeaderCompleteness::default();
        let first = cluster(
            1,
            vec![node(1, Role::Leader, 2, 2, &[(1, 10), (2, 11)]), node(2, Role::Follower, 2, 1, &[(1, 10)])],
        );
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(
            2,
            vec![node(1, Role::Follower, 3, 2, &[(1, 10), (2, 11)]), node(2, Role::Leader, 3, 1, &[(1, 10), (3, 0)])],
        );
        let violations = checker.check(&second, &every_node(&second));
        assert_eq!(violations.len(), 1);
        assert!(violations[0].message.contains("leader 2 of term 3 lacks entry (index 2"), "{}", violations[0].message);
    }

    #[test]
    fn uncommitted_entry_may_be_missing() {
        let mut checker = LeaderCompleteness::default();
        let first = cluster(
            1,
            vec![node(1, Role::Leader, 2, 1, &[(1, 10), (2, 11)]), node(2, Role::Follower, 2, 1, &[(1, 10)])],
        );
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(
            2,
            vec![node(1, Role::Follower, 3, 1, &[(1, 10), (2, 11)]), node(2, Role::Leader, 3, 1, &[(1, 10), (3, 0)])],
        );
        assert!(checker.check(&second, &every_node(&second)).is_empty());
    }
}
