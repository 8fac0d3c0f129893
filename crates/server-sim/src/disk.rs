//! A member's simulated disk: the WAL's files on a [`SimulatedFileSystem`], fsyncs that
//! complete later (as the server's sync thread does), and crashes: power lost between two
//! operations or at a chosen operation, after which the machine finds the durable bytes
//! and names plus, depending on the [`CrashMode`], a torn tail or some unsynced
//! directory changes.

use std::collections::VecDeque;
use std::sync::Arc;

use raft::SplitMix64;
use wal::fault::{CrashMode, SimulatedFileSystem};
use wal::DetachedSync;

/// Syncs waiting to complete at most (the core holds back at most this many batches).
pub const PENDING_SYNCS_MAX: usize = 4096;

/// A requested fsync: completes at `complete_at_ms`, then `sequence` is durable.
struct PendingSync {
    complete_at_ms: u64,
    sequence: u64,
    handle: DetachedSync,
}

/// A member's disk.
///
/// Invariant: `pending` is in request order with non-decreasing completion times and
/// increasing sequences (syncs complete in order, as on one sync thread).
pub struct Disk {
    file_system: SimulatedFileSystem,
    pending: VecDeque<PendingSync>,
    fsync_ms_max: u64,
}

impl Disk {
    /// An empty disk whose fsyncs take 0 to `fsync_ms_max` simulated milliseconds.
    pub fn new(fsync_ms_max: u64) -> Disk {
        Disk { file_system: SimulatedFileSystem::new(), pending: VecDeque::new(), fsync_ms_max }
    }

    /// The file system for an incarnation's WAL: the disk behind a fresh page cache.
    pub fn file_system(&self) -> Arc<dyn wal::FileSystem> {
        Arc::new(crate::page_cache::PageCacheFileSystem::new(self.file_system.clone()))
    }

    /// True when no fsync is in progress.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts an fsync that makes `sequence` durable when it completes.
    pub fn request_sync(&mut self, sequence: u64, handle: DetachedSync, now_ms: u64, random: &mut SplitMix64) {
        let last_ms = self.pending.back().map_or(now_ms, |last| last.complete_at_ms);
        let complete_at_ms = last_ms.max(now_ms + random.range(0, self.fsync_ms_max + 1));
        assert!(self.pending.back().is_none_or(|last| last.sequence < sequence), "syncs are requested in order");
        assert!(self.pending.len() < PENDING_SYNCS_MAX, "pending syncs are bounded");
        self.pending.push_back(PendingSync { complete_at_ms, sequence, handle });
    }

    /// Runs the fsyncs due at `now_ms`; returns the highest sequence they made durable, or
    /// the error of one that failed (the disk crashed: the member must stop).
    pub fn complete_due(&mut self, now_ms: u64) -> Result<Option<u64>, wal::WalError> {
        let mut durable = None;
        while self.pending.front().is_some_and(|first| first.complete_at_ms <= now_ms) {
            let sync = self.pending.pop_front().expect("a due sync");
            sync.handle.sync()?;
            assert!(durable < Some(sync.sequence), "syncs complete in order");
            durable = Some(sync.sequence);
        }
        Ok(durable)
    }

    /// Makes the `operations`-th file operation from now fail, and every later one.
    pub fn arm_crash(&self, operations: u64) {
        self.file_system.crash_at(operations);
    }

    /// True once an armed crash point was reached.
    pub fn has_crashed(&self) -> bool {
        self.file_system.has_crashed()
    }

    /// Power loss: the disk becomes what a rebooted machine finds under `mode`; fsyncs in
    /// progress never complete.
    pub fn lose_power(&mut self, mode: CrashMode) {
        self.pending.clear();
        self.file_system = self.file_system.restart(mode);
        assert!(!self.file_system.has_crashed(), "a restarted disk works");
    }
}

/// A crash mode drawn from `random`: most crashes lose unsynced data or tear the tail.
pub fn draw_crash_mode(random: &mut SplitMix64) -> CrashMode {
    match random.range(0, 10) {
        0..=3 => CrashMode::LoseUnsynced,
        4..=7 => CrashMode::TornWrites { seed: random.next_u64() },
        8 => CrashMode::KeepDirectoryChanges,
        _ => CrashMode::SomeDirectoryChanges { seed: random.next_u64() },
    }
}
