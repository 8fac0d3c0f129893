//! Chaos runner: a real cluster of `raftkv serve` processes on loopback, concurrent clients
//! over etcd's v3 API, and faults — SIGKILL (leader, random member, every member with the
//! WAL losing unsynced writes), SIGSTOP/SIGCONT, network partitions (one member isolated,
//! minority/majority split, one-way loss) through a proxy on every directed peer link, and
//! garbage on client and peer ports. After healing it checks that:
//!
//! - the healed cluster accepts writes again (bounded wait);
//! - every member converges to the same applied index and revision, and `HashKV` at that
//!   revision is equal on all members;
//! - every acknowledged write is present, at the revision it was given, on every member;
//! - the client history (plus a final read of every key through every member) is
//!   linearizable (the `linearizability` crate's checker);
//! - no member exited by itself or logged a panic.
//!
//! On failure the history is saved as JSON lines under `--history-out` and the report
//! prints `raftkv chaos --replay FILE`, which re-runs the check on it, and the seed command
//! that re-runs the same fault schedule (timing differs between runs, so a re-run is not
//! an exact replay; the saved history is).
//!
//! A failed run also keeps every member's log, data directory and `/api/state` (Raft
//! role, indexes, followers' progress) under `--history-out`.
//!
//! The binary mounts [`ChaosArgs`] as `raftkv chaos` and calls [`main_with_args`] (or
//! [`run`] and prints the [`Report`]).
//!
//! # Tests
//!
//! `cargo test -p raftkv-chaos` starts real clusters of the `raftkv` binary: `$RAFTKV_BIN`
//! if set, else `<target>/release/raftkv` or `<target>/debug/raftkv` (`<target>` honours
//! `CARGO_TARGET_DIR`), built with `cargo build --release --bin raftkv` if neither exists
//! (rebuild it yourself after changing the server: a stale binary is not detected).
//! `tests/faults.rs` runs one 3-member run per fault kind and one mixing all (12 s of
//! faults each; `RAFTKV_CHAOS_SECONDS=N` runs longer, `--ignored` adds a 5-member run);
//! `tests/broken_build.rs` shows the runner catching stale reads of a build started with
//! `--unsafe-local-reads`; `tests/bad_input.rs` throws garbage at every port.

#![warn(missing_docs)]

pub mod bad_input;
pub mod binary;
pub mod cluster;
pub mod etcd;
pub mod faults;
pub mod proxy;
mod report;
pub mod runner;
pub mod verify;
pub mod workload;

use std::path::PathBuf;
use std::time::Duration;

pub use faults::FaultKind;
pub use report::{Report, Verdict};
pub use runner::Scenario;

/// Flags of `raftkv chaos`.
#[derive(Clone, Debug, clap::Args)]
pub struct ChaosArgs {
    /// Cluster size.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// How long faults are injected (then the cluster heals and is checked).
    #[arg(long, default_value_t = 30)]
    pub duration_seconds: u64,
    /// Concurrent clients (client i talks to member i mod nodes, one operation at a time).
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Number of keys the clients operate on.
    #[arg(long, default_value_t = 4)]
    pub keys: usize,
    /// Faults: comma list of kill-leader, kill-random, pause, isolate, split, one-way, crash,
    /// bad-input; or all / none.
    #[arg(long, default_value = "all")]
    pub faults: String,
    /// Seed of the fault schedule and the clients' choices (default: from the clock; printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The raftkv binary to start (default: this executable when it is raftkv, else the
    /// workspace's target/release/raftkv or target/debug/raftkv).
    #[arg(long)]
    pub raftkv_bin: Option<PathBuf>,
    /// Directory for the members' data and logs and for failing histories, kept after the
    /// run (default: a new directory under the system's temporary directory, removed when
    /// the run passes and kept, with its path printed, when it fails).
    #[arg(long, visible_alias = "work-dir", value_name = "DIR")]
    pub history_out: Option<PathBuf>,
    /// Instead of running a cluster, check the history saved in FILE (JSON lines) and exit.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    /// Deadline of each client operation, in milliseconds (a write past it has an unknown outcome).
    #[arg(long, default_value_t = 2000)]
    pub operation_deadline_milliseconds: u64,
    /// The most operations recorded (clients stop issuing beyond it).
    #[arg(long, default_value_t = 20_000)]
    pub operations_max: usize,
    /// Do not pass `--unsafe-wal-buffer-unsynced` to members (then SIGKILL loses nothing,
    /// since the WAL syncs before acknowledging).
    #[arg(long)]
    pub keep_unsynced_writes: bool,
    /// TEST ONLY: start members with `--unsafe-local-reads` (a deliberately broken build
    /// whose stale reads the run must catch).
    #[arg(long, hide = true)]
    pub unsafe_local_reads: bool,
}

impl Default for ChaosArgs {
    fn default() -> Self {
        ChaosArgs {
            nodes: 3,
            duration_seconds: 30,
            clients: 6,
            keys: 4,
            faults: "all".to_string(),
            seed: None,
            raftkv_bin: None,
            history_out: None,
            replay: None,
            operation_deadline_milliseconds: 2000,
            operations_max: 20_000,
            keep_unsynced_writes: false,
            unsafe_local_reads: false,
        }
    }
}

/// The binary to start: the flag, else this executable if it is raftkv, else the workspace's.
fn resolve_binary(args: &ChaosArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.raftkv_bin {
        anyhow::ensure!(path.is_file(), "--raftkv-bin {} is not a file", path.display());
        return Ok(path.clone());
    }
    let current = std::env::current_exe()?;
    if current.file_stem().is_some_and(|stem| stem == "raftkv") {
        return Ok(current);
    }
    binary::raftkv_binary_or_build()
}

/// Seconds a run lasts beyond `--duration-seconds` (healing, clients after healing).
const RUN_SECONDS_EXTRA: u64 = 10;

/// The pacing that spreads at most `--operations-max` operations over the whole run.
fn operation_interval(args: &ChaosArgs) -> Duration {
    let operations_max = u32::try_from(args.operations_max.max(1)).unwrap_or(u32::MAX);
    let clients = u32::try_from(args.clients).unwrap_or(u32::MAX);
    Duration::from_secs(args.duration_seconds + RUN_SECONDS_EXTRA) * clients / operations_max
}

/// Where a run of `seed` without `--history-out` keeps its files: a directory of its own
/// under the system's temporary directory.
pub fn temporary_directory(seed: u64) -> PathBuf {
    std::env::temp_dir().join(format!("raftkv-chaos-seed{seed}-pid{}", std::process::id()))
}

/// The scenario `args` describe.
pub fn scenario_from_args(args: &ChaosArgs) -> anyhow::Result<Scenario> {
    anyhow::ensure!(args.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(args.keys >= 1, "--keys must be at least 1");
    let seed = args.seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_nanos() as u64 % 1_000_000_000
    });
    let mut server_arguments = Vec::new();
    if !args.keep_unsynced_writes {
        server_arguments.push("--unsafe-wal-buffer-unsynced".to_string());
    }
    if args.unsafe_local_reads {
        server_arguments.push("--unsafe-local-reads".to_string());
    }
    Ok(Scenario {
        binary: resolve_binary(args)?,
        nodes: usize::try_from(args.nodes)?,
        clients: args.clients,
        duration: Duration::from_secs(args.duration_seconds),
        faults: FaultKind::parse_list(&args.faults)?,
        seed,
        output_directory: args.history_out.clone().unwrap_or_else(|| temporary_directory(seed)),
        remove_output_when_passed: args.history_out.is_none(),
        workload: workload::WorkloadOptions {
            keys: args.keys,
            operation_deadline: Duration::from_millis(args.operation_deadline_milliseconds),
            operations_max: args.operations_max,
            operation_interval_min: operation_interval(args),
        },
        server_arguments,
    })
}

/// Runs the chaos run `args` describe (or, with `--replay`, checks a saved history) and
/// reports. `Ok` even when a check failed: see [`Report::passed`].
pub fn run(args: ChaosArgs) -> anyhow::Result<Report> {
    if let Some(path) = &args.replay {
        return replay(path);
    }
    let scenario = scenario_from_args(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(runner::run_scenario(&scenario))
}

/// Checks the history saved in `path` and reports the verdict.
pub fn replay(path: &std::path::Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    let history = linearizability::History::from_json_lines(&text)?;
    let started = std::time::Instant::now();
    let scenario = Scenario {
        binary: PathBuf::new(),
        nodes: 0,
        clients: 0,
        duration: Duration::ZERO,
        faults: Vec::new(),
        seed: 0,
        output_directory: PathBuf::new(),
        remove_output_when_passed: false,
        workload: workload::WorkloadOptions {
            keys: 0,
            operation_deadline: Duration::ZERO,
            operations_max: 0,
            operation_interval_min: Duration::ZERO,
        },
        server_arguments: Vec::new(),
    };
    let mut report = Report::new(&scenario);
    report.operations = history.len();
    report.verdict = match linearizability::check(&history) {
        linearizability::CheckResult::Linearizable => Verdict::Linearizable,
        linearizability::CheckResult::NotLinearizable(violation) => {
            let shown = report::last_lines(&violation.explanation, 60);
            report.failures.push(format!("history is not linearizable:\n{shown}"));
            Verdict::NotLinearizable(violation.explanation)
        }
        linearizability::CheckResult::Timeout { keys } => {
            Verdict::Unknown(format!("search budget exhausted on {} keys", keys.len()))
        }
    };
    report.elapsed = started.elapsed();
    Ok(report)
}

/// `raftkv chaos`: runs, prints the report, and fails when a check failed.
pub fn main_with_args(args: ChaosArgs) -> anyhow::Result<()> {
    let report = run(args)?;
    println!("{report}");
    anyhow::ensure!(report.passed(), "chaos run failed ({} failures)", report.failures.len());
    Ok(())
}
