//! Election Safety (Raft paper §5.2, Figure 3): at most one leader can be elected in a
//! given term.
//!
//! The checker remembers, for every term, the first node it saw leading in it; any other
//! node seen as leader in the same term (now or at any later step) is a violation.

use std::collections::HashMap;

use raft::{NodeId, Role, Term};

use super::{violation, Checker};
use crate::view::ClusterView;
use crate::Violation;

/// Checks that each term has at most one leader, across the whole run.
#[derive(Debug, Default)]
pub struct ElectionSafety {
    leader_by_term: HashMap<Term, NodeId>,
}

impl Checker for ElectionSafety {
    fn name(&self) -> &'static str {
        "election_safety"
    }

    fn check(&mut self, view: &ClusterView, changed_nodes: &[usize]) -> Vec<Violation> {
        let mut violations = Vec::new();
        for &position in changed_nodes {
            let node = &view.nodes[position];
            if !node.alive || node.role != Role::Leader {
                continue;
            }
            let leader = *self.leader_by_term.entry(node.term).or_insert(node.id);
            if leader != node.id {
                let message = format!("nodes {leader} and {} both led term {}", node.id, node.term);
                violations.push(violation(self.name(), view.step, message));
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
    fn one_leader_per_term_passes() {
        let mut checker = ElectionSafety::default();
        let first = cluster(1, vec![node(1, Role::Leader, 2, 0, &[]), node(2, Role::Follower, 2, 0, &[])]);
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(2, vec![node(1, Role::Follower, 3, 0, &[]), node(2, Role::Leader, 3, 0, &[])]);
        assert!(checker.check(&second, &every_node(&second)).is_empty());
    }

    #[test]
    fn two_leaders_in_one_term_fire() {
        let mut checker = ElectionSafety::default();
        let both = cluster(1, vec![node(1, Role::Leader, 2, 0, &[]), node(2, Role::Leader, 2, 0, &[])]);
        let violations = checker.check(&both, &every_node(&both));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].invariant, "election_safety");
    }

    #[test]
    fn second_leader_at_a_later_step_fires() {
        let mut checker = ElectionSafety::default();
        let first = cluster(1, vec![node(1, Role::Leader, 2, 0, &[]), node(2, Role::Follower, 2, 0, &[])]);
        assert!(checker.check(&first, &every_node(&first)).is_empty());
        let second = cluster(2, vec![node(1, Role::Follower, 2, 0, &[]), node(2, Role::Leader, 2, 0, &[])]);
        assert_eq!(checker.check(&second, &[1]).len(), 1);
    }
}
