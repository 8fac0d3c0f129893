//! Cluster membership changes, as etcd's Cluster and Maintenance.MoveLeader services
//! offer them: add (voter or learner), remove, promote a caught-up learner, move the
//! leader, and a new member joining a running cluster.
//!
//! How a change travels: the leader checks the request against its member table, Raft
//! configuration and follower progress (etcd's checks and error texts, see
//! [`MembershipError`] and `checks.rs`), then proposes a Raft configuration change whose
//! context is a [`kv::MemberChange`] (id, name, peer URLs, learner flag). Every replica
//! applies the committed entry (`apply.rs`) to its member table (in the kv store, so it
//! travels in snapshots) and to its peer set; the Raft loop then tells the transport the
//! new peer set. A member that applies its own removal stops (`requests.rs`).
//!
//! A member that joins (`--initial-cluster-state existing` with an empty data dir) asks
//! the running members for `GET /members` on their peer URLs (served by
//! [`crate::transport`]), learns the cluster id and its own member id (by its peer URLs),
//! and starts with an empty Raft configuration: the leader brings it up to date by log or
//! snapshot (`join.rs`).
//!
//! # Every copy of membership, and its one writer
//!
//! Membership has one writer: the Raft loop. Network tasks (peer connections, the peer
//! HTTP handlers) only read these copies, and report what they see as inputs
//! ([`crate::transport::PeerObservation`], handled by [`Membership::observe`]):
//!
//! | copy | what it holds | written by |
//! |---|---|---|
//! | the core's `ConfState` (`raft::RawNode`) | voters and learners | the loop, applying a configuration entry (or a snapshot) in the core |
//! | `kv::Store` members and removed members | the member table, in snapshots | the loop, applying ([`Membership::apply_entry`], a MemberUpdate, a restore) |
//! | [`MemberTable`] (`PeerDirectory::members`) | the store's table, readable from any thread | the loop, after each apply or restore; [`Membership::observe`] for a peer's removal notice |
//! | `Membership::peers` | whom to dial: id → `host:port` | the loop, applying (see `apply.rs`) |
//! | `PeerDirectory::peers` and the transport's queues | what the transport dials | the loop only, through [`crate::transport::Transport::set_peers`] after the apply batch |
//! | `PeerDirectory::known` | names and client URLs from handshakes | the loop, from [`crate::transport::PeerObservation::Introduced`] |
//! | `PeerDirectory::unreachable` | peers that cannot be dialled | the loop, from [`crate::transport::PeerObservation::Reachable`] |
//!
//! Reports travel on bounded queues and never block a network task: a full queue drops the
//! report and counts it (`raftkv_inbound_messages_dropped_total`).

mod apply;
mod checks;
mod join;
mod observed;
mod requests;
mod table;

pub use apply::Applied;
pub use join::{
    fetch_cluster, new_member_id, parse_members_response, peer_http_get, resolve_identity, seed_members, ClusterInfo,
    Identity, IDENTITY_FILE,
};
pub use table::{members_json, members_with_urls, MemberTable};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proto::etcdserverpb::Member;

use crate::handle::ServerError;
use crate::transport::{PeerDirectory, Transport};

/// Learners a cluster may have at once (etcd's default `--max-learners`).
pub const LEARNERS_MAX: usize = 1;

/// A membership request, handled by the leader's Raft loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipRequest {
    /// etcd MemberAdd.
    Add {
        /// Peer URLs of the new member.
        peer_urls: Vec<String>,
        /// Add as a non-voting learner.
        is_learner: bool,
    },
    /// etcd MemberRemove.
    Remove {
        /// Member to remove.
        id: u64,
    },
    /// etcd MemberPromote.
    Promote {
        /// Learner to make a voter.
        id: u64,
    },
    /// etcd Maintenance.MoveLeader.
    MoveLeader {
        /// The voter to hand leadership to.
        target: u64,
    },
}

/// Why a membership request failed: etcd's errors, with etcd's texts and gRPC codes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// No such member (or it was removed).
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// Another member already uses one of the peer URLs.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// Peer URLs missing or not `http://host:port`.
    #[error("etcdserver: given member URLs are invalid")]
    BadUrls,
    /// Promotion of a member that already votes.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Promotion of a learner that has not caught up with the leader.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// The cluster already has [`LEARNERS_MAX`] learners.
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    /// Too few started members to keep a quorum after the change (strict reconfig check).
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Removing the member would leave fewer active voters than a quorum.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// An earlier membership change has not completed yet; retry.
    #[error("etcdserver: a membership change is already in progress")]
    ChangeInProgress,
    /// MoveLeader to a member that is not a voter or not this cluster's.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// MoveLeader sent to a member that does not lead.
    #[error("etcdserver: not leader")]
    NotLeader,
    /// The request could not be served (no leader, timeout, ...).
    #[error("{0}")]
    Server(ServerError),
}

impl MembershipError {
    /// The gRPC code etcd answers with (for [`MembershipError::Server`], see the services'
    /// mapping of [`ServerError`]).
    pub fn grpc_code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            MembershipError::MemberNotFound => Code::NotFound,
            MembershipError::BadUrls => Code::InvalidArgument,
            MembershipError::Unhealthy | MembershipError::ChangeInProgress | MembershipError::NotLeader => {
                Code::Unavailable
            }
            MembershipError::Server(_) => Code::Unavailable,
            _ => Code::FailedPrecondition,
        }
    }
}

/// What the leader answers to a request once it took effect.
pub type MembershipAnswer = Result<Option<Member>, MembershipError>;

/// The Raft loop's membership state: requests waiting for their change to apply, the peer
/// set the transport is to dial, and the loop's write access to the member table and the
/// peer directory. Owned by the Raft loop: every method runs on it.
pub struct Membership {
    /// The tables network tasks read; written only through this (by the Raft loop).
    directory: Arc<PeerDirectory>,
    /// Every other member to dial (id → `host:port`), as the applied members say (at start:
    /// what the transport dials, with `--peer-dial-overrides`). Written only by the Raft
    /// loop (apply, restore, member update); never holds this node's id.
    peers: BTreeMap<u64, String>,
    /// Set when `peers` changed and the transport has not been told yet
    /// ([`Membership::take_peer_change`]).
    peers_changed: bool,
    cluster_token: String,
    waiting: Vec<requests::Waiting>,
    /// Set once this member applied its own removal: the tick at which the loop stops.
    stop_at_tick: Option<u64>,
    removed_self: bool,
    /// Learners this leader adds as voters once they caught up: members added as voters to
    /// a one-voter cluster, which join as learners first (see `catches_up_first`). At most
    /// [`LEARNERS_MAX`]; kept by the leader that added them only (after a leader change,
    /// `etcdctl member promote` finishes the job).
    promote_when_caught_up: BTreeSet<u64>,
    /// `--strict-reconfig-check` (etcd's default true): refuse changes that would leave too few
    /// started members for a quorum; false skips those checks.
    pub strict_reconfig_check: bool,
}

impl Membership {
    /// Membership for the loop that owns `transport`: the peer set starts as what
    /// `transport` dials. Membership never calls the transport afterwards; the loop hands it
    /// [`Membership::take_peer_change`].
    pub fn new(directory: Arc<PeerDirectory>, transport: Transport, cluster_token: String) -> Membership {
        let peers = transport.peers();
        assert!(!peers.contains_key(&directory.local_id), "a node is not its own peer");
        Membership {
            directory,
            peers,
            peers_changed: false,
            cluster_token,
            waiting: Vec::new(),
            stop_at_tick: None,
            removed_self: false,
            promote_when_caught_up: BTreeSet::new(),
            strict_reconfig_check: true,
        }
    }
}
