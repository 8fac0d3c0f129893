//! `/metrics` of a 3-member raftkv cluster with one member down, compared with what a
//! 3-member etcd 3.4 (Debian's `etcd-server`) serves in the same situation: every metric
//! that etcd's alerts and dashboards read (and the others the issue lists) is there, with
//! etcd's type, label names and histogram buckets.
//!
//! Needs `etcdctl` on PATH and `/usr/bin/etcd`; fails with a message if either is missing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{etcdctl_program, run_bounded, Cluster, ServerKind, WAIT_MAX};

/// Every metric compared (with `--metrics extensive`).
const REQUIRED: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_health_success",
    "etcd_server_health_failures",
    "etcd_server_id",
    "etcd_server_version",
    "etcd_cluster_version",
    "etcd_server_quota_backend_bytes",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_disk_backend_snapshot_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_debugging_mvcc_db_compaction_keys_total",
    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
    "etcd_mvcc_put_total",
    "etcd_mvcc_delete_total",
    "etcd_mvcc_range_total",
    "etcd_mvcc_txn_total",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_network_peer_sent_bytes_total",
    "etcd_network_peer_received_bytes_total",
    "etcd_network_peer_sent_failures_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_network_client_grpc_received_bytes_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "grpc_server_handling_seconds",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "process_virtual_memory_bytes",
];

/// One metric family of a scrape: its type, label names and histogram bucket bounds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Family {
    kind: String,
    label_names: BTreeSet<String>,
    buckets: BTreeSet<String>,
    samples: usize,
}

/// Parses Prometheus's text exposition format into families by name.
fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(declaration) = line.strip_prefix("# TYPE ") {
            let mut words = declaration.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else { continue };
            families.entry(name.to_string()).or_default().kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample_name = &line[..name_end];
        let labels = parse_labels(&line[name_end..]);
        let family_name = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| sample_name.strip_suffix(suffix))
            .find(|base| families.get(*base).is_some_and(|family| family.kind == "histogram"))
            .unwrap_or(sample_name);
        let family = families.entry(family_name.to_string()).or_default();
        family.samples += 1;
        for (label, value) in labels {
            if label == "le" {
                family.buckets.insert(value);
            } else {
                family.label_names.insert(label);
            }
        }
    }
    families
}

/// The labels of a sample line's `{a="x",b="y"} value` part (values without escapes).
fn parse_labels(rest: &str) -> Vec<(String, String)> {
    let Some(inner) = rest.strip_prefix('{').and_then(|rest| rest.split_once('}')).map(|(inner, _)| inner) else {
        return Vec::new();
    };
    inner
        .split("\",")
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.trim_matches('"').to_string()))
        .collect()
}

/// `GET /metrics` on `metrics_url` (`http://127.0.0.1:port`), bounded.
async fn scrape(metrics_url: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = metrics_url.trim_start_matches("http://");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.map_err(|error| error.to_string())?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|error| error.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|error| error.to_string())?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").ok_or("no HTTP header end")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return Err(format!("answered {}", head.lines().next().unwrap_or_default()));
        }
        Ok(body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.map_err(|_| "no answer within 10 s".to_string())?
}

/// Runs etcdctl against `endpoints`; fails the test unless it succeeds.
async fn etcdctl_ok(endpoints: &str, arguments: &[&str]) -> String {
    let mut all = vec![format!("--endpoints={endpoints}"), "--dial-timeout=5s".into(), "--command-timeout=15s".into()];
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    let output = run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await;
    assert_eq!(output.code, 0, "etcdctl {arguments:?} failed: {}{}", output.stdout, output.stderr);
    output.stdout
}

/// A 3-member cluster of `kind` with `--metrics extensive`, one follower killed, some
/// traffic; returns the families a live member's `/metrics` serves once every required
/// metric is there (or, after [`WAIT_MAX`], what it served last).
async fn scrape_with_a_member_down(kind: ServerKind) -> (BTreeMap<String, Family>, Cluster) {
    let mut cluster = Cluster::start_with_arguments(kind, 3, &["--metrics", "extensive"]).await;
    let leader = cluster.wait_for_leader().await;
    let stopped = (leader + 1) % 3;
    cluster.kill(stopped);
    let endpoints = cluster.running_client_urls().join(",");
    etcdctl_ok(&endpoints, &["put", "metrics/a", "1"]).await;
    etcdctl_ok(&endpoints, &["put", "metrics/b", "2"]).await;
    etcdctl_ok(&endpoints, &["get", "metrics/a"]).await;
    etcdctl_ok(&endpoints, &["del", "metrics/b"]).await;
    let revision_text = etcdctl_ok(&endpoints, &["get", "metrics/a", "-w", "json"]).await;
    let revision = serde_json::from_str::<serde_json::Value>(&revision_text).expect("etcdctl JSON")["header"]
        ["revision"]
        .as_i64()
        .expect("a revision");
    etcdctl_ok(&endpoints, &["compact", &revision.to_string()]).await;
    let metrics_url = cluster.nodes[leader].metrics_url.clone();
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let families = match scrape(&metrics_url).await {
            Ok(text) => parse_exposition(&text),
            Err(error) => panic!("{kind:?} /metrics on {metrics_url}: {error}{}", cluster.logs()),
        };
        // Peer series appear with traffic and the first round-trip probe.
        let complete = REQUIRED.iter().all(|name| families.get(*name).is_some_and(|family| family.samples > 0));
        if complete || Instant::now() >= deadline {
            return (families, cluster);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_etcd_with_a_member_down() {
    let (etcd, etcd_cluster) = scrape_with_a_member_down(ServerKind::Etcd).await;
    drop(etcd_cluster);
    let (raftkv, raftkv_cluster) = scrape_with_a_member_down(ServerKind::Raftkv).await;
    let mut differences = Vec::new();
    for name in REQUIRED {
        let Some(expected) = etcd.get(*name).filter(|family| family.samples > 0) else {
            panic!("etcd 3.4 itself does not serve {name}: the list is wrong");
        };
        let Some(actual) = raftkv.get(*name).filter(|family| family.samples > 0) else {
            differences.push(format!("{name}: missing"));
            continue;
        };
        if actual.kind != expected.kind {
            differences.push(format!("{name}: type {} (etcd: {})", actual.kind, expected.kind));
        }
        if actual.label_names != expected.label_names {
            differences.push(format!("{name}: labels {:?} (etcd: {:?})", actual.label_names, expected.label_names));
        }
        if actual.buckets != expected.buckets {
            differences.push(format!("{name}: buckets {:?} (etcd: {:?})", actual.buckets, expected.buckets));
        }
    }
    assert!(differences.is_empty(), "raftkv's /metrics differs from etcd's:\n{}{}", differences.join("\n"), {
        raftkv_cluster.logs()
    });
    // raftkv's own metrics are served beside etcd's.
    assert!(raftkv.contains_key("raftkv_proposals_total"), "raftkv's own metrics are gone");
    assert_counts_moved(&raftkv_cluster).await;
}

/// The sum of the values of `name`'s samples whose labels include every pair of `labels`.
fn sum_of(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(name))
        .filter(|line| {
            let pairs = parse_labels(&line[name.len()..]);
            labels.iter().all(|(label, value)| pairs.iter().any(|(l, v)| l == label && v == value))
        })
        .filter_map(|line| line.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok()))
        .sum()
}

/// The traffic of [`scrape_with_a_member_down`] shows in the live members' counters (the
/// client calls went to whichever member etcdctl picked: summed over the live ones).
async fn assert_counts_moved(cluster: &Cluster) {
    let mut texts = Vec::new();
    for node in cluster.nodes.iter().filter(|node| cluster.running_client_urls().contains(&node.client_url)) {
        texts
            .push(scrape(&node.metrics_url).await.unwrap_or_else(|error| panic!("/metrics of {}: {error}", node.name)));
    }
    let total = |name: &str, labels: &[(&str, &str)]| texts.iter().map(|text| sum_of(text, name, labels)).sum::<f64>();
    let put = [("grpc_method", "Put"), ("grpc_service", "etcdserverpb.KV")];
    assert!(total("grpc_server_started_total", &put) >= 2.0, "two puts started");
    assert!(total("grpc_server_handled_total", &[put[0], put[1], ("grpc_code", "OK")]) >= 2.0, "two puts handled OK");
    assert!(total("grpc_server_msg_received_total", &put) >= 2.0, "two put requests received");
    assert!(total("grpc_server_msg_sent_total", &put) >= 2.0, "two put answers sent");
    assert!(total("grpc_server_handling_seconds_count", &put) >= 2.0, "two puts timed (--metrics extensive)");
    assert!(total("etcd_network_client_grpc_received_bytes_total", &[]) > 0.0);
    assert!(total("etcd_network_client_grpc_sent_bytes_total", &[]) > 0.0);
    for text in &texts {
        // Applied on every live member: two puts, one delete; one key left.
        assert!(sum_of(text, "etcd_mvcc_put_total", &[]) >= 2.0, "puts counted:\n{text}");
        assert!(sum_of(text, "etcd_mvcc_delete_total", &[]) >= 1.0, "the delete counted");
        assert_eq!(sum_of(text, "etcd_debugging_mvcc_keys_total", &[]), 1.0, "one key left");
        assert_eq!(sum_of(text, "etcd_server_has_leader", &[]), 1.0);
        assert!(sum_of(text, "etcd_network_peer_sent_failures_total", &[]) > 0.0, "sends to the dead member failed");
        assert!(sum_of(text, "etcd_disk_wal_fsync_duration_seconds_count", &[]) > 0.0, "WAL syncs timed");
        assert!(sum_of(text, "process_resident_memory_bytes", &[]) > 0.0);
    }
}

/// `etcd_server_is_learner` is 1 on a member added with `member add --learner` (and 0 on
/// the voter), as etcd serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_reports_is_learner() {
    let mut cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 1, &[]).await;
    let endpoints = cluster.endpoints();
    let learner = cluster.add_node("learner");
    let peer_urls = format!("--peer-urls={}", cluster.nodes[learner].peer_url);
    let added = etcdctl_ok(&endpoints, &["member", "add", "learner", &peer_urls, "--learner"]).await;
    let (_, initial_cluster) = common::parse_member_add(&added);
    cluster.start_joining(learner, &initial_cluster);
    let deadline = Instant::now() + WAIT_MAX;
    let mut last = String::new();
    while !last.lines().any(|line| line == "etcd_server_is_learner 1") {
        assert!(Instant::now() < deadline, "the learner never reported is_learner 1: {last}{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = scrape(&cluster.nodes[learner].metrics_url).await.unwrap_or_default();
    }
    let voter = scrape(&cluster.nodes[0].metrics_url).await.expect("the voter's metrics");
    assert!(voter.lines().any(|line| line == "etcd_server_is_learner 0"), "{voter}");
}
