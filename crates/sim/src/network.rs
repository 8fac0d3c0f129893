//! The simulated network: per-link blocking (partitions), loss, duplication, delay and
//! (optionally) reordering.

use raft::{Message, SplitMix64};

use crate::events::{EventKind, EventQueue, Time, QUEUE_EVENTS_MAX};
use crate::options::Faults;

/// Per-run network parameters, drawn from the seed.
#[derive(Clone, Copy, Debug)]
pub struct NetworkParameters {
    /// Chance of losing a message, per million.
    pub loss_per_million: u64,
    /// Chance of duplicating a message, per million.
    pub duplicate_per_million: u64,
    /// Chance of a long delay, per million.
    pub long_delay_per_million: u64,
    /// Usual one-way latency bounds.
    pub delay_time_min: Time,
    /// Upper bound (exclusive) of the usual latency.
    pub delay_time_max: Time,
    /// Upper bound (exclusive) of a long delay.
    pub long_delay_time_max: Time,
}

impl NetworkParameters {
    /// Draws parameters for the enabled faults.
    pub fn draw(faults: &Faults, rng: &mut SplitMix64) -> Self {
        let delay_time_min = rng.range(1, 10);
        NetworkParameters {
            loss_per_million: if faults.loss { rng.range(5_000, 100_000) } else { 0 },
            duplicate_per_million: if faults.duplicate { rng.range(5_000, 50_000) } else { 0 },
            long_delay_per_million: if faults.delay { rng.range(10_000, 100_000) } else { 0 },
            delay_time_min,
            delay_time_max: delay_time_min + rng.range(5, 40),
            long_delay_time_max: rng.range(100, 600),
        }
    }
}

/// What happened to a message handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Scheduled for delivery (`copies` times).
    Sent { copies: u32 },
    /// Lost.
    Lost,
    /// Dropped because the event queue is full.
    Overflow,
}

/// Links between `nodes` nodes (positions `0..nodes`).
#[derive(Debug)]
pub struct Network {
    nodes: usize,
    /// `blocked[from * nodes + to]`: messages from `from` to `to` are dropped.
    blocked: Vec<bool>,
    /// Latest scheduled delivery per link (keeps links FIFO when reordering is off).
    last_delivery: Vec<Time>,
    parameters: NetworkParameters,
    reorder: bool,
    /// False after healing: no loss, duplication or long delays.
    faulty: bool,
}

impl Network {
    /// A fully connected network.
    pub fn new(nodes: usize, parameters: NetworkParameters, reorder: bool) -> Self {
        Network {
            nodes,
            blocked: vec![false; nodes * nodes],
            last_delivery: vec![0; nodes * nodes],
            parameters,
            reorder,
            faulty: true,
        }
    }

    /// True if `from` cannot currently reach `to`.
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked[from * self.nodes + to]
    }

    /// Blocks or unblocks one direction of one link.
    pub fn set_blocked(&mut self, from: usize, to: usize, blocked: bool) {
        self.blocked[from * self.nodes + to] = blocked;
    }

    /// Symmetric partition: nodes in different groups cannot talk.
    pub fn partition(&mut self, group_of: &[usize]) {
        assert_eq!(group_of.len(), self.nodes);
        for from in 0..self.nodes {
            for to in 0..self.nodes {
                self.set_blocked(from, to, group_of[from] != group_of[to]);
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|blocked| *blocked = false);
    }

    /// Turns loss, duplication and long delays off for good (the settle phase).
    pub fn stop_faults(&mut self) {
        self.faulty = false;
    }

    fn delay(&self, rng: &mut SplitMix64) -> Time {
        let parameters = &self.parameters;
        if self.faulty && rng.chance(parameters.long_delay_per_million, 1_000_000) {
            return rng.range(parameters.delay_time_max, parameters.delay_time_max + parameters.long_delay_time_max);
        }
        rng.range(parameters.delay_time_min, parameters.delay_time_max)
    }

    fn delivery_time(&mut self, link: usize, now: Time, rng: &mut SplitMix64) -> Time {
        let mut time = now + self.delay(rng);
        if !self.reorder {
            time = time.max(self.last_delivery[link]);
            self.last_delivery[link] = time;
        }
        time
    }

    /// Schedules delivery of `message` from position `from` to position `to`.
    pub fn send(
        &mut self,
        message: Message,
        from: usize,
        to: usize,
        rng: &mut SplitMix64,
        queue: &mut EventQueue,
    ) -> SendOutcome {
        if self.faulty && rng.chance(self.parameters.loss_per_million, 1_000_000) {
            return SendOutcome::Lost;
        }
        let copies = if self.faulty && rng.chance(self.parameters.duplicate_per_million, 1_000_000) { 2 } else { 1 };
        if queue.len() + copies as usize > QUEUE_EVENTS_MAX {
            return SendOutcome::Overflow;
        }
        let link = from * self.nodes + to;
        if copies == 2 {
            let time = self.delivery_time(link, queue.now(), rng);
            queue.schedule(time, EventKind::Deliver { message: message.clone() });
        }
        let time = self.delivery_time(link, queue.now(), rng);
        queue.schedule(time, EventKind::Deliver { message });
        SendOutcome::Sent { copies }
    }
}
