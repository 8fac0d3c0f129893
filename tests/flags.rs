//! `raftkv serve` takes every flag of etcd 3.4.23's `etcd --help` (the list kept in
//! tests/data/etcd-3.4.23-flags.txt, checked against the installed etcd when there is one):
//! one node started with all of them serves requests; flags raftkv cannot honour are
//! refused with `raftkv serve: --X is not supported: …` and nothing starts; malformed
//! values are refused naming the flag.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{etcdctl_program, free_port, run_bounded, WAIT_MAX};

const FLAG_LIST: &str = include_str!("data/etcd-3.4.23-flags.txt");

/// The flags of the repository's list.
fn listed_flags() -> BTreeSet<String> {
    FLAG_LIST.lines().filter(|line| !line.starts_with('#') && !line.is_empty()).map(str::to_string).collect()
}

/// `raftkv serve` with `arguments`, the environment cleared of `ETCD_*` variables.
fn serve_command(arguments: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_raftkv"));
    command.arg("serve").args(arguments);
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("ETCD_")) {
        command.env_remove(key);
    }
    command
}

/// Runs `raftkv serve` expecting it to exit at once (a refusal).
fn serve_refused(arguments: &[String]) -> Output {
    let output = serve_command(arguments).stdin(Stdio::null()).output().expect("run raftkv");
    assert!(!output.status.success(), "raftkv serve {arguments:?} must be refused");
    output
}

/// Flags for a one-member cluster on fresh ports in `directory`.
fn single_member(directory: &Path) -> (Vec<String>, String) {
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let flags = vec![
        "--name=solo".to_string(),
        format!("--data-dir={}", directory.join("data").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=solo={peer_url}"),
    ];
    (flags, client_url)
}

/// Every listed flag but the single-member ones, with a value raftkv accepts: etcd's
/// default for flags refused otherwise, and a non-default value where raftkv implements it.
fn accepted_values(directory: &Path) -> Vec<(&'static str, String)> {
    let log_file = directory.join("raftkv.log").display().to_string();
    let wal_dir = directory.join("wal-elsewhere").display().to_string();
    let fixed: &[(&'static str, &str)] = &[
        ("snapshot-count", "50"),
        ("heartbeat-interval", "50"),
        ("election-timeout", "500"),
        ("initial-election-tick-advance", "true"),
        ("max-snapshots", "2"),
        ("max-wals", "3"),
        ("quota-backend-bytes", "0"),
        ("backend-batch-interval", "0s"),
        ("backend-batch-limit", "0"),
        ("max-txn-ops", "64"),
        ("max-request-bytes", "1572864"),
        ("max-concurrent-streams", "512"),
        ("grpc-keepalive-min-time", "5s"),
        ("grpc-keepalive-interval", "2h"),
        ("grpc-keepalive-timeout", "20s"),
        ("initial-cluster-state", "new"),
        ("initial-cluster-token", "flags-test"),
        ("discovery", ""),
        ("discovery-fallback", "proxy"),
        ("discovery-proxy", ""),
        ("discovery-srv", ""),
        ("discovery-srv-name", ""),
        ("strict-reconfig-check", "false"),
        ("pre-vote", "true"),
        ("auto-compaction-retention", "0"),
        ("auto-compaction-mode", "periodic"),
        ("enable-v2", "false"),
        ("cert-file", ""),
        ("key-file", ""),
        ("client-cert-auth", "false"),
        ("client-crl-file", ""),
        ("client-cert-allowed-hostname", ""),
        ("trusted-ca-file", ""),
        ("auto-tls", "false"),
        ("peer-cert-file", ""),
        ("peer-key-file", ""),
        ("peer-client-cert-auth", "false"),
        ("peer-trusted-ca-file", ""),
        ("peer-cert-allowed-cn", ""),
        ("peer-cert-allowed-hostname", ""),
        ("peer-auto-tls", "false"),
        ("peer-crl-file", ""),
        ("cipher-suites", ""),
        ("cors", "*"),
        ("host-whitelist", "*"),
        ("auth-token", "simple"),
        ("bcrypt-cost", "10"),
        ("auth-token-ttl", "300"),
        ("enable-pprof", "false"),
        ("metrics", "basic"),
        ("listen-metrics-urls", ""),
        ("logger", "zap"),
        ("log-level", "debug"),
        ("proxy", "off"),
        ("proxy-failure-wait", "5000"),
        ("proxy-refresh-interval", "30000"),
        ("proxy-dial-timeout", "1000"),
        ("proxy-write-timeout", "5000"),
        ("proxy-read-timeout", "0"),
        ("experimental-initial-corrupt-check", "false"),
        ("experimental-corrupt-check-time", "0s"),
        ("experimental-enable-v2v3", ""),
        ("experimental-backend-bbolt-freelist-type", "array"),
        ("experimental-enable-lease-checkpoint", "false"),
        ("experimental-compaction-batch-limit", "1000"),
        ("experimental-peer-skip-client-san-verification", "false"),
        ("experimental-watch-progress-notify-interval", "10m"),
        ("experimental-warning-apply-duration", "100ms"),
        ("force-new-cluster", "false"),
        ("debug", "false"),
        ("log-package-levels", ""),
    ];
    let mut values: Vec<(&'static str, String)> =
        fixed.iter().map(|(flag, value)| (*flag, value.to_string())).collect();
    values.push(("log-outputs", format!("stderr,{log_file}")));
    values.push(("wal-dir", wal_dir));
    values
}

/// Flags given by [`single_member`] and flags that are not settings.
const NOT_IN_VALUES: &[&str] = &[
    "name",
    "data-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "help",
    "version",
    "config-file",
];

#[test]
fn the_flag_list_is_etcd_3_4_23s() {
    let listed = listed_flags();
    assert!(listed.len() >= 80, "{} flags listed", listed.len());
    let etcd = Path::new("/usr/bin/etcd");
    if etcd.is_file() {
        let output = Command::new(etcd).arg("--help").output().expect("run etcd --help");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        let printed: BTreeSet<String> = regex::Regex::new(r"--([a-z][a-z0-9-]*)")
            .unwrap()
            .captures_iter(&text)
            .map(|capture| capture[1].to_string())
            .collect();
        assert_eq!(printed, listed, "tests/data/etcd-3.4.23-flags.txt must equal what etcd --help prints");
    }
    let help = serve_command(&["--help".to_string()]).output().expect("raftkv serve --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let missing: Vec<&String> = listed.iter().filter(|flag| !help.contains(&format!("--{flag}"))).collect();
    assert!(missing.is_empty(), "raftkv serve --help lacks {missing:?}");
}

#[test]
fn help_groups_flags_and_hides_test_only_ones() {
    let output = serve_command(&["--help".to_string()]).output().expect("raftkv serve --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for heading in ["Member:", "Clustering:", "Security:", "Auth:", "Logging:", "Experimental:", "raftkv:", "Example"] {
        assert!(help.contains(heading), "--help lacks {heading}:\n{help}");
    }
    for hidden in ["--peer-dial-overrides", "--unsafe-local-reads", "--unsafe-wal-buffer-unsynced"] {
        assert!(!help.contains(hidden), "--help shows the test-only {hidden}");
    }
    let version = serve_command(&["--version".to_string()]).output().expect("raftkv serve --version");
    assert!(version.status.success() && String::from_utf8_lossy(&version.stdout).starts_with("raftkv Version: "));
}

/// Waits until `etcdctl put` through `endpoint` succeeds (the member elected itself).
async fn wait_for_put(endpoint: &str, child: &mut std::process::Child) {
    let started = Instant::now();
    loop {
        let arguments: Vec<String> =
            ["--endpoints", endpoint, "put", "flags-key", "flags-value"].map(String::from).into();
        let output = run_bounded(&etcdctl_program(), &arguments, &[("ETCDCTL_API", "3")], "").await;
        if output.code == 0 {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("raftkv serve exited with {status}");
        }
        assert!(started.elapsed() < WAIT_MAX, "no put within {WAIT_MAX:?}: {}", output.stderr);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_node_started_with_every_flag_serves() {
    let directory = tempfile::tempdir().unwrap();
    let (mut arguments, client_url) = single_member(directory.path());
    let values = accepted_values(directory.path());
    let given: BTreeSet<String> = values
        .iter()
        .map(|(flag, _)| flag.to_string())
        .chain(NOT_IN_VALUES.iter().map(|flag| flag.to_string()))
        .collect();
    assert_eq!(given, listed_flags(), "the test gives every listed flag");
    arguments.extend(values.iter().map(|(flag, value)| format!("--{flag}={value}")));
    let log_file = directory.path().join("raftkv.log");
    let mut child = serve_command(&arguments)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(directory.path().join("stderr.log")).unwrap())
        .spawn()
        .expect("start raftkv");
    wait_for_put(&client_url, &mut child).await;
    let get: Vec<String> =
        ["--endpoints", &client_url, "get", "flags-key", "--print-value-only"].map(String::from).into();
    let output = run_bounded(&etcdctl_program(), &get, &[("ETCDCTL_API", "3")], "").await;
    assert_eq!(output.stdout.trim(), "flags-value");
    let _ = child.kill();
    let _ = child.wait();
    // --logger zap --log-outputs stderr,FILE: JSON lines in the file, debug ones included.
    let logged = std::fs::read_to_string(&log_file).expect("--log-outputs file");
    let first = logged.lines().next().expect("log lines in the file");
    let line: serde_json::Value = serde_json::from_str(first).expect("--logger zap writes JSON lines");
    assert!(line["level"].is_string(), "{first}");
    assert!(logged.contains("\"DEBUG\""), "--log-level debug logs debug lines");
    let stderr = std::fs::read_to_string(directory.path().join("stderr.log")).unwrap();
    assert!(stderr.lines().count() >= logged.lines().count(), "stderr gets the same lines");
    // --wal-dir: the segments are there, the data dir links to it.
    let wal_dir = directory.path().join("wal-elsewhere");
    let segments = std::fs::read_dir(&wal_dir)
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().file_name().to_string_lossy().ends_with(".wal"));
    assert!(segments.count() >= 1, "WAL segments in --wal-dir");
    let link = std::fs::read_link(directory.path().join("data").join("wal")).expect("data dir links its WAL");
    assert_eq!(link, std::path::absolute(&wal_dir).unwrap());
}

#[test]
fn flags_that_cannot_apply_are_refused_and_nothing_starts() {
    let refused: &[(&str, &str)] = &[
        ("enable-v2", "true"),
        ("experimental-enable-v2v3", "/v2/"),
        ("discovery", "https://discovery.etcd.io/3e86b59982e49066c5d813af1c2e2579cbf573de"),
        ("discovery-proxy", "http://127.0.0.1:8080"),
        ("discovery-srv", "example.com"),
        ("discovery-srv-name", "raftkv"),
        ("proxy", "on"),
        ("proxy-failure-wait", "1000"),
        ("proxy-refresh-interval", "1000"),
        ("proxy-dial-timeout", "5000"),
        ("proxy-write-timeout", "1000"),
        ("proxy-read-timeout", "1000"),
        ("log-package-levels", "etcdserver=DEBUG"),
    ];
    let directory = tempfile::tempdir().unwrap();
    for (flag, value) in refused {
        let (mut arguments, _) = single_member(directory.path());
        arguments.push(format!("--{flag}={value}"));
        let output = serve_refused(&arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("raftkv serve: --{flag} is not supported: ")), "--{flag}: {stderr}");
        assert!(!directory.path().join("data").exists(), "--{flag}: nothing may start");
    }
}

#[test]
fn malformed_values_are_refused_naming_the_flag() {
    let cases: &[(&str, &str, &str)] = &[
        ("heartbeat-interval", "100ms", "--heartbeat-interval: '100ms' is not a number of milliseconds"),
        ("election-timeout", "1s", "--election-timeout: '1s' is not a number of milliseconds"),
        ("grpc-keepalive-min-time", "5x", "--grpc-keepalive-min-time: '5x' is not a duration"),
        ("experimental-corrupt-check-time", "10", "--experimental-corrupt-check-time"),
        ("pre-vote", "maybe", "--pre-vote: 'maybe' is not a boolean"),
        ("max-wals", "-1", "--max-wals"),
        ("quota-backend-bytes", "8GB", "--quota-backend-bytes"),
        ("snapshot-count", "many", "--snapshot-count"),
        ("initial-cluster-state", "old", "--initial-cluster-state"),
        ("logger", "glog", "--logger: 'glog' is not one of zap, capnslog"),
        ("log-level", "trace", "--log-level: 'trace'"),
        ("listen-client-urls", "127.0.0.1:2379", "--listen-client-urls: URL '127.0.0.1:2379'"),
        ("log-outputs", "/nonexistent-directory/x.log", "--log-outputs: cannot open /nonexistent-directory/x.log"),
    ];
    let directory = tempfile::tempdir().unwrap();
    for (flag, value, expected) in cases {
        let (mut arguments, _) = single_member(directory.path());
        arguments.retain(|argument| !argument.starts_with(&format!("--{flag}=")));
        arguments.push(format!("--{flag}={value}"));
        let output = serve_refused(&arguments);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "--{flag}={value}: expected {expected:?} in: {stderr}");
        assert!(!directory.path().join("data").exists(), "--{flag}={value}: nothing may start");
    }
}
