//! Data corruption checks as etcd 3.4 does them (`--experimental-corrupt-check-time`,
//! `--experimental-initial-corrupt-check`).
//!
//! One member holds other data than the rest in a way no checksum of the WAL can see:
//! two one-member clusters each write the same key once with different values (both at
//! revision 2) and save a snapshot; a 3-member cluster is restored with `raftkv snapshot
//! restore` from the first file for n0 and n1 and from the second for n2. The members
//! share ids, cluster token and Raft state, so n2 joins fine, but its value differs.
//!
//! - Periodic check (the flag on n0 and n1, so a healthy member runs the check when it
//!   leads): the leader raises the CORRUPT alarm for n2 through the log, logs n2's id and
//!   name, writes fail with etcd's `etcdserver: corrupt cluster`, and `etcdctl alarm list`
//!   shows `memberID:<n2> alarm:CORRUPT`.
//! - Initial check: n2 restarted with the flag refuses to serve and exits non-zero with an
//!   error naming the peers whose data differs; a healthy member restarted with it starts.
//!
//! Needs `etcdctl` on PATH.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_ok, member_status, Cluster, Node, ServerKind, WAIT_MAX};

/// The member restored from the other snapshot.
const BAD: usize = 2;

/// Saves a snapshot of a one-member cluster that put `key=value` once (revision 2).
async fn snapshot_with(directory: &Path, file_name: &str, value: &str) -> PathBuf {
    let source = Cluster::start_raftkv(1).await;
    etcdctl_ok(&source.endpoints(), &["put", "key", value]).await;
    let file = directory.join(file_name);
    etcdctl_ok(&source.endpoints(), &["snapshot", "save", file.to_str().expect("UTF-8 path")]).await;
    file
}

/// `raftkv snapshot restore file` into `node`'s data dir.
fn restore(file: &Path, node: &Node, initial_cluster: &str) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["snapshot", "restore"])
        .arg(file)
        .args(["--name", &node.name, "--initial-cluster", initial_cluster, "--initial-cluster-token", "harness"])
        .args(["--initial-advertise-peer-urls", &node.peer_url])
        .arg("--data-dir")
        .arg(&node.data_dir)
        .output()
        .expect("run raftkv snapshot restore");
    assert!(output.status.success(), "restore failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A running 3-member cluster whose member [`BAD`] holds `key=b` where the others hold `key=a`.
async fn cluster_with_one_different_member(directory: &Path) -> Cluster {
    let good = snapshot_with(directory, "good.db", "a").await;
    let bad = snapshot_with(directory, "bad.db", "b").await;
    let cluster = Cluster::start_prepared(ServerKind::Raftkv, 3, &|node, initial_cluster| {
        let file = if node.name == format!("n{BAD}") { &bad } else { &good };
        restore(file, node, initial_cluster);
    })
    .await;
    for (index, expected) in [(0, "a"), (BAD, "b")] {
        let endpoint = &cluster.nodes[index].client_url;
        let value = etcdctl_ok(endpoint, &["get", "key", "--print-value-only", "--consistency=s"]).await;
        assert_eq!(value.trim(), expected, "n{index} serves its own restored value");
    }
    cluster
}

async fn member_id(cluster: &Cluster, index: usize) -> u64 {
    member_status(&cluster.nodes[index].client_url).await.expect("member status").1
}

/// Polls (bounded) until `condition` holds; panics with `what` and the logs otherwise.
async fn wait_until<F, Fut>(cluster: &Cluster, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT_MAX;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} not seen within {WAIT_MAX:?}{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Restarts member `index` with `arguments` and waits until the cluster agrees on a leader.
async fn restart_with(cluster: &mut Cluster, index: usize, arguments: &[&str]) {
    cluster.kill(index);
    cluster.restart_with_arguments(index, arguments);
    cluster.wait_for_leader().await;
}

/// `etcdctl move-leader` to member `index` (a transfer may fail while an election runs:
/// retried, bounded).
async fn move_leader_to(cluster: &mut Cluster, index: usize) {
    let target = format!("{:x}", member_id(cluster, index).await);
    for _ in 0..3 {
        let moved = etcdctl(&cluster.endpoints(), &["move-leader", &target]).await;
        if moved.code == 0 && cluster.wait_for_leader().await == index {
            return;
        }
    }
    panic!("move-leader to n{index} failed{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_raises_the_corrupt_alarm_for_the_member_with_other_data() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut cluster = cluster_with_one_different_member(directory.path()).await;
    let bad_id = member_id(&cluster, BAD).await;
    for healthy in [0, 1] {
        restart_with(&mut cluster, healthy, &["--experimental-corrupt-check-time", "200ms"]).await;
    }
    if cluster.wait_for_leader().await == BAD {
        move_leader_to(&mut cluster, 0).await;
    }
    let named = format!("member n{BAD} ({bad_id:x}) holds different data");
    let endpoints = cluster.endpoints();
    wait_until(&cluster, "the CORRUPT alarm", || async {
        let refused = etcdctl(&endpoints, &["put", "after", "x"]).await;
        refused.code != 0 && refused.stderr.contains("etcdserver: corrupt cluster")
    })
    .await;
    let logs = cluster.log(0) + &cluster.log(1);
    assert!(logs.contains(&named), "the leader's log names the bad member ({named}){}", cluster.logs());
    assert!(logs.contains("same compact revision then hashes must match"), "etcd's reason is logged");
    let alarms = etcdctl_ok(&endpoints, &["alarm", "list"]).await;
    assert_eq!(alarms.trim(), format!("memberID:{bad_id} alarm:CORRUPT"), "etcdctl alarm list names n{BAD}");
    let value = etcdctl_ok(&cluster.nodes[0].client_url, &["get", "key", "--print-value-only"]).await;
    assert_eq!(value.trim(), "a", "reads are still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_with_other_data_refuses_to_start_with_the_initial_check() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let mut cluster = cluster_with_one_different_member(directory.path()).await;
    let (good_ids, bad_id) =
        ([member_id(&cluster, 0).await, member_id(&cluster, 1).await], member_id(&cluster, BAD).await);
    // With auth enabled: members compare hashes on the peer port, without client credentials.
    let first = cluster.nodes[0].client_url.clone();
    etcdctl_ok(&first, &["user", "add", "root:secret"]).await;
    etcdctl_ok(&first, &["auth", "enable"]).await;
    cluster.kill(BAD);
    cluster.restart_with_arguments(BAD, &["--experimental-initial-corrupt-check"]);
    let code = cluster.wait_for_exit(BAD).await;
    assert_ne!(code, 0, "the member with other data must not serve{}", cluster.logs());
    let log = cluster.log(BAD);
    let refusal = format!("{bad_id:x} found data inconsistency with peers");
    assert!(log.contains(&refusal), "the refusal is reported ({refusal}):\n{log}");
    for (index, id) in good_ids.iter().enumerate() {
        assert!(log.contains(&format!("n{index} ({id:x})")), "the refusal names n{index}:\n{log}");
    }
    assert!(log.contains("found different hash values from remote peer"), "etcd's warning is logged:\n{log}");
    // The healthy members go on serving.
    // (A put may time out while they elect a new leader, if n2 led: polled.)
    let healthy = cluster.nodes[0].client_url.clone();
    wait_until(&cluster, "a write on the healthy members", || async {
        etcdctl(&healthy, &["put", "still", "served", "--user=root:secret"]).await.code == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_cluster_starts_and_restarts_with_the_initial_check() {
    let check = "--experimental-initial-corrupt-check";
    let mut cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 3, &[check]).await;
    for index in 0..10 {
        etcdctl_ok(&cluster.endpoints(), &["put", &format!("key/{index}"), "value"]).await;
    }
    // Restarted while the others serve, the member compares with both of them and starts.
    cluster.kill(BAD);
    cluster.restart(BAD);
    cluster.wait_for_leader().await;
    let endpoint = cluster.nodes[BAD].client_url.clone();
    wait_until(&cluster, "the restarted member serving", || async {
        etcdctl(&endpoint, &["get", "key/9", "--print-value-only"]).await.stdout.trim() == "value"
    })
    .await;
    let log = cluster.log(BAD);
    let passes = log.matches("initial corruption checking passed; no corruption").count();
    assert_eq!(passes, 2, "both starts ran the check and passed:\n{log}");
    assert!(log.contains("peers_compared=2"), "the restart compared with both peers:\n{log}");
    assert!(!log.contains("found different hash values"), "no mismatch reported:\n{log}");
}
