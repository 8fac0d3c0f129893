//! Latency histograms and the run summary (text and JSON).

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Largest latency a histogram tracks exactly; longer ones are recorded as this.
const HIGHEST_TRACKABLE_MICROSECONDS: u64 = 60_000_000;
/// Significant decimal digits the histogram keeps (0.1% relative error).
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies in microseconds, with 0.1% precision from 1 µs to 60 s (an HDR histogram: fixed
/// size, no growth with the number of samples).
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_MICROSECONDS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        LatencyHistogram { histogram }
    }

    /// Records one latency (clamped to 1 µs ..= 60 s).
    pub fn record(&mut self, latency: Duration) {
        let microseconds = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(microseconds.clamp(1, HIGHEST_TRACKABLE_MICROSECONDS));
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.histogram.add(&other.histogram).expect("histograms with equal bounds always merge");
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Percentiles, maximum and mean; all zero when empty.
    pub fn summary(&self) -> LatencySummary {
        if self.histogram.is_empty() {
            return LatencySummary::default();
        }
        let at = |quantile: f64| self.histogram.value_at_quantile(quantile);
        LatencySummary {
            p50_microseconds: at(0.50),
            p90_microseconds: at(0.90),
            p99_microseconds: at(0.99),
            p99_9_microseconds: at(0.999),
            max_microseconds: self.histogram.max(),
            mean_microseconds: self.histogram.mean(),
        }
    }
}

/// Latency percentiles of the successful measured operations, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50_microseconds: u64,
    /// 90th percentile.
    pub p90_microseconds: u64,
    /// 99th percentile.
    pub p99_microseconds: u64,
    /// 99.9th percentile.
    pub p99_9_microseconds: u64,
    /// Slowest operation.
    pub max_microseconds: u64,
    /// Arithmetic mean.
    pub mean_microseconds: f64,
}

/// The result of one load-generator run; `--json` prints it as one JSON object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Workload name (`put`, `range`, ...).
    pub workload: String,
    /// Concurrent clients.
    pub clients: usize,
    /// gRPC connections.
    pub connections: usize,
    /// Endpoints the connections were spread over.
    pub endpoints: Vec<String>,
    /// Successful measured operations.
    pub operations: u64,
    /// Failed measured operations (errors and timeouts).
    pub errors: u64,
    /// Wall time of the measured phase.
    pub elapsed_seconds: f64,
    /// Successful operations per second of the measured phase.
    pub throughput_operations_per_second: f64,
    /// Latency of the successful operations.
    pub latency: LatencySummary,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Summary {
    /// The summary as one line of JSON.
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    /// The human-readable summary (several lines, ending with a newline).
    pub fn to_text(&self) -> String {
        let latency = &self.latency;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "workload: {}  clients: {}  connections: {}  endpoints: {}",
            self.workload,
            self.clients,
            self.connections,
            self.endpoints.join(",")
        );
        let _ = writeln!(
            text,
            "operations: {}  errors: {}  elapsed: {:.3} s  throughput: {:.1} ops/s",
            self.operations, self.errors, self.elapsed_seconds, self.throughput_operations_per_second
        );
        let _ = writeln!(
            text,
            "latency (ms): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.3}",
            milliseconds(latency.p50_microseconds),
            milliseconds(latency.p90_microseconds),
            milliseconds(latency.p99_microseconds),
            milliseconds(latency.p99_9_microseconds),
            milliseconds(latency.max_microseconds),
            latency.mean_microseconds / 1000.0
        );
        if let Some(error) = &self.first_error {
            let _ = writeln!(text, "first error: {error}");
        }
        text
    }
}

/// Formats microseconds as milliseconds with three decimals.
pub fn milliseconds(microseconds: u64) -> String {
    format!("{:.3}", microseconds as f64 / 1000.0)
}

/// Operations per second; zero when no time elapsed.
pub fn throughput(operations: u64, elapsed_seconds: f64) -> f64 {
    if elapsed_seconds > 0.0 {
        operations as f64 / elapsed_seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(latencies_microseconds: impl IntoIterator<Item = u64>) -> LatencyHistogram {
        let mut histogram = LatencyHistogram::new();
        for microseconds in latencies_microseconds {
            histogram.record(Duration::from_micros(microseconds));
        }
        histogram
    }

    fn within_tenth_of_a_percent(actual: u64, expected: u64) -> bool {
        actual.abs_diff(expected) as f64 <= expected as f64 * 0.001 + 1.0
    }

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let summary = histogram_of(1..=10_000).summary();
        assert!(within_tenth_of_a_percent(summary.p50_microseconds, 5_000), "{summary:?}");
        assert!(within_tenth_of_a_percent(summary.p90_microseconds, 9_000), "{summary:?}");
        assert!(within_tenth_of_a_percent(summary.p99_microseconds, 9_900), "{summary:?}");
        assert!(within_tenth_of_a_percent(summary.p99_9_microseconds, 9_990), "{summary:?}");
        assert!(within_tenth_of_a_percent(summary.max_microseconds, 10_000), "{summary:?}");
        assert!((summary.mean_microseconds - 5_000.5).abs() < 10.0, "{summary:?}");
    }

    #[test]
    fn empty_histogram_summarises_to_zero() {
        assert_eq!(LatencyHistogram::new().summary(), LatencySummary::default());
    }

    #[test]
    fn out_of_range_latencies_are_clamped() {
        let mut histogram = LatencyHistogram::new();
        histogram.record(Duration::ZERO);
        histogram.record(Duration::from_secs(3600));
        assert_eq!(histogram.count(), 2);
        let summary = histogram.summary();
        assert!(summary.max_microseconds >= HIGHEST_TRACKABLE_MICROSECONDS);
        assert!(summary.p50_microseconds <= 1);
    }

    #[test]
    fn merging_adds_samples() {
        let mut merged = histogram_of([100, 200]);
        merged.merge(&histogram_of([300_000]));
        assert_eq!(merged.count(), 3);
        assert!(within_tenth_of_a_percent(merged.summary().max_microseconds, 300_000));
    }

    fn sample_summary() -> Summary {
        Summary {
            workload: "put".to_string(),
            clients: 4,
            connections: 2,
            endpoints: vec!["127.0.0.1:2379".to_string()],
            operations: 1000,
            errors: 1,
            elapsed_seconds: 2.0,
            throughput_operations_per_second: throughput(1000, 2.0),
            latency: histogram_of([1500, 2500]).summary(),
            first_error: Some("status: Unavailable".to_string()),
        }
    }

    #[test]
    fn json_summary_has_every_field_with_units() {
        let json = sample_summary().to_json().unwrap();
        assert!(!json.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["workload"], "put");
        assert_eq!(value["operations"], 1000);
        assert_eq!(value["errors"], 1);
        assert_eq!(value["throughput_operations_per_second"], 500.0);
        assert_eq!(value["elapsed_seconds"], 2.0);
        for field in ["p50", "p90", "p99", "p99_9", "max", "mean"] {
            assert!(value["latency"][format!("{field}_microseconds")].is_number(), "{field} missing in {json}");
        }
        assert_eq!(value["first_error"], "status: Unavailable");
    }

    #[test]
    fn text_summary_names_throughput_and_percentiles() {
        let text = sample_summary().to_text();
        assert!(text.contains("throughput: 500.0 ops/s"), "{text}");
        assert!(text.contains("p99.9"), "{text}");
        assert!(text.contains("errors: 1"), "{text}");
        assert!(text.contains("first error: status: Unavailable"), "{text}");
    }

    #[test]
    fn throughput_of_zero_elapsed_is_zero() {
        assert_eq!(throughput(10, 0.0), 0.0);
        assert_eq!(throughput(10, 0.5), 20.0);
    }
}
