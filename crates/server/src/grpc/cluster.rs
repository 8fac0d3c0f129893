//! `etcdserverpb.Cluster`: MemberList. MemberAdd, MemberRemove, MemberUpdate and
//! MemberPromote answer `Unimplemented` until membership changes are supported.

use proto::etcdserverpb::{cluster_server::Cluster, Member, MemberListRequest, MemberListResponse};
use tonic::{Request, Response, Status};

use super::status::status_from_server_error;
use crate::handle::NodeHandle;

/// etcd's `Cluster` service over a node.
#[derive(Clone)]
pub struct ClusterService {
    handle: NodeHandle,
    authorizer: super::auth::Authorizer,
}

impl ClusterService {
    /// A service for `handle`.
    pub fn new(handle: NodeHandle) -> ClusterService {
        let authorizer = super::auth::Authorizer::new(handle.clone());
        ClusterService { handle, authorizer }
    }

    /// Checks permissions with `authorizer`: while auth is enabled every membership
    /// change needs root (as etcd); a change forwarded to the leader carries the token.
    pub fn with_authorizer(mut self, authorizer: super::auth::Authorizer) -> ClusterService {
        self.authorizer = authorizer;
        self
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.handle.read_barrier().await.map_err(status_from_server_error)?;
        }
        let members = self
            .handle
            .members()
            .into_iter()
            .map(|member| Member {
                id: member.id,
                name: member.name,
                peer_ur_ls: member.peer_urls,
                client_ur_ls: member.client_urls,
                is_learner: member.is_learner,
            })
            .collect();
        let header = Some(self.handle.header(self.handle.status().revision));
        Ok(Response::new(MemberListResponse { header, members }))
    }
}
