//! The fault scheduler: partitions (symmetric, one-way), crashes and restarts.

use raft::Role;

use crate::events::EventKind;
use crate::options::Schedule;
use crate::simulator::{Simulator, TICK_INTERVAL_TIME};

/// The fault actions a scheduler step can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Partition,
    OneWay,
    Crash,
    Churn,
}

impl Simulator {
    /// Picks and applies one fault action, then schedules the next one.
    pub(crate) fn inject_fault(&mut self) {
        if self.settling {
            return;
        }
        let faults = self.options.faults;
        let schedule = self.plan.settings.schedule;
        let crash_heavy = schedule == Schedule::CrashHeavy;
        let leader_churn = schedule == Schedule::LeaderChurn;
        let actions: Vec<Action> = [
            (faults.partition, Action::Partition),
            (faults.partition && leader_churn, Action::Partition),
            (faults.one_way, Action::OneWay),
            (faults.crash, Action::Crash),
            (faults.crash && (crash_heavy || leader_churn), Action::Crash),
            (faults.crash && crash_heavy, Action::Crash),
            (faults.crash && crash_heavy, Action::Crash),
            (self.churn, Action::Churn),
            (self.churn, Action::Churn), // twice as likely: membership changes are rare otherwise
        ]
        .into_iter()
        .filter_map(|(on, action)| on.then_some(action))
        .collect();
        if actions.is_empty() {
            return;
        }
        match actions[self.rng.range(0, actions.len() as u64) as usize] {
            Action::Partition => self.partition(),
            Action::OneWay => self.one_way_partition(),
            Action::Crash => self.crash_some_node(),
            Action::Churn => self.churn_membership(),
        }
        let interval = self.plan.fault_interval_time;
        let next = self.rng.range(interval / 2, interval + interval / 2);
        self.queue.schedule_after(next, EventKind::Fault);
    }

    /// Position of a live node that believes it leads (the first found), if any.
    pub(crate) fn leader_position(&self) -> Option<usize> {
        self.nodes.iter().position(|node| node.raw().is_some_and(|raw| raw.role() == Role::Leader))
    }

    fn schedule_heal(&mut self) {
        let ticks = if self.plan.settings.schedule == Schedule::LeaderChurn { (10, 60) } else { (2, 30) };
        let after = self.rng.range(ticks.0, ticks.1) * TICK_INTERVAL_TIME;
        self.queue.schedule_after(after, EventKind::Heal);
    }

    /// A symmetric partition: a random split, a minority cut off, or the leader isolated.
    fn partition(&mut self) {
        let count = self.nodes.len();
        let mut group_of = vec![0usize; count];
        let variant = if self.plan.settings.schedule == Schedule::LeaderChurn && self.rng.chance(2, 3) {
            2 // the leader isolated: a deposed leader keeps serving its minority for a while
        } else {
            self.rng.range(0, 3)
        };
        let description = match variant {
            0 => {
                group_of.iter_mut().for_each(|group| *group = self.rng.range(0, 3) as usize);
                format!("partition: random groups {group_of:?}")
            }
            1 => {
                let mut order: Vec<usize> = (0..count).collect();
                for position in (1..count).rev() {
                    order.swap(position, self.rng.range(0, position as u64 + 1) as usize);
                }
                let minority = self.rng.range(1, (count as u64 - 1) / 2 + 2) as usize;
                order[..minority.min(count)].iter().for_each(|&position| group_of[position] = 1);
                format!(
                    "partition: minority {:?} cut off",
                    order[..minority.min(count)].iter().map(|p| p + 1).collect::<Vec<_>>()
                )
            }
            _ => {
                let victim = self.leader_position().unwrap_or_else(|| self.rng.range(0, count as u64) as usize);
                group_of[victim] = 1;
                format!("partition: n{} isolated", victim + 1)
            }
        };
        self.network.partition(&group_of);
        self.statistics.partitions += 1;
        self.note(description);
        self.schedule_heal();
    }

    /// A one-way partition: `sender` still reaches its peers but hears nothing back
    /// from some of them (often the leader, which then cannot see its followers' acks).
    fn one_way_partition(&mut self) {
        let count = self.nodes.len();
        if count < 2 {
            return;
        }
        let leader_churn = self.plan.settings.schedule == Schedule::LeaderChurn;
        let sender = match self.leader_position() {
            Some(leader) if leader_churn || self.rng.chance(1, 2) => leader,
            _ => self.rng.range(0, count as u64) as usize,
        };
        let mut deaf_to = Vec::new();
        for peer in (0..count).filter(|&peer| peer != sender) {
            if self.rng.chance(2, 3) {
                self.network.set_blocked(peer, sender, true);
                deaf_to.push(peer + 1);
            }
        }
        self.statistics.partitions += 1;
        self.note(format!("one-way: n{} can send but hears nothing from {deaf_to:?}", sender + 1));
        self.schedule_heal();
    }

    /// Crashes a node (often the leader) if few enough are down; restarts it later.
    fn crash_some_node(&mut self) {
        let down = self.nodes.iter().filter(|node| !node.is_alive()).count();
        if down >= self.plan.crashed_max {
            return;
        }
        let alive: Vec<usize> = (0..self.nodes.len()).filter(|&position| self.nodes[position].is_alive()).collect();
        let schedule = self.plan.settings.schedule;
        let leader_odds = match schedule {
            Schedule::Mixed => 3,
            Schedule::CrashHeavy => 2,
            Schedule::LeaderChurn => 1,
        };
        let victim = match self.leader_position() {
            Some(leader) if self.rng.chance(1, leader_odds) => leader,
            _ => alive[self.rng.range(0, alive.len() as u64) as usize],
        };
        let torn = self.options.faults.torn;
        let description = self.nodes[victim].crash(torn, &mut self.rng, &mut self.view.nodes[victim]);
        self.changed.push(victim);
        self.pending_reads[victim].clear();
        self.statistics.crashes += 1;
        self.statistics.torn_writes += u64::from(description.contains("torn:"));
        self.note(description);
        let down_ticks_max = match schedule {
            Schedule::Mixed => 40,
            Schedule::CrashHeavy => 8,
            Schedule::LeaderChurn => 12,
        };
        let down_time = self.rng.range(1, down_ticks_max) * TICK_INTERVAL_TIME;
        self.queue.schedule_after(down_time, EventKind::Restart { position: victim });
    }
}
