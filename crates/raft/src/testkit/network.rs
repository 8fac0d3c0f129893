//! An in-memory cluster of [`RawNode`]s under manual control (like etcd-raft's
//! `rafttest` interaction harness).
//!
//! Every node persists synchronously into its own [`MemoryStorage`]: after each input the
//! driver takes `ready()`, writes snapshot, entries and hard state (in that order), calls
//! `on_persisted`, queues the messages in the network and appends committed entries to the
//! node's applied list. Messages stay in flight until a test delivers or drops them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::{
    ConfChange, Config, Entry, EntryKind, HardState, Index, MemoryStorage, Message, MessageBody, NodeId, ProposeError,
    RawNode, SplitMix64, StepError, Term,
};

/// Most `Ready` rounds the driver handles after one input before it reports a problem.
const READY_ROUNDS_MAX: usize = 64;

/// Default bound on the rounds of [`Network::deliver_all`].
pub const DELIVER_ROUNDS_MAX: usize = 10_000;

/// Most nodes a network may hold.
pub const NODES_MAX: usize = 64;

/// How the nodes of a [`Network`] are configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    /// `Config::election_ticks` of every node.
    pub election_ticks: u32,
    /// `Config::heartbeat_ticks` of every node.
    pub heartbeat_ticks: u32,
    /// `Config::pre_vote` of every node.
    pub pre_vote: bool,
    /// `Config::check_quorum` of every node.
    pub check_quorum: bool,
    /// `Config::append_size_bytes_max` of every node (1 makes every Append carry one entry).
    pub append_size_bytes_max: u64,
    /// Seed from which every node's `Config::random_seed` and the network's own choices derive.
    pub seed: u64,
}

impl Default for NetworkOptions {
    fn default() -> Self {
        let defaults = Config::new(1);
        NetworkOptions {
            election_ticks: defaults.election_ticks,
            heartbeat_ticks: defaults.heartbeat_ticks,
            pre_vote: defaults.pre_vote,
            check_quorum: defaults.check_quorum,
            append_size_bytes_max: defaults.append_size_bytes_max,
            seed: 1,
        }
    }
}

/// A link selector: `(from, to)`, `None` meaning any node.
pub type Link = (Option<NodeId>, Option<NodeId>);

/// Selects messages in flight: by link (`None` = any node) and by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// `(from, to)` pairs; empty means every link.
    pub links: Vec<Link>,
    /// Lower-case body names (`append`, `appendresp`, `heartbeat`, `vote`, ...); empty means all.
    pub kinds: Vec<String>,
}

impl MessageFilter {
    /// Every message.
    pub fn all() -> Self {
        MessageFilter::default()
    }

    /// Messages from `from` to `to`.
    pub fn link(from: NodeId, to: NodeId) -> Self {
        MessageFilter { links: vec![(Some(from), Some(to))], kinds: Vec::new() }
    }

    /// True if `message` is selected.
    pub fn matches(&self, message: &Message) -> bool {
        let link_matches = self.links.is_empty()
            || self
                .links
                .iter()
                .any(|(from, to)| from.is_none_or(|from| from == message.from) && to.is_none_or(|to| to == message.to));
        let name = kind_name(&message.body);
        let kind_matches = self.kinds.is_empty() || self.kinds.contains(&name);
        link_matches && kind_matches
    }
}

/// The lower-case name of a message body, as used by [`MessageFilter::kinds`].
pub fn kind_name(body: &MessageBody) -> String {
    body.name().to_ascii_lowercase()
}

/// One node's place in the network: the running node, or only its durable storage when crashed.
struct Slot {
    node: Option<RawNode<MemoryStorage>>,
    durable: MemoryStorage,
    applied: Vec<String>,
    incarnation: u64,
}

/// Counters a scenario asserts on (since the last [`Network::reset_counters`]).
#[derive(Clone, Debug, Default)]
struct Counters {
    appends: BTreeMap<(NodeId, NodeId), u64>,
    appends_until_converged: BTreeMap<(NodeId, NodeId), u64>,
    dropped: u64,
}

/// N nodes (ids `1..=N`) and the messages in flight between them.
pub struct Network {
    options: NetworkOptions,
    voters: Vec<NodeId>,
    slots: BTreeMap<NodeId, Slot>,
    in_flight: VecDeque<Message>,
    groups: BTreeMap<NodeId, u64>,
    next_group: u64,
    naive_backtracking: bool,
    counters: Counters,
    problems: Vec<String>,
    random: SplitMix64,
}

impl Network {
    /// A new cluster of `node_count` voters with empty logs.
    pub fn new(node_count: usize, options: NetworkOptions) -> Result<Network, String> {
        if node_count == 0 || node_count > NODES_MAX {
            return Err(format!("node count must be in 1..={NODES_MAX}, not {node_count}"));
        }
        let voters: Vec<NodeId> = (1..=node_count as NodeId).collect();
        let random = SplitMix64::new(options.seed ^ 0x005E_ED0F_7E57);
        let mut network = Network {
            options,
            voters: voters.clone(),
            slots: BTreeMap::new(),
            in_flight: VecDeque::new(),
            groups: voters.iter().map(|id| (*id, 0)).collect(),
            next_group: 1,
            naive_backtracking: false,
            counters: Counters::default(),
            problems: Vec::new(),
            random,
        };
        for id in voters {
            let storage = MemoryStorage::new_with_voters(&network.voters);
            let slot = Slot { node: None, durable: storage, applied: Vec::new(), incarnation: 0 };
            network.slots.insert(id, slot);
            network.start(id)?;
        }
        Ok(network)
    }

    /// The options the nodes were built with.
    pub fn options(&self) -> &NetworkOptions {
        &self.options
    }

    /// All node ids, ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        self.voters.clone()
    }

    /// True if `id` is a node of this network.
    pub fn contains(&self, id: NodeId) -> bool {
        self.slots.contains_key(&id)
    }

    /// True if `id` exists and is not crashed.
    pub fn is_alive(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_some_and(|slot| slot.node.is_some())
    }

    /// The running node `id` (None if unknown or crashed).
    pub fn node(&self, id: NodeId) -> Option<&RawNode<MemoryStorage>> {
        self.slots.get(&id).and_then(|slot| slot.node.as_ref())
    }

    fn slot_mut(&mut self, id: NodeId) -> Result<&mut Slot, String> {
        self.slots.get_mut(&id).ok_or_else(|| format!("no node {id}"))
    }

    fn live_node_mut(&mut self, id: NodeId) -> Result<&mut RawNode<MemoryStorage>, String> {
        let slot = self.slot_mut(id)?;
        slot.node.as_mut().ok_or_else(|| format!("node {id} is crashed"))
    }

    /// Problems the driver met (a node that never quiesced, step errors on ordinary
    /// deliveries); taking them clears the list.
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// (Re)starts node `id` from its durable storage with a fresh seed.
    fn start(&mut self, id: NodeId) -> Result<(), String> {
        let options = self.options.clone();
        let slot = self.slot_mut(id)?;
        let mut config = Config::new(id);
        config.election_ticks = options.election_ticks;
        config.heartbeat_ticks = options.heartbeat_ticks;
        config.pre_vote = options.pre_vote;
        config.check_quorum = options.check_quorum;
        config.append_size_bytes_max = options.append_size_bytes_max;
        config.random_seed = node_seed(options.seed, id, slot.incarnation);
        config.applied = 0;
        let node = RawNode::new(config, slot.durable.clone()).map_err(|error| error.to_string())?;
        slot.node = Some(node);
        slot.applied.clear();
        self.process(id);
        Ok(())
    }

    /// Handles every `Ready` of node `id`: persist, `on_persisted`, queue messages, apply.
    fn process(&mut self, id: NodeId) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        let Some(node) = slot.node.as_mut() else { return };
        for _ in 0..READY_ROUNDS_MAX {
            if !node.has_ready() {
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
                slot.applied.push(format!("<snapshot {}>", snapshot.meta.index));
            }
            self.in_flight.extend(ready.messages);
            let commands = ready.committed_entries.iter().filter(|entry| entry.kind == EntryKind::Normal);
            slot.applied.extend(commands.map(|entry| String::from_utf8_lossy(&entry.data).into_owned()));
        }
        self.problems.push(format!("node {id} still had a Ready after {READY_ROUNDS_MAX} rounds"));
    }

    /// Ticks node `id` `count` times, handling its `Ready` after each tick.
    pub fn tick(&mut self, id: NodeId, count: u32) -> Result<(), String> {
        for _ in 0..count {
            self.live_node_mut(id)?.tick();
            self.process(id);
        }
        Ok(())
    }

    /// One unit of cluster time: every live node ticks once, then messages are delivered
    /// until the network is quiet.
    pub fn run(&mut self, ticks: u32) -> Result<(), String> {
        for _ in 0..ticks {
            for id in self.ids() {
                if self.is_alive(id) {
                    self.tick(id, 1)?;
                }
            }
            self.deliver_all(DELIVER_ROUNDS_MAX)?;
        }
        Ok(())
    }

    /// Makes node `id` start an election now.
    pub fn campaign(&mut self, id: NodeId) -> Result<(), String> {
        self.live_node_mut(id)?.campaign();
        self.process(id);
        Ok(())
    }

    /// Proposes `commands` (in order, one batch) on node `id`.
    pub fn propose(&mut self, id: NodeId, commands: Vec<Bytes>) -> Result<(), String> {
        let result = self.live_node_mut(id)?.propose_batch(commands);
        self.process(id);
        result.map_err(|error: ProposeError| format!("proposal on node {id} refused: {error:?}"))
    }

    /// Adds node `id` with an empty log and no configuration (a new member started to join
    /// a running cluster): it never campaigns and learns its role from the leader.
    pub fn add_node(&mut self, id: NodeId) -> Result<(), String> {
        if id == 0 || self.slots.contains_key(&id) || self.slots.len() >= NODES_MAX {
            return Err(format!("cannot add node {id}: it exists, is 0, or the network is full"));
        }
        let group = self.main_group().first().and_then(|member| self.groups.get(member).copied()).unwrap_or(0);
        self.voters.push(id);
        self.voters.sort_unstable();
        self.groups.insert(id, group);
        let slot = Slot { node: None, durable: MemoryStorage::default(), applied: Vec::new(), incarnation: 0 };
        self.slots.insert(id, slot);
        self.start(id)
    }

    /// Proposes a membership change on node `id`; the core's verdict is returned.
    pub fn conf_change(&mut self, id: NodeId, change: ConfChange) -> Result<Result<(), ProposeError>, String> {
        let result = self.live_node_mut(id)?.propose_conf_change(change);
        self.process(id);
        Ok(result)
    }

    /// Asks node `id` to transfer its leadership to `target`; the core's verdict is returned.
    pub fn transfer_leader(&mut self, id: NodeId, target: NodeId) -> Result<Result<(), ProposeError>, String> {
        let result = self.live_node_mut(id)?.transfer_leader(target);
        self.process(id);
        Ok(result)
    }

    /// Steps `message` into its recipient directly (bypassing links and partitions) and
    /// returns the core's verdict. For crafted bad input.
    pub fn inject(&mut self, message: Message) -> Result<Result<(), StepError>, String> {
        let id = message.to;
        let result = self.live_node_mut(id)?.step(message);
        self.process(id);
        Ok(result)
    }

    /// Number of messages in flight selected by `filter`.
    pub fn pending(&self, filter: &MessageFilter) -> usize {
        self.in_flight.iter().filter(|message| filter.matches(message)).count()
    }

    /// The messages in flight, oldest first.
    pub fn in_flight(&self) -> impl Iterator<Item = &Message> {
        self.in_flight.iter()
    }

    /// Removes the messages selected by `filter`; returns how many.
    pub fn drop_messages(&mut self, filter: &MessageFilter) -> usize {
        let before = self.in_flight.len();
        self.in_flight.retain(|message| !filter.matches(message));
        let dropped = before - self.in_flight.len();
        self.counters.dropped += dropped as u64;
        dropped
    }

    /// Delivers, in order, the messages selected by `filter` that are in flight now (one
    /// round: messages they cause stay in flight). Messages to crashed nodes or across a
    /// partition are lost. Returns how many were delivered.
    pub fn deliver(&mut self, filter: &MessageFilter) -> usize {
        let mut selected = Vec::new();
        let mut kept = VecDeque::new();
        for message in self.in_flight.drain(..) {
            if filter.matches(&message) {
                selected.push(message);
            } else {
                kept.push_back(message);
            }
        }
        self.in_flight = kept;
        let mut delivered = 0;
        for message in selected {
            if self.deliver_one(message) {
                delivered += 1;
            }
        }
        delivered
    }

    fn deliver_one(&mut self, mut message: Message) -> bool {
        let (from, to) = (message.from, message.to);
        if !self.is_alive(to) || !self.connected(from, to) {
            self.counters.dropped += 1;
            return false;
        }
        if self.naive_backtracking {
            self.rewrite_hint_for_naive_leader(&mut message);
        }
        let is_append = matches!(message.body, MessageBody::Append { .. });
        let description = format!("{from}->{to} {}", message.body.name());
        let Some(node) = self.slots.get_mut(&to).and_then(|slot| slot.node.as_mut()) else {
            return false;
        };
        if let Err(error) = node.step(message) {
            self.problems.push(format!("step refused ordinary message {description}: {error:?}"));
        }
        self.process(to);
        if is_append {
            self.count_append(from, to);
        }
        true
    }

    fn count_append(&mut self, from: NodeId, to: NodeId) {
        let count = self.counters.appends.entry((from, to)).or_insert(0);
        *count += 1;
        let count = *count;
        let converged = self.is_alive(from) && self.log_entries(from) == self.log_entries(to);
        if converged {
            self.counters.appends_until_converged.entry((from, to)).or_insert(count);
        }
    }

    /// Emulates a leader without the conflict hint (R3's slow path): a reject's hint is
    /// rewritten to "resume one entry lower", `hint_index = index - 1` with the leader's
    /// own term there, so the leader backs up exactly one entry per round trip.
    fn rewrite_hint_for_naive_leader(&self, message: &mut Message) {
        let MessageBody::AppendResponse { reject: true, index, .. } = message.body else { return };
        let lower = index.saturating_sub(1);
        let term = self.node(message.to).and_then(|node| node.term_at(lower)).unwrap_or(0);
        message.body = MessageBody::AppendResponse { reject: true, index, hint_index: lower, hint_term: term };
    }

    /// Delivers until no message is in flight, at most `rounds_max` rounds. Returns the
    /// number delivered, or an error if the network was still busy after the bound.
    pub fn deliver_all(&mut self, rounds_max: usize) -> Result<usize, String> {
        let mut delivered = 0;
        for _ in 0..rounds_max {
            if self.in_flight.is_empty() {
                return Ok(delivered);
            }
            delivered += self.deliver(&MessageFilter::all());
        }
        if self.in_flight.is_empty() {
            return Ok(delivered);
        }
        Err(format!("network still busy after {rounds_max} delivery rounds ({} in flight)", self.in_flight.len()))
    }

    /// One unit of time on an unreliable network, `ticks` times: every live node ticks, then
    /// the messages in flight are delivered once each in a seeded random order; each is lost
    /// with probability `loss_percent`% and delivered twice with `duplicate_percent`%.
    /// Messages they cause wait for the next tick (delay).
    pub fn run_unreliable(&mut self, ticks: u32, loss_percent: u64, duplicate_percent: u64) -> Result<(), String> {
        for _ in 0..ticks {
            for id in self.ids() {
                if self.is_alive(id) {
                    self.tick(id, 1)?;
                }
            }
            let mut batch: Vec<Message> = self.in_flight.drain(..).collect();
            for position in (1..batch.len()).rev() {
                let other = self.random.range(0, position as u64 + 1) as usize;
                batch.swap(position, other);
            }
            for message in batch {
                if self.random.chance(loss_percent, 100) {
                    self.counters.dropped += 1;
                    continue;
                }
                if self.random.chance(duplicate_percent, 100) {
                    self.in_flight.push_back(message.clone());
                }
                self.deliver_one(message);
            }
        }
        Ok(())
    }

    /// The live node that leads in the highest term, if any.
    pub fn current_leader(&self) -> Option<NodeId> {
        let leaders = self.ids().into_iter().filter_map(|id| self.node(id).map(|node| (id, node)));
        let leaders = leaders.filter(|(_, node)| node.role() == crate::Role::Leader);
        leaders.max_by_key(|(_, node)| node.term()).map(|(id, _)| id)
    }

    /// Turns the naive-leader emulation on or off (see the scenario docs).
    pub fn set_naive_backtracking(&mut self, enabled: bool) {
        self.naive_backtracking = enabled;
    }

    /// True if messages between `from` and `to` get through (same partition group).
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        self.groups.get(&from) == self.groups.get(&to)
    }

    /// Splits the cluster: each group can talk only inside itself. Nodes in no group are
    /// isolated alone.
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

    /// Cuts every link of each node in `ids` (each ends up alone).
    pub fn isolate(&mut self, ids: &[NodeId]) {
        for id in ids {
            self.groups.insert(*id, self.next_group);
            self.next_group += 1;
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        for group in self.groups.values_mut() {
            *group = 0;
        }
    }

    /// The nodes of the largest partition group (ties: the group holding the lowest id).
    pub fn main_group(&self) -> Vec<NodeId> {
        let mut best: Option<(usize, u64)> = None;
        for id in self.ids() {
            let group = self.groups[&id];
            let size = self.groups.values().filter(|other| **other == group).count();
            if best.is_none_or(|(best_size, _)| size > best_size) {
                best = Some((size, group));
            }
        }
        let best_group = best.map(|(_, group)| group);
        self.ids().into_iter().filter(|id| Some(self.groups[id]) == best_group).collect()
    }

    /// `count` distinct nodes out of `candidates`, chosen with the network's seeded generator.
    pub fn random_nodes(&mut self, candidates: &[NodeId], count: usize) -> Vec<NodeId> {
        let mut remaining: Vec<NodeId> = candidates.to_vec();
        let mut chosen = Vec::new();
        while chosen.len() < count && !remaining.is_empty() {
            let position = self.random.range(0, remaining.len() as u64) as usize;
            chosen.push(remaining.remove(position));
        }
        chosen.sort_unstable();
        chosen
    }

    /// Crashes node `id`: volatile state and the messages to it are lost; storage stays.
    pub fn crash(&mut self, id: NodeId) -> Result<(), String> {
        let slot = self.slot_mut(id)?;
        let node = slot.node.take().ok_or_else(|| format!("node {id} is already crashed"))?;
        slot.durable = node.storage().clone();
        slot.applied.clear();
        self.in_flight.retain(|message| message.to != id);
        Ok(())
    }

    /// Restarts a crashed node `id` from its storage (it re-applies committed entries).
    pub fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let slot = self.slot_mut(id)?;
        if slot.node.is_some() {
            return Err(format!("node {id} is not crashed"));
        }
        slot.incarnation += 1;
        self.start(id)
    }

    /// The durable storage of node `id` (the live node's storage, or what a crash kept).
    pub fn storage(&self, id: NodeId) -> Option<&MemoryStorage> {
        let slot = self.slots.get(&id)?;
        Some(slot.node.as_ref().map_or(&slot.durable, |node| node.storage()))
    }

    /// Replaces node `id`'s log by entries whose terms are `terms` (index 1 first), for
    /// setting up scenarios such as Raft Figure 7. The node restarts from the new storage;
    /// its stored term is raised to the last entry's term if lower.
    pub fn install_log(&mut self, id: NodeId, terms: &[Term]) -> Result<(), String> {
        if terms.windows(2).any(|pair| pair[1] < pair[0]) {
            return Err(format!("terms must not decrease along a log: {terms:?}"));
        }
        let old = self.storage(id).ok_or_else(|| format!("no node {id}"))?.hard_state();
        let mut storage = MemoryStorage::new_with_voters(&self.voters);
        let entries: Vec<Entry> =
            terms.iter().enumerate().map(|(position, term)| scenario_entry(*term, position as Index + 1)).collect();
        storage.append(&entries);
        let last_term = terms.last().copied().unwrap_or(0);
        let vote = if last_term > old.term { 0 } else { old.vote };
        storage.set_hard_state(HardState { term: old.term.max(last_term), vote, commit: 0 });
        self.replace_storage(id, storage)
    }

    /// Sets node `id`'s stored term (not lower than now) and clears its vote; the node restarts.
    pub fn set_term(&mut self, id: NodeId, term: Term) -> Result<(), String> {
        let mut storage = self.storage(id).ok_or_else(|| format!("no node {id}"))?.clone();
        let old = storage.hard_state();
        if term < old.term {
            return Err(format!("node {id} is already at term {}", old.term));
        }
        storage.set_hard_state(HardState { term, vote: 0, commit: old.commit });
        self.replace_storage(id, storage)
    }

    fn replace_storage(&mut self, id: NodeId, storage: MemoryStorage) -> Result<(), String> {
        let slot = self.slot_mut(id)?;
        slot.node = None;
        slot.durable = storage;
        slot.incarnation += 1;
        self.in_flight.retain(|message| message.to != id && message.from != id);
        self.start(id)
    }

    /// Node `id`'s log (live: persisted or not; crashed: what its storage kept).
    pub fn log_entries(&self, id: NodeId) -> Vec<Entry> {
        match self.node(id) {
            Some(node) => node.log_entries(),
            None => self.storage(id).map(|storage| storage.all_entries().to_vec()).unwrap_or_default(),
        }
    }

    /// The terms of node `id`'s entries, by index.
    pub fn log_terms(&self, id: NodeId) -> Vec<Term> {
        self.log_entries(id).iter().map(|entry| entry.term).collect()
    }

    /// Commands node `id` has applied in this incarnation, in order (Blank entries skipped).
    pub fn applied(&self, id: NodeId) -> Vec<String> {
        self.slots.get(&id).map(|slot| slot.applied.clone()).unwrap_or_default()
    }

    /// Clears the Append counters.
    pub fn reset_counters(&mut self) {
        self.counters = Counters::default();
    }

    /// Append messages delivered from `from` to `to` since the last reset.
    pub fn appends_delivered(&self, from: NodeId, to: NodeId) -> u64 {
        self.counters.appends.get(&(from, to)).copied().unwrap_or(0)
    }

    /// Append messages delivered from `from` to `to` (since the last reset) until `to`'s log
    /// first equalled `from`'s; None if it never did.
    pub fn appends_until_converged(&self, from: NodeId, to: NodeId) -> Option<u64> {
        self.counters.appends_until_converged.get(&(from, to)).copied()
    }

    /// Messages lost (dropped by a test, to crashed nodes or across partitions) since the last reset.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped
    }

    /// The partition group of each node (equal numbers: connected).
    pub fn groups(&self) -> BTreeSet<Vec<NodeId>> {
        let mut by_group: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
        for (id, group) in &self.groups {
            by_group.entry(*group).or_default().push(*id);
        }
        by_group.into_values().collect()
    }
}

/// The entry a scenario log holds at `(term, index)`; the same pair always gets the same
/// command, as Log Matching requires.
pub fn scenario_entry(term: Term, index: Index) -> Entry {
    Entry { term, index, kind: EntryKind::Normal, data: Bytes::from(format!("t{term}i{index}")) }
}

/// A node's election seed: a mix of the network seed, the id and the incarnation.
fn node_seed(seed: u64, id: NodeId, incarnation: u64) -> u64 {
    let mut generator = SplitMix64::new(seed.wrapping_mul(0x1000_0000_01B3) ^ (id << 20) ^ incarnation);
    generator.next_u64()
}
