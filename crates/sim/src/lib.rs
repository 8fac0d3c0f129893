//! raftkv's deterministic cluster simulator.
//!
//! Many Raft nodes (the real core, `raft::RawNode`) run in one thread against a
//! simulated network (loss, duplication, reordering, delay, symmetric and one-way
//! partitions) and simulated disks (fsync latency, crashes that lose unsynced writes, torn
//! writes), with clients proposing commands and snapshots compacting logs. Everything is
//! driven by a discrete-event queue ordered by (time, sequence number), and every random
//! choice comes from one seed, so a run is replayed exactly from its [`Options`].
//!
//! After every step the safety checkers in [`invariants`] inspect a plain-data
//! [`view::ClusterView`]; at the end of a run (after healing every fault and letting the
//! cluster settle) the client history is checked: no acknowledged command lost, every node
//! applied the same sequence, and acknowledged commands are ordered as they were in real
//! time. Clients also make linearizable reads (ReadIndex); each read is checked, when
//! served, to see every write acknowledged before it began, and returns the last command
//! that took effect on its node; at the end the whole history, as one register written by
//! each command, is checked by the `linearizability` crate.
//!
//! ```no_run
//! let result = sim::run(&sim::Options { nodes: 5, seed: 42, ..sim::Options::default() });
//! assert!(result.violations.is_empty(), "{:?}", result.violations);
//! ```

#![warn(missing_docs)]

mod churn;
mod clients;
mod durability;
mod events;
mod fault_injection;
mod final_checks;
pub mod invariants;
mod network;
mod node;
mod options;
pub mod sabotage_table;
mod simulator;
mod state_machine;
mod trace;
pub mod view;

pub use options::{Faults, Options, RunSettings, Sabotage, Schedule, Variation};
pub use simulator::run;

/// A broken invariant, found at `step`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (e.g. `election_safety`).
    pub invariant: String,
    /// What exactly was wrong.
    pub message: String,
    /// The step after which it was detected.
    pub step: u64,
}

/// What one run did and found.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// Broken invariants (the run stops at the first step that breaks any).
    pub violations: Vec<Violation>,
    /// Events processed.
    pub steps: u64,
    /// Client commands committed and applied (the longest applied sequence of any node).
    pub commits: u64,
    /// Client operations acknowledged.
    pub acknowledged: u64,
    /// The last trace lines (events), oldest first.
    pub trace_tail: Vec<String>,
    /// What the run exercised.
    pub statistics: Statistics,
}

/// Counts of what a run exercised (to see that faults really happen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Messages handed to the network.
    pub messages_sent: u64,
    /// Messages lost, partitioned away or sent to a crashed node.
    pub messages_dropped: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Crashes that left a torn write.
    pub torn_writes: u64,
    /// Symmetric and one-way partitions started.
    pub partitions: u64,
    /// Log compactions.
    pub compactions: u64,
    /// Snapshots received and restored (InstallSnapshot).
    pub snapshots_installed: u64,
    /// Linearizable reads served (and checked).
    pub reads_served: u64,
    /// Membership changes the churn fault got accepted by a leader.
    pub membership_changes: u64,
    /// Highest term reached by any node.
    pub term_max: u64,
    /// Runs whose register history the linearizability checker could not decide within
    /// its budget (unknown, not a violation).
    pub linearizability_inconclusive: u64,
}

/// FNV-1a hash of an entry's kind and payload: what checkers compare entries by.
pub fn hash_entry(entry: &raft::Entry) -> u64 {
    let kind_tag: u8 = match entry.kind {
        raft::EntryKind::Normal => 1,
        raft::EntryKind::Blank => 2,
        raft::EntryKind::Config => 3,
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(kind_tag).chain(entry.data.iter().copied()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}
