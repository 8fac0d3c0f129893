//! The discrete-event queue: events ordered by (time, sequence number).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use raft::Message;

/// Logical time (a tick is [`crate::simulator::TICK_INTERVAL_TIME`] units).
pub type Time = u64;

/// Something that happens at a point of logical time.
#[derive(Clone, Debug)]
pub enum EventKind {
    /// A node's logical clock ticks.
    Tick { position: usize, incarnation: u64 },
    /// A message arrives at its receiver.
    Deliver { message: Message },
    /// A node's oldest pending write becomes durable.
    DiskSynced { position: usize, incarnation: u64, persist_sequence: u64 },
    /// A client starts its next operation.
    ClientInvoke { client: usize },
    /// A client (re)submits its pending operation, if `attempt` is still current.
    ClientRetry { client: usize, attempt: u64 },
    /// The fault scheduler acts.
    Fault,
    /// Partitions end.
    Heal,
    /// A crashed node restarts.
    Restart { position: usize },
}

/// A scheduled event.
#[derive(Clone, Debug)]
pub struct Event {
    /// When it happens.
    pub time: Time,
    /// Tie-breaker: order of scheduling.
    pub sequence: u64,
    /// What happens.
    pub kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.sequence) == (other.time, other.sequence)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed, so the max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.sequence).cmp(&(self.time, self.sequence))
    }
}

/// A bounded priority queue of events.
#[derive(Debug, Default)]
pub struct EventQueue {
    heap: BinaryHeap<Event>,
    next_sequence: u64,
    now: Time,
}

/// Most events queued at once; message deliveries beyond it are dropped.
pub const QUEUE_EVENTS_MAX: usize = 100_000;

impl EventQueue {
    /// Current time (of the last popped event).
    pub fn now(&self) -> Time {
        self.now
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Schedules `kind` at `time` (not before now).
    pub fn schedule(&mut self, time: Time, kind: EventKind) {
        let time = time.max(self.now);
        self.next_sequence += 1;
        self.heap.push(Event { time, sequence: self.next_sequence, kind });
    }

    /// Schedules `kind` after `delay`.
    pub fn schedule_after(&mut self, delay: Time, kind: EventKind) {
        self.schedule(self.now + delay, kind);
    }

    /// The earliest event; advances the clock to it.
    pub fn pop(&mut self) -> Option<Event> {
        let event = self.heap.pop()?;
        assert!(event.time >= self.now, "time went backwards");
        self.now = event.time;
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_sequence() {
        let mut queue = EventQueue::default();
        queue.schedule(20, EventKind::Fault);
        queue.schedule(10, EventKind::Heal);
        queue.schedule(10, EventKind::ClientInvoke { client: 0 });
        assert!(matches!(queue.pop().unwrap().kind, EventKind::Heal));
        assert!(matches!(queue.pop().unwrap().kind, EventKind::ClientInvoke { .. }));
        assert!(matches!(queue.pop().unwrap().kind, EventKind::Fault));
        assert_eq!(queue.now(), 20);
        assert!(queue.pop().is_none());
    }
}
