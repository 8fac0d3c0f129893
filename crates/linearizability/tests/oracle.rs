//! The checker agrees with a brute-force oracle (every order consistent with real time) on
//! many small random histories, linearizable or not, and its minimal failing subsets fail.

use linearizability::{
    check, CheckResult, ClientId, History, Input, OpId, Operation, OperationRecord, Outcome, Output, Value,
};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn random_value(rng: &mut ChaCha8Rng) -> Option<Value> {
    match rng.gen_range(0..3) {
        0 => None,
        value => Some(format!("v{value}").into_bytes()),
    }
}

fn random_record(rng: &mut ChaCha8Rng, index: usize) -> OperationRecord {
    let (input, output) = match rng.gen_range(0..3) {
        0 => (Input::Read, Output::Read { value: random_value(rng) }),
        1 => (Input::Write { value: random_value(rng) }, Output::Write),
        _ => {
            let input = Input::CompareAndSet { expected: random_value(rng), new: random_value(rng) };
            (input, Output::CompareAndSet { succeeded: rng.gen_bool(0.5) })
        }
    };
    let invoke_time = rng.gen_range(0..12);
    let (return_time, outcome) = if rng.gen_range(0..10) == 0 {
        (None, Outcome::Unknown)
    } else {
        (Some(invoke_time + rng.gen_range(0..5)), Outcome::Returned(output))
    };
    let operation = Operation { key: b"k".to_vec(), input };
    OperationRecord { id: OpId(index), client: ClientId(index as u64), operation, invoke_time, return_time, outcome }
}

/// The state after `record` from `state`, if its recorded output is possible.
fn apply(record: &OperationRecord, state: &Option<Value>) -> Option<Option<Value>> {
    match (&record.operation.input, &record.outcome) {
        (Input::Read, Outcome::Returned(Output::Read { value })) => (value == state).then(|| state.clone()),
        (Input::Read, _) => Some(state.clone()),
        (Input::Write { value }, _) => Some(value.clone()),
        (Input::CompareAndSet { expected, new }, Outcome::Returned(Output::CompareAndSet { succeeded })) => {
            match (*succeeded, expected == state) {
                (true, true) => Some(new.clone()),
                (false, false) => Some(state.clone()),
                _ => None,
            }
        }
        (Input::CompareAndSet { expected, new }, _) => {
            Some(if expected == state { new.clone() } else { state.clone() })
        }
    }
}

/// Whether the records not yet `placed` can follow from `state`. Operations without a
/// return need not be placed (they may take effect after everything else).
fn oracle(records: &[OperationRecord], placed: &mut Vec<bool>, state: &Option<Value>) -> bool {
    let unplaced = |index: usize, placed: &[bool]| !placed[index];
    if records.iter().enumerate().all(|(index, record)| placed[index] || record.return_time.is_none()) {
        return true;
    }
    for (index, record) in records.iter().enumerate() {
        let forced_before = records.iter().enumerate().any(|(other, earlier)| {
            unplaced(other, placed) && earlier.return_time.is_some_and(|time| time < record.invoke_time)
        });
        if placed[index] || forced_before {
            continue;
        }
        if let Some(next) = apply(record, state) {
            placed[index] = true;
            let found = oracle(records, placed, &next);
            placed[index] = false;
            if found {
                return true;
            }
        }
    }
    false
}

fn oracle_linearizable(history: &History) -> bool {
    let records = history.operations();
    oracle(records, &mut vec![false; records.len()], &None)
}

/// The records with ids in `subset`, renumbered.
fn sub_history(history: &History, subset: &[OpId]) -> History {
    let records = subset
        .iter()
        .enumerate()
        .map(|(index, id)| OperationRecord { id: OpId(index), ..history.operations()[id.0].clone() })
        .collect();
    History::from_records(records).expect("a subset of a well-formed history is well formed")
}

#[test]
fn agrees_with_brute_force_on_small_random_histories() {
    let mut violations = 0;
    for seed in 0..3000 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let size = rng.gen_range(1..=7);
        let records = (0..size).map(|index| random_record(&mut rng, index)).collect();
        let history = History::from_records(records).expect("well formed");
        let expected = oracle_linearizable(&history);
        match check(&history) {
            CheckResult::Linearizable => assert!(expected, "seed {seed}: checker says linearizable\n{history:?}"),
            CheckResult::NotLinearizable(violation) => {
                assert!(!expected, "seed {seed}: checker says not linearizable\n{}", violation.explanation);
                let subset = sub_history(&history, &violation.minimal_operations);
                assert!(!oracle_linearizable(&subset), "seed {seed}: minimal subset is linearizable");
                violations += 1;
            }
            CheckResult::Timeout { .. } => panic!("seed {seed}: tiny history ran out of budget"),
        }
    }
    // Both verdicts must be well represented for the comparison to mean something.
    assert!((500..2500).contains(&violations), "{violations} violations in 3000 histories");
}
