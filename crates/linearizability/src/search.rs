//! The Wing–Gong–Lowe search for one key's operations.
//!
//! The history is a doubly linked list of invocation and return events in time order.
//! The search walks it from the front: at an invocation it tries to linearize that
//! operation next (apply it to the model and, if its output fits, remove both its events
//! from the list and start again from the front); at a return it has reached an operation
//! that must already have been linearized, so it backtracks by undoing the last choice and
//! trying the next candidate. A memo of (set of linearized operations, model state) pairs
//! already explored prunes the search (Lowe's improvement), and a step budget bounds it.
//!
//! Operations without a return may take effect arbitrarily late: their return events sit
//! after every other event, and the search succeeds as soon as every operation with a
//! return is linearized (the rest can be placed afterwards, where they affect nothing
//! observed).

use std::collections::HashSet;

use crate::model::{KeyOperation, State, ABSENT};

/// How a search ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SearchOutcome {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    NotLinearizable(Failure),
    /// The step budget ran out first.
    BudgetExhausted,
}

/// The deepest point a failed search reached, for explanations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The longest linearizable prefix found (indexes into the searched operations), in
    /// linearization order.
    pub(crate) longest_prefix: Vec<usize>,
    /// The register state after that prefix.
    pub(crate) state_after_prefix: State,
    /// The operation that returned before it could be linearized after that prefix.
    pub(crate) blocked: Option<usize>,
}

const NONE: usize = usize::MAX;

/// One event in the linked list. Node 0 is the head sentinel.
#[derive(Clone, Copy, Debug)]
struct Node {
    previous: usize,
    next: usize,
    operation: usize,
    is_invocation: bool,
}

/// The events of a history in time order, from which linearized operations are lifted.
struct EventList {
    nodes: Vec<Node>,
    invocation_node: Vec<usize>,
    return_node: Vec<usize>,
}

impl EventList {
    fn new(operations: &[KeyOperation]) -> Self {
        // Order: time, then invocations before returns (equal times are concurrent);
        // operations without a return end the list.
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(operations.len() * 2);
        for (index, operation) in operations.iter().enumerate() {
            events.push((operation.invoke_time, false, index));
            if let Some(return_time) = operation.return_time {
                events.push((return_time, true, index));
            }
        }
        events.sort_unstable();
        let unreturned = operations.iter().enumerate().filter(|(_, operation)| operation.return_time.is_none());
        events.extend(unreturned.map(|(index, _)| (u64::MAX, true, index)));

        let head = Node { previous: NONE, next: NONE, operation: NONE, is_invocation: false };
        let mut list = EventList {
            nodes: vec![head],
            invocation_node: vec![NONE; operations.len()],
            return_node: vec![NONE; operations.len()],
        };
        for (_, is_return, operation) in events {
            let index = list.nodes.len();
            list.nodes[index - 1].next = index;
            list.nodes.push(Node { previous: index - 1, next: NONE, operation, is_invocation: !is_return });
            let slot = if is_return { &mut list.return_node } else { &mut list.invocation_node };
            slot[operation] = index;
        }
        assert!(list.return_node.iter().all(|&node| node != NONE), "every operation has a return event");
        list
    }

    fn first(&self) -> usize {
        self.nodes[0].next
    }

    fn unlink(&mut self, index: usize) {
        let Node { previous, next, .. } = self.nodes[index];
        self.nodes[previous].next = next;
        if next != NONE {
            self.nodes[next].previous = previous;
        }
    }

    fn relink(&mut self, index: usize) {
        let Node { previous, next, .. } = self.nodes[index];
        self.nodes[previous].next = index;
        if next != NONE {
            self.nodes[next].previous = index;
        }
    }

    /// Removes both events of `operation`.
    fn lift(&mut self, operation: usize) {
        self.unlink(self.invocation_node[operation]);
        self.unlink(self.return_node[operation]);
    }

    /// Restores both events of `operation`; lifts must be undone in reverse order.
    fn unlift(&mut self, operation: usize) {
        self.relink(self.return_node[operation]);
        self.relink(self.invocation_node[operation]);
    }
}

/// A set of operation indexes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BitSet(Box<[u64]>);

impl BitSet {
    fn new(size: usize) -> Self {
        BitSet(vec![0; size.div_ceil(64)].into_boxed_slice())
    }

    fn insert(&mut self, index: usize) {
        self.0[index / 64] |= 1 << (index % 64);
    }

    fn remove(&mut self, index: usize) {
        self.0[index / 64] &= !(1 << (index % 64));
    }
}

/// A choice made by the search: `operation` was linearized when the state was `state_before`.
struct Frame {
    operation: usize,
    state_before: State,
}

/// The search's mutable state.
struct Search<'a> {
    operations: &'a [KeyOperation],
    list: EventList,
    linearized: BitSet,
    memo: HashSet<(BitSet, State)>,
    stack: Vec<Frame>,
    state: State,
    /// Operations with a return time not yet linearized.
    returned_remaining: usize,
    failure: Failure,
}

/// Searches for a linearization of `operations` (all on one key, starting absent), taking
/// at most `step_budget` steps.
pub(crate) fn search(operations: &[KeyOperation], step_budget: u64) -> SearchOutcome {
    let mut search = Search {
        operations,
        list: EventList::new(operations),
        linearized: BitSet::new(operations.len()),
        memo: HashSet::new(),
        stack: Vec::with_capacity(operations.len()),
        state: ABSENT,
        returned_remaining: operations.iter().filter(|operation| operation.return_time.is_some()).count(),
        failure: Failure { longest_prefix: Vec::new(), state_after_prefix: ABSENT, blocked: None },
    };
    search.run(step_budget)
}

impl Search<'_> {
    fn run(&mut self, step_budget: u64) -> SearchOutcome {
        let mut cursor = self.list.first();
        let mut steps: u64 = 0;
        while self.returned_remaining > 0 {
            steps += 1;
            if steps > step_budget {
                return SearchOutcome::BudgetExhausted;
            }
            // Every returned operation still has its return event in the list, ahead of the
            // unreturned operations' return events, so the cursor meets one before the end.
            assert!(cursor != NONE, "the cursor ran past a return event");
            let node = self.list.nodes[cursor];
            if node.is_invocation {
                cursor = if self.try_linearize(node.operation) { self.list.first() } else { node.next };
                continue;
            }
            assert!(self.operations[node.operation].return_time.is_some(), "reached an unreturned operation's end");
            self.note_blocked(node.operation);
            let Some(operation) = self.backtrack() else {
                return SearchOutcome::NotLinearizable(self.failure.clone());
            };
            cursor = self.list.nodes[self.list.invocation_node[operation]].next;
        }
        SearchOutcome::Linearizable
    }

    /// Linearizes `operation` next if its output fits and the resulting configuration is
    /// new; returns whether it did.
    fn try_linearize(&mut self, operation: usize) -> bool {
        let Some(next_state) = self.operations[operation].step.apply(self.state) else {
            return false;
        };
        self.linearized.insert(operation);
        if !self.memo.insert((self.linearized.clone(), next_state)) {
            self.linearized.remove(operation);
            return false;
        }
        self.stack.push(Frame { operation, state_before: self.state });
        self.state = next_state;
        self.list.lift(operation);
        if self.operations[operation].return_time.is_some() {
            self.returned_remaining -= 1;
        }
        assert!(self.stack.len() <= self.operations.len(), "each operation is linearized at most once");
        if self.stack.len() > self.failure.longest_prefix.len() {
            self.failure.longest_prefix = self.stack.iter().map(|frame| frame.operation).collect();
            self.failure.state_after_prefix = self.state;
            self.failure.blocked = None;
        }
        true
    }

    /// Undoes the last choice; returns the operation un-linearized, or `None` if there was
    /// no choice left to undo.
    fn backtrack(&mut self) -> Option<usize> {
        let frame = self.stack.pop()?;
        self.linearized.remove(frame.operation);
        self.state = frame.state_before;
        self.list.unlift(frame.operation);
        if self.operations[frame.operation].return_time.is_some() {
            self.returned_remaining += 1;
        }
        Some(frame.operation)
    }

    /// The first return met at the deepest point reached is the operation that could not
    /// be placed after the longest prefix.
    fn note_blocked(&mut self, operation: usize) {
        if self.stack.len() == self.failure.longest_prefix.len() && self.failure.blocked.is_none() {
            self.failure.blocked = Some(operation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpId;
    use crate::model::Step;

    fn operation(index: usize, step: Step, invoke_time: u64, return_time: Option<u64>) -> KeyOperation {
        KeyOperation { id: OpId(index), step, invoke_time, return_time }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(search(&[], 10), SearchOutcome::Linearizable);
    }

    #[test]
    fn concurrent_write_may_precede_read() {
        let operations =
            [operation(0, Step::Write { value: 1 }, 0, Some(3)), operation(1, Step::Read { observed: 1 }, 1, Some(2))];
        assert_eq!(search(&operations, 100), SearchOutcome::Linearizable);
    }

    #[test]
    fn failure_reports_prefix_and_blocked_operation() {
        let operations = [
            operation(0, Step::Write { value: 1 }, 0, Some(1)),
            operation(1, Step::Write { value: 2 }, 2, Some(3)),
            operation(2, Step::Read { observed: 1 }, 4, Some(5)),
        ];
        let SearchOutcome::NotLinearizable(failure) = search(&operations, 100) else { panic!("expected a failure") };
        assert_eq!(failure.longest_prefix, vec![0, 1]);
        assert_eq!(failure.state_after_prefix, 2);
        assert_eq!(failure.blocked, Some(2));
    }

    #[test]
    fn budget_bounds_the_search() {
        let operations: Vec<KeyOperation> =
            (0..20).map(|index| operation(index, Step::Write { value: index as State }, 0, Some(100))).collect();
        assert_eq!(search(&operations, 5), SearchOutcome::BudgetExhausted);
    }
}
