//! `Wal::detached_sync`: the fsync on another thread while the WAL takes more appends
//! (the server's write path). What was appended before the handle was taken survives a
//! crash once the handle's sync returned; segments rolled meanwhile are covered too.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use raft::{ConfState, Entry, EntryKind, HardState, Storage};
use wal::fault::{CrashMode, SimulatedFileSystem};
use wal::{Wal, WalOptions, WriteBatch};

fn directory() -> PathBuf {
    PathBuf::from("/node/wal")
}

fn options(file_system: &SimulatedFileSystem, segment_size_bytes_max: u64) -> WalOptions {
    WalOptions { segment_size_bytes_max, file_system: Arc::new(file_system.clone()), ..WalOptions::new(7, 1) }
}

fn batch(first_index: u64, count: u64, term: u64) -> WriteBatch {
    let entries = (first_index..first_index + count)
        .map(|index| Entry { term, index, kind: EntryKind::Normal, data: Bytes::from(vec![index as u8; 100]) })
        .collect();
    let hard_state = HardState { term, vote: 1, commit: first_index - 1 };
    WriteBatch { snapshot: None, entries, hard_state: Some(hard_state) }
}

#[test]
fn what_a_detached_sync_covered_survives_and_later_appends_may_not() {
    let file_system = SimulatedFileSystem::new();
    let mut wal = Wal::create(directory(), options(&file_system, 1 << 20), ConfState::default()).unwrap();
    wal.append_batch(&batch(1, 10, 1)).unwrap();
    let handle = wal.detached_sync().unwrap();
    wal.append_batch(&batch(11, 10, 1)).unwrap();
    std::thread::spawn(move || handle.sync()).join().unwrap().unwrap();
    assert_eq!(wal.last_index(), 20, "reads see appended data before it is durable");
    drop(wal);
    let restarted = file_system.restart(CrashMode::LoseUnsynced);
    let wal = Wal::open(directory(), options(&restarted, 1 << 20)).unwrap();
    // Entries 11..=20 were written before the sync ran, so they may have been covered;
    // entries 1..=10 must be.
    assert!(wal.last_index() >= 10, "acknowledged entries lost: last index {}", wal.last_index());
    assert_eq!(wal.entries(1, 11, u64::MAX).unwrap().len(), 10);
}

#[test]
fn a_detached_sync_covers_segments_rolled_before_it() {
    let file_system = SimulatedFileSystem::new();
    let mut wal = Wal::create(directory(), options(&file_system, 2048), ConfState::default()).unwrap();
    for first_index in (1..=200).step_by(5) {
        wal.append_batch(&batch(first_index, 5, 2)).unwrap();
    }
    assert!(wal.segment_sequences().len() > 3, "small segments roll: {:?}", wal.segment_sequences());
    wal.detached_sync().unwrap().sync().unwrap();
    drop(wal);
    for mode in [CrashMode::LoseUnsynced, CrashMode::TornWrites { seed: 5 }] {
        let restarted = file_system.restart(mode);
        let wal = Wal::open(directory(), options(&restarted, 2048)).unwrap();
        assert_eq!(wal.last_index(), 200, "{mode:?}");
        assert_eq!(wal.hard_state().term, 2);
    }
}

#[test]
fn a_failed_detached_sync_reports_the_segment() {
    let file_system = SimulatedFileSystem::new();
    let mut wal = Wal::create(directory(), options(&file_system, 1 << 20), ConfState::default()).unwrap();
    wal.append_batch(&batch(1, 3, 1)).unwrap();
    let handle = wal.detached_sync().unwrap();
    file_system.crash_at(1);
    let error = handle.sync().expect_err("the disk crashed");
    assert!(error.to_string().contains("/node/wal"), "{error}");
}
