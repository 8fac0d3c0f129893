//! Property-style tests over seeded random histories: histories generated from a true
//! store are linearizable; corrupting one read to a value never written breaks that.

mod common;

use common::{concurrent_history, corrupt_a_read, sequential_history, Workload};
use linearizability::{check, CheckResult, History};

const SEEDS: u64 = 200;

fn assert_linearizable(history: &History, seed: u64) {
    let result = check(history);
    if let Some(violation) = result.violation() {
        panic!("seed {seed}: {}\n{}", violation.explanation, history.to_json_lines());
    }
    assert_eq!(result, CheckResult::Linearizable, "seed {seed}");
}

fn assert_caught(history: History, seed: u64) {
    let (corrupted, changed) = corrupt_a_read(history, seed);
    let Some(changed) = changed else { return };
    let result = check(&corrupted);
    let violation = result.violation().unwrap_or_else(|| panic!("seed {seed}: corruption of {changed} missed"));
    let key = &corrupted.operation(changed).expect("changed operation exists").operation.key;
    assert_eq!(&violation.key, key, "seed {seed}");
    assert_eq!(violation.minimal_operations, vec![changed], "seed {seed}: {}", violation.explanation);
}

#[test]
fn sequential_histories_are_linearizable() {
    for seed in 0..SEEDS {
        assert_linearizable(&sequential_history(seed, 60, 3), seed);
    }
}

#[test]
fn corrupted_sequential_histories_are_not() {
    for seed in 0..SEEDS {
        assert_caught(sequential_history(seed, 60, 3), seed);
    }
}

fn small_concurrent() -> Workload {
    Workload { clients: 4, keys: 2, operations: 80, distinct_values: 3, time_out_per_mille: 100 }
}

#[test]
fn concurrent_histories_with_time_outs_are_linearizable() {
    for seed in 0..SEEDS {
        assert_linearizable(&concurrent_history(seed, &small_concurrent()), seed);
    }
}

#[test]
fn corrupted_concurrent_histories_are_not() {
    for seed in 0..SEEDS {
        assert_caught(concurrent_history(seed, &small_concurrent()), seed);
    }
}

#[test]
fn generation_is_deterministic() {
    let workload = small_concurrent();
    assert_eq!(concurrent_history(7, &workload), concurrent_history(7, &workload));
    assert_ne!(concurrent_history(7, &workload), concurrent_history(8, &workload));
}

#[test]
fn ten_thousand_operations_check_within_budget() {
    let workload = Workload { clients: 5, keys: 10, operations: 10_000, distinct_values: 5, time_out_per_mille: 20 };
    let history = concurrent_history(2024, &workload);
    assert_eq!(history.len(), 10_000);
    assert_linearizable(&history, 2024);
}
