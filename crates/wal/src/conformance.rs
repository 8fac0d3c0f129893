//! A conformance suite for `raft::Storage` implementations and their writers.
//!
//! Implement [`ConformanceTarget`] for your storage (the write operations of
//! `raft::MemoryStorage`, plus [`ConformanceTarget::restart`] to reopen it from disk) and
//! call [`run_all`] with a factory of empty instances. Every check panics with a message
//! naming the rule that failed. The suite runs against `MemoryStorage` and [`crate::Wal`]
//! in this crate's tests.

use bytes::Bytes;
use raft::{
    ConfState, Entry, EntryKind, HardState, Index, MemoryStorage, Snapshot, SnapshotMeta, Storage, StorageError, Term,
};

/// A storage the suite can write to and restart.
pub trait ConformanceTarget: Storage + Sized {
    /// Appends `entries`, first removing any stored suffix from `entries[0].index` on.
    fn append(&mut self, entries: &[Entry]);
    /// Stores `hard_state`.
    fn set_hard_state(&mut self, hard_state: HardState);
    /// Replaces the log with `snapshot` (ignored unless newer than the current one).
    fn apply_snapshot(&mut self, snapshot: Snapshot);
    /// Drops entries up to `index`, recording a snapshot there.
    fn compact(&mut self, index: Index, conf: ConfState, snapshot_data: Bytes);
    /// Simulates a clean restart (reopen from disk); in-memory storages return `self`.
    fn restart(self) -> Self;
}

impl ConformanceTarget for MemoryStorage {
    fn append(&mut self, entries: &[Entry]) {
        MemoryStorage::append(self, entries);
    }

    fn set_hard_state(&mut self, hard_state: HardState) {
        MemoryStorage::set_hard_state(self, hard_state);
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) {
        MemoryStorage::apply_snapshot(self, snapshot);
    }

    fn compact(&mut self, index: Index, conf: ConfState, snapshot_data: Bytes) {
        MemoryStorage::compact(self, index, conf, snapshot_data);
    }

    fn restart(self) -> Self {
        self
    }
}

/// An entry of `term` at `index` with a payload of `size_bytes` bytes.
pub fn entry(term: Term, index: Index, size_bytes: usize) -> Entry {
    Entry { term, index, kind: EntryKind::Normal, data: Bytes::from(vec![(index % 251) as u8; size_bytes]) }
}

/// Entries `low..=high`, all of `term`.
pub fn entries(term: Term, low: Index, high: Index) -> Vec<Entry> {
    assert!(low <= high + 1, "empty or increasing range");
    (low..=high).map(|index| entry(term, index, 8)).collect()
}

/// Runs every check, each on a fresh storage from `make_empty`.
pub fn run_all<T: ConformanceTarget>(mut make_empty: impl FnMut() -> T) {
    empty_log(make_empty());
    append_is_contiguous(make_empty());
    conflicting_append_truncates(make_empty());
    compaction_keeps_snapshot_term(make_empty());
    entries_size_limit(make_empty());
    apply_snapshot_replaces_or_keeps(make_empty());
    hard_state_round_trip(make_empty());
    restart_keeps_everything(make_empty());
}

/// An empty log: first index 1, last index 0, `term(0) == 0`.
pub fn empty_log<T: ConformanceTarget>(storage: T) {
    assert_eq!(storage.first_index(), 1, "empty log starts at 1");
    assert_eq!(storage.last_index(), 0, "empty log ends at 0");
    assert_eq!(storage.term(0), Ok(0), "term(0) of an empty log is 0");
    assert_eq!(storage.term(1), Err(StorageError::Unavailable), "term past the end is Unavailable");
    assert_eq!(storage.entries(1, 1, u64::MAX), Ok(vec![]), "an empty range is empty");
    assert_eq!(storage.entries(1, 2, u64::MAX), Err(StorageError::Unavailable), "entries past the end");
}

/// Appended entries read back in order, and only those.
pub fn append_is_contiguous<T: ConformanceTarget>(mut storage: T) {
    storage.append(&entries(1, 1, 3));
    storage.append(&entries(2, 4, 5));
    assert_eq!(storage.last_index(), 5);
    assert_eq!(storage.entries(1, 6, u64::MAX).unwrap(), [entries(1, 1, 3), entries(2, 4, 5)].concat());
    assert_eq!(storage.entries(2, 4, u64::MAX).unwrap(), entries(1, 2, 3), "a middle range");
    assert_eq!(storage.term(5), Ok(2));
    assert_eq!(storage.term(6), Err(StorageError::Unavailable));
}

/// An append starting inside the log replaces the suffix from there.
pub fn conflicting_append_truncates<T: ConformanceTarget>(mut storage: T) {
    storage.append(&entries(1, 1, 5));
    storage.append(&entries(3, 3, 3));
    assert_eq!(storage.last_index(), 3, "the suffix after the conflict is gone");
    assert_eq!(storage.term(3), Ok(3));
    assert_eq!(storage.term(4), Err(StorageError::Unavailable));
    storage.append(&entries(3, 4, 6));
    assert_eq!(storage.entries(1, 7, u64::MAX).unwrap(), [entries(1, 1, 2), entries(3, 3, 6)].concat());
}

/// After compaction: `first_index == index + 1`, `term(index)` is the snapshot term,
/// older indexes are `Compacted`.
pub fn compaction_keeps_snapshot_term<T: ConformanceTarget>(mut storage: T) {
    storage.append(&[entries(1, 1, 3), entries(2, 4, 6)].concat());
    let conf = ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] };
    storage.compact(4, conf.clone(), Bytes::from_static(b"state at 4"));
    assert_eq!(storage.first_index(), 5);
    assert_eq!(storage.last_index(), 6);
    assert_eq!(storage.term(4), Ok(2), "term of the snapshot index");
    assert_eq!(storage.term(3), Err(StorageError::Compacted));
    assert_eq!(storage.entries(4, 6, u64::MAX), Err(StorageError::Compacted));
    assert_eq!(storage.entries(5, 7, u64::MAX).unwrap(), entries(2, 5, 6));
    let snapshot = storage.snapshot().unwrap();
    assert_eq!((snapshot.meta.index, snapshot.meta.term), (4, 2));
    assert_eq!(snapshot.meta.conf, conf);
    assert_eq!(snapshot.data, Bytes::from_static(b"state at 4"));
    storage.compact(2, ConfState::default(), Bytes::new());
    assert_eq!(storage.first_index(), 5, "compacting to an older index is a no-op");
    storage.compact(6, ConfState::default(), Bytes::new());
    assert_eq!((storage.first_index(), storage.last_index()), (7, 6), "an empty log after the snapshot");
    assert_eq!(storage.term(6), Ok(2));
}

/// `entries` stops once the size exceeds the limit, but returns at least one entry.
pub fn entries_size_limit<T: ConformanceTarget>(mut storage: T) {
    let appended: Vec<Entry> = (1..=10).map(|index| entry(1, index, 100)).collect();
    storage.append(&appended);
    let entry_size_bytes = appended[0].size_bytes();
    assert_eq!(storage.entries(1, 11, 0).unwrap().len(), 1, "at least one entry");
    assert_eq!(storage.entries(1, 11, entry_size_bytes).unwrap().len(), 1);
    assert_eq!(storage.entries(1, 11, entry_size_bytes * 3).unwrap().len(), 3);
    assert_eq!(storage.entries(1, 11, entry_size_bytes * 3 + 1).unwrap().len(), 3);
    assert_eq!(storage.entries(1, 11, u64::MAX).unwrap(), appended);
    assert_eq!(storage.entries(3, 11, entry_size_bytes * 2).unwrap(), appended[2..4].to_vec());
}

/// A snapshot matching the log keeps the suffix; a conflicting one empties the log; an
/// older one is ignored; the commit index rises to the snapshot.
pub fn apply_snapshot_replaces_or_keeps<T: ConformanceTarget>(mut storage: T) {
    storage.append(&entries(1, 1, 6));
    let snapshot = |index, term| Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            conf: ConfState { voters: vec![1], learners: vec![], voters_outgoing: vec![] },
        },
        data: Bytes::from(format!("snapshot {index}")),
    };
    storage.apply_snapshot(snapshot(3, 1));
    assert_eq!((storage.first_index(), storage.last_index()), (4, 6), "matching snapshot keeps the suffix");
    assert_eq!(storage.initial_state().unwrap().hard_state.commit, 3, "commit rises to the snapshot");
    storage.apply_snapshot(snapshot(5, 2));
    assert_eq!((storage.first_index(), storage.last_index()), (6, 5), "conflicting snapshot empties the log");
    assert_eq!(storage.term(5), Ok(2));
    storage.apply_snapshot(snapshot(4, 2));
    assert_eq!(storage.snapshot().unwrap().meta.index, 5, "an older snapshot is ignored");
    storage.apply_snapshot(snapshot(9, 3));
    assert_eq!((storage.first_index(), storage.last_index()), (10, 9), "a snapshot past the log");
    storage.append(&entries(3, 10, 11));
    assert_eq!(storage.entries(10, 12, u64::MAX).unwrap(), entries(3, 10, 11));
    assert_eq!(storage.snapshot().unwrap().data, Bytes::from("snapshot 9"));
}

/// The hard state reads back through `initial_state`, with the membership.
pub fn hard_state_round_trip<T: ConformanceTarget>(mut storage: T) {
    let hard_state = HardState { term: 4, vote: 2, commit: 0 };
    storage.set_hard_state(hard_state);
    assert_eq!(storage.initial_state().unwrap().hard_state, hard_state);
    storage.append(&entries(4, 1, 2));
    let hard_state = HardState { term: 5, vote: 0, commit: 2 };
    storage.set_hard_state(hard_state);
    assert_eq!(storage.initial_state().unwrap().hard_state, hard_state);
}

/// Everything written survives a restart.
pub fn restart_keeps_everything<T: ConformanceTarget>(mut storage: T) {
    storage.append(&entries(1, 1, 8));
    storage.append(&entries(2, 6, 9));
    storage.compact(
        3,
        ConfState { voters: vec![1, 2], learners: vec![3], voters_outgoing: vec![] },
        Bytes::from_static(b"three"),
    );
    storage.set_hard_state(HardState { term: 2, vote: 1, commit: 7 });
    let before = describe(&storage);
    let storage = storage.restart();
    assert_eq!(describe(&storage), before, "state after restart");
}

/// Everything a storage answers, for comparisons.
pub fn describe<T: Storage>(storage: &T) -> (raft::InitialState, Snapshot, Index, Vec<Entry>) {
    let first_index = storage.first_index();
    let entries = storage.entries(first_index, storage.last_index() + 1, u64::MAX).expect("whole log readable");
    (storage.initial_state().expect("initial state"), storage.snapshot().expect("snapshot"), first_index, entries)
}
