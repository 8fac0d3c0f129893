//! A linearizability checker for client histories of a key-value store whose keys are
//! registers supporting read, write (including delete) and compare-and-set.
//!
//! A history is linearizable if every operation can be given a single instant between its
//! invocation and its return such that, taken in that order, the operations are a legal
//! sequential execution of the store (each read sees the latest write, each
//! compare-and-set succeeds exactly when the register holds its expected value). Keys are
//! independent registers, so the history is split per key and each key is checked on its
//! own (P-compositionality), by the Wing–Gong–Lowe backtracking search with memoization
//! of (set of operations linearized, register state).
//!
//! Operations whose client timed out ([`History::time_out`]) or that never completed have
//! an unknown outcome: they may take effect at any time after their invocation, or never.
//! Reads with unknown outcome constrain nothing and are ignored.
//!
//! The search is bounded by [`CheckOptions::step_budget_per_key`]; a check that runs out
//! returns [`CheckResult::Timeout`], which means "unknown", not "violation". The checker
//! is pure and deterministic: no I/O, no clock, no randomness.
//!
//! ```
//! use linearizability::{check, CheckResult, ClientId, History, Operation, Output};
//!
//! let mut history = History::new();
//! let write = history.invoke(ClientId(1), Operation::write("x", "1"));
//! let read = history.invoke(ClientId(2), Operation::read("x")); // concurrent with the write
//! history.complete(write, Output::write_acknowledged());
//! history.complete(read, Output::read_value("1"));
//! assert_eq!(check(&history), CheckResult::Linearizable);
//!
//! // A read that starts after the write returned must see it.
//! let stale = history.invoke(ClientId(3), Operation::read("x"));
//! history.complete(stale, Output::read_absent());
//! let result = check(&history);
//! let violation = result.violation().expect("a stale read is a violation");
//! assert_eq!(violation.unplaceable, Some(stale));
//! println!("{}", violation.explanation);
//!
//! // Failing histories can be saved and replayed.
//! let saved = history.to_json_lines();
//! assert_eq!(History::from_json_lines(&saved).unwrap(), history);
//! ```

#![warn(missing_docs)]

mod check;
mod history;
mod json;
mod model;
mod search;

pub use check::{check, check_with_options, CheckOptions, CheckResult, Violation};
pub use history::{
    ClientId, History, HistoryError, Input, Key, OpId, Operation, OperationRecord, Outcome, Output, Value,
};
