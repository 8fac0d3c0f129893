//! Wire-format checks for the generated etcd messages.

use proto::etcdserverpb::{compare, request_op, Compare, PutRequest, RequestOp, TxnRequest};
use proto::prost::Message;

#[test]
fn put_request_round_trips() {
    let request = PutRequest {
        key: b"foo".to_vec().into(),
        value: b"bar".to_vec().into(),
        lease: 7,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: false,
    };
    let bytes = request.encode_to_vec();
    // field 1 (key, length-delimited) comes first: tag 0x0a, length 3, "foo".
    assert_eq!(&bytes[..5], &[0x0a, 3, b'f', b'o', b'o']);
    let decoded = PutRequest::decode(bytes.as_slice()).expect("decodes");
    assert_eq!(decoded, request);
}

#[test]
fn compare_range_end_uses_field_64() {
    let compare = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Mod as i32,
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        target_union: Some(compare::TargetUnion::ModRevision(5)),
    };
    let bytes = compare.encode_to_vec();
    // field 64, wire type 2 => varint tag 514 = [0x82, 0x04].
    let tail = &bytes[bytes.len() - 4..];
    assert_eq!(tail, &[0x82, 0x04, 1, b'l']);
    let transaction = TxnRequest {
        compare: vec![compare],
        success: vec![RequestOp { request: Some(request_op::Request::RequestPut(PutRequest::default())) }],
        failure: vec![],
    };
    let decoded = TxnRequest::decode(transaction.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, transaction);
}

#[test]
fn grpc_paths_match_etcd() {
    assert_eq!(proto::paths::KV_RANGE, "/etcdserverpb.KV/Range");
    assert_eq!(
        <proto::etcdserverpb::kv_server::KvServer<Unimplemented> as proto::tonic::server::NamedService>::NAME,
        "etcdserverpb.KV"
    );
}

/// A KV service that answers nothing; only its type is used.
struct Unimplemented;

#[proto::tonic::async_trait]
impl proto::etcdserverpb::kv_server::Kv for Unimplemented {}
