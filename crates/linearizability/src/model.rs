//! The register model, compiled per key: values are interned to small integers so that a
//! model state is a `u32` and the search's memo entries stay small.

use std::collections::HashMap;

use crate::history::{Input, OpId, OperationRecord, Outcome, Output, Value};

/// A register state: [`ABSENT`] or 1 + an index into [`KeyHistory::values`].
pub(crate) type State = u32;

/// The state of a key that holds no value (the initial state).
pub(crate) const ABSENT: State = 0;

/// One operation on a single key, reduced to what the model needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A read that observed `observed`.
    Read { observed: State },
    /// A write (acknowledged or not: an unacknowledged write may be placed last, where it
    /// affects nothing observed).
    Write { value: State },
    /// A compare-and-set known to have succeeded.
    CompareAndSetSucceeded { expected: State, new: State },
    /// A compare-and-set known to have failed (the register did not hold `expected`).
    CompareAndSetFailed { expected: State },
    /// A compare-and-set with unknown outcome: sets `new` if the register holds `expected`.
    CompareAndSetUnknown { expected: State, new: State },
}

impl Step {
    /// The state after this step from `state`, or `None` if its recorded output is
    /// impossible from `state`.
    pub(crate) fn apply(&self, state: State) -> Option<State> {
        match *self {
            Step::Read { observed } => (observed == state).then_some(state),
            Step::Write { value } => Some(value),
            Step::CompareAndSetSucceeded { expected, new } => (expected == state).then_some(new),
            Step::CompareAndSetFailed { expected } => (expected != state).then_some(state),
            Step::CompareAndSetUnknown { expected, new } => Some(if expected == state { new } else { state }),
        }
    }
}

/// An operation on one key, ready for the search.
#[derive(Clone, Debug)]
pub(crate) struct KeyOperation {
    /// The operation in the full history.
    pub(crate) id: OpId,
    /// What it does to the register.
    pub(crate) step: Step,
    /// Logical time of the invocation.
    pub(crate) invoke_time: u64,
    /// Logical time of the return; `None` when it may take effect arbitrarily late.
    pub(crate) return_time: Option<u64>,
}

/// All the operations on one key, with the key's interned values.
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyHistory {
    /// The operations, in invocation order.
    pub(crate) operations: Vec<KeyOperation>,
    /// Distinct values seen on this key; state `i + 1` is `values[i]`.
    pub(crate) values: Vec<Value>,
    interned: HashMap<Value, State>,
}

impl KeyHistory {
    /// Adds one operation on this key. Reads whose outcome is unknown are dropped: they
    /// change nothing and constrain nothing.
    pub(crate) fn push(&mut self, record: &OperationRecord) {
        let step = match (&record.operation.input, &record.outcome) {
            (Input::Read, Outcome::Returned(Output::Read { value })) => Step::Read { observed: self.intern(value) },
            (Input::Read, _) => return,
            (Input::Write { value }, _) => Step::Write { value: self.intern(value) },
            (Input::CompareAndSet { expected, new }, outcome) => {
                let expected = self.intern(expected);
                match outcome {
                    Outcome::Returned(Output::CompareAndSet { succeeded: true }) => {
                        Step::CompareAndSetSucceeded { expected, new: self.intern(new) }
                    }
                    Outcome::Returned(_) => Step::CompareAndSetFailed { expected },
                    Outcome::Pending | Outcome::Unknown => {
                        Step::CompareAndSetUnknown { expected, new: self.intern(new) }
                    }
                }
            }
        };
        let return_time = match record.outcome {
            Outcome::Returned(_) => record.return_time,
            Outcome::Pending | Outcome::Unknown => None,
        };
        assert!(
            return_time.is_none_or(|time| time >= record.invoke_time),
            "{} returns before its invocation",
            record.id
        );
        self.operations.push(KeyOperation { id: record.id, step, invoke_time: record.invoke_time, return_time });
    }

    /// Drops operations with unknown outcome whose effect no other operation can have
    /// relied on: writes (and compare-and-sets) of a value that no operation observes or
    /// expects, when no compare-and-set that failed could have come after them. Any
    /// linearization that includes such an operation stays legal without it, and keeping
    /// them would let the search try every subset of them at every point.
    pub(crate) fn drop_unobserved_unknown_writes(&mut self) {
        let mut referenced = vec![false; self.values.len() + 1];
        let mut latest_failed_return = None;
        for operation in &self.operations {
            match operation.step {
                Step::Read { observed } => referenced[observed as usize] = true,
                Step::CompareAndSetSucceeded { expected, .. } | Step::CompareAndSetUnknown { expected, .. } => {
                    referenced[expected as usize] = true;
                }
                Step::CompareAndSetFailed { expected } => {
                    referenced[expected as usize] = true;
                    latest_failed_return = latest_failed_return.max(operation.return_time);
                }
                Step::Write { .. } => {}
            }
        }
        self.operations.retain(|operation| {
            let written = match operation.step {
                Step::Write { value } => value,
                Step::CompareAndSetUnknown { new, .. } => new,
                Step::Read { .. } | Step::CompareAndSetSucceeded { .. } | Step::CompareAndSetFailed { .. } => {
                    return true;
                }
            };
            let no_failure_after = latest_failed_return.is_none_or(|time| time < operation.invoke_time);
            operation.return_time.is_some() || referenced[written as usize] || !no_failure_after
        });
    }

    /// The value a state stands for.
    pub(crate) fn value(&self, state: State) -> Option<&Value> {
        (state != ABSENT).then(|| &self.values[state as usize - 1])
    }

    fn intern(&mut self, value: &Option<Value>) -> State {
        let Some(value) = value else { return ABSENT };
        if let Some(&state) = self.interned.get(value) {
            return state;
        }
        self.values.push(value.clone());
        let state = State::try_from(self.values.len()).expect("fewer than 2^32 distinct values per key");
        self.interned.insert(value.clone(), state);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_register_semantics() {
        assert_eq!(Step::Read { observed: 1 }.apply(1), Some(1));
        assert_eq!(Step::Read { observed: 1 }.apply(ABSENT), None);
        assert_eq!(Step::Write { value: 2 }.apply(1), Some(2));
        assert_eq!(Step::CompareAndSetSucceeded { expected: 1, new: 2 }.apply(1), Some(2));
        assert_eq!(Step::CompareAndSetSucceeded { expected: 1, new: 2 }.apply(3), None);
        assert_eq!(Step::CompareAndSetFailed { expected: 1 }.apply(1), None);
        assert_eq!(Step::CompareAndSetFailed { expected: 1 }.apply(3), Some(3));
        assert_eq!(Step::CompareAndSetUnknown { expected: 1, new: 2 }.apply(1), Some(2));
        assert_eq!(Step::CompareAndSetUnknown { expected: 1, new: 2 }.apply(3), Some(3));
    }
}
