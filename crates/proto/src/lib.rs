//! etcd's v3 API protobuf messages and gRPC services, plus raftkv's internal messages.
//!
//! The `.proto` files in `proto/` are compiled at build time by `protox` (no system
//! `protoc` needed) and turned into Rust by prost and tonic.
//!
//! | module | protobuf package | contents |
//! |---|---|---|
//! | [`etcdserverpb`] | `etcdserverpb` | requests/responses; services `KV`, `Watch`, `Lease`, `Cluster`, `Maintenance`, `Auth` |
//! | [`mvccpb`] | `mvccpb` | `KeyValue`, `Event` |
//! | [`authpb`] | `authpb` | `User`, `Permission`, `Role` |
//! | [`raftkvpb`] | `raftkvpb` | Raft log command (`InternalRequest`), recorded response, store snapshot |
//!
//! gRPC paths come from package and service names, exactly as etcd's:
//! `/etcdserverpb.KV/Range`, `/etcdserverpb.Watch/Watch`, `/etcdserverpb.Lease/LeaseGrant`, ...
//! Servers: `etcdserverpb::kv_server::KvServer`, `etcdserverpb::watch_server::WatchServer`, ...
//! Clients: `etcdserverpb::kv_client::KvClient`, ...
//!
//! Server traits have default method bodies that answer `Unimplemented`, so a
//! service implements only the methods it supports.

#![deny(missing_docs)]

/// Multi-version key-value records (`mvccpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// Users, roles and permissions (`authpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// etcd's v3 API requests, responses and gRPC services (`etcdserverpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// raftkv's internal messages: log commands, recorded responses, snapshots (`raftkvpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod raftkvpb {
    include!(concat!(env!("OUT_DIR"), "/raftkvpb.rs"));
}

/// raftkv's peer protocol: handshake and Raft messages between nodes (`raftkvpeer`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod raftkvpeer {
    include!(concat!(env!("OUT_DIR"), "/raftkvpeer.rs"));
}

/// The compiled descriptors of every `.proto` file here (an encoded
/// `google.protobuf.FileDescriptorSet` without source comments), for reflection such as
/// the JSON gateway's proto3 JSON mapping.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));

/// Re-exported so dependants encode and decode with the same prost version.
pub use prost;
/// Re-exported so dependants build clients and servers with the same tonic version.
pub use tonic;

/// gRPC method paths, as etcd clients call them.
pub mod paths {
    /// `KV.Range`.
    pub const KV_RANGE: &str = "/etcdserverpb.KV/Range";
    /// `KV.Put`.
    pub const KV_PUT: &str = "/etcdserverpb.KV/Put";
    /// `KV.DeleteRange`.
    pub const KV_DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
    /// `KV.Txn`.
    pub const KV_TXN: &str = "/etcdserverpb.KV/Txn";
    /// `KV.Compact`.
    pub const KV_COMPACT: &str = "/etcdserverpb.KV/Compact";
    /// `Watch.Watch`.
    pub const WATCH_WATCH: &str = "/etcdserverpb.Watch/Watch";
    /// `Lease.LeaseGrant`.
    pub const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
    /// `Lease.LeaseRevoke`.
    pub const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
    /// `Lease.LeaseKeepAlive`.
    pub const LEASE_KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
    /// `Maintenance.Status`.
    pub const MAINTENANCE_STATUS: &str = "/etcdserverpb.Maintenance/Status";
    /// `Cluster.MemberList`.
    pub const CLUSTER_MEMBER_LIST: &str = "/etcdserverpb.Cluster/MemberList";
}
