//! Bad input on the client and peer ports of every member of a 3-node cluster: random
//! bytes, truncated frames, oversized length headers, bad checksums, handshakes from another
//! cluster, from an unknown member or addressed to another member, malformed messages after
//! a valid handshake, HTTP/2 garbage, an oversized gRPC request. Every member must log the
//! refusals, stay alive, keep serving reads and writes, and never panic.

mod common;

use std::time::{Duration, Instant};

use chaos::cluster::{Cluster, ClusterOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Longest wait for the cluster to elect a leader or to serve a write.
const WAIT_MAX: Duration = Duration::from_secs(30);

/// Rounds of attacks on every member.
const ROUNDS: usize = 3;

async fn put_then_get(url: &str, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
    let channel = chaos::etcd::channel(url, Duration::from_secs(2))?;
    let start = Instant::now();
    loop {
        let attempt = async {
            chaos::etcd::put(&channel, key, value, Duration::from_secs(2)).await?;
            chaos::etcd::get(&channel, key, 0, false, Duration::from_secs(2)).await
        };
        match attempt.await {
            Ok((Some(found), _)) if found == value => return Ok(()),
            other if start.elapsed() > WAIT_MAX => anyhow::bail!("{url} does not serve: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_survive_bad_input_on_every_port() {
    let directory = common::history_directory().join(format!("bad-input-pid{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    let options = ClusterOptions {
        binary: common::raftkv_binary(),
        nodes: 3,
        directory: directory.clone(),
        extra_arguments: Vec::new(),
    };
    let mut cluster = Cluster::start(options).await.expect("the cluster starts");
    let channels: Vec<_> = (0..cluster.len())
        .map(|index| chaos::etcd::channel(&cluster.client_url(index), Duration::from_secs(2)).unwrap())
        .collect();
    let statuses = chaos::verify::wait_for_convergence(&channels, WAIT_MAX).await.expect("a leader");
    let mut random = ChaCha8Rng::seed_from_u64(301);
    for round in 0..ROUNDS {
        for index in 0..cluster.len() {
            let peer = (index + 1) % cluster.len();
            let target = chaos::bad_input::Target {
                client_address: cluster.client_address(index),
                peer_address: cluster.peer_address(index),
                cluster_id: statuses[index].cluster_id,
                member_id: statuses[index].member_id,
                peer_member_id: statuses[peer].member_id,
            };
            let sent = chaos::bad_input::attack(&target, &mut random).await;
            let oversized = chaos::bad_input::oversized_put(&cluster.client_url(index), 8 << 20).await.unwrap();
            if round == 0 {
                println!("{}: sent {sent:?}; oversized put: {oversized}", cluster.name(index));
            }
            assert!(!oversized.starts_with("accepted"), "an 8 MiB put was accepted: {oversized}");
        }
    }
    for index in 0..cluster.len() {
        let key = format!("bad-input/{index}");
        put_then_get(&cluster.client_url(index), key.as_bytes(), b"still serving").await.unwrap();
    }
    assert_eq!(cluster.unexpected_exits(), Vec::<String>::new(), "a member exited");
    assert_eq!(cluster.panics_in_logs(), Vec::<String>::new(), "a member panicked");
    for index in 0..cluster.len() {
        let log = std::fs::read_to_string(cluster.log_path(index)).unwrap_or_default();
        assert!(
            log.contains("belongs to cluster") && log.contains("is not a member of cluster"),
            "{} did not log the refused handshakes:\n{}",
            cluster.name(index),
            cluster.log_tail(index, 3000)
        );
    }
    chaos::verify::wait_for_convergence(&channels, WAIT_MAX).await.expect("members converge");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&directory);
}
