//! Auto-compaction of the key-value history (etcd's `--auto-compaction-mode` and
//! `--auto-compaction-retention`), with etcd 3.4's semantics:
//!
//! - the retention is parsed as etcd parses it: a plain non-negative integer is hours in
//!   `periodic` mode and revisions in `revision` mode; anything else must be a Go duration
//!   (`"30m"`, `"1h30m"`, `"2.5s"`), which in `revision` mode counts its nanoseconds as
//!   revisions (etcd does the same). `"0"` (the default) disables auto-compaction;
//! - `periodic`: the current revision is sampled every tenth of the retention (of an hour
//!   when the retention is longer than an hour). After the first full retention the
//!   revision sampled `retention` ago is compacted, and from then on every retention (at
//!   most every hour) the oldest revision still in the sliding window of samples is;
//! - `revision`: every 5 minutes, the history is compacted to `current revision −
//!   retention` (when that is positive and changed since the last compaction);
//! - only the leader compacts (a follower keeps sampling, as etcd's paused compactor
//!   does), and a compaction is a `Compact` request replicated through the log exactly
//!   like a client's (`NodeHandle::write`). A compaction refused because the revision is
//!   already compacted counts as done; any other failure is logged and retried at the
//!   next sample.
//!
//! `--experimental-compaction-batch-limit` bounds how many keys etcd deletes from its
//! bolt database per transaction while compacting; raftkv's history is in memory and
//! compacted in one step, so the flag is accepted and has no effect.
//!
//! The decisions are made by [`PeriodicCompactor`] and [`RevisionCompactor`], which take
//! the time as an argument (tested without waiting); [`spawn`] drives them on tokio's
//! clock.

use std::sync::Arc;
use std::time::Duration;

use crate::handle::{NodeHandle, ServerError};
use crate::metrics::Metrics;

/// How often `revision` mode checks (etcd: 5 minutes).
pub const REVISION_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// TEST ONLY: overrides [`REVISION_CHECK_INTERVAL`] (milliseconds), so a process test need
/// not wait 5 minutes. Not an etcd setting.
pub const REVISION_CHECK_INTERVAL_ENV: &str = "RAFTKV_UNSAFE_REVISION_COMPACTION_INTERVAL_MS";

/// Divides the compaction period into sampling intervals (etcd's `retryDivisor`).
const SAMPLES_PER_PERIOD: u32 = 10;

/// What `--auto-compaction-mode` / `--auto-compaction-retention` ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoCompaction {
    /// Retention `"0"`: never compact automatically.
    Disabled,
    /// Keep this much time of history.
    Periodic(Duration),
    /// Keep this many revisions of history.
    Revision(i64),
}

impl AutoCompaction {
    /// Parses the two flags as etcd 3.4 does; errors name the flag.
    pub fn from_flags(mode: &str, retention: &str) -> Result<AutoCompaction, String> {
        let retention = retention.trim();
        if mode != "periodic" && mode != "revision" {
            return Err(format!("--auto-compaction-mode: unknown mode '{mode}' (expected 'periodic' or 'revision')"));
        }
        let hours_or_revisions = retention.parse::<u64>().ok();
        let nanoseconds: u128 = match hours_or_revisions {
            Some(count) if mode == "revision" => u128::from(count),
            Some(hours) => u128::from(hours) * 3_600_000_000_000,
            None => {
                let duration = parse_go_duration(retention)
                    .map_err(|error| format!("--auto-compaction-retention: '{retention}': {error}"))?;
                if duration.negative {
                    return Err(format!("--auto-compaction-retention: '{retention}' is negative"));
                }
                duration.nanoseconds
            }
        };
        if nanoseconds == 0 {
            return Ok(AutoCompaction::Disabled);
        }
        if mode == "revision" {
            let revisions = i64::try_from(nanoseconds)
                .map_err(|_| format!("--auto-compaction-retention: '{retention}' is too large"))?;
            return Ok(AutoCompaction::Revision(revisions));
        }
        let nanoseconds = u64::try_from(nanoseconds)
            .map_err(|_| format!("--auto-compaction-retention: '{retention}' is too long"))?;
        Ok(AutoCompaction::Periodic(Duration::from_nanos(nanoseconds)))
    }
}

/// A Go duration's value (`time.ParseDuration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoDuration {
    /// True for a leading `-`.
    pub negative: bool,
    /// Absolute value.
    pub nanoseconds: u128,
}

/// Parses a duration as Go's `time.ParseDuration` does: an optional sign, then one or
/// more decimal numbers (with an optional fraction) each followed by a unit among `ns`,
/// `us` (or `µs`), `ms`, `s`, `m`, `h`; `"0"` alone needs no unit.
pub fn parse_go_duration(text: &str) -> Result<GoDuration, String> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(GoDuration { negative, nanoseconds: 0 });
    }
    if rest.is_empty() {
        return Err("invalid duration (expected e.g. 30m, 1h30m, 2.5s)".into());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_length = rest.find(|character: char| !character.is_ascii_digit() && character != '.');
        let number_length = number_length.ok_or("missing unit in duration (ns, us, ms, s, m or h)")?;
        let (number, after) = rest.split_at(number_length);
        let unit_length = after.find(|character: char| character.is_ascii_digit() || character == '.');
        let (unit, next) = after.split_at(unit_length.unwrap_or(after.len()));
        let unit_nanoseconds: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("unknown unit '{unit}' in duration (ns, us, ms, s, m or h)")),
        };
        total = total.saturating_add(scaled(number, unit_nanoseconds)?);
        rest = next;
    }
    if total > u128::from(i64::MAX as u64) {
        return Err("duration out of range".into());
    }
    Ok(GoDuration { negative, nanoseconds: total })
}

/// `number` (digits with an optional fraction) times `unit_nanoseconds`, truncated.
fn scaled(number: &str, unit_nanoseconds: u128) -> Result<u128, String> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(format!("invalid number '{number}' in duration"));
    }
    let whole_value: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| "duration out of range")? };
    let mut value = whole_value.saturating_mul(unit_nanoseconds);
    let mut scale = unit_nanoseconds;
    for digit in fraction.bytes().take(30) {
        scale /= 10;
        value = value.saturating_add(u128::from(digit - b'0') * scale);
    }
    Ok(value)
}

/// `periodic` mode's decisions (etcd's `Periodic` compactor), driven by [`Self::tick`].
#[derive(Clone, Debug)]
pub struct PeriodicCompactor {
    retention: Duration,
    samples: std::collections::VecDeque<i64>,
    last_success: Duration,
    waited_first_period: bool,
}

impl PeriodicCompactor {
    /// A compactor keeping `retention` of history, started at time `now` (any monotonic
    /// origin) having sampled `revision`.
    pub fn new(retention: Duration, now: Duration, revision: i64) -> PeriodicCompactor {
        assert!(!retention.is_zero(), "a disabled compactor is never created");
        let mut compactor = PeriodicCompactor {
            retention,
            samples: std::collections::VecDeque::new(),
            last_success: now,
            waited_first_period: false,
        };
        compactor.sample(revision);
        compactor
    }

    /// Time between samples: a tenth of the retention, or of an hour when longer.
    pub fn sample_interval(&self) -> Duration {
        (self.retention.min(Duration::from_secs(3600)) / SAMPLES_PER_PERIOD).max(Duration::from_millis(1))
    }

    /// Time between compactions once the first retention has passed (at most an hour).
    pub fn compact_interval(&self) -> Duration {
        self.retention.min(Duration::from_secs(3600))
    }

    /// Samples kept: the window covering one retention.
    fn samples_max(&self) -> usize {
        let interval = self.sample_interval().as_nanos().max(1);
        (self.retention.as_nanos() / interval) as usize + 1
    }

    fn sample(&mut self, revision: i64) {
        self.samples.push_back(revision);
        while self.samples.len() > self.samples_max() {
            self.samples.pop_front();
        }
    }

    /// Called one [`Self::sample_interval`] after the previous call (or [`Self::new`]):
    /// the revision to compact to now, if any. `leading` is false on a follower, which
    /// does not compact. Report the outcome with [`Self::compacted`].
    pub fn tick(&mut self, now: Duration, leading: bool) -> Option<i64> {
        if !leading {
            return None;
        }
        let wait = if self.waited_first_period { self.compact_interval() } else { self.retention };
        if now.saturating_sub(self.last_success) < wait {
            return None;
        }
        self.waited_first_period = true;
        self.samples.front().copied()
    }

    /// Records the outcome of the compaction [`Self::tick`] asked for at `now`.
    pub fn compacted(&mut self, now: Duration, succeeded: bool) {
        if succeeded {
            self.last_success = now;
        }
    }

    /// Samples the current `revision` (after each tick).
    pub fn record(&mut self, revision: i64) {
        self.sample(revision);
    }
}

/// `revision` mode's decisions (etcd's `Revision` compactor), one call per check interval.
#[derive(Clone, Debug)]
pub struct RevisionCompactor {
    retention: i64,
    previous: i64,
}

impl RevisionCompactor {
    /// A compactor keeping `retention` revisions.
    pub fn new(retention: i64) -> RevisionCompactor {
        assert!(retention > 0, "a disabled compactor is never created");
        RevisionCompactor { retention, previous: 0 }
    }

    /// The revision to compact to at a check with the store at `current_revision`.
    pub fn check(&self, current_revision: i64, leading: bool) -> Option<i64> {
        let target = current_revision.saturating_sub(self.retention);
        (leading && target > 0 && target != self.previous).then_some(target)
    }

    /// Records a successful compaction to `revision`.
    pub fn compacted(&mut self, revision: i64) {
        self.previous = revision;
    }
}

/// Compacts through the log as a client's `Compact` would; true when done (or already
/// compacted further).
async fn compact(handle: &NodeHandle, revision: i64, mode: &str) -> bool {
    let request = proto::etcdserverpb::CompactionRequest { revision, physical: false };
    let command = kv::Command::new(kv::Operation::Compaction(request));
    let started = std::time::Instant::now();
    match handle.write(command).await {
        Ok(_) => {
            let took_ms = started.elapsed().as_millis() as u64;
            tracing::info!(revision, mode, took_ms, "completed auto compaction");
            true
        }
        Err(ServerError::Kv(kv::Error::Compacted)) => true,
        Err(error) => {
            tracing::warn!(revision, mode, %error, "failed auto compaction; will retry");
            false
        }
    }
}

fn leading(handle: &NodeHandle) -> bool {
    let status = handle.status();
    status.leader != 0 && status.leader == status.member_id
}

async fn current_revision(handle: &NodeHandle) -> i64 {
    handle.read_view().current_revision()
}

/// Keeps `raftkv_mvcc_key_versions` (versions kept in the history) up to date.
fn key_versions_gauge(metrics: &Metrics) -> Option<prometheus::IntGauge> {
    let gauge = prometheus::IntGauge::new(
        "mvcc_key_versions",
        "Key versions kept in the store's history (all keys, all revisions not compacted)",
    )
    .ok()?;
    metrics.registry.register(Box::new(gauge.clone())).ok()?;
    Some(gauge)
}

/// Starts auto-compaction for `handle` (and the key-versions gauge) until `stop` turns
/// true. Must run inside a tokio runtime.
pub fn spawn(
    handle: NodeHandle,
    metrics: Arc<Metrics>,
    settings: AutoCompaction,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let gauge = key_versions_gauge(&metrics);
    tokio::spawn(async move {
        let run = async {
            match settings {
                AutoCompaction::Disabled => refresh_forever(&handle, gauge.as_ref()).await,
                AutoCompaction::Periodic(retention) => run_periodic(&handle, retention, gauge.as_ref()).await,
                AutoCompaction::Revision(retention) => run_revision(&handle, retention, gauge.as_ref()).await,
            }
        };
        tokio::select! {
            _ = run => {}
            _ = stop.wait_for(|stopped| *stopped) => {}
        }
    })
}

async fn refresh_gauge(handle: &NodeHandle, gauge: Option<&prometheus::IntGauge>) {
    if let Some(gauge) = gauge {
        gauge.set(handle.read_view().record_count() as i64);
    }
}

async fn refresh_forever(handle: &NodeHandle, gauge: Option<&prometheus::IntGauge>) {
    loop {
        refresh_gauge(handle, gauge).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn run_periodic(handle: &NodeHandle, retention: Duration, gauge: Option<&prometheus::IntGauge>) {
    let origin = tokio::time::Instant::now();
    let mut compactor = PeriodicCompactor::new(retention, Duration::ZERO, current_revision(handle).await);
    tracing::info!(retention = ?retention, sample_interval = ?compactor.sample_interval(), "auto compaction: periodic");
    loop {
        tokio::time::sleep(compactor.sample_interval()).await;
        refresh_gauge(handle, gauge).await;
        if let Some(revision) = compactor.tick(origin.elapsed(), leading(handle)) {
            let succeeded = compact(handle, revision, "periodic").await;
            compactor.compacted(origin.elapsed(), succeeded);
            refresh_gauge(handle, gauge).await;
        }
        compactor.record(current_revision(handle).await);
    }
}

/// The check interval of `revision` mode: etcd's 5 minutes unless a test shortened it.
pub fn revision_check_interval() -> Duration {
    std::env::var(REVISION_CHECK_INTERVAL_ENV)
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
        .filter(|milliseconds| *milliseconds > 0)
        .map_or(REVISION_CHECK_INTERVAL, Duration::from_millis)
}

async fn run_revision(handle: &NodeHandle, retention: i64, gauge: Option<&prometheus::IntGauge>) {
    let interval = revision_check_interval();
    if interval != REVISION_CHECK_INTERVAL {
        tracing::warn!(
            ?interval,
            "TEST ONLY: revision compaction check interval shortened ({REVISION_CHECK_INTERVAL_ENV})"
        );
    }
    tracing::info!(retention, ?interval, "auto compaction: revision");
    let mut compactor = RevisionCompactor::new(retention);
    let mut gauge_refresh = tokio::time::interval(Duration::from_secs(1).min(interval));
    let mut check = tokio::time::interval(interval);
    check.tick().await;
    loop {
        tokio::select! {
            _ = gauge_refresh.tick() => refresh_gauge(handle, gauge).await,
            _ = check.tick() => {
                let Some(revision) = compactor.check(current_revision(handle).await, leading(handle)) else { continue };
                if compact(handle, revision, "revision").await {
                    compactor.compacted(revision);
                }
                refresh_gauge(handle, gauge).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(text: &str) -> u128 {
        parse_go_duration(text).expect(text).nanoseconds
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(nanos("0"), 0);
        assert_eq!(nanos("30m"), 30 * 60 * 1_000_000_000);
        assert_eq!(nanos("1h30m"), 90 * 60 * 1_000_000_000);
        assert_eq!(nanos("2.5s"), 2_500_000_000);
        assert_eq!(nanos(".5h"), 1_800_000_000_000);
        assert_eq!(nanos("100ms"), 100_000_000);
        assert_eq!(nanos("7us"), 7_000);
        assert_eq!(nanos("7µs"), 7_000);
        assert_eq!(nanos("1ns"), 1);
        assert!(parse_go_duration("-1h").expect("negative").negative);
        for bad in ["", "1", "0.5", "h", "1x", "1.2.3s", ".s", "1h 2m", "-"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn parses_retention_as_etcd() {
        let parse = AutoCompaction::from_flags;
        assert_eq!(parse("periodic", "0"), Ok(AutoCompaction::Disabled));
        assert_eq!(parse("revision", "0"), Ok(AutoCompaction::Disabled));
        assert_eq!(parse("periodic", "1"), Ok(AutoCompaction::Periodic(Duration::from_secs(3600))));
        assert_eq!(parse("periodic", "72"), Ok(AutoCompaction::Periodic(Duration::from_secs(72 * 3600))));
        assert_eq!(parse("periodic", "30m"), Ok(AutoCompaction::Periodic(Duration::from_secs(1800))));
        assert_eq!(parse("periodic", "2s"), Ok(AutoCompaction::Periodic(Duration::from_secs(2))));
        assert_eq!(parse("revision", "1000"), Ok(AutoCompaction::Revision(1000)));
        assert_eq!(parse("revision", "1us"), Ok(AutoCompaction::Revision(1000)), "etcd counts nanoseconds");
        let error = parse("periodic", "0.5").expect_err("no unit");
        assert!(error.contains("--auto-compaction-retention") && error.contains("0.5"), "{error}");
        assert!(parse("periodic", "-1h").expect_err("negative").contains("negative"));
        assert!(parse("hourly", "1").expect_err("mode").contains("--auto-compaction-mode"));
    }

    #[test]
    fn periodic_follows_etcd_intervals() {
        let hour = Duration::from_secs(3600);
        let short = PeriodicCompactor::new(Duration::from_secs(600), Duration::ZERO, 1);
        assert_eq!(short.sample_interval(), Duration::from_secs(60));
        assert_eq!(short.compact_interval(), Duration::from_secs(600));
        let long = PeriodicCompactor::new(24 * hour, Duration::ZERO, 1);
        assert_eq!(long.sample_interval(), Duration::from_secs(360));
        assert_eq!(long.compact_interval(), hour);
        assert_eq!(long.samples_max(), 241);
    }

    /// Drives a compactor as [`run_periodic`] does, with revision `10 * step` at step `step`.
    fn drive(compactor: &mut PeriodicCompactor, steps: std::ops::Range<u32>, interval: Duration) -> Vec<(u32, i64)> {
        let mut compactions = Vec::new();
        for step in steps {
            let now = interval * step;
            if let Some(revision) = compactor.tick(now, true) {
                compactions.push((step, revision));
                compactor.compacted(now, true);
            }
            compactor.record(i64::from(step) * 10);
        }
        compactions
    }

    #[test]
    fn periodic_compacts_the_revision_of_one_retention_ago() {
        // Retention 10 s: samples every second; first compaction after 10 s to the
        // revision sampled at 0 s, then every 10 s to the oldest sample of the window
        // (11 samples, the newest taken a second before: etcd's arithmetic).
        let interval = Duration::from_secs(1);
        let mut compactor = PeriodicCompactor::new(Duration::from_secs(10), Duration::ZERO, 0);
        let compactions = drive(&mut compactor, 1..31, interval);
        assert_eq!(compactions, vec![(10, 0), (20, 90), (30, 190)]);
    }

    #[test]
    fn periodic_with_long_retention_compacts_hourly_keeping_the_whole_retention() {
        // Retention 3 h: samples every 6 min; nothing before 3 h, then hourly, each time
        // to the oldest sample of the 3 h window.
        let interval = Duration::from_secs(360);
        let mut compactor = PeriodicCompactor::new(Duration::from_secs(3 * 3600), Duration::ZERO, 0);
        let compactions = drive(&mut compactor, 1..51, interval);
        assert_eq!(compactions, vec![(30, 0), (40, 90), (50, 190)]);
    }

    #[test]
    fn periodic_retries_a_failed_compaction_at_the_next_sample_and_followers_wait() {
        let interval = Duration::from_secs(1);
        let mut compactor = PeriodicCompactor::new(Duration::from_secs(10), Duration::ZERO, 0);
        for step in 1..10 {
            assert_eq!(compactor.tick(interval * step, true), None);
            compactor.record(i64::from(step) * 10);
        }
        assert_eq!(compactor.tick(interval * 10, false), None, "a follower does not compact");
        compactor.record(100);
        assert_eq!(compactor.tick(interval * 11, true), Some(0));
        compactor.compacted(interval * 11, false);
        compactor.record(110);
        assert_eq!(compactor.tick(interval * 12, true), Some(10), "retried with the window moved on");
    }

    #[test]
    fn revision_keeps_the_last_revisions() {
        let mut compactor = RevisionCompactor::new(10);
        assert_eq!(compactor.check(5, true), None, "nothing to compact yet");
        assert_eq!(compactor.check(25, false), None, "followers do not compact");
        assert_eq!(compactor.check(25, true), Some(15));
        compactor.compacted(15);
        assert_eq!(compactor.check(25, true), None, "no new revisions");
        assert_eq!(compactor.check(40, true), Some(30));
    }
}
