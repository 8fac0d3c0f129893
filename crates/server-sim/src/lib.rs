//! raftkv's server simulator: N members, each the real server core
//! ([`server::server_core::ServerCore`]) over the real WAL ([`wal::Wal`]) on its own
//! simulated file system ([`wal::fault::SimulatedFileSystem`]) and the real `kv::Store`,
//! driven through the same per-turn contract as the production shell (`server::driver`)
//! by one seeded random source and simulated time (ticks; the cores' clock is simulated
//! time, never the wall clock).
//!
//! - Network ([`network`]): every message delayed (so reordered), some lost or duplicated;
//!   partitions, symmetric or one-way, of a random side or the leader alone.
//! - Disk ([`disk`], behind a [`page_cache`] so a sync covers only the bytes written before
//!   it was requested): fsyncs complete later; crashes lose unsynced writes, tear the tail or
//!   keep some unsynced directory changes; a crash can be armed some disk operations ahead
//!   (it then strikes inside a WAL write, an fsync or a snapshot), and the whole cluster
//!   can lose power at once. A restart rebuilds the member exactly as `server::node` does:
//!   open the WAL, restore the store from its snapshot, replay the log.
//! - Log compaction: members snapshot and compact often, so lagging ones catch up by snapshot.
//! - Clients ([`clients`]): etcd requests as `kv::Command`s: put, txn (compare and put),
//!   range (linearizable through the ReadIndex barrier, and serializable), lease grant and
//!   puts attached to leases, which expire through the log (the leader's lessor).
//! - Checks ([`checks`]) after every turn and at the end; a violation is reported with
//!   its seed and a short trace ([`report`]).
//!
//! With the `sabotage` feature, [`Sabotage`] plants a deliberate bug in the server or the
//! Raft core, and [`sabotage_table`] measures how soon the checks catch each.
//!
//! ```no_run
//! let result = server_sim::run(&server_sim::Options { nodes: 3, seed: 7, ..Default::default() });
//! assert!(result.violations.is_empty(), "{}", result.describe());
//! ```

#![warn(missing_docs)]

pub mod checks;
pub mod clients;
mod cluster;
pub mod disk;
mod faults;
pub mod member;
pub mod membership;
pub mod network;
pub mod options;
pub mod page_cache;
pub mod report;
pub mod sabotage_table;

pub use options::{Options, Sabotage};
pub use report::{RunResult, Statistics, Violation};

/// Runs one simulation with `options` and its checks. A panic inside the real code is
/// reported as a violation (`panic`), not propagated.
pub fn run(options: &Options) -> RunResult {
    if options.sabotage != Sabotage::None && !cfg!(feature = "sabotage") {
        let message = "this build has no `sabotage` feature".to_string();
        let violation = Violation { invariant: "options".into(), message, time_ms: 0 };
        return RunResult { seed: options.seed, violations: vec![violation], ..RunResult::default() };
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cluster::Cluster::new(options).run()));
    outcome.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_else(|| "unknown panic".to_string());
        let violation = Violation { invariant: "panic".into(), message, time_ms: 0 };
        RunResult { seed: options.seed, violations: vec![violation], ..RunResult::default() }
    })
}

/// Debugging: runs like [`run`] (without catching panics) and returns the client history too.
pub fn run_with_history(options: &Options) -> (RunResult, linearizability::History) {
    cluster::Cluster::new(options).run_keeping_history()
}

/// The options of run `index` of a campaign from `start_seed`: seed `start_seed + index`,
/// `nodes` members, or 3 and 5 alternating when `nodes` is 0.
pub fn campaign_options(start_seed: u64, index: u64, nodes: usize, sabotage: Sabotage) -> Options {
    let nodes = if nodes == 0 { [3, 5][(index % 2) as usize] } else { nodes };
    Options { nodes, seed: start_seed.wrapping_add(index), sabotage, ..Options::default() }
}
