//! How a replicated state machine gives and takes snapshots (§7, R9), and when to take one.

use bytes::Bytes;

use crate::types::Index;

/// A state machine that can be snapshotted and restored. The driver calls
/// [`Snapshottable::snapshot`] when [`CompactionPolicy::should_compact`] says so, stores it
/// with the log position (compacting the log), and calls [`Snapshottable::restore`] when
/// a `Ready` carries a snapshot from the leader.
///
/// Rules every implementation must keep:
/// - Deterministic: replicas that applied the same entries hold equal state, and
///   `snapshot()` of equal states restores to equal states.
/// - `snapshot()` describes the state exactly as of `applied_index()`: everything applied up
///   to it, nothing after.
/// - `restore(data)` replaces the whole state (nothing of the old state survives) and
///   afterwards `applied_index()` is the index the snapshot was taken at.
/// - `restore` of bytes that `snapshot` did not produce fails with an error and leaves the
///   state unchanged.
/// - `write_snapshot` writes exactly `snapshot_length_bytes()` bytes, the same bytes as
///   `snapshot()` (the provided versions serialize once into memory; a large state machine
///   overrides both to stream its snapshot into the file without a second copy in memory).
pub trait Snapshottable {
    /// Index of the last entry applied.
    fn applied_index(&self) -> Index;
    /// The whole state, serialized.
    fn snapshot(&self) -> Bytes;
    /// Replaces the state with a snapshot's.
    fn restore(&mut self, data: &[u8]) -> Result<(), String>;
    /// Length of [`Snapshottable::snapshot`]'s bytes.
    fn snapshot_length_bytes(&self) -> u64 {
        self.snapshot().len() as u64
    }
    /// Writes [`Snapshottable::snapshot`]'s bytes to `out`.
    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        out.write_all(&self.snapshot())
    }
}

/// When to snapshot and compact the log: every `entries_max` applied entries or
/// `bytes_max` applied bytes since the last snapshot, whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Applied entries between snapshots.
    pub entries_max: u64,
    /// Applied entry bytes between snapshots.
    pub bytes_max: u64,
}

impl CompactionPolicy {
    /// True if a snapshot is due, given the applied index, the last snapshot's index and the
    /// entry bytes applied since it.
    pub fn should_compact(&self, applied_index: Index, snapshot_index: Index, bytes_since_snapshot: u64) -> bool {
        assert!(applied_index >= snapshot_index, "applied {applied_index} is behind the snapshot {snapshot_index}");
        let entries_since = applied_index - snapshot_index;
        entries_since > 0 && (entries_since >= self.entries_max || bytes_since_snapshot >= self.bytes_max)
    }
}

impl Default for CompactionPolicy {
    /// 10,000 entries or 64 MiB.
    fn default() -> Self {
        let policy = CompactionPolicy { entries_max: 10_000, bytes_max: 64 << 20 };
        assert!(policy.entries_max > 0 && policy.bytes_max > 0, "a policy that can trigger");
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_triggers_on_entries_or_bytes() {
        let policy = CompactionPolicy { entries_max: 100, bytes_max: 1000 };
        assert!(!policy.should_compact(50, 0, 10));
        assert!(policy.should_compact(100, 0, 10));
        assert!(policy.should_compact(51, 50, 1000));
        assert!(!policy.should_compact(50, 50, 5000), "nothing applied since the snapshot");
    }
}
