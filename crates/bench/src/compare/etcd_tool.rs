//! etcd's own load generator (etcd v3.4.23 `tools/benchmark`): finding it, its command
//! lines, running it, and parsing its text summary.
//!
//! With `--precise` the tool prints, on stdout, a progress bar (redrawn with carriage
//! returns), then a summary (`Summary:` with `Total:`, `Average:`, `Requests/sec:`, ...), a
//! response-time histogram and `Latency distribution:` lines such as `50% in 0.0012 secs.`;
//! failed requests add an `Error distribution:` of `[count]<TAB>message` lines. Its gRPC logs
//! go to stderr. `Requests/sec` counts only the successful requests over the whole run's wall
//! time (connection set-up and the last, less concurrent requests included). Samples captured
//! from etcd v3.4.23's tool are in `testdata/`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Environment variable naming the tool when `--etcd-benchmark` is not given.
pub const ETCD_BENCHMARK_ENV: &str = "RAFTKV_ETCD_BENCHMARK";
/// Where the tool is looked for when neither the flag nor the environment names it: the
/// default output of etcd's build script (`build.sh` with no argument), then `PATH`.
pub const AUTO_DETECT_PATHS: [&str; 1] = ["/tmp/etcd-benchmark/benchmark"];
/// Name looked up in `PATH` when auto-detecting.
pub const PATH_NAME: &str = "etcd-benchmark";
/// Text of the tool's `--help` that identifies it.
const HELP_SIGNATURE: &str = "benchmark tool for etcd3";
/// How to get the tool, for error messages.
pub const BUILD_HINT: &str = "build etcd v3.4.23's tools/benchmark (e.g. `build.sh /work/etcd-benchmark`, \
     which needs only Debian's golang-go and golang-etcd-server-dev) and pass its path";
/// Bytes of the tool's stderr shown when it fails.
const STDERR_TAIL_BYTES: usize = 2000;

/// Finds the tool: `flag` (an error if it is not etcd's tool), else `$RAFTKV_ETCD_BENCHMARK`
/// (likewise), else the first of [`AUTO_DETECT_PATHS`] and `etcd-benchmark` in `PATH` that is
/// etcd's tool. `Ok(None)`: not given and not found.
pub fn locate(flag: Option<&Path>) -> Result<Option<PathBuf>> {
    if let Some(path) = flag {
        verify(path).context("--etcd-benchmark")?;
        return Ok(Some(path.to_path_buf()));
    }
    if let Some(value) = std::env::var_os(ETCD_BENCHMARK_ENV).filter(|value| !value.is_empty()) {
        let path = PathBuf::from(value);
        verify(&path).with_context(|| format!("${ETCD_BENCHMARK_ENV}"))?;
        return Ok(Some(path));
    }
    let in_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|directory| directory.join(PATH_NAME)).collect())
        .unwrap_or_default();
    let mut candidates = AUTO_DETECT_PATHS.iter().map(PathBuf::from).chain(in_path);
    Ok(candidates.find(|path| path.is_file() && verify(path).is_ok()))
}

/// Fails clearly unless `path` is an executable whose `--help` is etcd's benchmark tool's.
pub fn verify(path: &Path) -> Result<()> {
    if !path.is_file() {
        bail!("etcd's benchmark tool not found at {}; {BUILD_HINT}", path.display());
    }
    let output = std::process::Command::new(path)
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{} --help`; {BUILD_HINT}", path.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !text.contains(HELP_SIGNATURE) {
        bail!(
            "{} is not etcd's benchmark tool (its --help does not say \"{HELP_SIGNATURE}\"); {BUILD_HINT}",
            path.display()
        );
    }
    Ok(())
}

/// What one run of the tool does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolOperation {
    /// `put`: keys of `key_size_bytes` (the tool varint-encodes a random index below
    /// `key_space` into them), values of `value_size_bytes` random bytes.
    Put {
        /// `--key-size`.
        key_size_bytes: usize,
        /// `--val-size`.
        value_size_bytes: usize,
        /// `--key-space-size`.
        key_space: u64,
    },
    /// `range KEY --consistency=l`: the same single key every time, linearizable.
    RangeLinearizable {
        /// The key read.
        key: String,
    },
}

/// The tool's command line (without the program): `--endpoints`, `--conns`, `--clients`,
/// `--precise` (full precision in the summary), then the subcommand and `--total`.
pub fn arguments(
    endpoints: &[String],
    connections: usize,
    clients: usize,
    operation: &ToolOperation,
    total: u64,
) -> Vec<String> {
    let mut arguments = vec![
        format!("--endpoints={}", endpoints.join(",")),
        format!("--conns={connections}"),
        format!("--clients={clients}"),
        "--precise".to_string(),
    ];
    match operation {
        ToolOperation::Put { key_size_bytes, value_size_bytes, key_space } => arguments.extend([
            "put".to_string(),
            format!("--key-size={key_size_bytes}"),
            format!("--val-size={value_size_bytes}"),
            format!("--key-space-size={key_space}"),
        ]),
        ToolOperation::RangeLinearizable { key } => {
            arguments.extend(["range".to_string(), key.clone(), "--consistency=l".to_string()])
        }
    }
    arguments.push(format!("--total={total}"));
    arguments
}

/// The figures of one run of the tool, as it printed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolReport {
    /// `Requests/sec`: successful requests over the run's wall time (0 when none succeeded).
    pub requests_per_second: f64,
    /// `Total`: the run's wall time, when printed.
    pub total_seconds: Option<f64>,
    /// `Average` latency, when printed.
    pub average_seconds: Option<f64>,
    /// The latency distribution: (percent, seconds), e.g. (99.0, 0.0289).
    pub percentiles: Vec<(f64, f64)>,
    /// Failed requests (the sum of the error distribution).
    pub errors: u64,
    /// The distinct error messages.
    pub error_messages: Vec<String>,
}

impl ToolReport {
    /// The latency at `percent` (e.g. 50.0), when the tool printed it.
    pub fn percentile_seconds(&self, percent: f64) -> Option<f64> {
        self.percentiles.iter().find(|(printed, _)| (printed - percent).abs() < 1e-9).map(|&(_, seconds)| seconds)
    }

    /// Successful requests, from the rate and the wall time (rounded), when both were printed.
    pub fn successful_requests(&self) -> Option<u64> {
        self.total_seconds.map(|total| (self.requests_per_second * total).round() as u64)
    }
}

/// Which section of the summary a line is in.
#[derive(Clone, Copy, PartialEq)]
enum Section {
    Other,
    Latency,
    Errors,
}

/// Parses the tool's stdout. Fails when it holds neither a summary nor an error distribution.
pub fn parse_output(text: &str) -> Result<ToolReport> {
    let mut report = ToolReport::default();
    let mut saw_rate = false;
    let mut section = Section::Other;
    // The progress bar redraws itself with carriage returns: keep what follows the last one.
    for raw_line in text.lines() {
        let line = raw_line.rsplit('\r').next().unwrap_or(raw_line).trim();
        if line.is_empty() {
            continue;
        }
        match line {
            "Latency distribution:" => section = Section::Latency,
            "Error distribution:" => section = Section::Errors,
            "Summary:" | "Response time histogram:" => section = Section::Other,
            _ => {}
        }
        if let Some(value) = field(line, "Requests/sec:") {
            report.requests_per_second = parse_number(value, line)?;
            saw_rate = true;
        } else if let Some(value) = field(line, "Total:") {
            report.total_seconds = Some(parse_seconds(value, line)?);
        } else if let Some(value) = field(line, "Average:") {
            report.average_seconds = Some(parse_seconds(value, line)?);
        } else if section == Section::Latency {
            if let Some((percent, value)) = line.split_once("% in ") {
                report.percentiles.push((parse_number(percent, line)?, parse_seconds(value, line)?));
            }
        } else if section == Section::Errors {
            if let Some((count, message)) = line.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
                report.errors += count.trim().parse::<u64>().with_context(|| format!("error count in {line:?}"))?;
                report.error_messages.push(message.trim().to_string());
            }
        }
    }
    if !saw_rate && report.errors == 0 {
        let tail: String = text.chars().rev().take(STDERR_TAIL_BYTES).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("no Requests/sec and no error distribution in the output of etcd's benchmark tool:\n{tail}");
    }
    Ok(report)
}

/// The value after `name` when `line` starts with it.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.strip_prefix(name).map(str::trim)
}

fn parse_number(text: &str, line: &str) -> Result<f64> {
    let number: f64 = text.trim().parse().with_context(|| format!("a number in {line:?}"))?;
    if !number.is_finite() || number < 0.0 {
        bail!("a non-negative number in {line:?}");
    }
    Ok(number)
}

/// `0.0012 secs.` → 0.0012.
fn parse_seconds(text: &str, line: &str) -> Result<f64> {
    let number = text.trim().trim_end_matches('.').trim_end_matches("secs").trim_end_matches("sec").trim();
    parse_number(number, line)
}

/// Runs the tool with `arguments` and parses its summary; kills it when dropped (Ctrl-C)
/// or after `timeout` (the tool waits forever for an endpoint that does not answer). Fails,
/// with its stderr's tail, when it exits unsuccessfully.
pub async fn run(program: &Path, arguments: &[String], timeout: Duration) -> Result<ToolReport> {
    let child = tokio::process::Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let command_line = format!("{} {}", program.display(), arguments.join(" "));
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("`{command_line}` still running after {timeout:?}; killed"))?
        .with_context(|| format!("waiting for `{command_line}`"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
        let start = (start..stderr.len()).find(|&index| stderr.is_char_boundary(index)).unwrap_or(stderr.len());
        bail!("`{command_line}` failed ({}); stdout:\n{stdout}\nstderr ends:\n{}", output.status, &stderr[start..]);
    }
    parse_output(&stdout).with_context(|| format!("parsing the output of `{command_line}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured stdout of `benchmark --conns=2 --clients=8 --precise put --key-size=8
    /// --val-size=256 --total=500` against a one-node etcd 3.4 (progress bar included).
    const PUT_SAMPLE: &str = include_str!("testdata/etcd-benchmark-put.txt");
    /// Captured stdout of `benchmark --conns=2 --clients=8 --precise range foo --consistency=l --total=500`.
    const RANGE_SAMPLE: &str = include_str!("testdata/etcd-benchmark-range.txt");

    #[test]
    fn parses_a_captured_put_summary() {
        let report = parse_output(PUT_SAMPLE).unwrap();
        assert_eq!(report.requests_per_second, 4934.508609592456);
        assert_eq!(report.total_seconds, Some(0.101327212));
        assert_eq!(report.average_seconds, Some(0.0016077799740000012));
        assert_eq!(report.percentiles.len(), 7);
        assert_eq!(report.percentile_seconds(50.0), Some(0.001278874));
        assert_eq!(report.percentile_seconds(99.0), Some(0.006272804));
        assert_eq!(report.percentile_seconds(99.9), None);
        assert_eq!(report.successful_requests(), Some(500));
        assert_eq!(report.errors, 0);
    }

    #[test]
    fn parses_a_captured_range_summary() {
        let report = parse_output(RANGE_SAMPLE).unwrap();
        assert_eq!(report.requests_per_second, 6467.013825453771);
        assert_eq!(report.percentile_seconds(10.0), Some(0.000237177));
        assert_eq!(report.percentile_seconds(50.0), Some(0.000526878));
        assert_eq!(report.successful_requests(), Some(500));
    }

    #[test]
    fn parses_the_default_precision_and_errors() {
        let text = "bench with linearizable range\n\nSummary:\n  Total:\t1.0000 secs.\n  \
                    Requests/sec:\t1234.5000\n\nLatency distribution:\n  50% in 0.0021 secs.\n  99% in 0.0098 secs.\n\n\
                    Error distribution:\n  [3]\trpc error: code = Unavailable desc = transport is closing\n  \
                    [1]\tcontext deadline exceeded\n";
        let report = parse_output(text).unwrap();
        assert_eq!(report.requests_per_second, 1234.5);
        assert_eq!(report.percentile_seconds(50.0), Some(0.0021));
        assert_eq!(report.errors, 4);
        assert_eq!(report.error_messages.len(), 2);
    }

    #[test]
    fn only_errors_is_a_report_with_no_rate() {
        let report = parse_output("\nError distribution:\n  [10]\tetcdserver: request timed out\n").unwrap();
        assert_eq!((report.requests_per_second, report.errors), (0.0, 10));
        assert!(report.percentiles.is_empty());
    }

    #[test]
    fn output_without_a_summary_is_an_error() {
        let error = parse_output("dial error: context deadline exceeded\n").unwrap_err();
        assert!(format!("{error:#}").contains("no Requests/sec"), "{error:#}");
        assert!(parse_output("Summary:\n  Requests/sec:\tmany\n").is_err());
    }

    #[test]
    fn command_lines() {
        let endpoints = ["127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()];
        let put = ToolOperation::Put { key_size_bytes: 8, value_size_bytes: 256, key_space: 100_000 };
        assert_eq!(
            arguments(&endpoints, 8, 64, &put, 30_000).join(" "),
            "--endpoints=127.0.0.1:1,127.0.0.1:2 --conns=8 --clients=64 --precise \
             put --key-size=8 --val-size=256 --key-space-size=100000 --total=30000"
        );
        let range = ToolOperation::RangeLinearizable { key: "00000000".to_string() };
        assert_eq!(
            arguments(&endpoints[..1], 8, 64, &range, 5).join(" "),
            "--endpoints=127.0.0.1:1 --conns=8 --clients=64 --precise range 00000000 --consistency=l --total=5"
        );
    }

    #[test]
    fn a_wrong_tool_path_is_a_clear_error() {
        let missing = Path::new("/nonexistent/etcd-benchmark");
        let error = format!("{:#}", locate(Some(missing)).unwrap_err());
        assert!(error.contains("--etcd-benchmark"), "{error}");
        assert!(error.contains("not found at /nonexistent/etcd-benchmark"), "{error}");
        assert!(error.contains("build.sh"), "{error}");
        // An executable that is not etcd's tool.
        let error = format!("{:#}", verify(Path::new("/bin/true")).unwrap_err());
        assert!(error.contains("is not etcd's benchmark tool"), "{error}");
    }
}
