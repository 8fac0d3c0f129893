//! The rows `raftkv bench compare` also measures with etcd's own benchmark tool: what each
//! runs, the figures of every round, their medians, and the printed table.

use std::collections::BTreeMap;

use serde::Serialize;

use super::etcd_tool::{ToolOperation, ToolReport};
use super::report::align;
use super::{RowNode, System};

/// Requests of each row in `--quick` mode.
pub const QUICK_TOTAL_REQUESTS: u64 = 300;
/// Microseconds per second.
const MICROSECONDS_PER_SECOND: f64 = 1_000_000.0;

/// What the requests of a row do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolWorkload {
    /// `put`: random keys among the key space, `--value-size` bytes each.
    Put,
    /// `range KEY --consistency=l`: one preloaded key, linearizable.
    RangeLinearizable,
}

/// One row measured with etcd's tool.
#[derive(Debug, Clone, Copy)]
pub struct ToolRow {
    /// What each request does.
    pub workload: ToolWorkload,
    /// `--clients`: concurrent requests.
    pub clients: usize,
    /// `--conns`: gRPC connections.
    pub connections: usize,
    /// Where the connections go (the leader, or spread over the nodes as `--target` says).
    pub node: RowNode,
    /// `--total`: requests per round (with `--etcd-benchmark-scale` 1).
    pub total_requests: u64,
    /// Index, in [`super::TABLE_WORKLOADS`], of the `raftkv bench` row with the same load.
    pub load_generator_row: usize,
}

impl ToolRow {
    /// Row label, e.g. `put, 64 clients (8 conns)`.
    pub fn label(&self) -> String {
        let name = match self.workload {
            ToolWorkload::Put => "put",
            ToolWorkload::RangeLinearizable => "range linearizable",
        };
        let plural = if self.clients == 1 { "" } else { "s" };
        let node = if self.node == RowNode::Leader { " to the leader" } else { "" };
        let connection_plural = if self.connections == 1 { "" } else { "s" };
        format!("{name}, {} client{plural}{node} ({} conn{connection_plural})", self.clients, self.connections)
    }

    /// The tool's subcommand for this row; a range reads `read_key` (preloaded by an earlier row).
    pub fn operation(
        &self,
        key_size_bytes: usize,
        value_size_bytes: usize,
        key_space: u64,
        read_key: &str,
    ) -> ToolOperation {
        match self.workload {
            ToolWorkload::Put => ToolOperation::Put { key_size_bytes, value_size_bytes, key_space },
            ToolWorkload::RangeLinearizable => ToolOperation::RangeLinearizable { key: read_key.to_string() },
        }
    }

    /// Requests of one round: `total_requests` scaled, at least one per client; a fixed
    /// few hundred in `--quick` mode.
    pub fn total_for(&self, scale: f64, quick: bool) -> u64 {
        if quick {
            return QUICK_TOTAL_REQUESTS;
        }
        ((self.total_requests as f64 * scale).round() as u64).max(self.clients as u64)
    }
}

/// The rows, in the order they run on each cluster (after the `raftkv bench` rows).
pub const TOOL_ROWS: [ToolRow; 4] = [
    ToolRow {
        workload: ToolWorkload::Put,
        clients: 1,
        connections: 1,
        node: RowNode::Leader,
        total_requests: 3_000,
        load_generator_row: 0,
    },
    ToolRow {
        workload: ToolWorkload::Put,
        clients: 64,
        connections: 8,
        node: RowNode::Target,
        total_requests: 30_000,
        load_generator_row: 2,
    },
    ToolRow {
        workload: ToolWorkload::RangeLinearizable,
        clients: 64,
        connections: 8,
        node: RowNode::Target,
        total_requests: 30_000,
        load_generator_row: 3,
    },
    ToolRow {
        workload: ToolWorkload::Put,
        clients: 2000,
        connections: 200,
        node: RowNode::Target,
        total_requests: 40_000,
        load_generator_row: 5,
    },
];

/// One round of one row on one system.
#[derive(Debug, Clone)]
pub struct ToolRun {
    /// What the tool printed.
    pub report: ToolReport,
    /// Server CPU time (all nodes) while the tool ran.
    pub cpu_seconds: f64,
}

/// Every round's run, per (row, system).
#[derive(Debug, Default)]
pub struct ToolResults {
    /// Runs in round order.
    pub runs: BTreeMap<(usize, System), Vec<ToolRun>>,
}

impl ToolResults {
    /// Adds one round of row `row` on `system`.
    pub fn record(&mut self, row: usize, system: System, run: ToolRun) {
        self.runs.entry((row, system)).or_default().push(run);
    }
}

/// One system's figures for one row: medians over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct ToolFigures {
    /// `etcd` or `raftkv`.
    pub system: String,
    /// Rounds measured.
    pub rounds: usize,
    /// Median over the rounds of the tool's `Requests/sec`.
    pub requests_per_second: f64,
    /// Median over the rounds of the tool's 50 % latency.
    pub p50_microseconds: u64,
    /// Median over the rounds of the tool's 99 % latency.
    pub p99_microseconds: u64,
    /// Failed requests, all rounds together.
    pub errors: u64,
    /// Median over the rounds of server CPU seconds (3 nodes) per 1,000 successful requests.
    pub cpu_seconds_per_thousand_requests: f64,
}

/// One row of the etcd-tool table.
#[derive(Debug, Clone, Serialize)]
pub struct ToolTableRow {
    /// Row label.
    pub workload: String,
    /// Figures per system, in the order the systems ran.
    pub systems: Vec<ToolFigures>,
    /// raftkv's median requests/s divided by etcd's, when both ran.
    pub throughput_ratio_raftkv_to_etcd: Option<f64>,
    /// The same ratio measured by `raftkv bench` on the row with the same load.
    pub load_generator_throughput_ratio_raftkv_to_etcd: Option<f64>,
}

/// The median (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        length if length % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

fn figures(system: System, runs: &[ToolRun]) -> ToolFigures {
    let median_of =
        |value: &dyn Fn(&ToolRun) -> f64| median(&runs.iter().map(value).collect::<Vec<_>>()).unwrap_or(0.0);
    let percentile_microseconds = |percent: f64| {
        let seconds = median_of(&|run| run.report.percentile_seconds(percent).unwrap_or(0.0));
        (seconds * MICROSECONDS_PER_SECOND).round() as u64
    };
    ToolFigures {
        system: system.name().to_string(),
        rounds: runs.len(),
        requests_per_second: median_of(&|run| run.report.requests_per_second),
        p50_microseconds: percentile_microseconds(50.0),
        p99_microseconds: percentile_microseconds(99.0),
        errors: runs.iter().map(|run| run.report.errors).sum(),
        cpu_seconds_per_thousand_requests: median_of(&|run| {
            let requests = run.report.successful_requests().unwrap_or(0).max(1) as f64;
            run.cpu_seconds / requests * 1000.0
        }),
    }
}

/// Builds the table rows; `load_generator_ratios[i]` is `raftkv bench`'s ratio on table row i.
pub fn table_rows(
    results: &ToolResults,
    systems: &[System],
    load_generator_ratios: &[Option<f64>],
) -> Vec<ToolTableRow> {
    TOOL_ROWS
        .iter()
        .enumerate()
        .map(|(row, tool_row)| {
            let figures: Vec<ToolFigures> = systems
                .iter()
                .filter_map(|&system| results.runs.get(&(row, system)).map(|runs| figures(system, runs)))
                .collect();
            let rate_of = |wanted: System| {
                figures
                    .iter()
                    .find(|figures| figures.system == wanted.name())
                    .map(|figures| figures.requests_per_second)
            };
            let ratio = match (rate_of(System::Raftkv), rate_of(System::Etcd)) {
                (Some(raftkv), Some(etcd)) if etcd > 0.0 => Some(raftkv / etcd),
                _ => None,
            };
            ToolTableRow {
                workload: tool_row.label(),
                systems: figures,
                throughput_ratio_raftkv_to_etcd: ratio,
                load_generator_throughput_ratio_raftkv_to_etcd: load_generator_ratios
                    .get(tool_row.load_generator_row)
                    .copied()
                    .flatten(),
            }
        })
        .collect()
}

/// The table as text, headed by what it is.
pub fn render(rows: &[ToolTableRow], systems: &[System]) -> String {
    let mut header = vec!["workload (etcd's benchmark tool)".to_string()];
    header.extend(systems.iter().map(|system| format!("{} req/s", system.name())));
    let both = systems.contains(&System::Etcd) && systems.contains(&System::Raftkv);
    if both {
        header.extend(["raftkv/etcd".to_string(), "raftkv bench's raftkv/etcd".to_string()]);
    }
    header.extend(systems.iter().map(|system| format!("{} p50/p99 ms", system.name())));
    header.extend(systems.iter().map(|system| format!("{} cpu-s/1k req", system.name())));
    let mut table = vec![header];
    table.extend(rows.iter().map(|row| render_row(row, systems, both)));
    let mut text = align(&table);
    for row in rows {
        for figures in row.systems.iter().filter(|figures| figures.errors > 0) {
            text.push_str(&format!("errors (etcd's tool): {} {}: {}\n", figures.system, row.workload, figures.errors));
        }
    }
    text
}

fn render_row(row: &ToolTableRow, systems: &[System], both: bool) -> Vec<String> {
    let find = |system: &System| row.systems.iter().find(|figures| figures.system == system.name());
    let missing = || "-".to_string();
    let ratio = |value: Option<f64>| value.map_or_else(missing, |ratio| format!("{ratio:.2}"));
    let mut cells = vec![row.workload.clone()];
    cells.extend(
        systems
            .iter()
            .map(|system| find(system).map_or_else(missing, |figures| format!("{:.0}", figures.requests_per_second))),
    );
    if both {
        cells.push(ratio(row.throughput_ratio_raftkv_to_etcd));
        cells.push(ratio(row.load_generator_throughput_ratio_raftkv_to_etcd));
    }
    cells.extend(systems.iter().map(|system| {
        find(system).map_or_else(missing, |figures| {
            let milliseconds = |microseconds: u64| crate::stats::milliseconds(microseconds);
            format!("{} / {}", milliseconds(figures.p50_microseconds), milliseconds(figures.p99_microseconds))
        })
    }));
    cells.extend(systems.iter().map(|system| {
        find(system).map_or_else(missing, |figures| format!("{:.3}", figures.cpu_seconds_per_thousand_requests))
    }));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::TABLE_WORKLOADS;

    fn run(requests_per_second: f64, p50_seconds: f64) -> ToolRun {
        let report = ToolReport {
            requests_per_second,
            total_seconds: Some(2.0),
            percentiles: vec![(50.0, p50_seconds), (99.0, p50_seconds * 4.0)],
            ..ToolReport::default()
        };
        ToolRun { report, cpu_seconds: 1.0 }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
    }

    #[test]
    fn rows_take_medians_and_both_ratios() {
        let mut results = ToolResults::default();
        results.record(1, System::Etcd, run(1000.0, 0.002));
        results.record(1, System::Etcd, run(3000.0, 0.004));
        results.record(1, System::Raftkv, run(4000.0, 0.001));
        let systems = [System::Etcd, System::Raftkv];
        let ratios = vec![None, None, Some(2.5), None, None, None];
        let rows = table_rows(&results, &systems, &ratios);
        let row = &rows[1];
        assert_eq!(row.workload, "put, 64 clients (8 conns)");
        assert_eq!(row.systems[0].requests_per_second, 2000.0);
        assert_eq!(row.systems[0].p50_microseconds, 3000);
        assert_eq!(row.systems[0].p99_microseconds, 12000);
        // 1 CPU second over 2,000 and 6,000 requests: 0.5 and 0.167 per 1,000.
        assert!((row.systems[0].cpu_seconds_per_thousand_requests - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(row.throughput_ratio_raftkv_to_etcd, Some(2.0));
        assert_eq!(row.load_generator_throughput_ratio_raftkv_to_etcd, Some(2.5));
        assert!(rows[0].systems.is_empty());
        let text = render(&rows, &systems);
        assert!(text.contains("raftkv bench's raftkv/etcd"), "{text}");
        assert!(text.contains("3.000 / 12.000"), "{text}");
    }

    #[test]
    fn rows_match_the_load_generator_rows_and_totals_scale() {
        for row in TOOL_ROWS {
            let matching = &TABLE_WORKLOADS[row.load_generator_row];
            assert_eq!(matching.clients, row.clients, "{}", row.label());
        }
        assert_eq!(TOOL_ROWS[3].label(), "put, 2000 clients (200 conns)");
        assert_eq!(TOOL_ROWS[0].label(), "put, 1 client to the leader (1 conn)");
        assert_eq!(TOOL_ROWS[1].total_for(0.5, false), 15_000);
        assert_eq!(TOOL_ROWS[3].total_for(0.001, false), 2000);
        assert_eq!(TOOL_ROWS[3].total_for(1.0, true), QUICK_TOTAL_REQUESTS);
    }
}
