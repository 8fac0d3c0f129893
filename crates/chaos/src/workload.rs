//! Concurrent clients over etcd's API, recording every operation in a shared [`History`].
//!
//! Each client talks to one member (client `i` to member `i mod n`), keeps one operation in
//! flight, and picks reads, puts and compare-and-sets on a few keys with values unique to
//! the run. A write that fails or misses its deadline has an unknown outcome (it may have
//! been applied); a read that fails is recorded as timed out, which the checker ignores.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use linearizability::{ClientId, History, OpId, Operation, Output};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::etcd;

/// Pause after a failed operation, so a client of a dead member does not spin; doubled
/// after each further failure in a row, up to [`ERROR_BACKOFF_MAX`].
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Longest pause after failures.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A write the cluster acknowledged, with the revision it created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcknowledgedWrite {
    /// The key written.
    pub key: Vec<u8>,
    /// The value written.
    pub value: Vec<u8>,
    /// The store revision of the write.
    pub revision: i64,
}

/// Counts of what the clients saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperationCounts {
    /// Reads that returned a value or absence.
    pub reads_returned: u64,
    /// Puts acknowledged.
    pub puts_acknowledged: u64,
    /// Compare-and-sets that returned "succeeded".
    pub compare_and_sets_succeeded: u64,
    /// Compare-and-sets that returned "failed".
    pub compare_and_sets_failed: u64,
    /// Writes whose outcome is unknown (error or deadline).
    pub writes_unknown: u64,
    /// Reads that failed (dropped from the check).
    pub reads_failed: u64,
    /// Operations whose connection was refused, so they never reached a server (left out
    /// of the history handed to the checker).
    pub never_sent: u64,
}

/// Everything the clients recorded.
#[derive(Debug, Default)]
pub struct Recording {
    /// The history of every operation.
    pub history: History,
    /// Writes acknowledged to a client.
    pub acknowledged_writes: Vec<AcknowledgedWrite>,
    /// Counts of outcomes.
    pub counts: OperationCounts,
    /// The latest value a client saw per key (used to pick compare-and-set expectations).
    latest_values: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Operations that certainly never reached a server.
    never_sent: BTreeSet<OpId>,
}

impl Recording {
    /// The history without the operations that never reached a server (they cannot have
    /// taken effect, and left in as "unknown" they only slow the checker down).
    pub fn checked_history(&self) -> History {
        let mut records = self.history.operations().to_vec();
        records.retain(|record| !self.never_sent.contains(&record.id));
        for (position, record) in records.iter_mut().enumerate() {
            record.id = OpId(position);
        }
        History::from_records(records).expect("a subset of a well-formed history is well formed")
    }

    fn fail(&mut self, id: OpId, error: &etcd::RequestError) {
        if error.never_sent() {
            self.counts.never_sent += 1;
            self.never_sent.insert(id);
        }
        self.history.time_out(id);
    }
}

/// The recording shared by all clients.
pub type SharedRecording = Arc<Mutex<Recording>>;

/// How clients behave.
#[derive(Clone, Debug)]
pub struct WorkloadOptions {
    /// Number of keys operated on.
    pub keys: usize,
    /// Deadline of each operation.
    pub operation_deadline: Duration,
    /// Clients stop issuing operations once the history holds this many.
    pub operations_max: usize,
    /// Least time from the start of one operation of a client to the start of its next
    /// (spreads a bounded history over a long run).
    pub operation_interval_min: Duration,
}

/// The key with index `index`.
pub fn key_name(index: usize) -> Vec<u8> {
    format!("chaos/{index}").into_bytes()
}

/// What a client decided to do next.
enum Plan {
    Read,
    Put { value: Vec<u8> },
    CompareAndSet { expected: Vec<u8>, new: Vec<u8> },
}

/// Runs client `client` against the member at `url` until `stop` turns true or the history
/// is full. Its choices come from `seed`.
pub async fn run_client(
    client: u64,
    url: String,
    seed: u64,
    options: WorkloadOptions,
    recording: SharedRecording,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let channel = etcd::channel(&url, options.operation_deadline)?;
    let mut random = ChaCha8Rng::seed_from_u64(seed);
    let mut sequence = 0u64;
    let mut backoff = ERROR_BACKOFF;
    while !*stop.borrow_and_update() {
        sequence += 1;
        let started = tokio::time::Instant::now();
        let key = key_name(random.gen_range(0..options.keys));
        let plan = {
            let recording = recording.lock().expect("recording lock");
            if recording.history.len() >= options.operations_max {
                return Ok(());
            }
            plan_operation(&mut random, &recording, &key, format!("{client}.{sequence}").into_bytes())
        };
        let succeeded = execute(client, &channel, &key, plan, &options, &recording).await;
        if succeeded {
            backoff = ERROR_BACKOFF;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {}
            }
            backoff = (backoff * 2).min(ERROR_BACKOFF_MAX);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(started + options.operation_interval_min) => {}
            _ = stop.changed() => {}
        }
    }
    Ok(())
}

fn plan_operation(random: &mut ChaCha8Rng, recording: &Recording, key: &[u8], unique_value: Vec<u8>) -> Plan {
    let roll = random.gen_range(0..10);
    match (roll, recording.latest_values.get(key)) {
        (0..=3, _) => Plan::Read,
        (4..=6, Some(expected)) => Plan::CompareAndSet { expected: expected.clone(), new: unique_value },
        _ => Plan::Put { value: unique_value },
    }
}

/// Issues one operation and records it; returns whether it got an answer.
async fn execute(
    client: u64,
    channel: &Channel,
    key: &[u8],
    plan: Plan,
    options: &WorkloadOptions,
    recording: &SharedRecording,
) -> bool {
    let deadline = options.operation_deadline;
    let operation = match &plan {
        Plan::Read => Operation::read(key),
        Plan::Put { value } => Operation::write(key, value.clone()),
        Plan::CompareAndSet { expected, new } => Operation::compare_and_set(key, expected.clone(), new.clone()),
    };
    let id = recording.lock().expect("recording lock").history.invoke(ClientId(client), operation);
    match plan {
        Plan::Read => {
            let result = etcd::get(channel, key, 0, false, deadline).await;
            let mut recording = recording.lock().expect("recording lock");
            match result {
                Ok((value, _)) => {
                    recording.counts.reads_returned += 1;
                    if let Some(value) = &value {
                        recording.latest_values.insert(key.to_vec(), value.clone());
                    }
                    let output = value.map_or_else(Output::read_absent, Output::read_value);
                    recording.history.complete(id, output);
                    true
                }
                Err(error) => {
                    recording.counts.reads_failed += 1;
                    recording.fail(id, &error);
                    false
                }
            }
        }
        Plan::Put { value } => {
            let result = etcd::put(channel, key, &value, deadline).await.map(|revision| (true, revision));
            record_write(recording, id, key, value, result, Output::write_acknowledged())
        }
        Plan::CompareAndSet { expected, new } => {
            let result = etcd::compare_and_set(channel, key, &expected, &new, deadline).await;
            let output = Output::compare_and_set(matches!(result, Ok((true, _))));
            record_write(recording, id, key, new, result, output)
        }
    }
}

/// Records the end of a put or compare-and-set: `result` is (whether it took effect, revision).
fn record_write(
    recording: &SharedRecording,
    id: OpId,
    key: &[u8],
    value: Vec<u8>,
    result: Result<(bool, i64), etcd::RequestError>,
    output: Output,
) -> bool {
    let mut recording = recording.lock().expect("recording lock");
    match result {
        Ok((took_effect, revision)) => {
            match (&output, took_effect) {
                (Output::Write, _) => recording.counts.puts_acknowledged += 1,
                (_, true) => recording.counts.compare_and_sets_succeeded += 1,
                (_, false) => recording.counts.compare_and_sets_failed += 1,
            }
            if took_effect {
                recording.latest_values.insert(key.to_vec(), value.clone());
                recording.acknowledged_writes.push(AcknowledgedWrite { key: key.to_vec(), value, revision });
            }
            recording.history.complete(id, output);
            true
        }
        Err(error) => {
            if !error.never_sent() {
                recording.counts.writes_unknown += 1;
            }
            recording.fail(id, &error);
            false
        }
    }
}
