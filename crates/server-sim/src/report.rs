//! What a run reports: violations (with the seed and a short trace to replay them), and
//! counts of what it exercised.

use std::collections::VecDeque;

/// Trace lines kept (the last ones, oldest first).
pub const TRACE_LINES_MAX: usize = 48;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which check (e.g. `linearizability`, `acknowledged_write_lost`).
    pub invariant: String,
    /// What exactly was wrong.
    pub message: String,
    /// Simulated time it was found at.
    pub time_ms: u64,
}

/// Counts of what a run exercised (to see that the faults really happen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Messages handed to the network.
    pub messages_sent: u64,
    /// Messages lost, blocked or addressed to a member that was down.
    pub messages_dropped: u64,
    /// Crashes (power losses and failed disk operations).
    pub crashes: u64,
    /// Partitions started.
    pub partitions: u64,
    /// Snapshots taken (log compactions).
    pub snapshots_taken: u64,
    /// Snapshots restored from a leader.
    pub snapshots_installed: u64,
    /// Linearizable reads and writes in the checked history.
    pub history_operations: u64,
    /// Histories the checker could not decide within its budget (unknown, not a violation).
    pub linearizability_inconclusive: u64,
    /// Highest term any member reached.
    pub term_max: u64,
}

/// What one run did and found.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// The run's seed.
    pub seed: u64,
    /// Broken invariants (a run stops at the first online one; the final checks add theirs).
    pub violations: Vec<Violation>,
    /// Member turns and message deliveries.
    pub steps: u64,
    /// Client requests answered with success.
    pub acknowledged: u64,
    /// The last trace lines, oldest first.
    pub trace_tail: Vec<String>,
    /// What the run exercised.
    pub statistics: Statistics,
}

impl RunResult {
    /// The first violation and the trace, as text for a failure message.
    pub fn describe(&self) -> String {
        let mut text = format!("seed {}: {} violation(s)\n", self.seed, self.violations.len());
        for violation in &self.violations {
            text += &format!("  [{} at {} ms] {}\n", violation.invariant, violation.time_ms, violation.message);
        }
        text += "  trace (last lines):\n";
        for line in &self.trace_tail {
            text += &format!("    {line}\n");
        }
        text
    }
}

/// The last [`TRACE_LINES_MAX`] events of a run.
#[derive(Default)]
pub struct Trace {
    lines: VecDeque<String>,
}

impl Trace {
    /// Records `line` at `time_ms`.
    pub fn record(&mut self, time_ms: u64, line: impl AsRef<str>) {
        if self.lines.len() == TRACE_LINES_MAX {
            self.lines.pop_front();
        }
        self.lines.push_back(format!("{time_ms:>6} ms  {}", line.as_ref()));
        assert!(self.lines.len() <= TRACE_LINES_MAX, "the trace is bounded");
    }

    /// The lines, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}
