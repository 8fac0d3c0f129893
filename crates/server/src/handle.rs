//! The interface the client-facing services (gRPC, dashboard) use to reach the node.
//!
//! Everything here is cheap to clone and safe to share between tasks.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::lessor::Lessor;
use crate::watch::AppliedEvents;

/// Why a request could not be served. Each maps to the gRPC status etcd uses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// No leader is known right now (etcd: Unavailable "etcdserver: no leader").
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The leader changed while the request was in flight; its outcome is unknown
    /// (etcd: Unavailable "etcdserver: leader changed").
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// The request did not complete in time; it may still be applied
    /// (etcd: Unavailable "etcdserver: request timed out").
    #[error("etcdserver: request timed out")]
    Timeout,
    /// Too many requests in flight (etcd: ResourceExhausted "etcdserver: too many requests").
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// This member's disk is full: it cannot make writes durable until space is freed
    /// (ResourceExhausted; etcd itself stops on a failed WAL write).
    #[error("etcdserver: no space left on device")]
    DiskFull,
    /// The request exceeds the size limit (etcd: InvalidArgument "etcdserver: request is too large").
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The node is stopping.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The state machine refused the command (carries etcd's error).
    #[error("{}", .0.message())]
    Kv(kv::Error),
}

/// A cluster member, as `Cluster.MemberList` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Member id (etcd prints it in hex).
    pub id: u64,
    /// `--name`.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (known for this node; for others as far as learned).
    pub client_urls: Vec<String>,
    /// True for a non-voting learner.
    pub is_learner: bool,
}

/// A snapshot of the node's Raft and store state, for `Maintenance.Status`, headers and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// This member's id.
    pub member_id: u64,
    /// The cluster id.
    pub cluster_id: u64,
    /// Current leader, 0 if unknown.
    pub leader: u64,
    /// Current Raft term.
    pub term: u64,
    /// Raft commit index.
    pub commit_index: u64,
    /// Raft applied index.
    pub applied_index: u64,
    /// Store revision.
    pub revision: i64,
    /// Approximate bytes of data on disk.
    pub db_size_bytes: i64,
    /// True for a learner.
    pub is_learner: bool,
}

/// The node as the services see it. Obtained from the running node.
#[derive(Clone)]
pub struct NodeHandle {
    pub(crate) inner: Arc<dyn NodeApi>,
}

/// What a running node offers its services. Implemented by the raft loop.
pub trait NodeApi: Send + Sync + 'static {
    /// Replicates `command` through Raft and returns the state machine's answer once
    /// applied on this node. A command without a request id gets one from this node.
    fn write(&self, command: kv::Command) -> futures::future::BoxFuture<'static, Result<kv::Response, ServerError>>;
    /// Returns once this node's store has applied everything committed before the call
    /// (ReadIndex, R7): reads made after it are linearizable.
    fn read_barrier(&self) -> futures::future::BoxFuture<'static, Result<(), ServerError>>;
    /// The newest read view of the store: a consistent state as of an apply batch, which
    /// never waits for (nor delays) apply. Serializable as it is; linearizable when taken
    /// after `read_barrier` returned (the loop publishes a view before it answers).
    fn read_view(&self) -> Arc<kv::Store>;
    /// Current status.
    fn status(&self) -> NodeStatus;
    /// Current members.
    fn members(&self) -> Vec<Member>;
    /// A subscription to the events of every revision applied from now on (see
    /// [`crate::watch`]).
    fn watch_events(&self) -> broadcast::Receiver<Arc<AppliedEvents>>;
    /// Lease deadlines (kept on the leader only; see [`crate::lessor`]).
    fn lessor(&self) -> Arc<Lessor>;
    /// This member's auth settings (`--auth-token`, `--auth-token-ttl`, `--bcrypt-cost`).
    fn auth_settings(&self) -> Arc<crate::auth_tokens::AuthSettings> {
        Arc::new(crate::auth_tokens::AuthSettings::default())
    }
    /// How often idle watchers created with `progress_notify` get a progress
    /// notification (`--experimental-watch-progress-notify-interval`, etcd: 10 minutes).
    fn watch_progress_notify_interval(&self) -> std::time::Duration {
        crate::watch::PROGRESS_NOTIFY_INTERVAL_DEFAULT
    }
    /// This member's metrics (none for nodes without any, e.g. in unit tests).
    fn metrics(&self) -> Option<Arc<crate::metrics::Metrics>> {
        None
    }
    /// `--election-timeout` (etcd's default: 1 s): how often a member without a leader
    /// checks before canceling the watch streams that require one.
    fn election_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    /// Hands a membership request to this node's Raft loop, which must lead (see
    /// [`crate::membership`]); answers once the change applied on this node.
    fn change_membership(
        &self,
        request: crate::membership::MembershipRequest,
    ) -> futures::future::BoxFuture<'static, crate::membership::MembershipAnswer> {
        let _ = request;
        Box::pin(async { Err(crate::membership::MembershipError::Server(ServerError::Stopped)) })
    }
}

impl NodeHandle {
    /// Wraps a node implementation.
    pub fn new(inner: Arc<dyn NodeApi>) -> Self {
        NodeHandle { inner }
    }

    /// See [`NodeApi::write`].
    pub async fn write(&self, command: kv::Command) -> Result<kv::Response, ServerError> {
        self.inner.write(command).await
    }

    /// See [`NodeApi::read_barrier`].
    pub async fn read_barrier(&self) -> Result<(), ServerError> {
        self.inner.read_barrier().await
    }

    /// See [`NodeApi::read_view`].
    pub fn read_view(&self) -> Arc<kv::Store> {
        self.inner.read_view()
    }

    /// See [`NodeApi::status`].
    pub fn status(&self) -> NodeStatus {
        self.inner.status()
    }

    /// See [`NodeApi::members`].
    pub fn members(&self) -> Vec<Member> {
        self.inner.members()
    }

    /// See [`NodeApi::watch_events`].
    pub fn watch_events(&self) -> broadcast::Receiver<Arc<AppliedEvents>> {
        self.inner.watch_events()
    }

    /// See [`NodeApi::lessor`].
    pub fn lessor(&self) -> Arc<Lessor> {
        self.inner.lessor()
    }

    /// See [`NodeApi::auth_settings`].
    pub fn auth_settings(&self) -> Arc<crate::auth_tokens::AuthSettings> {
        self.inner.auth_settings()
    }

    /// See [`NodeApi::watch_progress_notify_interval`].
    pub fn watch_progress_notify_interval(&self) -> std::time::Duration {
        self.inner.watch_progress_notify_interval()
    }

    /// See [`NodeApi::metrics`].
    pub fn metrics(&self) -> Option<Arc<crate::metrics::Metrics>> {
        self.inner.metrics()
    }

    /// See [`NodeApi::election_timeout`].
    pub fn election_timeout(&self) -> std::time::Duration {
        self.inner.election_timeout()
    }

    /// See [`NodeApi::change_membership`].
    pub async fn change_membership(
        &self,
        request: crate::membership::MembershipRequest,
    ) -> crate::membership::MembershipAnswer {
        self.inner.change_membership(request).await
    }

    /// etcd's response header for this node at store revision `revision`.
    pub fn header(&self, revision: i64) -> proto::etcdserverpb::ResponseHeader {
        let status = self.status();
        proto::etcdserverpb::ResponseHeader {
            cluster_id: status.cluster_id,
            member_id: status.member_id,
            revision,
            raft_term: status.term,
        }
    }
}
