//! One load-generator run: connect, preload, warm up, measure, summarise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use proto::etcdserverpb::kv_client::KvClient;
use proto::tonic::transport::Channel;
use tokio::task::JoinSet;

use crate::args::Workload;
use crate::client::{batch_put_request, connect_all, status_error, Worker, WorkerSettings};
use crate::keys::{digits_needed, make_value, KeyRandom};
use crate::stats::{throughput, LatencyHistogram, Summary};

/// Puts per preload txn (etcd's default `--max-txn-ops` is 128).
const PRELOAD_BATCH_KEYS: u64 = 64;
/// Preload txns in flight at once.
const PRELOAD_CONCURRENCY: usize = 16;
/// Pause of a client after a failed request, so a dead server is not hammered in a busy loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// How often the progress bar is refreshed.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Most clients or connections a run accepts (each client is a task; bounded memory).
const MAXIMUM_CLIENTS: usize = 100_000;

/// When a run stops measuring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunLimit {
    /// After this many measured operations (successful or not).
    Total(u64),
    /// After this much measured time.
    Duration(Duration),
}

/// Everything a run needs; built from [`crate::RunArgs`] or by the comparison harness.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Client endpoints (`host:port` or URLs).
    pub endpoints: Vec<String>,
    /// Concurrent clients, one request in flight each.
    pub clients: usize,
    /// gRPC connections.
    pub connections: usize,
    /// When to stop.
    pub limit: RunLimit,
    /// Unmeasured load before measuring.
    pub warmup: Duration,
    /// Key length in bytes.
    pub key_size_bytes: usize,
    /// Value length in bytes.
    pub value_size_bytes: usize,
    /// Distinct keys written.
    pub key_space: u64,
    /// Keys written before a reading workload (capped at `key_space`).
    pub preload_keys: u64,
    /// Assume the keys were already preloaded (by an earlier run against the same cluster).
    pub skip_preload: bool,
    /// What each operation does.
    pub workload: Workload,
    /// Percentage of ranges in the mixed workload.
    pub read_percent: u8,
    /// Seed of every client's key generator.
    pub seed: u64,
    /// Deadline of each request.
    pub request_timeout: Duration,
    /// Draw a progress bar on stderr (only when stderr is a terminal).
    pub show_progress: bool,
}

impl RunConfig {
    /// Checks the configuration for values a run cannot use.
    pub fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() || self.endpoints.iter().any(String::is_empty) {
            bail!("--endpoints must name at least one endpoint");
        }
        if self.clients == 0 || self.clients > MAXIMUM_CLIENTS {
            bail!("--clients must be between 1 and {MAXIMUM_CLIENTS}");
        }
        if self.connections == 0 || self.connections > self.clients {
            bail!("--conns must be between 1 and --clients ({})", self.clients);
        }
        if self.key_space == 0 {
            bail!("--key-space must be at least 1");
        }
        let needed = digits_needed(self.key_space);
        if self.key_size_bytes < needed {
            bail!(
                "--key-size {} is too small for --key-space {} (needs {needed} bytes)",
                self.key_size_bytes,
                self.key_space
            );
        }
        if self.workload.needs_preload() && self.preloaded_key_count() == 0 {
            bail!("workload {} reads preloaded keys: --preload must be at least 1", self.workload.name());
        }
        Ok(())
    }

    /// Keys `0..n` that a reading workload preloads and reads.
    pub fn preloaded_key_count(&self) -> u64 {
        self.preload_keys.min(self.key_space)
    }
}

/// The result of a run: its summary and the raw latency histogram (for merging across runs).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Counts, throughput and percentiles.
    pub summary: Summary,
    /// Latencies of the successful measured operations.
    pub histogram: LatencyHistogram,
}

/// Runs one workload as configured. `measurement_started` is called once, when warmup ends
/// and measured operations begin (the comparison harness samples server CPU time there).
pub async fn run(config: &RunConfig, measurement_started: &dyn Fn()) -> Result<RunOutcome> {
    config.validate()?;
    let channels = connect_all(&config.endpoints, config.connections, config.request_timeout).await?;
    if config.workload.needs_preload() && !config.skip_preload {
        preload(config, &channels).await?;
    }
    let value = make_value(config.value_size_bytes, config.seed);
    let settings = WorkerSettings {
        workload: config.workload,
        key_size_bytes: config.key_size_bytes,
        write_key_count: config.key_space,
        read_key_count: config.preloaded_key_count(),
        read_percent: config.read_percent,
        value,
    };
    let shared = Arc::new(SharedState::new(config));
    let mut clients = JoinSet::new();
    for index in 0..config.clients {
        let random = KeyRandom::for_client(config.seed, index as u64);
        let worker = Worker::new(channels[index % channels.len()].clone(), random, &settings);
        clients.spawn(client_loop(worker, Arc::clone(&shared)));
    }
    let progress = Progress::start(config, &shared);
    tokio::time::sleep_until(shared.measure_from.into()).await;
    measurement_started();
    let mut histogram = LatencyHistogram::new();
    let mut first_error = None;
    while let Some(joined) = clients.join_next().await {
        let report = joined.context("benchmark client task failed")?;
        histogram.merge(&report.histogram);
        first_error = first_error.or(report.first_error);
    }
    progress.finish();
    let elapsed_seconds = shared.measure_from.elapsed().as_secs_f64();
    let operations = histogram.count();
    let summary = Summary {
        workload: config.workload.name().to_string(),
        clients: config.clients,
        connections: config.connections,
        endpoints: config.endpoints.clone(),
        operations,
        errors: shared.errors.load(Ordering::Relaxed),
        elapsed_seconds,
        throughput_operations_per_second: throughput(operations, elapsed_seconds),
        latency: histogram.summary(),
        first_error,
    };
    Ok(RunOutcome { summary, histogram })
}

/// Writes keys `0..preloaded_key_count` in batched txns, a bounded number in flight.
async fn preload(config: &RunConfig, channels: &[Channel]) -> Result<()> {
    let key_count = config.preloaded_key_count();
    let value = Arc::new(make_value(config.value_size_bytes, config.seed));
    let next_batch = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for index in 0..PRELOAD_CONCURRENCY.min(key_count.div_ceil(PRELOAD_BATCH_KEYS) as usize) {
        let mut kv = KvClient::new(channels[index % channels.len()].clone());
        let (value, next_batch, key_size_bytes) = (Arc::clone(&value), Arc::clone(&next_batch), config.key_size_bytes);
        tasks.spawn(async move {
            loop {
                let start = next_batch.fetch_add(1, Ordering::Relaxed) * PRELOAD_BATCH_KEYS;
                if start >= key_count {
                    return Ok::<(), anyhow::Error>(());
                }
                let request =
                    batch_put_request(start..(start + PRELOAD_BATCH_KEYS).min(key_count), key_size_bytes, &value);
                kv.txn(request).await.map_err(status_error).context("preloading keys")?;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("preload task failed")??;
    }
    Ok(())
}

/// Counters and deadlines shared by the clients of a run.
struct SharedState {
    /// Operations that start at or after this instant are measured.
    measure_from: Instant,
    /// Operations are not started at or after this instant (duration runs).
    measure_until: Option<Instant>,
    /// Measured operations to run (total runs).
    total: Option<u64>,
    /// Measured operations started so far.
    started: AtomicU64,
    /// Measured operations finished so far.
    finished: AtomicU64,
    /// Measured operations that failed.
    errors: AtomicU64,
}

/// Whether a client may start another operation, and whether it is measured.
enum Admission {
    Warmup,
    Measured,
    Stop,
}

impl SharedState {
    fn new(config: &RunConfig) -> Self {
        let measure_from = Instant::now() + config.warmup;
        let (measure_until, total) = match config.limit {
            RunLimit::Total(total) => (None, Some(total)),
            RunLimit::Duration(duration) => (Some(measure_from + duration), None),
        };
        SharedState {
            measure_from,
            measure_until,
            total,
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    fn admit(&self) -> Admission {
        let now = Instant::now();
        if now < self.measure_from {
            return Admission::Warmup;
        }
        if self.measure_until.is_some_and(|until| now >= until) {
            return Admission::Stop;
        }
        if let Some(total) = self.total {
            // Counting stops at total, so the counter cannot grow without bound.
            let claimed = self
                .started
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |started| (started < total).then_some(started + 1));
            if claimed.is_err() {
                return Admission::Stop;
            }
        }
        Admission::Measured
    }
}

/// What one client measured.
struct ClientReport {
    histogram: LatencyHistogram,
    first_error: Option<String>,
}

/// One client: one request in flight at a time until the run's limit is reached.
async fn client_loop(mut worker: Worker, shared: Arc<SharedState>) -> ClientReport {
    let mut report = ClientReport { histogram: LatencyHistogram::new(), first_error: None };
    loop {
        let measured = match shared.admit() {
            Admission::Stop => break,
            Admission::Warmup => false,
            Admission::Measured => true,
        };
        let started = Instant::now();
        let result = worker.execute_one().await;
        let latency = started.elapsed();
        if measured {
            shared.finished.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(()) if measured => report.histogram.record(latency),
            Ok(()) => {}
            Err(error) => {
                if measured {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    report.first_error.get_or_insert_with(|| format!("{error:#}"));
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    report
}

/// The progress bar on stderr, refreshed by a background task.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: ProgressBar,
}

impl Progress {
    fn start(config: &RunConfig, shared: &Arc<SharedState>) -> Self {
        if !config.show_progress || !std::io::stderr().is_terminal() {
            return Progress { task: None, bar: ProgressBar::hidden() };
        }
        let (length, template) = match config.limit {
            RunLimit::Total(total) => (total, "{msg} [{bar:40}] {pos}/{len} ops (eta {eta})"),
            RunLimit::Duration(duration) => (duration.as_millis() as u64, "{msg} [{bar:40}] {pos}/{len} ms measured"),
        };
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
        let (shared, task_bar, limit) = (Arc::clone(shared), bar.clone(), config.limit);
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
            loop {
                interval.tick().await;
                let now = Instant::now();
                if now < shared.measure_from {
                    task_bar.set_message("warming up");
                    continue;
                }
                task_bar.set_message(format!("{} errors", shared.errors.load(Ordering::Relaxed)));
                match limit {
                    RunLimit::Total(_) => task_bar.set_position(shared.finished.load(Ordering::Relaxed)),
                    RunLimit::Duration(_) => task_bar.set_position((now - shared.measure_from).as_millis() as u64),
                }
            }
        });
        Progress { task: Some(task), bar }
    }

    fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        RunConfig {
            endpoints: vec!["127.0.0.1:2379".to_string()],
            clients: 4,
            connections: 2,
            limit: RunLimit::Total(10),
            warmup: Duration::ZERO,
            key_size_bytes: 8,
            value_size_bytes: 256,
            key_space: 100_000,
            preload_keys: 1000,
            skip_preload: false,
            workload: Workload::Range,
            read_percent: 50,
            seed: 1,
            request_timeout: Duration::from_secs(1),
            show_progress: false,
        }
    }

    #[test]
    fn validation_rejects_unusable_configurations() {
        assert!(config().validate().is_ok());
        assert!(RunConfig { connections: 5, ..config() }.validate().is_err());
        assert!(RunConfig { clients: 0, ..config() }.validate().is_err());
        assert!(RunConfig { key_size_bytes: 4, ..config() }.validate().is_err());
        assert!(RunConfig { preload_keys: 0, ..config() }.validate().is_err());
        assert!(RunConfig { preload_keys: 0, workload: Workload::Put, ..config() }.validate().is_ok());
        assert!(RunConfig { endpoints: Vec::new(), ..config() }.validate().is_err());
    }

    #[test]
    fn total_runs_admit_exactly_total_measured_operations() {
        let shared = SharedState::new(&config());
        let admitted = (0..100).filter(|_| matches!(shared.admit(), Admission::Measured)).count();
        assert_eq!(admitted, 10);
        assert!(matches!(shared.admit(), Admission::Stop));
    }

    #[test]
    fn warmup_is_not_measured() {
        let shared = SharedState::new(&RunConfig { warmup: Duration::from_secs(3600), ..config() });
        assert!(matches!(shared.admit(), Admission::Warmup));
    }

    #[test]
    fn preload_is_capped_by_the_key_space() {
        assert_eq!(RunConfig { key_space: 10, ..config() }.preloaded_key_count(), 10);
        assert_eq!(config().preloaded_key_count(), 1000);
    }
}
