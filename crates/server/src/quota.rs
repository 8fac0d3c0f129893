//! The space quota (etcd's `--quota-backend-bytes`), checked before a write is proposed,
//! as etcd's `quotaKVServer` and `quotaLeaseServer` do.
//!
//! The store's size is [`kv::Store::size_bytes`] (every kept revision as a snapshot
//! encodes it, plus a fixed amount per lease). A put, a transaction with a put or a lease
//! grant whose cost (etcd's: key and value plus 256 bytes per put, the larger branch of a
//! transaction, 64 bytes per lease) would bring the store to the quota or past it is
//! refused with etcd's `etcdserver: mvcc: database space exceeded` (`ResourceExhausted`),
//! and this member proposes the NOSPACE alarm for itself through the log. While the alarm
//! is raised the state machine refuses every write that grows the store (see `kv`'s
//! `alarm.rs`), on every member, until `etcdctl alarm disarm` clears it.

use kv::{Command, Operation};
use proto::etcdserverpb::{alarm_request::AlarmAction, request_op::Request, AlarmRequest, AlarmType, PutRequest};
use tonic::Status;

use crate::handle::NodeHandle;

/// etcd's default quota (`--quota-backend-bytes 0`): 2 GiB.
pub const QUOTA_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;
/// etcd's per-put overhead in the quota's cost (`kvOverhead`).
pub const PUT_OVERHEAD_BYTES: u64 = 256;
/// etcd's cost of a lease grant (`leaseOverhead`).
pub const LEASE_GRANT_COST_BYTES: u64 = 64;

/// The space quota of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Largest store size allowed, in bytes; `None`: no quota.
    quota_bytes: Option<u64>,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota { quota_bytes: Some(QUOTA_BYTES_DEFAULT) }
    }
}

impl Quota {
    /// The quota `--quota-backend-bytes` asks for, as etcd reads it: 0 is the 2 GiB
    /// default, a negative value means no quota.
    pub fn from_quota_backend_bytes(quota_backend_bytes: i64) -> Quota {
        let quota_bytes = match quota_backend_bytes {
            0 => Some(QUOTA_BYTES_DEFAULT),
            bytes if bytes < 0 => None,
            bytes => Some(bytes as u64),
        };
        Quota { quota_bytes }
    }

    /// No quota at all.
    pub fn unlimited() -> Quota {
        Quota { quota_bytes: None }
    }

    /// The quota in bytes (`None`: no quota).
    pub fn quota_bytes(&self) -> Option<u64> {
        self.quota_bytes
    }

    /// True if a store of `size_bytes` has room for an operation costing `cost_bytes`
    /// (etcd: `size + cost < quota`).
    pub fn has_room(&self, size_bytes: u64, cost_bytes: u64) -> bool {
        match self.quota_bytes {
            None => true,
            Some(quota_bytes) => size_bytes.saturating_add(cost_bytes) < quota_bytes,
        }
    }

    /// Refuses `operation` if it does not fit in the quota, after proposing the NOSPACE
    /// alarm for this member (as etcd's quota alarmer does; the alarm's own outcome does
    /// not change the answer). Operations that do not grow the store always pass.
    pub async fn check(&self, handle: &NodeHandle, operation: &Operation) -> Result<(), Status> {
        let cost_bytes = cost_bytes(operation);
        if cost_bytes == 0 || self.quota_bytes.is_none() {
            return Ok(());
        }
        let size_bytes = handle.read_view().size_bytes();
        if self.has_room(size_bytes, cost_bytes) {
            return Ok(());
        }
        let member_id = handle.status().member_id;
        let alarm = AlarmRequest { action: AlarmAction::Activate as i32, member_id, alarm: AlarmType::Nospace as i32 };
        if let Err(error) = handle.write(Command::new(Operation::Alarm(alarm))).await {
            tracing::warn!(%error, member_id, "could not raise the NOSPACE alarm");
        } else {
            tracing::warn!(size_bytes, cost_bytes, quota_bytes = ?self.quota_bytes, "space quota exceeded: NOSPACE alarm raised");
        }
        Err(no_space())
    }
}

/// etcd's answer to a write refused by the quota (`rpctypes.ErrGRPCNoSpace`).
pub fn no_space() -> Status {
    Status::resource_exhausted(kv::Error::NoSpace.message())
}

/// etcd's quota cost of an operation, in bytes: 0 for operations that do not grow the
/// store (reads, deletes, compaction, revokes, ...).
pub fn cost_bytes(operation: &Operation) -> u64 {
    match operation {
        Operation::Put(put) => put_cost_bytes(put),
        Operation::Txn(txn) => {
            let branch_cost = |branch: &[proto::etcdserverpb::RequestOp]| -> u64 {
                branch
                    .iter()
                    .map(|operation| match &operation.request {
                        Some(Request::RequestPut(put)) => put_cost_bytes(put),
                        _ => 0,
                    })
                    .sum()
            };
            let cost = branch_cost(&txn.success).max(branch_cost(&txn.failure));
            // etcd counts the puts of the top level only; a transaction whose puts are all
            // nested still costs something, so that it is refused once the quota is full.
            if cost == 0 && kv::txn_puts(txn) {
                PUT_OVERHEAD_BYTES
            } else {
                cost
            }
        }
        Operation::LeaseGrant(_) => LEASE_GRANT_COST_BYTES,
        _ => 0,
    }
}

fn put_cost_bytes(put: &PutRequest) -> u64 {
    PUT_OVERHEAD_BYTES + put.key.len() as u64 + put.value.len() as u64
}

#[cfg(test)]
mod tests {
    use proto::etcdserverpb::{DeleteRangeRequest, LeaseGrantRequest, RequestOp, TxnRequest};

    use super::*;

    fn put(key: &str, value: &str) -> PutRequest {
        PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    fn put_op(key: &str, value: &str) -> RequestOp {
        RequestOp { request: Some(Request::RequestPut(put(key, value))) }
    }

    #[test]
    fn reads_the_flag_as_etcd() {
        assert_eq!(Quota::from_quota_backend_bytes(0).quota_bytes(), Some(QUOTA_BYTES_DEFAULT));
        assert_eq!(Quota::from_quota_backend_bytes(-1), Quota::unlimited());
        assert_eq!(Quota::from_quota_backend_bytes(4096).quota_bytes(), Some(4096));
        assert_eq!(Quota::default().quota_bytes(), Some(QUOTA_BYTES_DEFAULT));
    }

    #[test]
    fn room_is_strictly_below_the_quota() {
        let quota = Quota::from_quota_backend_bytes(1000);
        assert!(quota.has_room(0, 999));
        assert!(!quota.has_room(0, 1000));
        assert!(!quota.has_room(u64::MAX, 1));
        assert!(Quota::unlimited().has_room(u64::MAX, u64::MAX));
    }

    #[test]
    fn costs_follow_etcd() {
        assert_eq!(cost_bytes(&Operation::Put(put("ab", "cde"))), 256 + 5);
        let grant = Operation::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 1 });
        assert_eq!(cost_bytes(&grant), 64);
        let delete = Operation::DeleteRange(DeleteRangeRequest { key: b"a".to_vec(), ..Default::default() });
        assert_eq!(cost_bytes(&delete), 0);
        let txn = TxnRequest {
            success: vec![put_op("a", "1")],
            failure: vec![put_op("b", "22"), put_op("c", "3")],
            ..Default::default()
        };
        assert_eq!(cost_bytes(&Operation::Txn(txn)), 2 * 256 + 5, "the larger branch counts");
        let nested = TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::RequestTxn(TxnRequest {
                    success: vec![put_op("a", "1")],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        assert_eq!(cost_bytes(&Operation::Txn(nested)), PUT_OVERHEAD_BYTES);
        assert_eq!(cost_bytes(&Operation::Txn(TxnRequest::default())), 0);
    }
}
