//! Runs the load generator against a real etcd (Debian's `etcd-server`, `/usr/bin/etcd`)
//! started by the test: every workload completes its operations without errors. No timing
//! is asserted. Skipped, with a message, when etcd is not installed.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bench::compare::{self, Cluster, ClusterSpec, CompareArgs, System, Target};
use bench::{RunConfig, RunLimit, Workload};

const ETCD: &str = "/usr/bin/etcd";

fn etcd_installed() -> bool {
    if Path::new(ETCD).is_file() {
        return true;
    }
    eprintln!("SKIPPED: {ETCD} is missing; install it with `apt-get install -y etcd-server` to run this test");
    false
}

/// A port range of `width` ports, all free right now, below the kernel's ephemeral range:
/// the comparison starts its raftkv cluster seconds after choosing the ports, and ports
/// handed out by `bind(0)` or to outgoing connections (other tests run meanwhile) would
/// otherwise land in the range ("port … is in use"). Ranges handed to this process's
/// tests never overlap: each call takes the next slice of a region chosen by process id.
fn free_port_range(width: u16) -> u16 {
    static NEXT_OFFSET: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let lowest: u16 = 10_000;
    assert!(ephemeral_low > lowest + width, "room below the ephemeral ports");
    let span = u32::from(ephemeral_low - lowest);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..200 {
        let offset = (start + NEXT_OFFSET.fetch_add(u32::from(width), Ordering::Relaxed)) % span;
        let Some(base) = u16::try_from(offset).ok().map(|offset| lowest + offset) else { continue };
        if base.checked_add(width).is_some_and(|end| end <= ephemeral_low)
            && (base..base + width).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        {
            return base;
        }
    }
    panic!("no free range of {width} ports below {ephemeral_low}");
}

fn work_directory() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn config(endpoint: &str, workload: Workload) -> RunConfig {
    RunConfig {
        endpoints: vec![endpoint.to_string()],
        clients: 8,
        connections: 2,
        limit: RunLimit::Total(300),
        warmup: Duration::from_millis(200),
        key_size_bytes: 8,
        value_size_bytes: 256,
        key_space: 1000,
        preload_keys: 200,
        skip_preload: false,
        workload,
        read_percent: 50,
        seed: 7,
        request_timeout: Duration::from_secs(10),
        show_progress: false,
    }
}

#[test]
fn every_workload_completes_against_a_single_node_etcd() {
    if !etcd_installed() {
        return;
    }
    let directory = work_directory();
    let base = free_port_range(2);
    let spec = ClusterSpec {
        program: PathBuf::from(ETCD),
        leading_arguments: Vec::new(),
        node_count: 1,
        client_port: base,
        peer_port: base + 1,
        directory: directory.path().to_path_buf(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start(&spec).unwrap();
    runtime.block_on(cluster.wait_ready(Duration::from_secs(30))).unwrap();
    let endpoint = cluster.endpoints()[0].clone();
    assert_eq!(runtime.block_on(cluster.leader_endpoint()).unwrap(), endpoint);
    for workload in [Workload::Put, Workload::Range, Workload::RangeSerializable, Workload::TxnCas, Workload::Mixed] {
        let measurement_starts = std::cell::Cell::new(0);
        let outcome = runtime
            .block_on(bench::run(&config(&endpoint, workload), &|| {
                measurement_starts.set(measurement_starts.get() + 1)
            }))
            .unwrap_or_else(|error| panic!("{workload:?}: {error:#}"));
        assert_eq!(measurement_starts.get(), 1);
        let summary = &outcome.summary;
        assert_eq!(summary.errors, 0, "{workload:?}: {summary:?}");
        assert_eq!(summary.operations, 300, "{workload:?}: {summary:?}");
        assert_eq!(outcome.histogram.count(), 300);
        assert!(summary.first_error.is_none());
        let json: serde_json::Value = serde_json::from_str(&summary.to_json().unwrap()).unwrap();
        assert_eq!(json["operations"], 300);
    }
    cluster.require_running().unwrap();
}

#[test]
fn duration_runs_stop_by_themselves() {
    if !etcd_installed() {
        return;
    }
    let directory = work_directory();
    let base = free_port_range(2);
    let spec = ClusterSpec {
        program: PathBuf::from(ETCD),
        leading_arguments: Vec::new(),
        node_count: 1,
        client_port: base,
        peer_port: base + 1,
        directory: directory.path().to_path_buf(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start(&spec).unwrap();
    runtime.block_on(cluster.wait_ready(Duration::from_secs(30))).unwrap();
    let config = RunConfig {
        limit: RunLimit::Duration(Duration::from_millis(500)),
        ..config(&cluster.endpoints()[0], Workload::Put)
    };
    let outcome = runtime.block_on(bench::run(&config, &|| {})).unwrap();
    assert_eq!(outcome.summary.errors, 0, "{:?}", outcome.summary);
    assert!(outcome.summary.operations > 0, "{:?}", outcome.summary);
}

/// `compare --quick` arguments for `systems`, data under `directory`.
fn quick_compare_args(systems: Vec<System>, raftkv_bin: Option<PathBuf>, directory: &Path) -> CompareArgs {
    CompareArgs {
        systems,
        etcd_bin: PathBuf::from(ETCD),
        raftkv_bin,
        rounds: 1,
        duration_seconds: 1.0,
        warmup_seconds: 0.0,
        quick: true,
        work_dir: Some(directory.to_path_buf()),
        base_port: free_port_range(113),
        target: Target::Leader,
        connections: 8,
        preload_keys: 300,
        key_size_bytes: 8,
        value_size_bytes: 256,
        seed: 1,
        install_etcd: false,
        keep_data: false,
        json: true,
        etcd_benchmark: None,
        no_etcd_benchmark: true,
        etcd_benchmark_scale: 1.0,
    }
}

#[test]
fn quick_comparison_against_a_three_node_etcd() {
    if !etcd_installed() {
        return;
    }
    let directory = work_directory();
    compare::main_with_args(quick_compare_args(vec![System::Etcd], None, directory.path())).unwrap();
}

/// The `raftkv` binary cargo built next to this test (`target/<profile>/raftkv`), if any.
fn raftkv_binary() -> Option<PathBuf> {
    let test_executable = std::env::current_exe().ok()?;
    let binary = test_executable.parent()?.parent()?.join("raftkv");
    binary.is_file().then_some(binary)
}

#[test]
fn quick_comparison_of_etcd_and_raftkv() {
    if !etcd_installed() {
        return;
    }
    let Some(raftkv) = raftkv_binary() else {
        eprintln!(
            "SKIPPED: no raftkv binary next to the test executable (build the workspace: cargo test --workspace)"
        );
        return;
    };
    let directory = work_directory();
    let systems = vec![System::Etcd, System::Raftkv];
    compare::main_with_args(quick_compare_args(systems, Some(raftkv), directory.path())).unwrap();
}

/// etcd's benchmark tool from `$RAFTKV_ETCD_BENCHMARK` or the build script's default
/// output; `None`, with a printed reason, when it is not there.
fn etcd_benchmark_tool() -> Option<PathBuf> {
    let found = compare::etcd_tool::locate(None).unwrap_or_else(|error| panic!("{error:#}"));
    if found.is_none() {
        eprintln!(
            "SKIPPED: etcd's benchmark tool not found (set ${} or build it with \
             /work/shared/tools/etcd-benchmark/build.sh, output /tmp/etcd-benchmark/benchmark)",
            compare::etcd_tool::ETCD_BENCHMARK_ENV
        );
    }
    found
}

#[test]
fn etcd_benchmark_tool_output_parses_against_a_single_node_etcd() {
    if !etcd_installed() {
        return;
    }
    let Some(tool) = etcd_benchmark_tool() else { return };
    let directory = work_directory();
    let base = free_port_range(2);
    let spec = ClusterSpec {
        program: PathBuf::from(ETCD),
        leading_arguments: Vec::new(),
        node_count: 1,
        client_port: base,
        peer_port: base + 1,
        directory: directory.path().to_path_buf(),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = Cluster::start(&spec).unwrap();
    runtime.block_on(cluster.wait_ready(Duration::from_secs(30))).unwrap();
    let put = compare::etcd_tool::ToolOperation::Put { key_size_bytes: 8, value_size_bytes: 256, key_space: 1000 };
    let arguments = compare::etcd_tool::arguments(&cluster.endpoints(), 2, 4, &put, 200);
    let report = runtime.block_on(compare::etcd_tool::run(&tool, &arguments, Duration::from_secs(120))).unwrap();
    assert_eq!((report.successful_requests(), report.errors), (Some(200), 0), "{report:?}");
    assert!(report.percentile_seconds(50.0).is_some(), "{report:?}");
    cluster.require_running().unwrap();
}

#[test]
fn quick_comparison_with_etcds_benchmark_tool() {
    if !etcd_installed() {
        return;
    }
    let Some(tool) = etcd_benchmark_tool() else { return };
    let directory = work_directory();
    let mut args = quick_compare_args(vec![System::Etcd], None, directory.path());
    args.no_etcd_benchmark = false;
    args.etcd_benchmark = Some(tool);
    compare::main_with_args(args).unwrap();
}
