//! raftkv's replicated state machine: an etcd-semantics multi-version key-value store.
//!
//! Deterministic: no I/O, no clock, no randomness, only ordered collections. Every
//! replica that applies the same commands in the same order holds the same state
//! (compare with [`Store::hash`]).
//!
//! # Model (as etcd)
//!
//! - The store revision starts at 1. Each command that changes keys (put, delete
//!   that deletes something, transaction with writes, lease revoke with keys) raises
//!   it by exactly one; all changes of one command share that main revision and are
//!   ordered by a sub-revision. Reads, no-op deletes, read-only transactions,
//!   compaction and lease grants leave it unchanged.
//! - A key's `create_revision` is the revision that created its current generation,
//!   `mod_revision` its last change, `version` counts changes since creation; a
//!   delete ends the generation (the next put starts again at version 1).
//! - History is kept until [`Operation::Compaction`]; reads at older revisions fail
//!   with [`Error::Compacted`], reads past the store revision with
//!   [`Error::FutureRevision`].
//! - Leases are data only: grant, revoke (deleting attached keys in one revision),
//!   attach/detach by puts and deletes. Expiry is decided by the leader's clock
//!   outside this crate and arrives as a revoke command.
//! - Every write returns its [`mvccpb::Event`](proto::mvccpb::Event)s (with
//!   `prev_kv`) in [`Applied::events`]; [`Store::history`] replays older events for
//!   watchers that start in the past.
//!
//! # Exactly-once commands (requirement R8)
//!
//! A client that retries a write after a timeout must not have it applied twice.
//! A [`Command`] may carry a [`RequestId`] = (client id, sequence number):
//!
//! - Each client (or each server-side proxy acting for one) picks a unique
//!   `client_id` and numbers its requests 1, 2, 3, ...; a retry reuses the number.
//! - The store keeps, per client, the last applied sequence number and the
//!   response recorded for it (errors included).
//! - On apply: a sequence above the recorded one is applied and recorded; an equal
//!   one is not applied again, the recorded response is returned
//!   ([`Applied::duplicate`] is true, no events); a lower one is refused with
//!   [`Error::StaleRequest`] (its answer was already superseded).
//! - Memory is bounded: at most [`Config::maximum_sessions`] clients are kept; when
//!   a new client arrives at a full table, the client whose last request was applied
//!   at the lowest log index is evicted. Eviction depends only on the log, so all
//!   replicas evict the same client. A client silent for longer than it takes
//!   `maximum_sessions` other clients to appear loses its protection.
//! - Sessions are part of [`Store::snapshot`], so the guarantee survives restarts
//!   and snapshot installation.
//!
//! Commands without a request id (e.g. lease revokes from expiry) are applied
//! every time they appear.
//!
//! # Use from the server
//!
//! ```
//! use kv::{Command, Operation, Response, Store};
//! use proto::etcdserverpb::{PutRequest, RangeRequest};
//!
//! let mut store = Store::default();
//! let put = PutRequest { key: b"k".to_vec().into(), value: b"v".to_vec().into(), ..Default::default() };
//! let command = Command::with_request_id(Operation::Put(put), 42, 1);
//! let entry_bytes = bytes::Bytes::from(command.encode()); // goes into the Raft log
//! // Decoded sharing the entry's buffer: the stored value is a slice of it, not a copy.
//! let applied = store.apply(1, &Command::decode_shared(entry_bytes).unwrap());
//! assert_eq!(applied.revision, 2);
//! assert!(matches!(applied.result, Ok(Response::Put(_))));
//! let read = store.range(&RangeRequest { key: b"k".to_vec(), ..Default::default() }).unwrap();
//! assert_eq!(read.kvs[0].value, &b"v"[..]);
//! ```

#![deny(missing_docs)]

mod alarm;
mod auth;
mod command;
mod error;
mod key_range;
mod lease;
mod members;
mod mvcc;
mod operations;
mod session;
mod snapshot;
mod store;
mod txn;

#[cfg(test)]
mod tests;

pub use alarm::{txn_puts, ALARMS_MAX};
pub use auth::{Access, AuthStore, ROOT_ROLE, ROOT_USER, SIMPLE_TOKENS_MAX};
pub use command::{
    result_from_message, result_to_message, AuthContext, Command, DecodeError, Operation, RequestId, Response,
};
pub use error::{grpc_code, Error};
pub use key_range::KeyRange;
pub use lease::{Lease, MAXIMUM_LEASE_TTL_SECONDS};
pub use members::{MemberAction, MemberChange};
pub use mvcc::Revision;
pub use session::DEFAULT_MAXIMUM_SESSIONS;
pub use snapshot::{RestoreError, SNAPSHOT_FORMAT_VERSION};
pub use store::{Applied, Config, History, Store, LEASE_BYTES};
pub use txn::compare_key_value;
