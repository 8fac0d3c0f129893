//! etcd's `--experimental-*` flags that raftkv implements, on real processes:
//! `--experimental-watch-progress-notify-interval` (idle watchers created with
//! `progress_notify` hear of progress at that interval), `--experimental-warning-apply-duration`
//! ("apply request took too long" in the log) and `--experimental-enable-lease-checkpoint`
//! (a new leader starts leases from their checkpointed remaining TTL).

mod common;

use std::time::Duration;

use common::{etcdctl_program, run_bounded, Cluster, ServerKind, WAIT_MAX};
use etcd_client::{Client, ConnectOptions, WatchOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_watchers_get_progress_notifications_at_the_configured_interval() {
    let arguments =
        ["--experimental-watch-progress-notify-interval", "300ms", "--experimental-warning-apply-duration", "1ns"];
    let cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 1, &arguments).await;
    let options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    let mut client = Client::connect(cluster.client_urls(), Some(options)).await.expect("connect");
    let revision = client.put("before", "watch", None).await.expect("put").header().expect("header").revision();
    let mut stream = client.watch("idle", Some(WatchOptions::new().with_progress_notify())).await.expect("watch");
    let progress = tokio::time::timeout(WAIT_MAX, async {
        loop {
            let response = stream.message().await.expect("watch stream").expect("a response");
            if !response.created() && response.events().is_empty() {
                return response;
            }
        }
    })
    .await
    .expect("a progress notification");
    assert_eq!(progress.header().expect("header").revision(), revision);
    // Every apply takes longer than 1 ns: the put was logged as slow.
    assert!(cluster.log(0).contains("apply request took too long"), "{}", cluster.log(0));
}

/// `--experimental-enable-lease-checkpoint`: the leader replicates leases' remaining TTLs
/// (every 300 ms here, via the test-only `RAFTKV_UNSAFE_LEASE_CHECKPOINT_INTERVAL_MS`;
/// etcd: 5 minutes), so after the leader dies the new leader's `etcdctl lease timetolive`
/// shows what was left, not the granted TTL; a lease kept alive just before starts from
/// its renewal. Without the flag every lease gets its full TTL again (etcd's default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_checkpoints_carry_remaining_ttls_across_a_leader_change() {
    std::env::set_var("RAFTKV_UNSAFE_LEASE_CHECKPOINT_INTERVAL_MS", "300");
    let (idle, renewed) = remaining_after_leader_change(&["--experimental-enable-lease-checkpoint"]).await;
    assert!(idle <= LEASE_TTL_SECONDS - 4, "checkpointed: {idle}s left of {LEASE_TTL_SECONDS}s");
    assert!(renewed >= LEASE_TTL_SECONDS - 3, "a keep-alive clears the checkpoint: {renewed}s left");
    let (idle, renewed) = remaining_after_leader_change(&[]).await;
    assert!(idle >= LEASE_TTL_SECONDS - 3, "without checkpoints the TTL starts over: {idle}s left");
    assert!(renewed >= LEASE_TTL_SECONDS - 3, "{renewed}s left");
}

/// TTL of the leases of [`remaining_after_leader_change`].
const LEASE_TTL_SECONDS: i64 = 30;

/// Grants two leases on a 3-member cluster started with `arguments`, waits until the leader
/// has 6 s less left on them, keeps the second alive once (which clears its checkpoint
/// through the log before it answers), kills the leader and returns the
/// remaining TTLs `etcdctl lease timetolive` reports from the new leader.
async fn remaining_after_leader_change(arguments: &[&str]) -> (i64, i64) {
    let mut cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 3, arguments).await;
    let leader = cluster.wait_for_leader().await;
    let leader_url = cluster.client_urls()[leader].clone();
    let idle = grant_lease(&leader_url).await;
    let renewed = grant_lease(&leader_url).await;
    let deadline = std::time::Instant::now() + WAIT_MAX;
    while time_to_live(&leader_url, &idle).await > LEASE_TTL_SECONDS - 6 {
        assert!(std::time::Instant::now() < deadline, "the lease's time does not run down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = etcdctl(&leader_url, &["lease", "keep-alive", "--once", &renewed]).await;
    assert!(kept.contains("keepalived with TTL(30)"), "{kept}");
    cluster.kill(leader);
    let new_leader = cluster.wait_for_leader().await;
    let new_url = cluster.client_urls()[new_leader].clone();
    (time_to_live(&new_url, &idle).await, time_to_live(&new_url, &renewed).await)
}

/// `etcdctl lease grant` of [`LEASE_TTL_SECONDS`] on `url`; the lease id in hex.
async fn grant_lease(url: &str) -> String {
    let granted = etcdctl(url, &["lease", "grant", &LEASE_TTL_SECONDS.to_string()]).await;
    let id = granted.split_whitespace().nth(1).expect("lease <id> granted with TTL(30s)");
    id.to_string()
}

/// The remaining seconds `etcdctl lease timetolive` prints for lease `id` on `url`.
async fn time_to_live(url: &str, id: &str) -> i64 {
    let answer = etcdctl(url, &["lease", "timetolive", id]).await;
    assert!(answer.contains(&format!("granted with TTL({LEASE_TTL_SECONDS}s)")), "{answer}");
    let remaining = answer.split("remaining(").nth(1).and_then(|rest| rest.split("s)").next());
    remaining.and_then(|seconds| seconds.parse().ok()).unwrap_or_else(|| panic!("no remaining TTL in {answer}"))
}

/// Runs etcdctl against `url`; its standard output (a failure panics with both outputs).
async fn etcdctl(url: &str, arguments: &[&str]) -> String {
    let mut all = vec![format!("--endpoints={url}"), "--command-timeout=10s".to_string()];
    all.extend(arguments.iter().map(|argument| argument.to_string()));
    let output = run_bounded(&etcdctl_program(), &all, &[("ETCDCTL_API", "3")], "").await;
    assert_eq!(output.code, 0, "etcdctl {arguments:?}: {output:?}");
    output.stdout
}

/// `--enable-pprof` mounts raftkv's profiling pages at etcd's `/debug/pprof/` path on the
/// client URL (absent without it), and `etcd_server_quota_backend_bytes` follows
/// `--quota-backend-bytes` as etcd's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiling_pages_follow_enable_pprof_and_the_quota_metric_follows_the_flag() {
    let profiled =
        Cluster::start_with_arguments(ServerKind::Raftkv, 1, &["--enable-pprof", "--quota-backend-bytes", "1048576"])
            .await;
    let heap = curl(&format!("{}/debug/pprof/heap", profiled.client_urls()[0])).await;
    assert!(heap.starts_with("200\n") && heap.contains("VmRSS"), "{heap}");
    let metrics = curl(&format!("{}/metrics", profiled.client_urls()[0])).await;
    assert!(metrics.lines().any(|line| line == "etcd_server_quota_backend_bytes 1048576"), "{metrics}");
    let plain = Cluster::start_with_arguments(ServerKind::Raftkv, 1, &[]).await;
    let absent = curl(&format!("{}/debug/pprof/heap", plain.client_urls()[0])).await;
    assert!(absent.starts_with("404\n"), "{absent}");
    let metrics = curl(&format!("{}/metrics", plain.client_urls()[0])).await;
    assert!(metrics.lines().any(|line| line == "etcd_server_quota_backend_bytes 2147483648"), "{metrics}");
}

/// The HTTP status on the first line, then the body.
async fn curl(url: &str) -> String {
    let arguments: Vec<String> =
        ["-s", "-w", "%{http_code}\n", "-o", "/dev/stdout", url].iter().map(|argument| argument.to_string()).collect();
    let output = run_bounded("curl", &arguments, &[], "").await;
    assert_eq!(output.code, 0, "curl {url}: {output:?}");
    let (body, status) = output.stdout.trim_end().rsplit_once('\n').unwrap_or(("", output.stdout.trim_end()));
    format!("{status}\n{body}")
}
