//! `etcdserverpb.KV`: Range, Put, DeleteRange, Txn, Compact.

use kv::{Command, Operation, Response};
use proto::etcdserverpb::{
    kv_server::Kv,
    range_request::{SortOrder, SortTarget},
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use proto::prost::Message;
use tonic::{Request, Status};

use super::auth::Authorizer;
use super::read_txn;
use super::request_id_from_metadata;
use super::status::{status_from_kv_error, status_from_server_error};
use crate::handle::{NodeHandle, ServerError};
use crate::quota::Quota;

/// etcd's `KV` service over a node. Writes are validated locally, then replicated;
/// reads are served locally, after a ReadIndex barrier unless `serializable`.
#[derive(Clone)]
pub struct KvService {
    handle: NodeHandle,
    request_size_bytes_max: usize,
    authorizer: Authorizer,
    quota: Quota,
}

impl KvService {
    /// A service for `handle` that refuses writes whose encoded request is larger than
    /// `request_size_bytes_max` (etcd's `--max-request-bytes`, 1.5 MiB by default) with
    /// "etcdserver: request is too large".
    pub fn new(handle: NodeHandle, request_size_bytes_max: usize) -> KvService {
        assert!(request_size_bytes_max > 0, "requests must be allowed some bytes");
        let authorizer = Authorizer::new(handle.clone());
        KvService { handle, request_size_bytes_max, authorizer, quota: Quota::default() }
    }

    /// Refuses puts and transactions with puts that do not fit in `quota` (etcd's
    /// `--quota-backend-bytes`; etcd's 2 GiB default otherwise), see [`crate::quota`].
    pub fn with_quota(mut self, quota: Quota) -> KvService {
        self.quota = quota;
        self
    }

    /// Checks permissions with `authorizer` (share one per member, for token lifetimes).
    pub fn with_authorizer(mut self, authorizer: Authorizer) -> KvService {
        self.authorizer = authorizer;
        self
    }

    /// Checks and replicates a write; returns the state machine's answer.
    async fn propose(
        &self,
        operation: Operation,
        request_size_bytes: usize,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Response, Status> {
        if request_size_bytes > self.request_size_bytes_max {
            return Err(status_from_server_error(ServerError::RequestTooLarge));
        }
        let request_id = request_id_from_metadata(metadata)?;
        let context = self.authorizer.authorize(metadata, &operation).await?;
        self.quota.check(&self.handle, &operation).await?;
        let request_id = super::auth::scoped_request_id(request_id, &context);
        let command = Command { request_id, operation, auth: Some(context) };
        self.handle.read_view().validate(&command).map_err(status_from_kv_error)?;
        self.handle.write(command).await.map_err(status_from_server_error)
    }

    /// Runs `read` on the local store: linearizable (after a ReadIndex barrier) unless
    /// `serializable`.
    /// Permissions are checked after the barrier (as etcd), so a linearizable read sees
    /// every permission change committed before it started.
    async fn read<T>(
        &self,
        serializable: bool,
        metadata: &tonic::metadata::MetadataMap,
        operation: &Operation,
        read: impl FnOnce(&kv::Store) -> Result<T, kv::Error>,
    ) -> Result<T, Status> {
        if !serializable {
            self.handle.read_barrier().await.map_err(status_from_server_error)?;
        }
        self.authorizer.authorize(metadata, operation).await?;
        let guard = self.handle.read_view();
        let answer = read(&guard).map_err(status_from_kv_error)?;
        if let Some(metrics) = self.handle.metrics() {
            crate::etcd_metrics::count_local_read(&metrics.etcd, operation);
        }
        Ok(answer)
    }

    /// Serves a transaction without writes from the local store, as etcd does.
    async fn read_only_txn(
        &self,
        txn: TxnRequest,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<TxnResponse, Status> {
        let command = Command::new(Operation::Txn(txn));
        self.handle.read_view().validate(&command).map_err(status_from_kv_error)?;
        let Operation::Txn(txn) = &command.operation else {
            return Err(Status::internal("raftkv: transaction changed kind"));
        };
        let serializable = read_txn::is_serializable(txn);
        let evaluate = |store: &kv::Store| read_txn::evaluate(store, txn);
        let mut response = self.read(serializable, metadata, &command.operation, evaluate).await?;
        response.header = self.header(response.header);
        Ok(response)
    }

    /// The full header (cluster, member, term) for the store revision `kv` put in `header`.
    fn header(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let revision = header.map_or(0, |header| header.revision);
        Some(self.handle.header(revision))
    }
}

/// etcd refuses sort orders and targets it does not know (`ErrGRPCInvalidSortOption`).
fn check_sort_options(request: &RangeRequest) -> Result<(), Status> {
    let order_known = SortOrder::try_from(request.sort_order).is_ok();
    let target_known = SortTarget::try_from(request.sort_target).is_ok();
    if order_known && target_known {
        Ok(())
    } else {
        Err(Status::invalid_argument("etcdserver: invalid sort option"))
    }
}

fn unexpected(response: &Response) -> Status {
    Status::internal(format!("raftkv: unexpected state machine answer {response:?}"))
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<tonic::Response<RangeResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        check_sort_options(&request)?;
        let operation = Operation::Range(request);
        let Operation::Range(range) = &operation else {
            return Err(Status::internal("raftkv: range changed kind"));
        };
        let mut response = self.read(range.serializable, &metadata, &operation, |store| store.range(range)).await?;
        response.header = self.header(response.header);
        Ok(tonic::Response::new(response))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<tonic::Response<PutResponse>, Status> {
        let (metadata, _, put) = request.into_parts();
        let size_bytes = put.encoded_len();
        match self.propose(Operation::Put(put), size_bytes, &metadata).await? {
            Response::Put(mut response) => {
                response.header = self.header(response.header);
                Ok(tonic::Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<tonic::Response<DeleteRangeResponse>, Status> {
        let (metadata, _, delete) = request.into_parts();
        let size_bytes = delete.encoded_len();
        match self.propose(Operation::DeleteRange(delete), size_bytes, &metadata).await? {
            Response::DeleteRange(mut response) => {
                response.header = self.header(response.header);
                Ok(tonic::Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<tonic::Response<TxnResponse>, Status> {
        let (metadata, _, txn) = request.into_parts();
        if read_txn::is_read_only(&txn) {
            return self.read_only_txn(txn, &metadata).await.map(tonic::Response::new);
        }
        let size_bytes = txn.encoded_len();
        match self.propose(Operation::Txn(txn), size_bytes, &metadata).await? {
            Response::Txn(mut response) => {
                response.header = self.header(response.header);
                Ok(tonic::Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<tonic::Response<CompactionResponse>, Status> {
        let (metadata, _, compaction) = request.into_parts();
        let size_bytes = compaction.encoded_len();
        match self.propose(Operation::Compaction(compaction), size_bytes, &metadata).await? {
            Response::Compaction(mut response) => {
                response.header = self.header(response.header);
                Ok(tonic::Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }
}
