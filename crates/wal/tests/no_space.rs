//! A full disk (`ENOSPC`): appends, segment rolls and snapshot writes that run out of
//! space return `WalError::NoSpace`, leave no partial record or half-written file behind,
//! keep the WAL usable, and the same write succeeds once space is back; reopening finds
//! every entry exactly once. A failing `fdatasync` still poisons the WAL.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use raft::{ConfState, Entry, HardState, Snapshot, SnapshotMeta, Storage};
use wal::conformance::entries;
use wal::{FileSystem, StdFileSystem, Wal, WalError, WalFile, WalOptions, WriteBatch};

/// The switches of a [`FullDiskFileSystem`], shared with its files.
#[derive(Debug, Default)]
struct Switches {
    /// Writes and preallocations fail with `ENOSPC` (a write first stores half its bytes).
    full: AtomicBool,
    /// `sync_data` fails with `ENOSPC`.
    sync_fails: AtomicBool,
    /// Files do not preallocate (so a record write itself meets the full disk).
    no_preallocation: bool,
}

/// The real file system, with a switch that makes it full.
#[derive(Clone, Debug)]
struct FullDiskFileSystem {
    switches: Arc<Switches>,
}

#[derive(Debug)]
struct FullDiskFile {
    inner: Box<dyn WalFile>,
    switches: Arc<Switches>,
}

fn no_space() -> io::Error {
    io::Error::from_raw_os_error(28)
}

impl WalFile for FullDiskFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.switches.full.load(Ordering::SeqCst) {
            // A torn write: part of the bytes reach the file before the disk is full.
            self.inner.write_all(&bytes[..bytes.len() / 2])?;
            return Err(no_space());
        }
        self.inner.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if self.switches.sync_fails.load(Ordering::SeqCst) {
            return Err(no_space());
        }
        self.inner.sync_data()
    }

    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        self.inner.truncate(length_bytes)
    }

    fn try_clone(&self) -> io::Result<Box<dyn WalFile>> {
        Ok(Box::new(FullDiskFile { inner: self.inner.try_clone()?, switches: self.switches.clone() }))
    }

    fn preallocate(&mut self, length_bytes: u64) -> io::Result<u64> {
        if self.switches.no_preallocation {
            return Ok(0);
        }
        if self.switches.full.load(Ordering::SeqCst) {
            return Err(no_space());
        }
        self.inner.preallocate(length_bytes)
    }
}

impl FileSystem for FullDiskFileSystem {
    fn create_directory_all(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.create_directory_all(path)
    }

    fn list_directory(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFileSystem.list_directory(path)
    }

    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let inner = StdFileSystem.create_file(path)?;
        Ok(Box::new(FullDiskFile { inner, switches: self.switches.clone() }))
    }

    fn open_file_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let inner = StdFileSystem.open_file_append(path)?;
        Ok(Box::new(FullDiskFile { inner, switches: self.switches.clone() }))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFileSystem.read_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFileSystem.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove_file(path)
    }

    fn sync_directory(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.sync_directory(path)
    }
}

fn conf() -> ConfState {
    ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] }
}

fn batch(entries: Vec<Entry>) -> WriteBatch {
    let last = entries.last().map_or(0, |entry| entry.index);
    WriteBatch { snapshot: None, entries, hard_state: Some(HardState { term: 1, vote: 1, commit: last }) }
}

fn options(switches: &Arc<Switches>, segment_size_bytes_max: u64) -> WalOptions {
    let file_system = Arc::new(FullDiskFileSystem { switches: switches.clone() });
    WalOptions { segment_size_bytes_max, file_system, ..WalOptions::new(5, 1) }
}

fn file_names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn segment_paths(directory: &Path) -> Vec<PathBuf> {
    let names = file_names(directory);
    names.iter().filter(|name| name.ends_with(".wal")).map(|name| directory.join(name)).collect()
}

/// Checks `wal` holds entries 1..=`last_index`, each once, in order, all of term 1.
fn assert_holds(wal: &Wal, last_index: u64) {
    assert_eq!(wal.last_index(), last_index);
    let held = wal.entries(wal.first_index(), last_index + 1, u64::MAX).unwrap();
    let expected: Vec<u64> = (wal.first_index()..=last_index).collect();
    assert_eq!(held.iter().map(|entry| entry.index).collect::<Vec<_>>(), expected);
    assert!(held.iter().all(|entry| entry.term == 1));
}

fn assert_no_space(result: Result<(), WalError>) {
    match result {
        Err(error) => {
            assert!(error.is_no_space(), "expected a no-space error, got {error}");
            assert!(error.to_string().contains("no space left on device"), "{error}");
        }
        Ok(()) => panic!("the write succeeded on a full disk"),
    }
}

fn append_while_full_then_retry(no_preallocation: bool) {
    let directory = tempfile::tempdir().unwrap();
    let switches = Arc::new(Switches { no_preallocation, ..Switches::default() });
    let mut wal = Wal::create(directory.path(), options(&switches, 1 << 20), conf()).unwrap();
    wal.write(&batch(entries(1, 1, 10))).unwrap();
    let segment = segment_paths(directory.path()).pop().unwrap();
    let length_before = std::fs::metadata(&segment).unwrap().len();

    switches.full.store(true, Ordering::SeqCst);
    let failed = batch(entries(1, 11, 20));
    assert_no_space(wal.write(&failed));
    assert!(!wal.is_poisoned(), "a full disk does not poison the WAL");
    assert_holds(&wal, 10);
    if no_preallocation {
        // The torn half record was cut again.
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), length_before);
    }
    assert_no_space(wal.write(&failed));

    switches.full.store(false, Ordering::SeqCst);
    wal.write(&failed).unwrap();
    wal.write(&batch(entries(1, 21, 25))).unwrap();
    assert_holds(&wal, 25);
    drop(wal);

    let reopened = Wal::open(directory.path(), options(&switches, 1 << 20)).unwrap();
    assert_eq!(reopened.torn_bytes_truncated(), 0, "no torn record was left for recovery");
    assert_holds(&reopened, 25);
    assert_eq!(reopened.hard_state().commit, 25);
}

#[test]
fn a_full_disk_during_preallocation_fails_the_append_and_a_retry_succeeds() {
    append_while_full_then_retry(false);
}

#[test]
fn a_torn_record_on_a_full_disk_is_cut_and_a_retry_succeeds() {
    append_while_full_then_retry(true);
}

#[test]
fn a_full_disk_at_a_segment_roll_leaves_no_temporary_file() {
    let directory = tempfile::tempdir().unwrap();
    let switches = Arc::new(Switches::default());
    let mut wal = Wal::create(directory.path(), options(&switches, 2048), conf()).unwrap();
    let mut last_index = 0;
    while wal.segment_sequences().len() < 2 {
        wal.write(&batch(entries(1, last_index + 1, last_index + 5))).unwrap();
        last_index += 5;
    }
    let segments_before = wal.segment_sequences();
    switches.full.store(true, Ordering::SeqCst);
    // Writes until one needs a new segment: each fails whole.
    let failed = batch(entries(1, last_index + 1, last_index + 40));
    assert_no_space(wal.write(&failed));
    assert_eq!(wal.segment_sequences(), segments_before);
    assert!(
        file_names(directory.path()).iter().all(|name| !name.ends_with(".tmp")),
        "{:?}",
        file_names(directory.path())
    );
    switches.full.store(false, Ordering::SeqCst);
    wal.write(&failed).unwrap();
    last_index += 40;
    assert_holds(&wal, last_index);
    drop(wal);
    let reopened = Wal::open(directory.path(), options(&switches, 2048)).unwrap();
    assert_holds(&reopened, last_index);
}

#[test]
fn a_snapshot_that_does_not_fit_keeps_the_old_one_and_succeeds_later() {
    let directory = tempfile::tempdir().unwrap();
    let switches = Arc::new(Switches::default());
    let mut wal = Wal::create(directory.path(), options(&switches, 1 << 20), conf()).unwrap();
    wal.write(&batch(entries(1, 1, 20))).unwrap();
    wal.compact(10, conf(), Bytes::from_static(b"state at 10")).unwrap();
    let names_before = file_names(directory.path());

    switches.full.store(true, Ordering::SeqCst);
    assert_no_space(wal.compact(20, conf(), Bytes::from(vec![7u8; 4096])));
    assert!(!wal.is_poisoned());
    assert_eq!(file_names(directory.path()), names_before, "no new or temporary file, the old snapshot kept");
    assert_eq!(wal.snapshot_meta().index, 10);
    assert_eq!(&wal.snapshot().unwrap().data[..], b"state at 10");

    // A snapshot from the leader in a batch: the same.
    let meta = SnapshotMeta { index: 30, term: 2, conf: conf() };
    let received = WriteBatch {
        snapshot: Some(Snapshot { meta, data: Bytes::from(vec![9u8; 4096]) }),
        entries: Vec::new(),
        hard_state: Some(HardState { term: 2, vote: 0, commit: 30 }),
    };
    assert_no_space(wal.write(&received));
    assert_eq!(file_names(directory.path()), names_before);
    assert_eq!(wal.snapshot_meta().index, 10);

    switches.full.store(false, Ordering::SeqCst);
    wal.compact(20, conf(), Bytes::from(vec![7u8; 4096])).unwrap();
    assert_eq!(wal.snapshot_meta().index, 20);
    wal.write(&received).unwrap();
    assert_eq!(wal.snapshot_meta().index, 30);
    drop(wal);
    let reopened = Wal::open(directory.path(), options(&switches, 1 << 20)).unwrap();
    assert_eq!(reopened.snapshot_meta().index, 30);
    assert_eq!(reopened.snapshot().unwrap().data.len(), 4096);
}

#[test]
fn a_failed_sync_still_poisons_even_when_it_says_no_space() {
    let directory = tempfile::tempdir().unwrap();
    let switches = Arc::new(Switches::default());
    let mut wal = Wal::create(directory.path(), options(&switches, 1 << 20), conf()).unwrap();
    wal.write(&batch(entries(1, 1, 5))).unwrap();
    switches.sync_fails.store(true, Ordering::SeqCst);
    let error = wal.write(&batch(entries(1, 6, 10))).unwrap_err();
    assert!(!error.is_no_space(), "an fsync failure is not retried: {error}");
    assert!(wal.is_poisoned());
    assert!(matches!(wal.write(&batch(entries(1, 6, 10))), Err(WalError::Poisoned)));
}

#[test]
fn a_prepared_snapshot_on_a_full_disk_leaves_nothing_and_an_install_that_does_not_fit_keeps_the_old_one() {
    let directory = tempfile::tempdir().unwrap();
    let switches = Arc::new(Switches::default());
    let mut wal = Wal::create(directory.path(), options(&switches, 1 << 20), conf()).unwrap();
    wal.write(&batch(entries(1, 1, 20))).unwrap();
    wal.compact(10, conf(), Bytes::from_static(b"state at 10")).unwrap();
    let names_before = file_names(directory.path());

    switches.full.store(true, Ordering::SeqCst);
    let writer = wal.snapshot_writer(20, conf()).unwrap().unwrap();
    let data = vec![7u8; 4096];
    let error = writer.write_with(data.len() as u64, &mut |out| out.write_all(&data)).unwrap_err();
    assert!(error.is_no_space(), "{error}");
    assert!(!wal.is_poisoned());
    assert_eq!(file_names(directory.path()), names_before, "the half-written file was removed");

    // Prepared while there was room, installed once the disk is full: the marker does not fit.
    switches.full.store(false, Ordering::SeqCst);
    let writer = wal.snapshot_writer(20, conf()).unwrap().unwrap();
    let prepared = writer.write_with(data.len() as u64, &mut |out| out.write_all(&data)).unwrap();
    switches.full.store(true, Ordering::SeqCst);
    let error = wal.install_snapshot(prepared).unwrap_err();
    assert!(error.is_no_space(), "{error}");
    assert!(!wal.is_poisoned());
    assert_eq!(file_names(directory.path()), names_before, "no new or temporary file, the old snapshot kept");
    assert_eq!(wal.snapshot_meta().index, 10);

    switches.full.store(false, Ordering::SeqCst);
    let writer = wal.snapshot_writer(20, conf()).unwrap().unwrap();
    let prepared = writer.write_with(data.len() as u64, &mut |out| out.write_all(&data)).unwrap();
    assert_eq!(wal.install_snapshot(prepared).unwrap(), wal::SnapshotInstall::Installed);
    drop(wal);
    let reopened = Wal::open(directory.path(), options(&switches, 1 << 20)).unwrap();
    assert_eq!(reopened.snapshot_meta().index, 20);
    assert_holds(&reopened, 20);
}
