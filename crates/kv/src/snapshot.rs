//! Snapshot, restore and hashing of a [`Store`].

use proto::prost::Message;
use proto::raftkvpb::{SnapshotLease, SnapshotRecord, SnapshotSession, StoreSnapshot};

use crate::command::result_from_message;
use crate::lease::Leases;
use crate::members::Members;
use crate::mvcc::{Mvcc, Revision};
use crate::session::{Session, Sessions};
use crate::store::{Config, Store};

/// Version of the snapshot layout written by [`Store::snapshot`].
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// A snapshot that cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The bytes are not a valid `raftkvpb.StoreSnapshot`.
    Malformed(String),
    /// Written by an unknown format version.
    UnsupportedVersion(u32),
    /// Decodes, but breaks an invariant (e.g. records out of order).
    Inconsistent(&'static str),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreError::Malformed(reason) => write!(formatter, "malformed snapshot: {reason}"),
            RestoreError::UnsupportedVersion(version) => {
                write!(formatter, "unsupported snapshot format version {version}")
            }
            RestoreError::Inconsistent(reason) => write!(formatter, "inconsistent snapshot: {reason}"),
        }
    }
}

impl std::error::Error for RestoreError {}

impl Store {
    /// The whole state (history, leases, sessions, revisions, applied index) as
    /// deterministic bytes: equal states give equal bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let records = self
            .mvcc
            .records()
            .map(|(revision, record)| SnapshotRecord {
                main_revision: revision.main,
                sub_revision: revision.sub,
                tombstone: record.tombstone,
                kv: Some(record.kv.clone()),
            })
            .collect();
        let leases = self
            .leases
            .iter()
            .map(|lease| SnapshotLease { id: lease.id, granted_ttl_seconds: lease.granted_ttl_seconds })
            .collect();
        let sessions = self
            .sessions
            .iter()
            .map(|(client_id, session)| SnapshotSession {
                client_id,
                sequence: session.sequence,
                last_used_index: session.last_used_index,
                response: Some(session.response.clone()),
            })
            .collect();
        let snapshot = StoreSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            applied_index: self.applied_index,
            current_revision: self.current_revision,
            compact_revision: self.compact_revision,
            records,
            leases,
            sessions,
            members: self.members.by_id.values().cloned().collect(),
            removed_member_ids: self.members.removed.iter().copied().collect(),
            auth_enabled: self.auth.enabled,
            auth_revision: self.auth.revision,
            auth_users: self.auth.users.values().cloned().collect(),
            auth_roles: self.auth.roles.values().cloned().collect(),
        };
        snapshot.encode_to_vec()
    }

    /// Rebuilds a store from [`Store::snapshot`] bytes, with `config` (which must
    /// match the other replicas').
    pub fn restore(config: Config, bytes: &[u8]) -> Result<Store, RestoreError> {
        let snapshot = StoreSnapshot::decode(bytes).map_err(|error| RestoreError::Malformed(error.to_string()))?;
        if snapshot.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(RestoreError::UnsupportedVersion(snapshot.format_version));
        }
        if snapshot.compact_revision > snapshot.current_revision || snapshot.current_revision < 1 {
            return Err(RestoreError::Inconsistent("revisions out of order"));
        }
        let mut leases = Leases::default();
        for lease in &snapshot.leases {
            if lease.id == 0 || leases.contains(lease.id) {
                return Err(RestoreError::Inconsistent("bad lease id"));
            }
            leases.grant(lease.id, lease.granted_ttl_seconds);
        }
        let mvcc = restore_records(&snapshot, &mut leases)?;
        let mut sessions = Sessions::new(config.maximum_sessions);
        for session in snapshot.sessions {
            let response = session.response.unwrap_or_default();
            if result_from_message(&response).is_none() {
                return Err(RestoreError::Inconsistent("bad recorded response"));
            }
            let restored = Session { sequence: session.sequence, last_used_index: session.last_used_index, response };
            sessions.restore(session.client_id, restored);
        }
        let mut members = Members::default();
        for member in snapshot.members {
            if member.id == 0 || members.by_id.insert(member.id, member).is_some() {
                return Err(RestoreError::Inconsistent("bad member id"));
            }
        }
        members.removed = snapshot.removed_member_ids.into_iter().collect();
        let auth = crate::auth::AuthStore::restore(
            snapshot.auth_enabled,
            snapshot.auth_revision,
            snapshot.auth_users,
            snapshot.auth_roles,
        )
        .map_err(RestoreError::Inconsistent)?;
        Ok(Store {
            auth,
            members,
            config,
            mvcc,
            leases,
            sessions,
            current_revision: snapshot.current_revision,
            compact_revision: snapshot.compact_revision,
            applied_index: snapshot.applied_index,
        })
    }

    /// Replaces this store's state with a snapshot's (keeps this store's config).
    pub fn restore_in_place(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        *self = Store::restore(self.config.clone(), bytes)?;
        Ok(())
    }

    /// A 64-bit FNV-1a hash of the whole state, for comparing replicas at the same
    /// applied index.
    pub fn hash(&self) -> u64 {
        fnv1a_64(&self.snapshot())
    }

    /// A 32-bit hash of the key-value history up to `revision` (0 = current), in
    /// the spirit of etcd's `HashKV`: returns (hash, compact revision, hashed revision).
    pub fn hash_kv(&self, revision: i64) -> (u32, i64, i64) {
        let until = if revision <= 0 { self.current_revision } else { revision.min(self.current_revision) };
        let mut hash = FNV_OFFSET_BASIS_32;
        for (stored, record) in self.mvcc.records() {
            if stored.main > until {
                break;
            }
            for part in [
                &stored.main.to_be_bytes()[..],
                &stored.sub.to_be_bytes()[..],
                &record.kv.key,
                &record.kv.value,
                &[u8::from(record.tombstone)][..],
            ] {
                hash = fnv1a_32_extend(hash, part);
            }
        }
        (hash, self.compact_revision, until)
    }
}

fn restore_records(snapshot: &StoreSnapshot, leases: &mut Leases) -> Result<Mvcc, RestoreError> {
    let mut mvcc = Mvcc::default();
    let mut previous: Option<Revision> = None;
    for record in &snapshot.records {
        let revision = Revision { main: record.main_revision, sub: record.sub_revision };
        let kv = record.kv.clone().unwrap_or_default();
        let ordered = previous.is_none_or(|last| last < revision);
        if !ordered || kv.key.is_empty() || revision.main > snapshot.current_revision {
            return Err(RestoreError::Inconsistent("records out of order or empty key"));
        }
        let newer_exists = mvcc.get_at(&kv.key, i64::MAX).is_some_and(|old| old.mod_revision > revision.main);
        if newer_exists {
            return Err(RestoreError::Inconsistent("key history out of order"));
        }
        previous = Some(revision);
        mvcc.insert(revision, kv, record.tombstone);
    }
    // Lease attachments follow from the newest version of each key.
    let keys: Vec<(Vec<u8>, i64)> = mvcc
        .records()
        .filter_map(|(_, record)| mvcc.get_at(&record.kv.key, i64::MAX))
        .filter(|kv| kv.lease != 0)
        .map(|kv| (kv.key.clone(), kv.lease))
        .collect();
    for (key, lease) in keys {
        if !leases.contains(lease) {
            return Err(RestoreError::Inconsistent("key attached to a missing lease"));
        }
        leases.reattach(&key, 0, lease);
    }
    Ok(mvcc)
}

const FNV_OFFSET_BASIS_64: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME_64: u64 = 0x0000_0100_0000_01b3;
const FNV_OFFSET_BASIS_32: u32 = 0x811c_9dc5;
const FNV_PRIME_32: u32 = 0x0100_0193;

fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS_64, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME_64))
}

fn fnv1a_32_extend(hash: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(hash, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(FNV_PRIME_32))
}

/// The store is the server's replicated state machine: it gives and takes snapshots
/// through the core's trait (R9).
impl raft::Snapshottable for Store {
    fn applied_index(&self) -> u64 {
        Store::applied_index(self)
    }

    fn snapshot(&self) -> bytes::Bytes {
        bytes::Bytes::from(Store::snapshot(self))
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.restore_in_place(data).map_err(|error| error.to_string())
    }
}
