//! Seeded generators of histories that are linearizable by construction: a true register
//! store is updated at one instant inside each operation's invocation–return interval.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;

use linearizability::{ClientId, History, Input, Key, OpId, Operation, Outcome, Output, Value};
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The shape of a generated history.
#[derive(Clone, Debug)]
pub struct Workload {
    pub clients: usize,
    pub keys: usize,
    pub operations: usize,
    /// Values are drawn from this many (small domains make reads ambiguous).
    pub distinct_values: u64,
    /// Chance, in thousandths, that a client times out on an operation.
    pub time_out_per_mille: u32,
}

/// The true store: applies an operation at its linearization point.
#[derive(Default)]
struct Store {
    values: HashMap<Key, Value>,
}

impl Store {
    fn apply(&mut self, operation: &Operation) -> Output {
        let current = self.values.get(&operation.key).cloned();
        match &operation.input {
            Input::Read => Output::Read { value: current },
            Input::Write { value } => {
                self.set(&operation.key, value.clone());
                Output::Write
            }
            Input::CompareAndSet { expected, new } => {
                let succeeded = current == *expected;
                if succeeded {
                    self.set(&operation.key, new.clone());
                }
                Output::CompareAndSet { succeeded }
            }
        }
    }

    fn set(&mut self, key: &Key, value: Option<Value>) {
        match value {
            Some(value) => self.values.insert(key.clone(), value),
            None => self.values.remove(key),
        };
    }
}

fn random_value(rng: &mut ChaCha8Rng, distinct_values: u64) -> Value {
    format!("v{}", rng.gen_range(0..distinct_values)).into_bytes()
}

fn random_operation(rng: &mut ChaCha8Rng, store: &Store, workload: &Workload) -> Operation {
    let key = format!("key-{}", rng.gen_range(0..workload.keys)).into_bytes();
    let roll = rng.gen_range(0..100);
    let input = if roll < 40 {
        Input::Read
    } else if roll < 45 {
        Input::Write { value: None }
    } else if roll < 75 {
        Input::Write { value: Some(random_value(rng, workload.distinct_values)) }
    } else {
        let current = store.values.get(&key).cloned();
        let expected = if rng.gen_bool(0.6) { current } else { Some(random_value(rng, workload.distinct_values)) };
        Input::CompareAndSet { expected, new: Some(random_value(rng, workload.distinct_values)) }
    };
    Operation { key, input }
}

/// One operation in flight.
struct InFlight {
    id: OpId,
    operation: Operation,
    /// Whether its linearization point has passed (or, for one the client gives up on, has
    /// been decided never to come).
    decided: bool,
    /// Its output, if it took effect.
    output: Option<Output>,
    /// Whether the client will time out on it.
    gives_up: bool,
}

/// A history of `workload.clients` concurrent clients, each with at most one operation in
/// flight; events interleave at random.
pub fn concurrent_history(seed: u64, workload: &Workload) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut store = Store::default();
    let mut history = History::new();
    let mut in_flight: Vec<Option<InFlight>> = (0..workload.clients).map(|_| None).collect();
    let mut invoked = 0;
    while invoked < workload.operations || in_flight.iter().any(Option::is_some) {
        let client = rng.gen_range(0..workload.clients);
        match in_flight[client].take() {
            None if invoked < workload.operations => {
                let operation = random_operation(&mut rng, &store, workload);
                let id = history.invoke(ClientId(client as u64), operation.clone());
                let gives_up = rng.gen_range(0..1000) < workload.time_out_per_mille;
                in_flight[client] = Some(InFlight { id, operation, decided: false, output: None, gives_up });
                invoked += 1;
            }
            None => {}
            Some(mut operation) if !operation.decided => {
                // The linearization point; an operation the client gives up on may never happen.
                if !operation.gives_up || rng.gen_bool(0.5) {
                    operation.output = Some(store.apply(&operation.operation));
                }
                operation.decided = true;
                in_flight[client] = Some(operation);
            }
            Some(operation) if operation.gives_up => history.time_out(operation.id),
            Some(operation) => history.complete(operation.id, operation.output.expect("took effect")),
        }
    }
    history
}

/// A history in which each operation returns before the next is invoked.
pub fn sequential_history(seed: u64, operations: usize, keys: usize) -> History {
    let workload = Workload { clients: 1, keys, operations, distinct_values: 4, time_out_per_mille: 0 };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut store = Store::default();
    let mut history = History::new();
    for _ in 0..operations {
        let operation = random_operation(&mut rng, &store, &workload);
        let id = history.invoke(ClientId(rng.gen_range(0..4)), operation.clone());
        history.complete(id, store.apply(&operation));
    }
    history
}

/// Changes the value observed by a randomly chosen returned read to one never written;
/// returns the changed operation, or `None` if the history has no returned read.
pub fn corrupt_a_read(history: History, seed: u64) -> (History, Option<OpId>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut records = history.into_records();
    let reads: Vec<usize> = records
        .iter()
        .filter(|record| matches!(record.outcome, Outcome::Returned(Output::Read { .. })))
        .map(|record| record.id.0)
        .collect();
    if reads.is_empty() {
        return (History::from_records(records).expect("unchanged"), None);
    }
    let chosen = reads[rng.gen_range(0..reads.len())];
    records[chosen].outcome = Outcome::Returned(Output::read_value("never-written"));
    (History::from_records(records).expect("still well formed"), Some(OpId(chosen)))
}
