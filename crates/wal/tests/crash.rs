//! Crash tests: a scripted workload runs on the simulated file system, which crashes at
//! operation k, for every k; after the restart the WAL must open and hold a state the
//! workload passed through, no older than the last acknowledged one.
//!
//! `RAFTKV_LONG_TESTS=1` runs many more seeds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use raft::{ConfState, Entry, EntryKind, HardState, MemoryStorage, Snapshot, SnapshotMeta, Storage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wal::conformance::describe;
use wal::fault::{CrashMode, SimulatedFileSystem};
use wal::{PreparedSnapshot, SnapshotInstall, Wal, WalOptions, WriteBatch};

/// One step of the workload.
#[derive(Clone, Debug)]
enum Operation {
    /// `Wal::write`: durable on return.
    Write(WriteBatch),
    /// `Wal::append_batch`: durable at the next `Sync`.
    Append(WriteBatch),
    /// `Wal::sync`.
    Sync,
    /// `Wal::compact`.
    Compact { index: u64, conf: ConfState, data: Bytes },
    /// `Wal::set_conf_state`.
    SetConf(ConfState),
    /// `Wal::snapshot_writer` and `SnapshotWriter::write_with`: a snapshot file prepared
    /// (as on a worker thread), held until the next `Install`.
    Prepare { index: u64, conf: ConfState, data: Bytes },
    /// `Wal::install_snapshot` of the prepared snapshot (discarded if the log moved past it).
    Install,
}

/// The model's view of a prepared snapshot: (index, term, conf, data).
type PreparedModel = (u64, u64, ConfState, Bytes);

type Fingerprint = (raft::InitialState, Snapshot, u64, Vec<Entry>);

/// A workload and the state after each operation (`states[0]` is the empty log).
struct Workload {
    operations: Vec<Operation>,
    states: Vec<Fingerprint>,
    /// Prepared snapshots the model installed, and those it discarded (the log moved past).
    installs: (usize, usize),
}

fn random_entries(random: &mut ChaCha8Rng, first_index: u64, count: u64, term: u64) -> Vec<Entry> {
    let kinds = [EntryKind::Normal, EntryKind::Normal, EntryKind::Blank, EntryKind::Config];
    (first_index..first_index + count)
        .map(|index| {
            let size_bytes = random.gen_range(0..300);
            let data = Bytes::from((0..size_bytes).map(|_| random.gen::<u8>()).collect::<Vec<u8>>());
            Entry { term, index, kind: kinds[random.gen_range(0..kinds.len())], data }
        })
        .collect()
}

fn random_batch(random: &mut ChaCha8Rng, model: &MemoryStorage, term: &mut u64) -> WriteBatch {
    let mut batch = WriteBatch::default();
    let (first, last) = (model.first_index(), model.last_index());
    if random.gen_bool(0.1) {
        // A snapshot from the leader: matching the log, conflicting, or past its end.
        let index = random.gen_range(first..=last + 5);
        let matching = random.gen_bool(0.5) && model.term(index).is_ok();
        let snapshot_term = if matching { model.term(index).unwrap() } else { *term + 1 };
        *term = (*term).max(snapshot_term);
        let conf = ConfState { voters: vec![1, 2, random.gen_range(3..6)], learners: vec![], voters_outgoing: vec![] };
        let data = Bytes::from(format!("snapshot at {index}"));
        batch.snapshot = Some(Snapshot { meta: SnapshotMeta { index, term: snapshot_term, conf }, data });
    }
    if random.gen_bool(0.85) {
        let sizes = [1, 1, 2, 3, 8, 16, 40];
        let count = sizes[random.gen_range(0..sizes.len())];
        let mut after_snapshot = model.clone();
        if let Some(snapshot) = &batch.snapshot {
            after_snapshot.apply_snapshot(snapshot.clone());
        }
        let next = after_snapshot.last_index() + 1;
        let first_index = if random.gen_bool(0.2) {
            *term += 1; // a new leader overwrites a conflicting suffix
            random.gen_range(after_snapshot.first_index().min(next)..=next)
        } else {
            next
        };
        batch.entries = random_entries(random, first_index, count, *term);
    }
    if random.gen_bool(0.6) {
        let vote = random.gen_range(0..4);
        let commit = random.gen_range(0..=model.last_index() + batch.entries.len() as u64);
        batch.hard_state = Some(HardState { term: *term, vote, commit });
    }
    batch
}

fn apply_to_model(model: &mut MemoryStorage, prepared: &mut Option<PreparedModel>, operation: &Operation) {
    match operation {
        Operation::Write(batch) | Operation::Append(batch) => {
            if let Some(snapshot) = &batch.snapshot {
                model.apply_snapshot(snapshot.clone());
            }
            model.append(&batch.entries);
            if let Some(hard_state) = batch.hard_state {
                model.set_hard_state(hard_state);
            }
        }
        Operation::Sync => {}
        Operation::Compact { index, conf, data } => model.compact(*index, conf.clone(), data.clone()),
        Operation::SetConf(conf) => model.set_conf_state(conf.clone()),
        Operation::Prepare { index, conf, data } => {
            *prepared = Some((*index, model.term(*index).unwrap(), conf.clone(), data.clone()));
        }
        Operation::Install => {
            let (index, term, conf, data) = prepared.take().expect("a prepared snapshot");
            if index >= model.first_index() && model.term(index) == Ok(term) {
                model.compact(index, conf, data);
            }
        }
    }
}

/// True if installing `prepared` on `model` would install it (not discard it).
fn installs(model: &MemoryStorage, prepared: &Option<PreparedModel>) -> bool {
    let (index, term, ..) = prepared.as_ref().expect("a prepared snapshot");
    *index >= model.first_index() && model.term(*index) == Ok(*term)
}

fn generate_workload(seed: u64, length: usize) -> Workload {
    let mut random = ChaCha8Rng::seed_from_u64(seed);
    let mut model = MemoryStorage::default();
    let mut states = vec![describe(&model)];
    let mut operations = Vec::new();
    let mut term = 1;
    let mut prepared = None;
    let mut install_counts = (0, 0);
    for _ in 0..length {
        let choice = random.gen_range(0..100);
        let operation = match choice {
            _ if prepared.is_some() && random.gen_bool(0.3) => Operation::Install,
            92..=95 if prepared.is_none() && model.last_index() >= model.first_index() => {
                let index = random.gen_range(model.first_index()..=model.last_index());
                let conf = ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] };
                Operation::Prepare { index, conf, data: Bytes::from(format!("prepared at {index}")) }
            }
            0..=49 => Operation::Write(random_batch(&mut random, &model, &mut term)),
            50..=69 => Operation::Append(random_batch(&mut random, &model, &mut term)),
            70..=79 => Operation::Sync,
            80..=91 if model.last_index() >= model.first_index() => {
                let index = random.gen_range(model.first_index()..=model.last_index());
                let conf = ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![random.gen_range(4..9)],
                    voters_outgoing: vec![],
                };
                Operation::Compact { index, conf, data: Bytes::from(format!("compacted at {index}")) }
            }
            _ => Operation::SetConf(ConfState {
                voters: vec![1, random.gen_range(2..9)],
                learners: vec![],
                voters_outgoing: vec![],
            }),
        };
        if matches!(operation, Operation::Install) {
            let counter = if installs(&model, &prepared) { &mut install_counts.0 } else { &mut install_counts.1 };
            *counter += 1;
        }
        apply_to_model(&mut model, &mut prepared, &operation);
        operations.push(operation);
        states.push(describe(&model));
    }
    if prepared.is_some() {
        apply_to_model(&mut model, &mut prepared, &Operation::Install);
        operations.push(Operation::Install);
        states.push(describe(&model));
    }
    operations.push(Operation::Sync);
    states.push(describe(&model));
    Workload { operations, states, installs: install_counts }
}

/// A short description of a state for failure messages.
fn summary(state: &Fingerprint) -> String {
    let (initial, snapshot, first_index, entries) = state;
    let terms: Vec<u64> = entries.iter().map(|entry| entry.term).collect();
    let data_bytes: usize = entries.iter().map(|entry| entry.data.len()).sum();
    format!(
        "{:?} conf {:?} snapshot ({}, {}, {:?} bytes) first {first_index} terms {terms:?} ({data_bytes} data bytes)",
        initial.hard_state,
        initial.conf_state,
        snapshot.meta.index,
        snapshot.meta.term,
        snapshot.data.len()
    )
}

fn run_operation(
    wal: &mut Wal,
    prepared: &mut Option<PreparedSnapshot>,
    operation: &Operation,
) -> Result<(), wal::WalError> {
    match operation {
        Operation::Write(batch) => wal.write(batch),
        Operation::Append(batch) => wal.append_batch(batch),
        Operation::Sync => wal.sync(),
        Operation::Compact { index, conf, data } => wal.compact(*index, conf.clone(), data.clone()),
        Operation::SetConf(conf) => wal.set_conf_state(conf.clone()),
        Operation::Prepare { index, conf, data } => {
            let writer = wal.snapshot_writer(*index, conf.clone())?.expect("above the snapshot");
            *prepared = Some(writer.write_with(data.len() as u64, &mut |out| out.write_all(data))?);
            Ok(())
        }
        Operation::Install => wal.install_snapshot(prepared.take().expect("prepared")).map(|_| ()),
    }
}

/// True for operations durable on return (a prepare syncs only its own file).
fn is_acknowledging(operation: &Operation) -> bool {
    !matches!(operation, Operation::Append(_) | Operation::Prepare { .. })
}

fn directory() -> PathBuf {
    PathBuf::from("/node/wal")
}

fn options(file_system: &SimulatedFileSystem, segment_size_bytes_max: u64) -> WalOptions {
    WalOptions { segment_size_bytes_max, file_system: Arc::new(file_system.clone()), ..WalOptions::new(3, 2) }
}

/// Runs the workload, crashing at operation `crash_point` (if any). Returns the file
/// system, the last acknowledged state number and the last state number started.
fn run_until_crash(
    workload: &Workload,
    crash_point: Option<u64>,
    segment_size_bytes_max: u64,
) -> (SimulatedFileSystem, usize, usize) {
    let file_system = SimulatedFileSystem::new();
    let mut wal =
        Wal::create(directory(), options(&file_system, segment_size_bytes_max), ConfState::default()).unwrap();
    if let Some(crash_point) = crash_point {
        file_system.crash_at(crash_point);
    }
    let mut acknowledged = 0;
    let mut prepared = None;
    for (position, operation) in workload.operations.iter().enumerate() {
        if run_operation(&mut wal, &mut prepared, operation).is_err() {
            assert!(file_system.has_crashed(), "operation {position} failed without a crash: {operation:?}");
            // A failed prepare leaves the WAL usable (nothing refers to its file).
            let prepare = matches!(operation, Operation::Prepare { .. });
            assert!(prepare || wal.is_poisoned() || run_operation(&mut wal, &mut None, &Operation::Sync).is_err());
            return (file_system, acknowledged, position + 1);
        }
        if is_acknowledging(operation) {
            acknowledged = position + 1;
        }
    }
    (file_system, acknowledged, workload.operations.len())
}

/// Reopens after a crash and checks the recovered state, then checks that the WAL
/// still accepts writes and that they survive another restart.
fn check_recovery(
    workload: &Workload,
    file_system: &SimulatedFileSystem,
    acknowledged: usize,
    started: usize,
    mode: CrashMode,
    context: &str,
) {
    let restarted = file_system.restart(mode);
    let mut wal = Wal::open(directory(), options(&restarted, 1024))
        .unwrap_or_else(|error| panic!("{context} {mode:?}: open failed: {error}"));
    let recovered = describe(&wal);
    let matching = (acknowledged..=started).find(|&state| workload.states[state] == recovered);
    if matching.is_none() {
        for (position, operation) in workload.operations.iter().enumerate().take(started) {
            eprintln!("operation {position}: {}", summary_operation(operation));
        }
    }
    assert!(
        matching.is_some(),
        "{context} {mode:?}: recovered state is none of states {acknowledged}..={started}\nrecovered:    {}\nacknowledged: {}",
        summary(&recovered),
        summary(&workload.states[acknowledged])
    );
    let next_index = wal.last_index() + 1;
    let term = wal.hard_state().term.max(wal.term(wal.last_index()).unwrap()) + 1;
    let entry = Entry { term, index: next_index, kind: EntryKind::Normal, data: Bytes::from_static(b"after") };
    wal.write(&WriteBatch {
        entries: vec![entry],
        hard_state: Some(HardState { term, vote: 1, commit: 0 }),
        snapshot: None,
    })
    .unwrap_or_else(|error| panic!("{context} {mode:?}: write after recovery failed: {error}"));
    check_no_garbage(&restarted, &wal, &format!("{context} {mode:?}"));
    // The next snapshot works: prepared and installed at the last entry.
    let writer = wal.snapshot_writer(next_index, ConfState::default()).unwrap().expect("a new entry to cover");
    let prepared = writer.write_with(4, &mut |out| out.write_all(b"next")).unwrap();
    assert_eq!(wal.install_snapshot(prepared).unwrap(), SnapshotInstall::Installed, "{context} {mode:?}");
    check_no_garbage(&restarted, &wal, &format!("{context} {mode:?} after the next snapshot"));
    let expected = describe(&wal);
    drop(wal);
    let reopened = Wal::open(directory(), options(&restarted, 1024)).unwrap();
    assert_eq!(describe(&reopened), expected, "{context} {mode:?}: second recovery");
}

fn summary_operation(operation: &Operation) -> String {
    match operation {
        Operation::Write(batch) | Operation::Append(batch) => format!(
            "{} snap {:?} entries {:?} hs {:?}",
            if matches!(operation, Operation::Write(_)) { "write" } else { "append" },
            batch.snapshot.as_ref().map(|s| (s.meta.index, s.meta.term)),
            batch.entries.first().map(|e| (e.index, batch.entries.len())),
            batch.hard_state
        ),
        other => format!("{:?}", other).chars().take(80).collect(),
    }
}

/// No temporary file is left, and the only snapshot file is the log's (one kept).
fn check_no_garbage(file_system: &SimulatedFileSystem, wal: &Wal, context: &str) {
    let names = file_system.list_directory_names(&directory());
    assert!(!names.iter().any(|name| name.ends_with(".tmp")), "{context}: temporary files left: {names:?}");
    let snapshots: Vec<&String> = names.iter().filter(|name| name.ends_with(".snap")).collect();
    let expected = usize::from(wal.snapshot_meta().index > 0);
    assert_eq!(snapshots.len(), expected, "{context}: snapshot files {snapshots:?}");
}

fn crash_at_every_point(seed: u64, length: usize, segment_size_bytes_max: u64) {
    let workload = generate_workload(seed, length);
    let (file_system, acknowledged, _) = run_until_crash(&workload, None, segment_size_bytes_max);
    assert_eq!(acknowledged, workload.operations.len(), "the workload runs without a crash");
    let reopened = Wal::open(directory(), options(&file_system.restart(CrashMode::LoseUnsynced), 1024)).unwrap();
    assert_eq!(summary(&describe(&reopened)), summary(workload.states.last().unwrap()), "seed {seed}: clean run");
    assert!(describe(&reopened) == *workload.states.last().unwrap(), "seed {seed}: clean run recovers the final state");
    // Crash points counted from after `create`.
    let create_operations = {
        let probe = SimulatedFileSystem::new();
        Wal::create(directory(), options(&probe, 1024), ConfState::default()).unwrap();
        probe.operation_count()
    };
    let crash_points = file_system.operation_count() - create_operations;
    assert!(crash_points < 100_000, "the loop is bounded");
    for crash_point in 1..=crash_points {
        let (file_system, acknowledged, started) =
            run_until_crash(&workload, Some(crash_point), segment_size_bytes_max);
        assert!(file_system.has_crashed());
        let context = format!("seed {seed} crash point {crash_point}/{crash_points}");
        for mode in crash_modes(crash_point) {
            check_recovery(&workload, &file_system, acknowledged, started, mode, &context);
        }
    }
}

fn crash_modes(seed: u64) -> [CrashMode; 5] {
    [
        CrashMode::LoseUnsynced,
        CrashMode::TornWrites { seed },
        CrashMode::KeepDirectoryChanges,
        CrashMode::SomeDirectoryChanges { seed },
        CrashMode::SomeDirectoryChanges { seed: seed + 1_000_000 },
    ]
}

fn long_tests() -> bool {
    std::env::var("RAFTKV_LONG_TESTS").is_ok_and(|value| value == "1")
}

#[test]
fn crash_at_every_write_and_sync_point() {
    let seeds = if long_tests() { 0..60 } else { 0..3 };
    for seed in seeds {
        crash_at_every_point(seed, 40, 1024);
    }
}

#[test]
fn the_workloads_install_and_discard_prepared_snapshots() {
    let (installed, discarded) = (0..3)
        .map(|seed| generate_workload(seed, 40).installs)
        .fold((0, 0), |sum, counts| (sum.0 + counts.0, sum.1 + counts.1));
    assert!(installed > 0 && discarded > 0, "installed {installed}, discarded {discarded}");
}

#[test]
fn crash_at_every_point_with_large_segments() {
    let seeds = if long_tests() { 100..130 } else { 100..101 };
    for seed in seeds {
        crash_at_every_point(seed, 40, 1 << 20);
    }
}

#[test]
fn crash_during_create_leaves_nothing_or_an_empty_log() {
    let probe = SimulatedFileSystem::new();
    Wal::create(directory(), options(&probe, 1024), ConfState::default()).unwrap();
    for crash_point in 1..=probe.operation_count() {
        let file_system = SimulatedFileSystem::new();
        file_system.crash_at(crash_point);
        let conf = ConfState { voters: vec![1], learners: vec![], voters_outgoing: vec![] };
        assert!(Wal::create(directory(), options(&file_system, 1024), conf.clone()).is_err());
        for mode in crash_modes(crash_point) {
            let restarted = file_system.restart(mode);
            let wal = Wal::open_or_create(directory(), options(&restarted, 1024), conf.clone()).unwrap();
            assert_eq!(wal.last_index(), 0);
            assert_eq!(wal.initial_state().unwrap().conf_state, conf, "crash point {crash_point} {mode:?}");
        }
    }
}

#[test]
fn segments_roll_and_compaction_deletes_them() {
    let file_system = SimulatedFileSystem::new();
    let mut wal = Wal::create(directory(), options(&file_system, 1024), ConfState::default()).unwrap();
    let mut random = ChaCha8Rng::seed_from_u64(9);
    for first_index in (1..=200).step_by(4) {
        wal.append(&random_entries(&mut random, first_index, 4, 1)).unwrap();
    }
    assert!(wal.segment_sequences().len() > 10, "small segments roll: {:?}", wal.segment_sequences());
    wal.compact(150, ConfState::default(), Bytes::from_static(b"s")).unwrap();
    let sequences = wal.segment_sequences();
    let listed = file_system.list_directory_names(Path::new("/node/wal"));
    assert_eq!(listed.iter().filter(|name| name.ends_with(".wal")).count(), sequences.len(), "{listed:?}");
    assert!(sequences.len() < 20, "covered segments are deleted: {sequences:?}");
    drop(wal);
    let wal = Wal::open(directory(), options(&file_system, 1024)).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (151, 200));
}
