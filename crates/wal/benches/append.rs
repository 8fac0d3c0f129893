//! Append throughput with fsync, beside the disk's raw write+fdatasync rate measured in
//! the same run on a plain file. A plain bench binary that prints a table:
//! `cargo bench -p raftkv-wal`. Data goes under `RAFTKV_BENCH_DIR`, else the cargo
//! target directory (same disk as the work tree), else the system temporary directory.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft::{ConfState, Entry, EntryKind, HardState};
use wal::{Wal, WalOptions, WriteBatch};

const ENTRY_SIZE_BYTES: usize = 256;
const BATCH_SIZES: [usize; 3] = [1, 16, 256];
const MEASURE_DURATION: Duration = Duration::from_secs(3);
const ITERATIONS_MAX: u64 = 1_000_000;

/// Syncs done and bytes written in a measured interval.
struct Measurement {
    syncs: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Measurement {
    fn syncs_per_second(&self) -> f64 {
        self.syncs as f64 / self.elapsed.as_secs_f64()
    }

    fn megabytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

fn bench_directory() -> PathBuf {
    let base = std::env::var_os("RAFTKV_BENCH_DIR")
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    std::fs::create_dir_all(&base).expect("bench directory");
    base
}

/// Appends `write_size_bytes` to a plain file and `fdatasync`s, repeatedly.
fn measure_raw(directory: &std::path::Path, write_size_bytes: usize) -> Measurement {
    let path = directory.join("raw.bin");
    let mut file = OpenOptions::new().create(true).write(true).truncate(true).open(&path).expect("raw file");
    let buffer = vec![0x5a; write_size_bytes];
    let start = Instant::now();
    let mut syncs = 0;
    while start.elapsed() < MEASURE_DURATION && syncs < ITERATIONS_MAX {
        file.write_all(&buffer).expect("write");
        file.sync_data().expect("fdatasync");
        syncs += 1;
    }
    let elapsed = start.elapsed();
    std::fs::remove_file(&path).expect("remove raw file");
    Measurement { syncs, bytes: syncs * write_size_bytes as u64, elapsed }
}

/// Writes batches of `batch_size` entries (with a hard state) through `Wal::write`.
fn measure_wal(directory: &std::path::Path, batch_size: usize) -> Measurement {
    let wal_directory = directory.join(format!("wal-{batch_size}"));
    let _ = std::fs::remove_dir_all(&wal_directory);
    let mut wal = Wal::create(&wal_directory, WalOptions::new(1, 1), ConfState::default()).expect("create WAL");
    let payload = Bytes::from(vec![0xa5; ENTRY_SIZE_BYTES]);
    let start = Instant::now();
    let (mut syncs, mut next_index) = (0, 1);
    while start.elapsed() < MEASURE_DURATION && syncs < ITERATIONS_MAX {
        let entries: Vec<Entry> = (next_index..next_index + batch_size as u64)
            .map(|index| Entry { term: 1, index, kind: EntryKind::Normal, data: payload.clone() })
            .collect();
        next_index += batch_size as u64;
        let hard_state = HardState { term: 1, vote: 1, commit: next_index - 1 };
        wal.write(&WriteBatch { snapshot: None, entries, hard_state: Some(hard_state) }).expect("write");
        syncs += 1;
    }
    let elapsed = start.elapsed();
    drop(wal);
    std::fs::remove_dir_all(&wal_directory).expect("remove WAL");
    Measurement { syncs, bytes: syncs * (batch_size * ENTRY_SIZE_BYTES) as u64, elapsed }
}

fn main() {
    let directory = tempfile::tempdir_in(bench_directory()).expect("temporary directory");
    println!(
        "WAL append benchmark: {ENTRY_SIZE_BYTES}-byte entries, fdatasync per batch, in {}",
        directory.path().display()
    );
    println!(
        "{:>6} | {:>13} {:>10} {:>11} | {:>12} {:>10} | {:>11} {:>9}",
        "batch", "wal entries/s", "wal MB/s", "wal syncs/s", "raw syncs/s", "raw MB/s", "syncs ratio", "MB ratio"
    );
    for batch_size in BATCH_SIZES {
        let raw = measure_raw(directory.path(), batch_size * ENTRY_SIZE_BYTES);
        let wal = measure_wal(directory.path(), batch_size);
        println!(
            "{:>6} | {:>13.0} {:>10.2} {:>11.0} | {:>12.0} {:>10.2} | {:>10.2}x {:>8.2}x",
            batch_size,
            wal.syncs_per_second() * batch_size as f64,
            wal.megabytes_per_second(),
            wal.syncs_per_second(),
            raw.syncs_per_second(),
            raw.megabytes_per_second(),
            raw.syncs_per_second() / wal.syncs_per_second(),
            raw.megabytes_per_second() / wal.megabytes_per_second(),
        );
    }
    println!("ratio = raw / wal (1.00x: the WAL adds nothing over the disk's own write+fdatasync)");
}
