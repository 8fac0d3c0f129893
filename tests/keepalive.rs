//! `--grpc-keepalive-min-time` as etcd's gRPC server (grpc-go's enforcement policy)
//! applies it, driven by a raw HTTP/2 client that sends PINGs, against raftkv and a real
//! etcd 3.4 alike: a client that pings sooner than the min time again and again gets
//! GOAWAY `ENHANCE_YOUR_CALM` and loses the connection; a client that waits at least the
//! min time between pings keeps it.

mod common;

use std::time::Duration;

use common::{Cluster, ServerKind};

/// Pings a client sends at most before the test gives up waiting for the GOAWAY (grpc-go
/// ends the connection on the third strike; the first ping, and the first after the server
/// sent headers, are not counted).
const PINGS_MAX: usize = 12;

/// A connection to `url` with one gRPC call open (a Watch stream that sends nothing, so
/// etcd's port multiplexer routes the connection to its gRPC server): returns the ping
/// handle, the open call (kept alive by the caller) and the connection's outcome.
async fn open_connection(
    url: &str,
) -> (h2::PingPong, h2::SendStream<bytes::Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let address = url.trim_start_matches("http://");
    let tcp = tokio::net::TcpStream::connect(address).await.expect("connect to the client URL");
    let (mut client, mut connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let ping_pong = connection.ping_pong().expect("the connection's ping handle");
    let outcome = tokio::spawn(connection);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("{url}/etcdserverpb.Watch/Watch"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("a request");
    let (_response, call) = client.send_request(request, false).expect("open a Watch call");
    (ping_pong, call, outcome)
}

/// Sends up to `pings` PINGs, `pause` apart; returns how many were answered.
async fn ping(ping_pong: &mut h2::PingPong, pings: usize, pause: Duration) -> usize {
    let mut answered = 0;
    for _ in 0..pings {
        let answer = tokio::time::timeout(common::WAIT_MAX, ping_pong.ping(h2::Ping::opaque())).await;
        match answer {
            Ok(Ok(_)) => answered += 1,
            Ok(Err(_)) => break,
            Err(_) => panic!("a PING was neither answered nor refused"),
        }
        tokio::time::sleep(pause).await;
    }
    answered
}

async fn too_many_pings_end_the_connection(kind: ServerKind) {
    let cluster = Cluster::start_with_arguments(kind, 1, &["--grpc-keepalive-min-time=5s"]).await;
    let url = cluster.client_urls()[0].clone();
    let (mut ping_pong, _call, outcome) = open_connection(&url).await;
    let answered = ping(&mut ping_pong, PINGS_MAX, Duration::ZERO).await;
    assert!(answered < PINGS_MAX, "{kind:?}: every one of {PINGS_MAX} quick pings was answered");
    let ended = tokio::time::timeout(common::WAIT_MAX, outcome).await.expect("the connection ends").expect("joins");
    let error = ended.expect_err("the server ends the connection with an error");
    assert!(error.is_go_away(), "{kind:?}: {error:?}");
    assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{kind:?}: {error:?}");

    // A client that waits the min time between pings keeps its connection.
    drop(cluster);
    let cluster = Cluster::start_with_arguments(kind, 1, &["--grpc-keepalive-min-time=200ms"]).await;
    let url = cluster.client_urls()[0].clone();
    let (mut ping_pong, _call, outcome) = open_connection(&url).await;
    let gentle_pings = 6;
    assert_eq!(ping(&mut ping_pong, gentle_pings, Duration::from_millis(300)).await, gentle_pings, "{kind:?}");
    assert!(!outcome.is_finished(), "{kind:?}: the gentle client's connection was ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftkv_sends_clients_that_ping_too_often_away() {
    too_many_pings_end_the_connection(ServerKind::Raftkv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_sends_clients_that_ping_too_often_away() {
    too_many_pings_end_the_connection(ServerKind::Etcd).await;
}
