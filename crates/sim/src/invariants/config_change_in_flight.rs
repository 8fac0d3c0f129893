//! One membership change at a time (thesis §4.1, §4.3): once a leader appends a
//! configuration entry, it is the only uncommitted configuration entry in its log. The single-server rule needs it (two
//! uncommitted single-server changes could join configurations whose majorities do not
//! overlap), and so does joint consensus (C_new follows C_old,new only once the latter is
//! committed).

use super::{violation, Checker};
use crate::view::ClusterView;
use crate::Violation;

/// Checks that every leader has at most one configuration change in flight.
#[derive(Debug, Default)]
pub struct ConfigChangeInFlight;

impl Checker for ConfigChangeInFlight {
    fn name(&self) -> &'static str {
        "config_change_in_flight"
    }

    fn check(&mut self, view: &ClusterView, changed_nodes: &[usize]) -> Vec<Violation> {
        let mut violations = Vec::new();
        for &position in changed_nodes {
            let node = &view.nodes[position];
            if node.alive && node.uncommitted_config_entries > 1 {
                let message = format!(
                    "leader {} of term {} has {} uncommitted configuration entries (commit {})",
                    node.id, node.term, node.uncommitted_config_entries, node.commit
                );
                violations.push(violation(self.name(), view.step, message));
            }
        }
        violations
    }
}

#[cfg(test)]
mod tests {
    use raft::Role;

    use super::*;
    use crate::invariants::every_node;
    use crate::view::build::{cluster, node};

    #[test]
    fn one_change_in_flight_passes_two_fire() {
        let mut checker = ConfigChangeInFlight;
        let mut leader = node(1, Role::Leader, 2, 1, &[(1, 10), (2, 11)]);
        leader.uncommitted_config_entries = 1;
        let one = cluster(1, vec![leader.clone(), node(2, Role::Follower, 2, 1, &[(1, 10)])]);
        assert!(checker.check(&one, &every_node(&one)).is_empty());
        leader.uncommitted_config_entries = 2;
        let two = cluster(2, vec![leader, node(2, Role::Follower, 2, 1, &[(1, 10)])]);
        let violations = checker.check(&two, &every_node(&two));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].invariant, "config_change_in_flight");
    }
}
