//! Recovery from damage on the real file system: torn tails, bit flips, wrong identity,
//! missing files; and the write-path rules (invalid writes, poisoning).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use raft::{ConfState, Entry, EntryKind, HardState, Storage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wal::conformance::{describe, entries};
use wal::fault::{CrashMode, SimulatedFileSystem};
use wal::{Wal, WalError, WalOptions, WriteBatch};

const CLUSTER_ID: u64 = 5;
const NODE_ID: u64 = 3;

fn options(segment_size_bytes_max: u64) -> WalOptions {
    WalOptions { segment_size_bytes_max, ..WalOptions::new(CLUSTER_ID, NODE_ID) }
}

fn batch(entries: Vec<Entry>, commit: u64) -> WriteBatch {
    let term = entries.last().map_or(1, |entry| entry.term);
    WriteBatch { snapshot: None, entries, hard_state: Some(HardState { term, vote: 1, commit }) }
}

fn files_with_suffix(directory: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    paths.sort();
    paths
}

type Fingerprint = (raft::InitialState, raft::Snapshot, u64, Vec<Entry>);

/// Writes a log with several segments, a compaction and a final batch; returns the
/// states before and after the final batch.
fn build_log(directory: &Path) -> (Fingerprint, Fingerprint) {
    let mut wal = Wal::create(
        directory,
        options(2048),
        ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] },
    )
    .unwrap();
    for first in (1..=60).step_by(5) {
        wal.write(&batch(entries(1, first, first + 4), first)).unwrap();
    }
    wal.compact(
        20,
        ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] },
        Bytes::from_static(b"state at 20"),
    )
    .unwrap();
    wal.write(&batch(entries(2, 58, 70), 50)).unwrap();
    let before = describe(&wal);
    wal.write(&batch(entries(2, 71, 73), 60)).unwrap();
    (before, describe(&wal))
}

fn copy_directory(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn clean_reopen_recovers_everything() {
    let directory = tempfile::tempdir().unwrap();
    let (_, after) = build_log(directory.path());
    let wal = Wal::open(directory.path(), options(2048)).unwrap();
    assert_eq!(describe(&wal), after);
    assert_eq!(wal.torn_bytes_truncated(), 0);
    assert!(wal.segment_sequences().len() >= 2);
}

#[test]
fn torn_tail_is_cut_and_reported() {
    let directory = tempfile::tempdir().unwrap();
    let (before, _) = build_log(directory.path());
    let last = files_with_suffix(directory.path(), ".wal").pop().unwrap();
    let length = std::fs::metadata(&last).unwrap().len();
    for cut_bytes in [1, 7, 13, 30] {
        let copy = tempfile::tempdir().unwrap();
        copy_directory(directory.path(), copy.path());
        let copied_last = copy.path().join(last.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&copied_last).unwrap().set_len(length - cut_bytes).unwrap();
        let mut wal = Wal::open(copy.path(), options(2048)).unwrap();
        assert_eq!(describe(&wal), before, "cut {cut_bytes}: the torn batch is dropped whole");
        assert!(wal.torn_bytes_truncated() > 0);
        wal.write(&batch(entries(2, 71, 71), 60)).unwrap();
        drop(wal);
        let wal = Wal::open(copy.path(), options(2048)).unwrap();
        assert_eq!((wal.last_index(), wal.torn_bytes_truncated()), (71, 0), "appends after the cut survive");
    }
}

#[test]
fn zero_filled_tail_is_cut() {
    let directory = tempfile::tempdir().unwrap();
    let (_, after) = build_log(directory.path());
    let last = files_with_suffix(directory.path(), ".wal").pop().unwrap();
    let mut content = std::fs::read(&last).unwrap();
    let records_length = content.len() as u64;
    content.extend_from_slice(&[0; 4096]);
    std::fs::write(&last, content).unwrap();
    let wal = Wal::open(directory.path(), options(2048)).unwrap();
    assert_eq!(describe(&wal), after);
    // Zeros after the last record are preallocated space, not a torn record.
    assert_eq!(wal.torn_bytes_truncated(), 0);
    drop(wal);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), records_length, "the zeros were cut");
}

/// Bytes of `path` before its trailing zeros (at most the length of its records).
fn content_length(path: &Path) -> usize {
    let content = std::fs::read(path).unwrap();
    content.len() - content.iter().rev().take_while(|&&byte| byte == 0).count()
}

/// The last segment is preallocated with zeros ahead of its records (so an fdatasync
/// does not change the file's length); a crash leaves them, and recovery reads them as
/// the end of the log, not as damage. Sealed segments end at their last record.
#[test]
fn preallocated_zeros_survive_a_crash_and_are_not_damage() {
    let directory = tempfile::tempdir().unwrap();
    let segment_size_bytes_max = 4 << 20;
    let mut wal = Wal::create(
        directory.path(),
        options(segment_size_bytes_max),
        ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] },
    )
    .unwrap();
    for first in (1..=200).step_by(10) {
        wal.write(&batch(entries(1, first, first + 9), first)).unwrap();
    }
    let expected = describe(&wal);
    let last = files_with_suffix(directory.path(), ".wal").pop().unwrap();
    let length = std::fs::metadata(&last).unwrap().len();
    assert_eq!(length, wal::PREALLOCATION_STEP_BYTES, "one step of zeros ahead of the records");
    assert!(content_length(&last) < length as usize / 2);
    // A crash now: the files as they are on disk, zeros included.
    let crashed = tempfile::tempdir().unwrap();
    copy_directory(directory.path(), crashed.path());
    let mut recovered = Wal::open(crashed.path(), options(segment_size_bytes_max)).unwrap();
    assert_eq!((describe(&recovered), recovered.torn_bytes_truncated()), (expected, 0));
    recovered.write(&batch(entries(1, 201, 210), 201)).unwrap();
    let after = describe(&recovered);
    drop(recovered);
    let reopened = Wal::open(crashed.path(), options(segment_size_bytes_max)).unwrap();
    assert_eq!((describe(&reopened), reopened.torn_bytes_truncated()), (after, 0), "appends after the zeros survive");
    // Sealed segments (small segments here) are cut to their records when the next starts.
    let small = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(
        small.path(),
        options(2048),
        ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] },
    )
    .unwrap();
    for first in (1..=300).step_by(5) {
        wal.write(&batch(entries(1, first, first + 4), first)).unwrap();
    }
    let segments = files_with_suffix(small.path(), ".wal");
    assert!(segments.len() >= 3, "{} segments", segments.len());
    for sealed in &segments[..segments.len() - 1] {
        // Preallocated, it would be exactly the segment size long.
        let length = std::fs::metadata(sealed).unwrap().len();
        assert!(length < 2048, "{} ends at its last record ({length} bytes)", sealed.display());
    }
}

/// Flips one random bit in a random segment; open must fail naming that file at an
/// offset at or before the flip, or (flip in the last record) cut it as torn.
#[test]
fn bit_flips_are_detected() {
    let directory = tempfile::tempdir().unwrap();
    let (before, _) = build_log(directory.path());
    let segments = files_with_suffix(directory.path(), ".wal");
    let mut random = ChaCha8Rng::seed_from_u64(42);
    let trials = if std::env::var("RAFTKV_LONG_TESTS").is_ok_and(|value| value == "1") { 2000 } else { 150 };
    let (mut refused, mut cut) = (0, 0);
    for trial in 0..trials {
        let copy = tempfile::tempdir().unwrap();
        copy_directory(directory.path(), copy.path());
        let segment = &segments[random.gen_range(0..segments.len())];
        let path = copy.path().join(segment.file_name().unwrap());
        let mut content = std::fs::read(&path).unwrap();
        let position = random.gen_range(0..content.len());
        content[position] ^= 1 << random.gen_range(0..8);
        std::fs::write(&path, &content).unwrap();
        match Wal::open(copy.path(), options(2048)) {
            Err(WalError::Corrupt { path: error_path, offset, reason }) => {
                assert_eq!(error_path, path, "trial {trial}: error names the damaged file ({reason})");
                assert!(offset as usize <= position, "trial {trial}: offset {offset} after the flip at {position}");
                refused += 1;
            }
            Ok(wal) => {
                assert_eq!(Some(segment), segments.last(), "trial {trial}: only the last segment may have a torn tail");
                assert!(wal.torn_bytes_truncated() > 0, "trial {trial}: flip at {position} went unnoticed");
                assert_eq!(describe(&wal), before, "trial {trial}: only the last batch is cut");
                cut += 1;
            }
            Err(other) => panic!("trial {trial}: unexpected error {other}"),
        }
    }
    assert!(refused > 0 && cut > 0, "both outcomes exercised: refused {refused}, cut {cut}");
}

#[test]
fn damaged_snapshot_file_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    build_log(directory.path());
    let snapshot = files_with_suffix(directory.path(), ".snap").pop().expect("a snapshot file");
    let mut content = std::fs::read(&snapshot).unwrap();
    let middle = content.len() / 2;
    content[middle] ^= 0x20;
    std::fs::write(&snapshot, content).unwrap();
    let error = Wal::open(directory.path(), options(2048)).unwrap_err();
    assert!(matches!(&error, WalError::Corrupt { path, .. } if *path == snapshot), "{error}");
    std::fs::remove_file(&snapshot).unwrap();
    let error = Wal::open(directory.path(), options(2048)).unwrap_err();
    assert!(matches!(&error, WalError::MissingFile { path, .. } if *path == snapshot), "{error}");
}

#[test]
fn snapshot_data_is_read_back_from_its_file_not_kept_in_memory() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), options(2048), ConfState::default()).unwrap();
    wal.write(&batch(entries(1, 1, 10), 10)).unwrap();
    wal.compact(8, ConfState::default(), Bytes::from_static(b"state at 8")).unwrap();
    let snapshot_path = files_with_suffix(directory.path(), ".snap").pop().expect("a snapshot file");
    let mut content = std::fs::read(&snapshot_path).unwrap();
    let read_back = wal.snapshot().expect("read from the file");
    assert_eq!((read_back.meta.index, &read_back.data[..]), (8, &b"state at 8"[..]));
    // Once read, it is cached (chunks of one transfer): damage now goes unnoticed.
    content[40] ^= 0x01;
    std::fs::write(&snapshot_path, &content).unwrap();
    assert_eq!(&wal.snapshot().expect("cached").data[..], b"state at 8");
    // After release (as the server does at start-up), it is read again and checked.
    wal.release_snapshot_data();
    let error = wal.snapshot().unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");
    content[40] ^= 0x01;
    std::fs::write(&snapshot_path, &content).unwrap();
    assert_eq!(&wal.snapshot().expect("repaired").data[..], b"state at 8");
    // A newer snapshot replaces the cached one.
    wal.compact(10, ConfState::default(), Bytes::from_static(b"state at 10")).unwrap();
    assert_eq!(&wal.snapshot().expect("the new one").data[..], b"state at 10");
}

/// A state machine whose snapshot is `data`, written in pieces of every size (or
/// `short_by` bytes shorter than announced).
struct Streamed {
    index: u64,
    data: Vec<u8>,
    short_by: usize,
}

impl raft::Snapshottable for Streamed {
    fn applied_index(&self) -> u64 {
        self.index
    }
    fn snapshot(&self) -> Bytes {
        Bytes::from(self.data.clone())
    }
    fn restore(&mut self, _: &[u8]) -> Result<(), String> {
        Err("not used".into())
    }
    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let data = &self.data[..self.data.len() - self.short_by];
        let (small, large) = data.split_at(data.len() / 3);
        for byte in small.chunks(7) {
            out.write_all(byte)?;
        }
        out.write_all(large)
    }
}

#[test]
fn streamed_snapshot_writes_the_same_file_and_a_short_one_is_refused() {
    let data: Vec<u8> = (0..3_000_000u32).map(|value| (value * 7 % 251) as u8).collect();
    let directories = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (position, directory) in directories.iter().enumerate() {
        let mut wal = Wal::create(directory.path(), options(1 << 20), ConfState::default()).unwrap();
        wal.write(&batch(entries(1, 1, 10), 10)).unwrap();
        if position == 0 {
            wal.compact(9, ConfState::default(), Bytes::from(data.clone())).unwrap();
        } else {
            let state_machine = Streamed { index: 9, data: data.clone(), short_by: 0 };
            wal.compact_from(9, ConfState::default(), &state_machine).unwrap();
        }
    }
    let files: Vec<Vec<u8>> = directories
        .iter()
        .map(|directory| std::fs::read(files_with_suffix(directory.path(), ".snap").pop().unwrap()).unwrap())
        .collect();
    assert!(files[0] == files[1], "streamed and in-memory snapshot files differ");
    let reopened = Wal::open(directories[1].path(), options(1 << 20)).unwrap();
    assert_eq!(reopened.snapshot().unwrap().data, data);

    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), options(1 << 20), ConfState::default()).unwrap();
    wal.write(&batch(entries(1, 1, 10), 10)).unwrap();
    let short = Streamed { index: 9, data: data.clone(), short_by: 1 };
    let error = wal.compact_from(9, ConfState::default(), &short).unwrap_err();
    assert!(error.to_string().contains("announced"), "{error}");
    let reopened = Wal::open(directory.path(), options(1 << 20)).unwrap();
    assert_eq!(reopened.snapshot().unwrap().meta.index, 0, "no snapshot was recorded");
    assert_eq!(reopened.last_index(), 10, "nothing lost");
}

#[test]
fn wrong_cluster_or_node_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    build_log(directory.path());
    for (cluster_id, node_id) in [(CLUSTER_ID + 1, NODE_ID), (CLUSTER_ID, NODE_ID + 1)] {
        let error = Wal::open(directory.path(), WalOptions::new(cluster_id, node_id)).unwrap_err();
        assert!(
            matches!(error, WalError::WrongIdentity { found_cluster_id: CLUSTER_ID, found_node_id: NODE_ID, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("segment-"), "the message names the file: {error}");
    }
}

#[test]
fn missing_or_truncated_middle_segment_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), options(512), ConfState::default()).unwrap();
    for first in (1..=40).step_by(4) {
        wal.write(&batch(entries(1, first, first + 3), 0)).unwrap();
    }
    drop(wal);
    let segments = files_with_suffix(directory.path(), ".wal");
    assert!(segments.len() >= 3, "{segments:?}");
    let middle = &segments[segments.len() / 2];
    let length = std::fs::metadata(middle).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(middle).unwrap().set_len(length - 5).unwrap();
    let error = Wal::open(directory.path(), options(512)).unwrap_err();
    assert!(matches!(&error, WalError::Corrupt { path, .. } if path == middle), "{error}");
    std::fs::remove_file(middle).unwrap();
    let error = Wal::open(directory.path(), options(512)).unwrap_err();
    assert!(matches!(&error, WalError::MissingFile { path, .. } if path == middle), "{error}");
}

#[test]
fn missing_first_segment_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), options(512), ConfState::default()).unwrap();
    for first in (1..=40).step_by(4) {
        wal.write(&batch(entries(1, first, first + 3), 0)).unwrap();
    }
    drop(wal);
    let segments = files_with_suffix(directory.path(), ".wal");
    std::fs::remove_file(&segments[0]).unwrap();
    let error = Wal::open(directory.path(), options(512)).unwrap_err();
    assert!(matches!(error, WalError::Corrupt { ref reason, .. } if reason.contains("missing")), "{error}");
}

#[test]
fn open_and_create_report_absence_and_presence() {
    let directory = tempfile::tempdir().unwrap();
    assert!(matches!(Wal::open(directory.path(), options(2048)), Err(WalError::NotFound { .. })));
    let nested = directory.path().join("not/yet");
    assert!(matches!(Wal::open(&nested, options(2048)), Err(WalError::NotFound { .. })));
    Wal::open_or_create(&nested, options(2048), ConfState::default()).unwrap();
    Wal::open_or_create(&nested, options(2048), ConfState::default()).unwrap();
    Wal::create(directory.path(), options(2048), ConfState::default()).unwrap();
    let error = Wal::create(directory.path(), options(2048), ConfState::default()).unwrap_err();
    assert!(matches!(error, WalError::AlreadyExists { .. }));
}

#[test]
fn invalid_writes_are_refused_and_write_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), options(2048), ConfState::default()).unwrap();
    wal.write(&batch(entries(3, 1, 3), 0)).unwrap();
    let before = describe(&wal);
    let gap = wal.append(&entries(3, 5, 6)).unwrap_err();
    assert!(matches!(gap, WalError::InvalidWrite(_)), "{gap}");
    let backwards = wal.set_hard_state(HardState { term: 2, vote: 0, commit: 0 }).unwrap_err();
    assert!(matches!(backwards, WalError::InvalidWrite(_)), "{backwards}");
    let beyond = wal.compact(4, ConfState::default(), Bytes::new()).unwrap_err();
    assert!(matches!(beyond, WalError::InvalidWrite(_)), "{beyond}");
    let not_contiguous = [entries(3, 4, 4), entries(3, 6, 6)].concat();
    assert!(matches!(wal.append(&not_contiguous), Err(WalError::InvalidWrite(_))));
    assert_eq!(describe(&wal), before);
    drop(wal);
    assert_eq!(describe(&Wal::open(directory.path(), options(2048)).unwrap()), before);
}

#[test]
fn a_failed_write_poisons_the_wal() {
    let file_system = SimulatedFileSystem::new();
    let options = WalOptions { file_system: Arc::new(file_system.clone()), ..WalOptions::new(CLUSTER_ID, NODE_ID) };
    let mut wal = Wal::create("/wal", options.clone(), ConfState::default()).unwrap();
    file_system.crash_at(2);
    assert!(matches!(wal.append(&entries(1, 1, 1)), Err(WalError::Io { .. })), "the sync fails");
    assert!(wal.is_poisoned());
    assert!(matches!(wal.append(&entries(1, 2, 2)), Err(WalError::Poisoned)));
    let restarted = file_system.restart(CrashMode::LoseUnsynced);
    let wal = Wal::open("/wal", WalOptions { file_system: Arc::new(restarted), ..options }).unwrap();
    assert_eq!(wal.last_index(), 0);
}

#[test]
fn group_commit_shares_one_sync() {
    let file_system = SimulatedFileSystem::new();
    let options = WalOptions { file_system: Arc::new(file_system.clone()), ..WalOptions::new(CLUSTER_ID, NODE_ID) };
    let mut wal = Wal::create("/wal", options.clone(), ConfState::default()).unwrap();
    let operations_before = file_system.operation_count();
    for first in 1..=10 {
        wal.append_batch(&batch(entries(1, first, first), first - 1)).unwrap();
    }
    wal.sync().unwrap();
    assert_eq!(file_system.operation_count() - operations_before, 12, "one preallocation, ten writes, one sync");
    let restarted = file_system.restart(CrashMode::LoseUnsynced);
    let wal = Wal::open("/wal", WalOptions { file_system: Arc::new(restarted), ..options }).unwrap();
    assert_eq!((wal.last_index(), wal.hard_state().commit), (10, 9));
}

#[test]
fn large_batch_is_split_into_records() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::create(directory.path(), options(1 << 20), ConfState::default()).unwrap();
    let big: Vec<Entry> = (1..=40)
        .map(|index| Entry { term: 1, index, kind: EntryKind::Normal, data: Bytes::from(vec![index as u8; 2 << 20]) })
        .collect();
    wal.write(&batch(big.clone(), 40)).unwrap();
    drop(wal);
    let wal = Wal::open(directory.path(), options(1 << 20)).unwrap();
    assert_eq!(wal.entries(1, 41, u64::MAX).unwrap(), big);
    assert_eq!(wal.hard_state().commit, 40);
}
