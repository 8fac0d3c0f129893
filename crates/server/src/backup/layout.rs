//! etcd's backend layout in a bbolt file, to and from a [`StoreSnapshot`].
//!
//! Buckets (as etcd 3.4 writes them):
//!
//! | bucket | key | value |
//! |---|---|---|
//! | `key` | revision: main u64 BE, `_`, sub u64 BE (+ `t` for a deletion) | `mvccpb.KeyValue` (a deletion: only `key`) |
//! | `meta` | `consistent_index`, `finishedCompactRev`, `scheduledCompactRev` | u64 BE; revision bytes (17) |
//! | `lease` | lease id i64 BE | `leasepb.Lease` {ID, TTL, RemainingTTL} |
//! | `auth` | `authEnabled`, `authRevision` | one byte (1 = on); u64 BE |
//! | `authUsers` / `authRoles` | name | `authpb.User` / `authpb.Role` |
//! | `members` / `members_removed` | member id in lower-case hex | member JSON / `removed` |
//! | `cluster` | `clusterVersion` | `3.4.0` |
//! | `alarm` | (none raised) | |

use bbolt::{Bucket, Entry};
use proto::authpb::{Role, User};
use proto::etcdserverpb::Member;
use proto::mvccpb::KeyValue;
use proto::prost::Message;
use proto::raftkvpb::{SnapshotLease, SnapshotRecord, StoreSnapshot};

/// Bytes of a revision key (`main`, `_`, `sub`).
const REVISION_BYTES: usize = 17;
/// Marks a deletion after the revision bytes.
const TOMBSTONE_MARK: u8 = b't';
/// The cluster version written to the `cluster` bucket (the API raftkv implements).
const CLUSTER_VERSION: &str = "3.4.0";

/// etcd's `leasepb.Lease`, as stored in the `lease` bucket.
#[derive(Clone, PartialEq, Message)]
pub struct LeaseRecord {
    /// Lease id.
    #[prost(int64, tag = "1")]
    pub id: i64,
    /// Granted TTL in seconds.
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    /// TTL left at the last checkpoint (0: none taken).
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// What an etcd backend file holds besides the store state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendExtras {
    /// `meta/consistent_index`: the last Raft index applied to the file.
    pub consistent_index: u64,
    /// Members of the cluster the file was saved from.
    pub members: Vec<Member>,
    /// `cluster/clusterVersion`.
    pub cluster_version: String,
}

fn revision_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut key = Vec::with_capacity(REVISION_BYTES + 1);
    key.extend_from_slice(&main.to_be_bytes());
    key.push(b'_');
    key.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        key.push(TOMBSTONE_MARK);
    }
    key
}

fn bucket_of(mut pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Entry {
    pairs.sort_by(|left, right| left.0.cmp(&right.0));
    Entry::Bucket(Bucket { entries: pairs.into_iter().map(|(key, value)| (key, Entry::Value(value))).collect() })
}

/// The etcd backend (bbolt buckets) holding `snapshot`'s state: `meta/consistent_index`
/// is its applied index, `members` its member table (without client URLs).
pub fn database_from_snapshot(snapshot: &StoreSnapshot) -> Bucket {
    let keys = snapshot
        .records
        .iter()
        .map(|record| {
            let kv = record.kv.clone().unwrap_or_default();
            let value = if record.tombstone { KeyValue { key: kv.key, ..KeyValue::default() } } else { kv };
            (revision_key(record.main_revision, record.sub_revision, record.tombstone), value.encode_to_vec())
        })
        .collect();
    let mut meta = vec![(b"consistent_index".to_vec(), snapshot.applied_index.to_be_bytes().to_vec())];
    if snapshot.compact_revision > 0 {
        let compacted = revision_key(snapshot.compact_revision, 0, false);
        meta.push((b"finishedCompactRev".to_vec(), compacted.clone()));
        meta.push((b"scheduledCompactRev".to_vec(), compacted));
    }
    let leases = snapshot
        .leases
        .iter()
        .map(|lease| {
            let record = LeaseRecord { id: lease.id, ttl: lease.granted_ttl_seconds, remaining_ttl: 0 };
            (lease.id.to_be_bytes().to_vec(), record.encode_to_vec())
        })
        .collect();
    let auth = vec![
        (b"authEnabled".to_vec(), vec![u8::from(snapshot.auth_enabled)]),
        (b"authRevision".to_vec(), snapshot.auth_revision.to_be_bytes().to_vec()),
    ];
    let users = snapshot.auth_users.iter().map(|user| (user.name.clone(), user.encode_to_vec())).collect();
    let roles = snapshot.auth_roles.iter().map(|role| (role.name.clone(), role.encode_to_vec())).collect();
    let members = snapshot.members.iter().map(|member| (format!("{:x}", member.id).into_bytes(), member_json(member)));
    let removed =
        snapshot.removed_member_ids.iter().map(|id| (format!("{id:x}").into_bytes(), b"removed".to_vec())).collect();
    let mut buckets = vec![
        (b"alarm".to_vec(), bucket_of(Vec::new())),
        (b"auth".to_vec(), bucket_of(auth)),
        (b"authRoles".to_vec(), bucket_of(roles)),
        (b"authUsers".to_vec(), bucket_of(users)),
        (b"cluster".to_vec(), bucket_of(vec![(b"clusterVersion".to_vec(), CLUSTER_VERSION.as_bytes().to_vec())])),
        (b"key".to_vec(), bucket_of(keys)),
        (b"lease".to_vec(), bucket_of(leases)),
        (b"members".to_vec(), bucket_of(members.collect())),
        (b"members_removed".to_vec(), bucket_of(removed)),
        (b"meta".to_vec(), bucket_of(meta)),
    ];
    buckets.sort_by(|left, right| left.0.cmp(&right.0));
    Bucket { entries: buckets }
}

/// A member as etcd 3.4 stores it: `{"id", "peerURLs", "isLearner" (if set), "name" (if
/// set), "clientURLs" (if any)}`.
fn member_json(member: &Member) -> Vec<u8> {
    let mut json = serde_json::json!({ "id": member.id, "peerURLs": member.peer_ur_ls });
    if member.is_learner {
        json["isLearner"] = true.into();
    }
    if !member.name.is_empty() {
        json["name"] = member.name.clone().into();
    }
    if !member.client_ur_ls.is_empty() {
        json["clientURLs"] = member.client_ur_ls.clone().into();
    }
    serde_json::to_vec(&json).expect("a member serializes")
}

/// Why a bbolt file is not an etcd backend etcd could have written.
fn invalid(bucket: &str, reason: impl std::fmt::Display) -> String {
    format!("not an etcd snapshot: bucket {bucket:?}: {reason}")
}

fn u64_value(bucket: &str, key: &str, value: &[u8]) -> Result<u64, String> {
    let bytes: [u8; 8] =
        value.try_into().map_err(|_| invalid(bucket, format!("{key} is {} bytes, not 8", value.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Main revision of a revision key (`finishedCompactRev` and the `key` bucket's keys).
fn parse_revision(bucket: &str, key: &[u8]) -> Result<(i64, i64, bool), String> {
    let tombstone = match key.len() {
        REVISION_BYTES => false,
        length if length == REVISION_BYTES + 1 && key[REVISION_BYTES] == TOMBSTONE_MARK => true,
        length => return Err(invalid(bucket, format!("a key of {length} bytes is not a revision"))),
    };
    if key[8] != b'_' {
        return Err(invalid(bucket, "a revision key lacks its '_' separator"));
    }
    let main = i64::from_be_bytes(key[0..8].try_into().expect("eight bytes"));
    let sub = i64::from_be_bytes(key[9..17].try_into().expect("eight bytes"));
    if main < 1 || sub < 0 {
        return Err(invalid(bucket, format!("revision {main}.{sub} out of range")));
    }
    Ok((main, sub, tombstone))
}

/// The store state held by an etcd backend file (no sessions; members in the extras),
/// with `applied_index` 0.
pub fn snapshot_from_database(root: &Bucket) -> Result<(StoreSnapshot, BackendExtras), String> {
    let Some(keys) = root.bucket(b"key") else {
        return Err("not an etcd snapshot: the bbolt database has no \"key\" bucket".into());
    };
    let meta = root.bucket(b"meta").ok_or("not an etcd snapshot: the bbolt database has no \"meta\" bucket")?;
    let mut snapshot = StoreSnapshot { format_version: kv::SNAPSHOT_FORMAT_VERSION, ..StoreSnapshot::default() };
    for (key, value) in keys.values() {
        let (main, sub, tombstone) = parse_revision("key", key)?;
        let mut kv = KeyValue::decode(value).map_err(|error| invalid("key", format!("revision {main}: {error}")))?;
        if tombstone {
            kv = KeyValue { key: kv.key, mod_revision: main, ..KeyValue::default() };
        } else if kv.mod_revision != main {
            return Err(invalid("key", format!("revision {main} holds a value of mod_revision {}", kv.mod_revision)));
        }
        snapshot.records.push(SnapshotRecord { main_revision: main, sub_revision: sub, tombstone, kv: Some(kv) });
    }
    let mut extras = BackendExtras::default();
    if let Some(value) = meta.value(b"consistent_index") {
        extras.consistent_index = u64_value("meta", "consistent_index", value)?;
    }
    if let Some(value) = meta.value(b"finishedCompactRev") {
        snapshot.compact_revision = parse_revision("meta", value)?.0;
    }
    let last = snapshot.records.last().map_or(1, |record| record.main_revision);
    snapshot.current_revision = last.max(snapshot.compact_revision).max(1);
    read_leases(root, &mut snapshot)?;
    read_auth(root, &mut snapshot)?;
    extras.members = read_members(root)?;
    if let Some(version) = root.bucket(b"cluster").and_then(|cluster| cluster.value(b"clusterVersion")) {
        extras.cluster_version = String::from_utf8_lossy(version).into_owned();
    }
    Ok((snapshot, extras))
}

fn read_leases(root: &Bucket, snapshot: &mut StoreSnapshot) -> Result<(), String> {
    for (key, value) in root.bucket(b"lease").map(Bucket::values).into_iter().flatten() {
        let lease = LeaseRecord::decode(value).map_err(|error| invalid("lease", error))?;
        if key != lease.id.to_be_bytes() || lease.id == 0 {
            return Err(invalid("lease", format!("lease {:x} stored under another id", lease.id)));
        }
        // etcd 3.4's backend keeps no checkpointed remaining TTL: the lease starts over.
        snapshot.leases.push(SnapshotLease { id: lease.id, granted_ttl_seconds: lease.ttl, remaining_ttl_seconds: 0 });
    }
    Ok(())
}

fn read_auth(root: &Bucket, snapshot: &mut StoreSnapshot) -> Result<(), String> {
    if let Some(auth) = root.bucket(b"auth") {
        snapshot.auth_enabled = auth.value(b"authEnabled").is_some_and(|value| value == [1]);
        if let Some(value) = auth.value(b"authRevision") {
            snapshot.auth_revision = u64_value("auth", "authRevision", value)?;
        }
    }
    for (_, value) in root.bucket(b"authUsers").map(Bucket::values).into_iter().flatten() {
        snapshot.auth_users.push(User::decode(value).map_err(|error| invalid("authUsers", error))?);
    }
    for (_, value) in root.bucket(b"authRoles").map(Bucket::values).into_iter().flatten() {
        snapshot.auth_roles.push(Role::decode(value).map_err(|error| invalid("authRoles", error))?);
    }
    Ok(())
}

fn read_members(root: &Bucket) -> Result<Vec<Member>, String> {
    let mut members = Vec::new();
    for (_, value) in root.bucket(b"members").map(Bucket::values).into_iter().flatten() {
        let json: serde_json::Value = serde_json::from_slice(value).map_err(|error| invalid("members", error))?;
        let strings = |field: &str| -> Vec<String> {
            let items = json[field].as_array().map(Vec::as_slice).unwrap_or_default();
            items.iter().filter_map(|item| item.as_str().map(str::to_string)).collect()
        };
        let id = json["id"].as_u64().ok_or_else(|| invalid("members", "a member without a numeric id"))?;
        members.push(Member {
            id,
            name: json["name"].as_str().unwrap_or_default().to_string(),
            peer_ur_ls: strings("peerURLs"),
            client_ur_ls: strings("clientURLs"),
            is_learner: json["isLearner"].as_bool().unwrap_or(false),
        });
    }
    Ok(members)
}

/// What `etcdctl snapshot status` prints about a backend file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotStatus {
    /// CRC-32C (Castagnoli) of every top-level bucket's name, keys and values in order.
    pub hash: u32,
    /// Main revision of the last key of the `key` bucket.
    pub revision: i64,
    /// Keys in all top-level buckets.
    pub total_key: u64,
    /// Bytes in use (high-water mark × page size).
    pub total_size: u64,
}

/// `etcdctl snapshot status`'s figures for a read database.
pub fn status(database: &bbolt::Database) -> SnapshotStatus {
    let mut hash = 0_u32;
    let mut revision = 0;
    let mut total_key = 0;
    for (name, entry) in &database.root.entries {
        hash = crc32c::crc32c_append(hash, name);
        let Entry::Bucket(bucket) = entry else { continue };
        for (key, entry) in &bucket.entries {
            hash = crc32c::crc32c_append(hash, key);
            if let Entry::Value(value) = entry {
                hash = crc32c::crc32c_append(hash, value);
            }
            if name == b"key" && key.len() >= 8 {
                revision = i64::from_be_bytes(key[0..8].try_into().expect("eight bytes"));
            }
            total_key += 1;
        }
    }
    SnapshotStatus { hash, revision, total_key, total_size: database.size_bytes() }
}

/// Bytes of the SHA-256 digest etcd appends to a snapshot stream.
pub const DIGEST_BYTES: usize = 32;

/// A snapshot as streamed and saved: the database followed by its SHA-256.
pub fn with_digest(mut database: Vec<u8>) -> Vec<u8> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(&database);
    database.extend_from_slice(&digest);
    database
}

/// The database part of a saved snapshot file, its digest checked unless
/// `skip_hash_check` (a bare database file, e.g. a copied `db`, needs it, as etcdctl).
pub fn database_part(bytes: &[u8], skip_hash_check: bool) -> Result<&[u8], String> {
    use sha2::Digest;
    match bytes.len() % 512 {
        DIGEST_BYTES => {
            let (database, digest) = bytes.split_at(bytes.len() - DIGEST_BYTES);
            let computed = sha2::Sha256::digest(database);
            if !skip_hash_check && computed.as_slice() != digest {
                return Err(format!(
                    "snapshot hash mismatch: expected sha256 {}, computed {} (corrupted file?)",
                    hex(digest),
                    hex(&computed)
                ));
            }
            Ok(database)
        }
        0 if skip_hash_check => Ok(bytes),
        0 => Err("snapshot missing hash but --skip-hash-check=false".into()),
        _ => Err(format!(
            "not a snapshot: {} bytes is neither a bbolt database (whole 512-byte blocks) nor one followed by \
             its SHA-256 (truncated?)",
            bytes.len()
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The members of a new cluster as the store keeps them (no client URLs).
pub fn members_of(initial: &[crate::config::InitialMember]) -> Vec<Member> {
    initial
        .iter()
        .map(|member| Member {
            id: member.id,
            name: member.name.clone(),
            peer_ur_ls: member.peer_urls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: false,
        })
        .collect()
}
