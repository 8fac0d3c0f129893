//! `etcdserverpb.Lease`: grant, revoke, keep-alive, time-to-live and list.
//!
//! Grants and revokes are replicated through the log (a grant without an id gets a
//! random non-zero one before it is proposed). Deadlines live on the leader (see
//! [`crate::lessor`]): a keep-alive or time-to-live request reaching a follower is
//! forwarded to the leader's client URL, retried while there is no leader; if that
//! fails for [`LEADER_WAIT_MAX`] the follower answers "etcdserver: not leader"
//! (keep-alive) or the TTL a new leader would start from (time-to-live: the checkpointed
//! remaining TTL if there is one, else the granted TTL), and etcd's clients retry elsewhere.
//!
//! A keep-alive stream opened with `hasleader: true` (clientv3's `WithRequireLeader`) is
//! refused and ended with "etcdserver: no leader" as a watch stream is (see
//! [`super::watch`]), as etcd's stream interceptor does for every stream.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kv::{Command, Operation, Response};
use proto::etcdserverpb::{
    lease_client::LeaseClient, lease_server::Lease, LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest,
    LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse,
    LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Request, Status, Streaming};

use super::auth::Authorizer;
use super::request_id_from_metadata;
use super::status::{status_from_kv_error, status_from_server_error};
use super::watch::{leader_lost, requires_leader, LeaderMonitor, NO_LEADER_MESSAGE};
use crate::handle::NodeHandle;
use crate::quota::Quota;

/// Keep-alive answers queued per stream before the service waits for the client.
pub const KEEP_ALIVE_RESPONSES_QUEUED_MAX: usize = 16;
/// Longest a forwarded request to the leader may take.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a keep-alive waits for a usable leader before answering "not leader".
pub const LEADER_WAIT_MAX: Duration = Duration::from_secs(5);
/// Pause between two attempts to reach the leader.
pub const LEADER_RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// The response stream of one `LeaseKeepAlive` call.
type KeepAliveStream = Pin<Box<dyn futures::Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

/// etcd's "not leader" error (Unavailable), which makes clients try another member.
fn not_leader() -> Status {
    Status::unavailable("etcdserver: not leader")
}

/// etcd's `Lease` service over a node.
#[derive(Clone)]
pub struct LeaseService {
    handle: NodeHandle,
    authorizer: Authorizer,
    /// TLS for calls to the leader's `https://` client URL.
    forward_tls: Option<ClientTlsConfig>,
    /// Ends keep-alive streams opened with `hasleader: true` when the leader is lost.
    leader_monitor: Arc<LeaderMonitor>,
    /// Refuses grants once the store is full (see [`crate::quota`]).
    quota: Quota,
}

impl LeaseService {
    /// A service for `handle`.
    pub fn new(handle: NodeHandle) -> LeaseService {
        let authorizer = Authorizer::new(handle.clone());
        LeaseService {
            handle,
            authorizer,
            forward_tls: None,
            leader_monitor: LeaderMonitor::new(),
            quota: Quota::default(),
        }
    }

    /// Refuses lease grants that do not fit in `quota` (etcd's `--quota-backend-bytes`;
    /// etcd's 2 GiB default otherwise), see [`crate::quota`].
    pub fn with_quota(mut self, quota: Quota) -> LeaseService {
        self.quota = quota;
        self
    }

    /// Checks permissions with `authorizer` (share one per member, for token lifetimes).
    /// A revoke needs write permission on every key attached to the lease (as etcd);
    /// a grant needs none; keep-alive, time-to-live and list are not checked.
    pub fn with_authorizer(mut self, authorizer: Authorizer) -> LeaseService {
        self.authorizer = authorizer;
        self
    }

    /// Calls the leader's `https://` client URL with `forward_tls` (see `crate::tls`).
    pub fn with_forward_tls(mut self, forward_tls: Option<ClientTlsConfig>) -> LeaseService {
        self.forward_tls = forward_tls;
        self
    }

    /// A client of the leader's `Lease` service, if the leader is another known member.
    async fn leader_client(handle: &NodeHandle, tls: Option<&ClientTlsConfig>) -> Option<LeaseClient<Channel>> {
        Some(LeaseClient::new(super::leader_channel(handle, tls, FORWARD_TIMEOUT).await?))
    }

    /// Answers one keep-alive: on the leader by refreshing the deadline, elsewhere by
    /// forwarding to the leader. While there is no usable leader (an election, a leader
    /// whose lessor has not taken over yet, a failed forward) it retries every
    /// [`LEADER_RETRY_INTERVAL`] for at most [`LEADER_WAIT_MAX`], then answers "not leader".
    async fn keep_alive_once(
        handle: &NodeHandle,
        tls: Option<&ClientTlsConfig>,
        leader: &mut Option<(u64, LeaseClient<Channel>)>,
        id: i64,
    ) -> Result<LeaseKeepAliveResponse, Status> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT_MAX;
        loop {
            let status = handle.status();
            let answer = if status.leader == status.member_id && handle.lessor().is_leading() {
                LeaseService::keep_alive_on_leader(handle, id).await?
            } else if status.leader != 0 && status.leader != status.member_id {
                LeaseService::keep_alive_forwarded(handle, tls, leader, status.leader, id).await
            } else {
                None
            };
            if let Some(response) = answer {
                return Ok(response);
            }
            if tokio::time::Instant::now() + LEADER_RETRY_INTERVAL > deadline {
                return Err(not_leader());
            }
            tokio::time::sleep(LEADER_RETRY_INTERVAL).await;
        }
    }

    /// The leader's answer: after a read barrier (so a lease granted just before is
    /// applied here), TTL 0 for a lease that does not exist (as etcd), else the refreshed
    /// TTL; `None` if this node stopped leading meanwhile. A lease with a checkpointed
    /// remaining TTL has it cleared through the log first (etcd's `Renew`), so a later
    /// leader gives the renewed lease its full TTL.
    async fn keep_alive_on_leader(handle: &NodeHandle, id: i64) -> Result<Option<LeaseKeepAliveResponse>, Status> {
        handle.read_barrier().await.map_err(status_from_server_error)?;
        let (lease, revision) = {
            let guard = handle.read_view();
            (
                guard.lease(id).map(|lease| (lease.granted_ttl_seconds, lease.remaining_ttl_seconds)),
                guard.current_revision(),
            )
        };
        let header = Some(handle.header(revision));
        let Some((granted, checkpointed)) = lease else {
            return Ok(Some(LeaseKeepAliveResponse { header, id, ttl: 0 }));
        };
        if checkpointed > 0 && handle.lessor().checkpoints_enabled() {
            let checkpoints = vec![LeaseCheckpoint { id, remaining_ttl: 0 }];
            let command = Command::new(Operation::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints }));
            handle.write(command).await.map_err(status_from_server_error)?;
        }
        Ok(handle.lessor().keep_alive(id, granted).map(|ttl| LeaseKeepAliveResponse { header, id, ttl }))
    }

    /// The answer of leader `leader_id` to a forwarded keep-alive, or `None` if it could
    /// not be reached in [`FORWARD_TIMEOUT`] (the cached client is then dropped).
    async fn keep_alive_forwarded(
        handle: &NodeHandle,
        tls: Option<&ClientTlsConfig>,
        leader: &mut Option<(u64, LeaseClient<Channel>)>,
        leader_id: u64,
        id: i64,
    ) -> Option<LeaseKeepAliveResponse> {
        if leader.as_ref().map(|(known, _)| *known) != Some(leader_id) {
            *leader = LeaseService::leader_client(handle, tls).await.map(|client| (leader_id, client));
        }
        let (_, client) = leader.as_mut()?;
        let request = LeaseKeepAliveRequest { id };
        let forwarded = async {
            let mut responses = client.lease_keep_alive(tokio_stream::once(request)).await?.into_inner();
            responses.message().await?.ok_or_else(not_leader)
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, forwarded).await {
            Ok(Ok(response)) => Some(response),
            _ => {
                *leader = None;
                None
            }
        }
    }
}

fn unexpected(response: &Response) -> Status {
    Status::internal(format!("raftkv: unexpected state machine answer {response:?}"))
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<tonic::Response<LeaseGrantResponse>, Status> {
        let (metadata, _, mut grant) = request.into_parts();
        let request_id = request_id_from_metadata(&metadata)?;
        if grant.id == 0 {
            // etcd picks the id before proposing; every replica then applies the same one.
            grant.id = loop {
                let candidate = rand::random::<i64>() & i64::MAX;
                if candidate != 0 {
                    break candidate;
                }
            };
        }
        let operation = Operation::LeaseGrant(grant);
        let context = self.authorizer.authorize(&metadata, &operation).await?;
        self.quota.check(&self.handle, &operation).await?;
        let request_id = super::auth::scoped_request_id(request_id, &context);
        let command = Command { request_id, operation, auth: Some(context) };
        self.handle.read_view().validate(&command).map_err(status_from_kv_error)?;
        match self.handle.write(command).await.map_err(status_from_server_error)? {
            Response::LeaseGrant(mut response) => {
                let revision = response.header.map_or(0, |header| header.revision);
                response.header = Some(self.handle.header(revision));
                Ok(tonic::Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<tonic::Response<LeaseRevokeResponse>, Status> {
        let (metadata, _, revoke) = request.into_parts();
        let request_id = request_id_from_metadata(&metadata)?;
        let operation = Operation::LeaseRevoke(revoke);
        let context = self.authorizer.authorize(&metadata, &operation).await?;
        let request_id = super::auth::scoped_request_id(request_id, &context);
        let command = Command { request_id, operation, auth: Some(context) };
        match self.handle.write(command).await.map_err(status_from_server_error)? {
            Response::LeaseRevoke(mut response) => {
                let revision = response.header.map_or(0, |header| header.revision);
                response.header = Some(self.handle.header(revision));
                Ok(tonic::Response::new(response))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<tonic::Response<KeepAliveStream>, Status> {
        let (metadata, _, mut requests) = request.into_parts();
        // etcd: a stream requiring a leader is refused without one, and ended with "no
        // leader" once the member has lost it for a few election timeouts.
        let mut lost_leader = None;
        if requires_leader(&metadata) {
            if self.handle.status().leader == 0 {
                return Err(Status::unavailable(NO_LEADER_MESSAGE));
            }
            lost_leader = Some(self.leader_monitor.subscribe(&self.handle));
        }
        let (sender, receiver) = mpsc::channel(KEEP_ALIVE_RESPONSES_QUEUED_MAX);
        let handle = self.handle.clone();
        let tls = self.forward_tls.clone();
        tokio::spawn(async move {
            let mut leader = None;
            loop {
                let received = tokio::select! {
                    received = requests.message() => received,
                    () = sender.closed() => return,
                    () = leader_lost(&mut lost_leader) => {
                        let _ = sender.send(Err(Status::unavailable(NO_LEADER_MESSAGE))).await;
                        return;
                    }
                };
                let Ok(Some(request)) = received else { return };
                let answer = LeaseService::keep_alive_once(&handle, tls.as_ref(), &mut leader, request.id).await;
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<LeaseTimeToLiveResponse>, Status> {
        let request = request.into_inner();
        self.handle.read_barrier().await.map_err(status_from_server_error)?;
        let (lease, revision) = {
            let guard = self.handle.read_view();
            (guard.lease(request.id).cloned(), guard.current_revision())
        };
        let header = Some(self.handle.header(revision));
        let Some(lease) = lease else {
            // etcd: a missing lease has TTL -1.
            return Ok(tonic::Response::new(LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            }));
        };
        let remaining = match self.handle.lessor().remaining_seconds(lease.id) {
            Some(seconds) => seconds,
            None => self.forwarded_remaining(request.id).await.unwrap_or(lease.starting_ttl_seconds()),
        };
        let keys = if request.keys { lease.keys.iter().cloned().collect() } else { Vec::new() };
        Ok(tonic::Response::new(LeaseTimeToLiveResponse {
            header,
            id: lease.id,
            ttl: remaining,
            granted_ttl: lease.granted_ttl_seconds,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<tonic::Response<LeaseLeasesResponse>, Status> {
        self.handle.read_barrier().await.map_err(status_from_server_error)?;
        let guard = self.handle.read_view();
        let leases = guard.leases().map(|lease| LeaseStatus { id: lease.id }).collect();
        let header = Some(self.handle.header(guard.current_revision()));
        Ok(tonic::Response::new(LeaseLeasesResponse { header, leases }))
    }
}

impl LeaseService {
    /// The leader's remaining TTL for lease `id`, if the leader answers in time.
    async fn forwarded_remaining(&self, id: i64) -> Option<i64> {
        let mut client = LeaseService::leader_client(&self.handle, self.forward_tls.as_ref()).await?;
        let request = LeaseTimeToLiveRequest { id, keys: false };
        let answer = tokio::time::timeout(FORWARD_TIMEOUT, client.lease_time_to_live(request)).await.ok()?.ok()?;
        let ttl = answer.into_inner().ttl;
        (ttl >= 0).then_some(ttl)
    }
}
