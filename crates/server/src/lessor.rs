//! Lease expiry, decided by the leader's clock (leases themselves are replicated data in
//! `kv::Store`).
//!
//! Only the leader keeps deadlines. Each tick the Raft loop calls [`Lessor::refresh`]:
//! leases the leader has no deadline for yet (just granted, or every lease right after
//! it became leader) get `now + granted TTL`, so a leader change extends remaining TTLs
//! as etcd does and never expires a live lease early; leases past their deadline are
//! returned so the loop proposes a `LeaseRevoke` through the log, and every node deletes
//! the same keys at the same revision. Keep-alives refresh a deadline on the leader.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wait before proposing the revoke of an expired lease again (if the first proposal was lost).
pub const REVOKE_RETRY_INTERVAL: Duration = Duration::from_secs(1);

/// Lease deadlines on the leader; empty elsewhere. Shared between the Raft loop and services.
#[derive(Debug, Default)]
pub struct Lessor {
    state: Mutex<LessorState>,
}

#[derive(Debug, Default)]
struct LessorState {
    leading: bool,
    deadlines: HashMap<i64, Instant>,
    /// Leases past their deadline whose revoke was proposed: keep-alives no longer save them.
    expired: HashSet<i64>,
}

impl Lessor {
    /// A lessor that is not leading.
    pub fn new() -> Lessor {
        Lessor::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LessorState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Brings the deadlines in line with the store's `leases` (id, granted TTL in
    /// seconds) and the node's role; returns the ids of leases that expired (leader only).
    pub fn refresh(&self, leading: bool, leases: &[(i64, i64)], now: Instant) -> Vec<i64> {
        let mut state = self.lock();
        if !leading {
            state.leading = false;
            state.deadlines.clear();
            state.expired.clear();
            return Vec::new();
        }
        state.leading = true;
        let mut current: HashMap<i64, Instant> = HashMap::with_capacity(leases.len());
        let mut expired = Vec::new();
        for &(id, granted_ttl_seconds) in leases {
            let deadline = state.deadlines.get(&id).copied().unwrap_or_else(|| now + ttl_duration(granted_ttl_seconds));
            if deadline <= now {
                expired.push(id);
                state.expired.insert(id);
                current.insert(id, now + REVOKE_RETRY_INTERVAL);
            } else {
                current.insert(id, deadline);
            }
        }
        state.expired.retain(|id| current.contains_key(id));
        state.deadlines = current;
        expired
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
        state.deadlines.insert(id, Instant::now() + ttl_duration(granted_ttl_seconds));
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
        Some(i64::try_from(left.as_millis().div_ceil(1000)).unwrap_or(i64::MAX))
    }

    /// True if this node is the leader (as of the last refresh).
    pub fn is_leading(&self) -> bool {
        self.lock().leading
    }
}

fn ttl_duration(ttl_seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl_seconds).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_expires_and_followers_never_do() {
        let lessor = Lessor::new();
        let start = Instant::now();
        assert!(lessor.refresh(false, &[(1, 5)], start).is_empty());
        assert_eq!(lessor.keep_alive(1, 5), None);
        assert!(lessor.refresh(true, &[(1, 5), (2, 10)], start).is_empty());
        assert_eq!(lessor.refresh(true, &[(1, 5), (2, 10)], start + Duration::from_secs(6)), vec![1]);
        // Proposed once, then retried only after the retry interval; keep-alives come too late.
        assert!(lessor.refresh(true, &[(1, 5), (2, 10)], start + Duration::from_millis(6500)).is_empty());
        assert_eq!(lessor.keep_alive(1, 5), Some(0));
        assert_eq!(lessor.keep_alive(2, 10), Some(10));
        // A new leader starts every lease over.
        lessor.refresh(false, &[(2, 10)], start);
        let later = start + Duration::from_secs(9);
        assert!(lessor.refresh(true, &[(2, 10)], later).is_empty());
        assert!(lessor.refresh(true, &[(2, 10)], later + Duration::from_secs(9)).is_empty());
    }
}
