//! clientv3's `WithRequireLeader` (gRPC metadata `hasleader: true`, as Kubernetes sends
//! with its watches), on a member cut off from the rest of a 3-member cluster (the other
//! two killed): its watch and lease keep-alive streams that require a leader end with UNAVAILABLE
//! "etcdserver: no leader", a new one is refused with that error, and a watch stream
//! opened without the metadata stays open and keeps answering. The same scenario runs
//! against a real etcd 3.4 first, so the test also shows etcd behaves so.
//!
//! Needs `/usr/bin/etcd`. Every wait is bounded; no durations are asserted.

mod common;

use std::time::Duration;

use common::{Cluster, ServerKind, WAIT_MAX};
use etcd_client::{Client, ConnectOptions, Error, WatchStream};

/// A client of `url` that sends `hasleader: true` with every call when `require_leader`.
async fn client(url: &str, require_leader: bool) -> Client {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(5)).with_require_leader(require_leader);
    Client::connect([url], Some(options)).await.expect("connect")
}

/// Opens a watch on `key` and waits (bounded) for its `created` answer.
async fn open_watch(client: &mut Client, key: &str) -> WatchStream {
    let mut stream = client.watch(key, None).await.expect("open a watch stream");
    let created = tokio::time::timeout(WAIT_MAX, stream.message())
        .await
        .expect("a created answer in time")
        .expect("a created answer")
        .expect("the stream is open");
    assert!(created.created(), "the first answer creates the watcher: {created:?}");
    stream
}

/// Reads `stream` until it ends (bounded by [`WAIT_MAX`]); returns how it ended.
async fn wait_for_end(stream: &mut WatchStream) -> Result<(), Error> {
    let reading = async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    };
    tokio::time::timeout(WAIT_MAX, reading).await.expect("the stream requiring a leader ends in time")
}

/// Asserts `error` is etcd's "no leader": UNAVAILABLE "etcdserver: no leader".
fn assert_no_leader(kind: ServerKind, what: &str, error: &Error) {
    match error {
        Error::GRpcStatus(status) => {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{kind:?}: {what}: {status:?}");
            assert_eq!(status.message(), "etcdserver: no leader", "{kind:?}: {what}");
        }
        other => panic!("{kind:?}: {what}: expected a gRPC status, got {other:?}"),
    }
}

async fn cut_off_member_cancels_streams_requiring_a_leader(kind: ServerKind) {
    let mut cluster = Cluster::start(kind, 3).await;
    let leader = cluster.wait_for_leader().await;
    let cut_off = (leader + 1) % 3;
    let url = cluster.nodes[cut_off].client_url.clone();
    let mut requiring_client = client(&url, true).await;
    let mut plain_client = client(&url, false).await;
    let mut requiring = open_watch(&mut requiring_client, "require-leader/a").await;
    let mut plain = open_watch(&mut plain_client, "require-leader/b").await;
    // A keep-alive stream that requires a leader ends the same way (etcd's interceptor).
    let lease = requiring_client.lease_grant(60, None).await.expect("grant").id();
    let (mut keeper, mut keep_alives) = requiring_client.lease_keep_alive(lease).await.expect("keep-alive stream");
    keeper.keep_alive().await.expect("send a keep-alive");
    let first = tokio::time::timeout(WAIT_MAX, keep_alives.message()).await.expect("a keep-alive answer in time");
    assert!(first.expect("answered").is_some_and(|answer| answer.ttl() > 0), "{kind:?}: the lease is kept alive");
    for index in (0..3).filter(|index| *index != cut_off) {
        cluster.kill(index);
    }
    let ended = wait_for_end(&mut requiring).await;
    let error = ended.expect_err("the stream requiring a leader must end with an error, not cleanly");
    assert_no_leader(kind, "open stream with hasleader", &error);
    let ended = tokio::time::timeout(WAIT_MAX, async {
        loop {
            match keep_alives.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    });
    let ended = ended.await.expect("the keep-alive stream requiring a leader ends in time");
    assert_no_leader(kind, "keep-alive stream with hasleader", &ended.expect_err("ends with an error"));
    // A new stream that requires a leader is refused while there is none.
    match requiring_client.watch("require-leader/c", None).await {
        Err(error) => assert_no_leader(kind, "new stream with hasleader", &error),
        Ok(mut stream) => {
            let error = wait_for_end(&mut stream).await.expect_err("a new stream requiring a leader is refused");
            assert_no_leader(kind, "new stream with hasleader", &error);
        }
    }
    // The stream opened without the metadata is still open: it answers a progress request.
    plain.request_progress().await.expect("the plain stream takes a request");
    let answer = tokio::time::timeout(WAIT_MAX, plain.message())
        .await
        .unwrap_or_else(|_| panic!("{kind:?}: the plain stream answers the progress request in time"));
    let answer = answer.unwrap_or_else(|error| panic!("{kind:?}: the plain stream was ended: {error}"));
    let answer = answer.unwrap_or_else(|| panic!("{kind:?}: the plain stream was closed"));
    assert!(!answer.canceled(), "{kind:?}: the plain watcher was canceled: {answer:?}");
    cluster.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_requiring_a_leader_are_canceled_on_a_cut_off_member() {
    cut_off_member_cancels_streams_requiring_a_leader(ServerKind::Etcd).await;
    cut_off_member_cancels_streams_requiring_a_leader(ServerKind::Raftkv).await;
}
