//! File retention (etcd's `--max-wals` and `--max-snapshots`): after compactions, at most
//! the configured number of segment and snapshot files remain, never one that recovery
//! still needs, and 0 keeps everything; the WAL reopens to the same state either way.

use std::path::Path;

use bytes::Bytes;
use raft::{ConfState, Entry, HardState};
use wal::conformance::{describe, entries};
use wal::{Wal, WalOptions, WriteBatch};

fn conf() -> ConfState {
    ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] }
}

fn batch(entries: Vec<Entry>, commit: u64) -> WriteBatch {
    let term = entries.last().map_or(1, |entry| entry.term);
    WriteBatch { snapshot: None, entries, hard_state: Some(HardState { term, vote: 1, commit }) }
}

fn count(directory: &Path, suffix: &str) -> usize {
    std::fs::read_dir(directory)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(suffix))
        .count()
}

/// Writes 200 entries in small segments with a compaction every 20; returns the counts of
/// segment and snapshot files, and checks the WAL reopens to the same state.
fn run(directory: &Path, segment_files_max: u64, snapshot_files_max: u64) -> (usize, usize) {
    let options =
        WalOptions { segment_size_bytes_max: 1024, segment_files_max, snapshot_files_max, ..WalOptions::new(9, 1) };
    let mut wal = Wal::create(directory, options.clone(), conf()).unwrap();
    for first in (1..=200).step_by(5) {
        wal.write(&batch(entries(1, first, first + 4), first + 4)).unwrap();
        if (first + 4) % 20 == 0 {
            wal.compact(first + 4, conf(), Bytes::from(format!("state at {}", first + 4))).unwrap();
        }
    }
    let state = describe(&wal);
    let counts = (count(directory, ".wal"), count(directory, ".snap"));
    drop(wal);
    let reopened = Wal::open(directory, options).unwrap();
    assert_eq!(describe(&reopened), state, "retained files do not change what recovery sees");
    counts
}

#[test]
fn keeps_at_most_the_configured_files() {
    let directory = tempfile::tempdir().unwrap();
    let (unlimited_segments, unlimited_snapshots) = run(&directory.path().join("unlimited"), 0, 0);
    assert_eq!(unlimited_snapshots, 10, "0 keeps every snapshot file");
    assert!(unlimited_segments > 5, "0 keeps every segment ({unlimited_segments}), more than the limit below");
    let (segments, snapshots) = run(&directory.path().join("five"), 5, 5);
    assert_eq!((segments, snapshots), (5, 5), "etcd's defaults: 5 and 5");
    let (segments, snapshots) = run(&directory.path().join("one"), 1, 1);
    assert_eq!(snapshots, 1, "only the current snapshot");
    assert!(segments <= 2, "only segments after the snapshot ({segments})");
}
