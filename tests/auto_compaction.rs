//! Auto-compaction (`--auto-compaction-mode`, `--auto-compaction-retention`) on real
//! raftkv processes: revision mode compacts every member (through the log) to the
//! revision `retention` behind the newest; periodic mode compacts to the revision of one
//! retention ago, and under a steady overwrite workload the store's history
//! (`raftkv_mvcc_key_versions`) keeps coming back to one version per key.
//!
//! Revision mode checks every 5 minutes in etcd; the test shortens that with
//! `RAFTKV_UNSAFE_REVISION_COMPACTION_INTERVAL_MS` (a test-only environment variable).
//! Every wait polls until a condition holds, bounded by [`WAIT_MAX`].

mod common;

use std::time::{Duration, Instant};

use common::{serve_one_member_until_exit, Cluster, ServerKind, WAIT_MAX};
use etcd_client::{Client, ConnectOptions, GetOptions};

const COMPACTED: &str = "required revision has been compacted";

async fn connect(url: &str) -> Client {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(5)).with_timeout(Duration::from_secs(10));
    Client::connect([url], Some(options)).await.expect("connect")
}

/// A serializable read of `key` at `revision` on one member: Ok(value) or the error text.
async fn read_at(client: &mut Client, key: &str, revision: i64) -> Result<String, String> {
    let options = GetOptions::new().with_revision(revision).with_serializable();
    match client.get(key, Some(options)).await {
        Ok(response) => {
            Ok(response.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()).unwrap_or_default())
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Polls `condition` until it holds; panics with `what` and the logs after [`WAIT_MAX`].
async fn wait_until<F, Fut>(cluster: &Cluster, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let last = match condition().await {
            Ok(()) => return,
            Err(reason) => reason,
        };
        if Instant::now() > deadline {
            panic!("{what}: not within {WAIT_MAX:?} (last: {last}){}", cluster.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_mode_compacts_every_member_to_the_last_revisions() {
    std::env::set_var("RAFTKV_UNSAFE_REVISION_COMPACTION_INTERVAL_MS", "200");
    let arguments = ["--auto-compaction-mode", "revision", "--auto-compaction-retention", "10"];
    let cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 3, &arguments).await;
    let mut writer = connect(&cluster.client_urls()[0]).await;
    let mut newest = 0;
    for value in 0..50 {
        let response = writer.put("key", format!("v{value}"), None).await.expect("put");
        newest = response.header().expect("header").revision();
    }
    let kept = newest - 10;
    for url in cluster.client_urls() {
        let mut client = connect(&url).await;
        wait_until(&cluster, &format!("{url} compacted below revision {kept}"), || {
            let mut client = client.clone();
            async move {
                match read_at(&mut client, "key", kept - 1).await {
                    Err(error) if error.contains(COMPACTED) => Ok(()),
                    other => Err(format!("read at {}: {other:?}", kept - 1)),
                }
            }
        })
        .await;
        let value = read_at(&mut client, "key", kept).await.expect("the retained revisions stay readable");
        assert_eq!(value, format!("v{}", 50 - 11), "{url}: the value written at revision {kept}");
        assert_eq!(read_at(&mut client, "key", newest).await, Ok("v49".to_string()));
    }
    // No new writes: the next checks find nothing more to compact.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(read_at(&mut writer, "key", kept).await.is_ok(), "compaction stays at newest - retention");
}

/// `raftkv_mvcc_key_versions` from a member's metrics URL.
async fn key_versions(metrics_address: &str) -> Result<i64, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics_address).await.map_err(|error| error.to_string())?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {metrics_address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|error| error.to_string())?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.map_err(|error| error.to_string())?;
    body.lines()
        .find_map(|line| line.strip_prefix("raftkv_mvcc_key_versions "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| "no raftkv_mvcc_key_versions in /metrics".to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_mode_keeps_history_bounded_under_steady_overwrites() {
    let arguments = ["--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s"];
    let cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 1, &arguments).await;
    let metrics_address = cluster.nodes[0].metrics_url.trim_start_matches("http://").to_string();
    let mut client = connect(&cluster.client_urls()[0]).await;
    const KEYS: i64 = 4;
    const ROUNDS: i64 = 4;
    const PUTS_PER_ROUND: i64 = 60;
    let mut newest = 0;
    for round in 0..ROUNDS {
        for put in 0..PUTS_PER_ROUND {
            let key = format!("key{}", put % KEYS);
            newest = client
                .put(key, format!("r{round}p{put}"), None)
                .await
                .expect("put")
                .header()
                .expect("header")
                .revision();
        }
        // Idle for more than a retention: the compactor reaches the newest revision,
        // leaving one version of each key however many were written.
        wait_until(&cluster, &format!("round {round}: compacted to {newest}, one version per key"), || {
            let address = metrics_address.clone();
            let mut client = client.clone();
            async move {
                match read_at(&mut client, "key0", newest - 1).await {
                    Err(error) if error.contains(COMPACTED) => {}
                    other => return Err(format!("read at {}: {other:?}", newest - 1)),
                }
                match key_versions(&address).await? {
                    versions if versions == KEYS => Ok(()),
                    versions => Err(format!("{versions} key versions")),
                }
            }
        })
        .await;
        assert_eq!(read_at(&mut client, "key3", newest).await, Ok(format!("r{round}p{}", PUTS_PER_ROUND - 1)));
    }
    assert_eq!(newest, 1 + ROUNDS * PUTS_PER_ROUND, "every put made a revision");
}

#[tokio::test]
async fn malformed_retention_is_refused_naming_the_flag() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let output =
        serve_one_member_until_exit(&directory.path().join("data"), &["--auto-compaction-retention", "0.5"]).await;
    assert_ne!(output.code, 0, "refused: {output:?}");
    assert!(output.stderr.contains("--auto-compaction-retention") && output.stderr.contains("0.5"), "{output:?}");
}
