//! Snapshots prepared off the WAL's thread and installed on it (`Wal::snapshot_writer`,
//! `SnapshotWriter::write_with`, `Wal::install_snapshot`): the WAL keeps taking writes
//! while the file is written; an install after the log moved past the prepared snapshot
//! discards it and changes nothing; a prepared file never installed is gone after reopen.
//! (Crashes at every operation of both steps: tests/crash.rs.)

use std::path::Path;

use bytes::Bytes;
use raft::{ConfState, HardState, Snapshot, SnapshotMeta, Storage};
use wal::conformance::entries;
use wal::{SnapshotInstall, Wal, WalOptions, WriteBatch};

fn conf() -> ConfState {
    ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] }
}

fn file_names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn temporary_count(directory: &Path) -> usize {
    file_names(directory).iter().filter(|name| name.ends_with(".tmp")).count()
}

#[test]
fn a_snapshot_prepared_on_another_thread_while_the_log_grows_installs_and_survives_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), WalOptions::new(4, 1), conf()).unwrap();
    wal.append(&entries(1, 1, 50)).unwrap();
    let writer = wal.snapshot_writer(40, conf()).unwrap().expect("40 is above the snapshot");
    let data = Bytes::from(vec![5u8; 3 << 20]); // several buffered writes
    let thread_data = data.clone();
    let worker = std::thread::spawn(move || {
        writer.write_with(thread_data.len() as u64, &mut |out| out.write_all(&thread_data)).unwrap()
    });
    // The WAL is not borrowed by the writer: appends go on meanwhile.
    for first in (51..=150).step_by(10) {
        wal.append(&entries(1, first, first + 9)).unwrap();
    }
    let prepared = worker.join().unwrap();
    assert_eq!((prepared.meta().index, prepared.data_length_bytes()), (40, data.len() as u64));
    assert_eq!(wal.install_snapshot(prepared).unwrap(), SnapshotInstall::Installed);
    assert_eq!((wal.first_index(), wal.last_index()), (41, 150));
    assert_eq!(temporary_count(directory.path()), 0);
    drop(wal);
    let reopened = Wal::open(directory.path(), WalOptions::new(4, 1)).unwrap();
    assert_eq!((reopened.first_index(), reopened.last_index()), (41, 150));
    assert_eq!(reopened.snapshot().unwrap().data, data);
    assert_eq!(reopened.snapshot_meta().conf, conf());
}

#[test]
fn a_snapshot_from_the_leader_meanwhile_discards_the_prepared_one() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), WalOptions::new(4, 1), conf()).unwrap();
    wal.append(&entries(1, 1, 20)).unwrap();
    let writer = wal.snapshot_writer(10, conf()).unwrap().unwrap();
    // Same index and term as the leader's snapshot below: their files must not collide.
    let meta = SnapshotMeta { index: 10, term: 1, conf: conf() };
    let received = Snapshot { meta, data: Bytes::from_static(b"leader state") };
    let prepared = writer.write_with(5, &mut |out| out.write_all(b"local")).unwrap();
    wal.write(&WriteBatch {
        snapshot: Some(received),
        entries: Vec::new(),
        hard_state: Some(HardState { term: 1, vote: 0, commit: 10 }),
    })
    .unwrap();
    let names_before = file_names(directory.path());
    let installed = wal.install_snapshot(prepared).unwrap();
    assert!(matches!(installed, SnapshotInstall::Discarded { .. }), "{installed:?}");
    assert_eq!(wal.snapshot_meta().index, 10);
    assert_eq!(&wal.snapshot().unwrap().data[..], b"leader state");
    let names_after = file_names(directory.path());
    assert_eq!(names_after.len() + 1, names_before.len(), "only the prepared file went: {names_after:?}");
    assert_eq!(temporary_count(directory.path()), 0);
    drop(wal);
    let reopened = Wal::open(directory.path(), WalOptions::new(4, 1)).unwrap();
    assert_eq!(reopened.snapshot_meta().index, 10);
    assert_eq!(&reopened.snapshot().unwrap().data[..], b"leader state");
}

#[test]
fn a_replaced_entry_discards_and_a_lower_compaction_does_not() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), WalOptions::new(4, 1), conf()).unwrap();
    wal.append(&entries(1, 1, 20)).unwrap();
    // A compaction below the prepared index meanwhile: the install still applies.
    let prepared = wal.snapshot_writer(15, conf()).unwrap().unwrap();
    let prepared = prepared.write_with(2, &mut |out| out.write_all(b"15")).unwrap();
    wal.compact(10, conf(), Bytes::from_static(b"10")).unwrap();
    assert_eq!(wal.install_snapshot(prepared).unwrap(), SnapshotInstall::Installed);
    assert_eq!(wal.first_index(), 16);
    // The entry at the prepared index replaced by a new leader's: discarded.
    let prepared = wal.snapshot_writer(18, conf()).unwrap().unwrap();
    let prepared = prepared.write_with(2, &mut |out| out.write_all(b"18")).unwrap();
    wal.append(&entries(2, 17, 25)).unwrap();
    let installed = wal.install_snapshot(prepared).unwrap();
    assert!(matches!(installed, SnapshotInstall::Discarded { .. }), "{installed:?}");
    assert_eq!((wal.first_index(), wal.snapshot_meta().index), (16, 15));
    assert_eq!(temporary_count(directory.path()), 0);
}

#[test]
fn a_prepared_snapshot_never_installed_leaves_nothing_after_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), WalOptions::new(4, 1), conf()).unwrap();
    wal.append(&entries(1, 1, 20)).unwrap();
    let first = wal.snapshot_writer(5, conf()).unwrap().unwrap();
    let second = wal.snapshot_writer(5, conf()).unwrap().unwrap();
    let first = first.write_with(1, &mut |out| out.write_all(b"a")).unwrap();
    let second = second.write_with(1, &mut |out| out.write_all(b"b")).unwrap();
    assert_eq!(temporary_count(directory.path()), 2, "two writers, two files");
    // A crash (or a stopping node) before the install: the files stay behind.
    std::mem::forget(first);
    second.discard();
    assert_eq!(temporary_count(directory.path()), 1);
    drop(wal);
    let mut reopened = Wal::open(directory.path(), WalOptions::new(4, 1)).unwrap();
    assert_eq!(temporary_count(directory.path()), 0);
    assert_eq!(reopened.snapshot_meta().index, 0);
    assert!(reopened.snapshot_writer(0, conf()).unwrap().is_none(), "nothing to snapshot at 0");
    assert!(reopened.snapshot_writer(21, conf()).is_err(), "past the last entry");
}

#[test]
fn a_state_machine_snapshot_is_streamed_and_a_wrong_length_is_refused() {
    struct Counter(u64);
    impl raft::Snapshottable for Counter {
        fn applied_index(&self) -> u64 {
            self.0
        }
        fn snapshot(&self) -> Bytes {
            Bytes::from(self.0.to_le_bytes().to_vec())
        }
        fn restore(&mut self, data: &[u8]) -> Result<(), String> {
            self.0 = u64::from_le_bytes(data.try_into().map_err(|_| "8 bytes".to_string())?);
            Ok(())
        }
    }
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), WalOptions::new(4, 1), conf()).unwrap();
    wal.append(&entries(1, 1, 20)).unwrap();
    let writer = wal.snapshot_writer(12, conf()).unwrap().unwrap();
    let error = writer.write_with(100, &mut |out| out.write_all(b"short")).unwrap_err();
    assert!(error.to_string().contains("announced 100"), "{error}");
    assert!(!wal.is_poisoned() && temporary_count(directory.path()) == 0);
    let writer = wal.snapshot_writer(12, conf()).unwrap().unwrap();
    let prepared = writer.write_from(&Counter(12)).unwrap();
    assert_eq!(wal.install_snapshot(prepared).unwrap(), SnapshotInstall::Installed);
    assert_eq!(&wal.snapshot().unwrap().data[..], &12u64.to_le_bytes());
}
