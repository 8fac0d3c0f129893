//! Transactions, compaction, leases and history reads of [`Store`].

use proto::etcdserverpb::{
    request_op::Request, response_op, CompactionRequest, CompactionResponse, LeaseCheckpointRequest,
    LeaseCheckpointResponse, LeaseGrantRequest, LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, RequestOp,
    ResponseOp, TxnRequest, TxnResponse,
};

use crate::error::Error;
use crate::lease::{Lease, MAXIMUM_LEASE_TTL_SECONDS};
use crate::store::{header, resolve_put, History, Store, Write, NEWEST};
use crate::txn::{check_duplicate_keys, check_txn_request, compare_holds};

/// The branch a transaction takes and the branches of the transactions nested in
/// it, in execution order (etcd evaluates all of them before executing anything).
struct TxnPath {
    branches: Vec<bool>,
    position: usize,
}

impl TxnPath {
    fn next(&mut self) -> bool {
        let succeeded = self.branches[self.position];
        self.position += 1;
        succeeded
    }
}

fn branch(request: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded {
        &request.success
    } else {
        &request.failure
    }
}

impl Store {
    pub(crate) fn txn(&mut self, request: &TxnRequest, write: &mut Write) -> Result<TxnResponse, Error> {
        check_txn_request(request, self.config.max_txn_operations)?;
        check_duplicate_keys(request)?;
        let mut path = TxnPath { branches: Vec::new(), position: 0 };
        self.evaluate_path(request, &mut path.branches);
        self.check_path(request, &mut path)?;
        assert_eq!(path.position, path.branches.len(), "checked every branch");
        path.position = 0;
        let response = self.execute_txn(request, &mut path, write);
        assert_eq!(path.position, path.branches.len(), "executed every branch");
        Ok(response)
    }

    fn evaluate_path(&self, request: &TxnRequest, branches: &mut Vec<bool>) {
        let succeeded = request.compare.iter().all(|compare| compare_holds(&self.mvcc, compare, NEWEST));
        branches.push(succeeded);
        for operation in branch(request, succeeded) {
            if let Some(Request::RequestTxn(nested)) = &operation.request {
                self.evaluate_path(nested, branches);
            }
        }
    }

    /// Checks everything that could fail while executing, so a transaction either
    /// applies completely or not at all.
    fn check_path(&self, request: &TxnRequest, path: &mut TxnPath) -> Result<(), Error> {
        for operation in branch(request, path.next()) {
            match &operation.request {
                Some(Request::RequestRange(range)) => {
                    self.check_read_revision(range.revision, self.current_revision)?;
                }
                Some(Request::RequestPut(put)) => {
                    let existing = self.mvcc.get_at(&put.key, NEWEST);
                    let (_, lease) = resolve_put(put, existing)?;
                    if lease != 0 && !self.leases.contains(lease) {
                        return Err(Error::LeaseNotFound);
                    }
                }
                Some(Request::RequestTxn(nested)) => self.check_path(nested, path)?,
                Some(Request::RequestDeleteRange(_)) | None => {}
            }
        }
        Ok(())
    }

    fn execute_txn(&mut self, request: &TxnRequest, path: &mut TxnPath, write: &mut Write) -> TxnResponse {
        let succeeded = path.next();
        let mut responses = Vec::new();
        for operation in branch(request, succeeded) {
            let response = match &operation.request {
                Some(Request::RequestRange(range)) => {
                    let latest = write.latest(self.current_revision);
                    let read = self.read_range(range, latest);
                    response_op::Response::ResponseRange(read.expect("checked before executing"))
                }
                Some(Request::RequestPut(put)) => {
                    let written = self.put(put, write);
                    response_op::Response::ResponsePut(written.expect("checked before executing"))
                }
                Some(Request::RequestDeleteRange(delete)) => {
                    response_op::Response::ResponseDeleteRange(self.delete_range(delete, write))
                }
                Some(Request::RequestTxn(nested)) => {
                    response_op::Response::ResponseTxn(self.execute_txn(nested, path, write))
                }
                None => continue,
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        TxnResponse { header: header(write.latest(self.current_revision)), succeeded, responses }
    }

    pub(crate) fn compact(&mut self, request: &CompactionRequest) -> Result<CompactionResponse, Error> {
        if request.revision <= self.compact_revision {
            return Err(Error::Compacted);
        }
        if request.revision > self.current_revision {
            return Err(Error::FutureRevision);
        }
        self.mvcc.compact(request.revision);
        self.compact_revision = request.revision;
        assert!(self.compact_revision <= self.current_revision, "compaction stays in the past");
        Ok(CompactionResponse { header: header(self.current_revision) })
    }

    pub(crate) fn lease_grant(&mut self, index: u64, request: &LeaseGrantRequest) -> Result<LeaseGrantResponse, Error> {
        if request.ttl > MAXIMUM_LEASE_TTL_SECONDS {
            return Err(Error::LeaseTimeToLiveTooLarge);
        }
        let id = if request.id == 0 {
            // Deterministic stand-in for etcd's server-chosen id: mix the log index.
            self.leases.free_id(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        } else {
            request.id
        };
        if self.leases.contains(id) {
            return Err(Error::LeaseExists);
        }
        let ttl = request.ttl.max(self.config.minimum_lease_ttl_seconds);
        self.leases.grant(id, ttl);
        Ok(LeaseGrantResponse { header: header(self.current_revision), id, ttl, error: String::new() })
    }

    pub(crate) fn lease_revoke(
        &mut self,
        request: &LeaseRevokeRequest,
        write: &mut Write,
    ) -> Result<LeaseRevokeResponse, Error> {
        let lease = self.leases.remove(request.id).ok_or(Error::LeaseNotFound)?;
        for key in &lease.keys {
            let old = self.mvcc.get_at(key, NEWEST).cloned();
            let old = old.expect("keys attached to a lease exist");
            assert_eq!(old.lease, lease.id, "attached keys carry their lease");
            self.delete_key(&old, write);
        }
        Ok(LeaseRevokeResponse { header: header(write.latest(self.current_revision)) })
    }

    /// Records the remaining TTLs of a leader's checkpoint (etcd's `LeaseCheckpoint`
    /// apply): leases revoked meanwhile are skipped; no revision is used.
    pub(crate) fn lease_checkpoint(&mut self, request: &LeaseCheckpointRequest) -> LeaseCheckpointResponse {
        for checkpoint in &request.checkpoints {
            self.leases.checkpoint(checkpoint.id, checkpoint.remaining_ttl);
        }
        LeaseCheckpointResponse { header: header(self.current_revision) }
    }

    /// The lease with this id (granted TTL, checkpointed remaining TTL and attached
    /// keys); the time left is tracked by the server's clock, not here.
    pub fn lease(&self, id: i64) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// All leases in id order.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.iter()
    }

    /// Events of revisions `>= start_revision` (whole revisions, at least
    /// `max_events` unless history ends), for watchers that start in the past.
    /// `start_revision <= 0` means "after the current revision".
    pub fn history(&self, start_revision: i64, max_events: usize) -> Result<History, Error> {
        assert!(max_events > 0, "read at least one event");
        let start = if start_revision <= 0 { self.current_revision + 1 } else { start_revision };
        if start < self.compact_revision {
            return Err(Error::Compacted);
        }
        let (events, next_revision) = self.mvcc.events_from(start, max_events);
        assert!(next_revision >= start, "history moves forward");
        Ok(History { events, next_revision })
    }
}
