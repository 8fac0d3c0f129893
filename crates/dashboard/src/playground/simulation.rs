//! A simulated cluster the playground drives one action at a time.
//!
//! It wraps the playground's [`Cluster`] of real Raft cores and keeps its own queue of
//! messages in flight, each with a number, so that the user can deliver or drop one
//! particular message. After every call into the cluster the messages it sent are moved
//! into that numbered queue; a message is delivered with [`Cluster::step`] once the
//! recipient is known to run and to be on the same side of any partition.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use raft::{
    ConfChange, ConfChangeKind, ConfChangeSingle, EntryKind, Message, MessageBody, NodeId, ProposeError, Role, Term,
};
use serde::{Deserialize, Serialize};

use super::cluster::{Cluster, ClusterOptions};

/// Most messages the playground keeps in flight; further ones are lost (counted as dropped).
pub const MESSAGES_IN_FLIGHT_MAX: usize = 512;
/// Most entries a log installed by an action may hold.
pub const INSTALLED_LOG_ENTRIES_MAX: usize = 64;
/// Most bytes of a client command.
pub const COMMAND_BYTES_MAX: usize = 64;
/// Most lines kept in the event list.
pub const EVENTS_MAX: usize = 64;
/// Most delivery rounds of [`Action::Settle`].
pub const SETTLE_ROUNDS_MAX: usize = 200;
/// Most ticks one [`Action::Tick`] may ask for.
pub const TICKS_PER_ACTION_MAX: u32 = 100;

/// One thing the user (or a preset) does to the simulated cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// One unit of time: every running node ticks once, then every message in flight is
    /// delivered once (the messages this causes wait for the next unit).
    Advance,
    /// Ticks one node `count` times (its clock only).
    Tick {
        /// The node.
        node: NodeId,
        /// How many ticks (at most [`TICKS_PER_ACTION_MAX`]).
        count: u32,
    },
    /// A client request: `command` proposed on `node` (a follower forwards it to the
    /// leader), or on the current leader when `node` is absent.
    Request {
        /// Where the client sends it.
        #[serde(default)]
        node: Option<NodeId>,
        /// The command text.
        command: String,
    },
    /// Makes a node start an election now.
    Campaign {
        /// The node.
        node: NodeId,
    },
    /// Crashes a node: its volatile state and the messages to it are lost.
    Crash {
        /// The node.
        node: NodeId,
    },
    /// Restarts a crashed node from its durable state.
    Restart {
        /// The node.
        node: NodeId,
    },
    /// Splits the cluster into groups that only talk inside themselves (nodes not listed
    /// are alone).
    Partition {
        /// The groups.
        groups: Vec<Vec<NodeId>>,
    },
    /// Restores every link.
    Heal,
    /// Delivers the message in flight numbered `message`.
    Deliver {
        /// The message's number.
        message: u64,
    },
    /// Drops the message in flight numbered `message`.
    Drop {
        /// The message's number.
        message: u64,
    },
    /// Delivers every message in flight matching the selector once (in order).
    DeliverWhere {
        /// Sender (absent: any).
        #[serde(default)]
        from: Option<NodeId>,
        /// Receiver (absent: any).
        #[serde(default)]
        to: Option<NodeId>,
        /// Lower-case message kind such as `append` (absent: any).
        #[serde(default)]
        kind: Option<String>,
    },
    /// Drops every message in flight matching the selector.
    DropWhere {
        /// Sender (absent: any).
        #[serde(default)]
        from: Option<NodeId>,
        /// Receiver (absent: any).
        #[serde(default)]
        to: Option<NodeId>,
        /// Lower-case message kind (absent: any).
        #[serde(default)]
        kind: Option<String>,
    },
    /// Delivers messages until none is in flight (at most [`SETTLE_ROUNDS_MAX`] rounds).
    Settle,
    /// Replaces a node's log by entries of these terms (index 1 first); for scenario setups.
    InstallLog {
        /// The node.
        node: NodeId,
        /// Term of each entry.
        terms: Vec<Term>,
    },
    /// Raises a node's stored term (and clears its vote); for scenario setups.
    SetTerm {
        /// The node.
        node: NodeId,
        /// The new term.
        term: Term,
    },
    /// Compacts a node's log up to `index` (applied entries only) into a snapshot.
    Compact {
        /// The node.
        node: NodeId,
        /// Last index the snapshot covers.
        index: u64,
    },
    /// A client reads `key` on `node`: at once from the applied state, or (linearizable)
    /// after a ReadIndex round confirms the leader and the node has applied that far.
    Read {
        /// Where the client reads.
        node: NodeId,
        /// The key.
        key: String,
        /// Wait for a ReadIndex (true) or answer from the local applied state (false).
        #[serde(default)]
        linearizable: bool,
    },
    /// Starts a new server with an empty log and no configuration (it joins later).
    AddNode {
        /// The new node's id.
        node: NodeId,
    },
    /// Proposes a membership change on `node` (one change: single-server; several: joint).
    ChangeMembership {
        /// Where it is proposed (the leader).
        node: NodeId,
        /// Nodes to add as learners (non-voting, they copy the log).
        #[serde(default)]
        add_learners: Vec<NodeId>,
        /// Nodes to add (or promote) as voters.
        #[serde(default)]
        add_voters: Vec<NodeId>,
        /// Nodes to remove.
        #[serde(default)]
        remove: Vec<NodeId>,
    },
    /// Emulates a follower without the conflict hint (the core always sends one): its
    /// rejects are rewritten to "one entry lower", so the leader backs up one entry per
    /// round trip.
    NaiveBacktracking {
        /// On or off.
        enabled: bool,
        /// Only this follower's rejects (absent: every follower's; off clears them all).
        #[serde(default)]
        follower: Option<NodeId>,
    },
    /// Clears the AppendEntries round-trip counters.
    ResetCounters,
    /// Records a line in the event list (what a client was told, say).
    Note {
        /// The line.
        text: String,
    },
}

/// A message in flight with its playground number.
#[derive(Clone, Debug)]
struct NumberedMessage {
    number: u64,
    message: Message,
}

/// One log entry as the pages draw it (the node API's shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryView {
    /// Position in the log.
    pub index: u64,
    /// Term of the leader that created it.
    pub term: u64,
    /// `normal`, `blank` or `config`.
    pub kind: &'static str,
    /// The command, readable.
    pub summary: String,
}

/// The leader's view of one follower.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProgressEntry {
    /// The follower.
    pub id: String,
    /// Highest index known replicated there.
    #[serde(rename = "match")]
    pub match_index: u64,
    /// Next index to send.
    #[serde(rename = "next")]
    pub next_index: u64,
    /// `probe`, `replicate` or `snapshot`.
    pub state: &'static str,
    /// AppendEntries in flight.
    pub inflight: usize,
}

/// One node as the pages draw it: the node introspection API's shape plus playground fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// Node id (decimal in the playground).
    pub id: String,
    /// Display name (`S1`, ...).
    pub name: String,
    /// A scenario label such as `(a)`, or empty.
    pub label: String,
    /// False while crashed.
    pub alive: bool,
    /// `leader`, `follower`, `candidate`, `precandidate`, `learner`, or `down` when crashed.
    pub role: &'static str,
    /// Current (or stored) term.
    pub term: u64,
    /// Known leader's id, empty if unknown.
    pub leader: String,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// First index in the log.
    pub first_index: u64,
    /// Last index in the log.
    pub last_index: u64,
    /// Last index covered by the snapshot the log was compacted into (0: none).
    pub snapshot_index: u64,
    /// The whole log, oldest first.
    pub entries: Vec<EntryView>,
    /// On the leader: one per follower.
    pub progress: Vec<ProgressEntry>,
    /// Partition group number (equal numbers talk to each other).
    pub group: usize,
    /// Commands applied in this incarnation.
    pub applied_commands: Vec<String>,
    /// The state machine after those commands, as `key=value` pairs.
    pub state: Vec<String>,
    /// Read answers this node gave, oldest first.
    pub reads: Vec<String>,
    /// Reads waiting on this node.
    pub reads_waiting: Vec<String>,
    /// Voters of this node's latest configuration.
    pub voters: Vec<NodeId>,
    /// Outgoing voters while the configuration is joint (empty otherwise).
    pub voters_outgoing: Vec<NodeId>,
    /// Learners of this node's latest configuration.
    pub learners: Vec<NodeId>,
}

/// AppendEntries messages delivered on one link since the counters were last cleared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoundTripView {
    /// Sender (the leader).
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// AppendEntries delivered.
    pub appends: u64,
    /// Rejections of those AppendEntries delivered back to the sender.
    pub rejects: u64,
    /// True if the receiver's rejects carry no conflict hint ([`Action::NaiveBacktracking`]).
    pub naive: bool,
}

/// A message in flight as the playground draws it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageView {
    /// The message's number (for [`Action::Deliver`] and [`Action::Drop`]).
    pub id: u64,
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Lower-case kind (`append`, `voteresp`, ...).
    pub kind: String,
    /// Sender's term.
    pub term: u64,
    /// The fields that matter, readable.
    pub summary: String,
}

/// A simulated cluster with numbered messages in flight.
pub struct Simulation {
    network: Cluster,
    in_flight: VecDeque<NumberedMessage>,
    next_number: u64,
    events: VecDeque<String>,
    step: u64,
    naive_all: bool,
    naive_followers: BTreeSet<NodeId>,
    appends: BTreeMap<(NodeId, NodeId), u64>,
    rejects: BTreeMap<(NodeId, NodeId), u64>,
}

impl Simulation {
    /// A cluster of `node_count` nodes with empty logs.
    pub fn new(node_count: usize, options: ClusterOptions) -> Result<Simulation, String> {
        let network = Cluster::new(node_count, options)?;
        let mut simulation = Simulation {
            network,
            in_flight: VecDeque::new(),
            next_number: 1,
            events: VecDeque::new(),
            step: 0,
            naive_all: false,
            naive_followers: BTreeSet::new(),
            appends: BTreeMap::new(),
            rejects: BTreeMap::new(),
        };
        simulation.collect_messages();
        Ok(simulation)
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        self.network.ids()
    }

    /// The running node that leads in the highest term.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.network.current_leader()
    }

    /// Recent events, oldest first.
    pub fn events(&self) -> Vec<String> {
        self.events.iter().cloned().collect()
    }

    fn note(&mut self, text: String) {
        if self.events.len() == EVENTS_MAX {
            self.events.pop_front();
        }
        self.events.push_back(format!("#{} {text}", self.step));
    }

    /// Moves the messages the network queued into the numbered queue.
    fn collect_messages(&mut self) {
        let queued: Vec<Message> = self.network.take_messages();
        for mut message in queued {
            if self.naive_all || self.naive_followers.contains(&message.from) {
                self.rewrite_hint_for_naive_leader(&mut message);
            }
            if self.in_flight.len() >= MESSAGES_IN_FLIGHT_MAX {
                self.note(format!("network full: lost {} {}->{}", message.body.name(), message.from, message.to));
                continue;
            }
            self.in_flight.push_back(NumberedMessage { number: self.next_number, message });
            self.next_number += 1;
        }
        for problem in self.network.take_problems() {
            self.note(format!("problem: {problem}"));
        }
    }

    fn check_node(&self, node: NodeId) -> Result<(), String> {
        if self.network.contains(node) {
            Ok(())
        } else {
            Err(format!("there is no node {node}"))
        }
    }

    /// Applies one action; an error leaves the cluster as it was before the failing part.
    pub fn apply(&mut self, action: &Action) -> Result<(), String> {
        self.step += 1;
        let result = self.apply_inner(action);
        self.collect_messages();
        result
    }

    fn apply_inner(&mut self, action: &Action) -> Result<(), String> {
        match action {
            Action::Advance => self.advance(),
            Action::Tick { node, count } => {
                self.check_node(*node)?;
                if *count > TICKS_PER_ACTION_MAX {
                    return Err(format!("at most {TICKS_PER_ACTION_MAX} ticks at once"));
                }
                for _ in 0..*count {
                    self.network.tick(*node)?;
                    self.collect_messages();
                }
                Ok(())
            }
            Action::Request { node, command } => self.request(*node, command),
            Action::Campaign { node } => {
                self.check_node(*node)?;
                self.network.campaign(*node)
            }
            Action::Crash { node } => self.crash(*node),
            Action::Restart { node } => {
                self.check_node(*node)?;
                self.network.restart(*node)?;
                self.note(format!("S{node} restarted from its durable state"));
                Ok(())
            }
            Action::Partition { groups } => self.partition(groups),
            Action::Heal => {
                self.network.heal();
                self.note("partition healed".to_string());
                Ok(())
            }
            Action::Deliver { message } => self.deliver_number(*message),
            Action::Drop { message } => self.drop_number(*message),
            Action::DeliverWhere { from, to, kind } => self.deliver_where(*from, *to, kind.as_deref()),
            Action::DropWhere { from, to, kind } => {
                self.in_flight.retain(|numbered| !selects(&numbered.message, *from, *to, kind.as_deref()));
                Ok(())
            }
            Action::Settle => self.settle(),
            Action::InstallLog { node, terms } => self.install_log(*node, terms),
            Action::SetTerm { node, term } => {
                self.check_node(*node)?;
                self.in_flight.retain(|numbered| numbered.message.to != *node && numbered.message.from != *node);
                self.network.set_term(*node, *term)
            }
            Action::Compact { node, index } => {
                self.network.compact(*node, *index)?;
                self.note(format!("S{node} compacted its log up to index {index} into a snapshot"));
                Ok(())
            }
            Action::Read { node, key, linearizable } => self.read(*node, key, *linearizable),
            Action::AddNode { node } => {
                self.network.add_node(*node)?;
                self.note(format!("S{node} started with an empty log"));
                Ok(())
            }
            Action::ChangeMembership { node, add_learners, add_voters, remove } => {
                self.change_membership(*node, add_learners, add_voters, remove)
            }
            Action::NaiveBacktracking { enabled, follower } => {
                match (follower, *enabled) {
                    (None, enabled) => {
                        self.naive_all = enabled;
                        self.naive_followers.clear();
                    }
                    (Some(follower), true) => {
                        self.check_node(*follower)?;
                        self.naive_followers.insert(*follower);
                    }
                    (Some(follower), false) => {
                        self.naive_followers.remove(follower);
                    }
                }
                Ok(())
            }
            Action::ResetCounters => {
                self.appends.clear();
                self.rejects.clear();
                Ok(())
            }
            Action::Note { text } => {
                if text.len() > COMMAND_BYTES_MAX * 4 {
                    return Err("a note has at most 256 bytes".to_string());
                }
                self.note(text.clone());
                Ok(())
            }
        }
    }

    fn read(&mut self, node: NodeId, key: &str, linearizable: bool) -> Result<(), String> {
        self.check_node(node)?;
        if key.is_empty() || key.len() > COMMAND_BYTES_MAX {
            return Err(format!("a key has 1 to {COMMAND_BYTES_MAX} bytes"));
        }
        if linearizable {
            self.network.read_index(node, key)?;
            self.note(format!("client asked S{node} for a linearizable read of {key}"));
        } else {
            let answer = self.network.read_local(node, key)?;
            self.note(format!("S{node} answered: {answer}"));
        }
        Ok(())
    }

    fn change_membership(
        &mut self,
        node: NodeId,
        add_learners: &[NodeId],
        add_voters: &[NodeId],
        remove: &[NodeId],
    ) -> Result<(), String> {
        let single = |kind: ConfChangeKind, node_id: NodeId| ConfChangeSingle { kind, node_id };
        let mut changes: Vec<ConfChangeSingle> = Vec::new();
        changes.extend(add_learners.iter().map(|id| single(ConfChangeKind::AddLearner, *id)));
        changes.extend(add_voters.iter().map(|id| single(ConfChangeKind::AddVoter, *id)));
        changes.extend(remove.iter().map(|id| single(ConfChangeKind::RemoveNode, *id)));
        if changes.is_empty() || changes.len() > raft::CONF_CHANGES_MAX {
            return Err(format!("a membership change has 1 to {} parts", raft::CONF_CHANGES_MAX));
        }
        let joint = changes.len() > 1;
        let change = ConfChange { changes, context: bytes::Bytes::new() };
        self.network.conf_change(node, change)?.map_err(|error| format!("S{node} refused the change: {error}"))?;
        let how = if joint { "joint consensus C_old,new" } else { "a single-server change" };
        self.note(format!("S{node} appended a configuration entry ({how})"));
        Ok(())
    }

    fn advance(&mut self) -> Result<(), String> {
        for id in self.network.ids() {
            if self.network.is_alive(id) {
                self.network.tick(id)?;
            }
        }
        self.collect_messages();
        let numbers: Vec<u64> = self.in_flight.iter().map(|numbered| numbered.number).collect();
        for number in numbers {
            self.deliver_number(number)?;
        }
        Ok(())
    }

    fn request(&mut self, node: Option<NodeId>, command: &str) -> Result<(), String> {
        if command.is_empty() || command.len() > COMMAND_BYTES_MAX {
            return Err(format!("a command has 1 to {COMMAND_BYTES_MAX} bytes"));
        }
        let target = match node {
            Some(node) => node,
            None => self.network.current_leader().ok_or("no leader yet: let time pass (Step) or pick a node")?,
        };
        self.check_node(target)?;
        if !self.network.is_alive(target) {
            return Err(format!("S{target} is down"));
        }
        let follower_of = self.network.node(target).map(|node| (node.role(), node.leader()));
        match self.network.propose(target, command)? {
            Ok(()) => {
                match follower_of {
                    Some((Role::Follower, leader)) if leader != 0 => self.note(format!(
                        "client sent `{command}` to S{target}, which forwards it to the leader S{leader}"
                    )),
                    _ => self.note(format!("client sent `{command}` to S{target}")),
                }
                Ok(())
            }
            Err(ProposeError::NotLeader { leader_hint }) if leader_hint != 0 => {
                self.note(format!("S{target} answered `{command}`: not the leader, send it to S{leader_hint}"));
                Ok(())
            }
            Err(error) => Err(format!("S{target} refused `{command}`: {error}")),
        }
    }

    fn crash(&mut self, node: NodeId) -> Result<(), String> {
        self.check_node(node)?;
        self.network.crash(node)?;
        self.in_flight.retain(|numbered| numbered.message.to != node);
        self.note(format!("S{node} crashed"));
        Ok(())
    }

    fn partition(&mut self, groups: &[Vec<NodeId>]) -> Result<(), String> {
        for node in groups.iter().flatten() {
            self.check_node(*node)?;
        }
        self.network.partition(groups);
        let text: Vec<String> = self.network.groups().iter().map(|group| format!("{group:?}")).collect();
        self.note(format!("partitioned: {}", text.join(" | ")));
        Ok(())
    }

    fn install_log(&mut self, node: NodeId, terms: &[Term]) -> Result<(), String> {
        self.check_node(node)?;
        if terms.len() > INSTALLED_LOG_ENTRIES_MAX {
            return Err(format!("at most {INSTALLED_LOG_ENTRIES_MAX} entries"));
        }
        self.in_flight.retain(|numbered| numbered.message.to != node && numbered.message.from != node);
        self.network.install_log(node, terms)
    }

    /// A leader without the conflict hint: a reject's hint is rewritten to "one entry lower"
    /// (with the leader's own term there), so it backs up one entry per round trip.
    fn rewrite_hint_for_naive_leader(&self, message: &mut Message) {
        let MessageBody::AppendResponse { reject: true, index, .. } = message.body else { return };
        let lower = index.saturating_sub(1);
        let term = self.network.node(message.to).and_then(|node| node.term_at(lower)).unwrap_or(0);
        message.body = MessageBody::AppendResponse { reject: true, index, hint_index: lower, hint_term: term };
    }

    fn deliver_where(&mut self, from: Option<NodeId>, to: Option<NodeId>, kind: Option<&str>) -> Result<(), String> {
        let numbers: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|numbered| selects(&numbered.message, from, to, kind))
            .map(|numbered| numbered.number)
            .collect();
        for number in numbers {
            self.deliver_number(number)?;
        }
        Ok(())
    }

    fn settle(&mut self) -> Result<(), String> {
        for _ in 0..SETTLE_ROUNDS_MAX {
            if self.in_flight.is_empty() {
                return Ok(());
            }
            let numbers: Vec<u64> = self.in_flight.iter().map(|numbered| numbered.number).collect();
            for number in numbers {
                self.deliver_number(number)?;
            }
        }
        Err(format!("still {} messages in flight after {SETTLE_ROUNDS_MAX} rounds", self.in_flight.len()))
    }

    fn take_number(&mut self, number: u64) -> Result<Message, String> {
        let position = self.in_flight.iter().position(|numbered| numbered.number == number);
        position
            .and_then(|position| self.in_flight.remove(position))
            .map(|numbered| numbered.message)
            .ok_or_else(|| format!("message #{number} is not in flight"))
    }

    fn deliver_number(&mut self, number: u64) -> Result<(), String> {
        let message = self.take_number(number)?;
        let (from, to, name) = (message.from, message.to, message.body.name());
        if !self.network.is_alive(to) {
            self.note(format!("#{number} {name} S{from}->S{to} lost: S{to} is down"));
            return Ok(());
        }
        if !self.network.connected(from, to) {
            self.note(format!("#{number} {name} S{from}->S{to} lost in the partition"));
            return Ok(());
        }
        let before = self.network.node(to).map(|node| (node.role(), node.term()));
        if let MessageBody::VoteResponse { reject } | MessageBody::PreVoteResponse { reject } = message.body {
            let verdict = if reject { "refused" } else { "granted" };
            self.note(format!("#{number} S{from} {verdict} its vote to S{to} (term {})", message.term));
        }
        if matches!(message.body, MessageBody::Append { .. }) {
            *self.appends.entry((from, to)).or_insert(0) += 1;
        }
        if matches!(message.body, MessageBody::AppendResponse { reject: true, .. }) {
            *self.rejects.entry((to, from)).or_insert(0) += 1;
        }
        let reads_before = self.network.reads(to).0.len();
        if let Err(error) = self.network.step(message) {
            self.note(format!("#{number} {name} S{from}->S{to} refused: {error}"));
        }
        self.collect_messages();
        let (reads, _) = self.network.reads(to);
        for answer in reads.iter().skip(reads_before).cloned().collect::<Vec<_>>() {
            self.note(format!("S{to} answered: {answer}"));
        }
        let after = self.network.node(to).map(|node| (node.role(), node.term()));
        if let (Some(before), Some((role, term))) = (before, after) {
            if before != (role, term) {
                self.note(format!("S{to} is now {} in term {term}", role_name(role)));
            }
        }
        Ok(())
    }

    fn drop_number(&mut self, number: u64) -> Result<(), String> {
        let message = self.take_number(number)?;
        self.note(format!("#{number} {} S{}->S{} dropped", message.body.name(), message.from, message.to));
        Ok(())
    }

    /// Every node as the pages draw it; `labels[i]` labels node `i + 1`.
    pub fn node_views(&self, labels: &[String]) -> Vec<NodeView> {
        let groups: Vec<Vec<NodeId>> = self.network.groups().into_iter().collect();
        self.network
            .ids()
            .into_iter()
            .map(|id| {
                let group = groups.iter().position(|members| members.contains(&id)).unwrap_or(0);
                let label = labels.get(id as usize - 1).cloned().unwrap_or_default();
                self.node_view(id, group, label)
            })
            .collect()
    }

    fn node_view(&self, id: NodeId, group: usize, label: String) -> NodeView {
        let entries: Vec<EntryView> = self.network.log_entries(id).iter().map(entry_view).collect();
        let first_index = entries.first().map_or(1, |entry| entry.index);
        let last_index = entries.last().map_or(0, |entry| entry.index);
        let mut view = NodeView {
            id: id.to_string(),
            name: format!("S{id}"),
            label,
            alive: false,
            role: "down",
            term: 0,
            leader: String::new(),
            commit: 0,
            applied: 0,
            first_index,
            last_index,
            snapshot_index: self.network.snapshot_index(id),
            entries,
            progress: Vec::new(),
            group,
            applied_commands: self.network.applied(id),
            state: Vec::new(),
            reads: Vec::new(),
            reads_waiting: Vec::new(),
            voters: Vec::new(),
            voters_outgoing: Vec::new(),
            learners: Vec::new(),
        };
        view.state = self.network.state_machine(id).into_iter().map(|(key, value)| format!("{key}={value}")).collect();
        (view.reads, view.reads_waiting) = self.network.reads(id);
        let membership = self.network.membership(id);
        (view.voters, view.voters_outgoing, view.learners) =
            (membership.voters, membership.voters_outgoing, membership.learners);
        match self.network.node(id) {
            Some(node) => {
                view.alive = true;
                view.role = role_name(node.role());
                view.term = node.term();
                view.leader = if node.leader() == 0 { String::new() } else { node.leader().to_string() };
                view.commit = node.commit_index();
                view.applied = node.applied_index();
                view.progress = self.progress_of(id);
            }
            None => {
                let hard_state = self.network.storage(id).map(|storage| storage.hard_state()).unwrap_or_default();
                view.term = hard_state.term;
                view.commit = hard_state.commit;
            }
        }
        view
    }

    fn progress_of(&self, leader: NodeId) -> Vec<ProgressEntry> {
        let Some(node) = self.network.node(leader) else { return Vec::new() };
        let followers = self.network.ids().into_iter().filter(|id| *id != leader);
        followers
            .filter_map(|id| {
                node.progress(id).map(|progress| ProgressEntry {
                    id: id.to_string(),
                    match_index: progress.match_index,
                    next_index: progress.next_index,
                    state: match progress.state {
                        raft::ProgressState::Probe => "probe",
                        raft::ProgressState::Replicate => "replicate",
                        raft::ProgressState::Snapshot => "snapshot",
                    },
                    inflight: progress.inflight_messages,
                })
            })
            .collect()
    }

    /// AppendEntries delivered per link since the counters were cleared.
    pub fn round_trips(&self) -> Vec<RoundTripView> {
        self.appends
            .iter()
            .map(|((from, to), appends)| RoundTripView {
                from: *from,
                to: *to,
                appends: *appends,
                rejects: self.rejects.get(&(*from, *to)).copied().unwrap_or(0),
                naive: self.naive_all || self.naive_followers.contains(to),
            })
            .collect()
    }

    /// True while some follower's rejects carry no conflict hint.
    pub fn naive_backtracking(&self) -> bool {
        self.naive_all || !self.naive_followers.is_empty()
    }

    /// The messages in flight, oldest first.
    pub fn message_views(&self) -> Vec<MessageView> {
        self.in_flight
            .iter()
            .map(|numbered| {
                let message = &numbered.message;
                MessageView {
                    id: numbered.number,
                    from: message.from,
                    to: message.to,
                    kind: message.body.name().to_ascii_lowercase(),
                    term: message.term,
                    summary: describe_body(&message.body),
                }
            })
            .collect()
    }
}

/// True if `message` matches the selector (`None`: any).
fn selects(message: &Message, from: Option<NodeId>, to: Option<NodeId>, kind: Option<&str>) -> bool {
    from.is_none_or(|from| from == message.from)
        && to.is_none_or(|to| to == message.to)
        && kind.is_none_or(|kind| message.body.name().eq_ignore_ascii_case(kind))
}

/// The node API's name of a role.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "precandidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
        Role::Learner => "learner",
    }
}

fn entry_view(entry: &raft::Entry) -> EntryView {
    let (kind, summary) = match entry.kind {
        EntryKind::Normal => ("normal", String::from_utf8_lossy(&entry.data).into_owned()),
        EntryKind::Blank => ("blank", "no-op".to_string()),
        EntryKind::Config => ("config", "config".to_string()),
    };
    EntryView { index: entry.index, term: entry.term, kind, summary }
}

/// The fields of a message body that the pages show.
pub fn describe_body(body: &MessageBody) -> String {
    match body {
        MessageBody::PreVote { last_log_index, last_log_term }
        | MessageBody::Vote { last_log_index, last_log_term } => {
            format!("last entry ({last_log_term},{last_log_index})")
        }
        MessageBody::PreVoteResponse { reject } | MessageBody::VoteResponse { reject } => {
            if *reject { "refused" } else { "granted" }.to_string()
        }
        MessageBody::Append { prev_log_index, prev_log_term, entries, commit } => {
            let listed: Vec<String> = entries.iter().map(|entry| format!("({},{})", entry.term, entry.index)).collect();
            let shown = if listed.is_empty() { "none".to_string() } else { listed.join(" ") };
            format!("prev ({prev_log_term},{prev_log_index}) entries {shown} commit {commit}")
        }
        MessageBody::AppendResponse { reject: false, index, .. } => format!("ok, match {index}"),
        MessageBody::AppendResponse { reject: true, index, hint_index, hint_term } => {
            format!("reject prev {index}; hint ({hint_term},{hint_index})")
        }
        MessageBody::Heartbeat { commit, .. } => format!("commit {commit}"),
        MessageBody::HeartbeatResponse { last_index, .. } => format!("last index {last_index}"),
        MessageBody::ReadIndexResponse { index, .. } => format!("read index {index}"),
        MessageBody::InstallSnapshot { meta, data, done, .. } => {
            format!(
                "snapshot up to ({},{}), {} bytes{}",
                meta.term,
                meta.index,
                data.len(),
                if *done { "" } else { ", more" }
            )
        }
        MessageBody::Propose { commands } => {
            let listed: Vec<String> =
                commands.iter().map(|command| String::from_utf8_lossy(command).into_owned()).collect();
            format!("forwarded: {}", listed.join(", "))
        }
        MessageBody::ReadIndex { context } => format!("read index? ({})", String::from_utf8_lossy(context)),
        // Snapshot answers and the rest: the kind's name says enough.
        other => other.name().to_string(),
    }
}
