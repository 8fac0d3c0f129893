//! `etcdserverpb.Cluster`: MemberList, MemberAdd (voter or learner), MemberRemove,
//! MemberUpdate and MemberPromote, with etcd's checks and error texts (see
//! [`crate::membership`]). Changes are decided by the leader: a follower forwards them to
//! the leader's client URL and relays its answer.

use std::time::Duration;

use proto::etcdserverpb::{
    cluster_client::ClusterClient, cluster_server::Cluster, Member, MemberAddRequest, MemberAddResponse,
    MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest,
    MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::status::status_from_server_error;
use crate::handle::{NodeHandle, ServerError};
use crate::membership::{MembershipError, MembershipRequest};

/// Longest a request forwarded to the leader may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// etcd's `Cluster` service over a node.
#[derive(Clone)]
pub struct ClusterService {
    handle: NodeHandle,
    authorizer: super::auth::Authorizer,
    /// TLS for calls to the leader's `https://` client URL.
    forward_tls: Option<tonic::transport::ClientTlsConfig>,
}

/// The gRPC status etcd answers for a membership error.
pub fn status_from_membership_error(error: MembershipError) -> Status {
    match error {
        MembershipError::Server(error) => status_from_server_error(error),
        other => Status::new(other.grpc_code(), other.to_string()),
    }
}

/// Where a membership request is decided.
enum Decider {
    /// This node leads.
    Local,
    /// Another member leads; forward to it.
    Leader(ClusterClient<Channel>),
}

impl ClusterService {
    /// A service for `handle`.
    pub fn new(handle: NodeHandle) -> ClusterService {
        let authorizer = super::auth::Authorizer::new(handle.clone());
        ClusterService { handle, authorizer, forward_tls: None }
    }

    /// Forwards to the leader's `https://` client URL with `forward_tls` (see `crate::tls`;
    /// without it a follower of a TLS cluster could not reach the leader and answered
    /// "no leader").
    pub fn with_forward_tls(mut self, forward_tls: Option<tonic::transport::ClientTlsConfig>) -> ClusterService {
        self.forward_tls = forward_tls;
        self
    }

    /// Checks permissions with `authorizer`: while auth is enabled every membership
    /// change needs root (as etcd); a change forwarded to the leader carries the token.
    pub fn with_authorizer(mut self, authorizer: super::auth::Authorizer) -> ClusterService {
        self.authorizer = authorizer;
        self
    }

    /// This node if it leads, else a client of the leader's Cluster service.
    async fn decider(&self) -> Result<Decider, Status> {
        let status = self.handle.status();
        if status.leader == 0 {
            return Err(status_from_server_error(ServerError::NoLeader));
        }
        if status.leader == status.member_id {
            return Ok(Decider::Local);
        }
        let channel = super::leader_channel(&self.handle, self.forward_tls.as_ref(), FORWARD_TIMEOUT)
            .await
            .ok_or_else(|| status_from_server_error(ServerError::NoLeader))?;
        Ok(Decider::Leader(ClusterClient::new(channel)))
    }

    async fn change(&self, request: MembershipRequest) -> Result<Option<Member>, Status> {
        self.handle.change_membership(request).await.map_err(status_from_membership_error)
    }

    fn member_list(&self) -> Vec<Member> {
        self.handle
            .members()
            .into_iter()
            .map(|member| Member {
                id: member.id,
                name: member.name,
                peer_ur_ls: member.peer_urls,
                client_ur_ls: member.client_urls,
                is_learner: member.is_learner,
            })
            .collect()
    }

    /// Makes a leader's answer this node's: waits until this node applied the change
    /// (ReadIndex), then answers with its own header and member list, so a client that
    /// lists members next on this node sees the change (as etcdctl does).
    async fn relay(
        &self,
        header: &mut Option<proto::etcdserverpb::ResponseHeader>,
        members: &mut Vec<Member>,
    ) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + FORWARD_TIMEOUT;
        // The leader may have removed itself: wait (bounded) for the next one.
        while let Err(error) = self.handle.read_barrier().await {
            let retry = matches!(error, ServerError::NoLeader | ServerError::LeaderChanged | ServerError::Timeout);
            if !retry || tokio::time::Instant::now() >= deadline {
                return Err(status_from_server_error(error));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *header = self.header();
        *members = self.member_list();
        Ok(())
    }

    /// etcd's Cluster answers carry the cluster id, member id and Raft term, no revision
    /// (`etcdctl member list -w json` prints no `revision` in its header).
    fn header(&self) -> Option<proto::etcdserverpb::ResponseHeader> {
        Some(self.handle.header(0))
    }

    /// Checks a MemberUpdate against the local member table as etcd does.
    async fn check_update(&self, request: &MemberUpdateRequest) -> Result<(), Status> {
        if request.peer_ur_ls.is_empty() || request.peer_ur_ls.iter().any(|url| crate::config::parse_url(url).is_err())
        {
            return Err(status_from_membership_error(MembershipError::BadUrls));
        }
        let store = self.handle.read_view();
        if store.member(request.id).is_none() {
            return Err(status_from_membership_error(MembershipError::MemberNotFound));
        }
        let taken = store
            .members()
            .filter(|member| member.id != request.id)
            .any(|member| member.peer_ur_ls.iter().any(|url| request.peer_ur_ls.contains(url)));
        if taken {
            return Err(status_from_membership_error(MembershipError::PeerUrlExists));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.authorizer.require_admin(&metadata).await?;
        if let Decider::Leader(mut leader) = self.decider().await? {
            let mut response = leader.member_add(super::with_token(request, &metadata)).await?.into_inner();
            self.relay(&mut response.header, &mut response.members).await?;
            return Ok(Response::new(response));
        }
        let change = MembershipRequest::Add { peer_urls: request.peer_ur_ls, is_learner: request.is_learner };
        let member = self.change(change).await?;
        Ok(Response::new(MemberAddResponse { header: self.header(), member, members: self.member_list() }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.authorizer.require_admin(&metadata).await?;
        if let Decider::Leader(mut leader) = self.decider().await? {
            let mut response = leader.member_remove(super::with_token(request, &metadata)).await?.into_inner();
            self.relay(&mut response.header, &mut response.members).await?;
            return Ok(Response::new(response));
        }
        self.change(MembershipRequest::Remove { id: request.id }).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.header(), members: self.member_list() }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.authorizer.require_admin(request.metadata()).await?;
        let mut request = request.into_inner();
        request.peer_ur_ls.sort();
        request.peer_ur_ls.dedup();
        self.check_update(&request).await?;
        let command = kv::Command::new(kv::Operation::MemberUpdate(request));
        self.handle.write(command).await.map_err(status_from_server_error)?;
        Ok(Response::new(MemberUpdateResponse { header: self.header(), members: self.member_list() }))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.handle.read_barrier().await.map_err(status_from_server_error)?;
        }
        Ok(Response::new(MemberListResponse { header: self.header(), members: self.member_list() }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let (metadata, _, request) = request.into_parts();
        self.authorizer.require_admin(&metadata).await?;
        if let Decider::Leader(mut leader) = self.decider().await? {
            let mut response = leader.member_promote(super::with_token(request, &metadata)).await?.into_inner();
            self.relay(&mut response.header, &mut response.members).await?;
            return Ok(Response::new(response));
        }
        self.change(MembershipRequest::Promote { id: request.id }).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.header(), members: self.member_list() }))
    }
}
