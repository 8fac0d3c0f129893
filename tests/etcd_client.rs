//! The `etcd-client` crate (a third-party Rust etcd v3 client) against a 3-member raftkv
//! cluster of real processes: every KV API (with options), transactions with nested
//! operations, compaction errors, size limits, writes through a follower, serializable
//! and linearizable reads, status and member list; and faults: SIGKILL of the leader,
//! restart, and a wiped member rejoining with `--initial-cluster-state existing`.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, ServerKind, WAIT_MAX};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use tonic::Code;

async fn connect(urls: &[String]) -> Client {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(10));
    Client::connect(urls, Some(options)).await.expect("connect to the cluster")
}

/// The gRPC status of a failed call (panics on success or a non-gRPC error).
fn status_of<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>) -> (Code, String) {
    match result {
        Err(etcd_client::Error::GRpcStatus(status)) => (status.code(), status.message().to_string()),
        other => panic!("expected a gRPC error status, got {other:?}"),
    }
}

fn values(response: &etcd_client::GetResponse) -> Vec<(String, String)> {
    response
        .kvs()
        .iter()
        .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), String::from_utf8_lossy(kv.value()).into_owned()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
}

/// Index of a member that is not `leader`.
fn follower_of(leader: usize) -> usize {
    (leader + 1) % 3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_operations_behave_as_etcd() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let mut client = connect(&cluster.client_urls()).await;
    let first = client.put("a/1", "one", None).await.expect("put");
    let header = first.header().expect("put header");
    assert_eq!(header.revision(), 2, "the first write makes revision 2");
    assert!(header.cluster_id() != 0 && header.member_id() != 0 && header.raft_term() > 0, "{header:?}");
    client.put("a/2", "two", None).await.expect("put");
    client.put("a/3", "three", None).await.expect("put");
    client.put("b", "bee", None).await.expect("put");

    let prefix = client.get("a/", Some(GetOptions::new().with_prefix())).await.expect("prefix");
    assert_eq!(values(&prefix), pairs(&[("a/1", "one"), ("a/2", "two"), ("a/3", "three")]));
    assert_eq!((prefix.count(), prefix.more()), (3, false));
    let limited = client.get("a/", Some(GetOptions::new().with_prefix().with_limit(2))).await.expect("limit");
    assert_eq!((limited.kvs().len(), limited.count(), limited.more()), (2, 3, true));
    let sorted = GetOptions::new().with_prefix().with_sort(SortTarget::Value, SortOrder::Descend);
    let sorted = client.get("a/", Some(sorted)).await.expect("sorted");
    assert_eq!(values(&sorted), pairs(&[("a/2", "two"), ("a/3", "three"), ("a/1", "one")]));
    let keys = client.get("a/", Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("keys only");
    assert_eq!(values(&keys), pairs(&[("a/1", ""), ("a/2", ""), ("a/3", "")]));
    let counted = client.get("a/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("count");
    assert_eq!((counted.kvs().len(), counted.count()), (0, 3));
    let ranged = client.get("a/2", Some(GetOptions::new().with_range("b"))).await.expect("range");
    assert_eq!(values(&ranged), pairs(&[("a/2", "two"), ("a/3", "three")]));

    let replaced = client.put("a/1", "uno", Some(PutOptions::new().with_prev_key())).await.expect("put prev kv");
    let previous = replaced.prev_key().expect("previous value");
    assert_eq!((previous.value(), previous.version(), previous.mod_revision()), (&b"one"[..], 1, 2));
    let old = client.get("a/1", Some(GetOptions::new().with_revision(2))).await.expect("old revision");
    assert_eq!(values(&old), pairs(&[("a/1", "one")]));
    let current = client.get("a/1", None).await.expect("current");
    let kv = &current.kvs()[0];
    assert_eq!((kv.create_revision(), kv.mod_revision(), kv.version()), (2, 6, 2));

    client.put("a/1", "", Some(PutOptions::new().with_ignore_value())).await.expect("ignore value");
    client.put("a/1", "lease-kept", Some(PutOptions::new().with_ignore_lease())).await.expect("ignore lease");
    let current = client.get("a/1", None).await.expect("current");
    assert_eq!((current.kvs()[0].value(), current.kvs()[0].version()), (&b"lease-kept"[..], 4));
    let missing = client.put("nokey", "", Some(PutOptions::new().with_ignore_value())).await;
    assert_eq!(status_of(missing), (Code::InvalidArgument, "etcdserver: key not found".to_string()));
    let empty = client.put("", "v", None).await;
    assert_eq!(status_of(empty), (Code::InvalidArgument, "etcdserver: key is not provided".to_string()));

    let deleted = client.delete("a/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await.expect("delete");
    assert_eq!((deleted.deleted(), deleted.prev_kvs().len()), (3, 3));
    let none = client.delete("a/", Some(DeleteOptions::new().with_prefix())).await.expect("delete nothing");
    assert_eq!(none.deleted(), 0);
    let left = client.get("", Some(GetOptions::new().with_all_keys())).await.expect("all keys");
    assert_eq!(values(&left), pairs(&[("b", "bee")]));
    cluster.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_with_compares_and_nested_operations() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let mut client = connect(&cluster.client_urls()).await;
    client.put("k", "v1", None).await.expect("put"); // revision 2
    client.put("k", "v2", None).await.expect("put"); // revision 3

    let inner = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v2")])
        .and_then([TxnOp::put("inner", "yes", None), TxnOp::get("k", None)])
        .or_else([TxnOp::put("inner", "no", None)]);
    let txn = Txn::new()
        .when([
            Compare::value("k", CompareOp::Equal, "v2"),
            Compare::version("k", CompareOp::Equal, 2),
            Compare::create_revision("k", CompareOp::Equal, 2),
            Compare::mod_revision("k", CompareOp::Greater, 2),
            Compare::version("absent", CompareOp::Equal, 0),
        ])
        .and_then([TxnOp::put("outer", "1", None), TxnOp::txn(inner), TxnOp::delete("k", None)])
        .or_else([TxnOp::put("outer", "0", None)]);
    let answer = client.txn(txn).await.expect("txn");
    assert!(answer.succeeded());
    assert_eq!(answer.header().expect("header").revision(), 4, "one revision for the whole transaction");
    let responses = answer.op_responses();
    assert_eq!(responses.len(), 3);
    let TxnOpResponse::Txn(nested) = &responses[1] else { panic!("nested transaction answer: {responses:?}") };
    assert!(nested.succeeded());
    let TxnOpResponse::Get(read) = &nested.op_responses()[1] else { panic!("nested get answer") };
    assert_eq!(values(read), pairs(&[("k", "v2")]), "reads inside see the transaction's earlier writes only");
    let TxnOpResponse::Delete(delete) = &responses[2] else { panic!("delete answer") };
    assert_eq!(delete.deleted(), 1);

    let failing = Txn::new()
        .when([Compare::mod_revision("outer", CompareOp::Less, 4)])
        .and_then([TxnOp::put("never", "x", None)])
        .or_else([TxnOp::get("outer", None), TxnOp::get("inner", None)]);
    let answer = client.txn(failing).await.expect("read-only txn");
    assert!(!answer.succeeded());
    assert_eq!(answer.header().expect("header").revision(), 4);
    let reads: Vec<_> = answer
        .op_responses()
        .into_iter()
        .map(|response| match response {
            TxnOpResponse::Get(read) => values(&read),
            other => panic!("expected reads, got {other:?}"),
        })
        .collect();
    assert_eq!(reads, vec![pairs(&[("outer", "1")]), pairs(&[("inner", "yes")])]);

    let duplicate = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    assert_eq!(
        status_of(client.txn(duplicate).await),
        (Code::InvalidArgument, "etcdserver: duplicate key given in txn request".to_string())
    );
    let operations: Vec<TxnOp> = (0..129).map(|index| TxnOp::put(format!("many/{index}"), "v", None)).collect();
    assert_eq!(
        status_of(client.txn(Txn::new().and_then(operations)).await),
        (Code::InvalidArgument, "etcdserver: too many operations in txn request".to_string())
    );
    cluster.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_size_errors_are_etcds() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let mut client = connect(&cluster.client_urls()).await;
    for value in ["1", "2", "3", "4"] {
        client.put("c", value, None).await.expect("put"); // revisions 2..=5
    }
    client.compact(4, Some(CompactionOptions::new().with_physical())).await.expect("compact");
    let compacted = (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted".to_string());
    assert_eq!(status_of(client.get("c", Some(GetOptions::new().with_revision(3))).await), compacted);
    assert_eq!(status_of(client.compact(4, None).await), compacted);
    let at_compaction = client.get("c", Some(GetOptions::new().with_revision(4))).await.expect("at compaction");
    assert_eq!(values(&at_compaction), pairs(&[("c", "3")]));
    let future = (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision".to_string());
    assert_eq!(status_of(client.get("c", Some(GetOptions::new().with_revision(99))).await), future);
    assert_eq!(status_of(client.compact(99, None).await), future);

    let too_large = (Code::InvalidArgument, "etcdserver: request is too large".to_string());
    let big = vec![b'x'; 1_600_000];
    assert_eq!(status_of(client.put("big", big, None).await), too_large);
    let fits = vec![b'x'; 1_000_000];
    client.put("big", fits, None).await.expect("a 1 MB value fits under the 1.5 MiB limit");
    cluster.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_writes_and_serve_reads() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower_url = cluster.nodes[follower_of(leader)].client_url.clone();
    let mut follower = connect(&[follower_url]).await;
    let mut leader_client = connect(&[cluster.nodes[leader].client_url.clone()]).await;

    let written = follower.put("via-follower", "1", None).await.expect("write through a follower");
    let revision = written.header().expect("header").revision();
    let read = leader_client.get("via-follower", None).await.expect("read on the leader");
    assert_eq!(values(&read), pairs(&[("via-follower", "1")]));
    assert!(read.header().expect("header").revision() >= revision);

    // Linearizable reads on a follower see every write acknowledged before them.
    for round in 0..20 {
        let value = round.to_string();
        leader_client.put("fresh", value.clone(), None).await.expect("write on the leader");
        let read = follower.get("fresh", None).await.expect("linearizable read on a follower");
        assert_eq!(values(&read), pairs(&[("fresh", value.as_str())]), "round {round}");
    }
    // Serializable reads are local: they catch up, but are only eventually fresh.
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let read = follower.get("fresh", Some(GetOptions::new().with_serializable())).await.expect("serializable");
        if values(&read) == pairs(&[("fresh", "19")]) {
            break;
        }
        assert!(Instant::now() < deadline, "the follower did not apply the last write within {WAIT_MAX:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_member_list_describe_the_cluster() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let leader = cluster.wait_for_leader().await;
    let mut leader_ids = Vec::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let mut client = connect(std::slice::from_ref(&node.client_url)).await;
        let status = client.status().await.expect("status");
        let header = status.header().expect("header");
        assert!(status.version().starts_with("3.4."), "{}", status.version());
        assert!(status.raft_term() > 0 && status.raft_index() > 0 && status.raft_applied_index() > 0);
        assert!(status.errors().is_empty(), "{:?}", status.errors());
        assert!(!status.is_learner());
        assert_eq!(header.member_id() == status.leader(), index == leader, "{}", node.name);
        leader_ids.push(status.leader());

        let members = client.member_list().await.expect("member list");
        let mut listed: Vec<(String, Vec<String>, Vec<String>)> = members
            .members()
            .iter()
            .map(|member| (member.name().to_string(), member.peer_urls().to_vec(), member.client_urls().to_vec()))
            .collect();
        listed.sort();
        let expected: Vec<(String, Vec<String>, Vec<String>)> = cluster
            .nodes
            .iter()
            .map(|node| (node.name.clone(), vec![node.peer_url.clone()], vec![node.client_url.clone()]))
            .collect();
        assert_eq!(listed, expected, "member list on {}", node.name);
        assert!(members.members().iter().any(|member| member.id() == header.member_id()));
        assert!(members.members().iter().all(|member| !member.is_learner()));
    }
    assert!(leader_ids.iter().all(|id| *id == leader_ids[0]), "one leader: {leader_ids:x?}");
    cluster.assert_running();
}

/// Writes `count` keys `prefix/i` through `client`; returns the keys acknowledged.
async fn write_keys(client: &mut Client, prefix: &str, count: usize) -> Vec<String> {
    let mut acknowledged = Vec::new();
    for index in 0..count {
        let key = format!("{prefix}/{index:05}");
        client.put(key.clone(), "v", None).await.unwrap_or_else(|error| panic!("put {key}: {error}"));
        acknowledged.push(key);
    }
    acknowledged
}

/// Waits until a serializable read of `prefix` on `url` returns exactly `keys`.
async fn wait_until_member_has(url: &str, prefix: &str, keys: &[String]) {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let options = GetOptions::new().with_prefix().with_keys_only().with_serializable();
        let mut client = connect(&[url.to_string()]).await;
        let last = match client.get(prefix, Some(options)).await {
            Ok(read) => {
                let found: Vec<String> = values(&read).into_iter().map(|(key, _)| key).collect();
                if found == keys {
                    return;
                }
                format!("{} of {} keys", found.len(), keys.len())
            }
            Err(error) => error.to_string(),
        };
        assert!(Instant::now() < deadline, "{url} did not catch up within {WAIT_MAX:?}: {last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_crash_loses_no_acknowledged_write_and_members_catch_up() {
    // Small snapshot interval, so a wiped member needs a snapshot to catch up.
    let mut cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 3, &["--snapshot-count", "50"]).await;
    let old_leader = cluster.wait_for_leader().await;
    let mut client = connect(&cluster.client_urls()).await;
    let mut acknowledged = write_keys(&mut client, "before", 120).await;

    cluster.kill(old_leader);
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, old_leader, "a killed member cannot lead");
    let mut survivors = connect(&cluster.running_client_urls()).await;
    let all = survivors.get("before/", Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("read");
    let found: Vec<String> = values(&all).into_iter().map(|(key, _)| key).collect();
    assert_eq!(found, acknowledged, "every acknowledged write survives the leader's crash");
    let after = write_keys(&mut survivors, "after", 60).await;

    cluster.restart(old_leader);
    cluster.wait_for_leader().await;
    wait_until_member_has(&cluster.nodes[old_leader].client_url, "before/", &acknowledged).await;
    wait_until_member_has(&cluster.nodes[old_leader].client_url, "after/", &after).await;

    let wiped = follower_of(cluster.wait_for_leader().await);
    cluster.kill(wiped);
    // The client does not fail over between endpoints by itself: talk to live members only.
    let mut survivors = connect(&cluster.running_client_urls()).await;
    acknowledged = write_keys(&mut survivors, "while-down", 120).await;
    cluster.wipe_and_restart_existing(wiped);
    cluster.wait_for_leader().await;
    wait_until_member_has(&cluster.nodes[wiped].client_url, "while-down/", &acknowledged).await;
    wait_until_member_has(&cluster.nodes[wiped].client_url, "after/", &after).await;
    // The leader compacted its log (--snapshot-count 50), so the wiped member needed a snapshot.
    let log = cluster.log(wiped);
    assert!(log.contains("restored snapshot from leader"), "the wiped member caught up without a snapshot:\n{log}");
    cluster.assert_running();
}
