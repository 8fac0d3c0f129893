//! Watch and Lease against a 3-member raftkv cluster of real processes, driven by
//! Debian's etcdctl 3.4 and the etcd-client crate: watch (new events and `--rev`),
//! lease grant / put --lease / keep-alive / time-to-live / list / revoke, `etcdctl lock`
//! and `etcdctl elect`; a watcher's events across a SIGKILL of the leader (no gap, no
//! duplicate, compared with the KV history); a lease kept alive across a leader change
//! keeps its keys.
//!
//! Needs `etcdctl` on PATH. Every wait is bounded.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{etcdctl_program, run_bounded, Cluster, CommandOutput, WAIT_MAX};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use tokio::io::AsyncReadExt;

fn etcdctl_arguments(endpoints: &str, arguments: &[&str]) -> Vec<String> {
    let mut all = vec![format!("--endpoints={endpoints}"), "--dial-timeout=5s".into(), "--command-timeout=10s".into()];
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    all
}

/// Runs `etcdctl --endpoints=<endpoints> <arguments>` and fails the test unless it succeeds.
async fn etcdctl(endpoints: &str, arguments: &[&str]) -> CommandOutput {
    let output =
        run_bounded(&etcdctl_program(), &etcdctl_arguments(endpoints, arguments), &[("ETCDCTL_API", "3")], "").await;
    assert_eq!(output.code, 0, "etcdctl {arguments:?} failed: {output:?}");
    output
}

/// A long-running etcdctl (watch, elect) whose output is read until it holds a text.
struct Background {
    child: tokio::process::Child,
    output: String,
}

impl Background {
    fn start(endpoints: &str, arguments: &[&str]) -> Background {
        let child = tokio::process::Command::new(etcdctl_program())
            .args(etcdctl_arguments(endpoints, arguments))
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start etcdctl");
        Background { child, output: String::new() }
    }

    /// Reads standard output until it contains `expected`; fails after [`WAIT_MAX`].
    async fn wait_for(&mut self, expected: &str) -> String {
        let deadline = Instant::now() + WAIT_MAX;
        let stdout = self.child.stdout.as_mut().expect("piped stdout");
        let mut buffer = [0_u8; 4096];
        while !self.output.contains(expected) {
            let left = deadline.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, stdout.read(&mut buffer)).await;
            match read {
                Ok(Ok(count)) if count > 0 => self.output.push_str(&String::from_utf8_lossy(&buffer[..count])),
                _ => panic!("etcdctl never printed {expected:?}; it printed {:?}", self.output),
            }
        }
        self.output.clone()
    }
}

async fn connect(cluster: &Cluster) -> Client {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(5));
    Client::connect(cluster.running_client_urls(), Some(options)).await.expect("connect")
}

#[tokio::test]
async fn etcdctl_watch_prints_new_and_past_events() {
    let cluster = Cluster::start_raftkv(3).await;
    let endpoints = cluster.endpoints();
    let mut client = connect(&cluster).await;
    let first = client.put("w/a", "1", None).await.expect("put");
    let first_revision = first.header().expect("header").revision();
    // From the next revision on: no race with the watch being set up.
    let next = (first_revision + 1).to_string();
    let mut live = Background::start(&endpoints, &["watch", "--prefix", "w/", "--rev", &next, "--prev-kv"]);
    client.put("w/b", "2", None).await.expect("put");
    client.put("w/a", "3", None).await.expect("put");
    client.delete("w/b", None).await.expect("delete");
    // With --prev-kv etcdctl prints the previous pair before the new one.
    let expected = "PUT\nw/b\n2\nPUT\nw/a\n1\nw/a\n3\nDELETE\nw/b\n2\nw/b\n";
    let printed = live.wait_for(expected).await;
    assert!(printed.starts_with(expected), "{printed:?}");

    // A watch starting in the past replays history, then the compacted error.
    let mut past = Background::start(&endpoints, &["watch", "w/a", "--rev", "1"]);
    past.wait_for("PUT\nw/a\n1\nPUT\nw/a\n3\n").await;
    etcdctl(&endpoints, &["compact", &(first_revision + 2).to_string()]).await;
    let compacted = run_bounded(
        &etcdctl_program(),
        &etcdctl_arguments(&endpoints, &["watch", "w/a", "--rev", "1"]),
        &[("ETCDCTL_API", "3")],
        "",
    )
    .await;
    assert!(
        compacted.stdout.contains("required revision has been compacted")
            || compacted.stderr.contains("required revision has been compacted"),
        "{compacted:?}"
    );
}

#[tokio::test]
async fn etcdctl_lease_flow() {
    let cluster = Cluster::start_raftkv(3).await;
    let endpoints = cluster.endpoints();
    let granted = etcdctl(&endpoints, &["lease", "grant", "60"]).await.stdout;
    // "lease 694d77aa9e38260f granted with TTL(60s)"
    let id = granted.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(granted.contains("granted with TTL(60s)"), "{granted}");
    etcdctl(&endpoints, &["put", "--lease", &id, "leased", "v"]).await;
    let alive = etcdctl(&endpoints, &["lease", "timetolive", "--keys", &id]).await.stdout;
    assert!(alive.contains("granted with TTL(60s)") && alive.contains("attached keys([leased])"), "{alive}");
    for url in cluster.client_urls() {
        // Every member answers keep-alives (followers forward them to the leader).
        let kept = etcdctl(&url, &["lease", "keep-alive", "--once", &id]).await.stdout;
        assert!(kept.contains("keepalived with TTL(60)"), "{url}: {kept}");
    }
    let listed = etcdctl(&endpoints, &["lease", "list"]).await.stdout;
    assert!(listed.contains("found 1 leases") && listed.contains(&id), "{listed}");
    let revoked = etcdctl(&endpoints, &["lease", "revoke", &id]).await.stdout;
    assert!(revoked.contains("revoked"), "{revoked}");
    let gone = etcdctl(&endpoints, &["get", "leased"]).await.stdout;
    assert_eq!(gone, "");
    let missing = etcdctl(&endpoints, &["lease", "timetolive", &id]).await.stdout;
    assert!(missing.contains("already expired"), "{missing}");

    // A short lease that nobody keeps alive expires; its key is deleted on every member.
    let short = etcdctl(&endpoints, &["lease", "grant", "2"]).await.stdout;
    let short_id = short.split_whitespace().nth(1).expect("lease id").to_string();
    etcdctl(&endpoints, &["put", "--lease", &short_id, "short", "v"]).await;
    let deadline = Instant::now() + WAIT_MAX;
    for url in cluster.client_urls() {
        loop {
            let value = etcdctl(&url, &["get", "short", "--consistency=s"]).await.stdout;
            if value.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "lease {short_id} never expired on {url}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn etcdctl_lock_and_elect() {
    let cluster = Cluster::start_raftkv(3).await;
    let endpoints = cluster.endpoints();
    let locked = etcdctl(&endpoints, &["lock", "my-lock", "echo", "holding-the-lock"]).await.stdout;
    assert!(locked.contains("holding-the-lock"), "{locked}");
    let mut candidate = Background::start(&endpoints, &["elect", "my-election", "alice"]);
    candidate.wait_for("alice\n").await;
    let mut observer = Background::start(&endpoints, &["elect", "--listen", "my-election"]);
    observer.wait_for("alice\n").await;
}

/// Watches `w/` from `start_revision` through any member, reconnecting (from the next
/// revision) when a member dies, until `count` events arrived; returns them as
/// (revision, key).
async fn watch_until(urls: Vec<String>, start_revision: i64, count: usize) -> Vec<(i64, String)> {
    let mut events = Vec::new();
    let mut next_revision = start_revision;
    let deadline = Instant::now() + WAIT_MAX * 2;
    let mut turn = 0;
    while events.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} events arrived", events.len());
        turn += 1;
        let url = &urls[turn % urls.len()];
        let options =
            ConnectOptions::new().with_connect_timeout(Duration::from_secs(1)).with_timeout(Duration::from_secs(2));
        let Ok(mut client) = Client::connect([url], Some(options)).await else { continue };
        let watch_options = WatchOptions::new().with_prefix().with_start_revision(next_revision);
        let Ok(Ok(mut stream)) =
            tokio::time::timeout(Duration::from_secs(2), client.watch("w/", Some(watch_options))).await
        else {
            continue;
        };
        while events.len() < count {
            match tokio::time::timeout(Duration::from_secs(3), stream.message()).await {
                Ok(Ok(Some(response))) => {
                    assert!(response.compact_revision() == 0, "unexpected compaction");
                    for event in response.events() {
                        let kv = event.kv().expect("kv");
                        assert_eq!(event.event_type(), EventType::Put);
                        events.push((kv.mod_revision(), kv.key_str().expect("utf-8").to_string()));
                        next_revision = kv.mod_revision() + 1;
                    }
                }
                // Timeout, error or end: reconnect (possibly to another member).
                _ => break,
            }
        }
    }
    events
}

#[tokio::test]
async fn watcher_has_no_gap_nor_duplicate_when_the_leader_is_killed() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let leader = cluster.wait_for_leader().await;
    let mut client = connect(&cluster).await;
    let start = client.put("start", "", None).await.expect("put").header().expect("header").revision() + 1;
    let writes = 60;
    // The live watcher connects to the leader first (turn 1), so the kill cuts its stream.
    let mut urls = cluster.client_urls();
    let member_count = urls.len();
    urls.rotate_left((leader + member_count - 1) % member_count);
    let watcher = tokio::spawn(watch_until(urls, start, writes));
    let mut written = 0;
    let deadline = Instant::now() + WAIT_MAX * 2;
    while written < writes {
        assert!(Instant::now() < deadline, "writes did not complete");
        if written == writes / 2 {
            cluster.kill(leader);
            cluster.wait_for_leader().await;
            client = connect(&cluster).await;
        }
        // Idempotent value per key: a retried put after an unknown outcome adds a version,
        // and the watcher must see every version there is.
        if client.put(format!("w/{written:03}"), "v", None).await.is_ok() {
            written += 1;
        }
    }
    let history = client.get("w/", Some(GetOptions::new().with_prefix())).await.expect("get");
    let expected: usize = history.kvs().iter().map(|kv| kv.version() as usize).sum();
    let events = tokio::time::timeout(WAIT_MAX * 2, watch_until(cluster.running_client_urls(), start, expected))
        .await
        .expect("watch in time");
    // The watcher that was live across the kill saw exactly the first events of the history.
    let live = tokio::time::timeout(WAIT_MAX * 2, watcher).await.expect("live watcher in time").expect("live watcher");
    assert_eq!(live[..], events[..live.len()], "the live watcher diverged from the history");
    let revisions: Vec<i64> = events.iter().map(|(revision, _)| *revision).collect();
    let unique: BTreeSet<i64> = revisions.iter().copied().collect();
    assert_eq!(unique.len(), revisions.len(), "duplicate events: {events:?}");
    assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "out of order: {events:?}");
    // Every put is one revision: the events cover the revisions start..=last with no gap.
    let last = *revisions.last().expect("events");
    assert_eq!(revisions, (start..=last).collect::<Vec<i64>>(), "gap in the events");
    let keys: BTreeSet<&str> = events.iter().map(|(_, key)| key.as_str()).collect();
    let stored: BTreeSet<String> = history.kvs().iter().map(|kv| kv.key_str().expect("utf-8").to_string()).collect();
    assert_eq!(keys, stored.iter().map(String::as_str).collect::<BTreeSet<&str>>());
}

#[tokio::test]
async fn lease_kept_alive_across_a_leader_change_keeps_its_keys() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let leader = cluster.wait_for_leader().await;
    let mut client = connect(&cluster).await;
    let ttl = 4;
    let id = client.lease_grant(ttl, None).await.expect("grant").id();
    client.put("kept", "v", Some(PutOptions::new().with_lease(id))).await.expect("put with lease");
    cluster.kill(leader);
    cluster.wait_for_leader().await;
    let mut client = connect(&cluster).await;
    // Keep it alive for three TTLs after the leader change.
    let until = Instant::now() + Duration::from_secs(3 * ttl as u64);
    while Instant::now() < until {
        if let Ok((mut keeper, mut responses)) = client.lease_keep_alive(id).await {
            if keeper.keep_alive().await.is_ok() {
                if let Ok(Ok(Some(response))) = tokio::time::timeout(Duration::from_secs(2), responses.message()).await
                {
                    assert!(response.ttl() > 0, "lease {id:x} expired while kept alive");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let kept = client.get("kept", None).await.expect("get");
    assert_eq!(kept.kvs().len(), 1, "the key of a lease kept alive was deleted");
    let time_to_live = client.lease_time_to_live(id, None).await.expect("time to live");
    assert!(time_to_live.ttl() > 0, "{time_to_live:?}");
}
