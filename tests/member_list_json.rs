//! `etcdctl member list -w json` against a 3-member raftkv cluster and a 3-member etcd
//! 3.4: the JSON has the same shape (the keys of the header, of the answer and of each
//! member; ids, ports and terms differ). etcd's Cluster answers carry no revision.
//!
//! Needs `etcdctl` on PATH and `/usr/bin/etcd`.

mod common;

use std::collections::BTreeSet;

use common::{etcdctl_program, run_bounded, Cluster, ServerKind};
use serde_json::Value;

/// The keys of a JSON object (empty for anything else).
fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().map(|object| object.keys().cloned().collect()).unwrap_or_default()
}

/// (answer keys, header keys, every member's keys) of `member list -w json` on `kind`.
async fn member_list_shape(kind: ServerKind) -> (BTreeSet<String>, BTreeSet<String>, Vec<BTreeSet<String>>) {
    let cluster = Cluster::start(kind, 3).await;
    let arguments = vec![
        format!("--endpoints={}", cluster.endpoints()),
        "member".into(),
        "list".into(),
        "-w".into(),
        "json".into(),
    ];
    let output = run_bounded(&etcdctl_program(), &arguments, &[("ETCDCTL_API", "3")], "").await;
    assert_eq!(output.code, 0, "{kind:?}: member list failed: {}", output.stderr);
    let answer: Value = serde_json::from_str(&output.stdout).expect("member list prints JSON");
    let members = answer["members"].as_array().expect("a members array");
    assert_eq!(members.len(), 3, "{kind:?}: {answer}");
    (keys(&answer), keys(&answer["header"]), members.iter().map(keys).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_json_has_etcds_shape() {
    let etcd = member_list_shape(ServerKind::Etcd).await;
    let raftkv = member_list_shape(ServerKind::Raftkv).await;
    assert!(!etcd.1.contains("revision"), "etcd 3.4 prints no revision in a member list header: {:?}", etcd.1);
    assert_eq!(raftkv.0, etcd.0, "answer keys");
    assert_eq!(raftkv.1, etcd.1, "header keys");
    assert_eq!(raftkv.2, etcd.2, "member keys");
}
