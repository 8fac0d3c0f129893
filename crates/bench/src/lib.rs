//! `raftkv bench`: a load generator over etcd's v3 gRPC API, and `raftkv bench compare`, a
//! side-by-side comparison of a 3-node raftkv against a 3-node etcd on the same machine.
//!
//! The load generator speaks only the public etcd v3 API (`etcdserverpb.KV`), so it drives a
//! real etcd as well as raftkv. A run opens `--conns` gRPC connections (spread over
//! `--endpoints`), starts `--clients` tasks (spread over the connections), each with one
//! request in flight, and measures `--total` operations or `--duration` seconds after
//! `--warmup-seconds` of unmeasured load. Keys are chosen by a seeded generator per client,
//! so a run's key sequence is reproducible. Reading workloads preload their keys first.
//!
//! Workloads: `put`, `range` (linearizable), `range-serializable`, `txn-cas`
//! (compare-and-swap on the mod revision), `mixed` (ranges and puts).
//!
//! Output: a text summary (operations, errors, elapsed, throughput, latency p50, p90, p99,
//! p99.9, max) or, with `--json`, one JSON object ([`Summary`]) on stdout. A progress bar is
//! drawn on stderr when it is a terminal.
//!
//! The binary mounts [`BenchArgs`] as its `bench` subcommand and calls [`main_with_args`].

#![deny(missing_docs)]

mod args;
mod client;
pub mod compare;
mod keys;
mod runner;
mod stats;

use anyhow::{bail, Context, Result};

pub use args::{BenchArgs, BenchCommand, RunArgs, Workload, DEFAULT_KEY_SPACE, DEFAULT_TOTAL_OPERATIONS};
pub use compare::CompareArgs;
pub use keys::{encode_key, KeyRandom};
pub use runner::{run, RunConfig, RunLimit, RunOutcome};
pub use stats::{LatencyHistogram, LatencySummary, Summary};

/// Runs `raftkv bench` with parsed flags: a load-generator run, or `compare`.
///
/// Builds its own multi-threaded tokio runtime; call it from synchronous code.
pub fn main_with_args(args: BenchArgs) -> Result<()> {
    match args.command {
        Some(BenchCommand::Compare(compare_args)) => compare::main_with_args(compare_args),
        None => run_once(&args.run),
    }
}

/// One load-generator run: prints the summary (text, or JSON with `--json`). Fails when no
/// measured operation succeeded.
fn run_once(run_args: &RunArgs) -> Result<()> {
    let config = run_args.to_config()?;
    let runtime = build_runtime()?;
    let outcome = runtime.block_on(run(&config, &|| {}))?;
    let summary = &outcome.summary;
    if run_args.json {
        println!("{}", summary.to_json()?);
    } else {
        print!("{}", summary.to_text());
    }
    if summary.operations == 0 && summary.errors > 0 {
        bail!("every measured operation failed; first error: {}", summary.first_error.as_deref().unwrap_or("?"));
    }
    Ok(())
}

/// The multi-threaded tokio runtime the benchmark runs on.
pub(crate) fn build_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("building the tokio runtime")
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;

    /// Mounts [`BenchArgs`] the way the `raftkv` binary does.
    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(Subcommand, Debug)]
    enum TestCommand {
        Bench(BenchArgs),
    }

    fn parse(arguments: &[&str]) -> Result<BenchArgs, clap::Error> {
        let TestCommand::Bench(args) = TestCli::try_parse_from(arguments)?.command;
        Ok(args)
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let args = parse(&["raftkv", "bench"]).unwrap();
        assert!(args.command.is_none());
        let config = args.run.to_config().unwrap();
        assert_eq!(config.endpoints, ["127.0.0.1:2379"]);
        assert_eq!((config.clients, config.connections), (1, 1));
        assert_eq!(config.limit, RunLimit::Total(DEFAULT_TOTAL_OPERATIONS));
        assert_eq!((config.key_size_bytes, config.value_size_bytes, config.key_space), (8, 256, 100_000));
        assert_eq!(config.workload, Workload::Put);
    }

    #[test]
    fn run_flags_parse() {
        let args = parse(&[
            "raftkv",
            "bench",
            "--endpoints",
            "a:1,b:2",
            "--clients",
            "64",
            "--conns",
            "8",
            "--duration",
            "2.5",
            "--workload",
            "range-serializable",
            "--json",
            "--warmup-seconds",
            "1",
            "--key-size",
            "16",
        ])
        .unwrap();
        let config = args.run.to_config().unwrap();
        assert_eq!(config.endpoints, ["a:1", "b:2"]);
        assert_eq!(config.limit, RunLimit::Duration(std::time::Duration::from_millis(2500)));
        assert_eq!(config.workload, Workload::RangeSerializable);
        assert!(args.run.json && !config.show_progress);
        assert_eq!(config.key_size_bytes, 16);
    }

    #[test]
    fn compare_defaults_to_both_systems_and_targets_the_leader_on_request() {
        let args = parse(&["raftkv", "bench", "compare", "--target", "leader"]).unwrap();
        let Some(BenchCommand::Compare(compare)) = args.command else { panic!("expected compare") };
        assert_eq!(compare.systems, [compare::System::Etcd, compare::System::Raftkv]);
        assert_eq!(compare.target, compare::Target::Leader);
        assert!(compare.raftkv_bin.is_none());
    }

    #[test]
    fn run_flags_and_compare_do_not_mix() {
        assert!(parse(&["raftkv", "bench", "--clients", "4", "compare"]).is_err());
    }

    #[test]
    fn total_and_duration_conflict() {
        assert!(parse(&["raftkv", "bench", "--total", "5", "--duration", "1"]).is_err());
    }

    #[test]
    fn compare_subcommand_parses() {
        let args =
            parse(&["raftkv", "bench", "compare", "--quick", "--systems", "etcd", "--raftkv-bin", "/x"]).unwrap();
        let Some(BenchCommand::Compare(compare)) = args.command else { panic!("expected compare") };
        assert!(compare.quick);
        assert_eq!(compare.systems, [compare::System::Etcd]);
        assert_eq!(compare.target, compare::Target::All);
        assert_eq!((compare.rounds, compare.connections, compare.preload_keys), (2, 8, 10_000));
        assert_eq!(compare.raftkv_bin.as_deref(), Some(std::path::Path::new("/x")));
    }
}
