//! Starting a node from `raftkv serve` flags: data dir, WAL recovery, state machine
//! restore, listeners, the peer transport and the Raft loop.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{self, InitialMember, ServeArgs};
use crate::driver::{Driver, DriverOptions, DriverOutputs, Input, SharedStatus};
use crate::handle::{Member, NodeApi, NodeHandle, NodeStatus, ServerError};
use crate::inputs::{InputSender, SendRefused};
use crate::introspection::IntrospectionSource;
use crate::lessor::Lessor;
use crate::metrics::Metrics;
use crate::transport::{self, PeerDirectory, PeerInfo, Transport};
use crate::wal_sync::SyncWorker;
use crate::watch::{AppliedEvents, WatchHub};

/// Everything resolved from the flags before anything starts.
#[derive(Clone, Debug)]
pub struct NodePlan {
    /// This member.
    pub local: InitialMember,
    /// All members of the initial cluster.
    pub members: Vec<InitialMember>,
    /// Cluster id.
    pub cluster_id: u64,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The flags.
    pub args: ServeArgs,
}

/// Resolves and checks the flags.
pub fn plan(args: &ServeArgs) -> Result<NodePlan, String> {
    config::check_supported(args)?;
    let members = config::parse_initial_cluster(&args.initial_cluster, &args.initial_cluster_token)?;
    let local = members
        .iter()
        .find(|member| member.name == args.name)
        .cloned()
        .ok_or_else(|| format!("--initial-cluster has no member named '{}' (--name)", args.name))?;
    let mut advertised = config::split_urls(&args.initial_advertise_peer_urls);
    advertised.sort();
    // As etcd, a member restarted from its data dir is not held to --initial-cluster (its
    // peer URLs may have changed with `member update`).
    let restarting =
        args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.raftkv", args.name))).join("wal").exists();
    if advertised != local.peer_urls && !restarting {
        return Err(format!(
            "--initial-advertise-peer-urls {:?} does not match --initial-cluster's URLs for '{}': {:?}",
            advertised, args.name, local.peer_urls
        ));
    }
    for url in config::split_urls(&args.listen_client_urls).iter().chain(&config::split_urls(&args.listen_peer_urls)) {
        config::parse_url(url)?;
    }
    if args.heartbeat_interval == 0 || args.election_timeout < 2 * args.heartbeat_interval {
        return Err("--election-timeout must be at least twice --heartbeat-interval".into());
    }
    let cluster_id = config::cluster_id(&members, &args.initial_cluster_token);
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.raftkv", args.name)));
    if args.force_new_cluster {
        crate::force_new_cluster::check_data_dir(&data_dir)?;
    }
    Ok(NodePlan { local, members, cluster_id, data_dir, args: args.clone() })
}

/// A running node.
pub struct RunningNode {
    /// What services use to reach it.
    pub handle: NodeHandle,
    /// Addresses the client listeners are bound to.
    pub client_listeners: Vec<TcpListener>,
    /// Metrics of this node.
    pub metrics: Arc<Metrics>,
    inputs: InputSender,
    raft_thread: Option<std::thread::JoinHandle<Result<(), wal::WalError>>>,
}

impl RunningNode {
    /// Stops the Raft loop and waits for it; returns its error if the WAL failed.
    pub fn stop(mut self) -> Result<(), wal::WalError> {
        let _ = self.inputs.try_send(Input::Stop);
        match self.raft_thread.take() {
            Some(thread) => thread.join().unwrap_or(Ok(())),
            None => Ok(()),
        }
    }

    /// Takes the Raft thread's handle (to watch for a fatal WAL error).
    pub fn take_raft_thread(&mut self) -> Option<std::thread::JoinHandle<Result<(), wal::WalError>>> {
        self.raft_thread.take()
    }
}

/// Opens the data dir, recovers, binds the listeners and starts the peer transport and
/// the Raft loop. Must run inside a tokio runtime.
pub async fn start(plan: NodePlan) -> Result<RunningNode, String> {
    let auth_settings = Arc::new(crate::auth_tokens::AuthSettings::from_flags(
        &plan.args.auth_token,
        plan.args.auth_token_ttl,
        plan.args.bcrypt_cost,
    )?);
    let identity = crate::membership::resolve_identity(plan).await?;
    let joining = identity.joined_members.is_some();
    let plan = identity.plan;
    tracing::info!(
        name = %plan.local.name,
        member = %format!("{:x}", plan.local.id),
        cluster = %format!("{:x}", plan.cluster_id),
        data_dir = %plan.data_dir.display(),
        joining,
        "starting raftkv"
    );
    let args = &plan.args;
    std::fs::create_dir_all(&plan.data_dir)
        .map_err(|error| format!("data dir {}: {error}", plan.data_dir.display()))?;
    let voters: Vec<u64> = plan.members.iter().map(|member| member.id).collect();
    let mut wal_options = wal::WalOptions::new(plan.cluster_id, plan.local.id);
    if args.unsafe_wal_buffer_unsynced {
        tracing::warn!("TEST ONLY: WAL writes stay in memory until fsync (--unsafe-wal-buffer-unsynced)");
        wal_options.file_system = Arc::new(wal::BufferedUntilSyncFileSystem);
    }
    // A member joining a running cluster starts without a configuration and learns it
    // from the leader (log or snapshot).
    let conf = if joining {
        raft::ConfState::default()
    } else {
        raft::ConfState { voters, learners: vec![], voters_outgoing: vec![] }
    };
    wal_options.segment_files_max = args.max_wals;
    wal_options.snapshot_files_max = args.max_snapshots;
    let wal_dir = wal_directory(&plan.data_dir, args.wal_dir.as_deref())?;
    // An operator may create an empty --wal-dir beforehand: fresh means no files yet.
    let fresh = std::fs::read_dir(&wal_dir).map_or(true, |mut entries| entries.next().is_none());
    let mut wal = wal::Wal::open_or_create(&wal_dir, wal_options, conf).map_err(|error| match error {
        wal::WalError::WrongIdentity { .. } => {
            format!("{error}: the data dir is another cluster's or member's; check --data-dir, --name and --initial-cluster-token")
        }
        error => format!("{error}"),
    })?;
    if args.force_new_cluster {
        crate::force_new_cluster::restart_standalone(&mut wal, &plan.local)?;
    }
    let kv_config = kv::Config { max_txn_operations: args.max_txn_ops, ..kv::Config::default() };
    let mut store = restore_store(&wal, kv_config)?;
    store.seed_members(crate::membership::seed_members(
        identity.joined_members.as_ref().or(identity.stored_members.as_ref()),
        &plan,
    ));
    if store.is_removed_member(plan.local.id) {
        return Err("this member has been removed from the cluster; its data dir must not be reused".into());
    }
    let tick_interval = Duration::from_millis(args.heartbeat_interval);
    let mut raft_config = raft::Config::new(plan.local.id);
    raft_config.election_ticks = (args.election_timeout / args.heartbeat_interval) as u32;
    raft_config.applied = store.applied_index();
    raft_config.random_seed = rand::random();
    // A member joining (or rejoining with lost data) must not vote before it caught up.
    raft_config.abstain_until_caught_up = fresh && args.initial_cluster_state == "existing";
    raft_config.pre_vote = args.pre_vote;
    let election_ticks = raft_config.election_ticks;
    let mut node = raft::RawNode::new(raft_config, wal).map_err(|error| error.to_string())?;
    let alone = plan.members.len() == 1;
    if alone {
        // etcd's adjustTicks: a one-member cluster's first election is one tick away
        // (with or without --initial-election-tick-advance).
        for _ in 1..election_ticks {
            node.tick();
        }
    }
    let metrics = Metrics::for_member(plan.local.id);
    set_quota_metric(&metrics, args.quota_backend_bytes);
    if args.metrics == "extensive" {
        crate::grpc_metrics::global().enable_handling_time_histogram();
    }
    let directory = Arc::new(peer_directory(&plan, &store)?);
    let transport = Transport::start(directory.clone(), metrics.clone());
    let (inputs, receiver) = crate::inputs::input_queues();
    for url in config::split_urls(&args.listen_peer_urls) {
        let listener = bind(&url).await?;
        tokio::spawn(transport::serve_peers(
            listener,
            directory.clone(),
            inputs.peer_queue(),
            Input::Peer,
            metrics.clone(),
        ));
    }
    let status = Arc::new(SharedStatus { member_id: plan.local.id, cluster_id: plan.cluster_id, ..Default::default() });
    crate::driver::sample_data_size(node.storage().directory().to_path_buf(), &status, tick_interval * 50);
    let views = Arc::new(crate::read_view::StoreViews::new(&store));
    directory.store.set(views.clone()).expect("the peer directory's store is set once");
    let request_timeout_ticks = (args.request_timeout_seconds * 1000 / args.heartbeat_interval).max(1);
    let compaction = raft::CompactionPolicy { entries_max: args.snapshot_count.max(1), bytes_max: args.snapshot_bytes };
    let options = DriverOptions {
        tick_interval,
        request_timeout_ticks,
        compaction,
        warning_apply_duration: args.experimental_warning_apply_duration,
    };
    let watch_hub = WatchHub::new();
    // Not yet `.with_leader_extension(election timeout)` (etcd's Promote): the lessor notices
    // leadership at its first refresh, so a lease granted in the new leader's first turn
    // would be extended too (a TTL above the granted one); it must learn it on the role change.
    let lessor = Arc::new(new_lessor(args.experimental_enable_lease_checkpoint));
    let (introspection_sender, introspection_receiver) =
        tokio::sync::watch::channel(Arc::new(crate::introspection::raft_state(&node)));
    let sync_worker = start_sync_worker(inputs.clone(), metrics.clone())?;
    let mut membership =
        crate::membership::Membership::new(directory.clone(), transport.clone(), args.initial_cluster_token.clone());
    membership.strict_reconfig_check = args.strict_reconfig_check;
    let snapshot_inputs = inputs.clone();
    let snapshot_worker = crate::snapshot_worker::SnapshotWorker::new(move || {
        let _ = snapshot_inputs.try_send(Input::SnapshotWritten); // a busy loop looks anyway
    });
    let outputs = DriverOutputs {
        membership,
        sync_worker,
        snapshot_worker,
        transport,
        metrics: metrics.clone(),
        status: status.clone(),
        introspection: introspection_sender,
        watch_hub: watch_hub.clone(),
        lessor: lessor.clone(),
    };
    let driver = Driver::new(node, (store, views.clone()), outputs, options, rand::random());
    if !alone && args.initial_election_tick_advance {
        advance_ticks_once_peers_answer(directory.clone(), inputs.clone(), election_ticks.saturating_sub(2));
    }
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || driver.run(receiver))
        .map_err(|error| format!("cannot start the raft thread: {error}"))?;
    let mut client_listeners = Vec::new();
    for url in config::split_urls(&args.listen_client_urls) {
        client_listeners.push(bind(&url).await?);
    }
    let api = LocalNode {
        inputs: inputs.clone(),
        views,
        status: status.clone(),
        directory: directory.clone(),
        unsafe_local_reads: args.unsafe_local_reads,
        request_timeout: Duration::from_secs(args.request_timeout_seconds),
        request_size_bytes_max: args.max_request_bytes,
        watch_hub,
        lessor,
        auth_settings,
        watch_progress_notify_interval: Some(args.experimental_watch_progress_notify_interval)
            .filter(|interval| !interval.is_zero())
            .unwrap_or(crate::watch::PROGRESS_NOTIFY_INTERVAL_DEFAULT),
        metrics: metrics.clone(),
        election_timeout: Duration::from_millis(args.election_timeout),
    };
    let handle = NodeHandle::new(Arc::new(api));
    let introspection = IntrospectionSource {
        updates: introspection_receiver,
        directory: directory.clone(),
        members: plan.members.iter().map(|member| (member.id, member.name.clone())).collect(),
    };
    start_http(args, metrics.clone(), status, introspection).await?;
    Ok(RunningNode { handle, client_listeners, metrics, inputs, raft_thread: Some(raft_thread) })
}

/// How long a starting member waits for its peers before it gives up advancing its election
/// clock (etcd: `rafthttp.ConnReadTimeout`), and how often it looks.
const TICK_ADVANCE_WAIT: Duration = Duration::from_secs(5);
const TICK_ADVANCE_POLL: Duration = Duration::from_millis(50);

/// etcd's `adjustTicks` for a member of a multi-member cluster with
/// `--initial-election-tick-advance`: once more than one peer has connected (within
/// [`TICK_ADVANCE_WAIT`]), the election clock moves `ticks` (two less than the election
/// timeout) forward, so the first election comes soon but a leader's heartbeat, already on
/// its way, still arrives first. No peer in time: nothing is advanced (it would not help).
fn advance_ticks_once_peers_answer(directory: Arc<PeerDirectory>, inputs: InputSender, ticks: u32) {
    tokio::spawn(async move {
        let polls = TICK_ADVANCE_WAIT.as_millis() / TICK_ADVANCE_POLL.as_millis();
        for _ in 0..polls {
            tokio::time::sleep(TICK_ADVANCE_POLL).await;
            let connected = directory.known.read().map(|known| known.len()).unwrap_or_default();
            if connected > 1 {
                let _ = inputs.try_send(Input::AdvanceTicks { ticks });
                return;
            }
        }
        tracing::debug!("no peers within {TICK_ADVANCE_WAIT:?}: election clock not advanced");
    });
}

/// The WAL directory: `<data-dir>/wal`, or `--wal-dir`, which `<data-dir>/wal` then links to
/// (so a restart, or `raftkv snapshot restore --wal-dir`, finds it the same way).
fn wal_directory(data_dir: &std::path::Path, wal_dir: Option<&std::path::Path>) -> Result<PathBuf, String> {
    let link = data_dir.join("wal");
    let Some(wal_dir) = wal_dir else { return Ok(link) };
    let target = std::path::absolute(wal_dir).map_err(|error| format!("--wal-dir {}: {error}", wal_dir.display()))?;
    match std::fs::read_link(&link) {
        Ok(existing) if existing == target => Ok(target),
        Ok(existing) => Err(format!(
            "--wal-dir {}: the data dir's WAL is at {} (a data dir keeps its --wal-dir)",
            wal_dir.display(),
            existing.display()
        )),
        Err(_) if link.exists() => Err(format!(
            "--wal-dir {}: the data dir {} already holds its own WAL",
            wal_dir.display(),
            data_dir.display()
        )),
        Err(_) => {
            std::os::unix::fs::symlink(&target, &link).map_err(|error| {
                format!("--wal-dir: cannot link {} to {}: {error}", link.display(), target.display())
            })?;
            Ok(target)
        }
    }
}

/// The member's lessor: with `--experimental-enable-lease-checkpoint` it checkpoints
/// remaining TTLs every [`crate::lessor::checkpoint_interval`] while leading (the caller
/// adds the leader extension).
fn new_lessor(lease_checkpoints: bool) -> Lessor {
    if !lease_checkpoints {
        return Lessor::new();
    }
    let interval = crate::lessor::checkpoint_interval();
    if interval != crate::lessor::CHECKPOINT_INTERVAL_DEFAULT {
        let variable = crate::lessor::CHECKPOINT_INTERVAL_ENV;
        tracing::warn!(?interval, "TEST ONLY: lease checkpoint interval shortened ({variable})");
    }
    Lessor::with_checkpoints(interval)
}

/// etcd's `etcd_server_quota_backend_bytes`: `--quota-backend-bytes`, etcd's 2 GiB default
/// when 0, and 0 when negative (etcd: no quota).
fn set_quota_metric(metrics: &Metrics, quota_backend_bytes: i64) {
    const QUOTA_BYTES_DEFAULT: i64 = 2 << 30;
    let quota_bytes = if quota_backend_bytes == 0 { QUOTA_BYTES_DEFAULT } else { quota_backend_bytes.max(0) };
    metrics.etcd.quota_backend_bytes.set(quota_bytes as f64);
}

/// The WAL sync thread: after each sync it wakes the Raft loop (a full input queue
/// means the loop is busy and will see the new durable sequence on its next turn).
fn start_sync_worker(inputs: InputSender, metrics: Arc<Metrics>) -> Result<SyncWorker, String> {
    SyncWorker::start(move |_sequence, sync_seconds| {
        if sync_seconds > 0.0 {
            metrics.fsync_duration_seconds.observe(sync_seconds);
            metrics.etcd.wal_fsync_duration_seconds.observe(sync_seconds);
        }
        let _ = inputs.try_send(Input::Synced);
    })
    .map_err(|error| format!("cannot start the WAL sync thread: {error}"))
}

/// The state machine a member starts from: the WAL's snapshot restored into a store (an
/// empty store without a snapshot). The WAL then replays the entries after it. Used at
/// start-up and by the simulator (`crates/server-sim`), which rebuilds members this way.
pub fn restore_store(wal: &wal::Wal, kv_config: kv::Config) -> Result<kv::Store, String> {
    use raft::Storage;
    let snapshot = wal.snapshot().map_err(|error| error.to_string())?;
    if snapshot.meta.index == 0 {
        return Ok(kv::Store::new(kv_config));
    }
    let store = kv::Store::restore(kv_config, &snapshot.data)
        .map_err(|error| format!("snapshot at index {} is unreadable: {error}", snapshot.meta.index))?;
    wal.release_snapshot_data();
    if store.applied_index() != snapshot.meta.index {
        return Err(format!(
            "snapshot data is at index {} but its metadata says {}",
            store.applied_index(),
            snapshot.meta.index
        ));
    }
    Ok(store)
}

/// The node's HTTP endpoints besides `/metrics` and `/health`.
fn http_routes(introspection: IntrospectionSource) -> axum::Router {
    use axum::routing::get;
    let state_source = introspection.clone();
    axum::Router::new()
        .route("/api/state", get(move || std::future::ready(state_source.state_response())))
        .route("/api/events", get(move || std::future::ready(introspection.events_response())))
        .merge(dashboard::dashboard_router())
}

async fn start_http(
    args: &ServeArgs,
    metrics: Arc<Metrics>,
    status: Arc<SharedStatus>,
    introspection: IntrospectionSource,
) -> Result<(), String> {
    for url in config::split_urls(&args.listen_metrics_urls) {
        let listener = bind(&url).await?;
        let status = status.clone();
        let healthy = Arc::new(move || status.leader.load(std::sync::atomic::Ordering::Relaxed) != 0);
        let metrics = metrics.clone();
        let routes = http_routes(introspection.clone());
        tokio::spawn(async move {
            if let Err(error) = crate::metrics::serve_http(listener, metrics, healthy, routes).await {
                tracing::error!(%error, "metrics server stopped");
            }
        });
    }
    Ok(())
}

/// Binds `http://host:port`.
pub async fn bind(url: &str) -> Result<TcpListener, String> {
    let address = config::parse_url(url)?;
    TcpListener::bind(&address).await.map_err(|error| format!("cannot listen on {url}: {error}"))
}

/// Peers are the store's members (which include members added after bootstrap).
fn peer_directory(plan: &NodePlan, store: &kv::Store) -> Result<PeerDirectory, String> {
    let overrides = config::parse_dial_overrides(&plan.args.peer_dial_overrides)?;
    let mut peers = BTreeMap::new();
    for member in store.members().filter(|member| member.id != plan.local.id) {
        let address = match (overrides.get(&member.name), member.peer_ur_ls.first()) {
            (Some(address), _) => address.clone(),
            (None, Some(url)) => config::parse_url(url)?,
            (None, None) => continue,
        };
        peers.insert(member.id, address);
    }
    let local_info = PeerInfo {
        name: plan.local.name.clone(),
        client_urls: config::split_urls(&plan.args.advertise_client_urls),
        http_urls: config::split_urls(&plan.args.listen_metrics_urls),
    };
    let mut known = BTreeMap::new();
    known.insert(plan.local.id, local_info.clone());
    Ok(PeerDirectory {
        cluster_id: plan.cluster_id,
        local_id: plan.local.id,
        local_info,
        peers: std::sync::RwLock::new(peers),
        known: std::sync::RwLock::new(known),
        tls: crate::tls::PeerTls::from_args(&plan.args)?,
        members: {
            let table = crate::membership::MemberTable::default();
            table.refresh(store);
            table
        },
        unreachable: Default::default(),
        store: Default::default(),
    })
}

/// [`NodeApi`] over the Raft loop's input queue.
struct LocalNode {
    inputs: InputSender,
    /// The store's read views, published by the Raft loop.
    views: Arc<crate::read_view::StoreViews>,
    status: Arc<SharedStatus>,
    directory: Arc<PeerDirectory>,
    unsafe_local_reads: bool,
    request_timeout: Duration,
    request_size_bytes_max: usize,
    watch_hub: WatchHub,
    lessor: Arc<Lessor>,
    auth_settings: Arc<crate::auth_tokens::AuthSettings>,
    watch_progress_notify_interval: Duration,
    metrics: Arc<Metrics>,
    election_timeout: Duration,
}

impl LocalNode {
    fn submit<T: Send + 'static>(
        &self,
        input: Input,
        receiver: oneshot::Receiver<Result<T, ServerError>>,
    ) -> BoxFuture<'static, Result<T, ServerError>> {
        let sent = match self.inputs.try_send(input) {
            Ok(()) => Ok(()),
            Err(SendRefused::Full) => Err(ServerError::TooManyRequests),
            Err(SendRefused::Stopped) => Err(ServerError::Stopped),
        };
        let timeout = self.request_timeout;
        Box::pin(async move {
            sent?;
            match tokio::time::timeout(timeout, receiver).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(ServerError::Stopped),
                Err(_) => Err(ServerError::Timeout),
            }
        })
    }
}

impl NodeApi for LocalNode {
    fn metrics(&self) -> Option<Arc<Metrics>> {
        Some(self.metrics.clone())
    }

    fn election_timeout(&self) -> Duration {
        self.election_timeout
    }

    fn write(&self, command: kv::Command) -> BoxFuture<'static, Result<kv::Response, ServerError>> {
        let (respond, receiver) = oneshot::channel();
        let data = crate::driver::proposal_data(&command);
        if data.len() - crate::driver::TOKEN_BYTES > self.request_size_bytes_max {
            return Box::pin(async { Err(ServerError::RequestTooLarge) });
        }
        self.submit(Input::Propose { data, respond }, receiver)
    }

    fn read_barrier(&self) -> BoxFuture<'static, Result<(), ServerError>> {
        if self.unsafe_local_reads {
            return Box::pin(async { Ok(()) });
        }
        let (respond, receiver) = oneshot::channel();
        self.submit(Input::Read { respond }, receiver)
    }

    fn read_view(&self) -> Arc<kv::Store> {
        self.views.latest()
    }

    fn status(&self) -> NodeStatus {
        let mut status = self.status.load();
        let local = self.directory.local_id;
        status.is_learner = self.directory.members.is_learner(local);
        status
    }

    fn watch_events(&self) -> tokio::sync::broadcast::Receiver<Arc<AppliedEvents>> {
        self.watch_hub.subscribe()
    }

    fn lessor(&self) -> Arc<Lessor> {
        self.lessor.clone()
    }

    fn auth_settings(&self) -> Arc<crate::auth_tokens::AuthSettings> {
        self.auth_settings.clone()
    }

    fn watch_progress_notify_interval(&self) -> Duration {
        self.watch_progress_notify_interval
    }

    fn members(&self) -> Vec<Member> {
        crate::membership::members_with_urls(&self.directory)
            .into_iter()
            .map(|member| Member {
                id: member.id,
                name: member.name,
                peer_urls: member.peer_ur_ls,
                client_urls: member.client_ur_ls,
                is_learner: member.is_learner,
            })
            .collect()
    }

    fn change_membership(
        &self,
        request: crate::membership::MembershipRequest,
    ) -> BoxFuture<'static, crate::membership::MembershipAnswer> {
        use crate::membership::MembershipError;
        let (respond, receiver) = oneshot::channel();
        let sent = match self.inputs.try_send(Input::Membership { request, respond }) {
            Ok(()) => Ok(()),
            Err(SendRefused::Full) => Err(MembershipError::Server(ServerError::TooManyRequests)),
            Err(SendRefused::Stopped) => Err(MembershipError::Server(ServerError::Stopped)),
        };
        let timeout = self.request_timeout;
        Box::pin(async move {
            sent?;
            match tokio::time::timeout(timeout, receiver).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(MembershipError::Server(ServerError::Stopped)),
                Err(_) => Err(MembershipError::Server(ServerError::Timeout)),
            }
        })
    }
}
