//! Shared by the chaos tests: the binary under test, run lengths, and one run at a time.
//!
//! The tests start real `raftkv serve` processes. They use `$RAFTKV_BIN` if set, else
//! `<target>/release/raftkv` (or `debug`), where `<target>` honours `CARGO_TARGET_DIR`; if
//! neither exists they build it with `cargo build --release --bin raftkv`. After changing
//! the server, rebuild it before running these tests (a stale binary is not detected).

#![allow(dead_code)] // Each test binary uses a different part.

use std::path::PathBuf;
use std::sync::Mutex;

/// Clusters of different tests in one binary would compete for the CPU; run one at a time.
pub static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Seconds of faults per run: `$RAFTKV_CHAOS_SECONDS`, else `default_seconds` (CI bound).
pub fn run_seconds(default_seconds: u64) -> u64 {
    std::env::var("RAFTKV_CHAOS_SECONDS").ok().and_then(|text| text.parse().ok()).unwrap_or(default_seconds)
}

/// Where failing histories go: `<target>/chaos`.
pub fn history_directory() -> PathBuf {
    chaos::binary::target_directory().join("chaos")
}

/// The raftkv binary (built if missing).
pub fn raftkv_binary() -> PathBuf {
    chaos::binary::raftkv_binary_or_build().expect("the raftkv binary")
}

/// Arguments of a run of `faults` with `seed` for `seconds`.
pub fn arguments(faults: &str, seed: u64, seconds: u64) -> chaos::ChaosArgs {
    chaos::ChaosArgs {
        nodes: 3,
        duration_seconds: seconds,
        faults: faults.to_string(),
        seed: Some(seed),
        raftkv_bin: Some(raftkv_binary()),
        history_out: Some(history_directory()),
        ..chaos::ChaosArgs::default()
    }
}
