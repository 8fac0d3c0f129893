//! What a run found, printable; the last line is a one-line summary.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::runner::Scenario;
use crate::workload::OperationCounts;

/// The linearizability checker's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not checked (yet).
    NotChecked,
    /// The history is linearizable.
    Linearizable,
    /// The history is not linearizable; the checker's explanation.
    NotLinearizable(String),
    /// The checker ran out of budget; why.
    Unknown(String),
}

/// The outcome of a run (or of a replayed history).
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed of every random choice.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Number of clients.
    pub clients: usize,
    /// Names of the fault kinds chosen from.
    pub fault_kinds: Vec<String>,
    /// Each injected fault: time since the first, kind, what was done.
    pub faults_injected: Vec<String>,
    /// How many faults of each kind were injected.
    pub fault_counts: BTreeMap<String, u64>,
    /// Operations in the history (including final reads).
    pub operations: usize,
    /// Outcomes seen by clients.
    pub counts: OperationCounts,
    /// Final reads (every key through every member) that returned.
    pub final_reads: usize,
    /// Acknowledged writes looked up at their revisions (over all members).
    pub acknowledged_write_lookups: usize,
    /// Store revision at which members' hashes were compared.
    pub revision: i64,
    /// Applied index all members reached.
    pub applied_index: u64,
    /// `HashKV` of each member at [`Report::revision`].
    pub hashes: Vec<u32>,
    /// Time the healed cluster took to accept a write.
    pub recovery: Option<Duration>,
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Everything that failed; empty when the run passed.
    pub failures: Vec<String>,
    /// Where the history was saved (on failure or inconclusive check).
    pub history_path: Option<PathBuf>,
    /// Where the members' logs and data are kept (on failure).
    pub log_directory: Option<PathBuf>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The command that re-runs the same schedule.
    pub rerun_command: String,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &Scenario) -> Report {
        let fault_kinds: Vec<String> = scenario.faults.iter().map(|kind| kind.name().to_string()).collect();
        let faults = if fault_kinds.is_empty() { "none".to_string() } else { fault_kinds.join(",") };
        Report {
            seed: scenario.seed,
            nodes: scenario.nodes,
            clients: scenario.clients,
            rerun_command: format!(
                "raftkv chaos --seed {} --nodes {} --clients {} --duration-seconds {} --faults {faults}",
                scenario.seed,
                scenario.nodes,
                scenario.clients,
                scenario.duration.as_secs()
            ),
            fault_kinds,
            faults_injected: Vec::new(),
            fault_counts: BTreeMap::new(),
            operations: 0,
            counts: OperationCounts::default(),
            final_reads: 0,
            acknowledged_write_lookups: 0,
            revision: 0,
            applied_index: 0,
            hashes: Vec::new(),
            recovery: None,
            verdict: Verdict::NotChecked,
            failures: Vec::new(),
            history_path: None,
            log_directory: None,
            elapsed: Duration::ZERO,
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The command that re-checks the saved history, if one was saved.
    pub fn replay_command(&self) -> Option<String> {
        self.history_path.as_ref().map(|path| format!("raftkv chaos --replay {}", path.display()))
    }

    /// Whether the checker found a linearizability violation.
    pub fn found_violation(&self) -> bool {
        matches!(self.verdict, Verdict::NotLinearizable(_))
    }
}

/// `duration` as people read it: `850 µs`, `8.7 ms`, `2.35 s`, `3 min 5 s`.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if duration < Duration::from_millis(1) {
        format!("{} µs", duration.as_micros())
    } else if duration < Duration::from_secs(1) {
        format!("{:.1} ms", seconds * 1000.0)
    } else if duration < Duration::from_secs(60) {
        format!("{seconds:.2} s")
    } else {
        format!("{} min {} s", duration.as_secs() / 60, duration.as_secs() % 60)
    }
}

/// The last `count` lines of `text`, after a note of how many were left out.
pub fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= count {
        return text.to_string();
    }
    let kept = &lines[lines.len() - count..];
    format!("[{} lines left out]\n{}", lines.len() - count, kept.join("\n"))
}

impl fmt::Display for Report {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for fault in &self.faults_injected {
            writeln!(formatter, "fault {fault}")?;
        }
        let counts = &self.counts;
        writeln!(
            formatter,
            "operations: reads={} puts={} cas_ok={} cas_failed={} writes_unknown={} reads_failed={} never_sent={} final_reads={}",
            counts.reads_returned,
            counts.puts_acknowledged,
            counts.compare_and_sets_succeeded,
            counts.compare_and_sets_failed,
            counts.writes_unknown,
            counts.reads_failed,
            counts.never_sent,
            self.final_reads
        )?;
        writeln!(
            formatter,
            "cluster: revision={} applied_index={} hashes={:08x?} recovery={} acknowledged_write_lookups={}",
            self.revision,
            self.applied_index,
            self.hashes,
            self.recovery.map_or_else(|| "not measured".to_string(), human_duration),
            self.acknowledged_write_lookups
        )?;
        let verdict = match &self.verdict {
            Verdict::NotChecked => "not checked".to_string(),
            Verdict::Linearizable => "linearizable".to_string(),
            Verdict::NotLinearizable(_) => "NOT LINEARIZABLE".to_string(),
            Verdict::Unknown(reason) => format!("unknown ({reason})"),
        };
        writeln!(formatter, "linearizability: {verdict}")?;
        for failure in &self.failures {
            writeln!(formatter, "FAILED: {failure}")?;
        }
        if !self.passed() {
            writeln!(formatter, "rerun (same seed and schedule, timing differs): {}", self.rerun_command)?;
        }
        if let Some(command) = self.replay_command() {
            writeln!(formatter, "replay the check of the saved history: {command}")?;
        }
        if let Some(directory) = &self.log_directory {
            writeln!(formatter, "member logs and data kept in {}", directory.display())?;
        }
        let faults: Vec<String> = self.fault_counts.iter().map(|(kind, count)| format!("{kind}:{count}")).collect();
        write!(
            formatter,
            "chaos: passed={} seed={} nodes={} clients={} operations={} faults=[{}] violations={} elapsed_ms={}",
            self.passed(),
            self.seed,
            self.nodes,
            self.clients,
            self.operations,
            faults.join(","),
            u8::from(self.found_violation()),
            self.elapsed.as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(human_duration(Duration::from_nanos(8_660_844)), "8.7 ms");
        assert_eq!(human_duration(Duration::from_millis(2350)), "2.35 s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3 min 5 s");
    }
}
