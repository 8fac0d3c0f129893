//! One simulated node: the real core, its simulated disk and its state machine.
//!
//! The node's [`NodeView`] doubles as the driver's mirror of the core's log (maintained
//! from the `Ready`s it hands out) and as the state machine's applied list.

use std::collections::VecDeque;

use raft::{
    Config, Entry, HardState, Index, MemoryStorage, Message, NodeId, RawNode, Ready, Snapshot, SplitMix64, Storage,
};

use crate::options::{RunSettings, Sabotage};
use crate::state_machine::StateMachine;
use crate::trace::NodeState;
use crate::view::{EntryView, LogView, NodeView};

/// A Ready's writes, waiting for their simulated fsync.
#[derive(Clone, Debug)]
struct PendingWrite {
    persist_sequence: u64,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
}

/// What handling Readys produced, for the simulator to act on.
#[derive(Debug, Default)]
pub struct ReadyOutput {
    /// Messages to send.
    pub messages: Vec<Message>,
    /// Persist sequences of new pending writes (to schedule their fsync).
    pub writes: Vec<u64>,
    /// Operation ids applied, in order.
    pub applied_operations: Vec<u64>,
    /// Reads confirmed by the core: (context, index to apply before serving).
    pub read_states: Vec<(bytes::Bytes, Index)>,
    /// Snapshots restored into the state machine.
    pub snapshots_installed: u64,
    /// Broken driver contracts (the core handed out something inconsistent).
    pub problems: Vec<String>,
}

/// The most Readys drained after one input (each may release the next).
const READY_ROUNDS_MAX: usize = 8;

/// A node of the simulated cluster.
pub struct SimNode {
    id: NodeId,
    raw: Option<RawNode<MemoryStorage>>,
    /// What is durable while the node is down.
    crashed_storage: Option<MemoryStorage>,
    pending: VecDeque<PendingWrite>,
    state_machine: StateMachine,
    /// With [`Sabotage::AcknowledgeBeforeSync`]: what really reached the disk.
    really_durable: Option<MemoryStorage>,
    /// The deliberate bug this node's driver (or core) has, if any.
    sabotage: Sabotage,
    /// The run's core settings (pre-vote, check-quorum, append size).
    settings: RunSettings,
    /// Time the disk finishes its last queued write (writes complete in order).
    pub disk_busy_until: u64,
    /// Index of the last Config entry handed out to apply in this incarnation: a snapshot
    /// below it would carry the wrong configuration, so compaction waits.
    last_config_applied: Index,
    /// Wiped and added again after a removal: until it holds log entries again it must not
    /// vote, or a removed node with a stale configuration that still lists it could win an
    /// election with its empty vote (found by the simulator, seed 4456).
    rejoined: bool,
}

fn entry_view(entry: &Entry) -> EntryView {
    EntryView { index: entry.index, term: entry.term, data_hash: crate::hash_entry(entry) }
}

fn write_to(storage: &mut MemoryStorage, write: &PendingWrite) {
    if let Some(snapshot) = &write.snapshot {
        storage.apply_snapshot(snapshot.clone());
    }
    storage.append(&write.entries);
    if let Some(hard_state) = write.hard_state {
        storage.set_hard_state(hard_state);
    }
}

/// Snapshot chunk size in the simulator: small, so a transfer takes many messages.
const SNAPSHOT_CHUNK_BYTES: u64 = 256;
/// A small pipelining window, so the simulator fills it (and loses what is in flight).
const INFLIGHT_MESSAGES_MAX: usize = 4;

/// The core's configuration in the simulator for node `id`.
fn core_config(id: NodeId, seed: u64, settings: &RunSettings, sabotage: Sabotage) -> Config {
    let mut config = Config::new(id).with_sabotage(sabotage.core());
    config.random_seed = seed;
    // Small chunks so snapshot transfers span many messages (lost, duplicated, reordered).
    config.snapshot_chunk_bytes_max = SNAPSHOT_CHUNK_BYTES;
    config.inflight_messages_max = INFLIGHT_MESSAGES_MAX;
    config.pre_vote = settings.pre_vote;
    config.check_quorum = settings.check_quorum;
    config.append_size_bytes_max = settings.append_size_bytes_max;
    config
}

impl SimNode {
    /// A node of a new cluster of `voters`.
    pub fn new(
        id: NodeId,
        voters: &[NodeId],
        seed: u64,
        settings: RunSettings,
        sabotage: Sabotage,
    ) -> Result<Self, String> {
        let config = core_config(id, seed, &settings, sabotage);
        // A node outside the initial configuration is a member yet to be added. It starts
        // empty and votes like etcd's new members: abstaining until caught up would
        // deadlock a cluster whose new voters must elect the leader that catches them up.
        let raw = RawNode::new(config, MemoryStorage::new_with_voters(voters)).map_err(|error| error.to_string())?;
        let state_machine = StateMachine::default();
        Ok(SimNode {
            id,
            raw: Some(raw),
            crashed_storage: None,
            pending: VecDeque::new(),
            state_machine,
            disk_busy_until: 0,
            really_durable: None,
            sabotage,
            settings,
            last_config_applied: 0,
            rejoined: false,
        })
    }

    /// The core, if the node is up.
    pub fn raw_mut(&mut self) -> Option<&mut RawNode<MemoryStorage>> {
        self.raw.as_mut()
    }

    /// The core, if the node is up.
    pub fn raw(&self) -> Option<&RawNode<MemoryStorage>> {
        self.raw.as_ref()
    }

    /// What is really on this node's disk: its storage (or, with
    /// [`Sabotage::AcknowledgeBeforeSync`], what fsync completed), the durable state when down.
    pub fn durable_storage(&self) -> Option<&MemoryStorage> {
        match &self.raw {
            Some(raw) => Some(self.really_durable.as_ref().unwrap_or(raw.storage())),
            None => self.crashed_storage.as_ref(),
        }
    }

    /// True unless crashed.
    pub fn is_alive(&self) -> bool {
        self.raw.is_some()
    }

    /// True if `operation` was applied by this node's state machine.
    pub fn has_applied(&self, operation: u64) -> bool {
        self.state_machine.operation_set.contains(&operation)
    }

    /// The last operation that took effect here (the register value a read returns).
    pub fn last_effective_operation(&self) -> Option<u64> {
        self.state_machine.last_effective
    }

    /// Operation id of each entry of the applied list, in order.
    pub fn applied_operations(&self) -> &[u64] {
        &self.state_machine.operations
    }

    /// Highest index the state machine applied.
    pub fn applied_index(&self) -> Index {
        self.state_machine.applied_index
    }

    /// True if writes wait for fsync.
    pub fn has_pending_writes(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Role, term, commit and last index, for traces.
    pub fn state(&self) -> Option<NodeState> {
        let raw = self.raw.as_ref()?;
        Some(NodeState { role: raw.role(), term: raw.term(), commit: raw.commit_index(), last_index: raw.last_index() })
    }

    /// Handles every Ready the core has, updating `view` (log mirror, applied list).
    pub fn drain_ready(&mut self, view: &mut NodeView, output: &mut ReadyOutput) {
        for _ in 0..READY_ROUNDS_MAX {
            let Some(raw) = self.raw.as_mut() else { return };
            if !raw.has_ready() {
                break;
            }
            let ready = raw.ready();
            self.handle_ready(ready, view, output);
        }
        self.refresh_view(view);
    }

    fn handle_ready(&mut self, ready: Ready, view: &mut NodeView, output: &mut ReadyOutput) {
        output.messages.extend(ready.messages);
        output.read_states.extend(ready.read_states.into_iter().map(|read| (read.context, read.index)));
        if let Some(snapshot) = &ready.snapshot {
            output.snapshots_installed += 1;
            mirror_snapshot(view, snapshot);
            match StateMachine::decode(&snapshot.data) {
                Ok((state_machine, applied)) => {
                    self.state_machine = state_machine;
                    view.applied = applied;
                    view.applied_generation += 1;
                }
                Err(reason) => output.problems.push(format!("node {}: {reason}", self.id)),
            }
        }
        if let Err(reason) = mirror_entries(view, &ready.entries) {
            output.problems.push(format!("node {}: {reason}", self.id));
        }
        for entry in &ready.committed_entries {
            if entry.kind == raft::EntryKind::Config {
                self.last_config_applied = entry.index;
            }
            if entry.index != self.state_machine.applied_index + 1 {
                let expected = self.state_machine.applied_index + 1;
                output
                    .problems
                    .push(format!("node {}: handed index {} to apply, expected {expected}", self.id, entry.index));
            }
            output.applied_operations.extend(self.state_machine.apply(entry, &mut view.applied));
        }
        if ready.persist_sequence != 0 {
            let persist_sequence = ready.persist_sequence;
            if self.pending.back().is_some_and(|last| last.persist_sequence >= persist_sequence) {
                output.problems.push(format!("node {}: persist sequence {persist_sequence} not increasing", self.id));
            }
            let write = PendingWrite {
                persist_sequence,
                snapshot: ready.snapshot,
                entries: ready.entries,
                hard_state: ready.hard_state,
            };
            self.pending.push_back(write);
            output.writes.push(persist_sequence);
            if self.sabotage == Sabotage::AcknowledgeBeforeSync {
                self.acknowledge_before_sync();
            }
        }
    }

    /// Copies role, term and commit index from the core into `view`.
    pub fn refresh_view(&self, view: &mut NodeView) {
        let Some(raw) = self.raw.as_ref() else { return };
        view.role = raw.role();
        view.term = raw.term();
        view.commit = raw.commit_index();
        view.uncommitted_config_entries = if raw.role() == raft::Role::Leader {
            // Entries a new leader inherited may stay uncommitted in its view for a while;
            // what it appends itself must be the only change in flight.
            let uncommitted = raw.entries(raw.commit_index() + 1, raw.last_index() + 1);
            let config: Vec<&raft::Entry> =
                uncommitted.iter().filter(|entry| entry.kind == raft::EntryKind::Config).collect();
            let own = config.iter().any(|entry| entry.term == raw.term());
            if own {
                config.len() as u64
            } else {
                0
            }
        } else {
            0
        };
    }

    /// The [`Sabotage::AcknowledgeBeforeSync`] bug: the newest write goes to storage and
    /// is reported persisted at once; only its fsync event makes it really durable.
    fn acknowledge_before_sync(&mut self) {
        let (Some(raw), Some(write)) = (self.raw.as_mut(), self.pending.back()) else { return };
        if self.really_durable.is_none() {
            self.really_durable = Some(raw.storage().clone());
        }
        write_to(raw.storage_mut(), write);
        raw.on_persisted(write.persist_sequence);
    }

    /// Makes the oldest pending write durable and tells the core.
    pub fn complete_write(&mut self, persist_sequence: u64) -> Result<(), String> {
        let Some(raw) = self.raw.as_mut() else { return Ok(()) };
        let Some(write) = self.pending.pop_front() else {
            return Err(format!("node {}: fsync #{persist_sequence} completed with nothing pending", self.id));
        };
        if write.persist_sequence != persist_sequence {
            return Err(format!(
                "node {}: fsync #{persist_sequence} completed before #{}",
                self.id, write.persist_sequence
            ));
        }
        if self.sabotage == Sabotage::AcknowledgeBeforeSync {
            let durable = self.really_durable.get_or_insert_with(|| MemoryStorage::new_with_voters(raw.voters()));
            write_to(durable, &write);
            return Ok(());
        }
        write_to(raw.storage_mut(), &write);
        raw.on_persisted(persist_sequence);
        Ok(())
    }

    /// Crashes the node: volatile state and pending writes are lost. With `torn`, some
    /// pending writes may have reached the disk whole, and a prefix of the next one's
    /// entries too. Returns a description for the trace.
    pub fn crash(&mut self, torn: bool, rng: &mut SplitMix64, view: &mut NodeView) -> String {
        let Some(raw) = self.raw.take() else { return format!("n{} already down", self.id) };
        let mut storage = self.really_durable.take().unwrap_or_else(|| raw.storage().clone());
        let mut description = format!("crash n{} ({} writes pending", self.id, self.pending.len());
        if torn && !self.pending.is_empty() {
            let complete = rng.range(0, self.pending.len() as u64 + 1) as usize;
            for write in self.pending.drain(..complete) {
                write_to(&mut storage, &write);
            }
            description += &format!(", {complete} reached disk");
            if let Some(write) =
                self.pending.front().filter(|write| write.snapshot.is_none() && !write.entries.is_empty())
            {
                let prefix = rng.range(0, write.entries.len() as u64 + 1) as usize;
                storage.append(&write.entries[..prefix]);
                description += &format!(", torn: kept {prefix}/{} entries", write.entries.len());
            }
        }
        self.pending.clear();
        self.crashed_storage = Some(storage);
        view.alive = false;
        description + ")"
    }

    /// Replaces the node by a brand-new empty one (a member added again after its removal
    /// gets a fresh data dir, as etcd requires): it starts without configuration and
    /// abstains from voting until it caught up. `view` follows.
    pub fn wipe(&mut self, seed: u64, view: &mut NodeView) -> Result<(), String> {
        self.raw = None;
        self.pending.clear();
        self.really_durable = None;
        self.crashed_storage = Some(MemoryStorage::default());
        self.state_machine = StateMachine::default();
        self.rejoined = true;
        self.restart(seed, view)
    }

    /// Restarts a crashed node from its durable storage; the state machine is restored
    /// from the storage's snapshot (empty if none) and the rest is re-applied.
    pub fn restart(&mut self, seed: u64, view: &mut NodeView) -> Result<(), String> {
        let Some(mut storage) = self.crashed_storage.take() else { return Ok(()) };
        if self.sabotage == Sabotage::ForgetVote {
            storage = forget_vote(&storage);
        }
        let snapshot = storage.snapshot().map_err(|error| error.to_string())?;
        let (state_machine, applied) = StateMachine::decode(&snapshot.data)?;
        let mut config = core_config(self.id, seed, &self.settings, self.sabotage);
        config.applied = state_machine.applied_index;
        config.abstain_until_caught_up = self.rejoined && storage.last_index() == 0;
        self.last_config_applied = 0;
        let raw = RawNode::new(config, storage).map_err(|error| format!("restart n{}: {error}", self.id))?;
        view.log = LogView {
            snapshot_index: raw.first_index() - 1,
            snapshot_term: raw.term_at(raw.first_index() - 1).unwrap_or(0),
            entries: raw.log_entries().iter().map(entry_view).collect(),
        };
        view.log_changed_from = 0;
        view.applied = applied;
        view.applied_generation += 1;
        view.incarnation += 1;
        view.alive = true;
        self.state_machine = state_machine;
        self.raw = Some(raw);
        self.refresh_view(view);
        Ok(())
    }

    /// Compacts the log when more than `threshold_entries` applied and durably committed
    /// entries follow the snapshot, keeping the last `keep_entries` of them.
    /// Returns true if it compacted.
    pub fn maybe_compact(&mut self, view: &mut NodeView, threshold_entries: u64, keep_entries: u64) -> bool {
        let Some(raw) = self.raw.as_mut() else { return false };
        let storage = raw.storage();
        let snapshot_index = storage.first_index() - 1;
        let durable = self.state_machine.applied_index.min(storage.hard_state().commit).min(storage.last_index());
        let target = durable.saturating_sub(keep_entries);
        let snapshot_pending = self.pending.iter().any(|write| write.snapshot.is_some());
        if self.last_config_applied > target {
            return false; // conf_state() is the configuration after a later entry
        }
        if target < snapshot_index + threshold_entries.max(1) || target <= view.log.snapshot_index || snapshot_pending {
            return false;
        }
        let data = self.state_machine.encode(target, &view.applied);
        let conf = raw.conf_state();
        raw.storage_mut().compact(target, conf, data);
        let snapshot_term = raw.storage().term(target).unwrap_or(0);
        let drop = ((target - view.log.snapshot_index) as usize).min(view.log.entries.len());
        view.log.entries.drain(..drop);
        view.log.snapshot_index = target;
        view.log.snapshot_term = snapshot_term;
        true
    }

    /// Compares the mirror in `view` with what the core reports (all entries if `full`).
    pub fn check_view(&self, view: &NodeView, full: bool) -> Option<String> {
        let raw = self.raw.as_ref()?;
        let last_index = raw.last_index();
        let mirror_last = view.log.last_index();
        if last_index != mirror_last || raw.term_at(last_index) != view.log.term_at(mirror_last) {
            return Some(format!(
                "node {}: core log ends at {last_index} (term {:?}), its Readys say {mirror_last} (term {:?})",
                self.id,
                raw.term_at(last_index),
                view.log.term_at(mirror_last)
            ));
        }
        if full {
            let entries: Vec<EntryView> = raw
                .log_entries()
                .iter()
                .filter(|entry| entry.index > view.log.snapshot_index)
                .map(entry_view)
                .collect();
            if entries != view.log.entries {
                return Some(format!("node {}: core log entries differ from what its Readys handed out", self.id));
            }
        }
        None
    }
}

/// The same log with term and vote forgotten (the [`Sabotage::ForgetVote`] bug).
fn forget_vote(storage: &MemoryStorage) -> MemoryStorage {
    let snapshot = storage.snapshot().unwrap_or_default();
    let mut forgetful = MemoryStorage::new_with_voters(&snapshot.meta.conf.voters);
    forgetful.apply_snapshot(snapshot);
    forgetful.append(storage.all_entries());
    let commit = storage.hard_state().commit;
    forgetful.set_hard_state(HardState { term: 0, vote: raft::NO_NODE, commit });
    forgetful
}

/// Mirrors an installed snapshot: entries after it survive only if the log matches it.
fn mirror_snapshot(view: &mut NodeView, snapshot: &Snapshot) {
    let meta = &snapshot.meta;
    let log = &mut view.log;
    if meta.index <= log.snapshot_index {
        return;
    }
    if log.term_at(meta.index) == Some(meta.term) {
        let drop = ((meta.index - log.snapshot_index) as usize).min(log.entries.len());
        log.entries.drain(..drop);
    } else {
        log.entries.clear();
    }
    log.snapshot_index = meta.index;
    log.snapshot_term = meta.term;
    view.log_changed_from = view.log_changed_from.min(meta.index + 1);
}

/// Mirrors appended entries: the suffix from the first new index is replaced.
fn mirror_entries(view: &mut NodeView, entries: &[Entry]) -> Result<(), String> {
    let Some(first) = entries.first() else { return Ok(()) };
    let log = &mut view.log;
    if first.index > log.last_index() + 1 {
        return Err(format!("entries start at {} after last index {}", first.index, log.last_index()));
    }
    let skip = log.snapshot_index.saturating_sub(first.index - 1) as usize;
    let Some(entries) = entries.get(skip..).filter(|rest| !rest.is_empty()) else { return Ok(()) };
    let keep = (entries[0].index - log.snapshot_index - 1) as usize;
    log.entries.truncate(keep);
    log.entries.extend(entries.iter().map(entry_view));
    view.log_changed_from = view.log_changed_from.min(entries[0].index);
    Ok(())
}
