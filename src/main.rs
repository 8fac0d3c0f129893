//! The `raftkv` binary.
//!
//! `raftkv sim` runs the deterministic cluster simulator (see the `sim` crate): many
//! seeded runs, each checking every Raft safety invariant after every step. Its last
//! stdout line is a summary `sim: runs=… violations=… steps=… commits=… elapsed_ms=…`;
//! on a violation it prints the seed, the invariant, the trace tail and the command that
//! replays the run, and exits with status 1. `raftkv sim --server` runs the server simulator
//! (crates/server-sim) instead; its summary line is `sim-server: runs=… violations=… steps=…
//! acknowledged=… elapsed_ms=…`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};

/// A Raft consensus library and an etcd-v3-compatible replicated key-value server.
#[derive(Parser, Debug)]
#[command(name = "raftkv", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start: the size of `raftkv serve`'s ~90 flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Run one node of a cluster; takes etcd's flags (`raftkv serve` replaces `etcd`).
    Serve(server::config::ServeArgs),
    /// Start a local N-node cluster on loopback for trying raftkv out (Ctrl-C stops it).
    Up(server::up::UpArgs),
    /// Load generator over the etcd v3 API (drives raftkv or etcd), and the comparison with etcd.
    Bench(bench::BenchArgs),
    /// Run the deterministic cluster simulator (or render a protocol scenario).
    Sim(SimArgs),
    /// Serve the Raft playground: a simulated cluster you drive step by step.
    Playground(dashboard::PlaygroundArgs),
    /// Fault-inject a real local cluster under load and check linearizability.
    Chaos(chaos::ChaosArgs),
    /// Backups in etcd's format: `snapshot status FILE`, `snapshot restore FILE` (etcdctl's flags).
    Snapshot(server::backup::SnapshotArgs),
}

/// Options of `raftkv sim`.
#[derive(Args, Debug, Clone)]
struct SimArgs {
    /// Number of seeded runs.
    #[arg(long, default_value_t = 1)]
    runs: u64,
    /// Seed of the first run (run i uses start-seed + i). Default: chosen from the clock.
    #[arg(long)]
    start_seed: Option<u64>,
    /// Cluster size (3, 5 or 7 are typical; 1..=9 allowed).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Faults to inject: comma list of loss,dup,reorder,delay,partition,oneway,crash,torn,snapshot,churn
    /// (membership changes and leader transfers); or all / none.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Events per run while faults are injected (default: the simulator's).
    #[arg(long)]
    steps: Option<u64>,
    /// Concurrent clients per run.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Worker threads (each run is single-threaded; results do not depend on this).
    #[arg(long)]
    jobs: Option<usize>,
    /// Keep going after a violation (report every failing seed).
    #[arg(long)]
    keep_going: bool,
    /// Instead of simulating, print a scripted scenario step by step (walkthrough, figure7, figure8).
    #[arg(long)]
    scenario: Option<String>,
    /// Instead of a batch, print the sabotage table: for each deliberate core or driver bug,
    /// the runs of the default campaign (from --start-seed, default 1; sizes 3, 5, 7) to the first violation.
    #[arg(long)]
    sabotage_table: bool,
    /// Most runs per sabotage for --sabotage-table.
    #[arg(long, default_value_t = 2000)]
    sabotage_runs_max: u64,
    /// Plant a deliberate bug in every run of the batch (checker self-test), e.g. commit-previous-term.
    #[arg(long)]
    sabotage: Option<String>,
    /// Run the server simulator instead (crates/server-sim): the real server core, WAL and
    /// store on simulated disks and network, with etcd clients (uses --runs, --start-seed,
    /// --nodes, --jobs, --keep-going).
    #[arg(long)]
    server: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(_) => run_serve(),
        Command::Up(arguments) => report(server::up::run(arguments), "up"),
        Command::Bench(arguments) => report(bench::main_with_args(arguments), "bench"),
        Command::Playground(arguments) => report(dashboard::run_playground(arguments), "playground"),
        Command::Chaos(arguments) => report(chaos::main_with_args(arguments), "chaos"),
        Command::Snapshot(arguments) => report(server::backup::run(arguments), "snapshot"),
        Command::Sim(arguments) => {
            // A panic inside a run is caught and reported as a violation; print one line, not a backtrace.
            std::panic::set_hook(Box::new(|info| eprintln!("raftkv: panic: {info}")));
            run_sim_command(&arguments)
        }
    }
}

/// `raftkv serve`: reads the flags again with the `ETCD_*` environment variables and
/// `--config-file` (clap has already checked the command line and answered `--help`).
fn run_serve() -> ExitCode {
    let command_line: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
    let loaded = match server::config::load(command_line, std::env::vars_os().collect()) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("raftkv serve: {error}");
            return ExitCode::FAILURE;
        }
    };
    if loaded.args.version {
        println!("raftkv Version: {}\nAPI Version: 3.4", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Err(error) = init_logging(&loaded.args) {
        eprintln!("raftkv serve: {error}");
        return ExitCode::FAILURE;
    }
    loaded.log();
    report(server::serve::run(loaded.args), "serve")
}

/// Logs as `--logger`, `--log-level` and `--log-outputs` say (`RUST_LOG`, when set, selects
/// levels instead of `--log-level`).
fn init_logging(args: &server::config::ServeArgs) -> Result<(), String> {
    use server::config::logging::{LogOutput, LogSettings};
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    let settings = LogSettings::from_args(args)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(settings.level));
    let mut writer: Option<BoxMakeWriter> = None;
    let mut ansi = true;
    for output in &settings.outputs {
        let next = match output {
            LogOutput::Stderr => {
                ansi &= std::io::stderr().is_terminal();
                BoxMakeWriter::new(std::io::stderr)
            }
            LogOutput::Stdout => {
                ansi &= std::io::stdout().is_terminal();
                BoxMakeWriter::new(std::io::stdout)
            }
            LogOutput::File(path) => {
                ansi = false;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|error| format!("--log-outputs: cannot open {}: {error}", path.display()))?;
                BoxMakeWriter::new(std::sync::Arc::new(file))
            }
        };
        writer = Some(match writer {
            None => next,
            Some(previous) => BoxMakeWriter::new(previous.and(next)),
        });
    }
    let writer = writer.ok_or("--log-outputs names no target")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = if settings.json { builder.json().try_init() } else { builder.with_ansi(ansi).try_init() };
    Ok(())
}

fn report(result: anyhow::Result<()>, command: &str) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("raftkv {command}: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_sim_command(arguments: &SimArgs) -> ExitCode {
    if arguments.server {
        return run_server_sim(arguments);
    }
    if arguments.sabotage_table {
        let (start_seed, runs_max) = (arguments.start_seed.unwrap_or(1), arguments.sabotage_runs_max);
        let rows = sim::sabotage_table::sabotage_table(start_seed, runs_max);
        print!("{}", sim::sabotage_table::render_table(&rows, runs_max));
        let missed = rows.iter().filter(|row| row.runs_to_first_violation.is_none()).count();
        return if missed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    if let Some(name) = &arguments.scenario {
        return match raft::testkit::render_scenario(name) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(reason) => {
                eprintln!("raftkv sim: scenario {name:?}: {reason}");
                ExitCode::from(2)
            }
        };
    }
    let faults = match sim::Faults::parse(&arguments.faults) {
        Ok(faults) => faults,
        Err(reason) => {
            eprintln!("raftkv sim: {reason}");
            return ExitCode::from(2);
        }
    };
    let start_seed = arguments.start_seed.unwrap_or_else(|| {
        // The only non-deterministic input: the CLI picks a seed; the simulator never reads the clock.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or(0);
        let seed = raft::SplitMix64::new(nanos as u64).next_u64() >> 16;
        println!("sim: no --start-seed given, using --start-seed {seed}");
        seed
    });
    let sabotage = match arguments.sabotage.as_deref().map(sim::Sabotage::parse).transpose() {
        Ok(sabotage) => sabotage.unwrap_or_default(),
        Err(reason) => {
            eprintln!("raftkv sim: {reason}");
            return ExitCode::from(2);
        }
    };
    let mut base = sim::Options {
        nodes: arguments.nodes as usize,
        faults,
        clients: arguments.clients,
        sabotage,
        ..sim::Options::default()
    };
    if let Some(steps) = arguments.steps {
        base.steps_max = steps;
    }
    let batch = Batch { arguments: arguments.clone(), base, start_seed };
    let outcome = batch.run();
    outcome.report(&batch);
    if outcome.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `raftkv sim --server`: seeded runs of the server simulator on `--jobs` threads. Prints
/// each failing run (seed, violations, trace, replay command) and the summary line
/// `sim-server: runs=… violations=… steps=… acknowledged=… elapsed_ms=…`; exits 1 on a violation.
fn run_server_sim(arguments: &SimArgs) -> ExitCode {
    let start_seed = arguments.start_seed.unwrap_or(1);
    let nodes = arguments.nodes as usize;
    let jobs = arguments.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
    let started = Instant::now();
    let next_index = AtomicU64::new(0);
    let stop_after = AtomicU64::new(u64::MAX);
    let mut results: Vec<(u64, server_sim::RunResult)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let index = next_index.fetch_add(1, Ordering::Relaxed);
                        if index >= arguments.runs || index > stop_after.load(Ordering::Relaxed) {
                            return done;
                        }
                        let options =
                            server_sim::campaign_options(start_seed, index, nodes, server_sim::Sabotage::None);
                        let result = server_sim::run(&options);
                        if !result.violations.is_empty() && !arguments.keep_going {
                            stop_after.fetch_min(index, Ordering::Relaxed);
                        }
                        done.push((index, result));
                    }
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap_or_default()).collect()
    });
    results.sort_by_key(|(index, _)| *index);
    results.retain(|(index, _)| *index <= stop_after.load(Ordering::Relaxed));
    let failures: Vec<&server_sim::RunResult> =
        results.iter().map(|(_, result)| result).filter(|result| !result.violations.is_empty()).collect();
    for result in &failures {
        println!("sim-server: VIOLATION {}", result.describe());
        println!("  replay: cargo run --release -- sim --server --runs 1 --start-seed {} --nodes {nodes}", result.seed);
    }
    let steps: u64 = results.iter().map(|(_, result)| result.steps).sum();
    let acknowledged: u64 = results.iter().map(|(_, result)| result.acknowledged).sum();
    println!(
        "sim-server: runs={} violations={} steps={steps} acknowledged={acknowledged} elapsed_ms={}",
        results.len(),
        failures.len(),
        started.elapsed().as_millis()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A batch of runs with consecutive seeds.
struct Batch {
    arguments: SimArgs,
    base: sim::Options,
    start_seed: u64,
}

/// Aggregated results of a batch.
#[derive(Default)]
struct Outcome {
    runs: u64,
    steps: u64,
    commits: u64,
    elapsed: Duration,
    /// Failing runs (index, result), in run order.
    failures: Vec<(u64, sim::RunResult)>,
}

/// Per-run figures kept until the batch ends (so totals do not depend on thread timing).
struct RunFigures {
    index: u64,
    steps: u64,
    commits: u64,
    failure: Option<sim::RunResult>,
}

impl Batch {
    fn options_for(&self, index: u64) -> sim::Options {
        sim::Options { seed: self.start_seed.wrapping_add(index), ..self.base.clone() }
    }

    fn run(&self) -> Outcome {
        let started = Instant::now();
        let jobs =
            self.arguments.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
        let next_index = AtomicU64::new(0);
        let stop_after = AtomicU64::new(u64::MAX);
        let mut figures = Vec::new();
        let mut progress = Progress::new(self.arguments.runs);
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::channel::<RunFigures>();
            for _ in 0..jobs {
                let sender = sender.clone();
                let (next_index, stop_after) = (&next_index, &stop_after);
                scope.spawn(move || loop {
                    let index = next_index.fetch_add(1, Ordering::Relaxed);
                    if index >= self.arguments.runs || index > stop_after.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = sim::run(&self.options_for(index));
                    let failed = !result.violations.is_empty();
                    if failed && !self.arguments.keep_going {
                        stop_after.fetch_min(index, Ordering::Relaxed);
                    }
                    let (steps, commits) = (result.steps, result.commits);
                    let failure = failed.then_some(result);
                    if sender.send(RunFigures { index, steps, commits, failure }).is_err() {
                        break;
                    }
                });
            }
            drop(sender);
            for run in receiver {
                progress.update(figures.len() as u64 + 1, run.failure.is_some(), started);
                figures.push(run);
            }
        });
        progress.finish();
        Self::aggregate(figures, stop_after.load(Ordering::Relaxed), started.elapsed())
    }

    fn aggregate(mut figures: Vec<RunFigures>, stop_after: u64, elapsed: Duration) -> Outcome {
        figures.sort_by_key(|run| run.index);
        let mut outcome = Outcome { elapsed, ..Outcome::default() };
        for run in figures.into_iter().filter(|run| run.index <= stop_after) {
            outcome.runs += 1;
            outcome.steps += run.steps;
            outcome.commits += run.commits;
            if let Some(failure) = run.failure {
                outcome.failures.push((run.index, failure));
            }
        }
        outcome
    }

    fn replay_command(&self, seed: u64) -> String {
        let mut command = format!(
            "cargo run --release -- sim --runs 1 --start-seed {seed} --nodes {} --faults {}",
            self.base.nodes, self.base.faults
        );
        if let Some(steps) = self.arguments.steps {
            command += &format!(" --steps {steps}");
        }
        if self.arguments.clients != 3 {
            command += &format!(" --clients {}", self.arguments.clients);
        }
        command
    }
}

impl Outcome {
    fn report(&self, batch: &Batch) {
        for (index, result) in &self.failures {
            let seed = batch.options_for(*index).seed;
            println!(
                "sim: VIOLATION in run {index} (seed {seed}, nodes {}, faults {})",
                batch.base.nodes, batch.base.faults
            );
            for violation in &result.violations {
                println!("  invariant: {}", violation.invariant);
                println!("  step:      {}", violation.step);
                println!("  message:   {}", violation.message);
            }
            println!("  last {} trace steps:", result.trace_tail.len());
            for line in &result.trace_tail {
                println!("    {line}");
            }
            println!("  replay: {}", batch.replay_command(seed));
        }
        println!(
            "sim: runs={} violations={} steps={} commits={} elapsed_ms={}",
            self.runs,
            self.failures.len(),
            self.steps,
            self.commits,
            self.elapsed.as_millis()
        );
    }
}

/// A one-line progress bar on stderr, shown only when stderr is a terminal.
struct Progress {
    total: u64,
    enabled: bool,
    failures: u64,
    last_drawn: Option<Instant>,
}

impl Progress {
    fn new(total: u64) -> Self {
        Progress { total, enabled: std::io::stderr().is_terminal() && total > 1, failures: 0, last_drawn: None }
    }

    fn update(&mut self, done: u64, failed: bool, started: Instant) {
        self.failures += u64::from(failed);
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.last_drawn.is_some_and(|last| now - last < Duration::from_millis(100)) && done < self.total {
            return;
        }
        self.last_drawn = Some(now);
        const WIDTH: u64 = 30;
        let filled = (done * WIDTH / self.total.max(1)) as usize;
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH as usize - filled));
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        let mut stderr = std::io::stderr();
        let _ =
            write!(stderr, "\rsim [{bar}] {done}/{} runs, {} violations, {rate:.0} runs/s ", self.total, self.failures);
        let _ = stderr.flush();
    }

    fn finish(&self) {
        if self.enabled && self.last_drawn.is_some() {
            eprintln!();
        }
    }
}
