//! Requirement R8 on a real cluster: a write retried with the same
//! `x-raftkv-request-id: <client_id>:<sequence>` metadata is applied once, also when the
//! retry goes to another member (a follower forwards it with its id). Uses raftkv's own
//! generated etcd client, since third-party clients cannot attach per-call metadata.

mod common;

use common::Cluster;
use proto::etcdserverpb::{kv_client::KvClient, PutRequest, RangeRequest};
use tonic::transport::Channel;

async fn kv_client(url: &str) -> KvClient<Channel> {
    let channel = Channel::from_shared(url.to_string()).expect("valid URL").connect().await.expect("connect");
    KvClient::new(channel)
}

fn put_with_id(key: &str, value: &str, request_id: &str) -> tonic::Request<PutRequest> {
    let mut request = tonic::Request::new(PutRequest {
        key: key.to_owned().into(),
        value: value.to_owned().into(),
        ..PutRequest::default()
    });
    request.metadata_mut().insert("x-raftkv-request-id", request_id.parse().expect("ascii metadata"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_write_is_applied_once_on_any_member() {
    let mut cluster = Cluster::start_raftkv(3).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let mut on_leader = kv_client(&cluster.nodes[leader].client_url).await;
    let mut on_follower = kv_client(&cluster.nodes[follower].client_url).await;

    let first = on_follower.put(put_with_id("counter", "1", "4242:1")).await.expect("first attempt").into_inner();
    let retry_here = on_follower.put(put_with_id("counter", "1", "4242:1")).await.expect("retry").into_inner();
    let retry_there = on_leader.put(put_with_id("counter", "1", "4242:1")).await.expect("retry").into_inner();
    let revision = |response: &proto::etcdserverpb::PutResponse| response.header.as_ref().map(|header| header.revision);
    assert_eq!(revision(&first), revision(&retry_here));
    assert_eq!(revision(&first), revision(&retry_there));

    let read = on_leader.range(RangeRequest { key: b"counter".to_vec(), ..RangeRequest::default() }).await;
    let read = read.expect("read").into_inner();
    assert_eq!((read.kvs.len(), read.kvs[0].version), (1, 1), "applied once");
    assert_eq!(read.header.expect("header").revision, 2, "one revision for three attempts");

    on_leader.put(put_with_id("counter", "2", "4242:2")).await.expect("next request");
    let stale = on_follower.put(put_with_id("counter", "1", "4242:1")).await.expect_err("superseded retry");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);
    let malformed = on_follower.put(put_with_id("counter", "1", "not-an-id")).await.expect_err("malformed id");
    assert_eq!(malformed.code(), tonic::Code::InvalidArgument);
    cluster.assert_running();
}
