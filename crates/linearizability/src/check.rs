//! Checking a whole history: partition it per key (a register store is linearizable iff
//! each key's sub-history is), search each key, and explain a failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::history::{History, Key, OpId};
use crate::model::{KeyHistory, KeyOperation, State, Step};
use crate::search::{search, Failure, SearchOutcome};

/// Bounds on the work a check may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// The most search steps (events visited) spent on any one key. The memo holds at most
    /// one entry per step, so this also bounds memory (each entry is about
    /// `operations_on_key / 8 + 40` bytes).
    pub step_budget_per_key: u64,
    /// Whether to shrink a failing key's history to a small set of operations that still
    /// fails (delta debugging; each re-check has the same step budget).
    pub minimize: bool,
    /// The most re-checks minimization may spend.
    pub minimize_check_limit: u32,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions { step_budget_per_key: 1_000_000, minimize: true, minimize_check_limit: 400 }
    }
}

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key's operations have a linearization.
    Linearizable,
    /// Some key's operations have none (the first such key, in key order).
    NotLinearizable(Violation),
    /// No violation was found, but the search ran out of budget on these keys, so whether
    /// they are linearizable is unknown.
    Timeout {
        /// The keys whose search was cut short, in key order.
        keys: Vec<Key>,
    },
}

impl CheckResult {
    /// Whether the history was shown linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }

    /// The violation, if one was found.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            CheckResult::NotLinearizable(violation) => Some(violation),
            CheckResult::Linearizable | CheckResult::Timeout { .. } => None,
        }
    }
}

/// Why a key's operations are not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: Key,
    /// The longest sequence of this key's operations the search could linearize, in
    /// linearization order.
    pub longest_prefix: Vec<OpId>,
    /// The operation that returned before it could be placed after that prefix.
    pub unplaceable: Option<OpId>,
    /// A small subset of the key's operations that is still not linearizable (every
    /// operation of the key if minimization was disabled or found nothing to remove).
    pub minimal_operations: Vec<OpId>,
    /// A human-readable account of all the above.
    pub explanation: String,
}

/// Checks `history` with the default [`CheckOptions`].
pub fn check(history: &History) -> CheckResult {
    check_with_options(history, &CheckOptions::default())
}

/// Checks `history`: each key independently, in key order. A violation on any key is
/// reported even if other keys ran out of budget.
pub fn check_with_options(history: &History, options: &CheckOptions) -> CheckResult {
    let mut keys: BTreeMap<&Key, KeyHistory> = BTreeMap::new();
    for record in history.operations() {
        keys.entry(&record.operation.key).or_default().push(record);
    }
    let mut timed_out = Vec::new();
    for (key, key_history) in &mut keys {
        key_history.drop_unobserved_unknown_writes();
        match search(&key_history.operations, options.step_budget_per_key) {
            SearchOutcome::Linearizable => {}
            SearchOutcome::BudgetExhausted => timed_out.push((*key).clone()),
            SearchOutcome::NotLinearizable(failure) => {
                return CheckResult::NotLinearizable(violation(history, key, key_history, &failure, options));
            }
        }
    }
    if timed_out.is_empty() {
        CheckResult::Linearizable
    } else {
        CheckResult::Timeout { keys: timed_out }
    }
}

/// How many operations of the longest prefix (the last ones) an explanation lists.
const EXPLAINED_PREFIX_LENGTH: usize = 30;

/// How many operations of the failing subset an explanation lists.
const EXPLAINED_SUBSET_LENGTH: usize = 60;

fn violation(
    history: &History,
    key: &Key,
    key_history: &KeyHistory,
    failure: &Failure,
    options: &CheckOptions,
) -> Violation {
    let operations = &key_history.operations;
    let minimal =
        if options.minimize { minimize(operations, failure, options) } else { (0..operations.len()).collect() };
    let to_ids = |indexes: &[usize]| indexes.iter().map(|&index| operations[index].id).collect::<Vec<OpId>>();
    let longest_prefix = to_ids(&failure.longest_prefix);
    let unplaceable = failure.blocked.map(|index| operations[index].id);
    let minimal_operations = to_ids(&minimal);

    let render = |id: OpId| describe_operation(history, id);
    let mut text = String::new();
    let _ = writeln!(text, "key {} is not linearizable ({} operations checked).", show_bytes(key), operations.len());
    let _ = writeln!(text, "Longest linearizable prefix found ({} operations):", longest_prefix.len());
    let shown_from = longest_prefix.len().saturating_sub(EXPLAINED_PREFIX_LENGTH);
    if shown_from > 0 {
        let _ = writeln!(text, "        ... {shown_from} earlier operations");
    }
    for (position, &id) in longest_prefix.iter().enumerate().skip(shown_from) {
        let _ = writeln!(text, "  {:>5}. {}", position + 1, render(id));
    }
    let state = failure.state_after_prefix;
    let _ = writeln!(text, "After it the register holds {}.", show_state(key_history, state));
    if let Some(index) = failure.blocked {
        let _ = writeln!(text, "Could not place next: {}", render(operations[index].id));
        let _ = writeln!(text, "  because {}.", blocked_reason(key_history, &operations[index], state));
    }
    let _ = writeln!(
        text,
        "A subset of {} operations that is not linearizable on its own (this alone proves the violation):",
        minimal_operations.len()
    );
    for &id in minimal_operations.iter().take(EXPLAINED_SUBSET_LENGTH) {
        let _ = writeln!(text, "  {}", render(id));
    }
    if minimal_operations.len() > EXPLAINED_SUBSET_LENGTH {
        let _ = writeln!(text, "  ... {} more", minimal_operations.len() - EXPLAINED_SUBSET_LENGTH);
    }
    Violation { key: key.clone(), longest_prefix, unplaceable, minimal_operations, explanation: text }
}

fn blocked_reason(key_history: &KeyHistory, operation: &KeyOperation, state: State) -> String {
    let show = |state: State| show_state(key_history, state);
    if operation.step.apply(state).is_some() {
        return "it fits there, but every continuation after it fails (it or an operation that must \
                precede it leads to a dead end)"
            .to_string();
    }
    match operation.step {
        Step::Read { observed } => format!("it observed {} but the register holds {}", show(observed), show(state)),
        Step::CompareAndSetSucceeded { expected, .. } => {
            format!("it succeeded comparing with {} but the register holds {}", show(expected), show(state))
        }
        Step::CompareAndSetFailed { expected } => {
            format!("it failed although the register holds {}, the value it expected", show(expected))
        }
        Step::Write { .. } | Step::CompareAndSetUnknown { .. } => {
            unreachable!("writes and unknown compare-and-sets fit every state")
        }
    }
}

/// Shrinks a failing key history to a subset that still fails (indexes into `operations`).
/// Only removals that cannot manufacture a failure are tried (see
/// [`implies_original_fails`]), so the subset failing proves the whole history fails.
/// Operations that change nothing are removed first, then writers, until neither pass
/// removes anything or the re-check limit is reached.
fn minimize(operations: &[KeyOperation], failure: &Failure, options: &CheckOptions) -> Vec<usize> {
    let mut checks_left = options.minimize_check_limit;
    let mut still_fails = |candidate: &[usize]| -> bool {
        if checks_left == 0 || !implies_original_fails(operations, candidate) {
            return false;
        }
        checks_left -= 1;
        let subset: Vec<KeyOperation> = candidate.iter().map(|&index| operations[index].clone()).collect();
        matches!(search(&subset, options.step_budget_per_key), SearchOutcome::NotLinearizable(_))
    };
    let mut kept: Vec<usize> = (0..operations.len()).collect();
    // Cheap first cut: operations invoked after the blocked operation returned.
    if let Some(end) = failure.blocked.and_then(|index| operations[index].return_time) {
        let candidate: Vec<usize> =
            kept.iter().copied().filter(|&index| operations[index].invoke_time <= end).collect();
        if candidate.len() < kept.len() && still_fails(&candidate) {
            kept = candidate;
        }
    }
    loop {
        let before = kept.len();
        let is_writer = |index: usize| written_state(&operations[index].step).is_some();
        kept = shrink(kept, &|index| !is_writer(index), &mut still_fails);
        kept = shrink(kept, &is_writer, &mut still_fails);
        if kept.len() == before {
            return kept;
        }
    }
}

/// Delta debugging over the `removable` members of `kept` (sorted indexes): removes chunks
/// of halving size (all of them first) while what is left `still_fails`; returns what is
/// left, sorted.
fn shrink(
    mut kept: Vec<usize>,
    removable: &dyn Fn(usize) -> bool,
    still_fails: &mut dyn FnMut(&[usize]) -> bool,
) -> Vec<usize> {
    let (fixed, mut movable): (Vec<usize>, Vec<usize>) = kept.iter().partition(|&&index| !removable(index));
    let mut chunk = movable.len().max(1);
    while !movable.is_empty() {
        let mut removed_any = false;
        let mut start = 0;
        while start < movable.len() {
            let end = (start + chunk).min(movable.len());
            let mut candidate: Vec<usize> =
                fixed.iter().chain(&movable[..start]).chain(&movable[end..]).copied().collect();
            candidate.sort_unstable();
            if still_fails(&candidate) {
                movable.drain(start..end);
                kept = candidate;
                removed_any = true;
            } else {
                start = end;
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        chunk = (chunk / 2).max(1);
    }
    kept
}

/// Whether `subset` (sorted indexes into `operations`) failing implies that `operations`
/// fails, i.e. any linearization of all the operations, restricted to the subset, stays
/// legal. Removing operations that change nothing (reads, failed compare-and-sets) is
/// always safe. Removing operations that may write changes the state the next operations
/// see, which is safe when nothing kept refers to a value the removed operations write (no
/// kept read observes it, no kept compare-and-set expects it) and no kept compare-and-set
/// failed (its failure may have depended on a removed write). Kept compare-and-sets with
/// unknown outcome that would now apply can be placed last instead.
fn implies_original_fails(operations: &[KeyOperation], subset: &[usize]) -> bool {
    let mut in_subset = vec![false; operations.len()];
    for &index in subset {
        in_subset[index] = true;
    }
    let mut removed_writes: Vec<State> = operations
        .iter()
        .zip(&in_subset)
        .filter(|(_, &kept)| !kept)
        .filter_map(|(operation, _)| written_state(&operation.step))
        .collect();
    if removed_writes.is_empty() {
        return true;
    }
    removed_writes.sort_unstable();
    removed_writes.dedup();
    subset.iter().all(|&index| match operations[index].step {
        Step::CompareAndSetFailed { .. } => false,
        Step::Read { observed: referenced }
        | Step::CompareAndSetSucceeded { expected: referenced, .. }
        | Step::CompareAndSetUnknown { expected: referenced, .. } => removed_writes.binary_search(&referenced).is_err(),
        Step::Write { .. } => true,
    })
}

/// The state an operation may set, if it may write.
fn written_state(step: &Step) -> Option<State> {
    match *step {
        Step::Write { value } => Some(value),
        Step::CompareAndSetSucceeded { new, .. } | Step::CompareAndSetUnknown { new, .. } => Some(new),
        Step::Read { .. } | Step::CompareAndSetFailed { .. } => None,
    }
}

fn describe_operation(history: &History, id: OpId) -> String {
    let record = history.operation(id).expect("violations name operations of the history");
    let input = match &record.operation.input {
        crate::Input::Read => "read".to_string(),
        crate::Input::Write { value } => format!("write {}", show_optional(value.as_deref())),
        crate::Input::CompareAndSet { expected, new } => {
            format!("compare-and-set {} -> {}", show_optional(expected.as_deref()), show_optional(new.as_deref()))
        }
    };
    let output = match &record.outcome {
        crate::Outcome::Pending => "pending".to_string(),
        crate::Outcome::Unknown => "unknown (timed out)".to_string(),
        crate::Outcome::Returned(crate::Output::Read { value }) => show_optional(value.as_deref()),
        crate::Outcome::Returned(crate::Output::Write) => "ok".to_string(),
        crate::Outcome::Returned(crate::Output::CompareAndSet { succeeded }) => {
            (if *succeeded { "succeeded" } else { "failed" }).to_string()
        }
    };
    let end = record.return_time.map_or("∞".to_string(), |time| time.to_string());
    format!("{id} client {}: {input} => {output}  [time {}..{end}]", record.client.0, record.invoke_time)
}

fn show_state(key_history: &KeyHistory, state: State) -> String {
    show_optional(key_history.value(state).map(Vec::as_slice))
}

fn show_optional(value: Option<&[u8]>) -> String {
    value.map_or("<absent>".to_string(), show_bytes)
}

/// Bytes as a quoted string if they are UTF-8, else as hex.
pub(crate) fn show_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => bytes.iter().fold("0x".to_string(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        }),
    }
}
