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

/// Field number of `StoreSnapshot.records`.
const SNAPSHOT_RECORDS_FIELD: u32 = 5;

/// Encoded bytes of one `StoreSnapshot.records` field (tag, length, `SnapshotRecord`), as
/// prost writes it: fields at their default value are left out; `kv` is always present.
pub(crate) fn record_field_bytes(revision: &Revision, record: &crate::mvcc::Record) -> u64 {
    use proto::prost::encoding::{encoded_len_varint, key_len};
    let kv_bytes = record.kv.encoded_len();
    let mut record_bytes = key_len(4) + encoded_len_varint(kv_bytes as u64) + kv_bytes;
    if revision.main != 0 {
        record_bytes += key_len(1) + encoded_len_varint(revision.main as u64);
    }
    if revision.sub != 0 {
        record_bytes += key_len(2) + encoded_len_varint(revision.sub as u64);
    }
    if record.tombstone {
        record_bytes += key_len(3) + 1;
    }
    (key_len(SNAPSHOT_RECORDS_FIELD) + encoded_len_varint(record_bytes as u64) + record_bytes) as u64
}

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
        let length_bytes = self.snapshot_length_bytes();
        let mut bytes = Vec::with_capacity(length_bytes as usize);
        self.write_snapshot(&mut bytes).expect("writing to a Vec does not fail");
        assert_eq!(bytes.len() as u64, length_bytes, "snapshot length computed ahead differs");
        bytes
    }

    /// Length of [`Store::snapshot`]'s bytes, computed without serializing the history.
    pub fn snapshot_length_bytes(&self) -> u64 {
        let records_bytes: u64 =
            self.mvcc.records().map(|(revision, record)| record_field_bytes(revision, record)).sum();
        let (head, tail) = (self.snapshot_head(), self.snapshot_tail());
        (head.encoded_len() + tail.encoded_len()) as u64 + records_bytes
    }

    /// Writes [`Store::snapshot`]'s bytes to `out`, one record at a time (no copy of the
    /// whole history in memory). The message is written in field order in three parts
    /// (fields 1–4, the records, the rest), which is exactly prost's encoding of the whole.
    pub fn write_snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        const BUFFER_BYTES: usize = 64 << 10;
        out.write_all(&self.snapshot_head().encode_to_vec())?;
        let mut buffer = Vec::with_capacity(BUFFER_BYTES * 2);
        for (revision, record) in self.mvcc.records() {
            let record = SnapshotRecord {
                main_revision: revision.main,
                sub_revision: revision.sub,
                tombstone: record.tombstone,
                kv: Some(record.kv.clone()),
            };
            proto::prost::encoding::message::encode(SNAPSHOT_RECORDS_FIELD, &record, &mut buffer);
            if buffer.len() >= BUFFER_BYTES {
                out.write_all(&buffer)?;
                buffer.clear();
            }
        }
        out.write_all(&buffer)?;
        out.write_all(&self.snapshot_tail().encode_to_vec())
    }

    /// Fields 1–4 of the snapshot message.
    fn snapshot_head(&self) -> StoreSnapshot {
        StoreSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            applied_index: self.applied_index,
            current_revision: self.current_revision,
            compact_revision: self.compact_revision,
            ..StoreSnapshot::default()
        }
    }

    /// The fields after the records (leases, sessions, members, auth).
    fn snapshot_tail(&self) -> StoreSnapshot {
        let leases = self
            .leases
            .iter()
            .map(|lease| SnapshotLease {
                id: lease.id,
                granted_ttl_seconds: lease.granted_ttl_seconds,
                remaining_ttl_seconds: lease.remaining_ttl_seconds,
            })
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
        StoreSnapshot {
            leases,
            sessions,
            members: self.members.by_id.values().cloned().collect(),
            removed_member_ids: self.members.removed.iter().copied().collect(),
            auth_enabled: self.auth.enabled,
            auth_revision: self.auth.revision,
            auth_users: self.auth.users.values().cloned().collect(),
            auth_roles: self.auth.roles.values().cloned().collect(),
            alarms: self.alarms(),
            ..StoreSnapshot::default()
        }
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
            leases.checkpoint(lease.id, lease.remaining_ttl_seconds);
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
        let alarms = crate::alarm::Alarms::restore(&snapshot.alarms).map_err(RestoreError::Inconsistent)?;
        Ok(Store {
            alarms,
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
        .map(|kv| (kv.key.to_vec(), kv.lease))
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

    fn snapshot_length_bytes(&self) -> u64 {
        Store::snapshot_length_bytes(self)
    }

    fn write_snapshot(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        Store::write_snapshot(self, out)
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.restore_in_place(data).map_err(|error| error.to_string())
    }
}
