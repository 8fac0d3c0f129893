//! Aggregation of comparison runs and the printed table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::tool_rows::{ToolResults, ToolTableRow};
use super::System;
use crate::stats::{milliseconds, throughput, LatencyHistogram};

/// Bytes per mebibyte.
const MEBIBYTE_BYTES: f64 = 1024.0 * 1024.0;

/// Everything measured for one (workload, system) pair, summed over rounds.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Successful operations.
    pub operations: u64,
    /// Failed operations.
    pub errors: u64,
    /// Measured wall time.
    pub elapsed_seconds: f64,
    /// Server CPU time (all nodes) during the measured phase.
    pub cpu_seconds: f64,
    /// Latencies of the successful operations.
    pub histogram: LatencyHistogram,
}

impl Measurement {
    /// Adds one run's figures.
    pub fn add(&mut self, other: &Measurement) {
        self.operations += other.operations;
        self.errors += other.errors;
        self.elapsed_seconds += other.elapsed_seconds;
        self.cpu_seconds += other.cpu_seconds;
        self.histogram.merge(&other.histogram);
    }
}

/// All results of a comparison.
#[derive(Debug, Default)]
pub struct Results {
    /// Per (workload row, system).
    pub measurements: BTreeMap<(usize, System), Measurement>,
    /// Per system: each node's largest peak resident memory over the rounds, in bytes.
    pub peak_resident_bytes: BTreeMap<System, Vec<u64>>,
    /// The rows measured with etcd's benchmark tool (empty when it was skipped).
    pub tool: ToolResults,
}

impl Results {
    /// Adds one run of workload row `row` on `system`.
    pub fn record(&mut self, row: usize, system: System, measurement: &Measurement) {
        self.measurements.entry((row, system)).or_default().add(measurement);
    }

    /// Keeps, per node, the largest peak resident memory seen.
    pub fn record_peak_resident(&mut self, system: System, per_node_bytes: &[u64]) {
        let peaks = self.peak_resident_bytes.entry(system).or_default();
        peaks.resize(peaks.len().max(per_node_bytes.len()), 0);
        for (peak, &bytes) in peaks.iter_mut().zip(per_node_bytes) {
            *peak = (*peak).max(bytes);
        }
    }
}

/// One system's figures for one workload, as printed and as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SystemFigures {
    /// `etcd` or `raftkv`.
    pub system: String,
    /// Successful operations over all rounds.
    pub operations: u64,
    /// Failed operations over all rounds.
    pub errors: u64,
    /// Operations per second over all rounds.
    pub throughput_operations_per_second: f64,
    /// Median latency.
    pub p50_microseconds: u64,
    /// 99th-percentile latency.
    pub p99_microseconds: u64,
    /// Server CPU seconds (3 nodes) per 1,000 operations.
    pub cpu_seconds_per_thousand_operations: f64,
}

/// One table row.
#[derive(Debug, Clone, Serialize)]
pub struct ComparisonRow {
    /// Workload label.
    pub workload: String,
    /// Figures per system, in the order the systems ran.
    pub systems: Vec<SystemFigures>,
    /// raftkv throughput divided by etcd throughput, when both ran.
    pub throughput_ratio_raftkv_to_etcd: Option<f64>,
}

/// The comparison as JSON: the table rows, etcd's tool's rows and each node's peak memory.
#[derive(Debug, Clone, Serialize)]
pub struct ComparisonReport {
    /// One row per workload.
    pub rows: Vec<ComparisonRow>,
    /// One row per workload measured with etcd's benchmark tool.
    pub etcd_tool_rows: Vec<ToolTableRow>,
    /// Why etcd's benchmark tool did not run, when it did not.
    pub etcd_tool_skipped: Option<String>,
    /// Per system: each node's largest peak resident memory (`VmHWM`) over the rounds, in bytes.
    pub peak_resident_bytes_per_node: BTreeMap<String, Vec<u64>>,
}

impl ComparisonReport {
    /// Pairs the rows with the peak memory of `results`.
    pub fn new(
        rows: Vec<ComparisonRow>,
        etcd_tool_rows: Vec<ToolTableRow>,
        etcd_tool_skipped: Option<String>,
        results: &Results,
    ) -> Self {
        let peak_resident_bytes_per_node = results
            .peak_resident_bytes
            .iter()
            .map(|(system, peaks)| (system.name().to_string(), peaks.clone()))
            .collect();
        ComparisonReport { rows, etcd_tool_rows, etcd_tool_skipped, peak_resident_bytes_per_node }
    }
}

/// Builds the rows for `labels` (row index = label index) and `systems`.
pub fn rows(results: &Results, labels: &[String], systems: &[System]) -> Vec<ComparisonRow> {
    labels
        .iter()
        .enumerate()
        .map(|(row, label)| {
            let figures: Vec<SystemFigures> = systems
                .iter()
                .filter_map(|&system| results.measurements.get(&(row, system)).map(|m| figures(system, m)))
                .collect();
            let throughput_of = |wanted: System| {
                figures.iter().find(|f| f.system == wanted.name()).map(|f| f.throughput_operations_per_second)
            };
            let ratio = match (throughput_of(System::Raftkv), throughput_of(System::Etcd)) {
                (Some(raftkv), Some(etcd)) if etcd > 0.0 => Some(raftkv / etcd),
                _ => None,
            };
            ComparisonRow { workload: label.clone(), systems: figures, throughput_ratio_raftkv_to_etcd: ratio }
        })
        .collect()
}

fn figures(system: System, measurement: &Measurement) -> SystemFigures {
    let latency = measurement.histogram.summary();
    let operations = measurement.operations.max(1) as f64;
    SystemFigures {
        system: system.name().to_string(),
        operations: measurement.operations,
        errors: measurement.errors,
        throughput_operations_per_second: throughput(measurement.operations, measurement.elapsed_seconds),
        p50_microseconds: latency.p50_microseconds,
        p99_microseconds: latency.p99_microseconds,
        cpu_seconds_per_thousand_operations: measurement.cpu_seconds / operations * 1000.0,
    }
}

/// The table as text: a header, one line per workload, then peak memory and errors.
pub fn render(rows: &[ComparisonRow], systems: &[System], results: &Results) -> String {
    let mut header = vec!["workload".to_string()];
    for system in systems {
        header.push(format!("{} ops/s", system.name()));
    }
    let both = systems.contains(&System::Etcd) && systems.contains(&System::Raftkv);
    if both {
        header.push("raftkv/etcd".to_string());
    }
    for system in systems {
        header.push(format!("{} p50/p99 ms", system.name()));
    }
    for system in systems {
        header.push(format!("{} cpu-s/1k ops", system.name()));
    }
    let mut table = vec![header];
    for row in rows {
        table.push(render_row(row, systems, both));
    }
    let mut text = align(&table);
    for (system, peaks) in &results.peak_resident_bytes {
        let per_node: Vec<String> =
            peaks.iter().map(|&bytes| format!("{:.1}", bytes as f64 / MEBIBYTE_BYTES)).collect();
        let _ = writeln!(text, "peak RSS per node, {}: {} MiB", system.name(), per_node.join(" / "));
    }
    for row in rows {
        for figures in row.systems.iter().filter(|figures| figures.errors > 0) {
            let _ = writeln!(text, "errors: {} {}: {}", figures.system, row.workload, figures.errors);
        }
    }
    text
}

fn render_row(row: &ComparisonRow, systems: &[System], both: bool) -> Vec<String> {
    let find = |system: &System| row.systems.iter().find(|figures| figures.system == system.name());
    let missing = || "-".to_string();
    let mut cells = vec![row.workload.clone()];
    for system in systems {
        cells.push(find(system).map_or_else(missing, |f| format!("{:.0}", f.throughput_operations_per_second)));
    }
    if both {
        cells.push(row.throughput_ratio_raftkv_to_etcd.map_or_else(missing, |ratio| format!("{ratio:.2}")));
    }
    for system in systems {
        cells.push(find(system).map_or_else(missing, |f| {
            format!("{} / {}", milliseconds(f.p50_microseconds), milliseconds(f.p99_microseconds))
        }));
    }
    for system in systems {
        cells.push(find(system).map_or_else(missing, |f| format!("{:.3}", f.cpu_seconds_per_thousand_operations)));
    }
    cells
}

/// Pads columns: the first left-aligned, the rest right-aligned, two spaces apart.
pub(super) fn align(table: &[Vec<String>]) -> String {
    let columns = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            table.iter().filter_map(|row| row.get(column)).map(|cell| cell.chars().count()).max().unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                if column == 0 {
                    format!("{cell:<width$}", width = widths[column])
                } else {
                    format!("{cell:>width$}", width = widths[column])
                }
            })
            .collect();
        let _ = writeln!(text, "{}", cells.join("  ").trim_end());
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn measurement(operations: u64, elapsed_seconds: f64, latency_microseconds: u64) -> Measurement {
        let mut histogram = LatencyHistogram::new();
        for _ in 0..operations {
            histogram.record(Duration::from_micros(latency_microseconds));
        }
        Measurement { operations, errors: 0, elapsed_seconds, cpu_seconds: 0.5, histogram }
    }

    #[test]
    fn rows_sum_rounds_and_compute_the_ratio() {
        let mut results = Results::default();
        results.record(0, System::Etcd, &measurement(1000, 1.0, 1000));
        results.record(0, System::Etcd, &measurement(1000, 1.0, 1000));
        results.record(0, System::Raftkv, &measurement(3000, 1.0, 500));
        results.record_peak_resident(System::Etcd, &[10 * 1024 * 1024, 20 * 1024 * 1024]);
        results.record_peak_resident(System::Etcd, &[15 * 1024 * 1024, 5 * 1024 * 1024]);
        let systems = [System::Etcd, System::Raftkv];
        let rows = rows(&results, &["put, 1 client".to_string()], &systems);
        assert_eq!(rows[0].systems[0].throughput_operations_per_second, 1000.0);
        assert_eq!(rows[0].systems[0].cpu_seconds_per_thousand_operations, 0.5);
        assert_eq!(rows[0].throughput_ratio_raftkv_to_etcd, Some(3.0));
        let text = render(&rows, &systems, &results);
        assert!(text.contains("raftkv/etcd"), "{text}");
        assert!(text.contains("3.00"), "{text}");
        assert!(text.contains("peak RSS per node, etcd: 15.0 / 20.0 MiB"), "{text}");
        let json = serde_json::to_value(ComparisonReport::new(rows, Vec::new(), None, &results)).unwrap();
        assert_eq!(json["rows"][0]["throughput_ratio_raftkv_to_etcd"], 3.0);
        assert_eq!(json["peak_resident_bytes_per_node"]["etcd"][1], 20 * 1024 * 1024);
    }

    #[test]
    fn a_single_system_has_no_ratio_column() {
        let mut results = Results::default();
        results.record(0, System::Etcd, &measurement(10, 1.0, 100));
        let rows = rows(&results, &["put".to_string()], &[System::Etcd]);
        assert_eq!(rows[0].throughput_ratio_raftkv_to_etcd, None);
        let text = render(&rows, &[System::Etcd], &results);
        assert!(!text.contains("raftkv"), "{text}");
    }
}
