//! One chaos run: start a cluster, run clients while injecting faults, heal, and check.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linearizability::{check_with_options, CheckOptions, CheckResult};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::bad_input;
use crate::cluster::{Cluster, ClusterOptions};
use crate::faults::{self, FaultKind};
use crate::report::{last_lines, Report, Verdict};
use crate::verify;
use crate::workload::{self, Recording, SharedRecording, WorkloadOptions};

/// Longest wait for a leader at start and for convergence after healing.
const CONVERGENCE_WAIT_MAX: Duration = Duration::from_secs(40);

/// Longest wait for the healed cluster to accept a write.
const AVAILABILITY_WAIT_MAX: Duration = Duration::from_secs(40);

/// Time clients keep running after healing, so the history covers the healed cluster.
const AFTER_HEAL_RUN: Duration = Duration::from_secs(2);

/// Quiet time before each fault, in milliseconds (range).
const QUIET_MILLISECONDS: std::ops::Range<u64> = 500..1500;

/// How long each fault lasts, in milliseconds (range).
const HOLD_MILLISECONDS: std::ops::Range<u64> = 1500..4000;

/// Lines of a violation's explanation shown in the report (all of it is saved).
const EXPLANATION_LINES_SHOWN: usize = 30;

/// Raft timing of the members: shorter than the defaults so failover is quick.
const SERVER_TIMING_ARGUMENTS: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "500"];

/// Everything a run needs, resolved from the command line.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The `raftkv` binary.
    pub binary: PathBuf,
    /// Cluster size.
    pub nodes: usize,
    /// Number of clients.
    pub clients: usize,
    /// How long faults are injected.
    pub duration: Duration,
    /// The faults to choose from (empty: none).
    pub faults: Vec<FaultKind>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Where run directories and failing histories go.
    pub output_directory: PathBuf,
    /// Client behaviour.
    pub workload: WorkloadOptions,
    /// Extra flags for every member.
    pub server_arguments: Vec<String>,
    /// Remove `output_directory` itself when the run passes (it was a temporary one).
    pub remove_output_when_passed: bool,
}

/// Runs `scenario` to completion and reports; an `Err` means the run could not be carried
/// out (the binary would not start), not that a check failed.
pub async fn run_scenario(scenario: &Scenario) -> anyhow::Result<Report> {
    let started = Instant::now();
    let run_directory = scenario.output_directory.join(format!("run-seed{}-pid{}", scenario.seed, std::process::id()));
    let _ = std::fs::remove_dir_all(&run_directory);
    let mut server_arguments: Vec<String> = SERVER_TIMING_ARGUMENTS.iter().map(|text| text.to_string()).collect();
    server_arguments.extend(scenario.server_arguments.iter().cloned());
    let mut cluster = Cluster::start(ClusterOptions {
        binary: scenario.binary.clone(),
        nodes: scenario.nodes,
        directory: run_directory.clone(),
        extra_arguments: server_arguments,
    })
    .await?;
    let channels: Vec<Channel> = (0..scenario.nodes)
        .map(|index| crate::etcd::channel(&cluster.client_url(index), scenario.workload.operation_deadline))
        .collect::<anyhow::Result<_>>()?;
    let mut report = Report::new(scenario);
    report.log_directory = Some(run_directory.clone());
    let initial = match verify::wait_for_convergence(&channels, CONVERGENCE_WAIT_MAX).await {
        Ok(initial) => initial,
        Err(error) => {
            report.failures.push(format!("the cluster never elected a leader: {error}\n{}", cluster.log_tail(0, 2000)));
            return Ok(report);
        }
    };
    let recording: SharedRecording = Arc::new(Mutex::new(Recording::default()));
    let (stop, stop_receiver) = watch::channel(false);
    let clients = start_clients(scenario, &cluster, &recording, &stop_receiver);
    let mut random = ChaCha8Rng::seed_from_u64(scenario.seed);
    inject_faults(scenario, &mut cluster, &channels, &initial, &mut random, &mut report).await;
    heal_and_stop_clients(&mut cluster, &channels, stop, clients, &mut report).await;
    let mut recording = std::mem::take(&mut *recording.lock().expect("recording lock"));
    check_cluster(scenario, &mut cluster, &channels, &mut recording, &mut report).await;
    drop(cluster);
    check_history(scenario, recording, &mut report).await;
    report.elapsed = started.elapsed();
    if report.passed() {
        let _ = std::fs::remove_dir_all(&run_directory);
        if scenario.remove_output_when_passed {
            let _ = std::fs::remove_dir_all(&scenario.output_directory);
        }
        report.log_directory = None;
    }
    Ok(report)
}

fn start_clients(
    scenario: &Scenario,
    cluster: &Cluster,
    recording: &SharedRecording,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    (0..scenario.clients)
        .map(|client| {
            let url = cluster.client_url(client % scenario.nodes);
            let seed = scenario.seed.wrapping_mul(1_000_003).wrapping_add(client as u64 + 1);
            tokio::spawn(workload::run_client(
                client as u64 + 1,
                url,
                seed,
                scenario.workload.clone(),
                recording.clone(),
                stop.clone(),
            ))
        })
        .collect()
}

/// Injects faults from the scenario's list until its duration has passed (without faults,
/// just lets the clients run).
async fn inject_faults(
    scenario: &Scenario,
    cluster: &mut Cluster,
    channels: &[Channel],
    initial: &[verify::MemberStatus],
    random: &mut ChaCha8Rng,
    report: &mut Report,
) {
    let start = Instant::now();
    if scenario.faults.is_empty() {
        tokio::time::sleep(scenario.duration).await;
        return;
    }
    while start.elapsed() + Duration::from_millis(HOLD_MILLISECONDS.end) < scenario.duration {
        tokio::time::sleep(Duration::from_millis(random.gen_range(QUIET_MILLISECONDS))).await;
        let kind = scenario.faults[random.gen_range(0..scenario.faults.len())];
        let leader = verify::find_leader(channels).await;
        let (description, injected) = match faults::inject(kind, cluster, leader, random) {
            Ok(done) => done,
            Err(error) => {
                report.failures.push(format!("injecting {kind}: {error}"));
                return;
            }
        };
        let at = start.elapsed();
        report.faults_injected.push(format!("{:>6.1}s {kind}: {description}", at.as_secs_f64()));
        *report.fault_counts.entry(kind.name().to_string()).or_default() += 1;
        if kind == FaultKind::BadInput {
            let target = leader.unwrap_or(0);
            bad_input_against(cluster, initial, target, random).await;
        }
        tokio::time::sleep(Duration::from_millis(random.gen_range(HOLD_MILLISECONDS))).await;
        if let Err(error) = faults::heal(&injected, cluster) {
            report.failures.push(format!("healing {kind}: {error}"));
            return;
        }
        report.failures.extend(cluster.unexpected_exits());
    }
}

async fn bad_input_against(
    cluster: &Cluster,
    initial: &[verify::MemberStatus],
    target: usize,
    random: &mut ChaCha8Rng,
) {
    let peer = (target + 1) % cluster.len();
    let target_description = bad_input::Target {
        client_address: cluster.client_address(target),
        peer_address: cluster.peer_address(target),
        cluster_id: initial[target].cluster_id,
        member_id: initial[target].member_id,
        peer_member_id: initial[peer].member_id,
    };
    bad_input::attack(&target_description, random).await;
}

async fn heal_and_stop_clients(
    cluster: &mut Cluster,
    channels: &[Channel],
    stop: watch::Sender<bool>,
    clients: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    report: &mut Report,
) {
    if let Err(error) = cluster.heal_all() {
        report.failures.push(format!("healing: {error}"));
    }
    match verify::wait_for_write(channels, AVAILABILITY_WAIT_MAX).await {
        Ok(waited) => report.recovery = Some(waited),
        Err(error) => report.failures.push(error.to_string()),
    }
    tokio::time::sleep(AFTER_HEAL_RUN).await;
    let _ = stop.send(true);
    for client in clients {
        match client.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => report.failures.push(format!("client failed: {error}")),
            Err(error) => report.failures.push(format!("client task: {error}")),
        }
    }
}

/// Convergence, equal hashes, acknowledged writes present, final reads, no panics.
async fn check_cluster(
    scenario: &Scenario,
    cluster: &mut Cluster,
    channels: &[Channel],
    recording: &mut Recording,
    report: &mut Report,
) {
    report.failures.extend(cluster.unexpected_exits());
    match verify::wait_for_convergence(channels, CONVERGENCE_WAIT_MAX).await {
        Ok(statuses) => {
            report.revision = statuses[0].revision;
            report.applied_index = statuses[0].applied_index;
            match verify::compare_hashes(channels, statuses[0].revision).await {
                Ok(hashes) => report.hashes = hashes,
                Err(error) => report.failures.push(error.to_string()),
            }
            // Looked up only on converged members: a lagging one lacks later revisions.
            match verify::check_acknowledged_writes(channels, &recording.acknowledged_writes).await {
                Ok(lookups) => report.acknowledged_write_lookups = lookups,
                Err(error) => report.failures.push(error.to_string()),
            }
        }
        Err(error) => report.failures.push(error.to_string()),
    }
    report.final_reads = verify::final_reads(channels, scenario.workload.keys, recording).await;
    report.counts = recording.counts.clone();
    report.operations = recording.history.len() - recording.counts.never_sent as usize;
    report.failures.extend(cluster.unexpected_exits());
    report.failures.extend(cluster.panics_in_logs().into_iter().take(10).map(|line| format!("panic in log: {line}")));
    if !report.failures.is_empty() {
        cluster.save_states().await;
    }
}

/// Checks the history; on anything but "linearizable" saves it for replay.
async fn check_history(scenario: &Scenario, recording: Recording, report: &mut Report) {
    let history = recording.checked_history();
    let checked = tokio::task::spawn_blocking(move || {
        let result = check_with_options(&history, &CheckOptions::default());
        (history, result)
    })
    .await;
    let Ok((history, result)) = checked else {
        report.failures.push("the linearizability checker panicked".to_string());
        return;
    };
    report.verdict = match &result {
        CheckResult::Linearizable => Verdict::Linearizable,
        CheckResult::NotLinearizable(violation) => Verdict::NotLinearizable(violation.explanation.clone()),
        CheckResult::Timeout { keys } => Verdict::Unknown(format!("search budget exhausted on {} keys", keys.len())),
    };
    if let Verdict::NotLinearizable(explanation) = &report.verdict {
        let shown = last_lines(explanation, EXPLANATION_LINES_SHOWN);
        report.failures.push(format!("history is not linearizable:\n{shown}"));
    }
    if !result.is_linearizable() || !report.failures.is_empty() {
        let explanation = match &report.verdict {
            Verdict::NotLinearizable(explanation) => explanation.clone(),
            _ => String::new(),
        };
        match save_history(&scenario.output_directory, scenario.seed, &history.to_json_lines(), &explanation) {
            Ok(path) => report.history_path = Some(path),
            Err(error) => report.failures.push(format!("cannot save the history: {error}")),
        }
    }
}

/// Saves the history as JSON lines (and the checker's explanation, if any, next to it).
fn save_history(directory: &Path, seed: u64, text: &str, explanation: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(directory)?;
    let stem = format!("history-seed{seed}-pid{}", std::process::id());
    let path = directory.join(format!("{stem}.jsonl"));
    std::fs::write(&path, text)?;
    if !explanation.is_empty() {
        std::fs::write(directory.join(format!("{stem}.explanation.txt")), explanation)?;
    }
    Ok(path)
}
