//! Lease records: id, granted TTL, checkpointed remaining TTL and attached keys. Expiry
//! is decided outside the state machine (a clock-driven leader proposes a revoke), so no
//! clock is kept here; with etcd's `--experimental-enable-lease-checkpoint` the leader
//! replicates each lease's remaining TTL now and then (a `LeaseCheckpoint` command), and a
//! new leader starts the lease from that instead of the full granted TTL.

use imbl::{OrdMap, OrdSet};

/// Largest TTL etcd accepts, in seconds.
pub const MAXIMUM_LEASE_TTL_SECONDS: i64 = 9_000_000_000;

/// One lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// The lease id (never 0).
    pub id: i64,
    /// TTL granted, in seconds.
    pub granted_ttl_seconds: i64,
    /// The remaining TTL of the last checkpoint, in seconds; 0 when none is set (never
    /// checkpointed, or cleared by a keep-alive), as etcd's `remainingTTL`.
    pub remaining_ttl_seconds: i64,
    /// Keys currently attached, in key order.
    pub keys: OrdSet<Vec<u8>>,
}

impl Lease {
    /// The TTL a new leader gives the lease, in seconds: the checkpointed remaining TTL
    /// when one is set, else the granted TTL (etcd's `getRemainingTTL`).
    pub fn starting_ttl_seconds(&self) -> i64 {
        if self.remaining_ttl_seconds > 0 {
            self.remaining_ttl_seconds
        } else {
            self.granted_ttl_seconds
        }
    }
}

/// All leases, by id.
#[derive(Clone, Debug, Default)]
pub(crate) struct Leases {
    by_id: OrdMap<i64, Lease>,
}

impl Leases {
    /// The lease with this id.
    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.by_id.get(&id)
    }

    /// True if the lease exists.
    pub fn contains(&self, id: i64) -> bool {
        self.by_id.contains_key(&id)
    }

    /// Adds a lease with no keys.
    pub fn grant(&mut self, id: i64, granted_ttl_seconds: i64) {
        assert!(id != 0, "lease id 0 means no lease");
        let lease = Lease { id, granted_ttl_seconds, remaining_ttl_seconds: 0, keys: OrdSet::new() };
        let previous = self.by_id.insert(id, lease);
        assert!(previous.is_none(), "lease ids are unique");
    }

    /// Records a checkpoint of lease `id`: `remaining_ttl_seconds` left (0 or less clears
    /// it, as a keep-alive's checkpoint does). False if there is no such lease (etcd ignores
    /// checkpoints of leases revoked meanwhile).
    pub fn checkpoint(&mut self, id: i64, remaining_ttl_seconds: i64) -> bool {
        let Some(lease) = self.by_id.get_mut(&id) else { return false };
        lease.remaining_ttl_seconds = remaining_ttl_seconds.clamp(0, MAXIMUM_LEASE_TTL_SECONDS);
        assert!(lease.remaining_ttl_seconds >= 0, "a remaining TTL is never negative");
        true
    }

    /// Removes the lease and returns it (with its keys).
    pub fn remove(&mut self, id: i64) -> Option<Lease> {
        self.by_id.remove(&id)
    }

    /// Moves `key` from lease `old` to lease `new` (0 = none); missing leases are ignored.
    pub fn reattach(&mut self, key: &[u8], old: i64, new: i64) {
        if old == new {
            return;
        }
        if let Some(lease) = self.by_id.get_mut(&old) {
            lease.keys.remove(key);
        }
        if let Some(lease) = self.by_id.get_mut(&new) {
            lease.keys.insert(key.to_vec());
        }
    }

    /// A free id chosen deterministically from `seed` (used when a grant asks for id 0).
    pub fn free_id(&self, seed: u64) -> i64 {
        let mut candidate = i64::try_from(seed & (i64::MAX as u64)).expect("masked to 63 bits");
        while candidate == 0 || self.by_id.contains_key(&candidate) {
            candidate = candidate.wrapping_add(1) & i64::MAX;
        }
        assert!(candidate > 0, "lease ids are positive");
        candidate
    }

    /// Number of leases.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// All leases in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_id.values()
    }
}
