//! Slow reads never stall the Raft loop (issue 17): on a 3-member raftkv cluster holding
//! `KEYS` values of `VALUE_BYTES`, the leader serves full Ranges, HashKVs and snapshots
//! while clients keep writing and the leader takes its own log snapshots
//! (`--snapshot-count`). Readers work on a read view of the store, so apply goes on and
//! heartbeats keep flowing: the test checks that no election happens (terms and leaders
//! unchanged), that every follower received heartbeats meanwhile and that every read
//! answered in full. It prints the largest gap between two heartbeats each follower saw
//! (`raftkv_heartbeat_gap_max_microseconds`); no assertion is about time. To measure an
//! older build with the same load: `RAFTKV_TEST_BINARY=/path/to/raftkv cargo test
//! --release --test slow_reads -- --nocapture`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::{Cluster, ServerKind};

/// Keys loaded before the slow reads, and each value's size.
const KEYS: usize = 40_000;
const VALUE_BYTES: usize = 1024;
/// Concurrent writers while loading and during the slow reads.
const WRITERS: usize = 16;
/// Rounds of (full Range, HashKV, snapshot) on the leader.
const ROUNDS: usize = 2;

/// Puts `KEYS` keys `data/<n>` with `WRITERS` concurrent clients.
async fn load(url: &str) {
    let client = etcd_client::Client::connect([url], None).await.expect("connect");
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            for key in (writer..KEYS).step_by(WRITERS) {
                client.put(format!("data/{key:06}"), vec![b'd'; VALUE_BYTES], None).await.expect("load put");
            }
        }));
    }
    for task in tasks {
        task.await.expect("load task");
    }
}

/// Writers putting `live/<writer>` until `stop` is set; returns the puts acknowledged.
fn start_writers(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let client = etcd_client::Client::connect([url.as_str()], None).await.expect("connect");
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let (mut client, stop, acknowledged) = (client.clone(), stop.clone(), acknowledged.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    if client.put(format!("live/{writer}"), vec![b'l'; 256], None).await.is_ok() {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer task");
        }
        acknowledged.load(Ordering::SeqCst)
    })
}

/// One round of slow reads on `endpoint`: a full Range of `data/`, a HashKV and a
/// snapshot (`etcdctl`, as an operator would), each checked for a complete answer.
async fn slow_reads(endpoint: &str, snapshot_file: &std::path::Path) {
    // etcdctl takes an answer of any size (etcd-client stops at gRPC's 4 MiB default).
    let values = common::etcdctl_ok(endpoint, &["get", "data/", "--prefix", "--print-value-only"]).await;
    let values: Vec<&str> = values.lines().filter(|line| !line.is_empty()).collect();
    assert_eq!(values.len(), KEYS, "the full Range answers every key");
    assert!(values.iter().all(|value| value.len() == VALUE_BYTES), "and every value");
    let hash = common::etcdctl_ok(endpoint, &["endpoint", "hashkv", "-w", "json"]).await;
    assert!(hash.contains("\"hash\""), "HashKV answers: {hash}");
    let file = snapshot_file.display().to_string();
    common::etcdctl_ok(endpoint, &["snapshot", "save", &file]).await;
    let size_bytes = std::fs::metadata(snapshot_file).expect("the snapshot was saved").len();
    assert!(size_bytes as usize > KEYS * VALUE_BYTES, "the snapshot holds the data ({size_bytes} bytes)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_ranges_hash_kv_and_snapshots_do_not_stop_heartbeats() {
    let cluster =
        Cluster::start_with_arguments(ServerKind::Raftkv, 3, &["--snapshot-count", "5000", "--max-txn-ops", "128"])
            .await;
    let mut cluster = cluster;
    let leader = cluster.wait_for_leader().await;
    let leader_url = cluster.client_urls()[leader].clone();
    load(&leader_url).await;
    let before = common::terms_and_leaders(&cluster).await;
    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    let mut heartbeats_before = Vec::new();
    for follower in &followers {
        let url = &cluster.nodes[*follower].metrics_url;
        heartbeats_before.push(common::metric(url, "raftkv_heartbeats_received_total").await);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(leader_url.clone(), stop.clone());
    let snapshot_file = cluster.directory().join("slow-reads.db");
    for _ in 0..ROUNDS {
        slow_reads(&leader_url, &snapshot_file).await;
    }
    stop.store(true, Ordering::SeqCst);
    let acknowledged = writers.await.expect("writers");

    let after = common::terms_and_leaders(&cluster).await;
    let mut report = format!("{KEYS} keys of {VALUE_BYTES} bytes, {ROUNDS} rounds; {acknowledged} puts meanwhile;");
    for (follower, heartbeats) in followers.iter().zip(&heartbeats_before) {
        let url = &cluster.nodes[*follower].metrics_url;
        let heartbeats_after = common::metric(url, "raftkv_heartbeats_received_total").await;
        let gap_microseconds = common::metric(url, "raftkv_heartbeat_gap_max_microseconds").await;
        report += &format!(
            " member {follower}: {} heartbeats during the reads, largest gap {} ms;",
            heartbeats_after - heartbeats,
            gap_microseconds / 1000
        );
        assert!(heartbeats_after > *heartbeats, "member {follower} received no heartbeat: {report}");
    }
    println!("{report}");
    assert_eq!(before, after, "a term or leader changed during the slow reads: {report}{}", cluster.logs());
    assert!(acknowledged > 0, "no write went through during the reads: {report}");
    cluster.assert_running();
}
