//! A raftkv node: drives the Raft core (`raft`) over the write-ahead log (`wal`), applies
//! committed commands to the key-value state machine (`kv`), talks to peers over TCP and
//! serves etcd's v3 gRPC API.
//!
//! Data flows one way: client → [`grpc`] → [`handle::NodeHandle`] → raft loop ([`driver`])
//! → (WAL, peers) → raft loop → `kv::Store` → client.

#![warn(missing_docs)]

pub mod auth_tokens;
pub mod backup;
pub mod codec;
pub mod compactor;
pub mod config;
pub mod corrupt_check;
pub mod driver;
pub mod etcd_metrics;
pub mod force_new_cluster;
pub mod gateway;
pub mod grpc;
pub mod grpc_metrics;
pub mod handle;
pub mod inputs;
pub mod introspection;
pub mod lessor;
pub mod limits;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod pprof;
pub mod quota;
pub mod read_view;
pub mod serve;
pub mod server_core;
pub mod snapshot_worker;
pub mod tls;
pub mod tls_policy;
pub mod transport;
pub mod up;
pub mod wal_sync;
pub mod watch;
