//! etcd's `--experimental-*` flags that raftkv implements, on real processes:
//! `--experimental-watch-progress-notify-interval` (idle watchers created with
//! `progress_notify` hear of progress at that interval), `--experimental-warning-apply-duration`
//! ("apply request took too long" in the log) and `--experimental-enable-lease-checkpoint`
//! (refused when true, with the reason).

mod common;

use std::time::Duration;

use common::{run_bounded, serve_one_member_until_exit, Cluster, ServerKind, WAIT_MAX};
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

#[tokio::test]
async fn lease_checkpoints_are_refused_with_the_reason() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let output =
        serve_one_member_until_exit(&directory.path().join("data"), &["--experimental-enable-lease-checkpoint"]).await;
    assert_ne!(output.code, 0, "{output:?}");
    assert!(output.stderr.contains("--experimental-enable-lease-checkpoint is not supported"), "{output:?}");
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
