//! Lease expiry, decided by the leader's clock (leases themselves are replicated data in
//! `kv::Store`).
//!
//! Only the leader keeps deadlines. Each tick the Raft loop calls [`Lessor::refresh`]:
//! leases the leader has no deadline for yet (just granted, or every lease right after
//! it became leader) get `now +` the lease's starting TTL, so a leader change never
//! expires a live lease early; leases past their deadline are returned so the loop
//! proposes a `LeaseRevoke` through the log, and every node deletes the same keys at the
//! same revision. Keep-alives refresh a deadline on the leader.
//!
//! The starting TTL is the granted TTL (a leader change extends remaining TTLs, etcd's
//! behaviour by default) unless a checkpoint recorded a remaining TTL. As etcd's
//! `Promote(extend)` does, a lessor built [`Lessor::with_leader_extension`] adds the
//! extension to the starting TTL of every lease it takes over when it starts leading (the
//! server does not enable it yet: leadership is noticed at the first refresh, not at the
//! role change, so a lease granted in the new leader's first turn would be extended too). With
//! `--experimental-enable-lease-checkpoint` ([`Lessor::with_checkpoints`]) the leader
//! does what etcd 3.4's lessor does: every lease whose remaining TTL is longer than the
//! checkpoint interval (etcd: 5 minutes) is scheduled for a checkpoint one interval
//! later; when it is due and the lease has less than its granted TTL left, `refresh`
//! returns `(id, remaining seconds)` for the loop to propose as a replicated
//! `LeaseCheckpoint` (at most [`CHECKPOINT_BATCH_MAX`] per proposal, etcd's
//! `maxLeaseCheckpointBatchSize`). A new leader then starts the lease from the
//! checkpointed remaining TTL. A keep-alive of a lease with a checkpoint clears it
//! (checkpoint 0) through the log first, so a renewed lease is not cut short later.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wait before proposing the revoke of an expired lease again (if the first proposal was lost).
pub const REVOKE_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// etcd's default lease checkpoint interval (`--experimental-enable-lease-checkpoint`).
pub const CHECKPOINT_INTERVAL_DEFAULT: Duration = Duration::from_secs(5 * 60);

/// Most leases checkpointed in one proposal (etcd's `maxLeaseCheckpointBatchSize`).
pub const CHECKPOINT_BATCH_MAX: usize = 1000;

/// TEST ONLY: overrides [`CHECKPOINT_INTERVAL_DEFAULT`] (milliseconds), so a process test
/// need not wait 5 minutes for a checkpoint. Not an etcd setting.
pub const CHECKPOINT_INTERVAL_ENV: &str = "RAFTKV_UNSAFE_LEASE_CHECKPOINT_INTERVAL_MS";

/// One lease as the store has it, for [`Lessor::refresh`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimes {
    /// The lease id.
    pub id: i64,
    /// TTL granted, in seconds.
    pub granted_ttl_seconds: i64,
    /// TTL a new leader gives it: the checkpointed remaining TTL, else the granted TTL.
    pub starting_ttl_seconds: i64,
}

impl LeaseTimes {
    /// The times of a store's lease.
    pub fn of(lease: &kv::Lease) -> LeaseTimes {
        LeaseTimes {
            id: lease.id,
            granted_ttl_seconds: lease.granted_ttl_seconds,
            starting_ttl_seconds: lease.starting_ttl_seconds(),
        }
    }
}

/// What the leader's loop proposes after a [`Lessor::refresh`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Leases past their deadline: revoke them.
    pub expired: Vec<i64>,
    /// `(id, remaining TTL in seconds)` due for a checkpoint (at most [`CHECKPOINT_BATCH_MAX`]).
    pub checkpoints: Vec<(i64, i64)>,
}

/// Lease deadlines on the leader; empty elsewhere. Shared between the Raft loop and services.
#[derive(Debug, Default)]
pub struct Lessor {
    state: Mutex<LessorState>,
    /// `Some` with `--experimental-enable-lease-checkpoint`.
    checkpoint_interval: Option<Duration>,
    /// Added to the starting TTL of the leases a new leader takes over (etcd: the election
    /// timeout); zero by default.
    leader_extension: Duration,
}

#[derive(Debug, Default)]
struct LessorState {
    leading: bool,
    deadlines: HashMap<i64, Instant>,
    /// Leases past their deadline whose revoke was proposed: keep-alives no longer save them.
    expired: HashSet<i64>,
    /// When each lease is next due for a checkpoint (checkpointing leaders only).
    checkpoint_due: HashMap<i64, Instant>,
}

impl Lessor {
    /// A lessor that is not leading and never checkpoints.
    pub fn new() -> Lessor {
        Lessor::default()
    }

    /// A lessor that checkpoints remaining TTLs every `interval` while leading.
    pub fn with_checkpoints(interval: Duration) -> Lessor {
        assert!(interval > Duration::ZERO, "a checkpoint interval takes time");
        Lessor { checkpoint_interval: Some(interval), ..Lessor::default() }
    }

    /// The same lessor, extending the leases it takes over as a new leader by `extension`
    /// (etcd passes the election timeout).
    pub fn with_leader_extension(self, extension: Duration) -> Lessor {
        assert!(extension <= Duration::from_secs(3600), "an election timeout, not a lease TTL");
        Lessor { leader_extension: extension, ..self }
    }

    /// True if remaining TTLs are checkpointed (`--experimental-enable-lease-checkpoint`).
    pub fn checkpoints_enabled(&self) -> bool {
        self.checkpoint_interval.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LessorState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings the deadlines in line with the store's `leases` and the node's role; returns
    /// the leases that expired and the checkpoints due (leader only).
    pub fn refresh(&self, leading: bool, leases: &[LeaseTimes], now: Instant) -> Refreshed {
        let mut state = self.lock();
        if !leading {
            *state = LessorState::default();
            return Refreshed::default();
        }
        let extension = if state.leading { Duration::ZERO } else { self.leader_extension };
        state.leading = true;
        let mut current: HashMap<i64, Instant> = HashMap::with_capacity(leases.len());
        let mut refreshed = Refreshed::default();
        for lease in leases {
            let deadline = match state.deadlines.get(&lease.id) {
                Some(deadline) => *deadline,
                None => {
                    let deadline = now + ttl_duration(lease.starting_ttl_seconds) + extension;
                    self.schedule_checkpoint(&mut state, lease.id, deadline, now);
                    deadline
                }
            };
            if deadline <= now {
                refreshed.expired.push(lease.id);
                state.expired.insert(lease.id);
                current.insert(lease.id, now + REVOKE_RETRY_INTERVAL);
            } else {
                current.insert(lease.id, deadline);
            }
        }
        state.expired.retain(|id| current.contains_key(id));
        state.checkpoint_due.retain(|id, _| current.contains_key(id));
        state.deadlines = current;
        refreshed.checkpoints = self.due_checkpoints(&mut state, leases, now);
        refreshed
    }

    /// etcd's `scheduleCheckpointIfNeeded`: a lease with more than one interval left is
    /// checkpointed one interval from now.
    fn schedule_checkpoint(&self, state: &mut LessorState, id: i64, deadline: Instant, now: Instant) {
        let Some(interval) = self.checkpoint_interval else { return };
        if deadline.saturating_duration_since(now) > interval {
            state.checkpoint_due.insert(id, now + interval);
        } else {
            state.checkpoint_due.remove(&id);
        }
    }

    /// The checkpoints due at `now` (leases with less than their granted TTL left), each
    /// rescheduled; at most [`CHECKPOINT_BATCH_MAX`], the rest wait for the next refresh.
    fn due_checkpoints(&self, state: &mut LessorState, leases: &[LeaseTimes], now: Instant) -> Vec<(i64, i64)> {
        if self.checkpoint_interval.is_none() || state.checkpoint_due.is_empty() {
            return Vec::new();
        }
        let mut checkpoints = Vec::new();
        for lease in leases {
            if checkpoints.len() >= CHECKPOINT_BATCH_MAX {
                break;
            }
            let due = state.checkpoint_due.get(&lease.id).is_some_and(|due| *due <= now);
            if !due || state.expired.contains(&lease.id) {
                continue;
            }
            let deadline = state.deadlines[&lease.id];
            let remaining_seconds = ceil_seconds(deadline.saturating_duration_since(now));
            if remaining_seconds < lease.granted_ttl_seconds {
                checkpoints.push((lease.id, remaining_seconds));
            }
            self.schedule_checkpoint(state, lease.id, deadline, now);
        }
        assert!(checkpoints.len() <= CHECKPOINT_BATCH_MAX, "one proposal holds a bounded batch");
        checkpoints
    }

    /// Refreshes lease `id` to `now + granted TTL` on the leader and returns the TTL (0
    /// if it already expired and is being revoked); `None` if this node is not leading.
    pub fn keep_alive(&self, id: i64, granted_ttl_seconds: i64) -> Option<i64> {
        let mut state = self.lock();
        if !state.leading {
            return None;
        }
        if state.expired.contains(&id) {
            return Some(0);
        }
        let now = Instant::now();
        let deadline = now + ttl_duration(granted_ttl_seconds);
        state.deadlines.insert(id, deadline);
        if !state.checkpoint_due.contains_key(&id) {
            self.schedule_checkpoint(&mut state, id, deadline, now);
        }
        Some(granted_ttl_seconds)
    }

    /// Seconds lease `id` has left (rounded up), if this node is leading and tracks it.
    pub fn remaining_seconds(&self, id: i64) -> Option<i64> {
        let state = self.lock();
        if !state.leading {
            return None;
        }
        if state.expired.contains(&id) {
            return Some(0);
        }
        let left = state.deadlines.get(&id)?.saturating_duration_since(Instant::now());
        Some(ceil_seconds(left))
    }

    /// True if this node is the leader (as of the last refresh).
    pub fn is_leading(&self) -> bool {
        self.lock().leading
    }
}

/// The lease checkpoint interval for `--experimental-enable-lease-checkpoint`: etcd's 5
/// minutes unless a test shortened it with [`CHECKPOINT_INTERVAL_ENV`].
pub fn checkpoint_interval() -> Duration {
    std::env::var(CHECKPOINT_INTERVAL_ENV)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|milliseconds| *milliseconds > 0)
        .map_or(CHECKPOINT_INTERVAL_DEFAULT, Duration::from_millis)
}

fn ttl_duration(ttl_seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(0))
}

fn ceil_seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis().div_ceil(1000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(id: i64, granted_ttl_seconds: i64, starting_ttl_seconds: i64) -> LeaseTimes {
        LeaseTimes { id, granted_ttl_seconds, starting_ttl_seconds }
    }

    #[test]
    fn leader_expires_and_followers_never_do() {
        let lessor = Lessor::new();
        let start = Instant::now();
        let leases = [times(1, 5, 5), times(2, 10, 10)];
        assert_eq!(lessor.refresh(false, &leases[..1], start), Refreshed::default());
        assert_eq!(lessor.keep_alive(1, 5), None);
        assert_eq!(lessor.refresh(true, &leases, start), Refreshed::default());
        assert_eq!(lessor.refresh(true, &leases, start + Duration::from_secs(6)).expired, vec![1]);
        // Proposed once, then retried only after the retry interval; keep-alives come too late.
        assert!(lessor.refresh(true, &leases, start + Duration::from_millis(6500)).expired.is_empty());
        assert_eq!(lessor.keep_alive(1, 5), Some(0));
        assert_eq!(lessor.keep_alive(2, 10), Some(10));
        // A new leader starts every lease over.
        lessor.refresh(false, &leases[1..], start);
        let later = start + Duration::from_secs(9);
        assert!(lessor.refresh(true, &leases[1..], later).expired.is_empty());
        assert!(lessor.refresh(true, &leases[1..], later + Duration::from_secs(9)).expired.is_empty());
        assert!(lessor.refresh(true, &leases[1..], later + Duration::from_secs(20)).checkpoints.is_empty(), "off");
    }

    #[test]
    fn a_new_leader_extends_the_leases_it_takes_over_by_the_election_timeout() {
        let lessor = Lessor::new().with_leader_extension(Duration::from_secs(2));
        let start = Instant::now();
        let taken_over = [times(1, 5, 5)];
        assert!(lessor.refresh(true, &taken_over, start).expired.is_empty());
        assert_eq!(lessor.remaining_seconds(1), Some(7), "TTL plus the election timeout");
        assert!(lessor.refresh(true, &taken_over, start + Duration::from_millis(6500)).expired.is_empty());
        assert_eq!(lessor.refresh(true, &taken_over, start + Duration::from_secs(7)).expired, vec![1]);
        // A lease granted while leading (lease 1 is revoked meanwhile) starts from its TTL alone.
        let with_new = [times(2, 5, 5)];
        let granted_at = start + Duration::from_secs(7);
        lessor.refresh(true, &with_new, granted_at);
        assert_eq!(lessor.refresh(true, &with_new, granted_at + Duration::from_secs(5)).expired, vec![2]);
    }

    #[test]
    fn checkpoints_come_each_interval_and_a_new_leader_starts_from_them() {
        let lessor = Lessor::with_checkpoints(Duration::from_secs(10));
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        // Lease 2's TTL is not longer than the interval: never checkpointed (as etcd).
        let leases = [times(1, 60, 60), times(2, 10, 10)];
        assert_eq!(lessor.refresh(true, &leases, start), Refreshed::default());
        assert!(lessor.refresh(true, &leases, at(9)).checkpoints.is_empty(), "not due yet");
        assert_eq!(lessor.refresh(true, &leases, at(10)).checkpoints, vec![(1, 50)]);
        assert!(lessor.refresh(true, &leases, at(15)).checkpoints.is_empty(), "rescheduled");
        assert_eq!(lessor.refresh(true, &leases, at(20)).checkpoints, vec![(1, 40)]);
        // Kept alive: the next checkpoint reports the time left since the keep-alive.
        assert_eq!(lessor.keep_alive(1, 60), Some(60));
        let refreshed = lessor.refresh(true, &leases[..1], at(30));
        assert!(matches!(refreshed.checkpoints[..], [(1, 30..=31)]), "{refreshed:?}");
        // A new leader with a checkpoint of 40 s starts the lease from 40 s, not 60.
        lessor.refresh(false, &[], start);
        assert!(lessor.refresh(true, &[times(1, 60, 40)], at(100)).expired.is_empty());
        assert_eq!(lessor.refresh(true, &[times(1, 60, 40)], at(140)).expired, vec![1]);
    }

    #[test]
    fn one_proposal_checkpoints_a_bounded_batch() {
        let lessor = Lessor::with_checkpoints(Duration::from_secs(1));
        let start = Instant::now();
        let count = i64::try_from(CHECKPOINT_BATCH_MAX).expect("small") + 5;
        let leases: Vec<LeaseTimes> = (1..=count).map(|id| times(id, 30, 30)).collect();
        lessor.refresh(true, &leases, start);
        let first = lessor.refresh(true, &leases, start + Duration::from_secs(2)).checkpoints;
        assert_eq!(first.len(), CHECKPOINT_BATCH_MAX);
        let rest = lessor.refresh(true, &leases, start + Duration::from_secs(2)).checkpoints;
        assert_eq!(rest.len(), 5, "the others come with the next refresh");
    }
}
