//! Who a member is, and what it says when that goes wrong, on real processes:
//! - a member restarted from its data dir ignores `--initial-cluster`, as etcd does (after
//!   `member update` it restarts with its new peer URL, the old list or an edited one);
//! - a data dir of another member or cluster is refused with hex ids and a hint;
//! - members whose `--initial-cluster` lists differ are told the lists must match, once
//!   per 30 s, not several times a second;
//! - a joining member's first log line carries its own member and cluster ids.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    etcdctl_program, free_port, member_status, parse_member_add, run_bounded, Cluster, CommandOutput, WAIT_MAX,
};

async fn etcdctl(endpoints: &str, arguments: &[&str]) -> CommandOutput {
    let mut full = vec![format!("--endpoints={endpoints}"), "--command-timeout=5s".to_string()];
    full.extend(arguments.iter().map(|argument| argument.to_string()));
    run_bounded(&etcdctl_program(), &full, &[("ETCDCTL_API", "3")], "").await
}

/// etcdctl until it succeeds (an election may be under way); its stdout.
async fn etcdctl_until_ok(endpoints: &str, arguments: &[&str], context: &dyn Fn() -> String) -> String {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let output = etcdctl(endpoints, arguments).await;
        if output.code == 0 {
            return output.stdout;
        }
        assert!(Instant::now() < deadline, "etcdctl {arguments:?} kept failing: {}{}", output.stderr, context());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Text without ANSI colour sequences (log lines may be coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(character) = chars.next() {
        if character == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(character);
        }
    }
    out
}

/// `raftkv serve` flags of a one-member cluster `name` on fresh ports.
fn single_member_flags(name: &str, data_dir: &Path, token: &str) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    [
        "serve",
        "--name",
        name,
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &format!("{name}={peer}"),
        "--initial-cluster-token",
        token,
        "--data-dir",
        &data_dir.display().to_string(),
    ]
    .iter()
    .map(|word| word.to_string())
    .collect()
}

/// Runs `raftkv` with `flags` until it exits (it must, within [`WAIT_MAX`]).
async fn run_until_exit(flags: &[String]) -> CommandOutput {
    run_bounded(env!("CARGO_BIN_EXE_raftkv"), flags, &[], "").await
}

/// Starts a one-member cluster in `data_dir`, waits until it leads, stops it.
async fn bootstrap_once(flags: &[String]) {
    let client = flags[flags.iter().position(|flag| flag == "--listen-client-urls").unwrap() + 1].clone();
    let mut child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start raftkv");
    let deadline = Instant::now() + WAIT_MAX;
    while !matches!(member_status(&client).await, Ok((leader, _)) if leader != 0) {
        assert!(Instant::now() < deadline, "the one-member cluster never elected itself");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// An id as raftkv prints it: hex, at most 16 digits (a random u64 in decimal has 17-20).
fn is_hex_id(word: &str) -> bool {
    (1..=16).contains(&word.len()) && u64::from_str_radix(word, 16).is_ok()
}

/// The word right after `marker` in `text` (empty if there is none).
fn word_after(text: &str, marker: &str) -> String {
    let rest = text.split(marker).nth(1).unwrap_or("");
    rest.split(|character: char| !character.is_ascii_alphanumeric()).next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_another_member_is_refused_with_hex_ids_and_a_hint() {
    let directory = tempfile::tempdir().unwrap();
    let data_dir = directory.path().join("a.data");
    bootstrap_once(&single_member_flags("a", &data_dir, "first")).await;

    // Another --name on that data dir: refused, naming the member it holds.
    let refused = run_until_exit(&single_member_flags("b", &data_dir, "second")).await;
    assert_ne!(refused.code, 0, "{refused:?}");
    let text = plain(&refused.stderr);
    assert!(text.contains("holds member ") && text.contains("named 'a' of cluster "), "{text}");
    assert!(
        text.contains("not 'b'") && text.contains("check --data-dir, --name and --initial-cluster-token"),
        "{text}"
    );
    assert!(is_hex_id(&word_after(&text, "holds member ")), "hex member id: {text}");
    assert!(is_hex_id(&word_after(&text, "of cluster ")), "hex cluster id: {text}");

    // A data dir without its identity file (an older raftkv's) and another token: the WAL
    // refuses, in hex, with the same hint.
    std::fs::remove_file(data_dir.join("member-identity.json")).unwrap();
    let refused = run_until_exit(&single_member_flags("a", &data_dir, "second")).await;
    assert_ne!(refused.code, 0, "{refused:?}");
    let text = plain(&refused.stderr);
    assert!(text.contains("belongs to cluster ") && text.contains("but this WAL was opened for cluster "), "{text}");
    assert!(text.contains("check --data-dir, --name and --initial-cluster-token"), "{text}");
    for before in ["belongs to cluster ", "opened for cluster "] {
        assert!(is_hex_id(&word_after(&text, before)), "hex id after `{before}`: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_restarted_after_member_update_ignores_initial_cluster() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let leader = cluster.wait_for_leader().await;
    let moved = (leader + 1) % 3;
    let (_, moved_id) = member_status(&cluster.nodes[moved].client_url).await.expect("status");
    let new_peer_url = format!("http://127.0.0.1:{}", free_port());
    // Asked through the leader: the moved member itself would wait for an apply that the
    // others can no longer tell it (they dial its new, not yet listening, URL).
    let endpoints = cluster.nodes[leader].client_url.clone();
    let updated =
        etcdctl(&endpoints, &["member", "update", &format!("{moved_id:x}"), &format!("--peer-urls={new_peer_url}")])
            .await;
    assert_eq!(updated.code, 0, "{updated:?}{}", cluster.logs());
    cluster.kill(moved);
    let old_list =
        cluster.nodes.iter().map(|node| format!("{}={}", node.name, node.peer_url)).collect::<Vec<_>>().join(",");
    cluster.nodes[moved].peer_url = new_peer_url.clone();

    // The old --initial-cluster (its URL for this member no longer matches), then an edited one.
    let edited_list =
        cluster.nodes.iter().map(|node| format!("{}={}", node.name, node.peer_url)).collect::<Vec<_>>().join(",");
    for (round, list) in [old_list, edited_list].into_iter().enumerate() {
        // `existing` on a data dir that holds the member: ignored too, as etcd does.
        cluster.start_joining(moved, &list);
        let others: Vec<String> = cluster
            .nodes
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != moved)
            .map(|(_, node)| node.client_url.clone())
            .collect();
        let key = format!("after-update-{round}");
        etcdctl_until_ok(&others.join(","), &["put", &key, "v"], &|| cluster.logs()).await;
        let url = cluster.nodes[moved].client_url.clone();
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            cluster.assert_running();
            let got = etcdctl(&url, &["get", &key, "--print-value-only", "--consistency=s"]).await;
            if got.code == 0 && got.stdout.trim() == "v" {
                break;
            }
            assert!(Instant::now() < deadline, "the restarted member never caught up: {got:?}{}", cluster.logs());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (_, id_after) = member_status(&url).await.expect("status");
        assert_eq!(id_after, moved_id, "the member keeps its id");
        cluster.kill(moved);
    }
    let list = etcdctl(&cluster.endpoints(), &["member", "list"]).await;
    assert!(list.stdout.contains(&new_peer_url), "{list:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_cluster_lists_that_differ_are_refused_once_per_interval_with_a_hint() {
    let directory = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let member = |index: usize| format!("m{index}=http://127.0.0.1:{}", ports[index].1);
    let short_list = format!("{},{}", member(0), member(1));
    let long_list = format!("{},{},{}", member(0), member(1), member(2));
    let mut children = Vec::new();
    for (index, list) in [&short_list, &short_list, &long_list].into_iter().enumerate() {
        let (client, peer) = ports[index];
        let log = std::fs::File::create(directory.path().join(format!("m{index}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_raftkv"))
            .arg("serve")
            .args(["--name", &format!("m{index}")])
            .arg("--data-dir")
            .arg(directory.path().join(format!("m{index}.data")))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args(["--initial-cluster", list])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        children.push(child);
    }
    struct Stop(Vec<std::process::Child>);
    impl Drop for Stop {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    let _stop = Stop(children);
    let hint = "every member must be started with the same --initial-cluster";
    let read_log = |index: usize| {
        plain(&std::fs::read_to_string(directory.path().join(format!("m{index}.log"))).unwrap_or_default())
    };
    let deadline = Instant::now() + WAIT_MAX;
    while !read_log(0).contains(hint) && !read_log(1).contains(hint) {
        assert!(Instant::now() < deadline, "no member explained the refusal:\n{}\n---\n{}", read_log(0), read_log(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // m2 keeps dialling (backing off to once a second); the refusal is logged once per 30 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for index in 0..2 {
        let log = read_log(index);
        let refusals = log.lines().filter(|line| line.contains(hint)).count();
        assert!(refusals <= 2, "m{index} logged the refusal {refusals} times:\n{log}");
        if refusals > 0 {
            assert!(log.contains("--initial-cluster-token"), "{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_logs_its_own_ids_first() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let endpoints = cluster.endpoints();
    let index = cluster.add_node("n3");
    let peer_url = cluster.nodes[index].peer_url.clone();
    let added = etcdctl(&endpoints, &["member", "add", "n3", &format!("--peer-urls={peer_url}")]).await;
    assert_eq!(added.code, 0, "{added:?}");
    let (member_id, initial_cluster) = parse_member_add(&added.stdout);
    let cluster_id = added
        .stdout
        .split("added to cluster ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("member add names the cluster")
        .to_string();
    cluster.start_joining(index, &initial_cluster);
    let deadline = Instant::now() + WAIT_MAX;
    let first_line = loop {
        let log = plain(&cluster.log(index));
        if let Some(line) = log.lines().find(|line| !line.trim().is_empty()) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "the joining member logged nothing{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        first_line.contains(&format!("{member_id:x}")),
        "first line lacks the member id {member_id:x}: {first_line}"
    );
    assert!(first_line.contains(&cluster_id), "first line lacks the cluster id {cluster_id}: {first_line}");
}

/// Member list as `etcdctl member list -w json` prints it at `endpoint`: (id, peer URLs),
/// sorted.
async fn member_ids_and_peer_urls(endpoint: &str, context: &dyn Fn() -> String) -> Vec<(u64, Vec<String>)> {
    let output = etcdctl_until_ok(endpoint, &["member", "list", "-w", "json"], context).await;
    let value: serde_json::Value = serde_json::from_str(&output).expect("member list JSON");
    let mut members: Vec<(u64, Vec<String>)> = value["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|member| {
            let urls = member["peerURLs"].as_array().expect("peerURLs");
            (member["ID"].as_u64().expect("ID"), urls.iter().map(|url| url.as_str().unwrap().to_string()).collect())
        })
        .collect();
    members.sort();
    members
}

/// A member added with `member add` gets an id the cluster chose, not one derived from
/// `--initial-cluster` and the token: restarted, it must still know every member by its
/// real id (its member table is seeded from its data dir, not from the flag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_member_restarted_lists_every_member_with_their_real_ids() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let founders: Vec<String> = cluster.client_urls();
    let index = cluster.add_node("n3");
    let peer_url = cluster.nodes[index].peer_url.clone();
    let added = etcdctl(&founders.join(","), &["member", "add", "n3", &format!("--peer-urls={peer_url}")]).await;
    assert_eq!(added.code, 0, "{added:?}");
    let (member_id, initial_cluster) = parse_member_add(&added.stdout);
    cluster.start_joining(index, &initial_cluster);
    let joined_url = cluster.nodes[index].client_url.clone();
    etcdctl_until_ok(&joined_url, &["get", "any", "--consistency=l"], &|| cluster.logs()).await;
    let expected = member_ids_and_peer_urls(&founders[0], &|| cluster.logs()).await;
    assert_eq!(expected.len(), 4, "{expected:?}");
    assert!(expected.iter().any(|(id, _)| *id == member_id), "{expected:?}");

    cluster.kill(index);
    cluster.restart(index);
    etcdctl_until_ok(&joined_url, &["put", "after-restart", "v"], &|| cluster.logs()).await;
    let listed = member_ids_and_peer_urls(&joined_url, &|| cluster.logs()).await;
    assert_eq!(listed, expected, "the restarted joined member's member list{}", cluster.logs());
    let (_, id_after) = member_status(&joined_url).await.expect("status");
    assert_eq!(id_after, member_id, "the joined member keeps the id member add gave it");
}
