//! The cluster and its simulated time: every simulated millisecond, faults strike, messages
//! and fsyncs complete, ticks fall due, clients send requests, and every member with
//! something to do runs one turn; the online checks run after each turn. After the fault
//! phase everything heals, clients stop, and once the cluster settled the final checks run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raft::{Role, SplitMix64};

use crate::checks::Checks;
use crate::clients::Clients;
use crate::disk::draw_crash_mode;
use crate::member::{Member, MemberSettings, Stop, TurnOutput};
use crate::network::Network;
use crate::options::{Drawn, Options, LEASE_TTL_SECONDS_MAX, TICK_MS};
use crate::report::{RunResult, Statistics, Trace, Violation};

/// Simulated milliseconds to wait after healing before the cluster may count as settled
/// (every lease granted must have expired by then).
const QUIET_AFTER_HEAL_MS: u64 = LEASE_TTL_SECONDS_MAX as u64 * 1000 + 2_500;

/// A simulated cluster in the middle of a run.
pub struct Cluster {
    options: Options,
    drawn: Drawn,
    members: Vec<Member>,
    network: Network,
    clients: Clients,
    checks: Checks,
    trace: Trace,
    random: SplitMix64,
    /// Simulated time, read by every member's clock.
    time_ms: Arc<AtomicU64>,
    now_ms: u64,
    /// Per member: its ticks fall at `now_ms % TICK_MS == phase`.
    tick_phases: Vec<u64>,
    /// Members down, by index, with the time they restart.
    restart_at: BTreeMap<usize, u64>,
    partition_until_ms: Option<u64>,
    /// Per member: the leader and term last traced.
    traced_leaders: Vec<(u64, u64)>,
    statistics: Statistics,
    steps: u64,
    violation: Option<Violation>,
    /// Acknowledged writes the fault injector has seen.
    acknowledged_writes_seen: usize,
}

impl Cluster {
    /// A cluster for `options`, not started.
    pub fn new(options: &Options) -> Cluster {
        assert!((1..=9).contains(&options.nodes), "1 to 9 members");
        let mut random = SplitMix64::new(options.seed ^ 0x5e55_1017);
        let drawn = Drawn::draw(options, &mut random);
        let time_ms = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now(); // only an origin: the core sees differences of simulated time
        let voters: Vec<u64> = (1..=options.nodes as u64).collect();
        let slow_disks = random.chance(1, 2);
        let members = voters
            .iter()
            .map(|&id| {
                let time = time_ms.clone();
                let clock: server::server_core::Clock =
                    Arc::new(move || epoch + Duration::from_millis(time.load(Ordering::Relaxed)));
                let fsync_ms_max = if slow_disks { random.range(1, 40) } else { drawn.fsync_ms_max };
                let sabotage = options.sabotage;
                let settings = MemberSettings { id, voters: voters.clone(), drawn, fsync_ms_max, sabotage, clock };
                Member::new(settings)
            })
            .collect();
        let tick_phases = (0..options.nodes).map(|_| random.range(0, TICK_MS)).collect();
        Cluster {
            options: options.clone(),
            drawn,
            members,
            network: Network::new(drawn.loss_percent, drawn.delay_ms_max),
            clients: Clients::new(options.clients),
            checks: Checks::default(),
            trace: Trace::default(),
            random,
            time_ms,
            now_ms: 0,
            tick_phases,
            restart_at: BTreeMap::new(),
            partition_until_ms: None,
            traced_leaders: vec![(0, 0); options.nodes],
            statistics: Statistics::default(),
            steps: 0,
            violation: None,
            acknowledged_writes_seen: 0,
        }
    }

    /// Runs the whole simulation and the checks.
    pub fn run(self) -> RunResult {
        self.run_with(|_| {})
    }

    fn run_with(mut self, at_end: impl FnOnce(&Clients)) -> RunResult {
        self.trace.record(0, format!("start: {} members, {:?}", self.options.nodes, self.drawn));
        for index in 0..self.members.len() {
            self.start_member(index);
        }
        while self.now_ms < self.options.fault_phase_ms && self.violation.is_none() {
            self.advance(true);
        }
        self.heal();
        let settled = self.settle();
        self.trace.record(self.now_ms, format!("client failures: {:?}", self.clients.failures));
        let mut result = self.finish(settled);
        at_end(&self.clients);
        result.seed = self.options.seed;
        result
    }

    /// As [`Cluster::run`], returning the client history as well.
    pub fn run_keeping_history(mut self) -> (RunResult, linearizability::History) {
        let options = self.options.clone();
        self.options.seed = options.seed;
        let history_slot: std::cell::RefCell<Option<linearizability::History>> = Default::default();
        let result = self.run_with(|clients| *history_slot.borrow_mut() = Some(clients.history.build()));
        (result, history_slot.into_inner().expect("the run ended"))
    }

    fn violate(&mut self, invariant: &str, message: String) {
        self.trace.record(self.now_ms, format!("VIOLATION {invariant}: {message}"));
        if self.violation.is_none() {
            self.violation = Some(Violation { invariant: invariant.into(), message, time_ms: self.now_ms });
        }
    }

    /// One simulated millisecond.
    fn advance(&mut self, faults: bool) {
        self.now_ms += 1;
        self.time_ms.store(self.now_ms, Ordering::Relaxed);
        if faults {
            crate::faults::inject(self);
        }
        self.restart_due();
        self.deliver_messages();
        self.complete_syncs();
        self.mark_ticks();
        self.issue_requests();
        self.clients.give_up(self.now_ms, None);
        self.run_turns();
        if faults {
            crate::faults::after_turns(self);
        }
    }

    fn start_member(&mut self, index: usize) {
        let member = &mut self.members[index];
        match member.start(&mut self.random) {
            Ok(()) => {
                let revision = member.running.as_ref().expect("started").core.revision();
                self.checks.member_started(member.settings.id, revision);
            }
            Err(message) => {
                let message = format!("member {:x} cannot restart: {message}", member.settings.id);
                self.violate("recovery", message);
            }
        }
    }

    fn restart_due(&mut self) {
        let due: Vec<usize> =
            self.restart_at.iter().filter(|(_, at_ms)| **at_ms <= self.now_ms).map(|(index, _)| *index).collect();
        for index in due {
            self.restart_at.remove(&index);
            self.trace.record(self.now_ms, format!("restart m{}", index + 1));
            self.start_member(index);
        }
    }

    fn deliver_messages(&mut self) {
        for _ in 0..crate::network::IN_FLIGHT_MAX {
            let Some(message) = self.network.next_due(self.now_ms) else { return };
            let member = &mut self.members[(message.to - 1) as usize];
            if member.running.is_none() {
                self.network.dropped += 1;
                continue;
            }
            self.steps += 1;
            member.inbox.push(message);
        }
    }

    fn complete_syncs(&mut self) {
        for index in 0..self.members.len() {
            if self.members[index].running.is_none() {
                continue;
            }
            match self.members[index].disk.complete_due(self.now_ms) {
                Ok(Some(sequence)) => self.members[index].durable_due = Some(sequence),
                Ok(None) => {}
                Err(error) => self.on_stop(index, Stop::from_disk(&self.members[index].disk, error)),
            }
        }
    }

    fn mark_ticks(&mut self) {
        for (member, phase) in self.members.iter_mut().zip(&self.tick_phases) {
            if member.running.is_some() && self.now_ms % TICK_MS == *phase {
                member.tick_due = true;
            }
        }
    }

    fn issue_requests(&mut self) {
        let up: Vec<u64> = self.up_members().map(|member| member.settings.id).collect();
        let members = &self.members;
        let view_of = |id: u64| members[(id - 1) as usize].running.as_ref().expect("up").core.read_view();
        let submissions = self.clients.issue(self.now_ms, &up, &view_of, &mut self.random);
        for submission in submissions {
            self.members[(submission.member - 1) as usize].requests.push((submission.request, submission.input));
        }
    }

    fn up_members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|member| member.running.is_some())
    }

    fn run_turns(&mut self) {
        for index in 0..self.members.len() {
            if !self.members[index].has_work() || self.violation.is_some() {
                continue;
            }
            self.steps += 1;
            match self.members[index].turn(self.now_ms, &mut self.random) {
                Ok(output) => self.after_turn(index, output),
                Err(stop) => self.on_stop(index, stop),
            }
        }
    }

    fn after_turn(&mut self, index: usize, mut output: TurnOutput) {
        let id = self.members[index].settings.id;
        for message in std::mem::take(&mut output.messages) {
            self.network.send(message, self.now_ms, &mut self.random);
        }
        let core = &self.members[index].running.as_ref().expect("turned").core;
        let view = core.read_view();
        for (request, answer) in std::mem::take(&mut output.answers) {
            self.clients.on_answer(request, answer, &view, self.now_ms, &mut self.random);
        }
        self.statistics.snapshots_taken += output.snapshots.len() as u64;
        self.statistics.snapshots_installed +=
            output.published.iter().filter(|published| published.events.is_empty()).count() as u64;
        let soft_state = core.soft_state();
        self.statistics.term_max = self.statistics.term_max.max(soft_state.term);
        if let Err((invariant, message)) = self.checks.after_turn(id, core.store(), &output) {
            self.violate(&invariant, message);
        }
        if soft_state.role == Role::Leader && self.traced_leaders[index] != (id, soft_state.term) {
            self.traced_leaders[index] = (id, soft_state.term);
            self.trace.record(self.now_ms, format!("m{id} leads term {}", soft_state.term));
        }
    }

    /// A member stopped: a crash (its disk loses what was not durable), or a finding.
    pub(crate) fn on_stop(&mut self, index: usize, stop: Stop) {
        match stop {
            Stop::Crashed => self.crash(index),
            Stop::Fatal(message) => {
                let id = self.members[index].settings.id;
                self.violate("fatal", format!("member {id:x} stopped: {message}"));
                self.members[index].go_down();
            }
        }
    }

    /// Member `index` loses power now; it restarts after a drawn downtime.
    pub(crate) fn crash(&mut self, index: usize) {
        let mode = draw_crash_mode(&mut self.random);
        let member = &mut self.members[index];
        member.go_down();
        member.disk.lose_power(mode);
        self.statistics.crashes += 1;
        let downtime_ms =
            if self.random.chance(1, 5) { self.random.range(800, 2_000) } else { self.random.range(20, 400) };
        self.restart_at.insert(index, self.now_ms + downtime_ms);
        self.clients.give_up(self.now_ms, Some(index as u64 + 1));
        self.trace.record(self.now_ms, format!("crash m{} ({mode:?}), down {downtime_ms} ms", index + 1));
    }

    /// Heals every fault: partitions end, down members restart, clients stop.
    fn heal(&mut self) {
        self.network.heal();
        self.partition_until_ms = None;
        for (_, at_ms) in self.restart_at.iter_mut() {
            *at_ms = (*at_ms).min(self.now_ms + 1);
        }
        self.clients.stop();
        self.trace.record(self.now_ms, "heal: partitions end, members restart, clients stop");
    }

    /// Runs until the cluster settled (or the settle budget is spent); true if it settled.
    fn settle(&mut self) -> bool {
        let quiet_at_ms = self.now_ms + QUIET_AFTER_HEAL_MS;
        let deadline_ms = self.now_ms + self.options.settle_ms_max;
        while self.now_ms < deadline_ms && self.violation.is_none() {
            self.advance(false);
            if self.now_ms >= quiet_at_ms && self.now_ms.is_multiple_of(TICK_MS) && self.is_settled() {
                return true;
            }
        }
        false
    }

    /// True when every member is up, one leads, and all applied everything it has.
    fn is_settled(&self) -> bool {
        if !self.clients.all_idle() || self.up_members().count() != self.members.len() {
            return false;
        }
        let cores: Vec<_> = self.up_members().map(|member| &member.running.as_ref().expect("up").core).collect();
        let Some(leader) = cores.iter().find(|core| core.soft_state().role == Role::Leader) else { return false };
        let last_index = leader.node().last_index();
        let leases_left = leader.store().leases().next().is_some();
        !leases_left
            && cores
                .iter()
                .all(|core| core.node().commit_index() == last_index && core.store().applied_index() == last_index)
    }

    fn finish(&mut self, settled: bool) -> RunResult {
        if self.violation.is_none() && !settled {
            let states = self.describe_members();
            self.violate("settle", format!("the cluster did not settle after healing: {states}"));
        }
        let mut violations: Vec<Violation> = self.violation.take().into_iter().collect();
        if violations.is_empty() {
            violations = self.final_checks();
        }
        for violation in &violations {
            self.trace.record(violation.time_ms, format!("{}: {}", violation.invariant, violation.message));
        }
        self.statistics.messages_sent = self.network.sent;
        self.statistics.messages_dropped = self.network.dropped;
        self.statistics.history_operations = self.clients.history.len() as u64;
        RunResult {
            seed: self.options.seed,
            violations,
            steps: self.steps,
            acknowledged: self.clients.acknowledged,
            trace_tail: self.trace.tail(),
            statistics: self.statistics,
        }
    }

    /// Each member's role, term, indexes and leases, for a settle failure.
    fn describe_members(&self) -> String {
        let describe = |member: &Member| match &member.running {
            None => format!("m{} down", member.settings.id),
            Some(running) => {
                let (core, node) = (&running.core, running.core.node());
                format!(
                    "m{} {:?} term {} leader {} last {} commit {} applied {} leases {}",
                    member.settings.id,
                    core.soft_state().role,
                    node.term(),
                    node.leader(),
                    node.last_index(),
                    node.commit_index(),
                    core.store().applied_index(),
                    core.store().leases().count()
                )
            }
        };
        let members: Vec<String> = self.members.iter().map(describe).collect();
        format!("{}; clients idle {}", members.join("; "), self.clients.all_idle())
    }

    fn final_checks(&mut self) -> Vec<Violation> {
        let stores: Vec<(u64, Arc<kv::Store>)> = self
            .up_members()
            .map(|member| (member.settings.id, member.running.as_ref().expect("up").core.read_view()))
            .collect();
        let mut found = crate::checks::final_checks(&self.checks, &stores, &self.clients);
        match crate::checks::check_history(&self.clients) {
            Ok(true) => {}
            Ok(false) => self.statistics.linearizability_inconclusive += 1,
            Err(explanation) => found.push(("linearizability".to_string(), explanation)),
        }
        let time_ms = self.now_ms;
        found.into_iter().map(|(invariant, message)| Violation { invariant, message, time_ms }).collect()
    }

    // Accessors for the fault injector (crate::faults).

    /// Current simulated time.
    pub(crate) fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The run's variation.
    pub(crate) fn drawn(&self) -> &Drawn {
        &self.drawn
    }

    /// The random source.
    pub(crate) fn random(&mut self) -> &mut SplitMix64 {
        &mut self.random
    }

    /// Indexes of members that are up.
    pub(crate) fn up_indexes(&self) -> Vec<usize> {
        (0..self.members.len()).filter(|index| self.members[*index].running.is_some()).collect()
    }

    /// Members.
    pub(crate) fn members(&self) -> &[Member] {
        &self.members
    }

    /// True once per new acknowledged write since the last call.
    pub(crate) fn take_new_acknowledged_write(&mut self) -> bool {
        let count = self.clients.acknowledged_writes.len();
        let new = count > self.acknowledged_writes_seen;
        self.acknowledged_writes_seen = count;
        new
    }

    /// Arms a crash `operations` disk operations ahead on member `index`.
    pub(crate) fn arm_crash(&mut self, index: usize, operations: u64) {
        self.members[index].disk.arm_crash(operations);
        self.trace.record(self.now_ms, format!("arm crash m{} in {operations} disk operations", index + 1));
    }

    /// Starts a partition (see [`Network::partition`]) that heals at `until_ms`.
    pub(crate) fn partition(&mut self, side: Vec<u64>, others: Vec<u64>, one_way: bool, until_ms: u64) {
        self.network.partition(&side, &others, one_way);
        self.partition_until_ms = Some(until_ms);
        self.statistics.partitions += 1;
        self.trace.record(self.now_ms, format!("partition {side:?} | {others:?} one_way={one_way} until {until_ms}"));
    }

    /// Heals the partition if its time is over; true while one is active.
    pub(crate) fn partition_active(&mut self) -> bool {
        match self.partition_until_ms {
            Some(until_ms) if until_ms <= self.now_ms => {
                self.network.heal();
                self.partition_until_ms = None;
                self.trace.record(self.now_ms, "partition healed");
                false
            }
            Some(_) => true,
            None => false,
        }
    }
}
