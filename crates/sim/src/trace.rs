//! A bounded ring buffer of the last events, formatted only when a report needs them.

use std::collections::VecDeque;

use raft::{Index, NodeId, Role, Term};

/// A node's state right after an event (for trace lines).
#[derive(Clone, Copy, Debug)]
pub struct NodeState {
    /// Role.
    pub role: Role,
    /// Term.
    pub term: Term,
    /// Commit index.
    pub commit: Index,
    /// Last log index.
    pub last_index: Index,
}

/// What happened in one step.
#[derive(Clone, Debug)]
pub enum TraceEvent {
    /// A node ticked.
    Tick { node: NodeId, state: Option<NodeState> },
    /// A message arrived and was stepped.
    Deliver { from: NodeId, to: NodeId, name: &'static str, term: Term, state: Option<NodeState> },
    /// A message was dropped on arrival.
    Drop { from: NodeId, to: NodeId, name: &'static str, reason: &'static str },
    /// A node's write completed (fsync).
    Synced { node: NodeId, persist_sequence: u64, state: Option<NodeState> },
    /// Anything rarer (faults, client operations), already formatted.
    Note(String),
}

#[derive(Clone, Debug)]
struct TraceLine {
    step: u64,
    time: u64,
    event: TraceEvent,
}

/// The last `capacity` events.
#[derive(Debug)]
pub struct Trace {
    lines: VecDeque<TraceLine>,
    capacity: usize,
}

fn describe(state: &Option<NodeState>) -> String {
    match state {
        Some(state) => {
            format!(" -> {:?} term={} commit={} last={}", state.role, state.term, state.commit, state.last_index)
        }
        None => String::new(),
    }
}

impl Trace {
    /// An empty trace keeping at most `capacity` lines.
    pub fn new(capacity: usize) -> Self {
        Trace { lines: VecDeque::with_capacity(capacity.max(1)), capacity: capacity.max(1) }
    }

    /// Records an event.
    pub fn push(&mut self, step: u64, time: u64, event: TraceEvent) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(TraceLine { step, time, event });
        debug_assert!(self.lines.len() <= self.capacity);
    }

    /// The kept lines, oldest first.
    pub fn render(&self) -> Vec<String> {
        self.lines.iter().map(Self::render_line).collect()
    }

    fn render_line(line: &TraceLine) -> String {
        let text = match &line.event {
            TraceEvent::Tick { node, state } => format!("tick n{node}{}", describe(state)),
            TraceEvent::Deliver { from, to, name, term, state } => {
                format!("deliver {name}(term {term}) n{from}->n{to}{}", describe(state))
            }
            TraceEvent::Drop { from, to, name, reason } => format!("drop {name} n{from}->n{to}: {reason}"),
            TraceEvent::Synced { node, persist_sequence, state } => {
                format!("fsync n{node} #{persist_sequence}{}", describe(state))
            }
            TraceEvent::Note(text) => text.clone(),
        };
        format!("step {} t={}: {text}", line.step, line.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_lines() {
        let mut trace = Trace::new(3);
        for step in 0..10 {
            trace.push(step, step * 10, TraceEvent::Note(format!("event {step}")));
        }
        let lines = trace.render();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "step 7 t=70: event 7");
        assert_eq!(lines[2], "step 9 t=90: event 9");
    }
}
