//! The log as it is after applying records: shared by the write path and by recovery,
//! so that replaying what was written rebuilds exactly the state the writer had.

use std::collections::VecDeque;

use raft::{ConfState, Entry, HardState, Index, SnapshotMeta, StorageError, Term};

use crate::codec::{RecordParts, SnapshotMarker};

/// Snapshot position, hard state and the entries after the snapshot, in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogState {
    /// The snapshot the log starts after (its `conf` is the current membership, as in
    /// `raft::MemoryStorage`).
    pub snapshot_meta: SnapshotMeta,
    /// The last hard state.
    pub hard_state: HardState,
    /// Entries after the snapshot. Invariant once recovered: `entries[i].index ==
    /// entries_first_index + i` and `entries_first_index == snapshot_meta.index + 1`.
    pub entries: VecDeque<Entry>,
    /// Index of `entries[0]` (where the next entry goes when empty). Invariant: above 0,
    /// and above `snapshot_meta.index` outside replay (the snapshot index is at most
    /// `first index - 1`).
    pub entries_first_index: Index,
}

impl LogState {
    /// An empty log whose membership is `conf`.
    pub(crate) fn new(conf: ConfState) -> Self {
        let state = LogState {
            snapshot_meta: SnapshotMeta { index: 0, term: 0, conf },
            hard_state: HardState::default(),
            entries: VecDeque::new(),
            entries_first_index: 1,
        };
        assert_eq!(state.last_index(), 0, "an empty log ends at index 0");
        assert!(state.entries_first_index > state.snapshot_meta.index, "entries start after the snapshot");
        state
    }

    /// Index of the last entry (the snapshot index when there is none).
    pub(crate) fn last_index(&self) -> Index {
        assert!(self.entries_first_index > 0, "entry indexes start at 1");
        self.entries_first_index + self.entries.len() as u64 - 1
    }

    /// Term of the entry at `index`, under the `raft::Storage` rules.
    pub(crate) fn term(&self, index: Index) -> Result<Term, StorageError> {
        let snapshot_index = self.snapshot_meta.index;
        if index == snapshot_index {
            return Ok(self.snapshot_meta.term);
        }
        if index < snapshot_index {
            return Err(StorageError::Compacted);
        }
        match self.entry(index) {
            Some(entry) => Ok(entry.term),
            None => {
                assert!(index > self.last_index() || index < self.entries_first_index, "held entries are found");
                Err(StorageError::Unavailable)
            }
        }
    }

    /// The entry at `index`, if held.
    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        let position = index.checked_sub(self.entries_first_index)?;
        let entry = self.entries.get(usize::try_from(position).ok()?)?;
        // Entries are placed by index (`apply_entries`), whatever the records said.
        assert_eq!(entry.index, index, "entries[i] has index entries_first_index + i");
        Some(entry)
    }

    /// Applies one record: snapshot marker, membership, entries, hard state, in that order.
    ///
    /// `replaying` relaxes one rule for recovery: the oldest retained segments may start
    /// with entries whose predecessors were in deleted (compacted) segments, so an entry
    /// landing on an empty log is accepted at any index; [`LogState::finish_replay`] then
    /// checks that the log is contiguous from the snapshot.
    pub(crate) fn apply(&mut self, record: &RecordParts<'_>, replaying: bool) -> Result<(), String> {
        if let Some(marker) = record.snapshot_marker {
            self.apply_snapshot_marker(marker)?;
        }
        if let Some(conf) = record.conf_state {
            self.snapshot_meta.conf = conf.clone();
        }
        if !record.entries.is_empty() {
            self.apply_entries(record.entries, record.truncates, replaying)?;
        }
        if let Some(hard_state) = record.hard_state {
            self.hard_state = hard_state;
        }
        // Outside replay every record was validated against this log before it was written.
        assert!(replaying || self.entries_first_index == self.snapshot_meta.index + 1, "entries follow the snapshot");
        Ok(())
    }

    fn apply_snapshot_marker(&mut self, marker: &SnapshotMarker) -> Result<(), String> {
        if marker.keep_suffix {
            if let Some(entry) = self.entry(marker.index) {
                if entry.term != marker.term {
                    return Err(format!(
                        "snapshot ({}, {}) keeps the log but entry {} has term {}",
                        marker.index, marker.term, marker.index, entry.term
                    ));
                }
            }
            let drop_count = (marker.index + 1).saturating_sub(self.entries_first_index);
            let drop_count = usize::try_from(drop_count).unwrap_or(usize::MAX).min(self.entries.len());
            self.entries.drain(..drop_count);
            self.entries_first_index = self.entries_first_index.max(marker.index + 1);
            if self.entries.is_empty() {
                self.entries_first_index = marker.index + 1;
            }
            let front_index = self.entries.front().map(|entry| entry.index);
            assert!(front_index.is_none_or(|index| index == self.entries_first_index), "entries stay in place");
        } else {
            self.entries.clear();
            self.entries_first_index = marker.index + 1;
        }
        self.snapshot_meta = SnapshotMeta { index: marker.index, term: marker.term, conf: marker.conf.clone() };
        assert!(self.entries_first_index > marker.index, "the entries left start after the snapshot");
        Ok(())
    }

    fn apply_entries(&mut self, entries: &[Entry], truncates: bool, replaying: bool) -> Result<(), String> {
        let first_index = entries[0].index;
        let next_index = self.last_index() + 1;
        if replaying && self.entries.is_empty() {
            // See `apply`: the predecessors may have been compacted away.
            self.entries_first_index = first_index;
        } else if first_index == next_index && !truncates {
            // A plain append.
        } else if truncates && first_index < next_index && first_index >= self.entries_first_index {
            let keep = (first_index - self.entries_first_index) as usize;
            assert!(keep < self.entries.len(), "a truncation replaces at least one held entry");
            self.entries.truncate(keep);
        } else if truncates && replaying && first_index < self.entries_first_index {
            self.entries.clear();
            self.entries_first_index = first_index;
        } else {
            return Err(format!(
                "entries from {first_index} (truncation flag {truncates}) do not follow a log ending at {}",
                next_index - 1
            ));
        }
        assert_eq!(first_index, self.last_index() + 1, "entries must land right after the log");
        // The decoder numbers a record's entries from its first index; writes are checked.
        debug_assert!(entries.iter().enumerate().all(|(position, entry)| entry.index == first_index + position as u64));
        self.entries.extend(entries.iter().cloned());
        assert_eq!(self.last_index(), first_index + entries.len() as u64 - 1, "the log ends with the new entries");
        Ok(())
    }

    /// Checks, after the last record, that the entries follow the snapshot directly.
    pub(crate) fn finish_replay(&mut self) -> Result<(), String> {
        let snapshot_index = self.snapshot_meta.index;
        let drop_count = (snapshot_index + 1).saturating_sub(self.entries_first_index);
        let drop_count = usize::try_from(drop_count).unwrap_or(usize::MAX).min(self.entries.len());
        self.entries.drain(..drop_count);
        if self.entries.is_empty() {
            self.entries_first_index = snapshot_index + 1;
        }
        if self.entries_first_index != snapshot_index + 1 {
            return Err(format!(
                "entries {}..{} are missing (the log restarts at {} after a snapshot at {})",
                snapshot_index + 1,
                self.entries_first_index,
                self.entries_first_index,
                snapshot_index
            ));
        }
        assert_eq!(self.entries_first_index, snapshot_index + 1, "the entries follow the snapshot");
        // O(n): checked in debug builds only.
        debug_assert!(self
            .entries
            .iter()
            .enumerate()
            .all(|(position, entry)| entry.index == self.entries_first_index + position as u64));
        Ok(())
    }
}
