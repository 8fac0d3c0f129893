//! Local evaluation of transactions without writes, as etcd serves them (after a ReadIndex
//! barrier unless every range is serializable) instead of replicating them.
//!
//! `kv` evaluates compares only while applying; this module evaluates them with
//! `kv::Store::range`, following the same rules (etcd's `applyCompare`): a compare holds
//! if every key in its range satisfies it; with no key in range a value compare fails and
//! other targets compare against zero.

use proto::etcdserverpb::{
    compare::CompareTarget, request_op::Request, response_op, Compare, RangeRequest, RequestOp, ResponseHeader,
    ResponseOp, TxnRequest, TxnResponse,
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
        return Ok(compare.target() != CompareTarget::Value && kv::compare_key_value(compare, &KeyValue::default()));
    }
    Ok(read.kvs.iter().all(|kv| kv::compare_key_value(compare, kv)))
}

#[cfg(test)]
mod tests {
    use proto::etcdserverpb::{compare, CompactionRequest, DeleteRangeRequest, PutRequest};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

    fn random_key(random: &mut StdRng) -> Vec<u8> {
        KEYS[random.gen_range(0..KEYS.len())].into()
    }

    fn random_range_end(random: &mut StdRng) -> Vec<u8> {
        match random.gen_range(0..4) {
            0 => vec![0],
            1 => random_key(random),
            _ => Vec::new(),
        }
    }

    fn random_store(random: &mut StdRng) -> kv::Store {
        let mut store = kv::Store::default();
        for index in 1..=random.gen_range(0..40_u64) {
            let operation = match random.gen_range(0..10) {
                0 => kv::Operation::DeleteRange(DeleteRangeRequest {
                    key: random_key(random),
                    range_end: random_range_end(random),
                    ..DeleteRangeRequest::default()
                }),
                1 => kv::Operation::Compaction(CompactionRequest {
                    revision: random.gen_range(1..=store.current_revision()),
                    physical: false,
                }),
                _ => kv::Operation::Put(PutRequest {
                    key: random_key(random).into(),
                    value: random_key(random).into(),
                    ..PutRequest::default()
                }),
            };
            store.apply(index, &kv::Command::new(operation));
        }
        store
    }

    fn random_compare(random: &mut StdRng) -> Compare {
        let target = random.gen_range(0..5);
        let number = random.gen_range(0..8_i64);
        let target_union = match target {
            0 => compare::TargetUnion::Version(number),
            1 => compare::TargetUnion::CreateRevision(number),
            2 => compare::TargetUnion::ModRevision(number),
            3 => compare::TargetUnion::Value(random_key(random)),
            _ => compare::TargetUnion::Lease(number),
        };
        Compare {
            result: random.gen_range(0..4),
            target,
            key: random_key(random),
            range_end: random_range_end(random),
            target_union: Some(target_union),
        }
    }

    fn random_range(random: &mut StdRng, latest: i64) -> RequestOp {
        let range = RangeRequest {
            key: random_key(random),
            range_end: random_range_end(random),
            limit: random.gen_range(0..3),
            revision: if random.gen_bool(0.3) { random.gen_range(0..=latest + 1) } else { 0 },
            keys_only: random.gen_bool(0.2),
            count_only: random.gen_bool(0.1),
            serializable: random.gen_bool(0.5),
            ..RangeRequest::default()
        };
        RequestOp { request: Some(Request::RequestRange(range)) }
    }

    /// Local evaluation answers exactly what applying the transaction would.
    #[test]
    fn local_evaluation_matches_the_state_machine() {
        let mut random = StdRng::seed_from_u64(7);
        for _ in 0..2_000 {
            let store = random_store(&mut random);
            let latest = store.current_revision();
            let txn = TxnRequest {
                compare: (0..random.gen_range(0..3)).map(|_| random_compare(&mut random)).collect(),
                success: (0..random.gen_range(0..3)).map(|_| random_range(&mut random, latest)).collect(),
                failure: (0..random.gen_range(0..3)).map(|_| random_range(&mut random, latest)).collect(),
            };
            assert!(is_read_only(&txn));
            let local = evaluate(&store, &txn);
            let command = kv::Command::new(kv::Operation::Txn(txn.clone()));
            let applied = store.clone().apply(store.applied_index() + 1, &command).result;
            let expected = applied.map(|response| match response {
                kv::Response::Txn(response) => response,
                other => panic!("a transaction answers a transaction: {other:?}"),
            });
            assert_eq!(local, expected, "{txn:?}");
        }
    }

    #[test]
    fn classifies_transactions_as_etcd() {
        let range = |serializable| RequestOp {
            request: Some(Request::RequestRange(RangeRequest {
                key: b"k".to_vec(),
                serializable,
                ..Default::default()
            })),
        };
        let nested = RequestOp { request: Some(Request::RequestTxn(TxnRequest::default())) };
        let empty = TxnRequest::default();
        assert!(is_read_only(&empty) && is_serializable(&empty));
        let mixed = TxnRequest { success: vec![range(true)], failure: vec![range(false)], ..TxnRequest::default() };
        assert!(is_read_only(&mixed) && !is_serializable(&mixed));
        let with_nested = TxnRequest { success: vec![range(true), nested], ..TxnRequest::default() };
        assert!(!is_read_only(&with_nested) && !is_serializable(&with_nested));
    }
}
