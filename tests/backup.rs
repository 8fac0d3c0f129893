//! Backups in etcd's format, with the tools etcd users already have:
//!
//! - `etcdctl snapshot save` from a loaded 3-member raftkv cluster while a client keeps
//!   writing → `etcdctl snapshot status` reads it (and `raftkv snapshot status` prints
//!   the same) → `raftkv snapshot restore` into a new 3-member raftkv cluster and
//!   `etcdctl snapshot restore` into a new 3-member real etcd 3.4 → every key, value,
//!   revision (history since the compaction included), lease and user matches the source
//!   at the snapshot's revision;
//! - the same from a real etcd 3.4's snapshot into raftkv;
//! - truncated, corrupted and foreign files are refused with the reason, and nothing is
//!   written to the target data dir.
//!
//! Needs `etcdctl` on PATH and `/usr/bin/etcd`.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{etcdctl, etcdctl_ok, etcdctl_program, Cluster, Node, ServerKind};
use etcd_client::{Client, GetOptions, PermissionType, PutOptions};

/// TTL of the test lease: far longer than the test, so it never expires mid-comparison.
const LEASE_TTL_SECONDS: i64 = 3600;

/// Runs `raftkv <arguments>` to completion.
fn raftkv(arguments: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_raftkv")).args(arguments).output().expect("run raftkv")
}

/// Puts, overwrites, deletes, a compaction, a value spanning several bbolt pages, a
/// lease with two keys, a user with a role. Returns the lease id.
async fn load(client: &mut Client) -> i64 {
    let lease = client.lease_grant(LEASE_TTL_SECONDS, None).await.expect("lease grant").id();
    for index in 0..60 {
        client.put(format!("key/{index:03}"), format!("value {index}"), None).await.expect("put");
    }
    let compact_at = client.put("marker", "m", None).await.expect("put").header().expect("header").revision();
    for index in 60..120 {
        client.put(format!("key/{index:03}"), format!("value {index}"), None).await.expect("put");
    }
    for index in 0..20 {
        client.put(format!("key/{index:03}"), format!("second {index}"), None).await.expect("overwrite");
    }
    client.delete("key/10", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
    client.compact(compact_at, None).await.expect("compact");
    client.put("big", "x".repeat(20_000), None).await.expect("put a big value");
    for key in ["lease/a", "lease/b"] {
        client.put(key, "leased", Some(PutOptions::new().with_lease(lease))).await.expect("put with lease");
    }
    client.role_add("reader").await.expect("role add");
    let permission = etcd_client::Permission::new(PermissionType::Read, "key/").with_prefix();
    client.role_grant_permission("reader", permission).await.expect("grant permission");
    client.user_add("alice", "secret", None).await.expect("user add");
    client.user_grant_role("alice", "reader").await.expect("grant role");
    lease
}

/// Keeps putting `background/<n>` until `stop`; counts acknowledged puts.
fn start_writer(mut client: Client, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sequence = 0_u64;
        while !stop.load(Ordering::Relaxed) {
            if client.put(format!("background/{sequence:06}"), "w", None).await.is_ok() {
                written.fetch_add(1, Ordering::Relaxed);
            }
            sequence += 1;
        }
    })
}

/// `etcdctl get "" --prefix -w json` (at `revision` if set): the kvs and the header revision.
async fn all_keys(endpoints: &str, revision: Option<i64>) -> (serde_json::Value, i64) {
    let revision_flag = revision.map(|revision| format!("--rev={revision}"));
    let mut arguments = vec!["get", "", "--prefix", "-w", "json"];
    arguments.extend(revision_flag.as_deref());
    let output = etcdctl_ok(endpoints, &arguments).await;
    let json: serde_json::Value = serde_json::from_str(&output).expect("etcdctl prints JSON");
    let header_revision = json["header"]["revision"].as_i64().expect("a header revision");
    (json["kvs"].clone(), header_revision)
}

/// What a restored cluster must match: the source's keys at the snapshot revision and at
/// the compaction revision, lease, users and roles.
struct Expected {
    revision: i64,
    keys: serde_json::Value,
    compacted_keys: serde_json::Value,
    compact_revision: i64,
    lease: String,
    lease_ttl: String,
    users: Vec<String>,
}

/// Reads what `restored` must hold from `source` at `revision`.
async fn expected_from(source: &Cluster, revision: i64, compact_revision: i64, lease: i64) -> Expected {
    let endpoints = source.endpoints();
    let (keys, _) = all_keys(&endpoints, Some(revision)).await;
    let (compacted_keys, _) = all_keys(&endpoints, Some(compact_revision)).await;
    assert!(keys.as_array().expect("kvs").len() >= 120, "the loaded keys are in the snapshot: {keys}");
    Expected {
        revision,
        keys,
        compacted_keys,
        compact_revision,
        lease: format!("{lease:x}"),
        lease_ttl: etcdctl_ok(&endpoints, &["lease", "timetolive", &format!("{lease:x}"), "--keys"]).await,
        users: users_and_roles(&endpoints).await,
    }
}

async fn users_and_roles(endpoints: &str) -> Vec<String> {
    vec![
        etcdctl_ok(endpoints, &["user", "list"]).await,
        etcdctl_ok(endpoints, &["user", "get", "alice"]).await,
        etcdctl_ok(endpoints, &["role", "get", "reader"]).await,
    ]
}

/// Checks `restored` against `expected`.
async fn assert_matches(restored: &Cluster, expected: &Expected, what: &str) {
    let endpoints = restored.endpoints();
    let (keys, revision) = all_keys(&endpoints, None).await;
    assert_eq!(revision, expected.revision, "{what}: the store revision is the snapshot's");
    assert_eq!(keys, expected.keys, "{what}: every key, value, revision and lease as at the snapshot");
    let (compacted_keys, _) = all_keys(&endpoints, Some(expected.compact_revision)).await;
    assert_eq!(compacted_keys, expected.compacted_keys, "{what}: the history since the compaction is kept");
    let older = etcdctl(&endpoints, &["get", "key/000", &format!("--rev={}", expected.compact_revision - 1)]).await;
    assert!(older.stderr.contains("required revision has been compacted"), "{what}: {older:?}");
    let lease_ttl = etcdctl_ok(&endpoints, &["lease", "timetolive", &expected.lease, "--keys"]).await;
    let granted = |text: &str| text.split("remaining").next().unwrap_or_default().to_string();
    // etcd lists a lease's keys in no particular order.
    let attached = |text: &str| {
        let list = text.split("attached keys").nth(1).unwrap_or_default();
        let mut keys: Vec<String> =
            list.trim_matches(|c: char| "([])\n ".contains(c)).split(' ').map(String::from).collect();
        keys.sort();
        keys
    };
    assert_eq!(granted(&lease_ttl), granted(&expected.lease_ttl), "{what}: the lease and its granted TTL");
    assert_eq!(attached(&lease_ttl), attached(&expected.lease_ttl), "{what}: the lease's keys");
    assert_eq!(users_and_roles(&endpoints).await, expected.users, "{what}: users and roles");
}

/// `etcdctl snapshot status FILE -w json`'s revision and total keys; checks that
/// `raftkv snapshot status` prints exactly what etcdctl prints (json, simple, table).
async fn snapshot_status(file: &Path) -> (i64, u64) {
    let file = file.to_str().expect("UTF-8 path");
    let mut json = String::new();
    for format in ["json", "simple", "table"] {
        let printed = etcdctl_ok("http://127.0.0.1:1", &["snapshot", "status", file, "-w", format]).await;
        let ours = raftkv(&["snapshot", "status", file, "-w", format]);
        assert!(ours.status.success(), "raftkv snapshot status: {}", String::from_utf8_lossy(&ours.stderr));
        assert_eq!(String::from_utf8_lossy(&ours.stdout), printed, "raftkv prints what etcdctl prints (-w {format})");
        if format == "json" {
            json = printed;
        }
    }
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    (status["revision"].as_i64().expect("revision"), status["totalKey"].as_u64().expect("totalKey"))
}

/// Restores `file` for `node` with `program` (`raftkv snapshot restore` or `etcdctl snapshot restore`).
fn restore_with(kind: ServerKind, file: &Path, node: &Node, initial_cluster: &str) {
    let mut command = match kind {
        ServerKind::Raftkv => {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"));
            command.arg("snapshot");
            command
        }
        ServerKind::Etcd => {
            let mut command = std::process::Command::new(etcdctl_program());
            command.env("ETCDCTL_API", "3").arg("snapshot");
            command
        }
    };
    let output = command
        .arg("restore")
        .arg(file)
        .args(["--name", &node.name, "--initial-cluster", initial_cluster, "--initial-cluster-token", "harness"])
        .args(["--initial-advertise-peer-urls", &node.peer_url])
        .arg("--data-dir")
        .arg(&node.data_dir)
        .output()
        .expect("run snapshot restore");
    assert!(output.status.success(), "{kind:?} restore failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Loads `source`, saves a snapshot with etcdctl while a client writes, and returns the
/// expected state and the file (kept in `directory`).
async fn save_while_writing(source: &Cluster, directory: &Path) -> (Expected, std::path::PathBuf) {
    let mut client = Client::connect(source.client_urls(), None).await.expect("connect");
    let lease = load(&mut client).await;
    let compact_revision = client.get("marker", None).await.expect("get").kvs()[0].mod_revision();
    let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writer = start_writer(client.clone(), stop.clone(), written.clone());
    while written.load(Ordering::Relaxed) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let file = directory.join("backup.db");
    let file_text = file.to_str().expect("UTF-8 path");
    etcdctl_ok(&source.nodes[0].client_url, &["snapshot", "save", file_text]).await;
    let during = written.load(Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let after = written.load(Ordering::Relaxed);
    assert!(after > during, "writes went on while the snapshot was saved ({during} then {after})");
    let (revision, total_keys) = snapshot_status(&file).await;
    let newest = client.get("", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("count");
    assert!(revision < newest.header().expect("header").revision(), "the snapshot is a point in the writes");
    assert!(total_keys > 120, "the key bucket holds the loaded keys: {total_keys}");
    (expected_from(source, revision, compact_revision, lease).await, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftkv_snapshot_restores_into_raftkv_and_etcd() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let source = Cluster::start_raftkv(3).await;
    let (expected, file) = save_while_writing(&source, directory.path()).await;
    drop(source);
    let restored = Cluster::start_prepared(ServerKind::Raftkv, 3, &|node, initial_cluster| {
        restore_with(ServerKind::Raftkv, &file, node, initial_cluster)
    })
    .await;
    assert_matches(&restored, &expected, "raftkv restored from raftkv").await;
    drop(restored);
    let etcd = Cluster::start_prepared(ServerKind::Etcd, 3, &|node, initial_cluster| {
        restore_with(ServerKind::Etcd, &file, node, initial_cluster)
    })
    .await;
    assert_matches(&etcd, &expected, "etcd 3.4 restored from raftkv").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_snapshot_restores_into_raftkv() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let source = Cluster::start_etcd(1).await;
    let (expected, file) = save_while_writing(&source, directory.path()).await;
    drop(source);
    let restored = Cluster::start_prepared(ServerKind::Raftkv, 3, &|node, initial_cluster| {
        restore_with(ServerKind::Raftkv, &file, node, initial_cluster)
    })
    .await;
    assert_matches(&restored, &expected, "raftkv restored from etcd 3.4").await;
    // The restored cluster takes writes at the next revision.
    let mut client = Client::connect(restored.client_urls(), None).await.expect("connect");
    let put = client.put("after-restore", "v", None).await.expect("put after restore");
    assert_eq!(put.header().expect("header").revision(), expected.revision + 1);
}

/// Runs `raftkv snapshot restore FILE` into `target`; returns (success, stderr).
fn try_restore(file: &Path, target: &Path, extra: &[&str]) -> (bool, String) {
    let mut arguments = vec!["snapshot", "restore", file.to_str().expect("path"), "--name", "n0"];
    arguments.extend(["--initial-cluster", "n0=http://127.0.0.1:2380", "--initial-advertise-peer-urls"]);
    arguments.extend(["http://127.0.0.1:2380", "--data-dir", target.to_str().expect("path")]);
    arguments.extend(extra);
    let output = raftkv(&arguments);
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn is_empty_dir(directory: &Path) -> bool {
    std::fs::read_dir(directory).expect("read the target").next().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_foreign_files_are_refused_and_nothing_is_written() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let source = Cluster::start_raftkv(1).await;
    let mut client = Client::connect(source.client_urls(), None).await.expect("connect");
    for index in 0..50 {
        client.put(format!("key/{index}"), "v".repeat(200), None).await.expect("put");
    }
    let file = directory.path().join("good.db");
    etcdctl_ok(&source.endpoints(), &["snapshot", "save", file.to_str().expect("path")]).await;
    drop(source);
    let good = std::fs::read(&file).expect("read the snapshot");
    let target = directory.path().join("target");
    let missing_target = directory.path().join("never-created");
    let mut cases: Vec<(&str, Vec<u8>, &[&str], &str)> = vec![
        ("truncated", good[..good.len() - 1000].to_vec(), &[], "truncated"),
        ("corrupted", good.clone(), &[], "hash mismatch"),
        ("no digest", good[..good.len() - 32].to_vec(), &[], "missing hash"),
        ("foreign", vec![0x42; 16 * 1024], &["--skip-hash-check"], "not a bbolt database"),
        ("cut at a page", good[..8192].to_vec(), &["--skip-hash-check"], "truncated"),
    ];
    cases[1].1[good.len() / 2] ^= 0x10;
    for (name, bytes, extra, reason) in cases {
        let damaged = directory.path().join(format!("{name}.db"));
        std::fs::write(&damaged, &bytes).expect("write the damaged file");
        std::fs::create_dir_all(&target).expect("an empty target");
        let (succeeded, stderr) = try_restore(&damaged, &target, extra);
        assert!(!succeeded, "{name}: restore must fail");
        assert!(stderr.contains(reason), "{name}: the reason is given ({reason:?}): {stderr}");
        assert!(is_empty_dir(&target), "{name}: nothing written to the target");
        let (succeeded, _) = try_restore(&damaged, &missing_target, extra);
        assert!(!succeeded && !missing_target.exists(), "{name}: no target created");
        let leftovers: Vec<_> = std::fs::read_dir(directory.path())
            .expect("list")
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().contains("restoring"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: no staging directory left behind");
    }
    let (succeeded, stderr) = try_restore(&file, &target, &[]);
    assert!(succeeded, "the undamaged file restores: {stderr}");
    let (succeeded, stderr) = try_restore(&file, &target, &[]);
    assert!(!succeeded && stderr.contains("not empty"), "a used data dir is refused: {stderr}");
}
