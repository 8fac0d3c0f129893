//! The simulation loop: events, faults, clients, checks.

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use raft::{NodeId, Role, SplitMix64};

use crate::clients::Clients;
use crate::events::{Event, EventKind, EventQueue, Time};
use crate::final_checks::{self, RegisterVerdict};
use crate::invariants::{all_checkers, Checker};
use crate::network::{Network, NetworkParameters, SendOutcome};
use crate::node::{ReadyOutput, SimNode};
use crate::options::{Options, RunSettings, Schedule};
use crate::state_machine::encode_command;
use crate::trace::{Trace, TraceEvent};
use crate::view::{ClusterView, NodeView};
use crate::{RunResult, Statistics, Violation};

/// Logical time between two ticks of one node.
pub const TICK_INTERVAL_TIME: Time = 100;
/// How far a tick may land from its nominal time.
const TICK_JITTER_TIME: Time = 15;
/// A client that heard nothing for this long retries elsewhere.
const CLIENT_TIMEOUT_TIME: Time = 30 * TICK_INTERVAL_TIME;
/// Most operations one run invokes (bounds the history).
const OPERATIONS_MAX: usize = 2_000;
/// Settle-phase steps between convergence checks.
const CONVERGENCE_CHECK_STEPS: u64 = 32;
/// Steps between full comparisons of a node's core log with its mirror.
const FULL_VIEW_CHECK_STEPS: u64 = 257;
/// With membership churn: node ids `1..=MEMBER_POOL_SIZE` exist; the others wait outside.
pub(crate) const MEMBER_POOL_SIZE: usize = 9;
/// With membership churn the voters stay within `VOTERS_MIN..=VOTERS_MAX`.
pub(crate) const VOTERS_MIN: usize = 3;
/// See [`VOTERS_MIN`].
pub(crate) const VOTERS_MAX: usize = 7;

/// Per-run fault parameters, drawn from the seed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FaultPlan {
    /// Nodes allowed down at once.
    pub(crate) crashed_max: usize,
    /// Compact once this many entries follow the snapshot.
    pub(crate) compaction_threshold_entries: u64,
    /// Entries kept after the snapshot point.
    pub(crate) compaction_keep_entries: u64,
    /// Mean time between fault actions.
    pub(crate) fault_interval_time: Time,
    /// Upper bound (exclusive) of one write's fsync latency.
    pub(crate) fsync_time_max: Time,
    /// Core settings and schedule drawn for the run.
    pub(crate) settings: RunSettings,
}

pub(crate) struct Simulator {
    pub(crate) options: Options,
    pub(crate) rng: SplitMix64,
    pub(crate) queue: EventQueue,
    pub(crate) network: Network,
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) view: ClusterView,
    pub(crate) checkers: Vec<Box<dyn Checker>>,
    pub(crate) clients: Clients,
    pub(crate) trace: Trace,
    pub(crate) plan: FaultPlan,
    pub(crate) changed: Vec<usize>,
    pub(crate) violations: Vec<Violation>,
    pub(crate) settling: bool,
    pub(crate) statistics: Statistics,
    /// Per node position: confirmed reads (operation id, index to apply first).
    pub(crate) pending_reads: Vec<Vec<(u64, raft::Index)>>,
    /// Membership churn is on (`Faults::churn` with 3 to 7 nodes): positions beyond the
    /// initial voters are nodes that may be added later.
    pub(crate) churn: bool,
    /// Ids that ever appeared in a configuration or a proposed change (churn).
    pub(crate) used_ids: std::collections::BTreeSet<NodeId>,
    /// Per node position: its commit index when last seen leading (durability checks).
    pub(crate) leader_commits: Vec<crate::durability::LeaderCommitSeen>,
}

/// Runs one simulation. Never panics: a panic inside the core is reported as a violation.
pub fn run(options: &Options) -> RunResult {
    assert!((1..=9).contains(&options.nodes), "nodes must be 1..=9, got {}", options.nodes);
    let mut simulator = match Simulator::new(options) {
        Ok(simulator) => simulator,
        Err(message) => {
            let violation = Violation { invariant: "setup".to_string(), message, step: 0 };
            return RunResult { violations: vec![violation], ..RunResult::default() };
        }
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| simulator.run_phases()));
    if let Err(payload) = outcome {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_else(|| "unknown panic".to_string());
        let violation = Violation { invariant: "panic".to_string(), message, step: simulator.view.step };
        simulator.violations.push(violation);
    }
    simulator.result()
}

impl Simulator {
    fn new(options: &Options) -> Result<Self, String> {
        let mut rng = SplitMix64::new(options.seed);
        let voters: Vec<NodeId> = (1..=options.nodes as NodeId).collect();
        let churn = options.faults.churn && (VOTERS_MIN..=VOTERS_MAX).contains(&options.nodes);
        let pool_size = if churn { MEMBER_POOL_SIZE } else { options.nodes };
        let pool: Vec<NodeId> = (1..=pool_size as NodeId).collect();
        let mut nodes = Vec::with_capacity(pool_size);
        let settings = RunSettings::for_run(options.variation, options.seed);
        for &id in &pool {
            nodes.push(SimNode::new(id, &voters, rng.next_u64(), settings, options.sabotage)?);
        }
        let parameters = NetworkParameters::draw(&options.faults, &mut rng);
        let mut plan = FaultPlan {
            crashed_max: ((options.nodes - 1) / 2).max(1),
            compaction_threshold_entries: rng.range(3, 40),
            compaction_keep_entries: rng.range(0, 6),
            fault_interval_time: rng.range(3, 20) * TICK_INTERVAL_TIME,
            fsync_time_max: rng.range(5, 3 * TICK_INTERVAL_TIME),
            settings,
        };
        if settings.schedule == Schedule::CrashHeavy {
            plan.fault_interval_time = (plan.fault_interval_time / 2).max(2 * TICK_INTERVAL_TIME);
        }
        if settings.slow_disks {
            plan.fsync_time_max *= 4;
        }
        let view = ClusterView { step: 0, nodes: pool.iter().map(|&id| NodeView::new(id)).collect() };
        Ok(Simulator {
            options: options.clone(),
            network: Network::new(pool_size, parameters, options.faults.reorder),
            rng,
            queue: EventQueue::default(),
            nodes,
            view,
            checkers: all_checkers(),
            clients: Clients::new(options.clients, OPERATIONS_MAX),
            trace: Trace::new(options.trace_lines_max),
            plan,
            changed: Vec::new(),
            violations: Vec::new(),
            settling: false,
            statistics: Statistics::default(),
            pending_reads: vec![Vec::new(); pool_size],
            churn,
            used_ids: voters.iter().copied().collect(),
            leader_commits: vec![None; pool_size],
        })
    }

    fn result(&self) -> RunResult {
        RunResult {
            violations: self.violations.clone(),
            steps: self.view.step,
            commits: self.view.nodes.iter().map(|node| node.applied.len() as u64).max().unwrap_or(0),
            acknowledged: self.clients.acknowledged(),
            trace_tail: self.trace.render(),
            statistics: Statistics {
                term_max: self.view.nodes.iter().map(|node| node.term).max().unwrap_or(0),
                ..self.statistics
            },
        }
    }

    fn run_phases(&mut self) {
        for position in 0..self.nodes.len() {
            let first_tick = self.rng.range(0, TICK_INTERVAL_TIME);
            self.queue.schedule(first_tick, EventKind::Tick { position, incarnation: 0 });
        }
        for client in 0..self.options.clients {
            let start = self.rng.range(0, 5 * TICK_INTERVAL_TIME);
            self.queue.schedule(start, EventKind::ClientInvoke { client });
        }
        let faults = &self.options.faults;
        if faults.partition || faults.one_way || faults.crash || self.churn {
            let first_fault = self.rng.range(5, 20) * TICK_INTERVAL_TIME;
            self.queue.schedule(first_fault, EventKind::Fault);
        }
        for _ in 0..self.options.steps_max {
            if !self.step_once() {
                return;
            }
        }
        self.settle();
    }

    /// Processes one event and checks invariants; false once the run must stop.
    fn step_once(&mut self) -> bool {
        let Some(event) = self.queue.pop() else { return false };
        self.view.step += 1;
        self.process(event);
        self.check_invariants();
        self.violations.is_empty()
    }

    fn check_invariants(&mut self) {
        if self.changed.is_empty() {
            return;
        }
        self.changed.sort_unstable();
        self.changed.dedup();
        for checker in &mut self.checkers {
            self.violations.extend(checker.check(&self.view, &self.changed));
        }
        for &position in &self.changed {
            self.view.nodes[position].log_changed_from = u64::MAX;
        }
        self.changed.clear();
    }

    fn settle(&mut self) {
        self.settling = true;
        self.network.heal();
        self.network.stop_faults();
        self.trace.push(self.view.step, self.queue.now(), TraceEvent::Note("settle: faults healed".to_string()));
        for position in 0..self.nodes.len() {
            self.restart(position);
        }
        self.check_invariants();
        for settle_step in 0..self.options.settle_steps_max {
            if settle_step % CONVERGENCE_CHECK_STEPS == 0 && self.converged() {
                self.final_checks();
                return;
            }
            if !self.step_once() {
                return;
            }
        }
        let message = format!("cluster did not converge within {} steps after healing", self.options.settle_steps_max);
        self.violations.push(Violation { invariant: "settle".to_string(), message, step: self.view.step });
    }

    /// True once one leader leads every member, everything is committed, applied, synced,
    /// no client waits and no membership change is in flight.
    fn converged(&self) -> bool {
        let leaders: Vec<&SimNode> =
            self.nodes.iter().filter(|node| node.raw().is_some_and(|raw| raw.role() == Role::Leader)).collect();
        let [leader] = leaders.as_slice() else { return false };
        let Some(leader_raw) = leader.raw() else { return false };
        let commit = leader_raw.commit_index();
        let conf = leader_raw.conf_state();
        if conf.is_joint() || conf != *leader_raw.latest_conf_state() {
            return false;
        }
        let members = self.member_positions();
        commit == leader_raw.last_index()
            && !self.clients.any_pending()
            && members.iter().map(|&position| &self.nodes[position]).all(|node| {
                node.raw().is_some_and(|raw| raw.commit_index() == commit && raw.leader() == leader_raw.id())
                    && node.applied_index() == commit
                    && !node.has_pending_writes()
            })
    }

    /// Positions of the nodes in the configuration of the (single) leader: every node
    /// without churn; with churn, the leader's voters and learners.
    fn member_positions(&self) -> Vec<usize> {
        let leader_conf = self
            .nodes
            .iter()
            .filter_map(SimNode::raw)
            .find(|raw| raw.role() == Role::Leader)
            .map(|raw| raw.conf_state());
        match leader_conf {
            Some(conf) if self.churn => conf.members().iter().map(|id| *id as usize - 1).collect(),
            _ => (0..self.nodes.len()).collect(),
        }
    }

    fn final_checks(&mut self) {
        let members = self.member_positions();
        let operations: Vec<Vec<u64>> =
            members.iter().map(|&position| self.nodes[position].applied_operations().to_vec()).collect();
        let borrowed: Vec<&[u64]> = operations.iter().map(Vec::as_slice).collect();
        let view = ClusterView {
            step: self.view.step,
            nodes: members.iter().map(|&position| self.view.nodes[position].clone()).collect(),
        };
        self.violations.extend(final_checks::check(&view, &borrowed, &self.clients.operations));
        match final_checks::check_register(self.view.step, &self.clients.operations) {
            RegisterVerdict::Linearizable => {}
            RegisterVerdict::Violation(violation) => self.violations.push(violation),
            RegisterVerdict::Inconclusive => self.statistics.linearizability_inconclusive += 1,
        }
    }

    fn process(&mut self, event: Event) {
        match event.kind {
            EventKind::Tick { position, incarnation } => self.tick(position, incarnation),
            EventKind::Deliver { message } => self.deliver(message),
            EventKind::DiskSynced { position, incarnation, persist_sequence } => {
                self.disk_synced(position, incarnation, persist_sequence)
            }
            EventKind::ClientInvoke { client } => self.client_invoke(client),
            EventKind::ClientRetry { client, attempt } => {
                if self.clients.clients[client].attempt == attempt && self.clients.clients[client].pending.is_some() {
                    self.client_submit(client);
                }
            }
            EventKind::Fault => self.inject_fault(),
            EventKind::Heal => {
                self.network.heal();
                self.note("heal: all links up".to_string());
            }
            EventKind::Restart { position } => self.restart(position),
        }
    }

    pub(crate) fn note(&mut self, text: String) {
        self.trace.push(self.view.step, self.queue.now(), TraceEvent::Note(text));
    }

    fn tick(&mut self, position: usize, incarnation: u64) {
        if self.view.nodes[position].incarnation != incarnation {
            return;
        }
        let Some(raw) = self.nodes[position].raw_mut() else { return };
        raw.tick();
        self.after_input(position);
        let node = self.view.nodes[position].id;
        let state = self.nodes[position].state();
        self.trace.push(self.view.step, self.queue.now(), TraceEvent::Tick { node, state });
        let delay = self.rng.range(TICK_INTERVAL_TIME - TICK_JITTER_TIME, TICK_INTERVAL_TIME + TICK_JITTER_TIME);
        self.queue.schedule_after(delay, EventKind::Tick { position, incarnation });
    }

    fn deliver(&mut self, message: raft::Message) {
        let (from, to, name, term) = (message.from, message.to, message.body.name(), message.term);
        let (from_position, to_position) = (from as usize - 1, to as usize - 1);
        let reason = if self.network.is_blocked(from_position, to_position) {
            Some("partitioned")
        } else if !self.nodes[to_position].is_alive() {
            Some("receiver down")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.statistics.messages_dropped += 1;
            self.trace.push(self.view.step, self.queue.now(), TraceEvent::Drop { from, to, name, reason });
            return;
        }
        let raw = self.nodes[to_position].raw_mut().expect("alive");
        if let Err(error) = raw.step(message) {
            self.note(format!("n{to} refused {name} from n{from}: {error:?}"));
        }
        self.after_input(to_position);
        let state = self.nodes[to_position].state();
        self.trace.push(self.view.step, self.queue.now(), TraceEvent::Deliver { from, to, name, term, state });
    }

    fn disk_synced(&mut self, position: usize, incarnation: u64, persist_sequence: u64) {
        if self.view.nodes[position].incarnation != incarnation || !self.nodes[position].is_alive() {
            return;
        }
        if let Err(message) = self.nodes[position].complete_write(persist_sequence) {
            self.violations.push(Violation { invariant: "driver_contract".to_string(), message, step: self.view.step });
        }
        self.after_input(position);
        let node = self.view.nodes[position].id;
        let state = self.nodes[position].state();
        self.trace.push(self.view.step, self.queue.now(), TraceEvent::Synced { node, persist_sequence, state });
    }

    /// Drains the node's Readys and acts on them: send, schedule fsyncs, acknowledge
    /// clients, compact, refresh the view.
    pub(crate) fn after_input(&mut self, position: usize) {
        let mut output = ReadyOutput::default();
        let view = &mut self.view.nodes[position];
        self.nodes[position].drain_ready(view, &mut output);
        self.statistics.snapshots_installed += output.snapshots_installed;
        for message in output.messages {
            self.send(position, message);
        }
        for persist_sequence in output.writes {
            self.schedule_fsync(position, persist_sequence);
        }
        for operation in output.applied_operations {
            self.acknowledge(operation, position, "", None);
        }
        for (context, index) in output.read_states {
            let Some(operation) = context.get(..8).and_then(|bytes| bytes.try_into().ok()).map(u64::from_le_bytes)
            else {
                continue;
            };
            let waiting = self
                .clients
                .operation_mut(operation)
                .is_some_and(|record| record.read && record.acknowledge_step.is_none() && record.node == position);
            if waiting {
                self.pending_reads[position].push((operation, index));
            }
        }
        self.serve_reads(position);
        self.check_leader_commit(position);
        if self.options.faults.snapshot {
            let (threshold, keep) = (self.plan.compaction_threshold_entries, self.plan.compaction_keep_entries);
            if self.nodes[position].maybe_compact(&mut self.view.nodes[position], threshold, keep) {
                self.statistics.compactions += 1;
            }
        }
        let full = self.view.step % FULL_VIEW_CHECK_STEPS == position as u64;
        let problems =
            output.problems.into_iter().chain(self.nodes[position].check_view(&self.view.nodes[position], full));
        for message in problems {
            self.violations.push(Violation { invariant: "driver_contract".to_string(), message, step: self.view.step });
        }
        self.changed.push(position);
    }

    /// Acknowledges `operation` to its client if the client waits for `position` (a read
    /// returns `read_output`).
    fn acknowledge(&mut self, operation: u64, position: usize, how: &str, read_output: Option<u64>) {
        if let Some(client) = self.clients.acknowledge(operation, position, self.view.step, read_output) {
            self.note(format!("ack op {operation} client {client} by n{}{how}", position + 1));
            let think = self.rng.range(0, 2 * TICK_INTERVAL_TIME);
            self.queue.schedule_after(think, EventKind::ClientInvoke { client });
        }
    }

    /// Serves the node's confirmed reads whose index it has applied, checking that each
    /// sees every write acknowledged before the read began (R7, linearizable reads). A read
    /// returns the last write that took effect on the node; the whole register history is
    /// checked at the end of the run.
    fn serve_reads(&mut self, position: usize) {
        let applied_index = self.nodes[position].applied_index();
        let mut reads = std::mem::take(&mut self.pending_reads[position]);
        reads.retain(|&(operation, index)| {
            if index > applied_index {
                return true;
            }
            let Some(invoke_step) = self.clients.operation_mut(operation).map(|record| record.invoke_step) else {
                return false;
            };
            let node = &self.nodes[position];
            if let Some(missing) = self.clients.missing_before(invoke_step, |id| node.has_applied(id)) {
                let message = format!(
                    "read op {operation} served by node {} at applied index {applied_index} (read index {index}) misses write op {missing} acknowledged before the read began",
                    position + 1
                );
                self.violations.push(Violation { invariant: "linearizable_read".to_string(), message, step: self.view.step });
            }
            let output = self.nodes[position].last_effective_operation();
            self.acknowledge(operation, position, " (read)", output);
            self.statistics.reads_served += 1;
            false
        });
        self.pending_reads[position] = reads;
    }

    fn send(&mut self, from_position: usize, message: raft::Message) {
        let to = message.to;
        if to == 0 || to as usize > self.nodes.len() || to as usize - 1 == from_position {
            let message = format!("node {} sent {} to invalid node {to}", from_position + 1, message.body.name());
            self.violations.push(Violation { invariant: "driver_contract".to_string(), message, step: self.view.step });
            return;
        }
        let (from, name) = (message.from, message.body.name());
        let outcome = self.network.send(message, from_position, to as usize - 1, &mut self.rng, &mut self.queue);
        self.statistics.messages_sent += 1;
        self.statistics.messages_dropped += u64::from(!matches!(outcome, SendOutcome::Sent { .. }));
        let reason = match outcome {
            SendOutcome::Sent { .. } => return,
            SendOutcome::Lost => "lost",
            SendOutcome::Overflow => "queue full",
        };
        self.trace.push(self.view.step, self.queue.now(), TraceEvent::Drop { from, to, name, reason });
    }

    fn schedule_fsync(&mut self, position: usize, persist_sequence: u64) {
        let latency = self.rng.range(1, self.plan.fsync_time_max);
        let incarnation = self.view.nodes[position].incarnation;
        let time = (self.queue.now() + latency).max(self.nodes[position].disk_busy_until);
        self.nodes[position].disk_busy_until = time;
        self.queue.schedule(time, EventKind::DiskSynced { position, incarnation, persist_sequence });
    }

    fn client_invoke(&mut self, client: usize) {
        if self.settling {
            return;
        }
        let read = if self.plan.settings.schedule == Schedule::LeaderChurn {
            self.rng.chance(1, 2)
        } else {
            self.rng.chance(1, 4)
        };
        if self.clients.invoke(client, self.view.step, read).is_some() {
            self.client_submit(client);
        }
    }

    /// Sends the client's pending operation to a random node.
    fn client_submit(&mut self, client: usize) {
        let Some(operation) = self.clients.clients[client].pending else { return };
        self.clients.clients[client].attempt += 1;
        let attempt = self.clients.clients[client].attempt;
        let position = self.rng.range(0, self.nodes.len() as u64) as usize;
        self.clients.operation_mut(operation).expect("pending operation exists").node = position;
        let read = self.clients.operation_mut(operation).is_some_and(|record| record.read);
        if !read && self.nodes[position].has_applied(operation) {
            self.acknowledge(operation, position, " (already applied)", None);
            return;
        }
        let outcome = match self.nodes[position].raw_mut() {
            Some(raw) if read => raw.read_index(Bytes::copy_from_slice(&operation.to_le_bytes())),
            Some(raw) => raw.propose(encode_command(client as u64, operation)),
            None => Err(raft::ProposeError::NoLeader),
        };
        let verb = if read { "reads" } else { "proposes" };
        self.note(format!(
            "client {client} {verb} op {operation} (attempt {attempt}) via n{}: {outcome:?}",
            position + 1
        ));
        let retry_after = match outcome {
            Ok(()) => {
                self.after_input(position);
                CLIENT_TIMEOUT_TIME
            }
            Err(_) => self.rng.range(TICK_INTERVAL_TIME / 2, 3 * TICK_INTERVAL_TIME),
        };
        self.queue.schedule_after(retry_after, EventKind::ClientRetry { client, attempt });
    }

    pub(crate) fn restart(&mut self, position: usize) {
        if self.nodes[position].is_alive() {
            return;
        }
        let seed = self.rng.next_u64();
        if let Err(message) = self.nodes[position].restart(seed, &mut self.view.nodes[position]) {
            self.violations.push(Violation { invariant: "restart".to_string(), message, step: self.view.step });
            return;
        }
        self.nodes[position].disk_busy_until = 0;
        let incarnation = self.view.nodes[position].incarnation;
        self.note(format!("restart n{} (incarnation {incarnation})", position + 1));
        self.after_input(position);
        let first_tick = self.rng.range(1, TICK_INTERVAL_TIME);
        self.queue.schedule_after(first_tick, EventKind::Tick { position, incarnation });
    }
}
