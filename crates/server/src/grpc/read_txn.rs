//! Local evaluation of transactions without writes, as etcd serves them (after a ReadIndex
//! barrier unless every range is serializable) instead of replicating them.
//!
//! `kv` evaluates compares only while applying; this module evaluates them with
//! `kv::Store::range`, following the same rules (etcd's `applyCompare`): a compare holds
//! if every key in its range satisfies it; with no key in range a value compare fails and
//! other targets compare against zero.

use std::cmp::Ordering;

use proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    response_op, Compare, RangeRequest, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use proto::mvccpb::KeyValue;

/// True if every operation of both branches is a range (etcd's `isTxnReadonly`: a nested
/// transaction counts as a write).
pub(crate) fn is_read_only(txn: &TxnRequest) -> bool {
    txn.success.iter().chain(&txn.failure).all(|operation| matches!(operation.request, Some(Request::RequestRange(_))))
}

/// True if every operation is a serializable range (etcd's `isTxnSerializable`).
pub(crate) fn is_serializable(txn: &TxnRequest) -> bool {
    txn.success
        .iter()
        .chain(&txn.failure)
        .all(|operation| matches!(&operation.request, Some(Request::RequestRange(range)) if range.serializable))
}

/// Evaluates a read-only transaction (see [`is_read_only`]) on `store`, which must have
/// passed `store.validate`.
pub(crate) fn evaluate(store: &kv::Store, txn: &TxnRequest) -> Result<TxnResponse, kv::Error> {
    assert!(is_read_only(txn), "only transactions without writes are evaluated locally");
    let mut succeeded = true;
    for compare in &txn.compare {
        if !compare_holds(store, compare)? {
            succeeded = false;
            break;
        }
    }
    let branch: &[RequestOp] = if succeeded { &txn.success } else { &txn.failure };
    let mut responses = Vec::with_capacity(branch.len());
    for operation in branch {
        if let Some(Request::RequestRange(range)) = &operation.request {
            let read = store.range(range)?;
            responses.push(ResponseOp { response: Some(response_op::Response::ResponseRange(read)) });
        }
    }
    let header = ResponseHeader { revision: store.current_revision(), ..ResponseHeader::default() };
    Ok(TxnResponse { header: Some(header), succeeded, responses })
}

fn compare_holds(store: &kv::Store, compare: &Compare) -> Result<bool, kv::Error> {
    let request = RangeRequest { key: compare.key.clone(), range_end: compare.range_end.clone(), ..Default::default() };
    let read = store.range(&request)?;
    if read.kvs.is_empty() {
        return Ok(compare.target() != CompareTarget::Value && compare_key_value(compare, &KeyValue::default()));
    }
    Ok(read.kvs.iter().all(|kv| compare_key_value(compare, kv)))
}

fn compare_key_value(compare: &Compare, kv: &KeyValue) -> bool {
    let union = compare.target_union.as_ref();
    let ordering = match compare.target() {
        CompareTarget::Value => {
            let wanted: &[u8] = match union {
                Some(TargetUnion::Value(value)) => value,
                _ => &[],
            };
            kv.value.as_slice().cmp(wanted)
        }
        CompareTarget::Version => kv.version.cmp(&integer_target(union, CompareTarget::Version)),
        CompareTarget::Create => kv.create_revision.cmp(&integer_target(union, CompareTarget::Create)),
        CompareTarget::Mod => kv.mod_revision.cmp(&integer_target(union, CompareTarget::Mod)),
        CompareTarget::Lease => kv.lease.cmp(&integer_target(union, CompareTarget::Lease)),
    };
    match compare.result() {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::NotEqual => ordering != Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
    }
}

/// The integer operand for `target`; 0 when the union holds another field.
fn integer_target(union: Option<&TargetUnion>, target: CompareTarget) -> i64 {
    match (union, target) {
        (Some(TargetUnion::Version(value)), CompareTarget::Version)
        | (Some(TargetUnion::CreateRevision(value)), CompareTarget::Create)
        | (Some(TargetUnion::ModRevision(value)), CompareTarget::Mod)
        | (Some(TargetUnion::Lease(value)), CompareTarget::Lease) => *value,
        _ => 0,
    }
}
