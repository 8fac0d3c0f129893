//! The gRPC mapping over a real tonic server on loopback and an in-process node
//! ([`TestNode`]): headers, read paths, errors, request ids, size limits.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use proto::etcdserverpb::{
    cluster_client::ClusterClient, compare, kv_client::KvClient, maintenance_client::MaintenanceClient, request_op,
    watch_client::WatchClient, AlarmRequest, CompactionRequest, Compare, DeleteRangeRequest, HashKvRequest,
    MemberListRequest, PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::Code;

use super::test_node::{TestNode, CLUSTER_ID, MEMBER_ID, TERM};
use super::{GrpcOptions, REQUEST_ID_METADATA_KEY, SERVER_VERSION};

struct Server {
    node: Arc<TestNode>,
    channel: Channel,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(options: GrpcOptions) -> Server {
        let (node, handle) = TestNode::start();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let address = listener.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(super::serve(listener, handle, options, async {
            let _ = stopped.await;
        }));
        let endpoint = Channel::from_shared(format!("http://{address}")).expect("valid endpoint");
        let channel = endpoint.connect().await.expect("connect to the test server");
        Server { node, channel, _stop: stop }
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone()).max_encoding_message_size(16 << 20).max_decoding_message_size(16 << 20)
    }
}

fn put(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.to_owned().into(), value: value.to_owned().into(), ..PutRequest::default() }
}

fn get(key: &str) -> RangeRequest {
    RangeRequest { key: key.into(), ..RangeRequest::default() }
}

fn range_op(key: &str) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestRange(get(key))) }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp { request: Some(request_op::Request::RequestPut(put(key, value))) }
}

fn value_equals(key: &str, value: &str) -> Compare {
    Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Value as i32,
        key: key.into(),
        target_union: Some(compare::TargetUnion::Value(value.into())),
        ..Compare::default()
    }
}

#[tokio::test]
async fn put_and_range_fill_etcd_headers() {
    let server = Server::start(GrpcOptions::default()).await;
    let mut kv = server.kv();
    let written = kv.put(put("k", "v")).await.expect("put").into_inner();
    let header = written.header.expect("put header");
    assert_eq!(
        (header.cluster_id, header.member_id, header.raft_term, header.revision),
        (CLUSTER_ID, MEMBER_ID, TERM, 2)
    );
    let read = kv.range(get("k")).await.expect("range").into_inner();
    assert_eq!(read.kvs.len(), 1);
    assert_eq!(read.kvs[0].value, &b"v"[..]);
    assert_eq!((read.kvs[0].create_revision, read.kvs[0].mod_revision, read.kvs[0].version), (2, 2, 1));
    let header = read.header.expect("range header");
    assert_eq!(
        (header.cluster_id, header.member_id, header.raft_term, header.revision),
        (CLUSTER_ID, MEMBER_ID, TERM, 2)
    );
    let deleted = kv
        .delete_range(DeleteRangeRequest { key: "k".into(), prev_kv: true, ..DeleteRangeRequest::default() })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!((deleted.deleted, deleted.prev_kvs.len()), (1, 1));
    assert_eq!(deleted.header.expect("delete header").revision, 3);
}

#[tokio::test]
async fn only_linearizable_reads_wait_for_the_barrier() {
    let server = Server::start(GrpcOptions::default()).await;
    let mut kv = server.kv();
    kv.put(put("k", "v")).await.expect("put");
    kv.range(RangeRequest { serializable: true, ..get("k") }).await.expect("serializable read");
    assert_eq!(server.node.barriers.load(Ordering::SeqCst), 0);
    kv.range(get("k")).await.expect("linearizable read");
    assert_eq!(server.node.barriers.load(Ordering::SeqCst), 1);

    server.node.leaderless.store(true, Ordering::SeqCst);
    let refused = kv.range(get("k")).await.expect_err("no leader, no linearizable read");
    assert_eq!((refused.code(), refused.message()), (Code::Unavailable, "etcdserver: no leader"));
    let refused = kv.put(put("k", "w")).await.expect_err("no leader, no write");
    assert_eq!((refused.code(), refused.message()), (Code::Unavailable, "etcdserver: no leader"));
    let read = kv.range(RangeRequest { serializable: true, ..get("k") }).await.expect("serializable read");
    assert_eq!(read.into_inner().kvs[0].value, &b"v"[..]);
}

#[tokio::test]
async fn revision_errors_are_etcds() {
    let server = Server::start(GrpcOptions::default()).await;
    let mut kv = server.kv();
    for value in ["1", "2", "3"] {
        kv.put(put("k", value)).await.expect("put");
    }
    kv.compact(CompactionRequest { revision: 3, physical: true }).await.expect("compact");
    let compacted = kv.range(RangeRequest { revision: 2, ..get("k") }).await.expect_err("compacted");
    assert_eq!(
        (compacted.code(), compacted.message()),
        (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
    );
    let future = kv.range(RangeRequest { revision: 99, ..get("k") }).await.expect_err("future");
    assert_eq!(
        (future.code(), future.message()),
        (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
    );
    let again = kv.compact(CompactionRequest { revision: 2, physical: false }).await.expect_err("compacted");
    assert_eq!(again.code(), Code::OutOfRange);
    let at_three = kv.range(RangeRequest { revision: 3, ..get("k") }).await.expect("at compaction revision");
    assert_eq!(at_three.into_inner().kvs[0].value, &b"2"[..]);
    let unknown_sort = kv.range(RangeRequest { sort_order: 7, ..get("k") }).await.expect_err("unknown sort order");
    assert_eq!(
        (unknown_sort.code(), unknown_sort.message()),
        (Code::InvalidArgument, "etcdserver: invalid sort option")
    );
    let empty = kv.range(get("")).await.expect_err("empty key");
    assert_eq!((empty.code(), empty.message()), (Code::InvalidArgument, "etcdserver: key is not provided"));
}

#[tokio::test]
async fn transactions_without_writes_are_served_locally() {
    let server = Server::start(GrpcOptions::default()).await;
    let mut kv = server.kv();
    kv.put(put("k", "v")).await.expect("put");
    let writes_before = server.node.writes.load(Ordering::SeqCst);
    let read_only = TxnRequest {
        compare: vec![value_equals("k", "v")],
        success: vec![range_op("k")],
        failure: vec![range_op("other")],
    };
    let answer = kv.txn(read_only).await.expect("read-only txn").into_inner();
    assert!(answer.succeeded);
    assert_eq!(server.node.writes.load(Ordering::SeqCst), writes_before, "not replicated");
    assert_eq!(server.node.barriers.load(Ordering::SeqCst), 1, "linearizable");
    assert_eq!(answer.header.expect("header").member_id, MEMBER_ID);

    let nested = TxnRequest {
        compare: vec![value_equals("k", "nope")],
        success: vec![],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(TxnRequest {
                compare: vec![],
                success: vec![put_op("n", "1"), range_op("k")],
                failure: vec![],
            })),
        }],
    };
    let answer = kv.txn(nested).await.expect("nested txn").into_inner();
    assert!(!answer.succeeded);
    assert_eq!(answer.header.expect("header").revision, 3);
    assert_eq!(server.node.writes.load(Ordering::SeqCst), writes_before + 1, "replicated");

    let too_many =
        TxnRequest { success: (0..129).map(|i| range_op(&format!("k{i}"))).collect(), ..TxnRequest::default() };
    let refused = kv.txn(too_many).await.expect_err("too many operations");
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::InvalidArgument, "etcdserver: too many operations in txn request")
    );
    let duplicate = TxnRequest { success: vec![put_op("d", "1"), put_op("d", "2")], ..TxnRequest::default() };
    let refused = kv.txn(duplicate).await.expect_err("duplicate key");
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::InvalidArgument, "etcdserver: duplicate key given in txn request")
    );
}

#[tokio::test]
async fn oversized_requests_get_etcds_error() {
    let limit = 64 * 1024;
    let server = Server::start(GrpcOptions::with_request_size_bytes_max(limit)).await;
    let mut kv = server.kv();
    let fits = "x".repeat(limit - 100);
    kv.put(put("k", &fits)).await.expect("under the limit");
    let over = "x".repeat(limit);
    let refused = kv.put(put("k", &over)).await.expect_err("over the limit");
    assert_eq!((refused.code(), refused.message()), (Code::InvalidArgument, "etcdserver: request is too large"));
    let far_over = "x".repeat(limit + super::GRPC_OVERHEAD_BYTES + 1);
    let refused = kv.put(put("k", &far_over)).await.expect_err("over the message limit");
    // Refused while decoding, with grpc-go's (etcd's) code and message.
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().starts_with("grpc: received message larger than max ("), "{refused:?}");
    assert_eq!(server.node.writes.load(Ordering::SeqCst), 1, "refused before proposing");
}

#[tokio::test]
async fn a_retried_request_id_is_applied_once() {
    let server = Server::start(GrpcOptions::default()).await;
    let mut kv = server.kv();
    let with_id = |id: &str, request: PutRequest| {
        let mut request = tonic::Request::new(request);
        request.metadata_mut().insert(REQUEST_ID_METADATA_KEY, id.parse().expect("ascii metadata"));
        request
    };
    let first = kv.put(with_id("7:1", put("k", "a"))).await.expect("first").into_inner();
    let retry = kv.put(with_id("7:1", put("k", "a"))).await.expect("retry").into_inner();
    assert_eq!(first.header.expect("header").revision, retry.header.expect("header").revision);
    let read = kv.range(get("k")).await.expect("read").into_inner();
    assert_eq!(read.kvs[0].version, 1, "applied once");
    kv.put(with_id("7:2", put("k", "b"))).await.expect("next");
    let stale = kv.put(with_id("7:1", put("k", "a"))).await.expect_err("stale retry");
    assert_eq!(stale.code(), Code::FailedPrecondition);
    for malformed in ["7", "x:1", "0:1", "7:0", "1:2:3", "-1:2"] {
        let refused = kv.put(with_id(malformed, put("k", "c"))).await.expect_err("malformed id");
        assert_eq!(refused.code(), Code::InvalidArgument, "{malformed}");
    }
}

#[tokio::test]
async fn maintenance_and_cluster_report_the_node() {
    let server = Server::start(GrpcOptions::default()).await;
    server.kv().put(put("k", "v")).await.expect("put");
    let mut maintenance = MaintenanceClient::new(server.channel.clone());
    let status = maintenance.status(StatusRequest {}).await.expect("status").into_inner();
    assert_eq!(status.version, SERVER_VERSION);
    assert!(status.version.starts_with("3.4."));
    assert_eq!(
        (status.leader, status.raft_term, status.raft_index, status.raft_applied_index),
        (MEMBER_ID, TERM, 1, 1)
    );
    assert_eq!(status.header.expect("header").revision, 2);
    assert!(status.errors.is_empty());
    let hash = maintenance.hash_kv(HashKvRequest { revision: 0 }).await.expect("hash").into_inner();
    assert_eq!(hash.hash_revision, 2);
    let future = maintenance.hash_kv(HashKvRequest { revision: 9 }).await.expect_err("future");
    assert_eq!(future.code(), Code::OutOfRange);
    let alarms = maintenance.alarm(AlarmRequest::default()).await.expect("alarms").into_inner();
    assert!(alarms.alarms.is_empty());

    let members = ClusterClient::new(server.channel.clone())
        .member_list(MemberListRequest { linearizable: false })
        .await
        .expect("member list")
        .into_inner();
    assert_eq!(members.members.len(), 1);
    assert_eq!((members.members[0].id, members.members[0].name.as_str()), (MEMBER_ID, "solo"));
    assert_eq!(members.header.expect("header").cluster_id, CLUSTER_ID);

    server.node.leaderless.store(true, Ordering::SeqCst);
    let status = maintenance.status(StatusRequest {}).await.expect("status").into_inner();
    assert_eq!(status.errors, vec!["etcdserver: no leader".to_string()]);
}

#[tokio::test]
async fn watch_replays_history_then_follows_new_writes() {
    use proto::etcdserverpb::{watch_request::RequestUnion, WatchCreateRequest, WatchRequest};
    let server = Server::start(GrpcOptions::default()).await;
    let mut kv = server.kv();
    let put = |key: &str, value: &str| PutRequest {
        key: key.to_owned().into(),
        value: value.to_owned().into(),
        ..PutRequest::default()
    };
    kv.put(put("w/a", "1")).await.expect("put");
    kv.put(put("other", "x")).await.expect("put");
    let (requests, receiver) = tokio::sync::mpsc::channel(4);
    let create = WatchCreateRequest {
        key: b"w/".to_vec(),
        range_end: b"w0".to_vec(),
        start_revision: 1,
        prev_kv: true,
        ..WatchCreateRequest::default()
    };
    requests.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.expect("send");
    let mut responses = WatchClient::new(server.channel.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .expect("watch")
        .into_inner();
    let created = next_response(&mut responses).await;
    assert!(created.created && !created.canceled);
    let replayed = next_response(&mut responses).await;
    let keys: Vec<&[u8]> = replayed.events.iter().map(|event| event.kv.as_ref().expect("kv").key.as_ref()).collect();
    assert_eq!(keys, vec![&b"w/a"[..]]);
    kv.put(put("w/b", "2")).await.expect("put");
    kv.put(put("w/a", "3")).await.expect("put");
    let first = next_response(&mut responses).await;
    let second = next_response(&mut responses).await;
    let revisions: Vec<i64> = [first, second]
        .iter()
        .flat_map(|response| response.events.iter().map(|event| event.kv.as_ref().expect("kv").mod_revision))
        .collect();
    assert_eq!(revisions, vec![4, 5]);
    drop(requests);
}

/// The next message of a watch stream, failing the test after 10 seconds.
async fn next_response(
    responses: &mut tonic::Streaming<proto::etcdserverpb::WatchResponse>,
) -> proto::etcdserverpb::WatchResponse {
    tokio::time::timeout(std::time::Duration::from_secs(10), responses.message())
        .await
        .expect("a response in time")
        .expect("no stream error")
        .expect("stream open")
}

#[tokio::test]
async fn leases_are_granted_listed_and_revoked() {
    use proto::etcdserverpb::{
        lease_client::LeaseClient, LeaseGrantRequest, LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest,
    };
    let server = Server::start(GrpcOptions::default()).await;
    let mut leases = LeaseClient::new(server.channel.clone());
    let chosen = leases.lease_grant(LeaseGrantRequest { ttl: 30, id: 42 }).await.expect("grant").into_inner();
    assert_eq!((chosen.id, chosen.ttl), (42, 30));
    let again = leases.lease_grant(LeaseGrantRequest { ttl: 30, id: 42 }).await.expect_err("id in use");
    assert_eq!((again.code(), again.message()), (Code::FailedPrecondition, "etcdserver: lease already exists"));
    let picked = leases.lease_grant(LeaseGrantRequest { ttl: 1, id: 0 }).await.expect("grant").into_inner();
    assert!(picked.id > 0 && picked.id != 42);
    assert_eq!(picked.ttl, 2, "raised to the minimum TTL");
    let put =
        PutRequest { key: b"leased".to_vec().into(), value: b"v".to_vec().into(), lease: 42, ..PutRequest::default() };
    server.kv().put(put).await.expect("put with lease");
    let time_to_live = leases
        .lease_time_to_live(LeaseTimeToLiveRequest { id: 42, keys: true })
        .await
        .expect("time to live")
        .into_inner();
    assert_eq!((time_to_live.granted_ttl, time_to_live.keys), (30, vec![b"leased".to_vec()]));
    let listed = leases.lease_leases(LeaseLeasesRequest {}).await.expect("leases").into_inner();
    let mut ids: Vec<i64> = listed.leases.iter().map(|lease| lease.id).collect();
    ids.sort_unstable();
    let mut expected = vec![42, picked.id];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    leases.lease_revoke(LeaseRevokeRequest { id: 42 }).await.expect("revoke");
    let range = RangeRequest { key: b"leased".to_vec(), ..RangeRequest::default() };
    assert!(server.kv().range(range).await.expect("range").into_inner().kvs.is_empty());
    let missing = leases.lease_revoke(LeaseRevokeRequest { id: 42 }).await.expect_err("revoked already");
    assert_eq!((missing.code(), missing.message()), (Code::NotFound, "etcdserver: requested lease not found"));
    let gone = leases
        .lease_time_to_live(LeaseTimeToLiveRequest { id: 42, keys: false })
        .await
        .expect("time to live")
        .into_inner();
    assert_eq!(gone.ttl, -1);
}
