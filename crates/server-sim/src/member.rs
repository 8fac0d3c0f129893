//! One simulated member: the real [`ServerCore`] over the real WAL on its [`Disk`] and a real
//! `kv::Store`, started (and restarted after a crash) exactly as `server::node` starts a
//! member, and driven one turn at a time through the contract of `server::driver`.

use std::sync::Arc;

use bytes::BytesMut;
use raft::{ConfState, Message, RawNode, SplitMix64};
use server::server_core::{Answer, Clock, CoreOptions, CoreParts, ReadyIo, RequestId, ServerCore};
use server::watch::{AppliedEvents, WatchHub};
use wal::{Wal, WriteBatch};

use crate::disk::Disk;
use crate::membership::SimulatedMembership;
use crate::options::{Drawn, Sabotage, CLUSTER_ID, ELECTION_TICKS, REQUEST_TIMEOUT_TICKS, SEGMENT_SIZE_BYTES_MAX};

/// Requests a member takes per turn at most (the rest wait for the next turn).
pub const REQUESTS_PER_TURN_MAX: usize = 4096;
/// Peer messages a member takes per turn at most.
pub const MESSAGES_PER_TURN_MAX: usize = 65_536;

/// A client request handed to a member's core.
pub enum Request {
    /// A write: the log entry's data (see `server_core::proposal_data`).
    Write(BytesMut),
    /// A linearizable-read barrier.
    Read,
}

/// Why a member stopped in the middle of a turn.
#[derive(Debug)]
pub enum Stop {
    /// Its disk reached an armed crash point: a simulated power loss.
    Crashed,
    /// Something the real server would stop on without a crash (a WAL error, a snapshot it
    /// cannot restore): a finding.
    Fatal(String),
}

/// What a turn produced.
#[derive(Default)]
pub struct TurnOutput {
    /// Messages to send.
    pub messages: Vec<Message>,
    /// Answers, in request id order (the core's order depends on hash maps).
    pub answers: Vec<(RequestId, Answer)>,
    /// Watch events the core published this turn, in order.
    pub published: Vec<Arc<AppliedEvents>>,
    /// The watch receiver lagged (more than its capacity in one turn).
    pub watch_lagged: bool,
    /// Snapshots taken (index and the store's full hash at it).
    pub snapshots: Vec<(u64, u64)>,
}

/// What every incarnation of a member is started with.
pub struct MemberSettings {
    /// Member id.
    pub id: u64,
    /// The initial voters.
    pub voters: Vec<u64>,
    /// The run's variation.
    pub drawn: Drawn,
    /// This member's slowest fsync, in simulated milliseconds (disks differ).
    pub fsync_ms_max: u64,
    /// The planted bug.
    pub sabotage: Sabotage,
    /// Simulated time.
    pub clock: Clock,
}

/// A running incarnation: the core and what hangs off it.
pub struct Running {
    /// The server core.
    pub core: ServerCore,
    membership: SimulatedMembership,
    watch: tokio::sync::broadcast::Receiver<Arc<AppliedEvents>>,
}

/// A member: its disk survives crashes, its running incarnation does not.
pub struct Member {
    /// Settings.
    pub settings: MemberSettings,
    /// The disk.
    pub disk: Disk,
    /// `None` while down.
    pub running: Option<Running>,
    /// Peer messages delivered since the last turn.
    pub inbox: Vec<Message>,
    /// Client requests received since the last turn.
    pub requests: Vec<(RequestId, Request)>,
    /// A tick is due at the next turn.
    pub tick_due: bool,
    /// The highest persist sequence the disk made durable since the last turn.
    pub durable_due: Option<u64>,
}

fn wal_directory(id: u64) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/member-{id:x}/wal"))
}

impl Member {
    /// A member that has not started yet.
    pub fn new(settings: MemberSettings) -> Member {
        let disk = Disk::new(settings.fsync_ms_max);
        Member {
            settings,
            disk,
            running: None,
            inbox: Vec::new(),
            requests: Vec::new(),
            tick_due: false,
            durable_due: None,
        }
    }

    /// Starts an incarnation as `server::node::start` does: open (or create) the WAL,
    /// restore the store from its snapshot, build the Raft node (which replays the log
    /// after the snapshot) and the core. An error is a finding (recovery must succeed).
    pub fn start(&mut self, random: &mut SplitMix64) -> Result<(), String> {
        assert!(self.running.is_none(), "a member runs once at a time");
        let settings = &self.settings;
        let mut options = wal::WalOptions::new(CLUSTER_ID, settings.id);
        options.file_system = self.disk.file_system();
        options.segment_size_bytes_max = SEGMENT_SIZE_BYTES_MAX;
        let conf = ConfState { voters: settings.voters.clone(), learners: vec![], voters_outgoing: vec![] };
        let wal = Wal::open_or_create(wal_directory(settings.id), options, conf)
            .map_err(|error| format!("WAL recovery failed: {error}"))?;
        let store = server::node::restore_store(&wal, kv::Config::default())?;
        let raft_config = raft_config(settings, store.applied_index(), random.next_u64());
        let node = RawNode::new(raft_config, wal).map_err(|error| format!("RawNode::new: {error}"))?;
        let watch_hub = WatchHub::new();
        let watch = watch_hub.subscribe();
        let parts = CoreParts {
            views: Arc::new(server::read_view::StoreViews::new(&store)),
            store,
            metrics: server::metrics::Metrics::for_member(settings.id),
            lessor: Arc::new(server::lessor::Lessor::new()),
            watch_hub,
            clock: settings.clock.clone(),
        };
        let compaction = raft::CompactionPolicy { entries_max: settings.drawn.snapshot_entries, bytes_max: 1 << 20 };
        let core_options = CoreOptions {
            request_timeout_ticks: REQUEST_TIMEOUT_TICKS,
            compaction,
            warning_apply_duration: std::time::Duration::ZERO,
        };
        let mut core = ServerCore::new(node, parts, core_options, random.next_u64());
        plant_core_sabotage(&mut core, settings.sabotage);
        self.running = Some(Running { core, membership: SimulatedMembership::default(), watch });
        Ok(())
    }

    /// The member goes down (its process died): inputs waiting for it are lost.
    pub fn go_down(&mut self) {
        self.running = None;
        self.inbox.clear();
        self.requests.clear();
        self.tick_due = false;
        self.durable_due = None;
    }

    /// True if the member has something to do at a turn.
    pub fn has_work(&self) -> bool {
        self.running.is_some()
            && (self.tick_due || self.durable_due.is_some() || !self.inbox.is_empty() || !self.requests.is_empty())
    }

    /// One loop turn (`server::driver`'s order): inputs, ReadIndex rounds, durability,
    /// `Ready`s (send, persist, apply), answers, then a snapshot if one is due.
    pub fn turn(&mut self, now_ms: u64, random: &mut SplitMix64) -> Result<TurnOutput, Stop> {
        let mut output = TurnOutput::default();
        let Some(running) = self.running.as_mut() else { return Ok(output) };
        let core = &mut running.core;
        let messages = self.inbox.len().min(MESSAGES_PER_TURN_MAX);
        for message in self.inbox.drain(..messages) {
            core.step(message);
        }
        let requests = self.requests.len().min(REQUESTS_PER_TURN_MAX);
        for (request, input) in self.requests.drain(..requests) {
            match input {
                Request::Write(data) => core.propose(Some(request), data),
                Request::Read => core.read(request),
            }
        }
        if std::mem::take(&mut self.tick_due) {
            core.tick();
        }
        core.issue_reads();
        if let Some(sequence) = self.durable_due.take().filter(|sequence| *sequence > core.reported_durable_sequence())
        {
            core.on_persisted(sequence);
        }
        for _ in 0..server::server_core::READIES_PER_TURN_MAX {
            let Some(ready) = running.core.next_ready() else { break };
            handle_ready(running, &mut self.disk, ready, (now_ms, random), &mut output)?;
        }
        output.answers = running.core.take_answers();
        output.answers.sort_by_key(|(request, _)| *request);
        maybe_snapshot(running, &self.disk, &mut output)?;
        drain_watch(running, &mut output);
        Ok(output)
    }
}

/// One `Ready`: send its messages, persist its batch, then apply (as `Driver::handle_ready`).
fn handle_ready(
    running: &mut Running,
    disk: &mut Disk,
    ready: ReadyIo,
    (now_ms, random): (u64, &mut SplitMix64),
    output: &mut TurnOutput,
) -> Result<(), Stop> {
    output.messages.extend(ready.messages);
    if let Some((batch, sequence)) = ready.persist {
        persist(running, disk, batch, sequence, (now_ms, random))?;
    }
    running.core.finish_ready(ready.applying, &mut running.membership);
    Ok(())
}

/// Persists a batch as `Driver::write_batch` does: a snapshot batch, or (a third of the
/// time) one while no fsync is running, is written and synced here; any other is appended
/// and its fsync completes later on the disk.
fn persist(
    running: &mut Running,
    disk: &mut Disk,
    batch: WriteBatch,
    sequence: u64,
    (now_ms, random): (u64, &mut SplitMix64),
) -> Result<(), Stop> {
    assert!(sequence > running.core.reported_durable_sequence(), "each Ready is persisted once, in order");
    let core = &mut running.core;
    if batch.snapshot.is_none() && !(disk.is_idle() && random.chance(1, 3)) {
        core.wal_mut().append_batch(&batch).map_err(|error| stop(disk, error))?;
        let handle = core.wal_mut().detached_sync().map_err(|error| stop(disk, error))?;
        disk.request_sync(sequence, handle, now_ms, random);
        return Ok(());
    }
    core.wal_mut().write(&batch).map_err(|error| stop(disk, error))?;
    if let Some(snapshot) = &batch.snapshot {
        let (data, index) = (&snapshot.data, snapshot.meta.index);
        core.restore_snapshot(data, index, &mut running.membership).map_err(Stop::Fatal)?;
    }
    core.on_persisted(sequence);
    Ok(())
}

/// As `Driver::maybe_snapshot`: writes a snapshot from a read view and compacts the log.
fn maybe_snapshot(running: &mut Running, disk: &Disk, output: &mut TurnOutput) -> Result<(), Stop> {
    let Some((applied, conf)) = running.core.snapshot_due() else { return Ok(()) };
    let view = running.core.read_view();
    running.core.wal_mut().compact_from(applied, conf, &*view).map_err(|error| stop(disk, error))?;
    running.core.snapshot_taken(applied);
    output.snapshots.push((applied, view.hash()));
    Ok(())
}

fn drain_watch(running: &mut Running, output: &mut TurnOutput) {
    use tokio::sync::broadcast::error::TryRecvError;
    for _ in 0..server::watch::WATCH_CHANNEL_CAPACITY {
        match running.watch.try_recv() {
            Ok(events) => output.published.push(events),
            Err(TryRecvError::Lagged(_)) => output.watch_lagged = true,
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

impl Stop {
    /// A WAL error on a disk that crashed is the simulated power loss; any other is a finding.
    pub fn from_disk(disk: &Disk, error: wal::WalError) -> Stop {
        if disk.has_crashed() {
            Stop::Crashed
        } else {
            Stop::Fatal(format!("WAL error without a crash: {error}"))
        }
    }
}

fn stop(disk: &Disk, error: wal::WalError) -> Stop {
    Stop::from_disk(disk, error)
}

fn raft_config(settings: &MemberSettings, applied: u64, random_seed: u64) -> raft::Config {
    let mut config = raft::Config::new(settings.id);
    config.election_ticks = ELECTION_TICKS;
    config.applied = applied;
    config.random_seed = random_seed;
    config.pre_vote = settings.drawn.pre_vote;
    config.check_quorum = settings.drawn.check_quorum;
    config.append_size_bytes_max = settings.drawn.append_size_bytes_max;
    plant_raft_sabotage(config, settings.sabotage)
}

#[cfg(feature = "sabotage")]
fn plant_raft_sabotage(config: raft::Config, sabotage: Sabotage) -> raft::Config {
    let raft_sabotage = match sabotage {
        Sabotage::RaftReadIndexWithoutConfirmation => raft::Sabotage::ReadIndexWithoutConfirmation,
        Sabotage::RaftVoteWithoutElectionRestriction => raft::Sabotage::VoteWithoutElectionRestriction,
        Sabotage::RaftLeaderCountsUndurableEntries => raft::Sabotage::LeaderCountsUndurableEntries,
        Sabotage::RaftFollowerAcknowledgesBeforeDurable => raft::Sabotage::FollowerAcknowledgesBeforeDurable,
        _ => raft::Sabotage::None,
    };
    config.with_sabotage(raft_sabotage)
}

#[cfg(not(feature = "sabotage"))]
fn plant_raft_sabotage(config: raft::Config, sabotage: Sabotage) -> raft::Config {
    assert_eq!(sabotage, Sabotage::None, "sabotage needs the `sabotage` feature");
    config
}

#[cfg(feature = "sabotage")]
fn plant_core_sabotage(core: &mut ServerCore, sabotage: Sabotage) {
    use server::server_core::CoreSabotage;
    match sabotage {
        Sabotage::AcknowledgeBeforeDurable => core.set_sabotage(CoreSabotage::AcknowledgeBeforeDurable),
        Sabotage::ReadWithoutReadIndex => core.set_sabotage(CoreSabotage::ReadWithoutReadIndex),
        _ => {}
    }
}

#[cfg(not(feature = "sabotage"))]
fn plant_core_sabotage(_core: &mut ServerCore, sabotage: Sabotage) {
    assert_eq!(sabotage, Sabotage::None, "sabotage needs the `sabotage` feature");
}
