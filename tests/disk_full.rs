//! A full disk (issue 16, "Data dir hygiene"): a member whose data dir is on a small tmpfs
//! that a filler file fills up.
//!
//! - In a 3-member cluster the other two go on taking writes; the full member logs
//!   "no space left on device" with the path, keeps running, and refuses writes sent to
//!   it with an error (it cannot make them durable, so it acknowledges nothing; a full
//!   leader hands leadership away); once the filler is deleted it catches up by itself
//!   and serves every acknowledged write (`etcdctl get --consistency=s` against it).
//! - A one-member cluster: writes fail with an error (not acknowledged), the process
//!   survives, after space is freed writes succeed, and every acknowledged write is there
//!   after a restart.
//!
//! Needs root (`mount -t tmpfs`) and `etcdctl` on PATH. No timing assertions: every wait
//! polls a condition, bounded.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{etcdctl, etcdctl_ok, Cluster, Node, ServerKind, WAIT_MAX};

/// Size of the tmpfs under the full member's data dir.
const TMPFS_SIZE: &str = "24m";
/// Bytes of each padding value: big enough that a few dozen writes use up the WAL's
/// preallocated space, below the request size limit and the argument size limit.
const PADDING_VALUE_BYTES: usize = 48 << 10;
/// Most padding writes made to push the full member into its error.
const PADDING_WRITES_MAX: usize = 400;
/// Pause between two polls.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// What the full member logs (the WAL error names the file).
const NO_SPACE_LOG: &str = "no space left on device";
/// What the member logs once its writes resumed.
const RESUMED_LOG: &str = "space available again";

/// A tmpfs mounted on a fresh directory; unmounted (lazily, so a process still holding a
/// file cannot keep it) and removed on drop.
struct TmpfsMount {
    directory: tempfile::TempDir,
}

impl TmpfsMount {
    fn new(size: &str) -> TmpfsMount {
        let directory = tempfile::Builder::new().prefix("raftkv-disk-full-").tempdir().expect("mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(directory.path())
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        TmpfsMount { directory }
    }

    fn path(&self) -> &Path {
        self.directory.path()
    }

    fn data_dir(&self) -> PathBuf {
        self.path().join("member.data")
    }

    fn filler_path(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Writes the filler file until the file system is full; returns its size.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.filler_path()).expect("create the filler");
        let chunk = vec![0x5a_u8; 64 << 10];
        let mut written_bytes = 0u64;
        // Bounded: the tmpfs is TMPFS_SIZE, so at most that many chunks fit.
        for _ in 0..4096 {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(count) => written_bytes += count as u64,
                Err(error) => {
                    assert_eq!(error.raw_os_error(), Some(28), "the filler stops at ENOSPC: {error}");
                    break;
                }
            }
        }
        let _ = file.sync_all();
        // A last small write must fail: the file system is full.
        assert!(file.write_all(&[1u8; 4096]).is_err(), "the tmpfs is full");
        written_bytes
    }

    fn free(&self) {
        std::fs::remove_file(self.filler_path()).expect("remove the filler");
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.directory.path()).status();
    }
}

/// Links member `name`'s data dir to the tmpfs (the harness names data dirs itself).
fn prepare_on_tmpfs(mount: &TmpfsMount, name: &'static str) -> impl Fn(&Node, &str) {
    let data_dir = mount.data_dir();
    move |node: &Node, _initial_cluster: &str| {
        if node.name == name {
            std::fs::create_dir_all(&data_dir).expect("data dir on the tmpfs");
            std::os::unix::fs::symlink(&data_dir, &node.data_dir).expect("link the data dir");
        }
    }
}

fn padding_value(key: &str) -> String {
    let mut value = String::with_capacity(PADDING_VALUE_BYTES + key.len());
    while value.len() < PADDING_VALUE_BYTES {
        value.push_str(key);
        value.push('.');
    }
    value
}

/// Polls `condition` every [`POLL_INTERVAL`] for at most `bound`; panics with `what` and
/// the cluster's logs if it never holds.
async fn poll_until<F, Fut>(cluster: &Cluster, bound: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + bound;
    loop {
        if condition().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("{what}: not within {bound:?}{}", cluster.logs());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Every key under `prefix` with its value, as `endpoint` serves it serializably.
async fn serializable_range(endpoint: &str, prefix: &str) -> BTreeMap<String, String> {
    let output = etcdctl_ok(endpoint, &["get", "--prefix", prefix, "--consistency=s"]).await;
    let lines: Vec<&str> = output.lines().collect();
    assert!(lines.len().is_multiple_of(2), "key and value lines: {}", lines.len());
    lines.chunks(2).map(|pair| (pair[0].to_string(), pair[1].to_string())).collect()
}

/// Checks the error a refused write on a full member gets: not acknowledged, and one of
/// the errors a member that cannot make a write durable answers.
fn assert_refused(output: &common::CommandOutput) {
    assert_ne!(output.code, 0, "a write on a full member is not acknowledged: {}", output.stdout);
    let refusals = ["etcdserver: no space left on device"];
    assert!(refusals.iter().any(|refusal| output.stderr.contains(refusal)), "unexpected refusal: {}", output.stderr);
}

/// Member `index`'s id.
async fn member_id(cluster: &Cluster, index: usize) -> u64 {
    common::member_status(&cluster.nodes[index].client_url).await.expect("member status").1
}

/// `etcdctl move-leader` to member `index`, retried (bounded) while an election runs.
async fn move_leader_to(cluster: &mut Cluster, index: usize) {
    let target = format!("{:x}", member_id(cluster, index).await);
    for _ in 0..5 {
        let moved = etcdctl(&cluster.endpoints(), &["move-leader", &target]).await;
        if moved.code == 0 && cluster.wait_for_leader().await == index {
            return;
        }
    }
    panic!("move-leader to n{index} failed{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_follower_stops_taking_writes_and_catches_up_when_space_returns() {
    full_member_of_three(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_leader_hands_leadership_away_and_catches_up_when_space_returns() {
    full_member_of_three(true).await;
}

/// Member n2 of three runs on the tmpfs (and leads first if `full_is_leader`).
async fn full_member_of_three(full_is_leader: bool) {
    let mount = TmpfsMount::new(TMPFS_SIZE);
    let prepare = prepare_on_tmpfs(&mount, "n2");
    let mut cluster = Cluster::start_prepared(ServerKind::Raftkv, 3, &prepare).await;
    if full_is_leader {
        move_leader_to(&mut cluster, 2).await;
    } else if cluster.wait_for_leader().await == 2 {
        move_leader_to(&mut cluster, 0).await;
    }
    let full_endpoint = cluster.nodes[2].client_url.clone();
    let others = format!("{},{}", cluster.nodes[0].client_url, cluster.nodes[1].client_url);
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    for index in 0..5 {
        let (key, value) = (format!("key/before/{index}"), format!("value {index}"));
        etcdctl_ok(&full_endpoint, &["put", &key, &value]).await;
        acknowledged.insert(key, value);
    }

    mount.fill();
    // Write through the other members until the full member meets the full disk (its
    // preallocated WAL space absorbs the first writes). A refused write (the full member
    // may be the leader until it hands leadership away) is not acknowledged.
    let mut refused_writes = 0;
    for index in 0..PADDING_WRITES_MAX {
        if cluster.log(2).contains(NO_SPACE_LOG) {
            break;
        }
        let key = format!("key/padding/{index:04}");
        let value = padding_value(&key);
        let output = etcdctl(&others, &["put", &key, &value]).await;
        if output.code == 0 {
            acknowledged.insert(key, value);
        } else {
            refused_writes += 1;
        }
    }
    let log = cluster.log(2);
    let line = log.lines().find(|line| line.contains(NO_SPACE_LOG)).unwrap_or_else(|| {
        panic!("the full member never logged {NO_SPACE_LOG:?}{}", cluster.logs());
    });
    eprintln!("full member: {line}");
    let data_dir = cluster.nodes[2].data_dir.display().to_string();
    assert!(line.contains(&data_dir), "the log line names the path under {data_dir}: {line}");
    assert!(cluster.is_running(2), "the full member keeps running{}", cluster.logs());

    // The other two members keep taking writes (once a leader other than the full member leads).
    for index in 0..10 {
        let (key, value) = (format!("key/during/{index}"), format!("written while n2 is full {index}"));
        poll_until(&cluster, WAIT_MAX, "a write through the other members", || {
            let (others, key, value) = (others.clone(), key.clone(), value.clone());
            async move { etcdctl(&others, &["put", &key, &value]).await.code == 0 }
        })
        .await;
        acknowledged.insert(key, value);
    }
    // A full leader handed leadership to a member that can write.
    assert_ne!(cluster.wait_for_leader().await, 2, "the full member does not lead");
    if full_is_leader {
        assert!(cluster.log(2).contains("disk full: transferring leadership"), "{}", cluster.logs());
    }
    // A write sent to the full member is refused (it cannot make it durable).
    let refused = etcdctl(&full_endpoint, &["put", "key/refused", "never acknowledged"]).await;
    assert_refused(&refused);
    assert!(cluster.is_running(2), "the full member keeps running{}", cluster.logs());
    eprintln!("acknowledged {} writes, {refused_writes} refused while filling", acknowledged.len());

    mount.free();
    poll_until(&cluster, WAIT_MAX, "the member resumed writing after space was freed", || {
        let resumed = cluster.log(2).contains(RESUMED_LOG);
        async move { resumed }
    })
    .await;
    // It catches up by itself and serves every acknowledged write.
    poll_until(&cluster, WAIT_MAX, "the recovered member serves every acknowledged write", || {
        let (endpoint, acknowledged) = (full_endpoint.clone(), &acknowledged);
        async move {
            let served = serializable_range(&endpoint, "key/").await;
            acknowledged.iter().all(|(key, value)| served.get(key) == Some(value))
        }
    })
    .await;
    let served = serializable_range(&full_endpoint, "key/").await;
    assert!(!served.contains_key("key/refused"), "the refused write was not applied");
    // It takes writes again.
    poll_until(&cluster, WAIT_MAX, "a write on the recovered member", || {
        let endpoint = full_endpoint.clone();
        async move { etcdctl(&endpoint, &["put", "key/after", "space is back"]).await.code == 0 }
    })
    .await;
    cluster.assert_running();
    drop(cluster);
    drop(mount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_single_member_refuses_writes_and_keeps_every_acknowledged_one() {
    let mount = TmpfsMount::new(TMPFS_SIZE);
    let prepare = prepare_on_tmpfs(&mount, "n0");
    let mut cluster = Cluster::start_prepared(ServerKind::Raftkv, 1, &prepare).await;
    let endpoint = cluster.nodes[0].client_url.clone();
    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    mount.fill();

    // Writes succeed while the WAL's preallocated space lasts, then fail.
    let mut refused = None;
    for index in 0..PADDING_WRITES_MAX {
        let key = format!("key/{index:04}");
        let value = padding_value(&key);
        let output = etcdctl(&endpoint, &["put", &key, &value]).await;
        if output.code == 0 {
            acknowledged.insert(key, value);
        } else {
            refused = Some(output);
            break;
        }
    }
    let refused = refused.unwrap_or_else(|| panic!("no write failed on the full disk{}", cluster.logs()));
    let log = cluster.log(0);
    assert!(log.contains(NO_SPACE_LOG), "the member logs the full disk{}", cluster.logs());
    // The first refusal may be a timeout (the write was proposed before the disk was full);
    // the next ones are refused at once.
    let refused_again = etcdctl(&endpoint, &["put", "key/refused", "never acknowledged"]).await;
    assert_refused(&refused_again);
    eprintln!("first failure: {}", refused.stderr.trim());
    assert!(cluster.is_running(0), "the member keeps running on a full disk{}", cluster.logs());
    // Reads still work.
    let served = serializable_range(&endpoint, "key/").await;
    assert!(acknowledged.iter().all(|(key, value)| served.get(key) == Some(value)));

    mount.free();
    poll_until(&cluster, WAIT_MAX, "a write once space is freed", || {
        let endpoint = endpoint.clone();
        async move { etcdctl(&endpoint, &["put", "key/after", "space is back"]).await.code == 0 }
    })
    .await;
    acknowledged.insert("key/after".into(), "space is back".into());
    assert!(cluster.log(0).contains(RESUMED_LOG), "the member logs that writes resumed{}", cluster.logs());
    for index in 0..5 {
        let (key, value) = (format!("key/more/{index}"), format!("more {index}"));
        etcdctl_ok(&endpoint, &["put", &key, &value]).await;
        acknowledged.insert(key, value);
    }

    // Every acknowledged write survives a restart (it was durable when acknowledged).
    cluster.kill(0);
    cluster.restart(0);
    cluster.wait_for_leader().await;
    let served = serializable_range(&endpoint, "key/").await;
    for (key, value) in &acknowledged {
        assert_eq!(served.get(key), Some(value), "acknowledged {key} is there after the restart");
    }
    assert!(!served.contains_key("key/refused"), "the refused write was not applied");
    drop(cluster);
    drop(mount);
}
