//! Membership changes on a cluster of real `raftkv serve` processes while a client
//! writes, driven by Debian's etcdctl 3.4 as an operator would: grow 3 → 5 with
//! `etcdctl member add` and starting the new member with the printed
//! `ETCD_INITIAL_CLUSTER`, remove the leader (it stops), replace a member by a new empty
//! one, add a learner and promote it once it caught up, move the leader; etcd's errors
//! for the refused requests. At the end no acknowledged write is lost and every member
//! holds the same data.
//!
//! Needs `etcdctl` on PATH. Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{etcdctl_program, parse_member_add, run_bounded, Cluster, CommandOutput, ServerKind, WAIT_MAX};
use etcd_client::{Client, ConnectOptions, GetOptions};

/// Runs `etcdctl --endpoints=<endpoints> <arguments>`. A request refused with "no leader"
/// (nothing was done: an election is under way, e.g. on a loaded machine) is sent again,
/// at most 5 times.
async fn etcdctl(endpoints: &str, arguments: &[&str]) -> CommandOutput {
    let mut all = vec![format!("--endpoints={endpoints}"), "--dial-timeout=5s".into(), "--command-timeout=15s".into()];
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    let mut output = run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await;
    for _ in 0..5 {
        if output.code == 0 || !output.stderr.contains("Error: etcdserver: no leader") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        output = run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await;
    }
    output
}

/// Runs etcdctl and fails the test unless it succeeds.
async fn etcdctl_ok(endpoints: &str, arguments: &[&str]) -> String {
    let output = etcdctl(endpoints, arguments).await;
    assert_eq!(output.code, 0, "etcdctl {arguments:?} failed: {output:?}");
    output.stdout
}

/// Client URLs of the running members, comma-separated.
fn running(cluster: &Cluster) -> String {
    cluster.running_client_urls().join(",")
}

async fn connect(url: &str) -> Option<Client> {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(1)).with_timeout(Duration::from_secs(3));
    Client::connect([url], Some(options)).await.ok()
}

/// A client that writes `w/<n>` = `<n>` one key at a time, round-robin over the
/// endpoints it is given (updated as members come and go), and records acknowledged writes.
struct Writer {
    endpoints: Arc<Mutex<Vec<String>>>,
    acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Writer {
    fn start(endpoints: Vec<String>) -> Writer {
        let endpoints = Arc::new(Mutex::new(endpoints));
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(Writer::run(endpoints.clone(), acknowledged.clone(), stop.clone()));
        Writer { endpoints, acknowledged, stop, task }
    }

    async fn run(
        endpoints: Arc<Mutex<Vec<String>>>,
        acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
        stop: Arc<AtomicBool>,
    ) -> u64 {
        let mut clients: BTreeMap<String, Client> = BTreeMap::new();
        let mut attempts = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let current = endpoints.lock().unwrap().clone();
            let url = current[attempts as usize % current.len()].clone();
            attempts += 1;
            let key = format!("w/{attempts:06}");
            if !clients.contains_key(&url) {
                match connect(&url).await {
                    Some(client) => {
                        clients.insert(url.clone(), client);
                    }
                    None => continue,
                }
            }
            let client = clients.get_mut(&url).expect("connected above");
            match client.put(key.clone(), attempts.to_string(), None).await {
                Ok(_) => {
                    acknowledged.lock().unwrap().insert(key, attempts.to_string());
                }
                Err(_) => {
                    clients.remove(&url);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        attempts
    }

    fn acknowledged_count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    fn set_endpoints(&self, endpoints: Vec<String>) {
        *self.endpoints.lock().unwrap() = endpoints;
    }

    async fn stop(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        let attempts = tokio::time::timeout(WAIT_MAX, self.task).await.expect("writer stops").expect("writer task");
        let acknowledged = self.acknowledged.lock().unwrap().clone();
        assert!(acknowledged.len() >= 20, "too few acknowledged writes: {} of {attempts}", acknowledged.len());
        acknowledged
    }
}

/// Waits (bounded) until the writer has `more` further acknowledged writes.
async fn wait_for_writes(writer: &Writer, more: usize) {
    let target = writer.acknowledged_count() + more;
    let deadline = Instant::now() + WAIT_MAX;
    while writer.acknowledged_count() < target {
        assert!(Instant::now() < deadline, "the writer made no progress: {} of {target}", writer.acknowledged_count());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `etcdctl member add <name>` (learner or voter) on the running members, then starts the
/// new member with what `member add` printed. Returns (index, member id).
async fn add_and_start(cluster: &mut Cluster, name: &str, learner: bool) -> (usize, u64) {
    let index = cluster.add_node(name);
    let peer_urls = format!("--peer-urls={}", cluster.nodes[index].peer_url);
    let mut arguments = vec!["member", "add", name, &peer_urls];
    if learner {
        arguments.push("--learner");
    }
    let output = etcdctl_ok(&running(cluster), &arguments).await;
    let (id, initial_cluster) = parse_member_add(&output);
    assert!(initial_cluster.contains(&format!("{name}={}", cluster.nodes[index].peer_url)), "{output}");
    cluster.start_joining(index, &initial_cluster);
    (index, id)
}

/// Member list as etcdctl prints it in JSON: (id, name, is_learner, client URLs).
async fn member_list(endpoints: &str) -> Vec<(u64, String, bool, Vec<String>)> {
    let output = etcdctl_ok(endpoints, &["member", "list", "-w", "json"]).await;
    let value: serde_json::Value = serde_json::from_str(&output).expect("member list JSON");
    value["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| {
            let urls = member["clientURLs"]
                .as_array()
                .map_or(Vec::new(), |urls| urls.iter().filter_map(|url| url.as_str().map(str::to_string)).collect());
            (
                member["ID"].as_u64().expect("ID"),
                member["name"].as_str().unwrap_or_default().to_string(),
                member["isLearner"].as_bool().unwrap_or(false),
                urls,
            )
        })
        .collect()
}

/// (leader, member id, raft applied index) of the member at `url`.
async fn status(url: &str) -> Option<(u64, u64, u64)> {
    let mut client = connect(url).await?;
    let status = client.status().await.ok()?;
    Some((status.leader(), status.header()?.member_id(), status.raft_applied_index()))
}

/// Waits until every running member has applied at least what the leader had applied
/// when the wait started (so it caught up) and they agree on the leader.
async fn wait_converged(cluster: &mut Cluster) {
    let deadline = Instant::now() + WAIT_MAX;
    let leader = cluster.wait_for_leader().await;
    let target = status(&cluster.nodes[leader].client_url).await.map_or(0, |status| status.2);
    loop {
        let mut behind = Vec::new();
        for url in cluster.running_client_urls() {
            match status(&url).await {
                Some((_, _, applied)) if applied >= target => {}
                other => behind.push(format!("{url}: {other:?}")),
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "members did not catch up to {target}: {behind:?}{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every acknowledged write is on every running member, and all members hold the same keys.
async fn check_no_write_lost(cluster: &mut Cluster, acknowledged: &BTreeMap<String, String>) {
    wait_converged(cluster).await;
    let mut contents = Vec::new();
    for url in cluster.running_client_urls() {
        let mut client = connect(&url).await.expect("connect to a member");
        let options = GetOptions::new().with_prefix().with_serializable();
        let response = client.get("w/", Some(options)).await.expect("read all keys");
        let stored: BTreeMap<String, String> = response
            .kvs()
            .iter()
            .map(|kv| (kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string()))
            .collect();
        for (key, value) in acknowledged {
            assert_eq!(stored.get(key), Some(value), "acknowledged write {key} missing on {url}{}", cluster.logs());
        }
        contents.push((url, stored));
    }
    for (url, stored) in &contents[1..] {
        assert!(stored == &contents[0].1, "{url} and {} hold different keys", contents[0].0);
    }
}

/// Waits until every running member lists `count` members (`member list` is served
/// from each member's applied state, as in etcd 3.4).
async fn wait_member_count(cluster: &Cluster, count: usize) {
    let deadline = Instant::now() + WAIT_MAX;
    for url in cluster.running_client_urls() {
        loop {
            let members = member_list(&url).await;
            if members.len() == count {
                break;
            }
            assert!(Instant::now() < deadline, "{url} lists {members:?}, not {count} members{}", cluster.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until the members at `endpoints` list member `id` as a voter that started.
async fn wait_started_voter(cluster: &Cluster, id: u64) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let members = member_list(&running(cluster)).await;
        if members
            .iter()
            .any(|(member, name, learner, urls)| *member == id && !learner && !name.is_empty() && !urls.is_empty())
        {
            return;
        }
        assert!(Instant::now() < deadline, "member {id:x} never started: {members:?}{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `etcdctl move-leader` to member `index` (id `id`) until it leads. A transfer may fail
/// as in etcd (the target does not win its election: "leader changed" or a timeout); an
/// operator then tries again. At most 3 attempts.
async fn move_leader(cluster: &mut Cluster, index: usize, id: u64) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        let moved = etcdctl(&running(cluster), &["move-leader", &format!("{id:x}")]).await;
        if moved.code == 0 {
            assert!(moved.stdout.contains("Leadership transferred"), "{moved:?}");
            assert_eq!(cluster.wait_for_leader().await, index, "the target leads after move-leader");
            return;
        }
        let known = ["etcdserver: leader changed", "etcdserver: request timed out", "etcdserver: not leader"];
        assert!(known.iter().any(|error| moved.stderr.contains(error)), "{moved:?}{}", cluster.logs());
        failures.push(moved.stderr);
        cluster.wait_for_leader().await;
    }
    panic!("move-leader to {id:x} failed 3 times: {failures:?}{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_remove_leader_and_replace_while_writing() {
    // Frequent snapshots: members that join catch up by snapshot (member table included).
    let mut cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 3, &["--snapshot-count", "40"]).await;
    let writer = Writer::start(cluster.client_urls());
    wait_for_writes(&writer, 60).await;

    // Grow 3 → 5.
    let mut joined = Vec::new();
    for name in ["n3", "n4"] {
        let (index, id) = add_and_start(&mut cluster, name, false).await;
        wait_started_voter(&cluster, id).await;
        writer.set_endpoints(cluster.running_client_urls());
        joined.push(index);
        wait_for_writes(&writer, 40).await;
    }
    wait_member_count(&cluster, 5).await;
    wait_converged(&mut cluster).await;
    assert!(cluster.log(joined[0]).contains("restored snapshot"), "n3 caught up by snapshot{}", cluster.logs());

    // A member that joined restarts from its data dir (its ids come from there).
    cluster.kill(joined[0]);
    cluster.restart(joined[0]);
    wait_converged(&mut cluster).await;

    // Remove the leader: it stops, the others elect a new one.
    let leader = cluster.wait_for_leader().await;
    let leader_id = status(&cluster.nodes[leader].client_url).await.expect("leader status").1;
    let others: Vec<String> =
        cluster.running_client_urls().into_iter().filter(|url| *url != cluster.nodes[leader].client_url).collect();
    writer.set_endpoints(others.clone());
    let output = etcdctl_ok(&others.join(","), &["member", "remove", &format!("{leader_id:x}")]).await;
    assert!(output.contains("removed from cluster"), "{output}");
    cluster.wait_for_exit(leader).await;
    assert!(cluster.log(leader).contains("this member has been removed from the cluster"));
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    wait_member_count(&cluster, 4).await;
    wait_for_writes(&writer, 40).await;

    // Replace a follower by a new, empty member.
    let follower = (0..cluster.nodes.len()).find(|index| cluster.is_running(*index) && *index != new_leader).unwrap();
    let follower_id = status(&cluster.nodes[follower].client_url).await.expect("follower status").1;
    cluster.kill(follower);
    writer.set_endpoints(cluster.running_client_urls());
    etcdctl_ok(&running(&cluster), &["member", "remove", &format!("{follower_id:x}")]).await;
    let (_, replacement) = add_and_start(&mut cluster, "n5", false).await;
    wait_started_voter(&cluster, replacement).await;
    writer.set_endpoints(cluster.running_client_urls());
    wait_for_writes(&writer, 40).await;

    let acknowledged = writer.stop().await;
    check_no_write_lost(&mut cluster, &acknowledged).await;
    let members = member_list(&running(&cluster)).await;
    assert_eq!(members.len(), 4, "{members:?}");
    assert!(members.iter().all(|(id, ..)| *id != leader_id && *id != follower_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_promotion_move_leader_and_etcd_errors() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let writer = Writer::start(cluster.client_urls());
    let endpoints = running(&cluster);

    // A learner that has not started cannot be promoted; a second learner is refused.
    let learner = cluster.add_node("learner");
    let peer_urls = format!("--peer-urls={}", cluster.nodes[learner].peer_url);
    let output = etcdctl_ok(&endpoints, &["member", "add", "learner", &peer_urls, "--learner"]).await;
    let (learner_id, initial_cluster) = parse_member_add(&output);
    let listed = member_list(&endpoints).await;
    assert!(listed.iter().any(|(id, _, is_learner, _)| *id == learner_id && *is_learner), "{listed:?}");
    let refused = etcdctl(&endpoints, &["member", "promote", &format!("{learner_id:x}")]).await;
    assert_ne!(refused.code, 0);
    assert!(
        refused.stderr.contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{refused:?}"
    );
    let second = etcdctl(&endpoints, &["member", "add", "other", "--peer-urls=http://127.0.0.1:9", "--learner"]).await;
    assert!(second.stderr.contains("etcdserver: too many learner members in cluster"), "{second:?}");

    // etcd's other errors.
    let voter_id = member_list(&endpoints).await.iter().find(|(_, _, learner, _)| !learner).unwrap().0;
    let not_learner = etcdctl(&endpoints, &["member", "promote", &format!("{voter_id:x}")]).await;
    assert!(not_learner.stderr.contains("etcdserver: can only promote a learner member"), "{not_learner:?}");
    let missing = etcdctl(&endpoints, &["member", "remove", "1234abcd"]).await;
    assert!(missing.stderr.contains("etcdserver: member not found"), "{missing:?}");
    let taken = format!("--peer-urls={}", cluster.nodes[0].peer_url);
    let duplicate = etcdctl(&endpoints, &["member", "add", "dup", &taken]).await;
    assert!(duplicate.stderr.contains("etcdserver: Peer URLs already exists"), "{duplicate:?}");

    // Start the learner; promote it once it caught up (refused until then).
    cluster.start_joining(learner, &initial_cluster);
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let attempt = etcdctl(&running(&cluster), &["member", "promote", &format!("{learner_id:x}")]).await;
        if attempt.code == 0 {
            assert!(attempt.stdout.contains("promoted"), "{attempt:?}");
            break;
        }
        assert!(attempt.stderr.contains("in sync with leader"), "{attempt:?}");
        assert!(Instant::now() < deadline, "learner never caught up{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_started_voter(&cluster, learner_id).await;
    writer.set_endpoints(cluster.running_client_urls());

    // MemberUpdate: same URLs (accepted), another member's URLs or an unknown id (refused).
    let own_urls = format!("--peer-urls={}", cluster.nodes[learner].peer_url);
    let updated = etcdctl_ok(&running(&cluster), &["member", "update", &format!("{learner_id:x}"), &own_urls]).await;
    assert!(updated.contains("updated in cluster"), "{updated}");
    let stolen = etcdctl(&running(&cluster), &["member", "update", &format!("{voter_id:x}"), &own_urls]).await;
    assert!(stolen.stderr.contains("etcdserver: Peer URLs already exists"), "{stolen:?}");
    let unknown = etcdctl(&running(&cluster), &["member", "update", "1234abcd", &own_urls]).await;
    assert!(unknown.stderr.contains("etcdserver: member not found"), "{unknown:?}");

    // Move the leader to the promoted member, then to another one.
    move_leader(&mut cluster, learner, learner_id).await;
    let leader = learner;
    let next = (0..cluster.nodes.len()).find(|index| *index != leader && cluster.is_running(*index)).unwrap();
    let next_id = status(&cluster.nodes[next].client_url).await.expect("status").1;
    move_leader(&mut cluster, next, next_id).await;
    let bad = etcdctl(&running(&cluster), &["move-leader", "1234abcd"]).await;
    assert!(bad.stderr.contains("etcdserver: bad leader transferee"), "{bad:?}");
    wait_for_writes(&writer, 20).await;

    let acknowledged = writer.stop().await;
    check_no_write_lost(&mut cluster, &acknowledged).await;
    let members = member_list(&running(&cluster)).await;
    assert_eq!(members.len(), 4);
    assert!(members.iter().all(|(_, _, is_learner, _)| !is_learner), "{members:?}");
}

/// A member that is down while one member joins and another is removed, and comes back
/// after the log was compacted past both changes, learns them from the leader's snapshot:
/// it lists the same members as the others and, once it leads, replicates to the member
/// that joined while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_was_down_learns_changes_from_a_snapshot() {
    let mut cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 4, &["--snapshot-count", "20"]).await;
    let writer = Writer::start(cluster.client_urls());
    wait_for_writes(&writer, 20).await;
    let leader = cluster.wait_for_leader().await;
    let followers: Vec<usize> = (0..cluster.nodes.len()).filter(|index| *index != leader).collect();
    let (behind, removed) = (followers[0], followers[1]);
    let behind_id = status(&cluster.nodes[behind].client_url).await.expect("status").1;
    let removed_id = status(&cluster.nodes[removed].client_url).await.expect("status").1;
    cluster.kill(behind);
    writer.set_endpoints(cluster.running_client_urls());

    // While it is down: a member joins, another is removed, the log is compacted past both.
    let (_, added_id) = add_and_start(&mut cluster, "n4", false).await;
    wait_started_voter(&cluster, added_id).await;
    let others: Vec<String> =
        cluster.running_client_urls().into_iter().filter(|url| *url != cluster.nodes[removed].client_url).collect();
    writer.set_endpoints(others.clone());
    let output = etcdctl_ok(&others.join(","), &["member", "remove", &format!("{removed_id:x}")]).await;
    assert!(output.contains("removed from cluster"), "{output}");
    cluster.wait_for_exit(removed).await;
    wait_for_writes(&writer, 60).await;

    cluster.restart(behind);
    writer.set_endpoints(cluster.running_client_urls());
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let listed: Vec<u64> =
            member_list(&cluster.nodes[behind].client_url).await.iter().map(|member| member.0).collect();
        if listed.contains(&added_id) && !listed.contains(&removed_id) {
            break;
        }
        assert!(Instant::now() < deadline, "the member lists {listed:x?}{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_member_count(&cluster, 4).await;
    assert!(cluster.log(behind).contains("restored snapshot from leader"), "caught up by snapshot{}", cluster.logs());

    move_leader(&mut cluster, behind, behind_id).await;
    wait_for_writes(&writer, 20).await;
    let acknowledged = writer.stop().await;
    check_no_write_lost(&mut cluster, &acknowledged).await;

    // The removed member, started again on its data dir, is told by the others and stops.
    let notices = |cluster: &Cluster| cluster.log(removed).matches("has been removed from the cluster").count();
    let before = notices(&cluster);
    cluster.restart(removed);
    cluster.wait_for_exit(removed).await;
    assert!(notices(&cluster) > before, "the restarted removed member was not told{}", cluster.logs());
    assert_eq!(member_list(&running(&cluster)).await.len(), 4);
}
