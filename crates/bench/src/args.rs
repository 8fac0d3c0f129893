//! Command-line flags of `raftkv bench` and their validation into a [`RunConfig`].

use std::time::Duration;

use anyhow::{bail, Result};

use crate::compare::CompareArgs;
use crate::runner::{RunConfig, RunLimit};

/// Flags of `raftkv bench`: either a load-generator run (the flattened [`RunArgs`]) or a
/// subcommand (`compare`).
///
/// The binary mounts it as a subcommand: `Bench(bench::BenchArgs)` in its `Subcommand`
/// enum, then calls [`crate::main_with_args`].
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A harness subcommand; without one, `raftkv bench` runs a single workload.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Flags of a single load-generator run.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands of `raftkv bench`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Start a 3-node etcd and a 3-node raftkv, run the same workloads against each in
    /// interleaved rounds, and print one comparison table.
    Compare(CompareArgs),
}

/// What each client does per operation.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Put one key chosen from the key space.
    Put,
    /// Linearizable single-key range over the preloaded keys.
    Range,
    /// Serializable (possibly stale, served locally) single-key range over the preloaded keys.
    RangeSerializable,
    /// Compare-and-swap: read a key's mod revision, then a txn that puts only if it is unchanged
    /// (retried on conflict). One operation is one successful swap.
    TxnCas,
    /// Linearizable ranges and puts, `--read-percent` of them ranges.
    Mixed,
}

impl Workload {
    /// The workload's flag value (`put`, `range`, `range-serializable`, `txn-cas`, `mixed`).
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::RangeSerializable => "range-serializable",
            Workload::TxnCas => "txn-cas",
            Workload::Mixed => "mixed",
        }
    }

    /// Whether the workload reads existing keys, so the key space is preloaded first.
    pub fn needs_preload(self) -> bool {
        !matches!(self, Workload::Put)
    }
}

/// Flags of one load-generator run against an etcd v3 API endpoint set.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Client endpoints, comma separated (`host:port` or `http://host:port`).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// Concurrent clients; each has one request in flight.
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// gRPC connections; clients are spread over them round-robin, connections over endpoints.
    #[arg(long = "conns", default_value_t = 1)]
    pub connections: usize,
    /// Number of measured operations (default 10000 unless --duration is given).
    #[arg(long, conflicts_with = "duration_seconds")]
    pub total: Option<u64>,
    /// Measure for this many seconds instead of a fixed number of operations.
    #[arg(long = "duration", visible_alias = "duration-seconds")]
    pub duration_seconds: Option<f64>,
    /// Unmeasured load before measuring starts, in seconds.
    #[arg(long, default_value_t = 0.0)]
    pub warmup_seconds: f64,
    /// Key length in bytes (keys are zero-padded decimal indexes).
    #[arg(long = "key-size", default_value_t = 8)]
    pub key_size_bytes: usize,
    /// Value length in bytes.
    #[arg(long = "value-size", default_value_t = 256)]
    pub value_size_bytes: usize,
    /// Number of distinct keys written.
    #[arg(long, default_value_t = DEFAULT_KEY_SPACE)]
    pub key_space: u64,
    /// Keys written before a reading workload starts (at most --key-space); reads pick among them.
    #[arg(long = "preload", default_value_t = 10_000)]
    pub preload_keys: u64,
    /// Workload to run.
    #[arg(long, value_enum, default_value_t = Workload::Put)]
    pub workload: Workload,
    /// Percentage of ranges in the mixed workload (the rest are puts).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub read_percent: u8,
    /// Seed of the key choice; client i uses a generator seeded from (seed, i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-request deadline in seconds; a request past it counts as an error.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_seconds: f64,
    /// Print one JSON object (the summary) on stdout instead of the text summary.
    #[arg(long)]
    pub json: bool,
}

/// Distinct keys written when `--key-space` is not given.
pub const DEFAULT_KEY_SPACE: u64 = 100_000;

/// Operations measured when neither `--total` nor `--duration` is given.
pub const DEFAULT_TOTAL_OPERATIONS: u64 = 10_000;

impl RunArgs {
    /// Validates the flags and turns them into a [`RunConfig`].
    pub fn to_config(&self) -> Result<RunConfig> {
        let limit = match (self.total, self.duration_seconds) {
            (Some(_), Some(_)) => bail!("give --total or --duration, not both"),
            (Some(total), None) => RunLimit::Total(total),
            (None, Some(seconds)) => RunLimit::Duration(seconds_to_duration("--duration", seconds)?),
            (None, None) => RunLimit::Total(DEFAULT_TOTAL_OPERATIONS),
        };
        let config = RunConfig {
            endpoints: self.endpoints.iter().map(|endpoint| endpoint.trim().to_string()).collect(),
            clients: self.clients,
            connections: self.connections,
            limit,
            warmup: seconds_to_duration("--warmup-seconds", self.warmup_seconds)?,
            key_size_bytes: self.key_size_bytes,
            value_size_bytes: self.value_size_bytes,
            key_space: self.key_space,
            preload_keys: self.preload_keys,
            skip_preload: false,
            workload: self.workload,
            read_percent: self.read_percent,
            seed: self.seed,
            request_timeout: seconds_to_duration("--timeout-seconds", self.timeout_seconds)?,
            show_progress: !self.json,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Converts a non-negative, finite number of seconds from flag `flag` into a [`Duration`].
pub(crate) fn seconds_to_duration(flag: &str, seconds: f64) -> Result<Duration> {
    if !seconds.is_finite() || seconds < 0.0 {
        bail!("{flag} must be a non-negative number of seconds, got {seconds}");
    }
    Ok(Duration::from_secs_f64(seconds))
}
