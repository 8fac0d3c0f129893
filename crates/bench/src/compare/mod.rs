//! `raftkv bench compare`: a 3-node etcd and a 3-node raftkv on this machine, the same
//! workloads against each in interleaved rounds, one table.
//!
//! Each round starts each system's cluster afresh (data directories on disk, never tmpfs;
//! fsync on, as both servers default to), runs the table's workloads against it with this
//! crate's load generator, then (when it is found) the rows of [`tool_rows::TOOL_ROWS`] with
//! etcd's own benchmark tool ([`etcd_tool`]), samples the nodes' CPU time around each
//! measured phase and their peak memory at the end, and kills it. Every process is killed when the comparison ends, fails, panics, or gets Ctrl-C or
//! SIGTERM.

mod cluster;
pub mod etcd_tool;
mod filesystem;
mod process_stats;
mod report;
pub mod tool_rows;

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::args::{seconds_to_duration, Workload};
use crate::runner::{run, RunConfig, RunLimit};
pub use cluster::{node_arguments, Cluster, ClusterSpec};
pub use filesystem::{default_work_root, file_system_of, require_disk};
pub use report::{ComparisonReport, ComparisonRow, SystemFigures};
use report::{Measurement, Results};
use tool_rows::{ToolRow, ToolRun, TOOL_ROWS};

/// The Debian command that installs etcd.
pub const ETCD_INSTALL_COMMAND: &str = "apt-get install -y etcd-server";
/// Nodes per cluster.
const NODE_COUNT: usize = 3;
/// How long a fresh cluster may take to serve.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Operations per workload in `--quick` mode.
const QUICK_TOTAL_OPERATIONS: u64 = 300;
/// Longest one run of etcd's benchmark tool may take (it waits forever for a dead endpoint).
const TOOL_RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// A system under comparison.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum System {
    /// etcd (Debian's `etcd-server`).
    Etcd,
    /// raftkv (`raftkv serve`).
    Raftkv,
}

impl System {
    /// `etcd` or `raftkv`.
    pub fn name(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Raftkv => "raftkv",
        }
    }
}

/// Which nodes the benchmark clients talk to.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Connections spread over the 3 nodes (connection i to node i mod 3). (The
    /// one-client rows always name their node: the leader, or a follower.)
    All,
    /// Every connection to the leader (found with Maintenance.Status before each workload).
    Leader,
}

/// Which node a row's single connection talks to. A lone client's latency depends on
/// whether it reaches the leader or a follower (which forwards the write and learns the
/// commit one round trip later), so the one-client rows name the node instead of taking
/// node 1, which leads in some runs and not in others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowNode {
    /// As `--target` says.
    Target,
    /// The leader (found with Maintenance.Status before the workload).
    Leader,
    /// A follower (a node that is not the leader).
    Follower,
}

/// One row of the table: a workload, its concurrency and the node(s) it talks to.
#[derive(Debug, Clone, Copy)]
pub struct TableWorkload {
    /// What each operation does.
    pub workload: Workload,
    /// Concurrent clients.
    pub clients: usize,
    /// Where the clients connect.
    pub node: RowNode,
    /// gRPC connections, when the row fixes them (else `--conns`, at most one per client).
    pub connections: Option<usize>,
}

impl TableWorkload {
    /// Row label, e.g. `put, 64 clients`.
    pub fn label(&self) -> String {
        let name = match self.workload {
            Workload::Range => "range linearizable",
            Workload::RangeSerializable => "range serializable",
            other => other.name(),
        };
        let plural = if self.clients == 1 { "" } else { "s" };
        let node = match self.node {
            RowNode::Target => "",
            RowNode::Leader => " to the leader",
            RowNode::Follower => " to a follower",
        };
        let connections = self.connections.map(|count| format!(" ({count} conns)")).unwrap_or_default();
        format!("{name}, {} client{plural}{node}{connections}", self.clients)
    }
}

/// The table's workloads, in the order they run on each cluster.
pub const TABLE_WORKLOADS: [TableWorkload; 6] = [
    TableWorkload { workload: Workload::Put, clients: 1, node: RowNode::Leader, connections: None },
    TableWorkload { workload: Workload::Put, clients: 1, node: RowNode::Follower, connections: None },
    TableWorkload { workload: Workload::Put, clients: 64, node: RowNode::Target, connections: None },
    TableWorkload { workload: Workload::Range, clients: 64, node: RowNode::Target, connections: None },
    TableWorkload { workload: Workload::RangeSerializable, clients: 64, node: RowNode::Target, connections: None },
    TableWorkload { workload: Workload::Put, clients: 2000, node: RowNode::Target, connections: Some(200) },
];

/// Flags of `raftkv bench compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Systems to run, comma separated, in this order within each round.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [System::Etcd, System::Raftkv])]
    pub systems: Vec<System>,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_bin: PathBuf,
    /// The raftkv binary, started as `raftkv serve` (default: this executable).
    #[arg(long)]
    pub raftkv_bin: Option<PathBuf>,
    /// Rounds; each runs every system once (etcd, raftkv, etcd, raftkv, ...).
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
    /// Measured seconds per workload per round.
    #[arg(long = "duration", visible_alias = "duration-seconds", default_value_t = 10.0)]
    pub duration_seconds: f64,
    /// Unmeasured seconds of load before each measurement.
    #[arg(long, default_value_t = 1.0)]
    pub warmup_seconds: f64,
    /// CI smoke mode: one round, a few hundred operations per workload, no warmup; fails if
    /// any operation failed.
    #[arg(long)]
    pub quick: bool,
    /// Parent of the data directories (must be on disk; default $CARGO_TARGET_DIR, ./target or .).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// First port: etcd uses base..base+2 (clients) and base+10.. (peers); raftkv base+100 onwards.
    #[arg(long, default_value_t = 23790)]
    pub base_port: u16,
    /// Which nodes the clients talk to.
    #[arg(long, value_enum, default_value_t = Target::All)]
    pub target: Target,
    /// gRPC connections of the multi-client workloads (spread over the nodes --target names).
    #[arg(long = "conns", default_value_t = 8)]
    pub connections: usize,
    /// Keys preloaded for the range workloads.
    #[arg(long = "preload", default_value_t = 10_000)]
    pub preload_keys: u64,
    /// Key length in bytes.
    #[arg(long = "key-size", default_value_t = 8)]
    pub key_size_bytes: usize,
    /// Value length in bytes.
    #[arg(long = "value-size", default_value_t = 256)]
    pub value_size_bytes: usize,
    /// Seed of the key choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Install etcd with apt-get if it is missing (needs root).
    #[arg(long)]
    pub install_etcd: bool,
    /// Keep the data directories and logs afterwards.
    #[arg(long)]
    pub keep_data: bool,
    /// Print the table as one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// etcd's benchmark tool (etcd v3.4.23 `tools/benchmark`), run on the rows of its own
    /// table. Default: `$RAFTKV_ETCD_BENCHMARK`, `/tmp/etcd-benchmark/benchmark` or
    /// `etcd-benchmark` in PATH; when none is found those rows are skipped (and the output says so).
    #[arg(long)]
    pub etcd_benchmark: Option<PathBuf>,
    /// Skip the rows measured with etcd's benchmark tool.
    #[arg(long, conflicts_with = "etcd_benchmark")]
    pub no_etcd_benchmark: bool,
    /// Multiplies the requests of each etcd-tool row per round (at 1: 3,000 to 40,000).
    #[arg(long, default_value_t = 1.0)]
    pub etcd_benchmark_scale: f64,
}

/// Runs the comparison described by `args` and prints its table.
pub fn main_with_args(args: CompareArgs) -> Result<()> {
    if args.systems.is_empty() || args.rounds == 0 {
        bail!("--systems must name a system and --rounds must be at least 1");
    }
    let programs = resolve_programs(&args)?;
    let work_root = args.work_dir.clone().unwrap_or_else(default_work_root);
    std::fs::create_dir_all(&work_root).with_context(|| format!("creating {}", work_root.display()))?;
    require_disk(&work_root)?;
    let work_directory = tempfile::Builder::new()
        .prefix("raftkv-bench-compare-")
        .tempdir_in(&work_root)
        .with_context(|| format!("creating a directory in {}", work_root.display()))?;
    eprintln!("bench compare: data directories under {}", work_directory.path().display());
    let plan = Plan { args: args.clone(), programs, directory: work_directory.path().to_path_buf() };
    let runtime = crate::build_runtime()?;
    let results = runtime.block_on(async {
        tokio::select! {
            results = plan.run_rounds() => results,
            signal = shutdown_signal() => Err(anyhow!("stopped by {}; servers killed", signal?)),
        }
    });
    let results = match results {
        Ok(results) => results,
        // The servers are already killed; keep their data and logs for inspection.
        Err(error) => return Err(error.context(format!("logs kept in {}", work_directory.keep().display()))),
    };
    if args.keep_data {
        eprintln!("bench compare: kept {}", work_directory.keep().display());
    }
    let errors = print_tables(&args, &results, plan.programs.etcd_tool_skipped.clone())?;
    if args.quick && errors > 0 {
        bail!("--quick: {errors} operations failed (see the table)");
    }
    Ok(())
}

/// Prints both tables (text or JSON) and returns the failed operations they count.
fn print_tables(args: &CompareArgs, results: &Results, tool_skipped: Option<String>) -> Result<u64> {
    let labels: Vec<String> = TABLE_WORKLOADS.iter().map(TableWorkload::label).collect();
    let rows = report::rows(results, &labels, &args.systems);
    let ratios: Vec<Option<f64>> = rows.iter().map(|row| row.throughput_ratio_raftkv_to_etcd).collect();
    let tool_rows = tool_rows::table_rows(&results.tool, &args.systems, &ratios);
    let errors: u64 = rows.iter().flat_map(|row| &row.systems).map(|figures| figures.errors).sum::<u64>()
        + tool_rows.iter().flat_map(|row| &row.systems).map(|figures| figures.errors).sum::<u64>();
    if args.json {
        println!("{}", serde_json::to_string(&ComparisonReport::new(rows, tool_rows, tool_skipped, results))?);
        return Ok(errors);
    }
    print!("{}", report::render(&rows, &args.systems, results));
    match tool_skipped {
        Some(reason) => println!("etcd's benchmark tool: its rows were skipped ({reason})"),
        None => {
            let rounds = if args.quick { 1 } else { args.rounds };
            println!("\netcd's benchmark tool (etcd v3.4.23 tools/benchmark), median of {rounds} round(s):");
            print!("{}", tool_rows::render(&tool_rows, &args.systems));
        }
    }
    Ok(errors)
}

/// Waits for Ctrl-C or SIGTERM and names it.
async fn shutdown_signal() -> Result<&'static str> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map(|()| "Ctrl-C").map_err(Into::into),
        _ = terminate.recv() => Ok("SIGTERM"),
    }
}

/// The binaries: each system's, and etcd's benchmark tool (or why it is skipped).
#[derive(Debug, Clone)]
struct Programs {
    etcd: PathBuf,
    raftkv: PathBuf,
    etcd_tool: Option<PathBuf>,
    etcd_tool_skipped: Option<String>,
}

fn resolve_programs(args: &CompareArgs) -> Result<Programs> {
    if args.systems.contains(&System::Etcd) {
        ensure_etcd(args)?;
    }
    let raftkv = match &args.raftkv_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("finding the current executable")?,
    };
    if args.systems.contains(&System::Raftkv) && !raftkv.is_file() {
        bail!("raftkv binary {} not found (pass --raftkv-bin)", raftkv.display());
    }
    let (etcd_tool, etcd_tool_skipped) = resolve_etcd_tool(args)?;
    if let Some(reason) = &etcd_tool_skipped {
        eprintln!("bench compare: etcd's benchmark tool: its rows are skipped ({reason})");
    }
    Ok(Programs { etcd: args.etcd_bin.clone(), raftkv, etcd_tool, etcd_tool_skipped })
}

/// etcd's benchmark tool, or why its rows are skipped. A path given but wrong is an error.
fn resolve_etcd_tool(args: &CompareArgs) -> Result<(Option<PathBuf>, Option<String>)> {
    if args.no_etcd_benchmark {
        return Ok((None, Some("--no-etcd-benchmark".to_string())));
    }
    if !(args.etcd_benchmark_scale.is_finite() && args.etcd_benchmark_scale > 0.0) {
        bail!("--etcd-benchmark-scale must be a positive number");
    }
    match etcd_tool::locate(args.etcd_benchmark.as_deref())? {
        Some(path) => Ok((Some(path), None)),
        None => {
            let looked = format!(
                "not found: no --etcd-benchmark, ${}, {} or {} in PATH; {}",
                etcd_tool::ETCD_BENCHMARK_ENV,
                etcd_tool::AUTO_DETECT_PATHS.join(", "),
                etcd_tool::PATH_NAME,
                etcd_tool::BUILD_HINT
            );
            Ok((None, Some(looked)))
        }
    }
}

/// Fails with the install command when etcd is missing, or installs it with `--install-etcd` as root.
fn ensure_etcd(args: &CompareArgs) -> Result<()> {
    if args.etcd_bin.is_file() {
        return Ok(());
    }
    let missing = format!("etcd not found at {}", args.etcd_bin.display());
    if !args.install_etcd {
        bail!("{missing}; install it with `{ETCD_INSTALL_COMMAND}` (as root; or pass --install-etcd), or leave it out with --systems raftkv");
    }
    if !process_stats::running_as_root() {
        bail!("{missing}; --install-etcd needs root: run `sudo {ETCD_INSTALL_COMMAND}`");
    }
    for command in ["apt-get update", ETCD_INSTALL_COMMAND] {
        eprintln!("bench compare: running {command}");
        let mut words = command.split_whitespace();
        let program = words.next().unwrap_or("apt-get");
        let status = std::process::Command::new(program).args(words).status().with_context(|| command.to_string())?;
        if !status.success() {
            bail!("`{command}` failed ({status})");
        }
    }
    if !args.etcd_bin.is_file() {
        bail!("{missing} even after `{ETCD_INSTALL_COMMAND}`");
    }
    Ok(())
}

/// A resolved comparison: what to run and where.
struct Plan {
    args: CompareArgs,
    programs: Programs,
    directory: PathBuf,
}

impl Plan {
    /// Every round, each system in turn on a fresh cluster.
    async fn run_rounds(&self) -> Result<Results> {
        let mut results = Results::default();
        let rounds = if self.args.quick { 1 } else { self.args.rounds };
        for round in 1..=rounds {
            for &system in &self.args.systems {
                let spec = self.cluster_spec(system, round);
                eprintln!("bench compare: round {round}/{rounds}: starting 3-node {}", system.name());
                let mut cluster = Cluster::start(&spec)?;
                cluster.wait_ready(READY_TIMEOUT).await?;
                self.run_load_generator_rows(&mut cluster, round, system, &mut results).await?;
                self.run_tool_rows(&mut cluster, round, system, &mut results).await?;
                results.record_peak_resident(system, &cluster.peak_resident_bytes()?);
                cluster.stop();
                if !self.args.keep_data {
                    let _ = std::fs::remove_dir_all(&spec.directory);
                }
            }
        }
        Ok(results)
    }

    /// The rows of [`TABLE_WORKLOADS`], with this crate's load generator.
    async fn run_load_generator_rows(
        &self,
        cluster: &mut Cluster,
        round: u32,
        system: System,
        results: &mut Results,
    ) -> Result<()> {
        let ticks_per_second = process_stats::ticks_per_second() as f64;
        for (row, table_workload) in TABLE_WORKLOADS.iter().enumerate() {
            let preloaded = TABLE_WORKLOADS[..row].iter().any(is_read);
            let measurement = self.measure(cluster, table_workload, preloaded, ticks_per_second).await;
            let measurement =
                measurement.with_context(|| format!("{} on {}", table_workload.label(), system.name()))?;
            report_run(round, system, table_workload, &measurement);
            results.record(row, system, &measurement);
        }
        Ok(())
    }

    /// The rows of [`TOOL_ROWS`], with etcd's benchmark tool, when it was found.
    async fn run_tool_rows(
        &self,
        cluster: &mut Cluster,
        round: u32,
        system: System,
        results: &mut Results,
    ) -> Result<()> {
        let Some(program) = &self.programs.etcd_tool else { return Ok(()) };
        let ticks_per_second = process_stats::ticks_per_second() as f64;
        for (row, tool_row) in TOOL_ROWS.iter().enumerate() {
            let arguments = self.tool_arguments(cluster, tool_row).await?;
            eprintln!(
                "bench compare: round {round} {}: running {} {}",
                system.name(),
                program.display(),
                arguments.join(" ")
            );
            let ticks_at_start = cluster.cpu_ticks()?;
            let report = etcd_tool::run(program, &arguments, TOOL_RUN_TIMEOUT)
                .await
                .with_context(|| format!("etcd's benchmark tool: {} on {}", tool_row.label(), system.name()))?;
            let cpu_seconds = cluster.cpu_ticks()?.saturating_sub(ticks_at_start) as f64 / ticks_per_second;
            cluster.require_running()?;
            report_tool_run(round, system, tool_row, &report);
            results.tool.record(row, system, ToolRun { report, cpu_seconds });
        }
        Ok(())
    }

    /// The tool's command line for `tool_row` against `cluster`.
    async fn tool_arguments(&self, cluster: &Cluster, tool_row: &ToolRow) -> Result<Vec<String>> {
        let args = &self.args;
        let endpoints = self.endpoints_for(cluster, tool_row.node).await?;
        // The range row reads key 0, which the load generator's range rows preloaded.
        let read_key = String::from_utf8_lossy(&crate::encode_key(0, args.key_size_bytes)).into_owned();
        let operation =
            tool_row.operation(args.key_size_bytes, args.value_size_bytes, crate::args::DEFAULT_KEY_SPACE, &read_key);
        let total = tool_row.total_for(args.etcd_benchmark_scale, args.quick);
        Ok(etcd_tool::arguments(&endpoints, tool_row.connections, tool_row.clients, &operation, total))
    }

    /// The endpoints a row's clients connect to.
    async fn endpoints_for(&self, cluster: &Cluster, node: RowNode) -> Result<Vec<String>> {
        Ok(match (node, self.args.target) {
            (RowNode::Target, Target::All) => cluster.endpoints(),
            (RowNode::Target, Target::Leader) | (RowNode::Leader, _) => vec![cluster.leader_endpoint().await?],
            (RowNode::Follower, _) => vec![cluster.follower_endpoint().await?],
        })
    }

    fn cluster_spec(&self, system: System, round: u32) -> ClusterSpec {
        let (program, leading_arguments, offset) = match system {
            System::Etcd => (self.programs.etcd.clone(), Vec::new(), 0),
            System::Raftkv => (self.programs.raftkv.clone(), vec!["serve".to_string()], 100),
        };
        ClusterSpec {
            program,
            leading_arguments,
            node_count: NODE_COUNT,
            client_port: self.args.base_port + offset,
            peer_port: self.args.base_port + offset + 10,
            directory: self.directory.join(format!("round-{round}-{}", system.name())),
        }
    }

    /// Runs one workload on `cluster`, sampling the nodes' CPU time when measuring starts
    /// and after it ends. `preloaded`: an earlier workload on this cluster already wrote the keys.
    async fn measure(
        &self,
        cluster: &mut Cluster,
        table_workload: &TableWorkload,
        preloaded: bool,
        ticks_per_second: f64,
    ) -> Result<Measurement> {
        let endpoints = self.endpoints_for(cluster, table_workload.node).await?;
        let config = self.run_config(endpoints, table_workload, preloaded)?;
        let ticks_at_start = Cell::new(None);
        let sample = || ticks_at_start.set(Some(cluster.cpu_ticks()));
        let outcome = run(&config, &sample).await?;
        let ticks_at_end = cluster.cpu_ticks()?;
        let ticks_at_start = ticks_at_start.take().ok_or_else(|| anyhow!("measurement never started"))??;
        cluster.require_running()?;
        Ok(Measurement {
            operations: outcome.summary.operations,
            errors: outcome.summary.errors,
            elapsed_seconds: outcome.summary.elapsed_seconds,
            cpu_seconds: ticks_at_end.saturating_sub(ticks_at_start) as f64 / ticks_per_second,
            histogram: outcome.histogram,
        })
    }

    fn run_config(&self, endpoints: Vec<String>, table_workload: &TableWorkload, preloaded: bool) -> Result<RunConfig> {
        let args = &self.args;
        let (limit, warmup, preload_keys) = if args.quick {
            (RunLimit::Total(QUICK_TOTAL_OPERATIONS), Duration::ZERO, args.preload_keys.min(QUICK_TOTAL_OPERATIONS))
        } else {
            let duration = seconds_to_duration("--duration", args.duration_seconds)?;
            (
                RunLimit::Duration(duration),
                seconds_to_duration("--warmup-seconds", args.warmup_seconds)?,
                args.preload_keys,
            )
        };
        let config = RunConfig {
            endpoints,
            clients: table_workload.clients,
            connections: table_workload.connections.unwrap_or(args.connections).clamp(1, table_workload.clients),
            limit,
            warmup,
            key_size_bytes: args.key_size_bytes,
            value_size_bytes: args.value_size_bytes,
            key_space: crate::args::DEFAULT_KEY_SPACE,
            preload_keys,
            skip_preload: preloaded,
            workload: table_workload.workload,
            read_percent: 50,
            seed: args.seed,
            request_timeout: Duration::from_secs(10),
            show_progress: !args.json,
        };
        config.validate()?;
        Ok(config)
    }
}

fn is_read(table_workload: &TableWorkload) -> bool {
    matches!(table_workload.workload, Workload::Range | Workload::RangeSerializable)
}

fn report_run(round: u32, system: System, table_workload: &TableWorkload, measurement: &Measurement) {
    let latency = measurement.histogram.summary();
    eprintln!(
        "bench compare: round {round} {}: {}: {:.0} ops/s, p50 {} ms, p99 {} ms, {} errors, {:.2} cpu-s",
        system.name(),
        table_workload.label(),
        crate::stats::throughput(measurement.operations, measurement.elapsed_seconds),
        crate::stats::milliseconds(latency.p50_microseconds),
        crate::stats::milliseconds(latency.p99_microseconds),
        measurement.errors,
        measurement.cpu_seconds
    );
}

fn report_tool_run(round: u32, system: System, tool_row: &ToolRow, report: &etcd_tool::ToolReport) {
    let milliseconds = |percent: f64| report.percentile_seconds(percent).map_or(f64::NAN, |seconds| seconds * 1000.0);
    eprintln!(
        "bench compare: round {round} {} (etcd's tool): {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
        system.name(),
        tool_row.label(),
        report.requests_per_second,
        milliseconds(50.0),
        milliseconds(99.0),
        report.errors
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Mounts [`CompareArgs`] alone.
    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        args: CompareArgs,
    }

    fn parse(arguments: &[&str]) -> CompareArgs {
        TestCli::try_parse_from(arguments).unwrap().args
    }

    #[test]
    fn etcd_tool_rows_are_skipped_on_request_and_a_wrong_tool_fails() {
        let (tool, reason) = resolve_etcd_tool(&parse(&["compare", "--no-etcd-benchmark"])).unwrap();
        assert_eq!((tool, reason.as_deref()), (None, Some("--no-etcd-benchmark")));
        let error = resolve_etcd_tool(&parse(&["compare", "--etcd-benchmark", "/nonexistent/benchmark"])).unwrap_err();
        assert!(format!("{error:#}").contains("not found at /nonexistent/benchmark"), "{error:#}");
        assert!(resolve_etcd_tool(&parse(&["compare", "--etcd-benchmark-scale", "0"])).is_err());
        assert!(TestCli::try_parse_from(["compare", "--no-etcd-benchmark", "--etcd-benchmark", "/x"]).is_err());
    }

    #[test]
    fn table_labels() {
        let labels: Vec<String> = TABLE_WORKLOADS.iter().map(TableWorkload::label).collect();
        assert_eq!(
            labels,
            [
                "put, 1 client to the leader",
                "put, 1 client to a follower",
                "put, 64 clients",
                "range linearizable, 64 clients",
                "range serializable, 64 clients",
                "put, 2000 clients (200 conns)"
            ]
        );
    }
}
