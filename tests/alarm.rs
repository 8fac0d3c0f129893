//! The space quota and the Alarm API, against a real etcd 3.4 under the same workload:
//!
//! - `etcdctl alarm list` is empty; with `--quota-backend-bytes` 256 KiB a client
//!   overwrites a few keys with 4 KiB values until a put is refused with etcd's
//!   `etcdserver: mvcc: database space exceeded`; the NOSPACE alarm is then listed for the
//!   member that took the writes by every member, by etcdctl and by the JSON gateway; puts
//!   and lease grants are refused, reads and deletes work; `etcdctl compact`,
//!   `etcdctl defrag` and `etcdctl alarm disarm` make writes work again. Every step's
//!   output (member ids and URLs replaced) is the same for raftkv and etcd, every
//!   acknowledged write is still readable, and no member crashed;
//! - raftkv only: the alarm survives a member's restart (it is replicated state, kept in
//!   snapshots: the members take one every 20 entries, and the restarted one loads one
//!   taken after the alarm was raised).
//!
//! Needs `etcdctl` and `curl` on PATH and `/usr/bin/etcd`.

mod common;

use common::{etcdctl, etcdctl_ok, run_bounded, Cluster, ServerKind};
use etcd_client::{AlarmAction, AlarmType, Client, GetOptions};

/// `--quota-backend-bytes` of both clusters.
const QUOTA_BYTES: &str = "262144";
/// Bytes of each value written: the quota is reached after some tens of puts.
const VALUE_BYTES: usize = 4096;
/// Keys the workload overwrites in turn, so compaction frees most of the space.
const KEY_COUNT: usize = 8;
/// `--snapshot-count` of both clusters: members take snapshots often.
const SNAPSHOT_COUNT: usize = 20;
/// Most puts tried before the quota must have refused one.
const PUTS_MAX: usize = 1000;
/// etcd's answer to a write that does not fit (`rpctypes.ErrGRPCNoSpace`).
const NO_SPACE_MESSAGE: &str = "etcdserver: mvcc: database space exceeded";

/// An acknowledged put: key, value and the revision it created.
struct Acknowledged {
    key: String,
    value: String,
    revision: i64,
}

/// The value of put number `index`: its number, padded to [`VALUE_BYTES`].
fn value(index: usize) -> String {
    let mut value = format!("{index:06}:");
    value.push_str(&"v".repeat(VALUE_BYTES - value.len()));
    value
}

/// Puts through member 0 until the quota refuses one; returns every acknowledged put and
/// the refused one (key, value).
async fn fill(client: &mut Client) -> (Vec<Acknowledged>, (String, String)) {
    let mut acknowledged = Vec::new();
    for index in 0..PUTS_MAX {
        let key = format!("key/{}", index % KEY_COUNT);
        let value = value(index);
        match client.put(key.as_str(), value.as_str(), None).await {
            Ok(response) => {
                let revision = response.header().expect("a put answers with a header").revision();
                acknowledged.push(Acknowledged { key, value, revision });
            }
            Err(etcd_client::Error::GRpcStatus(status)) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                assert_eq!(status.message(), NO_SPACE_MESSAGE);
                assert!(acknowledged.len() > KEY_COUNT, "the quota leaves room for some puts");
                return (acknowledged, (key, value));
            }
            Err(error) => panic!("put {index} failed: {error}"),
        }
    }
    panic!("{PUTS_MAX} puts of {VALUE_BYTES} bytes fit in a quota of {QUOTA_BYTES} bytes");
}

/// Fails unless every acknowledged put is readable at its revision.
async fn assert_history_readable(client: &mut Client, acknowledged: &[Acknowledged]) {
    for put in acknowledged {
        let options = GetOptions::new().with_revision(put.revision);
        let response = client.get(put.key.as_str(), Some(options)).await.expect("read at a revision");
        let kv = response.kvs().first().unwrap_or_else(|| panic!("{} is missing at {}", put.key, put.revision));
        assert_eq!(kv.value_str().expect("text"), put.value, "{} at {}", put.key, put.revision);
        assert_eq!(kv.mod_revision(), put.revision);
    }
}

/// Fails unless every key holds the last value acknowledged for it, or the refused put's
/// if `refused` is given (a real etcd applies a put that passes the quota while applied,
/// then answers it "database space exceeded": raftkv refuses before proposing).
async fn assert_latest_readable(
    client: &mut Client,
    acknowledged: &[Acknowledged],
    refused: Option<&(String, String)>,
) {
    for index in 0..KEY_COUNT {
        let key = format!("key/{index}");
        let last = acknowledged.iter().rev().find(|put| put.key == key).expect("every key was written");
        let response = client.get(key.as_str(), None).await.expect("read");
        let kv = response.kvs().first().unwrap_or_else(|| panic!("{key} is missing"));
        let stored = kv.value_str().expect("text");
        if refused.is_some_and(|(refused_key, refused_value)| *refused_key == key && refused_value == stored) {
            continue;
        }
        assert_eq!(stored, last.value, "{key}");
        assert_eq!(kv.mod_revision(), last.revision, "{key}");
    }
}

/// `text` with every member id and client URL of `cluster` replaced by a placeholder
/// (ids differ between runs, URLs between clusters).
fn normalized(text: &str, cluster: &Cluster, member_ids: &[u64]) -> String {
    let mut text = text.to_string();
    for (index, member_id) in member_ids.iter().enumerate() {
        text = text.replace(&member_id.to_string(), &format!("<member {index}>"));
    }
    for (index, url) in cluster.client_urls().iter().enumerate() {
        text = text.replace(url.as_str(), &format!("<endpoint {index}>"));
    }
    text
}

/// Fails unless `listed` (etcdctl's alarm list) holds NOSPACE alarms of members only:
/// for raftkv exactly one, for member 0, the one that refused the writes. A real etcd
/// also lets each member whose own backend passes the quota while applying a put raise
/// NOSPACE for itself, so which members are listed there depends on timing.
fn assert_nospace_listed(kind: ServerKind, listed: &str, ids: &[u64], asked: usize) {
    if kind == ServerKind::Raftkv {
        assert_eq!(listed.trim(), format!("memberID:{} alarm:NOSPACE", ids[0]), "member {asked}");
        return;
    }
    let lines: Vec<&str> = listed.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    assert!(!lines.is_empty(), "member {asked} lists no alarm");
    for line in lines {
        let listed_member = ids.iter().any(|id| line == format!("memberID:{id} alarm:NOSPACE"));
        assert!(listed_member, "member {asked} lists {line:?}, not a NOSPACE alarm of a member of {ids:?}");
    }
}

/// `text` with every `<member N>` placeholder made `<member>` and repeated lines (or
/// entries of a JSON answer's `alarms`) dropped: which members etcd lists varies.
fn deduplicated_members(text: &str) -> String {
    let anonymous = regex::Regex::new(r"<member \d+>").expect("pattern").replace_all(text, "<member>").into_owned();
    if let Ok(mut answer) = serde_json::from_str::<serde_json::Value>(&anonymous) {
        if let Some(alarms) = answer.get_mut("alarms").and_then(serde_json::Value::as_array_mut) {
            let mut seen = Vec::new();
            alarms.retain(|alarm| {
                let fresh = !seen.contains(alarm);
                seen.push(alarm.clone());
                fresh
            });
        }
        return answer.to_string();
    }
    let mut lines: Vec<&str> = anonymous.lines().collect();
    lines.sort_unstable();
    lines.dedup();
    lines.join("\n")
}

/// The member ids, in member order.
async fn member_ids(cluster: &Cluster) -> Vec<u64> {
    let mut ids = Vec::new();
    for url in cluster.client_urls() {
        let (_, member_id) = common::member_status(&url).await.expect("member status");
        ids.push(member_id);
    }
    ids
}

/// `POST /v3/maintenance/alarm` with `body` on `url`'s JSON gateway; the answer.
async fn gateway_alarm(url: &str, body: &str) -> String {
    let arguments: Vec<String> = ["-sS", "-X", "POST", "--data-binary", "@-", &format!("{url}/v3/maintenance/alarm")]
        .iter()
        .map(|argument| argument.to_string())
        .collect();
    let output = run_bounded("curl", &arguments, &[], body).await;
    assert_eq!(output.code, 0, "curl failed: {}", output.stderr);
    output.stdout
}

/// The refusal etcdctl prints for `arguments` against `endpoint`.
async fn etcdctl_refusal(endpoint: &str, arguments: &[&str]) -> String {
    let output = etcdctl(endpoint, arguments).await;
    assert_ne!(output.code, 0, "etcdctl {arguments:?} succeeded: {}", output.stdout);
    output.stderr.lines().filter(|line| line.starts_with("Error:")).collect::<Vec<_>>().join("\n")
}

/// Runs the whole quota workload on a cluster of `kind`; returns what each step printed,
/// normalized, for comparison between raftkv and etcd.
async fn quota_transcript(kind: ServerKind) -> Vec<(&'static str, String)> {
    let snapshot_count = SNAPSHOT_COUNT.to_string();
    let arguments = ["--quota-backend-bytes", QUOTA_BYTES, "--snapshot-count", &snapshot_count];
    let mut cluster = Cluster::start_with_arguments(kind, 3, &arguments).await;
    let ids = member_ids(&cluster).await;
    let endpoints = cluster.endpoints();
    let first = cluster.nodes[0].client_url.clone();
    let mut transcript = Vec::new();
    let mut record = |step: &'static str, text: &str, cluster: &Cluster| {
        transcript.push((step, normalized(text, cluster, &ids)));
    };
    record("alarm list before", &etcdctl_ok(&endpoints, &["alarm", "list"]).await, &cluster);

    etcdctl_ok(&first, &["put", "doomed", "x"]).await;
    let mut client = Client::connect([first.as_str()], None).await.expect("connect");
    let (acknowledged, refused) = fill(&mut client).await;
    let refused = (kind == ServerKind::Etcd).then_some(refused);
    assert_history_readable(&mut client, &acknowledged).await;

    record("put refused", &etcdctl_refusal(&first, &["put", "one/more", "x"]).await, &cluster);
    record("lease grant refused", &etcdctl_refusal(&first, &["lease", "grant", "60"]).await, &cluster);
    for (index, url) in cluster.client_urls().iter().enumerate() {
        let listed = etcdctl_ok(url, &["alarm", "list"]).await;
        assert_nospace_listed(kind, &listed, &ids, index);
        record("alarm list while raised", &deduplicated_members(&normalized(&listed, &cluster, &ids)), &cluster);
    }
    let answer = gateway_alarm(&first, r#"{"action":"GET"}"#).await;
    record("gateway alarm list", &deduplicated_members(&normalized(&answer, &cluster, &ids)), &cluster);
    record("read while raised", &etcdctl_ok(&first, &["get", "doomed"]).await, &cluster);
    record("delete while raised", &etcdctl_ok(&first, &["del", "doomed"]).await, &cluster);
    // More log entries than --snapshot-count after the alarm: a snapshot holds it.
    for _ in 0..SNAPSHOT_COUNT + 5 {
        client.alarm(AlarmAction::Get, AlarmType::None, None).await.expect("alarm list");
    }
    if kind == ServerKind::Raftkv {
        alarm_survives_restart(&mut cluster, &ids).await;
    }

    let revision = acknowledged.last().expect("some puts were acknowledged").revision.to_string();
    let compacted = etcdctl_ok(&first, &["compact", "--physical", &revision]).await;
    record("compact", &compacted.replace(&revision, "<revision>"), &cluster);
    record("defrag", &etcdctl_ok(&endpoints, &["defrag"]).await, &cluster);
    let disarmed = etcdctl_ok(&endpoints, &["alarm", "disarm"]).await;
    assert_nospace_listed(kind, &disarmed, &ids, 0);
    record("disarm", &deduplicated_members(&normalized(&disarmed, &cluster, &ids)), &cluster);
    record("alarm list after", &etcdctl_ok(&endpoints, &["alarm", "list"]).await, &cluster);
    record("put after disarm", &etcdctl_ok(&first, &["put", "one/more", "x"]).await, &cluster);
    record("gateway alarm list after", &gateway_alarm(&first, r#"{"action":"GET"}"#).await, &cluster);

    assert_latest_readable(&mut client, &acknowledged, refused.as_ref()).await;
    for url in cluster.client_urls() {
        let mut member = Client::connect([url.as_str()], None).await.expect("connect");
        assert_latest_readable(&mut member, &acknowledged, refused.as_ref()).await;
        let response = member.get("one/more", None).await.expect("read");
        assert_eq!(response.kvs().len(), 1, "the put after disarm is on every member");
    }
    cluster.assert_running();
    transcript
}

/// Restarts member 2 (it loads its latest snapshot and the log after it) and checks it
/// still lists the alarm and refuses puts.
async fn alarm_survives_restart(cluster: &mut Cluster, ids: &[u64]) {
    cluster.kill(2);
    cluster.restart(2);
    cluster.wait_for_leader().await;
    let restarted = cluster.nodes[2].client_url.clone();
    let listed = etcdctl_ok(&restarted, &["alarm", "list"]).await;
    assert_eq!(listed.trim(), format!("memberID:{} alarm:NOSPACE", ids[0]));
    let refusal = etcdctl_refusal(&restarted, &["put", "after/restart", "x"]).await;
    assert_eq!(refusal, format!("Error: {NO_SPACE_MESSAGE}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_alarm_and_recovery_match_etcd() {
    let raftkv = quota_transcript(ServerKind::Raftkv).await;
    let etcd = quota_transcript(ServerKind::Etcd).await;
    assert_eq!(raftkv.len(), etcd.len());
    for ((step, ours), (_, theirs)) in raftkv.iter().zip(&etcd) {
        assert_eq!(ours, theirs, "{step}: raftkv printed\n{ours}\netcd printed\n{theirs}");
    }
    let refused = &raftkv.iter().find(|(step, _)| *step == "put refused").expect("recorded").1;
    assert_eq!(refused, &format!("Error: {NO_SPACE_MESSAGE}"));
}
