//! The conformance suite against `MemoryStorage` (the reference) and the WAL, on the
//! real file system and on the simulated one, with small segments so rolls happen.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use raft::{ConfState, Entry, HardState, Index, InitialState, MemoryStorage, Snapshot, Storage, StorageError, Term};
use wal::conformance::{self, ConformanceTarget};
use wal::fault::SimulatedFileSystem;
use wal::{Wal, WalOptions};

/// A WAL plus what it takes to reopen it.
struct WalTarget {
    wal: Wal,
    directory: PathBuf,
    options: WalOptions,
    _temporary_directory: Option<tempfile::TempDir>,
}

impl WalTarget {
    fn on_disk(segment_size_bytes_max: u64) -> Self {
        let temporary_directory = tempfile::tempdir().unwrap();
        let directory = temporary_directory.path().join("wal");
        let options = WalOptions { segment_size_bytes_max, ..WalOptions::new(11, 1) };
        let wal = Wal::create(&directory, options.clone(), ConfState::default()).unwrap();
        WalTarget { wal, directory, options, _temporary_directory: Some(temporary_directory) }
    }

    fn simulated(segment_size_bytes_max: u64) -> Self {
        let directory = PathBuf::from("/simulated/wal");
        let options = WalOptions {
            segment_size_bytes_max,
            file_system: Arc::new(SimulatedFileSystem::new()),
            ..WalOptions::new(11, 1)
        };
        let wal = Wal::create(&directory, options.clone(), ConfState::default()).unwrap();
        WalTarget { wal, directory, options, _temporary_directory: None }
    }
}

impl Storage for WalTarget {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        self.wal.initial_state()
    }
    fn entries(&self, low: Index, high: Index, size_bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        self.wal.entries(low, high, size_bytes_max)
    }
    fn term(&self, index: Index) -> Result<Term, StorageError> {
        self.wal.term(index)
    }
    fn first_index(&self) -> Index {
        self.wal.first_index()
    }
    fn last_index(&self) -> Index {
        self.wal.last_index()
    }
    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        self.wal.snapshot()
    }
}

impl ConformanceTarget for WalTarget {
    fn append(&mut self, entries: &[Entry]) {
        self.wal.append(entries).unwrap();
        // Every write is checked against a reopened copy too.
        let reopened = Wal::open(&self.directory, self.options.clone()).unwrap();
        assert_eq!(conformance::describe(&reopened), conformance::describe(&self.wal));
    }
    fn set_hard_state(&mut self, hard_state: HardState) {
        self.wal.set_hard_state(hard_state).unwrap();
    }
    fn apply_snapshot(&mut self, snapshot: Snapshot) {
        self.wal.apply_snapshot(snapshot).unwrap();
    }
    fn compact(&mut self, index: Index, conf: ConfState, snapshot_data: Bytes) {
        self.wal.compact(index, conf, snapshot_data).unwrap();
    }
    fn restart(self) -> Self {
        let WalTarget { wal, directory, options, _temporary_directory } = self;
        drop(wal);
        let wal = Wal::open(&directory, options.clone()).unwrap();
        WalTarget { wal, directory, options, _temporary_directory }
    }
}

#[test]
fn memory_storage_conforms() {
    conformance::run_all(MemoryStorage::default);
}

#[test]
fn wal_on_disk_conforms() {
    conformance::run_all(|| WalTarget::on_disk(wal::SEGMENT_SIZE_BYTES_MAX_DEFAULT));
}

#[test]
fn wal_with_tiny_segments_conforms() {
    conformance::run_all(|| WalTarget::on_disk(200));
}

#[test]
fn simulated_wal_with_tiny_segments_conforms() {
    conformance::run_all(|| WalTarget::simulated(300));
}
