//! raftkv's consensus core: a pure, deterministic implementation of Raft.
//!
//! The core does no I/O, reads no clock and uses no global randomness. A driver feeds it
//! inputs — [`RawNode::tick`], [`RawNode::step`] (a received message),
//! [`RawNode::propose`], [`RawNode::on_persisted`] ("what an earlier `Ready` asked to
//! persist is durable") — and collects its outputs as a value, [`Ready`]: hard state and
//! entries to persist, messages to send, committed entries to apply, read states.
//!
//! The driver loop (see `examples/driver_loop.rs`):
//!
//! ```text
//! loop {
//!     feed inputs (tick every N ms, received messages, proposals)
//!     let ready = node.ready();
//!     write ready.snapshot / ready.entries / ready.hard_state; fsync;   (may overlap the sends)
//!     node.on_persisted(ready.persist_sequence);
//!     send ready.messages;
//!     apply ready.committed_entries in order;
//! }
//! ```
//!
//! Membership (thesis chapter 4): [`RawNode::propose_conf_change`] takes a [`ConfChange`]
//! (one change: single-server, §4.1; several: joint consensus, §4.3, left automatically);
//! Config entries come out in `committed_entries` like others and the core adopts them
//! itself ([`RawNode::conf_state`]). [`RawNode::transfer_leader`] moves leadership (§3.10).
//!
//! Requirements and paper sections each module implements are named in its docs.

#![warn(missing_docs)]

mod config;
mod log;
mod membership;
mod node;
#[cfg(test)]
mod node_tests;
mod progress;
pub mod quorum;
mod rng;
mod standalone;
mod state_machine;
mod storage;
pub mod testkit;
mod types;

#[cfg(feature = "sabotage")]
pub use config::Sabotage;
pub use config::{Config, ConfigError};
pub use membership::{
    conf_state_in_entry, ConfChange, ConfChangeDecodeError, ConfChangeKind, ConfChangeSingle, CONF_CHANGES_MAX,
    CONF_CONTEXT_BYTES_MAX,
};
pub use node::{ProgressView, ProposeError, RawNode, Ready, StepError};
pub use progress::ProgressState;
pub use rng::SplitMix64;
pub use standalone::{standalone_restart, StandaloneRestart};
pub use state_machine::{CompactionPolicy, Snapshottable};
pub use storage::{limit_size, InitialState, MemoryStorage, Storage, StorageError};
pub use types::*;
