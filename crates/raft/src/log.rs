//! The node's view of its log: durable entries in `Storage` plus entries not yet known
//! durable ("unstable"), the commit index and the apply cursor (§5.3, Figure 2).

use crate::storage::{Storage, StorageError};
use crate::types::{Entry, Index, Snapshot, Term};

pub(crate) struct RaftLog<S: Storage> {
    pub(crate) storage: S,
    /// A snapshot received from the leader and not yet durable. While present, storage is
    /// stale: everything up to `snapshot.meta.index` counts as replaced by it.
    unstable_snapshot: Option<Snapshot>,
    unstable_snapshot_handed: bool,
    /// Entries not yet known durable. Invariant: `unstable[i].index == offset + i`, and
    /// they shadow any storage entries at or above `offset`.
    unstable: Vec<Entry>,
    offset: Index,
    /// Unstable entries up to this index were handed to the driver to persist.
    handed_index: Index,
    /// Highest index known committed. Invariant: never decreases; `<= last_index()`.
    pub(crate) committed: Index,
    /// Highest index handed out to apply. Invariant: `applied <= committed`.
    pub(crate) applied: Index,
}

impl<S: Storage> RaftLog<S> {
    /// The log over `storage`; refuses storage that contradicts itself (a hard state
    /// committing past the stored log, a last entry without a readable term, first index
    /// beyond last + 1): damaged disk input is an error, not a panic.
    pub(crate) fn new(storage: S, committed: Index, applied: Index) -> Result<Self, String> {
        let offset = storage.last_index().checked_add(1).ok_or("last index overflows")?;
        let first = storage.first_index();
        if first == 0 || first > offset {
            return Err(format!("first index {first} after last index {}", offset - 1));
        }
        if committed >= offset {
            return Err(format!("hard state commit {committed} beyond the last stored entry {}", offset - 1));
        }
        if let Err(error) = storage.term(offset - 1) {
            return Err(format!("the last stored entry {} has no readable term: {error}", offset - 1));
        }
        let committed = committed.max(first - 1);
        let applied = applied.max(first - 1).min(committed);
        let log = RaftLog {
            storage,
            unstable_snapshot: None,
            unstable_snapshot_handed: false,
            unstable: Vec::new(),
            offset,
            handed_index: offset - 1,
            committed,
            applied,
        };
        debug_assert!(log.applied <= log.committed && log.committed <= log.last_index());
        Ok(log)
    }

    /// The invariants written at the fields (cheap, on in release; contiguity of the
    /// unstable entries is checked in debug builds only).
    pub(crate) fn assert_invariants(&self) {
        let last_index = self.last_index();
        assert!(self.applied <= self.committed, "applied {} beyond commit {}", self.applied, self.committed);
        assert!(self.committed <= last_index, "commit {} beyond last index {last_index}", self.committed);
        assert!(self.handed_index <= last_index, "handed {} beyond last index {last_index}", self.handed_index);
        assert!(self.offset > 0, "the unstable offset starts at index 1");
        assert!(self.first_index() <= last_index + 1, "first index after last index + 1");
        if let Some(first) = self.unstable.first() {
            assert_eq!(first.index, self.offset, "unstable entries start at the offset");
        }
        if let Some(snapshot) = &self.unstable_snapshot {
            assert_eq!(self.offset, snapshot.meta.index + 1, "unstable entries follow the unstable snapshot");
        }
        debug_assert!(self.unstable.iter().enumerate().all(|(i, e)| e.index == self.offset + i as u64));
    }

    pub(crate) fn first_index(&self) -> Index {
        match &self.unstable_snapshot {
            Some(snapshot) => snapshot.meta.index + 1,
            None => self.storage.first_index(),
        }
    }

    pub(crate) fn last_index(&self) -> Index {
        if !self.unstable.is_empty() {
            return self.offset + self.unstable.len() as u64 - 1;
        }
        match &self.unstable_snapshot {
            Some(snapshot) => snapshot.meta.index,
            None => self.storage.last_index(),
        }
    }

    /// Term of the entry at `index`, if it is in the log (or is the snapshot's last entry).
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index > self.last_index() {
            return None;
        }
        if index >= self.offset && !self.unstable.is_empty() {
            return Some(self.unstable[(index - self.offset) as usize].term);
        }
        if let Some(snapshot) = &self.unstable_snapshot {
            return (index == snapshot.meta.index).then_some(snapshot.meta.term);
        }
        self.storage.term(index).ok()
    }

    /// Term of the last entry; terms never decrease along the log, so this is the highest.
    pub(crate) fn last_term(&self) -> Term {
        self.term(self.last_index()).expect("the last entry always has a term")
    }

    pub(crate) fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Entries `low..high` bounded by `size_bytes_max` (at least one when `low < high`).
    pub(crate) fn entries(&self, low: Index, high: Index, size_bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        if low < self.first_index() {
            return Err(StorageError::Compacted);
        }
        let high = high.min(self.last_index() + 1);
        if low >= high {
            return Ok(Vec::new());
        }
        let mut result = Vec::new();
        if low < self.offset {
            result = self.storage.entries(low, high.min(self.offset), size_bytes_max)?;
            let complete = result.last().map(|entry| entry.index + 1) == Some(high.min(self.offset));
            if !complete || high <= self.offset {
                return Ok(result);
            }
        }
        assert!(result.is_empty() || result[result.len() - 1].index + 1 == self.offset, "storage part ends at offset");
        let used_bytes: u64 = result.iter().map(Entry::size_bytes).sum();
        let start = low.max(self.offset);
        let slice = &self.unstable[(start - self.offset) as usize..(high - self.offset) as usize];
        let remaining = size_bytes_max.saturating_sub(used_bytes);
        if result.is_empty() {
            return Ok(crate::storage::limit_size(slice, remaining));
        }
        let mut total = 0;
        for entry in slice {
            total += entry.size_bytes();
            if total > remaining {
                break;
            }
            result.push(entry.clone());
        }
        Ok(result)
    }

    /// Appends `entries`, replacing any entries from `entries[0].index` on.
    /// Committed entries are never replaced (Raft's State Machine Safety, §5.4).
    pub(crate) fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let after = first.index;
        assert!(after > self.committed, "would overwrite committed entry {after} (commit {})", self.committed);
        assert!(after <= self.last_index() + 1, "gap: appending {after} after {}", self.last_index());
        if after == self.offset + self.unstable.len() as u64 {
            self.unstable.extend_from_slice(entries);
        } else if after <= self.offset {
            self.unstable = entries.to_vec();
            self.offset = after;
        } else {
            self.unstable.truncate((after - self.offset) as usize);
            self.unstable.extend_from_slice(entries);
        }
        self.handed_index = self.handed_index.min(after - 1);
        assert_eq!(self.last_index(), entries[entries.len() - 1].index, "the log ends with the appended entries");
        self.assert_invariants();
    }

    /// Finds the first entry of `entries` that is not already in the log with the same
    /// term (0 if all are), for the follower's conflict check (§5.3).
    pub(crate) fn find_conflict(&self, entries: &[Entry]) -> Index {
        for entry in entries {
            if !self.matches(entry.index, entry.term) {
                return entry.index;
            }
        }
        0
    }

    /// The conflict hint (R3): the largest index at or below `index` whose term is at
    /// most `term`. The leader uses it to skip a whole term per round trip.
    pub(crate) fn find_conflict_by_term(&self, index: Index, term: Term) -> Index {
        let mut candidate = index.min(self.last_index());
        let floor = self.first_index().saturating_sub(1);
        while candidate > floor {
            match self.term(candidate) {
                Some(entry_term) if entry_term > term => candidate -= 1,
                _ => break,
            }
        }
        // The hint never points forward, and at the log's floor or at a term not above `term`.
        assert!(candidate <= index, "conflict hint {candidate} above {index}");
        assert!(candidate == floor || self.term(candidate).is_none_or(|found| found <= term), "hint term");
        candidate
    }

    pub(crate) fn commit_to(&mut self, index: Index) {
        if index > self.committed {
            assert!(index <= self.last_index(), "commit {index} beyond last index {}", self.last_index());
            self.committed = index;
        }
        assert!(self.committed >= index.min(self.last_index()), "commit did not reach {index}");
    }

    /// Highest index that is durable locally (entries below `offset` are in storage).
    pub(crate) fn durable_index(&self) -> Index {
        if self.unstable_snapshot.is_some() {
            return 0;
        }
        assert!(self.offset - 1 <= self.last_index(), "durable beyond the log");
        self.offset - 1
    }

    /// Unstable entries not yet handed to the driver; marks them handed.
    pub(crate) fn take_entries_to_persist(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.unstable.is_empty() || self.handed_index >= last {
            return Vec::new();
        }
        let start = (self.handed_index + 1).max(self.offset);
        assert!(start <= last, "nothing to hand out from {start} to {last}");
        self.handed_index = last;
        self.unstable[(start - self.offset) as usize..].to_vec()
    }

    pub(crate) fn take_snapshot_to_persist(&mut self) -> Option<Snapshot> {
        if self.unstable_snapshot_handed {
            return None;
        }
        self.unstable_snapshot_handed = true;
        self.unstable_snapshot.clone()
    }

    pub(crate) fn has_unhanded(&self) -> bool {
        (!self.unstable_snapshot_handed && self.unstable_snapshot.is_some())
            || (!self.unstable.is_empty() && self.handed_index < self.last_index())
    }

    /// The driver reports entries up to `(index, term)` durable.
    pub(crate) fn stable_to(&mut self, index: Index, term: Term) {
        if self.unstable_snapshot.is_some() || index < self.offset || !self.matches(index, term) {
            return; // stale: replaced since it was handed out
        }
        let drop = (index + 1 - self.offset) as usize;
        assert!(drop <= self.unstable.len(), "stable_to({index}) beyond the unstable entries");
        self.unstable.drain(..drop);
        self.offset = index + 1;
        assert!(self.storage.last_index() >= index, "driver reported entries durable that storage lacks");
        self.assert_invariants();
    }

    pub(crate) fn stable_snapshot_to(&mut self, index: Index) {
        if self.unstable_snapshot.as_ref().map(|snapshot| snapshot.meta.index) == Some(index) {
            self.unstable_snapshot = None;
            self.unstable_snapshot_handed = false;
            assert!(self.storage.first_index() > index, "driver reported a snapshot durable that storage lacks");
            self.assert_invariants();
        }
    }

    /// Replaces the log with `snapshot` (R9, §7).
    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.meta.index;
        assert!(index > self.committed, "restoring an older snapshot");
        self.committed = index;
        self.applied = index;
        self.unstable.clear();
        self.offset = index + 1;
        self.handed_index = index;
        self.unstable_snapshot = Some(snapshot);
        self.unstable_snapshot_handed = false;
        assert_eq!(self.last_index(), index, "the restored log ends at the snapshot");
        self.assert_invariants();
    }

    /// Committed, durable, not yet applied entries (R5), bounded in bytes; advances `applied`.
    pub(crate) fn take_committed_to_apply(&mut self, size_bytes_max: u64) -> Vec<Entry> {
        assert!(size_bytes_max > 0, "an apply batch holds at least one byte");
        let high = self.committed.min(self.durable_index());
        if self.applied >= high || self.unstable_snapshot.is_some() {
            return Vec::new();
        }
        match self.entries(self.applied + 1, high + 1, size_bytes_max) {
            Ok(entries) => {
                if let Some(last) = entries.last() {
                    assert_eq!(entries[0].index, self.applied + 1, "apply order");
                    self.applied = last.index;
                }
                assert!(self.applied <= self.committed, "applied {} beyond commit {}", self.applied, self.committed);
                entries
            }
            Err(_) => Vec::new(),
        }
    }

    pub(crate) fn has_committed_to_apply(&self) -> bool {
        self.unstable_snapshot.is_none() && self.applied < self.committed.min(self.durable_index())
    }

    pub(crate) fn pending_snapshot(&self) -> bool {
        self.unstable_snapshot.is_some()
    }
}
