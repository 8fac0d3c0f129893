//! Small histories whose verdict is known, written as tables of operations with explicit
//! invocation and return times.

use linearizability::{
    check, check_with_options, CheckOptions, CheckResult, ClientId, History, Input, OpId, Operation, OperationRecord,
    Outcome, Output,
};

/// How a scripted operation ends.
#[derive(Clone)]
enum End {
    /// Returned at this time with this output.
    At(u64, Output),
    /// The client timed out.
    Unknown,
}

/// An operation of a scripted history: client, operation, invocation time, end.
type Row = (u64, Operation, u64, End);

fn history(rows: Vec<Row>) -> History {
    let records = rows
        .into_iter()
        .enumerate()
        .map(|(index, (client, operation, invoke_time, end))| {
            let (return_time, outcome) = match end {
                End::At(time, output) => (Some(time), Outcome::Returned(output)),
                End::Unknown => (None, Outcome::Unknown),
            };
            OperationRecord { id: OpId(index), client: ClientId(client), operation, invoke_time, return_time, outcome }
        })
        .collect();
    History::from_records(records).expect("scripted histories are well formed")
}

fn write(key: &str, value: &str) -> Operation {
    Operation::write(key, value)
}

fn read(key: &str) -> Operation {
    Operation::read(key)
}

fn ok() -> Output {
    Output::write_acknowledged()
}

fn saw(value: &str) -> Output {
    Output::read_value(value)
}

fn assert_linearizable(rows: Vec<Row>) {
    let history = history(rows);
    let result = check(&history);
    assert_eq!(result, CheckResult::Linearizable, "{}", result.violation().map_or("", |v| &v.explanation));
}

/// Asserts a violation and returns it.
fn assert_violation(rows: Vec<Row>) -> linearizability::Violation {
    let history = history(rows);
    match check(&history) {
        CheckResult::NotLinearizable(violation) => {
            assert!(!violation.minimal_operations.is_empty());
            // The minimal subset must itself fail, and the explanation must name it.
            assert!(violation.explanation.contains("not linearizable"), "{}", violation.explanation);
            violation
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(vec![]);
}

#[test]
fn overlapping_writes_allow_either_order() {
    for last in ["1", "2"] {
        assert_linearizable(vec![
            (1, write("x", "1"), 0, End::At(10, ok())),
            (2, write("x", "2"), 1, End::At(11, ok())),
            (3, read("x"), 12, End::At(13, saw(last))),
        ]);
    }
}

#[test]
fn reads_concurrent_with_a_write_may_see_old_or_new() {
    assert_linearizable(vec![
        (1, write("x", "1"), 0, End::At(1, ok())),
        (1, write("x", "2"), 2, End::At(10, ok())),
        (2, read("x"), 3, End::At(4, saw("1"))),
        (3, read("x"), 5, End::At(6, saw("2"))),
        (2, read("x"), 11, End::At(12, saw("2"))),
    ]);
}

#[test]
fn compare_and_set_chain() {
    assert_linearizable(vec![
        (1, write("x", "0"), 0, End::At(1, ok())),
        (1, Operation::compare_and_set("x", "0", "1"), 2, End::At(3, Output::compare_and_set(true))),
        (2, Operation::compare_and_set("x", "1", "2"), 4, End::At(5, Output::compare_and_set(true))),
        (3, Operation::compare_and_set("x", "1", "3"), 6, End::At(7, Output::compare_and_set(false))),
        (1, read("x"), 8, End::At(9, saw("2"))),
    ]);
}

#[test]
fn concurrent_compare_and_sets_exactly_one_wins() {
    assert_linearizable(vec![
        (1, write("x", "0"), 0, End::At(1, ok())),
        (1, Operation::compare_and_set("x", "0", "1"), 2, End::At(6, Output::compare_and_set(false))),
        (2, Operation::compare_and_set("x", "0", "2"), 3, End::At(5, Output::compare_and_set(true))),
        (3, read("x"), 7, End::At(8, saw("2"))),
    ]);
}

#[test]
fn compare_and_set_against_absent_creates() {
    let create = Input::CompareAndSet { expected: None, new: Some(b"1".to_vec()) };
    assert_linearizable(vec![
        (1, Operation::new("x", create.clone()), 0, End::At(1, Output::compare_and_set(true))),
        (2, Operation::new("x", create), 2, End::At(3, Output::compare_and_set(false))),
        (1, Operation::delete("x"), 4, End::At(5, ok())),
        (2, read("x"), 6, End::At(7, Output::read_absent())),
    ]);
}

#[test]
fn timed_out_write_observed_later() {
    assert_linearizable(vec![
        (1, write("x", "1"), 0, End::Unknown),
        (2, read("x"), 5, End::At(6, Output::read_absent())),
        (2, read("x"), 7, End::At(8, saw("1"))),
        (2, read("x"), 100, End::At(101, saw("1"))),
    ]);
}

#[test]
fn timed_out_write_never_observed() {
    assert_linearizable(vec![
        (1, write("x", "0"), 0, End::At(1, ok())),
        (1, write("x", "1"), 2, End::Unknown),
        (2, read("x"), 5, End::At(6, saw("0"))),
        (2, read("x"), 7, End::At(8, saw("0"))),
    ]);
}

#[test]
fn timed_out_compare_and_set_may_or_may_not_apply() {
    for observed in ["0", "1"] {
        assert_linearizable(vec![
            (1, write("x", "0"), 0, End::At(1, ok())),
            (1, Operation::compare_and_set("x", "0", "1"), 2, End::Unknown),
            (2, read("x"), 5, End::At(6, saw(observed))),
        ]);
    }
}

#[test]
fn timed_out_reads_are_ignored() {
    assert_linearizable(vec![(1, write("x", "0"), 0, End::At(1, ok())), (2, read("x"), 2, End::Unknown)]);
}

#[test]
fn pending_operations_count_as_unknown() {
    let mut history = History::new();
    let write = history.invoke(ClientId(1), write("x", "1"));
    let read = history.invoke(ClientId(2), read("x"));
    history.complete(read, saw("1"));
    assert_eq!(history.operation(write).map(|record| &record.outcome), Some(&Outcome::Pending));
    assert_eq!(check(&history), CheckResult::Linearizable);
}

#[test]
fn keys_are_independent() {
    assert_linearizable(vec![
        (1, write("x", "1"), 0, End::At(1, ok())),
        (2, write("y", "1"), 2, End::At(3, ok())),
        (3, read("x"), 4, End::At(5, saw("1"))),
        (3, read("z"), 6, End::At(7, Output::read_absent())),
    ]);
}

#[test]
fn stale_read_after_completed_write() {
    let violation = assert_violation(vec![
        (1, write("x", "1"), 0, End::At(1, ok())),
        (1, write("x", "2"), 2, End::At(3, ok())),
        (2, read("x"), 4, End::At(5, saw("1"))),
    ]);
    assert_eq!(violation.key, b"x".to_vec());
    assert_eq!(violation.longest_prefix, vec![OpId(0), OpId(1)]);
    assert_eq!(violation.unplaceable, Some(OpId(2)));
    assert!(
        violation.explanation.contains("it observed \"1\" but the register holds \"2\""),
        "{}",
        violation.explanation
    );
}

#[test]
fn read_of_a_value_never_written() {
    let violation = assert_violation(vec![
        (1, write("x", "1"), 0, End::At(3, ok())),
        (2, read("x"), 1, End::At(2, saw("7"))),
        (2, write("x", "2"), 4, End::At(5, ok())),
    ]);
    assert_eq!(violation.unplaceable, Some(OpId(1)));
    assert_eq!(violation.minimal_operations, vec![OpId(1)]);
}

#[test]
fn reads_in_an_impossible_order() {
    // Two concurrent writes; later reads see 1, then 2, then 1 again: each write took
    // effect once, so the register cannot go back to 1.
    let violation = assert_violation(vec![
        (1, write("x", "1"), 0, End::At(20, ok())),
        (2, write("x", "2"), 0, End::At(20, ok())),
        (3, read("x"), 2, End::At(3, saw("1"))),
        (4, read("x"), 4, End::At(5, saw("2"))),
        (3, read("x"), 6, End::At(7, saw("1"))),
    ]);
    assert_eq!(violation.minimal_operations.len(), 5);
}

#[test]
fn compare_and_set_success_on_wrong_value() {
    assert_violation(vec![
        (1, write("x", "1"), 0, End::At(1, ok())),
        (2, Operation::compare_and_set("x", "2", "3"), 2, End::At(3, Output::compare_and_set(true))),
    ]);
}

#[test]
fn compare_and_set_failure_on_right_value() {
    let violation = assert_violation(vec![
        (1, write("x", "1"), 0, End::At(1, ok())),
        (2, Operation::compare_and_set("x", "1", "3"), 2, End::At(3, Output::compare_and_set(false))),
    ]);
    assert!(violation.explanation.contains("it failed although the register holds \"1\""), "{}", violation.explanation);
}

#[test]
fn lost_acknowledged_write() {
    let violation = assert_violation(vec![
        (1, write("x", "1"), 0, End::At(1, ok())),
        (2, read("x"), 2, End::At(3, saw("1"))),
        (1, write("y", "5"), 4, End::At(5, ok())),
        (3, read("y"), 6, End::At(7, Output::read_absent())),
    ]);
    assert_eq!(violation.key, b"y".to_vec());
    assert_eq!(violation.minimal_operations, vec![OpId(2), OpId(3)]);
}

#[test]
fn timed_out_write_cannot_be_undone() {
    // A timed-out write that was observed has happened; the key cannot become absent again.
    assert_violation(vec![
        (1, write("x", "1"), 0, End::Unknown),
        (2, read("x"), 5, End::At(6, saw("1"))),
        (2, read("x"), 7, End::At(8, Output::read_absent())),
    ]);
}

#[test]
fn minimization_drops_unrelated_operations() {
    let mut rows: Vec<Row> = (0..30).map(|time| (1, write("x", "a"), 2 * time, End::At(2 * time + 1, ok()))).collect();
    rows.push((2, read("x"), 100, End::At(101, saw("b"))));
    rows.push((2, read("x"), 102, End::At(103, saw("a"))));
    let violation = assert_violation(rows);
    assert_eq!(violation.minimal_operations, vec![OpId(30)]);
    assert_eq!(violation.longest_prefix.len(), 30);
}

#[test]
fn minimization_can_be_disabled() {
    let rows = vec![(1, write("x", "1"), 0, End::At(1, ok())), (2, read("x"), 2, End::At(3, saw("2")))];
    let options = CheckOptions { minimize: false, ..CheckOptions::default() };
    let violation = check_with_options(&history(rows), &options).violation().cloned().expect("a violation");
    assert_eq!(violation.minimal_operations, vec![OpId(0), OpId(1)]);
}

#[test]
fn exhausted_budget_is_a_timeout_not_a_violation() {
    let mut rows: Vec<Row> =
        (0..12).map(|client| (client, write("x", &client.to_string()), 0, End::At(100, ok()))).collect();
    rows.push((99, read("x"), 101, End::At(102, saw("0"))));
    let options = CheckOptions { step_budget_per_key: 3, ..CheckOptions::default() };
    assert_eq!(
        check_with_options(&history(rows.clone()), &options),
        CheckResult::Timeout { keys: vec![b"x".to_vec()] }
    );
    assert_eq!(check(&history(rows)), CheckResult::Linearizable);
}

#[test]
fn a_violation_on_one_key_wins_over_a_timeout_on_another() {
    let mut rows: Vec<Row> =
        (0..12).map(|client| (client, write("a", &client.to_string()), 0, End::At(100, ok()))).collect();
    rows.push((99, read("a"), 101, End::At(102, saw("0"))));
    rows.push((98, read("b"), 103, End::At(104, saw("ghost"))));
    let options = CheckOptions { step_budget_per_key: 20, ..CheckOptions::default() };
    let violation = check_with_options(&history(rows), &options).violation().cloned().expect("a violation");
    assert_eq!(violation.key, b"b".to_vec());
}

#[test]
fn many_unobserved_timed_out_writes_stay_cheap() {
    // Forty writes time out while another client writes and reads back distinct values:
    // without pruning, the search would try every subset of the forty at every point.
    let mut rows: Vec<Row> =
        (0..40).map(|client| (client, write("x", &format!("lost-{client}")), 0, End::Unknown)).collect();
    for step in 0..40 {
        let value = format!("kept-{step}");
        rows.push((100, write("x", &value), 10 + 4 * step, End::At(11 + 4 * step, ok())));
        rows.push((101, read("x"), 12 + 4 * step, End::At(13 + 4 * step, saw(&value))));
    }
    let options = CheckOptions { step_budget_per_key: 10_000, ..CheckOptions::default() };
    assert_eq!(check_with_options(&history(rows.clone()), &options), CheckResult::Linearizable);
    // One of them observed at the end is still accounted for.
    rows.push((101, read("x"), 1000, End::At(1001, saw("lost-7"))));
    assert_eq!(check_with_options(&history(rows), &options), CheckResult::Linearizable);
}
