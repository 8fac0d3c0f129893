//! End-of-run checks on the client history, after faults are healed and the cluster
//! has settled:
//!
//! - `acknowledged_lost`: every acknowledged command is applied on every node;
//! - `same_sequence`: every node applied the same sequence of entries;
//! - `linearizability`: commands take effect in an order consistent with real time —
//!   if A was acknowledged before B was invoked, A is applied before B (for this
//!   write-only history, that is exactly linearizability of the command log).

use crate::clients::Operation;
use crate::view::ClusterView;
use crate::Violation;

fn report(invariant: &str, step: u64, message: String) -> Violation {
    Violation { invariant: invariant.to_string(), message, step }
}

/// Checks the end state: `operations_by_node[p]` lists, parallel to
/// `view.nodes[p].applied`, the operation id of each applied entry.
pub fn check(view: &ClusterView, operations_by_node: &[&[u64]], history: &[Operation]) -> Vec<Violation> {
    let mut violations = Vec::new();
    let Some(reference) = view.nodes.first() else { return violations };
    for node in &view.nodes[1..] {
        if node.applied != reference.applied {
            let common = node.applied.iter().zip(&reference.applied).take_while(|(left, right)| left == right).count();
            let message = format!(
                "node {} applied {} entries, node {} applied {}; they first differ at position {common}",
                node.id,
                node.applied.len(),
                reference.id,
                reference.applied.len()
            );
            violations.push(report("same_sequence", view.step, message));
        }
    }
    for (node, operations) in view.nodes.iter().zip(operations_by_node) {
        let applied: std::collections::HashSet<u64> = operations.iter().copied().collect();
        let lost = history.iter().enumerate().find(|(id, operation)| {
            !operation.read && operation.acknowledge_step.is_some() && !applied.contains(&(*id as u64 + 1))
        });
        if let Some((id, operation)) = lost {
            let message = format!(
                "operation {} of client {} acknowledged at step {:?} is not applied on node {}",
                id + 1,
                operation.client,
                operation.acknowledge_step,
                node.id
            );
            violations.push(report("acknowledged_lost", view.step, message));
        }
    }
    if let (Some(node), Some(operations)) = (view.nodes.first(), operations_by_node.first()) {
        let indexes: Vec<u64> = node.applied.iter().map(|applied| applied.index).collect();
        violations.extend(check_real_time_order(view.step, &indexes, operations, history));
    }
    violations
}

/// Real-time order: an operation acknowledged before another was invoked must be
/// applied (first) at a lower index.
fn check_real_time_order(step: u64, indexes: &[u64], operations: &[u64], history: &[Operation]) -> Option<Violation> {
    let mut first_index = vec![u64::MAX; history.len()];
    for (&index, &operation) in indexes.iter().zip(operations) {
        if let Some(slot) = (operation as usize).checked_sub(1).and_then(|position| first_index.get_mut(position)) {
            *slot = (*slot).min(index);
        }
    }
    let mut acknowledged: Vec<(u64, u64, usize)> = history
        .iter()
        .enumerate()
        .filter(|(_, operation)| !operation.read)
        .filter_map(|(position, operation)| Some((operation.acknowledge_step?, first_index[position], position)))
        .collect();
    acknowledged.sort_unstable();
    let mut prefix_max: Vec<(u64, usize)> = Vec::with_capacity(acknowledged.len());
    for &(_, index, position) in &acknowledged {
        let best = prefix_max.last().copied().filter(|&(best, _)| best >= index).unwrap_or((index, position));
        prefix_max.push(best);
    }
    for (position, operation) in history.iter().enumerate() {
        let index = first_index[position];
        if index == u64::MAX {
            continue;
        }
        let before = acknowledged.partition_point(|&(acknowledge_step, _, _)| acknowledge_step < operation.invoke_step);
        let Some(&(earlier_index, earlier)) = before.checked_sub(1).map(|last| &prefix_max[last]) else { continue };
        if earlier_index >= index {
            let message = format!(
                "operation {} (invoked at step {}) applied at index {index}, before operation {} acknowledged earlier but applied at {earlier_index}",
                position + 1,
                operation.invoke_step,
                earlier + 1
            );
            return Some(report("linearizability", step, message));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::build::{cluster, node};
    use crate::view::AppliedView;
    use raft::Role;

    fn operation(invoke_step: u64, acknowledge_step: Option<u64>) -> Operation {
        Operation { client: 0, invoke_step, acknowledge_step, node: 0, read: false }
    }

    fn applied(indexes: &[u64]) -> Vec<AppliedView> {
        indexes.iter().map(|&index| AppliedView { index, term: 1, data_hash: index }).collect()
    }

    #[test]
    fn consistent_history_passes() {
        let mut first = node(1, Role::Leader, 1, 2, &[]);
        first.applied = applied(&[1, 2]);
        let mut second = node(2, Role::Follower, 1, 2, &[]);
        second.applied = applied(&[1, 2]);
        let view = cluster(9, vec![first, second]);
        let history = [operation(1, Some(3)), operation(4, Some(6))];
        assert!(check(&view, &[&[1, 2], &[1, 2]], &history).is_empty());
    }

    #[test]
    fn lost_and_diverging_and_reordered_fire() {
        let mut first = node(1, Role::Leader, 1, 2, &[]);
        first.applied = applied(&[1, 2]);
        let mut second = node(2, Role::Follower, 1, 2, &[]);
        second.applied = applied(&[1]);
        let view = cluster(9, vec![first, second]);
        // Operation 2 was acknowledged before operation 1 was invoked, yet applied after it.
        let history = [operation(5, Some(6)), operation(1, Some(3))];
        let violations = check(&view, &[&[1, 2], &[1]], &history);
        let names: Vec<&str> = violations.iter().map(|violation| violation.invariant.as_str()).collect();
        assert_eq!(names, ["same_sequence", "acknowledged_lost", "linearizability"]);
    }
}
