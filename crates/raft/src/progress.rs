//! The leader's per-follower replication state (the leader's `nextIndex[]` and
//! `matchIndex[]` of Raft Figure 2, plus flow control).

use std::collections::VecDeque;

use crate::types::Index;

/// How the leader replicates to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Unknown follower state: one AppendEntries at a time until one is accepted (§5.3).
    Probe,
    /// Follower is in sync: AppendEntries pipelined up to the in-flight window.
    Replicate,
    /// Follower is installing a snapshot (§7); nothing else is sent meanwhile.
    Snapshot,
}

/// A bounded window of AppendEntries in flight (count and bytes).
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    /// (last index sent in the message, entry bytes in it), oldest first.
    /// Invariant: `messages.len() <= count_max`; indexes strictly increase.
    messages: VecDeque<(Index, u64)>,
    bytes: u64,
    count_max: usize,
    bytes_max: u64,
}

impl Inflights {
    pub(crate) fn new(count_max: usize, bytes_max: u64) -> Self {
        assert!(count_max > 0 && bytes_max > 0);
        Inflights { messages: VecDeque::with_capacity(count_max.min(64)), bytes: 0, count_max, bytes_max }
    }

    /// The window's bounds and order (cheap, on in release; the byte sum in debug only).
    pub(crate) fn assert_invariants(&self) {
        assert!(self.messages.len() <= self.count_max, "more messages in flight than count_max");
        assert!(self.messages.is_empty() || self.bytes > 0 || self.messages.iter().all(|m| m.1 == 0));
        debug_assert_eq!(self.bytes, self.messages.iter().map(|m| m.1).sum::<u64>(), "byte count drifted");
        debug_assert!(self.messages.iter().zip(self.messages.iter().skip(1)).all(|(a, b)| a.0 < b.0));
    }

    pub(crate) fn full(&self) -> bool {
        self.messages.len() >= self.count_max || self.bytes >= self.bytes_max
    }

    pub(crate) fn add(&mut self, last_index: Index, size_bytes: u64) {
        assert!(!self.full(), "in-flight window overflow");
        if let Some((previous, _)) = self.messages.back() {
            assert!(last_index > *previous, "in-flight indexes must increase");
        }
        self.messages.push_back((last_index, size_bytes));
        self.bytes += size_bytes;
        self.assert_invariants();
    }

    /// Frees every message whose last index is at or below `index` (acknowledged).
    pub(crate) fn free_to(&mut self, index: Index) {
        while let Some(&(last_index, size_bytes)) = self.messages.front() {
            if last_index > index {
                break;
            }
            self.messages.pop_front();
            self.bytes -= size_bytes;
        }
        assert!(self.messages.front().is_none_or(|(last_index, _)| *last_index > index), "acknowledged kept");
        self.assert_invariants();
    }

    /// Frees the oldest slot: a heartbeat answer proves the follower alive, so one more
    /// message may go even if earlier ones were lost (e.g. the follower restarted).
    pub(crate) fn free_first_one(&mut self) {
        if let Some((_, size_bytes)) = self.messages.pop_front() {
            assert!(self.bytes >= size_bytes, "freed more bytes than in flight");
            self.bytes -= size_bytes;
        }
        assert!(!self.full() || self.bytes >= self.bytes_max, "a slot is free after freeing one");
    }

    pub(crate) fn reset(&mut self) {
        self.messages.clear();
        self.bytes = 0;
        assert_eq!(self.count(), 0, "an emptied window holds nothing");
    }

    pub(crate) fn count(&self) -> usize {
        self.messages.len()
    }
}

/// Replication state of one follower, as seen by the leader.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// Highest index known to be replicated on the follower. Only grows within a term.
    pub(crate) match_index: Index,
    /// Next index to send. Invariant: `next_index > match_index`.
    pub(crate) next_index: Index,
    pub(crate) state: ProgressState,
    /// In `Probe`: a probe is outstanding; wait for an answer or a heartbeat response.
    pub(crate) probe_sent: bool,
    /// In `Snapshot`: index of the snapshot being installed.
    pub(crate) pending_snapshot: Index,
    /// In `Snapshot`: ticks without progress; the unacknowledged chunk is re-sent after a timeout.
    pub(crate) snapshot_wait_ticks: u32,
    /// In `Snapshot`: bytes of the snapshot the follower acknowledged holding.
    pub(crate) snapshot_acknowledged_bytes: u64,
    /// In `Snapshot`: a chunk is in flight (one at a time).
    pub(crate) snapshot_chunk_in_flight: bool,
    /// Heard from the follower since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// Highest ReadIndex round the follower has acknowledged (R7).
    pub(crate) acknowledged_read_round: u64,
    /// Commit index last sent to the follower (it knows at least this much).
    pub(crate) sent_commit: Index,
    pub(crate) inflights: Inflights,
}

impl Progress {
    /// The invariants written at the fields (cheap, on in release).
    pub(crate) fn assert_invariants(&self) {
        assert!(self.next_index > self.match_index, "next {} not above match {}", self.next_index, self.match_index);
        assert!(self.inflights.count() == 0 || self.state == ProgressState::Replicate, "in flight outside Replicate");
        assert!(!self.probe_sent || self.state == ProgressState::Probe, "a probe outstanding outside Probe");
        let snapshot = self.state == ProgressState::Snapshot;
        assert!(snapshot || self.pending_snapshot == 0, "a pending snapshot outside Snapshot");
        assert!(snapshot || !self.snapshot_chunk_in_flight, "a snapshot chunk in flight outside Snapshot");
        assert!(snapshot || self.snapshot_acknowledged_bytes == 0, "snapshot bytes acknowledged outside Snapshot");
        assert!(!snapshot || self.pending_snapshot > 0, "Snapshot without a snapshot to send");
        self.inflights.assert_invariants();
    }

    pub(crate) fn new(next_index: Index, inflight_messages_max: usize, inflight_bytes_max: u64) -> Self {
        assert!(next_index > 0);
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            pending_snapshot: 0,
            snapshot_wait_ticks: 0,
            snapshot_acknowledged_bytes: 0,
            snapshot_chunk_in_flight: false,
            recent_active: true,
            acknowledged_read_round: 0,
            sent_commit: 0,
            inflights: Inflights::new(inflight_messages_max, inflight_bytes_max),
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.state = state;
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.snapshot_wait_ticks = 0;
        self.snapshot_acknowledged_bytes = 0;
        self.snapshot_chunk_in_flight = false;
        self.inflights.reset();
        assert!(!self.is_paused() || state == ProgressState::Snapshot, "a fresh state may send");
    }

    pub(crate) fn become_probe(&mut self) {
        let after_snapshot = self.state == ProgressState::Snapshot;
        let pending_snapshot = self.pending_snapshot;
        self.reset_state(ProgressState::Probe);
        self.next_index =
            if after_snapshot { (self.match_index + 1).max(pending_snapshot + 1) } else { self.match_index + 1 };
        assert!(self.next_index > self.match_index);
    }

    pub(crate) fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_index = self.match_index + 1;
        self.assert_invariants();
    }

    pub(crate) fn become_snapshot(&mut self, snapshot_index: Index) {
        assert!(snapshot_index > 0, "a snapshot covers at least index 1");
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_index;
        self.assert_invariants();
    }

    /// Records an acknowledgement of `index`; false if it tells nothing new.
    pub(crate) fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        assert!(self.next_index > self.match_index);
        updated
    }

    /// Handles a rejection of `rejected` (the prev_log_index sent). `next_probe` is where
    /// the conflict hint says the logs may agree (R3). False if the rejection is stale.
    pub(crate) fn maybe_decrease_to(&mut self, rejected: Index, next_probe: Index) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.match_index {
                return false;
            }
            self.next_index = self.match_index + 1;
            assert!(self.next_index <= rejected, "a rejection moves next back to the match index");
            return true;
        }
        if self.next_index == 0 || self.next_index - 1 != rejected {
            return false;
        }
        if rejected <= self.match_index {
            // The follower no longer holds entries it acknowledged (its data was wiped):
            // replicate to it from scratch. Lowering match never lowers the commit index.
            self.match_index = next_probe.min(rejected.saturating_sub(1));
        }
        self.next_index = rejected.min(next_probe + 1).max(self.match_index + 1);
        self.probe_sent = false;
        assert!(self.next_index > self.match_index);
        true
    }

    /// True if nothing more may be sent now.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_bounds_count_and_bytes() {
        let mut inflights = Inflights::new(2, 100);
        inflights.add(5, 10);
        assert!(!inflights.full());
        inflights.add(9, 10);
        assert!(inflights.full());
        inflights.free_to(5);
        assert!(!inflights.full());
        inflights.add(12, 200);
        assert!(inflights.full(), "bytes bound");
        inflights.free_to(100);
        assert_eq!(inflights.count(), 0);
    }

    #[test]
    fn probe_uses_hint_but_never_below_match() {
        let mut progress = Progress::new(11, 4, 1000);
        progress.match_index = 3;
        assert!(!progress.maybe_decrease_to(5, 1), "stale: we sent prev=10");
        assert!(progress.maybe_decrease_to(10, 1));
        assert_eq!(progress.next_index, 4);
        assert!(progress.maybe_decrease_to(3, 0), "a probe at the match index rejected: data was lost");
        assert_eq!(progress.match_index, 0);
        assert_eq!(progress.next_index, 1);
    }

    #[test]
    fn replicate_rejection_below_match_is_stale() {
        let mut progress = Progress::new(11, 4, 1000);
        progress.maybe_update(10);
        progress.become_replicate();
        assert!(!progress.maybe_decrease_to(9, 0));
        assert!(progress.maybe_decrease_to(12, 0));
        assert_eq!(progress.next_index, 11);
    }
}
