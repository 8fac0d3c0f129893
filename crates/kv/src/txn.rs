//! Transaction checks as etcd makes them before applying: operation counts, empty
//! keys, keys written twice; and evaluation of compares.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
    Compare, RequestOp, TxnRequest,
};
use proto::mvccpb::KeyValue;

use crate::error::Error;
use crate::key_range::KeyRange;
use crate::mvcc::Mvcc;

/// Checks counts and keys of a transaction and its nested transactions; `budget`
/// is the number of operations allowed at this level.
pub(crate) fn check_txn_request(request: &TxnRequest, budget: usize) -> Result<(), Error> {
    let widest = request.compare.len().max(request.success.len()).max(request.failure.len());
    if widest > budget {
        return Err(Error::TooManyOperations);
    }
    if request.compare.iter().any(|compare| compare.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for operation in request.success.iter().chain(&request.failure) {
        check_request_op(operation, budget - widest)?;
    }
    Ok(())
}

fn check_request_op(operation: &RequestOp, budget: usize) -> Result<(), Error> {
    match operation.request.as_ref() {
        Some(Request::RequestRange(range)) if range.key.is_empty() => Err(Error::EmptyKey),
        Some(Request::RequestPut(put)) => check_put(put),
        Some(Request::RequestDeleteRange(delete)) if delete.key.is_empty() => Err(Error::EmptyKey),
        Some(Request::RequestTxn(nested)) => check_txn_request(nested, budget),
        _ => Ok(()),
    }
}

/// etcd's API-level checks of a put.
pub(crate) fn check_put(put: &proto::etcdserverpb::PutRequest) -> Result<(), Error> {
    if put.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if put.ignore_value && !put.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if put.ignore_lease && put.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// Keys put and ranges deleted by one branch (and the branches nested in it).
#[derive(Default)]
struct Writes {
    puts: BTreeSet<Vec<u8>>,
    deletes: Vec<KeyRange>,
}

impl Writes {
    fn deletes_key(&self, key: &[u8]) -> bool {
        let point = KeyRange::single(key);
        self.deletes.iter().any(|range| range.intersects(&point))
    }
}

/// etcd's duplicate-key rule: within what one execution can run, a key is put at
/// most once and never put and deleted; the two branches of a nested transaction
/// exclude each other, so they may write the same key.
pub(crate) fn check_duplicate_keys(request: &TxnRequest) -> Result<(), Error> {
    check_branch(&request.success)?;
    check_branch(&request.failure)?;
    Ok(())
}

fn check_branch(operations: &[RequestOp]) -> Result<Writes, Error> {
    let mut writes = Writes::default();
    for operation in operations {
        if let Some(Request::RequestDeleteRange(delete)) = &operation.request {
            writes.deletes.push(KeyRange::new(&delete.key, &delete.range_end));
        }
    }
    for operation in operations {
        let Some(Request::RequestTxn(nested)) = &operation.request else {
            continue;
        };
        let then_writes = check_branch(&nested.success)?;
        let else_writes = check_branch(&nested.failure)?;
        for key in &then_writes.puts {
            claim_key(&mut writes, key)?;
        }
        for key in &else_writes.puts {
            if !then_writes.puts.contains(key) {
                claim_key(&mut writes, key)?;
            } else if writes.deletes_key(key) {
                return Err(Error::DuplicateKey);
            }
        }
        writes.deletes.extend(then_writes.deletes);
        writes.deletes.extend(else_writes.deletes);
    }
    for operation in operations {
        if let Some(Request::RequestPut(put)) = &operation.request {
            claim_key(&mut writes, &put.key)?;
        }
    }
    Ok(writes)
}

fn claim_key(writes: &mut Writes, key: &[u8]) -> Result<(), Error> {
    if writes.puts.contains(key) || writes.deletes_key(key) {
        return Err(Error::DuplicateKey);
    }
    writes.puts.insert(key.to_vec());
    Ok(())
}

/// True if every key of the compare's range satisfies it at `revision`. A value
/// compare on a missing key fails; other targets compare a missing key as zero.
pub(crate) fn compare_holds(mvcc: &Mvcc, compare: &Compare, revision: i64) -> bool {
    let range = KeyRange::new(&compare.key, &compare.range_end);
    let mut matched = false;
    for kv in mvcc.range_at(&range, revision) {
        matched = true;
        if !compare_key_value(compare, kv) {
            return false;
        }
    }
    if matched {
        return true;
    }
    compare.target() != CompareTarget::Value && compare_key_value(compare, &KeyValue::default())
}

/// True if `kv` satisfies `compare` (etcd's rules: value compares bytes; version, create,
/// mod revision and lease compare integers). Shared with the server's read-only txns.
pub fn compare_key_value(compare: &Compare, kv: &KeyValue) -> bool {
    let union = compare.target_union.as_ref();
    let ordering = match compare.target() {
        CompareTarget::Value => {
            let wanted = match union {
                Some(TargetUnion::Value(value)) => value.as_slice(),
                _ => &[],
            };
            kv.value.as_ref().cmp(wanted)
        }
        CompareTarget::Version => kv.version.cmp(&integer_target(union, CompareTarget::Version)),
        CompareTarget::Create => {
            let wanted = integer_target(union, CompareTarget::Create);
            kv.create_revision.cmp(&wanted)
        }
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
