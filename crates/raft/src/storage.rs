//! The log storage the core reads from, and an in-memory implementation.
//!
//! The core never writes storage: it hands what to persist to the driver in a
//! [`crate::Ready`], and the driver writes it (durably) and reports back with
//! [`crate::RawNode::on_persisted`]. The core only reads through this trait.

use crate::types::{ConfState, Entry, HardState, Index, Snapshot, Term};

/// Why a storage read failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageError {
    /// The requested index is before the first available entry (covered by a snapshot).
    Compacted,
    /// The requested index is after the last entry.
    Unavailable,
    /// The snapshot is being produced; try again later.
    SnapshotTemporarilyUnavailable,
    /// Any other failure (I/O, corruption) with a human-readable reason.
    Other(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::Compacted => write!(formatter, "requested index is compacted"),
            StorageError::Unavailable => write!(formatter, "requested index is unavailable"),
            StorageError::SnapshotTemporarilyUnavailable => {
                write!(formatter, "snapshot temporarily unavailable")
            }
            StorageError::Other(reason) => write!(formatter, "storage error: {reason}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// What a node recovers on start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitialState {
    /// Last persisted hard state.
    pub hard_state: HardState,
    /// Last persisted membership (from the snapshot or the last config entry).
    pub conf_state: ConfState,
}

/// Read access to a node's durable log.
///
/// Rules every implementation must keep (the core relies on them):
/// - Entries are contiguous: `first_index()..=last_index()` are all readable.
/// - `first_index() == snapshot.meta.index + 1`; `term(snapshot.meta.index)` answers the
///   snapshot's term, and an empty log answers `term(0) == 0`.
/// - `term(i)` for `i < first_index() - 1` returns [`StorageError::Compacted`]; for
///   `i > last_index()` it returns [`StorageError::Unavailable`].
/// - `entries(low, high, size_bytes_max)` returns `low..high` in order, stopping early once
///   the size exceeds `size_bytes_max`, but always at least one entry when `low < high`.
/// - Only what the driver wrote and synced is returned: after a crash, storage holds
///   exactly what was durable (never a write that was not reported as persisted,
///   unless it was persisted before the crash).
pub trait Storage {
    /// Hard state and membership to start from.
    fn initial_state(&self) -> Result<InitialState, StorageError>;
    /// Entries `low..high`, bounded by `size_bytes_max` (at least one).
    fn entries(&self, low: Index, high: Index, size_bytes_max: u64) -> Result<Vec<Entry>, StorageError>;
    /// Term of the entry at `index`.
    fn term(&self, index: Index) -> Result<Term, StorageError>;
    /// Index of the first available entry.
    fn first_index(&self) -> Index;
    /// Index of the last entry (`first_index() - 1` when empty).
    fn last_index(&self) -> Index;
    /// The latest snapshot.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// A log kept in memory, for tests and the simulator.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    /// Invariant: `entries[i].index == snapshot.meta.index + 1 + i`.
    entries: Vec<Entry>,
}

impl MemoryStorage {
    /// An empty log whose initial membership is `voters`.
    pub fn new_with_voters(voters: &[u64]) -> Self {
        let mut storage = MemoryStorage::default();
        storage.snapshot.meta.conf.voters = voters.to_vec();
        storage
    }

    /// Stores `hard_state`.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        assert!(hard_state.term >= self.hard_state.term, "term went backwards");
        self.hard_state = hard_state;
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Appends `entries`, first removing any stored suffix from `entries[0].index` on.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let snapshot_index = self.snapshot.meta.index;
        assert!(first.index <= self.last_index() + 1, "gap in log: {} after {}", first.index, self.last_index());
        // Entries at or below the snapshot are already covered; skip them.
        let skip = snapshot_index.saturating_sub(first.index - 1) as usize;
        if skip >= entries.len() {
            return;
        }
        let entries = &entries[skip..];
        let keep = (entries[0].index - snapshot_index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        let last = &entries[entries.len() - 1];
        assert_eq!(self.last_index(), last.index, "the log ends with the appended entries");
        assert_eq!(self.term(last.index), Ok(last.term), "the appended entries are readable");
        debug_assert!(self.entries.windows(2).all(|pair| pair[1].index == pair[0].index + 1));
    }

    /// Replaces the whole log with `snapshot` (R9). Older snapshots are ignored.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        if snapshot.meta.index <= self.snapshot.meta.index {
            return;
        }
        let keep_suffix = self.term(snapshot.meta.index).ok() == Some(snapshot.meta.term);
        if keep_suffix {
            let drop = (snapshot.meta.index - self.snapshot.meta.index) as usize;
            self.entries.drain(..drop.min(self.entries.len()));
        } else {
            self.entries.clear();
        }
        self.hard_state.commit = self.hard_state.commit.max(snapshot.meta.index);
        let (index, term) = (snapshot.meta.index, snapshot.meta.term);
        self.snapshot = snapshot;
        assert_eq!(self.first_index(), index + 1, "the log starts after the snapshot");
        assert_eq!(self.term(index), Ok(term), "the snapshot's last entry keeps its term");
    }

    /// Drops entries up to and including `index`, recording `snapshot_data` as the snapshot.
    pub fn compact(&mut self, index: Index, conf: ConfState, snapshot_data: bytes::Bytes) {
        if index <= self.snapshot.meta.index {
            return;
        }
        assert!(index <= self.last_index(), "compact beyond the last entry");
        let term = self.term(index).expect("index is in range");
        let drop = (index - self.snapshot.meta.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = Snapshot { meta: crate::types::SnapshotMeta { index, term, conf }, data: snapshot_data };
        assert_eq!(self.first_index(), index + 1, "the log starts after the snapshot");
        assert_eq!(self.term(index), Ok(term), "the compacted index keeps its term");
    }

    /// Every stored entry (for checkers and tests).
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Replaces the membership recorded with the snapshot (used when a config entry is persisted).
    pub fn set_conf_state(&mut self, conf: ConfState) {
        self.snapshot.meta.conf = conf;
    }
}

impl Storage for MemoryStorage {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        Ok(InitialState { hard_state: self.hard_state, conf_state: self.snapshot.meta.conf.clone() })
    }

    fn entries(&self, low: Index, high: Index, size_bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        if low < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if high > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let offset = self.snapshot.meta.index + 1;
        let slice = &self.entries[(low - offset) as usize..(high - offset) as usize];
        let entries = limit_size(slice, size_bytes_max);
        assert!(entries.first().is_none_or(|entry| entry.index == low), "entries start at low");
        assert!(entries.len() as u64 <= high.saturating_sub(low), "entries end before high");
        Ok(entries)
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        let snapshot_index = self.snapshot.meta.index;
        if index == snapshot_index {
            return Ok(self.snapshot.meta.term);
        }
        if index < snapshot_index {
            return Err(StorageError::Compacted);
        }
        match self.entries.get((index - snapshot_index - 1) as usize) {
            Some(entry) => Ok(entry.term),
            None => Err(StorageError::Unavailable),
        }
    }

    fn first_index(&self) -> Index {
        self.snapshot.meta.index + 1
    }

    fn last_index(&self) -> Index {
        self.snapshot.meta.index + self.entries.len() as u64
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }
}

/// The longest prefix of `entries` within `size_bytes_max`, but at least one entry.
pub fn limit_size(entries: &[Entry], size_bytes_max: u64) -> Vec<Entry> {
    let mut total_bytes = 0u64;
    let mut count = 0usize;
    for entry in entries {
        total_bytes += entry.size_bytes();
        if count > 0 && total_bytes > size_bytes_max {
            break;
        }
        count += 1;
    }
    assert!(count > 0 || entries.is_empty(), "at least one entry when there is one");
    entries[..count].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(term: Term, index: Index) -> Entry {
        Entry { term, index, kind: crate::types::EntryKind::Normal, data: Bytes::new() }
    }

    #[test]
    fn append_truncates_conflicting_suffix() {
        let mut storage = MemoryStorage::new_with_voters(&[1]);
        storage.append(&[entry(1, 1), entry(1, 2), entry(1, 3)]);
        storage.append(&[entry(2, 2)]);
        assert_eq!(storage.last_index(), 2);
        assert_eq!(storage.term(2), Ok(2));
        assert_eq!(storage.term(3), Err(StorageError::Unavailable));
    }

    #[test]
    fn compact_then_read() {
        let mut storage = MemoryStorage::new_with_voters(&[1]);
        storage.append(&[entry(1, 1), entry(1, 2), entry(2, 3)]);
        storage.compact(2, ConfState::default(), Bytes::new());
        assert_eq!(storage.first_index(), 3);
        assert_eq!(storage.term(2), Ok(1));
        assert_eq!(storage.term(1), Err(StorageError::Compacted));
        assert_eq!(storage.entries(1, 3, u64::MAX), Err(StorageError::Compacted));
        assert_eq!(storage.entries(3, 4, 0).unwrap().len(), 1);
    }
}
