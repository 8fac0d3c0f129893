//! The limits that protect a node from its clients, each set by a flag and met by a
//! real client (etcd-client, etcdctl 3.4) against a real `raftkv serve` process:
//!
//! - `--max-request-bytes`: a write over it gets etcd's "request is too large"; a
//!   message over it plus gRPC's overhead is refused by the gRPC decoder with grpc-go's
//!   (etcd's) answer (`ResourceExhausted`, "received message larger than max") on every service, unary or streaming (a watch
//!   stream here);
//! - `--max-txn-ops`: etcd's "too many operations in txn request";
//! - `--max-client-connections`: one connection more gets "too many client connections";
//!   a slot freed by a closed connection is reused;
//! - `--max-concurrent-streams`: the HTTP/2 stream limit of a connection; a client
//!   holding that many streams has its next call wait until one ends, while other
//!   connections are unaffected.
//!
//! Needs `etcdctl` on PATH.

mod common;

use std::time::{Duration, Instant};

use common::{run_bounded, Cluster, ServerKind, WAIT_MAX};
use etcd_client::{Client, Txn, TxnOp};

/// A client of `url` with short timeouts.
async fn client(url: &str) -> Result<Client, etcd_client::Error> {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    Client::connect([url], Some(options)).await
}

fn grpc_status(error: &etcd_client::Error) -> Option<&tonic::Status> {
    match error {
        etcd_client::Error::GRpcStatus(status) => Some(status),
        _ => None,
    }
}

/// The gRPC decoder's refusal of a message over its limit, as etcd (grpc-go) answers it:
/// `ResourceExhausted`, "grpc: received message larger than max (N vs. M)".
fn decoder_refused(error: &etcd_client::Error) -> bool {
    grpc_status(error).is_some_and(|status| {
        status.code() == tonic::Code::ResourceExhausted
            && status.message().starts_with("grpc: received message larger than max (")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_size_and_txn_operations_are_limited() {
    let cluster =
        Cluster::start_with_arguments(ServerKind::Raftkv, 1, &["--max-request-bytes=4096", "--max-txn-ops=4"]).await;
    let url = cluster.client_urls()[0].clone();
    let mut client = client(&url).await.expect("connect");
    client.put("small", vec![b'v'; 1000], None).await.expect("a request under the limit");
    let error = client.put("large", vec![b'v'; 5000], None).await.expect_err("over --max-request-bytes");
    let status = grpc_status(&error).unwrap_or_else(|| panic!("a gRPC status, not {error:?}"));
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "etcdserver: request is too large");
    // Beyond the limit plus gRPC's 512 KiB overhead the decoder refuses the message.
    let huge = vec![b'v'; 600 << 10];
    let error = client.put("huge", huge.clone(), None).await.expect_err("over the decoding limit");
    assert!(decoder_refused(&error), "{error:?}");
    // The same decoding limit holds on streams: a watch whose key is that large.
    let watched = client.watch(huge, None).await;
    let refused = match watched {
        Err(error) => decoder_refused(&error),
        Ok(mut stream) => match stream.message().await {
            Err(error) => decoder_refused(&error),
            Ok(response) => panic!("a huge watch request was accepted: {response:?}"),
        },
    };
    assert!(refused, "the watch stream refuses a message over the decoding limit");
    let puts = |count: usize| -> Vec<TxnOp> {
        (0..count).map(|index| TxnOp::put(format!("txn-{index}"), "v", None)).collect()
    };
    client.txn(Txn::new().and_then(puts(4))).await.expect("a txn at --max-txn-ops");
    let error = client.txn(Txn::new().and_then(puts(5))).await.expect_err("a txn over --max-txn-ops");
    let status = grpc_status(&error).unwrap_or_else(|| panic!("a gRPC status, not {error:?}"));
    assert_eq!(status.message(), "etcdserver: too many operations in txn request");
    let output = run_bounded(
        "etcdctl",
        &[format!("--endpoints={url}"), "put".into(), "from-etcdctl".into(), "x".repeat(5000)],
        &[("ETCDCTL_API", "3")],
        "",
    )
    .await;
    assert!(output.stderr.contains("etcdserver: request is too large"), "etcdctl shows the error: {output:?}");
    // Nothing refused was stored.
    let stored = client.get("", Some(etcd_client::GetOptions::new().with_all_keys().with_keys_only())).await;
    let keys: Vec<String> =
        stored.expect("get").kvs().iter().map(|kv| kv.key_str().unwrap_or("?").to_string()).collect();
    assert_eq!(keys, ["small", "txn-0", "txn-1", "txn-2", "txn-3"]);
}

/// A client of `url` that completed one call (so its connection is open), retried
/// until a slot is free (connections of the harness's polls close asynchronously).
async fn connected_client(url: &str) -> Client {
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        if let Ok(mut client) = client(url).await {
            if client.status().await.is_ok() {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "no connection to {url} within {WAIT_MAX:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_are_limited() {
    let cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 1, &["--max-client-connections=2"]).await;
    let url = cluster.client_urls()[0].clone();
    let first = connected_client(&url).await;
    let mut second = connected_client(&url).await;
    second.put("held", "open", None).await.expect("the second connection works");
    let output = run_bounded(
        "etcdctl",
        &[format!("--endpoints={url}"), "--command-timeout=5s".into(), "put".into(), "third".into(), "refused".into()],
        &[("ETCDCTL_API", "3")],
        "",
    )
    .await;
    assert_ne!(output.code, 0, "a third connection is refused: {output:?}");
    assert!(output.stderr.contains("too many client connections"), "with a clear error: {output:?}");
    drop(first);
    // The freed slot is reused (the server sees the close asynchronously: bounded retry).
    let mut third = connected_client(&url).await;
    third.put("third", "accepted", None).await.expect("a connection after one closed");
    let value = second.get("third", None).await.expect("get");
    assert_eq!(value.kvs()[0].value(), b"accepted");
    assert!(cluster.log(0).contains("over --max-client-connections"), "refusals are logged{}", cluster.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_per_connection_are_limited() {
    let cluster = Cluster::start_with_arguments(ServerKind::Raftkv, 1, &["--max-concurrent-streams=2"]).await;
    let url = cluster.client_urls()[0].clone();
    // No per-call timeout on this client: its third call is meant to wait.
    let mut client = Client::connect([url.as_str()], None).await.expect("connect");
    let first_stream = client.watch("a", None).await.expect("first watch stream");
    let _second_stream = client.watch("b", None).await.expect("second watch stream");
    // Both streams of this connection are in use: the next call waits for one.
    let mut waiting = client.clone();
    let blocked = tokio::spawn(async move { waiting.put("queued", "v", None).await });
    let mut other = connected_client(&url).await;
    other.put("other", "v", None).await.expect("another connection is not limited");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!blocked.is_finished(), "a third stream on a connection limited to 2 must wait");
    let stored = other.get("queued", None).await.expect("get");
    assert!(stored.kvs().is_empty(), "the waiting put has not reached the server");
    drop(first_stream);
    let result = tokio::time::timeout(WAIT_MAX, blocked).await.expect("the put goes through once a stream closed");
    result.expect("task").expect("put");
    let stored = other.get("queued", None).await.expect("get");
    assert_eq!(stored.kvs().len(), 1);
}
