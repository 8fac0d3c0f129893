//! `--force-new-cluster` (etcd's disaster recovery after a permanent loss of quorum): the
//! survivor of a 3-member cluster whose two other members are gone for good restarts as
//! a one-member cluster with every acknowledged write, stays one after a plain restart,
//! and regrows to three with `etcdctl member add` (the first new member catches up as a
//! learner and is promoted by the leader, thesis §4.2.1). On an empty data dir the flag is
//! refused and nothing is written.

mod common;

use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_ok, parse_member_add, Cluster, WAIT_MAX};

const KEYS: usize = 20;

/// Polls `etcdctl <arguments>` on `endpoint` (bounded) until it succeeds with output that
/// `accept` takes; returns that output.
async fn wait_for(cluster: &Cluster, endpoint: &str, arguments: &[&str], accept: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let output = etcdctl(endpoint, arguments).await;
        if output.code == 0 && accept(&output.stdout) {
            return output.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "etcdctl {arguments:?} on {endpoint}: {}{}{}",
            output.stdout,
            output.stderr,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The keys under `k` that `endpoint` serves from its own store.
async fn keys_on(cluster: &Cluster, endpoint: &str, count: usize) -> String {
    let arguments = ["get", "k", "--prefix", "--keys-only", "--consistency=s"];
    wait_for(cluster, endpoint, &arguments, |out| out.split_whitespace().count() == count).await
}

fn member_lines(output: &str) -> usize {
    output.lines().filter(|line| !line.trim().is_empty()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_restarts_alone_and_regrows_to_three() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let survivor = cluster.nodes[0].client_url.clone();
    for index in 0..KEYS {
        etcdctl_ok(&survivor, &["put", &format!("k{index:02}"), &format!("v{index}")]).await;
    }
    for lost in [1, 2] {
        cluster.kill(lost);
        std::fs::remove_dir_all(&cluster.nodes[lost].data_dir).expect("delete a lost member's data dir");
    }
    cluster.kill(0);
    cluster.restart_with_arguments(0, &["--force-new-cluster"]);
    wait_for(&cluster, &survivor, &["put", "k-after", "x"], |_| true).await;
    let keys = keys_on(&cluster, &survivor, KEYS + 1).await;
    for index in 0..KEYS {
        assert!(keys.contains(&format!("k{index:02}")), "acknowledged k{index:02} is lost: {keys}");
    }
    let value = etcdctl_ok(&survivor, &["get", "k07", "--print-value-only"]).await;
    assert_eq!(value.trim(), "v7");
    assert_eq!(
        member_lines(&etcdctl_ok(&survivor, &["member", "list"]).await),
        1,
        "one member after the forced restart"
    );
    assert!(cluster.log(0).contains("forcing restart as a one-member cluster"), "{}", cluster.log(0));

    // A plain restart keeps the one-member cluster (the change is in the log).
    cluster.kill(0);
    cluster.restart(0);
    wait_for(&cluster, &survivor, &["put", "k-restarted", "y"], |_| true).await;
    assert_eq!(member_lines(&etcdctl_ok(&survivor, &["member", "list"]).await), 1, "still one member");

    for (grown, name) in [(2, "regrown-1"), (3, "regrown-2")] {
        regrow(&mut cluster, &survivor, name, grown).await;
    }
    // Three voters again: the cluster commits with one of them stopped.
    let newest = cluster.nodes.len() - 1;
    cluster.kill(newest);
    etcdctl_ok(&survivor, &["put", "k-regrown", "z"]).await;
    let second = cluster.nodes[newest - 1].client_url.clone();
    let keys = keys_on(&cluster, &second, KEYS + 3).await;
    assert!(keys.contains("k-regrown") && keys.contains("k00"), "{keys}");
    cluster.restart(newest);
    let third = cluster.nodes[newest].client_url.clone();
    keys_on(&cluster, &third, KEYS + 3).await;
    cluster.assert_running();
}

/// `etcdctl member add` of a new, empty member through `survivor`, started as `member add`
/// says; waits until the member list holds `members` voters and the new member serves
/// every key.
async fn regrow(cluster: &mut Cluster, survivor: &str, name: &str, members: usize) {
    let index = cluster.add_node(name);
    let peer_url = cluster.nodes[index].peer_url.clone();
    let added = etcdctl_ok(survivor, &["member", "add", name, &format!("--peer-urls={peer_url}")]).await;
    let (_, initial_cluster) = parse_member_add(&added);
    cluster.start_joining(index, &initial_cluster);
    // Listed as a voter (isLearner false) and started (its name published).
    let voters = |out: &str| out.lines().filter(|line| line.trim_end().ends_with("false")).count() == members;
    let started = |out: &str| out.lines().any(|line| line.contains(&format!(", started, {name},")));
    let listed = |out: &str| member_lines(out) == members && voters(out) && started(out);
    wait_for(cluster, survivor, &["member", "list"], listed).await;
    let endpoint = cluster.nodes[index].client_url.clone();
    keys_on(cluster, &endpoint, KEYS + 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_on_an_empty_data_dir_is_refused() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let data_dir = directory.path().join("empty.data");
    let output = common::serve_one_member_until_exit(&data_dir, &["--force-new-cluster"]).await;
    assert_ne!(output.code, 0, "{output:?}");
    let text = format!("{}{}", output.stdout, output.stderr);
    assert!(text.contains("--force-new-cluster") && text.contains("holds no write-ahead log"), "{text}");
    assert!(!data_dir.exists(), "nothing was written to the data dir");
}
