//! Store tests: etcd's revision rules, ranges, transactions, compaction, leases,
//! history, deduplication and snapshots.

use proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    range_request::{SortOrder, SortTarget},
    request_op::Request,
    response_op, CompactionRequest, Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use proto::mvccpb::{event::EventType, KeyValue};

use crate::{Applied, Command, Config, Error, Operation, Response, Store};

/// A store plus the next log index to apply at.
struct Harness {
    store: Store,
    index: u64,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_config(Config::default())
    }

    fn with_config(config: Config) -> Harness {
        Harness { store: Store::new(config), index: 0 }
    }

    fn apply(&mut self, operation: Operation) -> Applied {
        self.apply_command(Command::new(operation))
    }

    fn apply_command(&mut self, command: Command) -> Applied {
        self.index += 1;
        let decoded = Command::decode(&command.encode()).expect("round trips");
        self.store.apply(self.index, &decoded)
    }

    fn put(&mut self, key: &str, value: &str) -> Applied {
        self.apply(Operation::Put(put_request(key, value)))
    }

    fn delete(&mut self, key: &str, range_end: &str) -> Applied {
        self.apply(Operation::DeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: true,
        }))
    }

    fn txn(&mut self, request: TxnRequest) -> Result<TxnResponse, Error> {
        match self.apply(Operation::Txn(request)).result? {
            Response::Txn(response) => Ok(response),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        let response = self.store.range(&range_request(key, "")).expect("reads");
        response.kvs.into_iter().next()
    }

    fn keys(&self, request: &RangeRequest) -> Vec<String> {
        let response = self.store.range(request).expect("reads");
        response.kvs.iter().map(|kv| text(&kv.key)).collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 test data")
}

fn put_request(key: &str, value: &str) -> PutRequest {
    PutRequest { key: key.to_owned().into(), value: value.to_owned().into(), ..PutRequest::default() }
}

fn range_request(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest { key: key.into(), range_end: range_end.into(), ..RangeRequest::default() }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestPut(put_request(key, value))) }
}

fn delete_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: range_end.into(),
            prev_kv: false,
        })),
    }
}

fn range_op(key: &str) -> RequestOp {
    RequestOp { request: Some(Request::RequestRange(range_request(key, ""))) }
}

fn txn_op(request: TxnRequest) -> RequestOp {
    RequestOp { request: Some(Request::RequestTxn(request)) }
}

fn compare(key: &str, target: CompareTarget, result: CompareResult, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

#[test]
fn revisions_follow_etcd() {
    let mut harness = Harness::new();
    assert_eq!(harness.store.current_revision(), 1, "a new store is at revision 1");
    assert_eq!(harness.put("a", "1").revision, 2);
    assert_eq!(harness.put("a", "2").revision, 3);
    let kv = harness.get("a").expect("present");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(harness.delete("missing", "").revision, 3, "no-op delete");
    let deleted = harness.delete("a", "");
    assert_eq!(deleted.revision, 4);
    assert_eq!(deleted.events[0].r#type, EventType::Delete as i32);
    assert_eq!(deleted.events[0].kv.as_ref().map(|kv| kv.mod_revision), Some(4));
    assert_eq!(harness.put("a", "3").revision, 5);
    let kv = harness.get("a").expect("present");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    let read_only = TxnRequest { success: vec![range_op("a")], ..TxnRequest::default() };
    harness.txn(read_only).expect("read-only txn");
    assert_eq!(harness.store.current_revision(), 5, "read-only txn keeps the revision");
}

#[test]
fn txn_writes_share_one_revision() {
    let mut harness = Harness::new();
    let request =
        TxnRequest { success: vec![put_op("a", "1"), put_op("b", "2"), range_op("a")], ..TxnRequest::default() };
    let response = harness.txn(request).expect("applies");
    assert!(response.succeeded);
    assert_eq!(response.header.map(|header| header.revision), Some(2));
    let Some(response_op::Response::ResponseRange(read)) = &response.responses[2].response else {
        panic!("third answer is a range");
    };
    assert_eq!(read.kvs[0].value, &b"1"[..], "a txn reads its own writes");
    assert_eq!(harness.get("b").map(|kv| kv.mod_revision), Some(2));
    let history = harness.store.history(2, 10).expect("kept");
    assert_eq!(history.events.len(), 2);
    assert_eq!(history.next_revision, 3);
}

#[test]
fn ranges_prefix_all_limit_count() {
    let mut harness = Harness::new();
    for key in ["a", "b/1", "b/2", "b/3", "c"] {
        harness.put(key, key);
    }
    assert_eq!(harness.keys(&range_request("b/", "b0")), ["b/1", "b/2", "b/3"]);
    assert_eq!(harness.keys(&range_request("b", "\0")), ["b/1", "b/2", "b/3", "c"]);
    assert_eq!(harness.keys(&range_request("\0", "\0")).len(), 5);
    assert!(harness.keys(&range_request("c", "a")).is_empty());
    let mut limited = range_request("a", "\0");
    limited.limit = 2;
    let response = harness.store.range(&limited).expect("reads");
    assert_eq!((response.kvs.len(), response.more, response.count), (2, true, 5));
    limited.limit = 5;
    let response = harness.store.range(&limited).expect("reads");
    assert_eq!((response.kvs.len(), response.more), (5, false));
    limited.count_only = true;
    let response = harness.store.range(&limited).expect("reads");
    assert_eq!((response.kvs.len(), response.count), (0, 5));
    let mut keys_only = range_request("a", "");
    keys_only.keys_only = true;
    let response = harness.store.range(&keys_only).expect("reads");
    assert!(response.kvs[0].value.is_empty());
    assert_eq!(response.header.map(|header| header.revision), Some(6));
}

#[test]
fn ranges_sort_and_filter() {
    let mut harness = Harness::new();
    harness.put("a", "3");
    harness.put("b", "1");
    harness.put("c", "2");
    harness.put("a", "4");
    let mut request = range_request("a", "\0");
    request.sort_order = SortOrder::Descend as i32;
    assert_eq!(harness.keys(&request), ["c", "b", "a"]);
    request.sort_target = SortTarget::Value as i32;
    request.sort_order = SortOrder::None as i32;
    assert_eq!(harness.keys(&request), ["b", "c", "a"], "non-key target sorts ascending");
    request.sort_target = SortTarget::Mod as i32;
    request.sort_order = SortOrder::Descend as i32;
    request.limit = 1;
    assert_eq!(harness.keys(&request), ["a"]);
    let mut filtered = range_request("a", "\0");
    filtered.min_mod_revision = 3;
    filtered.max_create_revision = 3;
    assert_eq!(harness.keys(&filtered), ["a", "b"]);
    filtered.max_mod_revision = 4;
    assert_eq!(harness.keys(&filtered), ["b"]);
    let response = harness.store.range(&filtered).expect("reads");
    assert_eq!(response.count, 3, "count ignores filters");
}

#[test]
fn historical_reads_and_compaction() {
    let mut harness = Harness::new();
    harness.put("k", "v2");
    harness.put("k", "v3");
    harness.delete("k", "");
    harness.put("other", "x");
    let mut at = range_request("k", "");
    at.revision = 2;
    assert_eq!(harness.store.range(&at).expect("kept").kvs[0].value, &b"v2"[..]);
    at.revision = 4;
    assert!(harness.store.range(&at).expect("kept").kvs.is_empty());
    at.revision = 6;
    assert_eq!(harness.store.range(&at), Err(Error::FutureRevision));
    let compact = |revision| Operation::Compaction(CompactionRequest { revision, physical: false });
    assert_eq!(harness.apply(compact(9)).result, Err(Error::FutureRevision));
    assert!(harness.apply(compact(3)).result.is_ok());
    assert_eq!(harness.store.current_revision(), 5, "compaction keeps the revision");
    assert_eq!(harness.apply(compact(3)).result, Err(Error::Compacted));
    at.revision = 2;
    assert_eq!(harness.store.range(&at), Err(Error::Compacted));
    at.revision = 3;
    assert_eq!(harness.store.range(&at).expect("kept").kvs[0].value, &b"v3"[..]);
    assert_eq!(harness.store.history(2, 10), Err(Error::Compacted));
    assert!(harness.apply(compact(5)).result.is_ok());
    assert_eq!(harness.store.record_count(), 1, "only the newest live version is left");
    assert!(harness.get("k").is_none());
}

#[test]
fn put_options() {
    let mut harness = Harness::new();
    let mut request = put_request("k", "");
    request.ignore_value = true;
    let missing = harness.apply(Operation::Put(request.clone())).result;
    assert_eq!(missing, Err(Error::KeyNotFound));
    assert_eq!(harness.store.current_revision(), 1);
    harness.put("k", "v");
    request.prev_kv = true;
    let Ok(Response::Put(response)) = harness.apply(Operation::Put(request.clone())).result else {
        panic!("put applies");
    };
    assert_eq!(response.prev_kv.map(|kv| kv.value.to_vec()), Some(b"v".to_vec()));
    assert_eq!(harness.get("k").map(|kv| kv.value.to_vec()), Some(b"v".to_vec()));
    request.value = b"x".to_vec().into();
    let provided = harness.apply(Operation::Put(request)).result;
    assert_eq!(provided, Err(Error::ValueProvided));
    let empty = harness.apply(Operation::Put(put_request("", "v"))).result;
    assert_eq!(empty, Err(Error::EmptyKey));
    let mut leased = put_request("k", "v");
    leased.lease = 77;
    assert_eq!(harness.apply(Operation::Put(leased)).result, Err(Error::LeaseNotFound));
}

#[test]
fn txn_compares() {
    let mut harness = Harness::new();
    harness.put("k", "v");
    let cases = [
        (CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(b"v".to_vec()), true),
        (CompareTarget::Value, CompareResult::Greater, TargetUnion::Value(b"a".to_vec()), true),
        (CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(1), true),
        (CompareTarget::Create, CompareResult::Less, TargetUnion::CreateRevision(2), false),
        (CompareTarget::Mod, CompareResult::NotEqual, TargetUnion::ModRevision(3), true),
        (CompareTarget::Lease, CompareResult::Equal, TargetUnion::Lease(0), true),
    ];
    for (target, result, union, expected) in cases {
        let request = TxnRequest { compare: vec![compare("k", target, result, union)], ..TxnRequest::default() };
        let response = harness.txn(request).expect("applies");
        assert_eq!(response.succeeded, expected, "{target:?} {result:?}");
    }
    let missing = |target, union| TxnRequest {
        compare: vec![compare("missing", target, CompareResult::Equal, union)],
        ..TxnRequest::default()
    };
    let absent_value = harness.txn(missing(CompareTarget::Value, TargetUnion::Value(Vec::new())));
    assert!(!absent_value.expect("applies").succeeded, "value compare on a missing key fails");
    let absent_version = harness.txn(missing(CompareTarget::Version, TargetUnion::Version(0)));
    assert!(absent_version.expect("applies").succeeded, "missing key has version 0");
    let mut over_range = compare("a", CompareTarget::Version, CompareResult::Greater, TargetUnion::Version(0));
    over_range.range_end = b"z".to_vec();
    harness.put("l", "w");
    let response = harness.txn(TxnRequest { compare: vec![over_range], ..TxnRequest::default() });
    assert!(response.expect("applies").succeeded);
}

#[test]
fn txn_branches_and_nesting() {
    let mut harness = Harness::new();
    harness.put("k", "v");
    let nested = TxnRequest {
        compare: vec![compare("k", CompareTarget::Value, CompareResult::Equal, TargetUnion::Value(b"v".to_vec()))],
        success: vec![put_op("inner", "yes")],
        failure: vec![put_op("inner", "no")],
    };
    let outer = TxnRequest {
        compare: vec![compare("k", CompareTarget::Version, CompareResult::Equal, TargetUnion::Version(5))],
        success: vec![put_op("outer", "success")],
        failure: vec![put_op("k", "changed"), txn_op(nested)],
    };
    let response = harness.txn(outer).expect("applies");
    assert!(!response.succeeded);
    assert_eq!(response.responses.len(), 2);
    // Nested compares see the state before the transaction, as in etcd.
    assert_eq!(harness.get("inner").map(|kv| kv.value.to_vec()), Some(b"yes".to_vec()));
    assert_eq!(harness.get("k").map(|kv| kv.mod_revision), Some(3));
    assert!(harness.get("outer").is_none());
}

#[test]
fn txn_rejections_are_atomic() {
    let mut harness = Harness::with_config(Config { max_txn_operations: 2, ..Config::default() });
    let too_many =
        TxnRequest { success: vec![put_op("a", "1"), put_op("b", "1"), put_op("c", "1")], ..TxnRequest::default() };
    assert_eq!(harness.txn(too_many), Err(Error::TooManyOperations));
    let duplicate = TxnRequest { success: vec![put_op("a", "1"), put_op("a", "2")], ..TxnRequest::default() };
    assert_eq!(harness.txn(duplicate), Err(Error::DuplicateKey));
    let put_and_delete = TxnRequest { success: vec![delete_op("a", "c"), put_op("b", "1")], ..TxnRequest::default() };
    assert_eq!(harness.txn(put_and_delete), Err(Error::DuplicateKey));
    let exclusive_branches = TxnRequest {
        success: vec![txn_op(TxnRequest {
            success: vec![put_op("a", "1")],
            failure: vec![put_op("a", "2")],
            ..TxnRequest::default()
        })],
        ..TxnRequest::default()
    };
    assert!(harness.txn(exclusive_branches).is_ok(), "then/else may write the same key");
    let mut ignore_value = put_request("missing", "");
    ignore_value.ignore_value = true;
    let fails_late = TxnRequest {
        success: vec![put_op("first", "1"), RequestOp { request: Some(Request::RequestPut(ignore_value)) }],
        ..TxnRequest::default()
    };
    let revision = harness.store.current_revision();
    assert_eq!(harness.txn(fails_late), Err(Error::KeyNotFound));
    assert!(harness.get("first").is_none(), "nothing of a failed txn applies");
    assert_eq!(harness.store.current_revision(), revision);
}

#[test]
fn leases_attach_and_revoke() {
    let mut harness = Harness::new();
    let grant = |id, ttl| Operation::LeaseGrant(LeaseGrantRequest { ttl, id });
    let Ok(Response::LeaseGrant(granted)) = harness.apply(grant(10, 1)).result else {
        panic!("grants");
    };
    assert_eq!((granted.id, granted.ttl), (10, 2), "TTL raised to the minimum");
    assert_eq!(harness.apply(grant(10, 5)).result, Err(Error::LeaseExists));
    let too_long = grant(11, crate::MAXIMUM_LEASE_TTL_SECONDS + 1);
    assert_eq!(harness.apply(too_long).result, Err(Error::LeaseTimeToLiveTooLarge));
    assert_eq!(harness.store.current_revision(), 1, "grants do not change revisions");
    for key in ["a", "b", "c"] {
        let mut request = put_request(key, "v");
        request.lease = 10;
        harness.apply(Operation::Put(request));
    }
    harness.put("c", "detached");
    let mut keep_lease = put_request("a", "new");
    keep_lease.ignore_lease = true;
    harness.apply(Operation::Put(keep_lease));
    let lease = harness.store.lease(10).expect("exists");
    assert_eq!(lease.keys.len(), 2);
    let revoke = |id| Operation::LeaseRevoke(LeaseRevokeRequest { id });
    let revoked = harness.apply(revoke(10));
    assert_eq!(revoked.revision, 7, "all attached keys go in one revision");
    assert_eq!(revoked.events.len(), 2);
    assert!(harness.get("a").is_none() && harness.get("b").is_none());
    assert!(harness.get("c").is_some());
    assert_eq!(harness.apply(revoke(10)).result, Err(Error::LeaseNotFound));
    let Ok(Response::LeaseGrant(chosen)) = harness.apply(grant(0, 60)).result else {
        panic!("grants");
    };
    assert!(chosen.id > 0, "the store picks an id deterministically");
    assert_eq!(harness.store.leases().count(), 1);
}

#[test]
fn retried_commands_apply_once() {
    let mut harness = Harness::with_config(Config { maximum_sessions: 2, ..Config::default() });
    let command = Command::with_request_id(Operation::Put(put_request("k", "v")), 1, 1);
    let first = harness.apply_command(command.clone());
    let retry = harness.apply_command(command);
    assert!(!first.duplicate && retry.duplicate);
    assert_eq!(first.result, retry.result);
    assert!(retry.events.is_empty());
    assert_eq!(harness.get("k").map(|kv| kv.version), Some(1), "applied once");
    let next = Command::with_request_id(Operation::Put(put_request("k", "w")), 1, 2);
    assert_eq!(harness.apply_command(next).revision, 3);
    let stale = Command::with_request_id(Operation::Put(put_request("k", "x")), 1, 1);
    assert_eq!(harness.apply_command(stale).result, Err(Error::StaleRequest));
    let failing = Command::with_request_id(Operation::Put(put_request("", "x")), 2, 1);
    assert_eq!(harness.apply_command(failing.clone()).result, Err(Error::EmptyKey));
    assert_eq!(harness.apply_command(failing).result, Err(Error::EmptyKey), "errors recorded too");
    harness.apply_command(Command::with_request_id(Operation::Put(put_request("z", "1")), 3, 1));
    assert_eq!(harness.store.session_count(), 2, "bounded");
}

#[test]
fn history_carries_previous_values() {
    let mut harness = Harness::new();
    harness.put("k", "1");
    harness.put("k", "2");
    harness.delete("k", "");
    let history = harness.store.history(3, 1).expect("kept");
    assert_eq!(history.events.len(), 1);
    assert_eq!(history.next_revision, 4);
    let previous = history.events[0].prev_kv.as_ref().map(|kv| kv.value.to_vec());
    assert_eq!(previous, Some(b"1".to_vec()));
    let rest = harness.store.history(history.next_revision, 10).expect("kept");
    assert_eq!(rest.events[0].r#type, EventType::Delete as i32);
    assert_eq!(harness.store.history(0, 10).expect("empty").events.len(), 0);
}

#[test]
fn snapshot_round_trips() {
    let mut harness = Harness::new();
    harness.apply(Operation::LeaseGrant(LeaseGrantRequest { ttl: 30, id: 5 }));
    let mut leased = put_request("leased", "v");
    leased.lease = 5;
    harness.apply(Operation::Put(leased));
    harness.apply_command(Command::with_request_id(Operation::Put(put_request("a", "1")), 9, 4));
    harness.put("a", "2");
    harness.delete("a", "");
    harness.apply(Operation::Compaction(CompactionRequest { revision: 3, physical: true }));
    let bytes = harness.store.snapshot();
    // Written in parts, the bytes are still prost's canonical encoding of the message.
    let decoded = <proto::raftkvpb::StoreSnapshot as proto::prost::Message>::decode(bytes.as_slice()).expect("decodes");
    assert!(decoded.records.len() >= 3 && !decoded.leases.is_empty() && !decoded.sessions.is_empty());
    assert_eq!(proto::prost::Message::encode_to_vec(&decoded), bytes);
    let restored = Store::restore(Config::default(), &bytes).expect("restores");
    assert_eq!(restored.hash(), harness.store.hash());
    assert_eq!(restored.snapshot(), bytes);
    assert_eq!(restored.applied_index(), harness.store.applied_index());
    assert_eq!(restored.lease(5).map(|lease| lease.keys.len()), Some(1));
    let mut twin = Harness { store: restored, index: harness.index };
    let retry = Command::with_request_id(Operation::Put(put_request("a", "1")), 9, 4);
    assert!(twin.apply_command(retry.clone()).duplicate);
    assert!(harness.apply_command(retry).duplicate);
    harness.put("b", "x");
    twin.put("b", "x");
    assert_eq!(twin.store.hash(), harness.store.hash(), "replicas stay identical");
    assert_eq!(twin.store.hash_kv(0), harness.store.hash_kv(0));
    assert!(Store::restore(Config::default(), &[0xff, 0x01]).is_err());
}

#[test]
fn same_commands_same_state() {
    let mut left = Harness::new();
    let mut right = Harness::new();
    for step in 0..200_u32 {
        let key = format!("key{}", step % 17);
        let operation = match step % 5 {
            0..=2 => Operation::Put(put_request(&key, &step.to_string())),
            3 => Operation::DeleteRange(DeleteRangeRequest {
                key: key.into(),
                range_end: b"key5".to_vec(),
                prev_kv: false,
            }),
            _ => Operation::Range(range_request("key", "\0")),
        };
        let a = left.apply(operation.clone());
        let b = right.apply(operation);
        assert_eq!(a, b);
    }
    assert_eq!(left.store.hash(), right.store.hash());
    let response: RangeResponse = left.store.range(&range_request("key", "\0")).expect("reads");
    assert!(response.count > 0);
}

#[test]
fn retention_bounds_history() {
    let mut harness = Harness::with_config(Config { history_retention_revisions: Some(10), ..Config::default() });
    for step in 0..100 {
        harness.put("k", &step.to_string());
        let kept = harness.store.current_revision() - harness.store.compact_revision();
        assert!(kept <= 20, "at most twice the retention is kept");
    }
    assert!(harness.store.record_count() <= 21);
    assert_eq!(harness.get("k").map(|kv| kv.version), Some(100));
}

#[test]
fn applied_events_match_history() {
    let mut harness = Harness::new();
    let mut live = Vec::new();
    live.extend(harness.put("a", "1").events);
    let request = TxnRequest { success: vec![put_op("b", "2"), delete_op("a", "")], ..TxnRequest::default() };
    let applied = harness.apply(Operation::Txn(request));
    assert!(matches!(applied.result, Ok(Response::Txn(_))));
    assert_eq!(applied.events.len(), 2, "one event per change");
    live.extend(applied.events);
    let replayed = harness.store.history(2, 100).expect("kept").events;
    assert_eq!(live, replayed);
    let read = harness.apply(Operation::Range(range_request("b", "")));
    assert!(read.events.is_empty());
    let Ok(Response::Range(response)) = read.result else {
        panic!("range through the log");
    };
    assert_eq!(response.header.map(|header| header.revision), Some(3));
    assert_eq!(response.kvs.len(), 1);
}

#[test]
fn lease_checkpoints_record_remaining_ttls_and_survive_snapshots() {
    use proto::etcdserverpb::{LeaseCheckpoint, LeaseCheckpointRequest};
    let checkpoint = |entries: &[(i64, i64)]| {
        let checkpoints = entries.iter().map(|&(id, remaining_ttl)| LeaseCheckpoint { id, remaining_ttl }).collect();
        Operation::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints })
    };
    let mut harness = Harness::new();
    harness.apply(Operation::LeaseGrant(LeaseGrantRequest { ttl: 30, id: 7 }));
    harness.apply(Operation::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 8 }));
    let lease = harness.store.lease(7).expect("granted");
    assert_eq!((lease.remaining_ttl_seconds, lease.starting_ttl_seconds()), (0, 30), "none checkpointed yet");
    // Lease 9 does not exist (revoked meanwhile): skipped, as etcd does.
    let applied = harness.apply(checkpoint(&[(7, 12), (9, 5)]));
    assert!(matches!(applied.result, Ok(Response::LeaseCheckpoint(_))), "{:?}", applied.result);
    assert!(applied.events.is_empty() && harness.store.current_revision() == 1, "no revision is used");
    assert_eq!(harness.store.lease(7).map(|lease| lease.starting_ttl_seconds()), Some(12));
    assert_eq!(harness.store.lease(8).map(|lease| lease.starting_ttl_seconds()), Some(60));
    assert!(harness.store.lease(9).is_none(), "a checkpoint creates no lease");
    let restored = Store::restore(Config::default(), &harness.store.snapshot()).expect("restores");
    assert_eq!(restored.lease(7).map(|lease| lease.remaining_ttl_seconds), Some(12), "kept by snapshots");
    assert_eq!(restored.lease(8).map(|lease| lease.remaining_ttl_seconds), Some(0));
    // A keep-alive's checkpoint clears it; a negative value cannot be recorded.
    harness.apply(checkpoint(&[(7, 0), (8, -4)]));
    assert_eq!(harness.store.lease(7).map(|lease| lease.starting_ttl_seconds()), Some(30));
    assert_eq!(harness.store.lease(8).map(|lease| lease.remaining_ttl_seconds), Some(0));
}

fn put_operation(key: &str, value: &str) -> Operation {
    Operation::Put(PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        ..Default::default()
    })
}

#[test]
fn a_clone_is_a_read_view_later_applies_do_not_change() {
    let mut store = Store::default();
    for index in 1..=100_u64 {
        store.apply(index, &Command::new(put_operation(&format!("key-{}", index % 10), &format!("value-{index}"))));
    }
    let view = store.clone();
    let all = RangeRequest { key: b"\0".to_vec(), range_end: b"\0".to_vec(), ..Default::default() };
    let (range, hash, hash_kv, revision) =
        (view.range(&all).unwrap(), view.hash(), view.hash_kv(0), view.current_revision());
    for index in 101..=200_u64 {
        store.apply(index, &Command::new(put_operation(&format!("key-{}", index % 20), "later")));
    }
    let delete = DeleteRangeRequest { key: b"\0".to_vec(), range_end: b"\0".to_vec(), ..Default::default() };
    store.apply(201, &Command::new(Operation::DeleteRange(delete)));
    store.apply(202, &Command::new(Operation::Compaction(CompactionRequest { revision: 150, physical: false })));
    assert_ne!(store.hash(), hash, "the store moved on");
    assert_eq!(view.range(&all).unwrap(), range, "the view's range is unchanged");
    assert_eq!((view.hash(), view.hash_kv(0), view.current_revision()), (hash, hash_kv, revision));
    assert_eq!(view.range(&all).unwrap().kvs.len(), 10);
}
