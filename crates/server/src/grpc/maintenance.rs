//! `etcdserverpb.Maintenance`: Status, HashKV, Hash, Alarm, Defragment, MoveLeader.
//! Snapshot is in `snapshot.rs`; Downgrade answers `Unimplemented`.

use proto::etcdserverpb::{
    alarm_request::AlarmAction, maintenance_server::Maintenance, AlarmRequest, AlarmResponse, DefragmentRequest,
    DefragmentResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::auth::Authorizer;
use super::status::{status_from_kv_error, status_from_server_error};
use crate::handle::{NodeHandle, ServerError};

/// The version `Maintenance.Status` reports: the etcd API version raftkv implements, with
/// raftkv's own version as semver build metadata (ignored by version comparisons, so
/// clients that require etcd 3.4 accept it; etcdctl prints it as is).
pub const SERVER_VERSION: &str = concat!("3.4.0+raftkv.", env!("CARGO_PKG_VERSION"));

/// etcd's `Maintenance` service over a node.
#[derive(Clone)]
pub struct MaintenanceService {
    handle: NodeHandle,
    authorizer: Authorizer,
}

impl MaintenanceService {
    /// A service for `handle`.
    pub fn new(handle: NodeHandle) -> MaintenanceService {
        let authorizer = Authorizer::new(handle.clone());
        MaintenanceService { handle, authorizer }
    }

    /// Checks permissions with `authorizer`: while auth is enabled Hash, HashKV,
    /// Defragment and MoveLeader need root (as etcd), so do raising and clearing alarms;
    /// Status and listing alarms need nothing.
    pub fn with_authorizer(mut self, authorizer: Authorizer) -> MaintenanceService {
        self.authorizer = authorizer;
        self
    }

    fn current_header(&self) -> Option<proto::etcdserverpb::ResponseHeader> {
        Some(self.handle.header(self.handle.status().revision))
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn status(&self, _request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let status = self.handle.status();
        let mut errors = Vec::new();
        if status.leader == 0 {
            // As etcd 3.4: a member without a leader says so in `errors`.
            errors.push(ServerError::NoLeader.to_string());
        }
        Ok(Response::new(StatusResponse {
            header: Some(self.handle.header(status.revision)),
            version: SERVER_VERSION.to_string(),
            db_size: status.db_size_bytes,
            leader: status.leader,
            raft_index: status.commit_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors,
            // What the space quota measures (see `crate::quota`).
            db_size_in_use: self.handle.read_view().size_bytes() as i64,
            is_learner: status.is_learner,
            ..StatusResponse::default()
        }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.authorizer.require_admin(request.metadata()).await?;
        let revision = request.into_inner().revision;
        let store = self.handle.read_view();
        if revision > store.current_revision() {
            return Err(status_from_kv_error(kv::Error::FutureRevision));
        }
        if revision > 0 && revision < store.compact_revision() {
            return Err(status_from_kv_error(kv::Error::Compacted));
        }
        let (hash, compact_revision, hash_revision) = store.hash_kv(revision);
        let header = Some(self.handle.header(store.current_revision()));
        Ok(Response::new(HashKvResponse { header, hash, compact_revision, hash_revision }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.authorizer.require_admin(request.metadata()).await?;
        let store = self.handle.read_view();
        let full = store.hash();
        // Fold the 64-bit state hash into etcd's 32-bit field.
        let hash = (full ^ (full >> 32)) as u32;
        Ok(Response::new(HashResponse { header: Some(self.handle.header(store.current_revision())), hash }))
    }

    async fn snapshot(
        &self,
        request: Request<proto::etcdserverpb::SnapshotRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<proto::etcdserverpb::SnapshotResponse>>, Status> {
        super::snapshot::snapshot(&self.handle, &self.authorizer, request).await
    }

    /// etcd's Alarm: GET, ACTIVATE and DEACTIVATE all go through the log, so every
    /// member answers the same list (see `kv`'s `alarm.rs`). GET needs no permission (as
    /// etcd); while auth is enabled, raising or clearing an alarm needs root (etcd 3.4
    /// lets anyone do it; raftkv does not let a client without admin rights stop the
    /// cluster's writes).
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let (metadata, _, alarm) = request.into_parts();
        if AlarmAction::try_from(alarm.action) != Ok(AlarmAction::Get) {
            self.authorizer.require_admin(&metadata).await?;
        }
        match self.handle.write(kv::Command::new(kv::Operation::Alarm(alarm))).await {
            // etcd 3.4's Alarm answer carries no response header (`etcdctl alarm list -w json`).
            Ok(kv::Response::Alarm(response)) => Ok(Response::new(response)),
            Ok(other) => Err(Status::internal(format!("raftkv: unexpected state machine answer {other:?}"))),
            Err(error) => Err(status_from_server_error(error)),
        }
    }

    /// Hands leadership to a voter (etcd: only the leader accepts it; `etcdctl move-leader`
    /// finds the leader among its endpoints). Answers once the target leads.
    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.authorizer.require_admin(request.metadata()).await?;
        let target = request.into_inner().target_id;
        let request = crate::membership::MembershipRequest::MoveLeader { target };
        self.handle.change_membership(request).await.map_err(super::cluster::status_from_membership_error)?;
        Ok(Response::new(MoveLeaderResponse { header: self.current_header() }))
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.authorizer.require_admin(request.metadata()).await?;
        // The store lives in memory and the WAL compacts itself: nothing to defragment.
        Ok(Response::new(DefragmentResponse { header: self.current_header() }))
    }
}
