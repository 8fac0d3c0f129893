//! End-of-run checks on the client history, after faults are healed and the cluster
//! has settled:
//!
//! - `acknowledged_lost`: every acknowledged command is applied on every node;
//! - `same_sequence`: every node applied the same sequence of entries;
//! - `linearizability`: commands take effect in an order consistent with real time —
//!   if A was acknowledged before B was invoked, A is applied before B (for this
//!   write-only history, that is exactly linearizability of the command log);
//! - `linearizability` (register history): the whole client history, reads included, is
//!   checked by the `linearizability` crate as one register — writing command `v` sets it to
//!   `v`, a read returns the last command that took effect on the serving node.

use linearizability::{CheckOptions, CheckResult, ClientId, OpId, OperationRecord, Outcome, Output};

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

/// The one register the client model operates on.
pub const REGISTER_KEY: &str = "log";

/// Search budget of the register check (the history has one key).
const REGISTER_CHECK_STEP_BUDGET: u64 = 200_000;

/// The register value of command `operation`.
fn register_value(operation: u64) -> Vec<u8> {
    operation.to_string().into_bytes()
}

/// The client history as a register history: one history operation per client operation
/// (however many attempts it took), invoked and returned at its steps. A write of command
/// `v` writes `v`; unacknowledged writes have an unknown outcome; a read returns its
/// recorded output; unacknowledged reads are left out.
pub fn register_history(history: &[Operation]) -> linearizability::History {
    let mut records = Vec::with_capacity(history.len());
    for (position, operation) in history.iter().enumerate() {
        let command = position as u64 + 1;
        let (input, returned) = if operation.read {
            let Some(acknowledge_step) = operation.acknowledge_step else { continue };
            let output = operation
                .read_output
                .map_or_else(Output::read_absent, |value| Output::read_value(register_value(value)));
            (linearizability::Operation::read(REGISTER_KEY), Some((acknowledge_step, output)))
        } else {
            let write = linearizability::Operation::write(REGISTER_KEY, register_value(command));
            (write, operation.acknowledge_step.map(|step| (step, Output::write_acknowledged())))
        };
        let (return_time, outcome) = match returned {
            Some((step, output)) => (Some(step), Outcome::Returned(output)),
            None => (None, Outcome::Unknown),
        };
        records.push(OperationRecord {
            id: OpId(records.len()),
            client: ClientId(operation.client as u64),
            operation: input,
            invoke_time: operation.invoke_step,
            return_time,
            outcome,
        });
    }
    linearizability::History::from_records(records).expect("client operations are acknowledged after their invocation")
}

/// What the register check concluded.
#[derive(Debug)]
pub enum RegisterVerdict {
    /// The history is linearizable.
    Linearizable,
    /// It is not.
    Violation(Violation),
    /// The search ran out of budget: unknown.
    Inconclusive,
}

/// Checks the client history as a register history (see [`register_history`]).
pub fn check_register(step: u64, history: &[Operation]) -> RegisterVerdict {
    let register = register_history(history);
    let options =
        CheckOptions { step_budget_per_key: REGISTER_CHECK_STEP_BUDGET, minimize: true, minimize_check_limit: 100 };
    match linearizability::check_with_options(&register, &options) {
        CheckResult::Linearizable => RegisterVerdict::Linearizable,
        CheckResult::Timeout { .. } => RegisterVerdict::Inconclusive,
        CheckResult::NotLinearizable(violation) => {
            let message = format!(
                "register history of {} operations (a write of operation v writes \"v\"; times are steps) is not linearizable: {}",
                register.len(),
                violation.explanation
            );
            RegisterVerdict::Violation(report("linearizability", step, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::build::{cluster, node};
    use crate::view::AppliedView;
    use raft::Role;

    fn operation(invoke_step: u64, acknowledge_step: Option<u64>) -> Operation {
        Operation { client: 0, invoke_step, acknowledge_step, node: 0, read: false, read_output: None }
    }

    fn read(client: usize, invoke_step: u64, acknowledge_step: Option<u64>, read_output: Option<u64>) -> Operation {
        Operation { client, invoke_step, acknowledge_step, node: 0, read: true, read_output }
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

    #[test]
    fn register_history_maps_one_operation_per_client_operation() {
        // Write 1 acknowledged; write 2 never acknowledged; a read that was never served.
        let history = [operation(1, Some(4)), operation(2, None), read(1, 3, None, None), read(2, 5, Some(7), Some(1))];
        let register = register_history(&history);
        let records = register.operations();
        assert_eq!(records.len(), 3, "the unserved read is left out");
        assert_eq!(records[0].operation, linearizability::Operation::write(REGISTER_KEY, "1"));
        assert_eq!((records[0].invoke_time, records[0].return_time), (1, Some(4)));
        assert_eq!(records[1].operation, linearizability::Operation::write(REGISTER_KEY, "2"));
        assert_eq!(records[1].outcome, Outcome::Unknown);
        assert_eq!(records[2].outcome, Outcome::Returned(Output::read_value("1")));
        assert_eq!((records[2].client, records[2].return_time), (ClientId(2), Some(7)));
        assert!(matches!(check_register(9, &history), RegisterVerdict::Linearizable));
    }

    #[test]
    fn stale_read_in_register_history_is_reported() {
        // Write 1 is acknowledged at step 4, write 2 at step 6; a read invoked at step 8
        // returns 1 (a stale node), although write 2 had completed before it began.
        let history = [operation(1, Some(4)), operation(5, Some(6)), read(1, 8, Some(9), Some(1))];
        let RegisterVerdict::Violation(violation) = check_register(12, &history) else {
            panic!("a stale read must be a violation");
        };
        assert_eq!((violation.invariant.as_str(), violation.step), ("linearizability", 12));
        assert!(violation.message.contains("not linearizable"), "{}", violation.message);
        // Reading nothing after a write completed is stale too; reading a value nobody
        // wrote cannot be linearized either.
        let absent = [operation(1, Some(4)), read(1, 5, Some(6), None)];
        assert!(matches!(check_register(7, &absent), RegisterVerdict::Violation(_)));
        let invented = [operation(1, Some(4)), read(1, 2, Some(6), Some(7))];
        assert!(matches!(check_register(7, &invented), RegisterVerdict::Violation(_)));
        // Concurrent with write 2, the same read is fine; so is a read of an unacknowledged write.
        let concurrent = [operation(1, Some(4)), operation(5, Some(9)), read(1, 8, Some(9), Some(1))];
        assert!(matches!(check_register(12, &concurrent), RegisterVerdict::Linearizable));
        let unknown = [operation(1, None), read(1, 5, Some(6), Some(1))];
        assert!(matches!(check_register(7, &unknown), RegisterVerdict::Linearizable));
    }
}
