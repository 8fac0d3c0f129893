//! Cluster membership changes, as etcd's Cluster and Maintenance.MoveLeader services
//! offer them: add (voter or learner), remove, promote a caught-up learner, move the
//! leader, and a new member joining a running cluster.
//!
//! How a change travels: the leader checks the request against its member table, Raft
//! configuration and follower progress (etcd's checks and error texts, see
//! [`MembershipError`]), then proposes a Raft configuration change whose context is a
//! [`kv::MemberChange`] (id, name, peer URLs, learner flag). Every replica applies the
//! committed entry to its member table (in the kv store, so it travels in snapshots) and
//! to its peer transport; a member that applies its own removal stops.
//!
//! A member that joins (`--initial-cluster-state existing` with an empty data dir) asks
//! the running members for `GET /members` on their peer URLs (served by
//! [`crate::transport`]), learns the cluster id and its own member id (by its peer URLs),
//! and starts with an empty Raft configuration: the leader brings it up to date by log or
//! snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proto::etcdserverpb::Member;
use raft::{ConfChange, ConfChangeKind, ConfChangeSingle, ConfState, ProgressState, RawNode, Role, Storage};
use tokio::sync::oneshot;

use crate::handle::ServerError;
use crate::transport::{PeerDirectory, Transport};

/// Learners a cluster may have at once (etcd's default `--max-learners`).
pub const LEARNERS_MAX: usize = 1;
/// Membership requests waiting on one node at most.
const WAITING_REQUESTS_MAX: usize = 64;
/// A learner is ready for promotion once it has at least this share (per mille) of the
/// leader's log, as etcd requires (90 %).
const LEARNER_READY_PER_MILLE: u64 = 900;

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

/// The member table as this node applied it, shared with the transport (which refuses
/// removed members and serves `GET /members`) and the client services.
#[derive(Clone, Debug, Default)]
pub struct MemberTable {
    inner: Arc<std::sync::RwLock<TableState>>,
}

#[derive(Debug, Default)]
struct TableState {
    members: Vec<Member>,
    removed: BTreeSet<u64>,
}

impl MemberTable {
    /// Replaces the table with the store's.
    pub fn refresh(&self, store: &kv::Store) {
        let mut state = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.members = store.members().cloned().collect();
        state.removed = store.removed_members().collect();
    }

    /// Records a removed member.
    pub fn mark_removed(&self, id: u64) {
        let mut state = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.removed.insert(id);
        state.members.retain(|member| member.id != id);
    }

    /// The members (without client URLs), ordered by id.
    pub fn members(&self) -> Vec<Member> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).members.clone()
    }

    /// True if `id` is a learner (read in place: every response header asks).
    pub fn is_learner(&self, id: u64) -> bool {
        let state = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.members.iter().any(|member| member.id == id && member.is_learner)
    }

    /// True if `id` was removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).removed.contains(&id)
    }
}

/// The member list with client URLs and names filled in from what members told this node
/// about themselves (their handshakes) and from this node's own flags.
pub fn members_with_urls(directory: &PeerDirectory) -> Vec<Member> {
    let known = directory.known.read().map(|known| known.clone()).unwrap_or_default();
    directory
        .members
        .members()
        .into_iter()
        .map(|mut member| {
            if let Some(info) = known.get(&member.id) {
                member.client_ur_ls = info.client_urls.clone();
                if member.name.is_empty() {
                    member.name = info.name.clone();
                }
            }
            member
        })
        .collect()
}

/// The body of `GET /members` on the peer port: a JSON array of members.
pub fn members_json(directory: &PeerDirectory) -> String {
    let members: Vec<serde_json::Value> = members_with_urls(directory)
        .into_iter()
        .map(|member| {
            serde_json::json!({
                "id": member.id,
                "name": member.name,
                "peerURLs": member.peer_ur_ls,
                "clientURLs": member.client_ur_ls,
                "isLearner": member.is_learner,
            })
        })
        .collect();
    serde_json::Value::Array(members).to_string()
}

/// What a joining member learns from a running one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster id.
    pub cluster_id: u64,
    /// The members, this one included (it was added by `member add`).
    pub members: Vec<Member>,
}

/// Asks the members at `peer_urls` (`http://host:port`, or `https://` with `tls`) for
/// `GET /members`, trying each in turn until one answers or `timeout` has passed.
pub async fn fetch_cluster(
    peer_urls: &[String],
    tls: Option<&tokio_rustls::TlsConnector>,
    timeout: Duration,
) -> Result<ClusterInfo, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("no peer URL to ask");
    loop {
        for url in peer_urls {
            let address = crate::config::parse_url(url)?;
            let attempt = tokio::time::timeout(Duration::from_secs(2), fetch_members_once(&address, tls)).await;
            match attempt {
                Ok(Ok(info)) => return Ok(info),
                Ok(Err(error)) => last_error = format!("{url}: {error}"),
                Err(_) => last_error = format!("{url}: no answer within 2 s"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("cannot fetch the member list of the running cluster ({last_error})"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn fetch_members_once(address: &str, tls: Option<&tokio_rustls::TlsConnector>) -> Result<ClusterInfo, String> {
    parse_members_response(&peer_http_get(address, tls, "/members").await?)
}

/// `GET path` on a member's peer port (`address` is `host:port`; TLS with `tls`): the
/// whole HTTP answer, at most 4 MiB. The peer port answers these few requests itself
/// (see `transport.rs`), one per connection.
pub async fn peer_http_get(
    address: &str,
    tls: Option<&tokio_rustls::TlsConnector>,
    path: &str,
) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const RESPONSE_BYTES_MAX: u64 = 4 << 20;
    assert!(path.starts_with('/') && !path.contains(char::is_whitespace), "a request path");
    let stream = tokio::net::TcpStream::connect(address).await.map_err(|error| error.to_string())?;
    let mut stream =
        crate::tls::MaybeTlsStream::connect(stream, address, tls).await.map_err(|error| error.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|error| error.to_string())?;
    let mut response = Vec::new();
    stream.take(RESPONSE_BYTES_MAX).read_to_end(&mut response).await.map_err(|error| error.to_string())?;
    Ok(response)
}

/// Parses the HTTP answer to `GET /members`.
pub fn parse_members_response(response: &[u8]) -> Result<ClusterInfo, String> {
    let split = response.windows(4).position(|window| window == b"\r\n\r\n").ok_or("truncated HTTP response")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("answered {}", head.lines().next().unwrap_or_default()));
    }
    let cluster_id = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("x-etcd-cluster-id"))
        .and_then(|(_, value)| u64::from_str_radix(value.trim(), 16).ok())
        .ok_or("no X-Etcd-Cluster-ID header")?;
    let entries: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let strings = |value: &serde_json::Value| -> Vec<String> {
        value.as_array().into_iter().flatten().filter_map(|url| url.as_str().map(str::to_string)).collect()
    };
    let mut members = Vec::new();
    for entry in entries {
        let id = entry["id"].as_u64().filter(|id| *id != 0).ok_or("member without id")?;
        members.push(Member {
            id,
            name: entry["name"].as_str().unwrap_or_default().to_string(),
            peer_ur_ls: strings(&entry["peerURLs"]),
            client_ur_ls: strings(&entry["clientURLs"]),
            is_learner: entry["isLearner"].as_bool().unwrap_or(false),
        });
    }
    Ok(ClusterInfo { cluster_id, members })
}

/// The id of a member added now: a hash of its peer URLs, the cluster token and the time
/// (as etcd), so a replacement at the same URLs gets a new id.
pub fn new_member_id(sorted_peer_urls: &[String], cluster_token: &str) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    crate::config::member_id(sorted_peer_urls, &format!("{cluster_token}/{nanos}"))
}

struct Waiting {
    /// The member whose change (or leadership) we wait for.
    member_id: u64,
    /// MoveLeader waits for leadership instead of an applied change.
    transfer: bool,
    respond: oneshot::Sender<MembershipAnswer>,
    deadline_tick: u64,
}

/// What applying a committed configuration entry did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// This member was removed: it must stop.
    pub removed_self: bool,
}

/// Ticks a removed member keeps running after applying its removal, so its last answers
/// and the commit index reach the others before it stops.
const REMOVED_LINGER_TICKS: u64 = 10;

/// The Raft loop's membership state: requests waiting for their change to apply and the
/// transport and member table to update.
pub struct Membership {
    directory: Arc<PeerDirectory>,
    transport: Transport,
    cluster_token: String,
    waiting: Vec<Waiting>,
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
    /// Membership for the loop that owns `transport`.
    pub fn new(directory: Arc<PeerDirectory>, transport: Transport, cluster_token: String) -> Membership {
        Membership {
            directory,
            transport,
            cluster_token,
            waiting: Vec::new(),
            stop_at_tick: None,
            removed_self: false,
            promote_when_caught_up: BTreeSet::new(),
            strict_reconfig_check: true,
        }
    }

    /// Checks `request` and, when valid, proposes it (or starts the leader transfer); the
    /// answer goes to `respond` once the change applied here, or fails at `deadline_tick`.
    pub fn handle<S: Storage>(
        &mut self,
        node: &mut RawNode<S>,
        store: &kv::Store,
        request: MembershipRequest,
        respond: oneshot::Sender<MembershipAnswer>,
        deadline_tick: u64,
    ) {
        if self.waiting.len() >= WAITING_REQUESTS_MAX {
            let _ = respond.send(Err(MembershipError::Server(ServerError::TooManyRequests)));
            return;
        }
        let started = self.started_members(node.id());
        let outcome = match &request {
            MembershipRequest::MoveLeader { target } => start_transfer(node, *target).map(|()| (*target, None)),
            _ => plan_change(node, store, &request, &started, self.strict_reconfig_check, &self.cluster_token)
                .and_then(|(change, member)| propose(node, change).map(|()| (member.id, Some(member)))),
        };
        match outcome {
            Ok((member_id, member)) => {
                let wants_voter = matches!(request, MembershipRequest::Add { is_learner: false, .. });
                if wants_voter && member.is_some_and(|member| member.is_learner) {
                    self.promote_when_caught_up.insert(member_id);
                    assert!(self.promote_when_caught_up.len() <= LEARNERS_MAX, "one learner at a time");
                }
                let transfer = matches!(request, MembershipRequest::MoveLeader { .. });
                self.waiting.push(Waiting { member_id, transfer, respond, deadline_tick });
            }
            Err(error) => {
                let _ = respond.send(Err(error));
            }
        }
    }

    /// Members known to have started: this node and every peer that connected to it.
    fn started_members(&self, local_id: u64) -> BTreeSet<u64> {
        let known = self.directory.known.read().map(|known| known.keys().copied().collect()).unwrap_or_default();
        let mut started: BTreeSet<u64> = known;
        started.insert(local_id);
        started
    }

    /// Applies committed configuration entry `entry` to `store`'s member table, the
    /// transport and waiting requests.
    pub fn apply_entry(&mut self, store: &mut kv::Store, entry: &raft::Entry) -> Applied {
        let change = match ConfChange::decode(&entry.data) {
            Ok(change) => change,
            Err(error) => {
                tracing::error!(index = entry.index, %error, "undecodable configuration entry; skipped");
                store.advance_applied_index(entry.index);
                return Applied::default();
            }
        };
        if change.changes.is_empty() || change.context.is_empty() {
            // Leaving a joint configuration: nothing changes in the member table.
            store.advance_applied_index(entry.index);
            return Applied::default();
        }
        let member_change = match kv::MemberChange::decode(&change.context) {
            Ok(member_change) => member_change,
            Err(error) => {
                tracing::error!(index = entry.index, %error, "configuration entry without member metadata");
                store.advance_applied_index(entry.index);
                return Applied::default();
            }
        };
        store.apply_member_change(entry.index, &member_change);
        self.directory.members.refresh(store);
        self.after_change(store, &member_change)
    }

    fn after_change(&mut self, store: &kv::Store, change: &kv::MemberChange) -> Applied {
        let id = change.member.id;
        let local = self.directory.local_id;
        match change.action {
            kv::MemberAction::Add => {
                tracing::info!(member = %format!("{id:x}"), peer_urls = ?change.member.peer_ur_ls, learner = change.member.is_learner, "added member");
                if let Some(address) =
                    change.member.peer_ur_ls.first().and_then(|url| crate::config::parse_url(url).ok())
                {
                    self.transport.add_peer(id, address);
                }
            }
            kv::MemberAction::Remove => {
                tracing::info!(member = %format!("{id:x}"), "removed member");
                self.transport.remove_peer(id);
            }
            kv::MemberAction::Promote => tracing::info!(member = %format!("{id:x}"), "promoted learner to voter"),
        }
        if change.action != kv::MemberAction::Add {
            self.promote_when_caught_up.remove(&id);
        }
        let member = store.member(id).cloned();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|waiting| !waiting.transfer && waiting.member_id == id);
        self.waiting = waiting;
        for waiting in done {
            let _ = waiting.respond.send(Ok(member.clone().or_else(|| Some(change.member.clone()))));
        }
        let removed_self = change.action == kv::MemberAction::Remove && id == local;
        if removed_self {
            tracing::warn!("this member has been removed from the cluster; stopping");
            self.removed_self = true;
        }
        Applied { removed_self }
    }

    /// True if a learner waits to be promoted once caught up (the loop then calls
    /// [`Membership::promote_caught_up_learners`] on its ticks).
    pub fn has_learners_to_promote(&self) -> bool {
        !self.promote_when_caught_up.is_empty()
    }

    /// Leader: proposes the promotion of every learner in `promote_when_caught_up` whose
    /// log caught up (the checks of `etcdctl member promote`); one still behind, or a change
    /// in progress, is tried again on a later tick. A member no longer a learner (promoted
    /// or removed by hand) or a lost leadership drops the plan.
    pub fn promote_caught_up_learners<S: Storage>(&mut self, node: &mut RawNode<S>, store: &kv::Store) {
        if node.role() != Role::Leader {
            self.promote_when_caught_up.clear();
            return;
        }
        let learners = store.members().filter(|member| member.is_learner).map(|member| member.id).collect();
        let learners: BTreeSet<u64> = learners;
        self.promote_when_caught_up.retain(|id| learners.contains(id));
        let started = self.started_members(node.id());
        for id in self.promote_when_caught_up.clone() {
            let request = MembershipRequest::Promote { id };
            let planned = plan_change(node, store, &request, &started, self.strict_reconfig_check, &self.cluster_token);
            let Ok((change, _)) = planned else { continue };
            match propose(node, change) {
                Ok(()) => tracing::info!(member = %format!("{id:x}"), "learner caught up; promoting it to voter"),
                Err(error) => tracing::debug!(member = %format!("{id:x}"), ?error, "promotion deferred"),
            }
        }
    }

    /// Brings the member table, the transport's peers and this member's own removal in line
    /// with `store` after a snapshot from the leader replaced it. The snapshot may cover
    /// configuration entries this member never applied one by one (members added, removed
    /// or moved while it was behind).
    pub fn after_restore(&mut self, store: &kv::Store) {
        let local = self.directory.local_id;
        if store.members().next().is_none() {
            // A snapshot without a member table (nothing was ever recorded): keep what we have.
            tracing::warn!("restored snapshot holds no member table; keeping the current peers");
            return;
        }
        self.directory.members.refresh(store);
        let wanted: BTreeMap<u64, String> = store
            .members()
            .filter(|member| member.id != local)
            .filter_map(|member| {
                let address = member.peer_ur_ls.first().and_then(|url| crate::config::parse_url(url).ok())?;
                Some((member.id, address))
            })
            .collect();
        let current = self.directory.peers.read().map(|peers| peers.clone()).unwrap_or_default();
        for peer in current.keys().filter(|peer| !wanted.contains_key(peer)) {
            tracing::info!(member = %format!("{peer:x}"), "member removed in the restored snapshot");
            self.transport.remove_peer(*peer);
        }
        for (peer, address) in wanted.iter().filter(|(peer, address)| current.get(peer) != Some(address)) {
            tracing::info!(member = %format!("{peer:x}"), %address, "member added in the restored snapshot");
            self.transport.add_peer(*peer, address.clone());
        }
        if store.is_removed_member(local) && !self.removed_self {
            tracing::warn!("this member has been removed from the cluster (restored snapshot); stopping");
            self.removed_self = true;
        }
        let peers = self.directory.peers.read().map(|peers| peers.len()).unwrap_or_default();
        assert!(peers <= wanted.len(), "transport peers are a subset of the restored members");
    }

    /// Updates a member's address after a MemberUpdate applied.
    pub fn apply_update(&mut self, store: &kv::Store, id: u64) {
        self.directory.members.refresh(store);
        let address = store.member(id).and_then(|member| member.peer_ur_ls.first().cloned());
        if let Some(address) = address.and_then(|url| crate::config::parse_url(&url).ok()) {
            if id != self.directory.local_id {
                self.transport.add_peer(id, address);
            }
        }
    }

    /// True once the Raft loop must stop: this member was removed a little while ago.
    pub fn should_stop(&self, now_tick: u64) -> bool {
        self.stop_at_tick.is_some_and(|stop_at_tick| now_tick >= stop_at_tick)
    }

    /// Answers transfers that ended (the target leads: done; another member leads: failed,
    /// "leader changed") and requests past their deadline.
    pub fn on_tick(&mut self, now_tick: u64, leader: u64) {
        if !self.removed_self && self.directory.members.is_removed(self.directory.local_id) {
            // A peer refused this member's messages: it was removed while down or cut off.
            tracing::warn!("this member has been removed from the cluster (told by a peer); stopping");
            self.removed_self = true;
        }
        if self.removed_self && self.stop_at_tick.is_none() {
            self.stop_at_tick = Some(now_tick + REMOVED_LINGER_TICKS);
        }
        let local = self.directory.local_id;
        let outcome = |waiting: &Waiting| -> Option<MembershipAnswer> {
            if waiting.transfer && waiting.member_id == leader {
                Some(Ok(None))
            } else if waiting.transfer && leader != raft::NO_NODE && leader != local {
                Some(Err(MembershipError::Server(ServerError::LeaderChanged)))
            } else if waiting.deadline_tick <= now_tick {
                Some(Err(MembershipError::Server(ServerError::Timeout)))
            } else {
                None
            }
        };
        let mut still_waiting = Vec::new();
        for waiting in std::mem::take(&mut self.waiting) {
            match outcome(&waiting) {
                Some(answer) => {
                    let _ = waiting.respond.send(answer);
                }
                None => still_waiting.push(waiting),
            }
        }
        self.waiting = still_waiting;
    }
}

fn start_transfer<S: Storage>(node: &mut RawNode<S>, target: u64) -> Result<(), MembershipError> {
    if node.role() != Role::Leader {
        return Err(MembershipError::NotLeader);
    }
    if !node.conf_state().voters.contains(&target) {
        return Err(MembershipError::BadLeaderTransferee);
    }
    if target == node.id() {
        return Ok(());
    }
    node.transfer_leader(target).map_err(|error| match error {
        raft::ProposeError::InvalidConfChange(_) => MembershipError::BadLeaderTransferee,
        other => propose_error(other),
    })
}

fn propose<S: Storage>(node: &mut RawNode<S>, change: ConfChange) -> Result<(), MembershipError> {
    node.propose_conf_change(change).map_err(propose_error)
}

fn propose_error(error: raft::ProposeError) -> MembershipError {
    match error {
        raft::ProposeError::ConfChangePending => MembershipError::ChangeInProgress,
        raft::ProposeError::InvalidConfChange(reason) => {
            tracing::warn!(%reason, "the core refused a membership change");
            MembershipError::Unhealthy
        }
        raft::ProposeError::Busy => MembershipError::Server(ServerError::TooManyRequests),
        raft::ProposeError::TooLarge => MembershipError::Server(ServerError::RequestTooLarge),
        raft::ProposeError::NoLeader | raft::ProposeError::NotLeader { .. } => MembershipError::NotLeader,
    }
}

/// What the leader knows when it checks a request.
struct ClusterView<'a> {
    store: &'a kv::Store,
    conf: ConfState,
    started: &'a BTreeSet<u64>,
    /// `--strict-reconfig-check`: refuse changes that too few started (or active) members would leave.
    strict: bool,
    /// Follower progress: (match index, replicating).
    progress: BTreeMap<u64, (u64, bool)>,
    leader_id: u64,
    last_index: u64,
}

/// Checks `request` as etcd does and builds the configuration change to propose.
fn plan_change<S: Storage>(
    node: &RawNode<S>,
    store: &kv::Store,
    request: &MembershipRequest,
    started: &BTreeSet<u64>,
    strict: bool,
    cluster_token: &str,
) -> Result<(ConfChange, Member), MembershipError> {
    if node.role() != Role::Leader {
        return Err(MembershipError::NotLeader);
    }
    let conf = node.conf_state();
    let progress = conf
        .voters
        .iter()
        .chain(&conf.learners)
        .filter_map(|id| {
            node.progress(*id).map(|view| (*id, (view.match_index, view.state == ProgressState::Replicate)))
        })
        .collect();
    let view =
        ClusterView { store, conf, started, strict, progress, leader_id: node.id(), last_index: node.last_index() };
    check_request(&view, request, cluster_token)
}

fn check_request(
    view: &ClusterView<'_>,
    request: &MembershipRequest,
    cluster_token: &str,
) -> Result<(ConfChange, Member), MembershipError> {
    match request {
        MembershipRequest::Add { peer_urls, is_learner } => check_add(view, peer_urls, *is_learner, cluster_token),
        MembershipRequest::Remove { id } => check_remove(view, *id),
        MembershipRequest::Promote { id } => check_promote(view, *id),
        MembershipRequest::MoveLeader { .. } => unreachable!("handled by start_transfer"),
    }
}

fn conf_change(kind: ConfChangeKind, member: &Member, action: kv::MemberAction) -> ConfChange {
    let context = kv::MemberChange { action, member: member.clone() }.encode();
    ConfChange { changes: vec![ConfChangeSingle { kind, node_id: member.id }], context: context.into() }
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn check_add(
    view: &ClusterView<'_>,
    peer_urls: &[String],
    is_learner: bool,
    cluster_token: &str,
) -> Result<(ConfChange, Member), MembershipError> {
    if peer_urls.is_empty() || peer_urls.iter().any(|url| crate::config::parse_url(url).is_err()) {
        return Err(MembershipError::BadUrls);
    }
    let mut sorted: Vec<String> = peer_urls.to_vec();
    sorted.sort();
    sorted.dedup();
    let in_use = view.store.members().any(|member| member.peer_ur_ls.iter().any(|url| sorted.contains(url)));
    if in_use {
        return Err(MembershipError::PeerUrlExists);
    }
    if is_learner && view.store.members().filter(|member| member.is_learner).count() >= LEARNERS_MAX {
        return Err(MembershipError::TooManyLearners);
    }
    // A one-voter cluster (regrowing after --force-new-cluster or a restore) may grow, as in
    // etcd; the new member first catches up as a learner (see `catches_up_first`).
    let regrowing = !is_learner && view.conf.voters.len() == 1;
    if !is_learner && view.strict && !regrowing {
        let voters = view.conf.voters.len() + 1;
        let started = view.conf.voters.iter().filter(|id| view.started.contains(id)).count();
        if started < quorum(voters) {
            return Err(MembershipError::NotEnoughStartedMembers);
        }
    }
    let as_learner = is_learner || catches_up_first(view, regrowing);
    let id = new_member_id(&sorted, cluster_token);
    let member =
        Member { id, name: String::new(), peer_ur_ls: sorted, client_ur_ls: Vec::new(), is_learner: as_learner };
    let kind = if as_learner { ConfChangeKind::AddLearner } else { ConfChangeKind::AddVoter };
    Ok((conf_change(kind, &member, kv::MemberAction::Add), member))
}

/// Thesis §4.2.1 ("catching up new servers"): a voter added to a one-voter cluster would
/// make the new configuration's quorum need the new member before it has even started (the
/// add itself could not commit, and the cluster would be unavailable until it caught up).
/// It joins as a learner instead and the leader promotes it once it has caught up (see
/// [`Membership::promote_caught_up_learners`]). Not when the cluster already holds its
/// [`LEARNERS_MAX`] learners: then it is added as a voter directly, as etcd does.
fn catches_up_first(view: &ClusterView<'_>, regrowing: bool) -> bool {
    regrowing && view.store.members().filter(|member| member.is_learner).count() < LEARNERS_MAX
}

fn check_remove(view: &ClusterView<'_>, id: u64) -> Result<(ConfChange, Member), MembershipError> {
    let member = view.store.member(id).cloned().ok_or(MembershipError::MemberNotFound)?;
    if view.conf.voters.contains(&id) && view.strict {
        let voters = view.conf.voters.len() - 1;
        let remaining = view.conf.voters.iter().filter(|voter| **voter != id);
        let started = remaining.clone().filter(|voter| view.started.contains(voter)).count();
        if started < quorum(voters) {
            return Err(MembershipError::NotEnoughStartedMembers);
        }
        let active = remaining
            .filter(|voter| {
                **voter == view.leader_id || view.progress.get(voter).is_some_and(|(_, replicating)| *replicating)
            })
            .count();
        if active < quorum(voters) {
            return Err(MembershipError::Unhealthy);
        }
    }
    Ok((conf_change(ConfChangeKind::RemoveNode, &member, kv::MemberAction::Remove), member))
}

fn check_promote(view: &ClusterView<'_>, id: u64) -> Result<(ConfChange, Member), MembershipError> {
    let member = view.store.member(id).cloned().ok_or(MembershipError::MemberNotFound)?;
    if !member.is_learner || !view.conf.learners.contains(&id) {
        return Err(MembershipError::MemberNotLearner);
    }
    let match_index = view.progress.get(&id).map_or(0, |(match_index, _)| *match_index);
    if match_index.saturating_mul(1000) < view.last_index.saturating_mul(LEARNER_READY_PER_MILLE) || match_index == 0 {
        return Err(MembershipError::LearnerNotReady);
    }
    let voters = view.conf.voters.len() + 1;
    let started = view.conf.voters.iter().chain([&id]).filter(|voter| view.started.contains(voter)).count();
    if view.strict && started < quorum(voters) {
        return Err(MembershipError::NotEnoughStartedMembers);
    }
    let promoted = Member { is_learner: false, ..member };
    Ok((conf_change(ConfChangeKind::AddVoter, &promoted, kv::MemberAction::Promote), promoted))
}

/// File in the data dir of a member: its cluster id, member id and name, which
/// `--initial-cluster` cannot tell after the cluster changed (a member joined, or one's
/// peer URLs were updated). As in etcd, `--initial-cluster` and `--initial-cluster-token`
/// are ignored once the data dir holds a member.
pub const IDENTITY_FILE: &str = "member-identity.json";
/// How long a joining member tries to reach the running cluster.
const JOIN_FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Who this node is, once resolved.
pub struct Identity {
    /// The plan with this member's id, the cluster id and the members as the running
    /// cluster knows them.
    pub plan: crate::node::NodePlan,
    /// The running cluster's members when this node joins now (it seeds its member
    /// table with them); `None` otherwise.
    pub joined_members: Option<Vec<Member>>,
    /// On a restart, the members this data dir's member table was first seeded with
    /// (kept in [`IDENTITY_FILE`]): they, not `--initial-cluster`, seed an empty table
    /// again, so a member that joined later gets the real ids of the others.
    pub stored_members: Option<Vec<Member>>,
}

/// Resolves this node's identity: from its data dir if it joined earlier, from the
/// running cluster if it joins now (empty data dir and `--initial-cluster-state
/// existing`), else from `--initial-cluster`.
pub async fn resolve_identity(mut plan: crate::node::NodePlan) -> Result<Identity, String> {
    let identity_path = plan.data_dir.join(IDENTITY_FILE);
    let fresh = !plan.data_dir.join("wal").exists();
    if let Ok(text) = std::fs::read_to_string(&identity_path) {
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|error| format!("{}: {error}", identity_path.display()))?;
        let (Some(cluster_id), Some(member_id)) = (value["cluster_id"].as_u64(), value["member_id"].as_u64()) else {
            return Err(format!("{}: missing cluster_id or member_id", identity_path.display()));
        };
        // A founder's file counts once its WAL exists (a first start that failed early
        // must not pin the ids of a mistyped --initial-cluster).
        if !(fresh && value["source"] == "initial-cluster") {
            check_identity_name(&plan, value["name"].as_str(), cluster_id, member_id)?;
            if (plan.cluster_id, plan.local.id) != (cluster_id, member_id) {
                tracing::info!(
                    member = %format!("{member_id:x}"),
                    cluster = %format!("{cluster_id:x}"),
                    "the data dir holds a member: --initial-cluster and --initial-cluster-token are ignored"
                );
            }
            plan.cluster_id = cluster_id;
            plan.local.id = member_id;
            let stored_members = stored_members(&value, &identity_path)?;
            if let Some(members) = &stored_members {
                plan.members = initial_members(members, &plan.local);
            }
            return Ok(Identity { plan, joined_members: None, stored_members });
        }
    }
    if !fresh || plan.args.initial_cluster_state != "existing" {
        if fresh {
            write_identity(&plan, "initial-cluster", &seed_members(None, &plan))?;
        }
        return Ok(Identity { plan, joined_members: None, stored_members: None });
    }
    let others: Vec<String> = plan
        .members
        .iter()
        .filter(|member| member.name != plan.local.name)
        .flat_map(|member| member.peer_urls.clone())
        .collect();
    let tls = crate::tls::PeerTls::from_args(&plan.args)?;
    let info = match fetch_cluster(&others, tls.connector.as_ref(), JOIN_FETCH_TIMEOUT).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "cannot reach the running cluster; using --initial-cluster's ids");
            return Ok(Identity { plan, joined_members: None, stored_members: None });
        }
    };
    let own = info
        .members
        .iter()
        .find(|member| member.peer_ur_ls.iter().any(|url| plan.local.peer_urls.contains(url)))
        .ok_or_else(|| {
            format!(
                "the running cluster has no member with peer URLs {:?}: add it first (etcdctl member add {} --peer-urls={})",
                plan.local.peer_urls,
                plan.local.name,
                plan.local.peer_urls.join(",")
            )
        })?;
    plan.local.id = own.id;
    plan.cluster_id = info.cluster_id;
    plan.members = initial_members(&info.members, &plan.local);
    write_identity(&plan, "join", &info.members)?;
    tracing::info!(member = %format!("{:x}", own.id), cluster = %format!("{:x}", info.cluster_id), "joining a running cluster");
    Ok(Identity { plan, joined_members: Some(info.members), stored_members: None })
}

/// `members` as a plan's member list; the local member keeps its own `--name`.
fn initial_members(members: &[Member], local: &crate::config::InitialMember) -> Vec<crate::config::InitialMember> {
    members
        .iter()
        .map(|member| crate::config::InitialMember {
            name: if member.id == local.id { local.name.clone() } else { member.name.clone() },
            peer_urls: member.peer_ur_ls.clone(),
            id: member.id,
        })
        .collect()
}

/// The `members` of an identity file (`None` in files written before they were kept).
fn stored_members(value: &serde_json::Value, path: &std::path::Path) -> Result<Option<Vec<Member>>, String> {
    let Some(entries) = value.get("members") else { return Ok(None) };
    let malformed = || format!("{}: malformed members", path.display());
    let entries = entries.as_array().ok_or_else(malformed)?;
    let mut members = Vec::with_capacity(entries.len());
    for entry in entries {
        let id = entry["id"].as_u64().filter(|id| *id != 0).ok_or_else(malformed)?;
        let peer_urls = entry["peer_urls"].as_array().ok_or_else(malformed)?;
        let peer_ur_ls = peer_urls
            .iter()
            .map(|url| url.as_str().map(str::to_string).ok_or_else(malformed))
            .collect::<Result<Vec<_>, _>>()?;
        members.push(Member {
            id,
            name: entry["name"].as_str().unwrap_or_default().to_string(),
            peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: entry["is_learner"].as_bool().unwrap_or(false),
        });
    }
    assert!(members.iter().all(|member| member.id != 0));
    Ok(Some(members))
}

/// Refuses a data dir that holds another member than `--name` (the file names it).
fn check_identity_name(
    plan: &crate::node::NodePlan,
    stored_name: Option<&str>,
    cluster_id: u64,
    member_id: u64,
) -> Result<(), String> {
    match stored_name {
        Some(name) if name != plan.local.name => Err(format!(
            "data dir {} holds member {member_id:x} named '{name}' of cluster {cluster_id:x}, not '{}': \
             check --data-dir, --name and --initial-cluster-token",
            plan.data_dir.display(),
            plan.local.name
        )),
        _ => Ok(()),
    }
}

/// Writes [`IDENTITY_FILE`]; `source` is `join` (ids from the running cluster) or
/// `initial-cluster` (a founder's ids, from the flag).
fn write_identity(plan: &crate::node::NodePlan, source: &str, members: &[Member]) -> Result<(), String> {
    use std::io::Write;
    std::fs::create_dir_all(&plan.data_dir)
        .map_err(|error| format!("data dir {}: {error}", plan.data_dir.display()))?;
    let members: Vec<serde_json::Value> = members
        .iter()
        .map(|member| {
            serde_json::json!({
                "id": member.id, "name": member.name, "peer_urls": member.peer_ur_ls, "is_learner": member.is_learner,
            })
        })
        .collect();
    let text = serde_json::json!({
        "cluster_id": plan.cluster_id, "member_id": plan.local.id, "name": plan.local.name, "source": source,
        "members": members,
    })
    .to_string();
    let path = plan.data_dir.join(IDENTITY_FILE);
    let temporary = plan.data_dir.join(format!("{IDENTITY_FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&plan.data_dir)?.sync_all()
    };
    write().map_err(|error| format!("{}: {error}", path.display()))
}

/// The members to seed an empty member table with: the running cluster's when joining,
/// those kept in [`IDENTITY_FILE`] on a restart, else `--initial-cluster` (founders of a
/// new cluster all seed the same table).
pub fn seed_members(identity_members: Option<&Vec<Member>>, plan: &crate::node::NodePlan) -> Vec<Member> {
    match identity_members {
        Some(members) => members.clone(),
        None => plan
            .members
            .iter()
            .map(|member| Member {
                id: member.id,
                name: member.name.clone(),
                peer_ur_ls: member.peer_urls.clone(),
                client_ur_ls: Vec::new(),
                is_learner: false,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, learner: bool) -> Member {
        Member {
            id,
            name: format!("n{id}"),
            peer_ur_ls: vec![format!("http://127.0.0.1:{}", 2000 + id)],
            client_ur_ls: Vec::new(),
            is_learner: learner,
        }
    }

    fn store_with(members: &[Member]) -> kv::Store {
        let mut store = kv::Store::default();
        store.seed_members(members.iter().cloned());
        store
    }

    fn view<'a>(store: &'a kv::Store, started: &'a BTreeSet<u64>, learners: &[u64]) -> ClusterView<'a> {
        let voters: Vec<u64> = store.members().filter(|member| !member.is_learner).map(|member| member.id).collect();
        let progress = voters.iter().chain(learners).map(|id| (*id, (100, true))).collect();
        ClusterView {
            store,
            conf: ConfState { voters, learners: learners.to_vec(), voters_outgoing: Vec::new() },
            started,
            strict: true,
            progress,
            leader_id: 1,
            last_index: 100,
        }
    }

    #[test]
    fn add_is_checked_as_etcd_does() {
        let store = store_with(&[member(1, false), member(2, false), member(3, false)]);
        let all: BTreeSet<u64> = [1, 2, 3].into();
        let add = |urls: &[&str], learner: bool, started: &BTreeSet<u64>| {
            let peer_urls = urls.iter().map(|url| url.to_string()).collect();
            check_request(&view(&store, started, &[]), &MembershipRequest::Add { peer_urls, is_learner: learner }, "t")
        };
        let (change, added) = add(&["http://127.0.0.1:9000"], false, &all).unwrap();
        assert_eq!(change.changes, vec![ConfChangeSingle { kind: ConfChangeKind::AddVoter, node_id: added.id }]);
        let context = kv::MemberChange::decode(&change.context).unwrap();
        assert_eq!((context.action, context.member.peer_ur_ls), (kv::MemberAction::Add, added.peer_ur_ls));
        assert_eq!(add(&["http://127.0.0.1:2001"], false, &all).unwrap_err(), MembershipError::PeerUrlExists);
        assert_eq!(add(&["127.0.0.1:9000"], false, &all).unwrap_err(), MembershipError::BadUrls);
        assert_eq!(add(&[], true, &all).unwrap_err(), MembershipError::BadUrls);
        let only_leader: BTreeSet<u64> = [1].into();
        assert_eq!(
            add(&["http://127.0.0.1:9000"], false, &only_leader).unwrap_err(),
            MembershipError::NotEnoughStartedMembers
        );
        assert!(add(&["http://127.0.0.1:9000"], true, &only_leader).is_ok(), "a learner needs no quorum");
        let alone = store_with(&[member(1, false)]);
        let request = MembershipRequest::Add { peer_urls: vec!["http://127.0.0.1:9000".into()], is_learner: false };
        let (change, added) = check_request(&view(&alone, &only_leader, &[]), &request, "t")
            .expect("a one-member cluster may add a voter (etcd: regrowing a restored or forced cluster)");
        assert_eq!(change.changes[0].kind, ConfChangeKind::AddLearner, "it catches up as a learner first");
        assert!(added.is_learner);
        let alone_with_learner = store_with(&[member(1, false), member(4, true)]);
        let (change, added) = check_request(&view(&alone_with_learner, &only_leader, &[4]), &request, "t").unwrap();
        assert_eq!(change.changes[0].kind, ConfChangeKind::AddVoter, "one learner at most: added as a voter");
        assert!(!added.is_learner);
        let lax = ClusterView { strict: false, ..view(&store, &only_leader, &[]) };
        let request = MembershipRequest::Add { peer_urls: vec!["http://127.0.0.1:9000".into()], is_learner: false };
        assert!(check_request(&lax, &request, "t").is_ok(), "--strict-reconfig-check=false skips the started check");
        assert_eq!(
            check_request(&lax, &MembershipRequest::Remove { id: 2 }, "t").map(|(_, member)| member.id),
            Ok(2),
            "--strict-reconfig-check=false: a removal that leaves too few started members is allowed"
        );
        let with_learner = store_with(&[member(1, false), member(2, false), member(4, true)]);
        let request = MembershipRequest::Add { peer_urls: vec!["http://127.0.0.1:9000".into()], is_learner: true };
        assert_eq!(
            check_request(&view(&with_learner, &all, &[4]), &request, "t").unwrap_err(),
            MembershipError::TooManyLearners
        );
    }

    #[test]
    fn remove_and_promote_are_checked_as_etcd_does() {
        let store = store_with(&[member(1, false), member(2, false), member(3, false), member(4, true)]);
        let all: BTreeSet<u64> = [1, 2, 3, 4].into();
        let check = |request: MembershipRequest, view: &ClusterView<'_>| check_request(view, &request, "t");
        assert_eq!(
            check(MembershipRequest::Remove { id: 9 }, &view(&store, &all, &[4])).unwrap_err(),
            MembershipError::MemberNotFound
        );
        let (change, _) = check(MembershipRequest::Remove { id: 3 }, &view(&store, &all, &[4])).unwrap();
        assert_eq!(change.changes[0].kind, ConfChangeKind::RemoveNode);
        let mut unhealthy = view(&store, &all, &[4]);
        unhealthy.progress.insert(2, (10, false));
        assert_eq!(check(MembershipRequest::Remove { id: 3 }, &unhealthy).unwrap_err(), MembershipError::Unhealthy);
        assert_eq!(
            check(MembershipRequest::Promote { id: 2 }, &view(&store, &all, &[4])).unwrap_err(),
            MembershipError::MemberNotLearner
        );
        let mut lagging = view(&store, &all, &[4]);
        lagging.progress.insert(4, (50, true));
        assert_eq!(
            check(MembershipRequest::Promote { id: 4 }, &lagging).unwrap_err(),
            MembershipError::LearnerNotReady
        );
        let (change, promoted) = check(MembershipRequest::Promote { id: 4 }, &view(&store, &all, &[4])).unwrap();
        assert_eq!(change.changes[0], ConfChangeSingle { kind: ConfChangeKind::AddVoter, node_id: 4 });
        assert!(!promoted.is_learner);
    }

    #[test]
    fn members_response_round_trips() {
        let body = r#"[{"id":5,"name":"a","peerURLs":["http://h:1"],"clientURLs":[],"isLearner":true}]"#;
        let response =
            format!("HTTP/1.1 200 OK\r\nX-Etcd-Cluster-ID: ff\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let info = parse_members_response(response.as_bytes()).unwrap();
        assert_eq!(info.cluster_id, 0xff);
        assert_eq!(info.members[0].id, 5);
        assert!(info.members[0].is_learner);
        assert!(parse_members_response(b"HTTP/1.1 404 Not Found\r\n\r\n{}").is_err());
        assert!(parse_members_response(b"garbage").is_err());
    }
}
