//! The playground's own driver of the real Raft core: a set of [`RawNode`]s over
//! [`MemoryStorage`], driven the way `raftkv serve` drives its node (persist the `Ready`,
//! report it durable, hand out the messages, apply the committed entries), plus what the
//! guided scenarios need and the test kit's network does not offer: log compaction into
//! a snapshot, ReadIndex reads, follower reads of applied state, proposals refused with
//! the leader's address (forwarding off) and a state machine with client request ids.
//!
//! Messages are not queued here: [`Cluster::take_messages`] hands them to the caller,
//! which numbers them and delivers each with [`Cluster::step`].

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raft::{
    ConfChange, ConfState, Config, Entry, EntryKind, HardState, Index, MemoryStorage, Message, NodeId, ProposeError,
    RawNode, SplitMix64, Term,
};

/// Most `Ready` rounds handled after one input before a problem is reported.
const READY_ROUNDS_MAX: usize = 64;
/// Most nodes in a cluster.
pub const NODES_MAX: usize = 9;
/// Most reads waiting for their read index on one node.
pub const PENDING_READS_MAX: usize = 16;
/// Most read answers kept per node.
pub const READ_ANSWERS_MAX: usize = 16;

/// How every node of a [`Cluster`] is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// `Config::election_ticks`.
    pub election_ticks: u32,
    /// `Config::heartbeat_ticks`.
    pub heartbeat_ticks: u32,
    /// `Config::pre_vote`.
    pub pre_vote: bool,
    /// `Config::check_quorum`.
    pub check_quorum: bool,
    /// `Config::append_size_bytes_max` (1: one entry per AppendEntries).
    pub append_size_bytes_max: u64,
    /// `Config::forward_proposals`: false makes a follower refuse with the leader's id.
    pub forward_proposals: bool,
    /// Nodes configured with `forward_proposals` false whatever `forward_proposals` says.
    pub no_forwarding: Vec<NodeId>,
    /// Seed of every node's election randomness.
    pub seed: u64,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        let defaults = Config::new(1);
        ClusterOptions {
            election_ticks: defaults.election_ticks,
            heartbeat_ticks: defaults.heartbeat_ticks,
            pre_vote: defaults.pre_vote,
            check_quorum: defaults.check_quorum,
            append_size_bytes_max: defaults.append_size_bytes_max,
            forward_proposals: defaults.forward_proposals,
            no_forwarding: Vec::new(),
            seed: 1,
        }
    }
}

/// A read waiting for (or answered at) its read index.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingRead {
    context: String,
    key: String,
    index: Option<Index>,
}

/// One node: the running core (None while crashed), its durable storage and its state machine.
struct Slot {
    node: Option<RawNode<MemoryStorage>>,
    durable: MemoryStorage,
    /// Applied normal entries of this incarnation: (index, command).
    applied: Vec<(Index, String)>,
    pending_reads: Vec<PendingRead>,
    read_answers: Vec<String>,
    incarnation: u64,
}

/// A cluster of real Raft cores under manual control.
pub struct Cluster {
    options: ClusterOptions,
    slots: BTreeMap<NodeId, Slot>,
    outbox: Vec<Message>,
    groups: BTreeMap<NodeId, u64>,
    next_group: u64,
    problems: Vec<String>,
    next_read: u64,
}

impl Cluster {
    /// `node_count` voters `1..=node_count` with empty logs.
    pub fn new(node_count: usize, options: ClusterOptions) -> Result<Cluster, String> {
        if node_count == 0 || node_count > NODES_MAX {
            return Err(format!("node count must be in 1..={NODES_MAX}, not {node_count}"));
        }
        let voters: Vec<NodeId> = (1..=node_count as NodeId).collect();
        let mut cluster = Cluster {
            options,
            slots: BTreeMap::new(),
            outbox: Vec::new(),
            groups: voters.iter().map(|id| (*id, 0)).collect(),
            next_group: 1,
            problems: Vec::new(),
            next_read: 1,
        };
        for id in &voters {
            cluster.slots.insert(*id, empty_slot(MemoryStorage::new_with_voters(&voters)));
            cluster.start(*id)?;
        }
        Ok(cluster)
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        self.slots.keys().copied().collect()
    }

    /// True if `id` is a node of this cluster.
    pub fn contains(&self, id: NodeId) -> bool {
        self.slots.contains_key(&id)
    }

    /// True if `id` exists and runs.
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_some_and(|slot| slot.node.is_some())
    }

    /// The running node `id`.
    pub fn node(&self, id: NodeId) -> Option<&RawNode<MemoryStorage>> {
        self.slots.get(&id).and_then(|slot| slot.node.as_ref())
    }

    fn slot_mut(&mut self, id: NodeId) -> Result<&mut Slot, String> {
        self.slots.get_mut(&id).ok_or_else(|| format!("there is no node {id}"))
    }

    fn live_node_mut(&mut self, id: NodeId) -> Result<&mut RawNode<MemoryStorage>, String> {
        self.slot_mut(id)?.node.as_mut().ok_or_else(|| format!("S{id} is down"))
    }

    /// The live node that leads in the highest term.
    pub fn current_leader(&self) -> Option<NodeId> {
        let leaders = self.slots.iter().filter_map(|(id, slot)| slot.node.as_ref().map(|node| (*id, node)));
        let leaders = leaders.filter(|(_, node)| node.role() == raft::Role::Leader);
        leaders.max_by_key(|(_, node)| node.term()).map(|(id, _)| id)
    }

    /// The messages the nodes sent since the last call, in order.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.outbox)
    }

    /// Problems met (a node that never quiesced); taking them clears the list.
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    fn config(&self, id: NodeId, incarnation: u64) -> Config {
        let options = &self.options;
        let mut config = Config::new(id);
        config.election_ticks = options.election_ticks;
        config.heartbeat_ticks = options.heartbeat_ticks;
        config.pre_vote = options.pre_vote;
        config.check_quorum = options.check_quorum;
        config.append_size_bytes_max = options.append_size_bytes_max;
        config.forward_proposals = options.forward_proposals && !options.no_forwarding.contains(&id);
        let mut generator = SplitMix64::new(options.seed.wrapping_mul(0x1000_0000_01B3) ^ (id << 20) ^ incarnation);
        config.random_seed = generator.next_u64();
        config
    }

    /// (Re)starts `id` from its durable storage; its state machine restarts from the snapshot.
    fn start(&mut self, id: NodeId) -> Result<(), String> {
        let incarnation = self.slots.get(&id).map(|slot| slot.incarnation).unwrap_or(0);
        let config = self.config(id, incarnation);
        let slot = self.slot_mut(id)?;
        let snapshot = raft::Storage::snapshot(&slot.durable).map_err(|error| error.to_string())?;
        slot.applied = decode_snapshot(&snapshot.data);
        let mut config = config;
        config.applied = snapshot.meta.index;
        slot.node = Some(RawNode::new(config, slot.durable.clone()).map_err(|error| error.to_string())?);
        slot.pending_reads.clear();
        self.process(id);
        Ok(())
    }

    /// Handles every `Ready` of `id`: persist, report durable, collect messages, apply.
    fn process(&mut self, id: NodeId) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        let Some(node) = slot.node.as_mut() else { return };
        for _ in 0..READY_ROUNDS_MAX {
            if !node.has_ready() {
                serve_reads(slot);
                return;
            }
            let ready = node.ready();
            if ready.must_persist() {
                if let Some(snapshot) = ready.snapshot.clone() {
                    node.storage_mut().apply_snapshot(snapshot);
                }
                node.storage_mut().append(&ready.entries);
                if let Some(hard_state) = ready.hard_state {
                    node.storage_mut().set_hard_state(hard_state);
                }
                node.on_persisted(ready.persist_sequence);
            }
            if let Some(snapshot) = &ready.snapshot {
                slot.applied = decode_snapshot(&snapshot.data);
            }
            self.outbox.extend(ready.messages);
            for entry in ready.committed_entries.iter().filter(|entry| entry.kind == EntryKind::Normal) {
                slot.applied.push((entry.index, String::from_utf8_lossy(&entry.data).into_owned()));
            }
            for read_state in ready.read_states {
                let context = String::from_utf8_lossy(&read_state.context).into_owned();
                if let Some(read) = slot.pending_reads.iter_mut().find(|read| read.context == context) {
                    read.index = Some(read_state.index);
                }
            }
        }
        self.problems.push(format!("S{id} still had a Ready after {READY_ROUNDS_MAX} rounds"));
    }

    /// One tick of `id`'s clock.
    pub fn tick(&mut self, id: NodeId) -> Result<(), String> {
        self.live_node_mut(id)?.tick();
        self.process(id);
        Ok(())
    }

    /// `id` starts an election now (no pre-vote).
    pub fn campaign(&mut self, id: NodeId) -> Result<(), String> {
        self.live_node_mut(id)?.campaign();
        self.process(id);
        Ok(())
    }

    /// Proposes `command` on `id`; the core's verdict (a follower forwards, or refuses
    /// with the leader's id when forwarding is off).
    pub fn propose(&mut self, id: NodeId, command: &str) -> Result<Result<(), ProposeError>, String> {
        let result = self.live_node_mut(id)?.propose(Bytes::from(command.to_string()));
        self.process(id);
        Ok(result)
    }

    /// Proposes a membership change on `id`; the core's verdict.
    pub fn conf_change(&mut self, id: NodeId, change: ConfChange) -> Result<Result<(), ProposeError>, String> {
        let result = self.live_node_mut(id)?.propose_conf_change(change);
        self.process(id);
        Ok(result)
    }

    /// Starts a linearizable read of `key` on `id` (ReadIndex); answered once `id` has
    /// applied up to the read index the leader confirms. Returns the read's name.
    pub fn read_index(&mut self, id: NodeId, key: &str) -> Result<String, String> {
        let context = format!("read{}", self.next_read);
        let slot = self.slot_mut(id)?;
        if slot.pending_reads.len() >= PENDING_READS_MAX {
            return Err(format!("S{id} already has {PENDING_READS_MAX} reads waiting"));
        }
        let node = slot.node.as_mut().ok_or_else(|| format!("S{id} is down"))?;
        node.read_index(Bytes::from(context.clone())).map_err(|error| format!("S{id} refused the read: {error}"))?;
        slot.pending_reads.push(PendingRead { context: context.clone(), key: key.to_string(), index: None });
        self.next_read += 1;
        self.process(id);
        Ok(context)
    }

    /// A read of `key` served at once from `id`'s applied state (no ReadIndex): the answer.
    pub fn read_local(&mut self, id: NodeId, key: &str) -> Result<String, String> {
        let slot = self.slot_mut(id)?;
        let node = slot.node.as_ref().ok_or_else(|| format!("S{id} is down"))?;
        let applied = node.applied_index();
        let value = state_of(&slot.applied).get(key).cloned().unwrap_or_else(|| "(none)".to_string());
        let answer = format!("local read {key} = {value} (applied {applied})");
        push_bounded(&mut slot.read_answers, answer.clone());
        Ok(answer)
    }

    /// Delivers `message` to its recipient (the caller checked links and liveness).
    pub fn step(&mut self, message: Message) -> Result<(), String> {
        let to = message.to;
        let result = self.live_node_mut(to)?.step(message);
        self.process(to);
        result.map_err(|error| format!("{error:?}"))
    }

    /// Crashes `id`: volatile state is lost, storage stays.
    pub fn crash(&mut self, id: NodeId) -> Result<(), String> {
        let slot = self.slot_mut(id)?;
        let node = slot.node.take().ok_or_else(|| format!("S{id} is already down"))?;
        slot.durable = node.storage().clone();
        slot.applied.clear();
        slot.pending_reads.clear();
        Ok(())
    }

    /// Restarts a crashed `id` from its storage.
    pub fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let slot = self.slot_mut(id)?;
        if slot.node.is_some() {
            return Err(format!("S{id} is running"));
        }
        slot.incarnation += 1;
        self.start(id)
    }

    /// Adds node `id` with an empty log and no configuration (a server started to join).
    pub fn add_node(&mut self, id: NodeId) -> Result<(), String> {
        if id == 0 || self.slots.contains_key(&id) || self.slots.len() >= NODES_MAX {
            return Err(format!("cannot add S{id}: it exists, is 0, or the cluster is full"));
        }
        self.groups.insert(id, 0);
        self.slots.insert(id, empty_slot(MemoryStorage::default()));
        self.start(id)
    }

    /// Compacts `id`'s log up to `index` (at most its applied index) into a snapshot of
    /// its state machine.
    pub fn compact(&mut self, id: NodeId, index: Index) -> Result<(), String> {
        let slot = self.slot_mut(id)?;
        let node = slot.node.as_mut().ok_or_else(|| format!("S{id} is down"))?;
        if index > node.applied_index() || index < node.first_index() {
            return Err(format!(
                "S{id} can compact only applied entries {}..={}",
                node.first_index(),
                node.applied_index()
            ));
        }
        let conf = node.conf_state();
        let data = encode_snapshot(slot.applied.iter().filter(|(applied, _)| *applied <= index));
        node.storage_mut().compact(index, conf, data);
        Ok(())
    }

    /// Replaces `id`'s log by scenario entries of `terms` (index 1 first) and restarts it.
    pub fn install_log(&mut self, id: NodeId, terms: &[Term]) -> Result<(), String> {
        if terms.windows(2).any(|pair| pair[1] < pair[0]) {
            return Err(format!("terms must not decrease along a log: {terms:?}"));
        }
        let old = self.storage(id).ok_or_else(|| format!("there is no node {id}"))?.hard_state();
        let voters = self.ids();
        let mut storage = MemoryStorage::new_with_voters(&voters);
        let entries: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(position, term)| raft::testkit::network::scenario_entry(*term, position as Index + 1))
            .collect();
        storage.append(&entries);
        let last_term = terms.last().copied().unwrap_or(0);
        let vote = if last_term > old.term { 0 } else { old.vote };
        storage.set_hard_state(HardState { term: old.term.max(last_term), vote, commit: 0 });
        self.replace_storage(id, storage)
    }

    /// Raises `id`'s stored term (clearing its vote) and restarts it.
    pub fn set_term(&mut self, id: NodeId, term: Term) -> Result<(), String> {
        let mut storage = self.storage(id).ok_or_else(|| format!("there is no node {id}"))?.clone();
        let old = storage.hard_state();
        if term < old.term {
            return Err(format!("S{id} is already at term {}", old.term));
        }
        storage.set_hard_state(HardState { term, vote: 0, commit: old.commit });
        self.replace_storage(id, storage)
    }

    fn replace_storage(&mut self, id: NodeId, storage: MemoryStorage) -> Result<(), String> {
        let slot = self.slot_mut(id)?;
        slot.node = None;
        slot.durable = storage;
        slot.incarnation += 1;
        self.start(id)
    }

    /// `id`'s durable storage (the live node's, or what a crash kept).
    pub fn storage(&self, id: NodeId) -> Option<&MemoryStorage> {
        let slot = self.slots.get(&id)?;
        Some(slot.node.as_ref().map_or(&slot.durable, |node| node.storage()))
    }

    /// Last index `id`'s log was compacted up to (0: never compacted).
    pub fn snapshot_index(&self, id: NodeId) -> Index {
        match self.node(id) {
            Some(node) => node.first_index().saturating_sub(1),
            None => self.storage(id).map_or(0, |storage| raft::Storage::first_index(storage).saturating_sub(1)),
        }
    }

    /// `id`'s log (live: persisted or not; crashed: what its storage kept).
    pub fn log_entries(&self, id: NodeId) -> Vec<Entry> {
        match self.node(id) {
            Some(node) => node.log_entries(),
            None => self.storage(id).map(|storage| storage.all_entries().to_vec()).unwrap_or_default(),
        }
    }

    /// Commands `id` applied in this incarnation (from its snapshot on), in order.
    pub fn applied(&self, id: NodeId) -> Vec<String> {
        let slot = self.slots.get(&id);
        slot.map(|slot| slot.applied.iter().map(|(_, command)| command.clone()).collect()).unwrap_or_default()
    }

    /// `id`'s state machine: key → value after its applied commands.
    pub fn state_machine(&self, id: NodeId) -> BTreeMap<String, String> {
        self.slots.get(&id).map(|slot| state_of(&slot.applied)).unwrap_or_default()
    }

    /// Read answers `id` gave, oldest first, and the reads still waiting (as text).
    pub fn reads(&self, id: NodeId) -> (Vec<String>, Vec<String>) {
        let Some(slot) = self.slots.get(&id) else { return (Vec::new(), Vec::new()) };
        let waiting = slot
            .pending_reads
            .iter()
            .map(|read| match read.index {
                Some(index) => format!("read {} waits until applied ≥ read index {index}", read.key),
                None => format!("read {} waits for the leader to confirm a read index", read.key),
            })
            .collect();
        (slot.read_answers.clone(), waiting)
    }

    /// `id`'s membership as of its latest configuration (live) or its storage (down).
    pub fn membership(&self, id: NodeId) -> ConfState {
        match self.node(id) {
            Some(node) => node.latest_conf_state().clone(),
            None => self
                .storage(id)
                .and_then(|storage| raft::Storage::initial_state(storage).ok())
                .map(|state| state.conf_state)
                .unwrap_or_default(),
        }
    }

    /// True if messages from `from` reach `to` (same partition group).
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        self.groups.get(&from) == self.groups.get(&to)
    }

    /// Splits the cluster into groups; nodes in no group are alone.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        for id in self.ids() {
            self.groups.insert(id, self.next_group);
            self.next_group += 1;
        }
        for group in groups {
            for id in group {
                self.groups.insert(*id, self.next_group);
            }
            self.next_group += 1;
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.groups.values_mut().for_each(|group| *group = 0);
    }

    /// The partition groups (each a list of ids).
    pub fn groups(&self) -> BTreeSet<Vec<NodeId>> {
        let mut by_group: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for (id, group) in &self.groups {
            by_group.entry(*group).or_default().push(*id);
        }
        by_group.into_values().collect()
    }
}

fn empty_slot(durable: MemoryStorage) -> Slot {
    Slot {
        node: None,
        durable,
        applied: Vec::new(),
        pending_reads: Vec::new(),
        read_answers: Vec::new(),
        incarnation: 0,
    }
}

fn push_bounded(list: &mut Vec<String>, text: String) {
    if list.len() >= READ_ANSWERS_MAX {
        list.remove(0);
    }
    list.push(text);
}

/// Answers the reads whose read index this node has applied.
fn serve_reads(slot: &mut Slot) {
    let Some(node) = slot.node.as_ref() else { return };
    let applied = node.applied_index();
    let (ready, waiting): (Vec<PendingRead>, Vec<PendingRead>) =
        slot.pending_reads.drain(..).partition(|read| read.index.is_some_and(|index| index <= applied));
    slot.pending_reads = waiting;
    for read in ready {
        let value = state_of(&slot.applied).get(&read.key).cloned().unwrap_or_else(|| "(none)".to_string());
        let index = read.index.unwrap_or(0);
        push_bounded(&mut slot.read_answers, format!("linearizable read {} = {value} (read index {index})", read.key));
    }
}

/// A snapshot's data: one `index<TAB>command` line per applied command.
fn encode_snapshot<'a>(applied: impl Iterator<Item = &'a (Index, String)>) -> Bytes {
    let lines: Vec<String> = applied.map(|(index, command)| format!("{index}\t{command}")).collect();
    Bytes::from(lines.join("\n"))
}

fn decode_snapshot(data: &[u8]) -> Vec<(Index, String)> {
    let text = String::from_utf8_lossy(data);
    text.lines()
        .filter_map(|line| line.split_once('\t'))
        .filter_map(|(index, command)| index.parse().ok().map(|index| (index, command.to_string())))
        .collect()
}

/// The playground's state machine, applied in order: `key=value` sets, `key+=n` adds,
/// anything else is kept as an opaque command. A command ending in ` #client.sequence`
/// carries a client request id: the state machine remembers each client's highest
/// sequence applied and ignores a repeat (the client protocol of Raft §8 / thesis §6.3).
pub fn state_of(applied: &[(Index, String)]) -> BTreeMap<String, String> {
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    let mut sessions: BTreeMap<String, u64> = BTreeMap::new();
    for (_, command) in applied {
        let (operation, request) = split_request_id(command);
        if let Some((client, sequence)) = request {
            let seen = sessions.entry(client.to_string()).or_insert(0);
            if sequence <= *seen {
                continue;
            }
            *seen = sequence;
        }
        if let Some((key, amount)) = operation.split_once("+=") {
            let current: i64 = state.get(key.trim()).and_then(|value| value.parse().ok()).unwrap_or(0);
            let amount: i64 = amount.trim().parse().unwrap_or(0);
            state.insert(key.trim().to_string(), (current + amount).to_string());
        } else if let Some((key, value)) = operation.split_once('=') {
            state.insert(key.trim().to_string(), value.trim().to_string());
        }
    }
    state
}

/// `("x+=1", Some(("c1", 1)))` for `x+=1 #c1.1`.
pub fn split_request_id(command: &str) -> (&str, Option<(&str, u64)>) {
    let Some((operation, id)) = command.rsplit_once(" #") else { return (command, None) };
    match id.split_once('.').and_then(|(client, sequence)| sequence.parse().ok().map(|sequence| (client, sequence))) {
        Some(request) => (operation, Some(request)),
        None => (command, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(commands: &[&str]) -> Vec<(Index, String)> {
        commands.iter().enumerate().map(|(position, command)| (position as Index + 1, command.to_string())).collect()
    }

    #[test]
    fn the_state_machine_ignores_a_repeated_request_id() {
        let state = state_of(&applied(&["x=1", "x+=1", "x+=1"]));
        assert_eq!(state.get("x").map(String::as_str), Some("3"), "without ids both increments count");
        let state = state_of(&applied(&["x=1", "x+=1 #c1.1", "x+=1 #c1.1", "x+=1 #c1.2"]));
        assert_eq!(state.get("x").map(String::as_str), Some("3"), "the repeat of c1.1 is ignored");
    }

    #[test]
    fn snapshots_round_trip() {
        let commands = applied(&["a=1", "b+=2"]);
        assert_eq!(decode_snapshot(&encode_snapshot(commands.iter())), commands);
    }

    #[test]
    fn a_compacted_follower_catches_up_from_a_snapshot() {
        let mut cluster = Cluster::new(3, ClusterOptions::default()).expect("cluster");
        cluster.crash(3).expect("crash");
        cluster.campaign(1).expect("campaign");
        settle(&mut cluster);
        for command in ["a=1", "b=2", "c=3"] {
            cluster.propose(1, command).expect("live").expect("accepted");
            settle(&mut cluster);
        }
        let applied = cluster.node(1).expect("leader").applied_index();
        cluster.compact(1, applied).expect("compact");
        assert!(cluster.compact(1, applied + 1).is_err(), "only applied entries compact");
        cluster.restart(3).expect("restart");
        for _ in 0..3 {
            cluster.tick(1).expect("tick");
            settle(&mut cluster);
        }
        assert_eq!(cluster.state_machine(3), cluster.state_machine(1));
        assert_eq!(cluster.node(3).expect("follower").applied_index(), applied);
    }

    fn settle(cluster: &mut Cluster) {
        for _ in 0..50 {
            let messages = cluster.take_messages();
            if messages.is_empty() {
                return;
            }
            for message in messages {
                if cluster.is_alive(message.to) {
                    let _ = cluster.step(message);
                }
            }
        }
        panic!("the cluster did not settle");
    }
}
