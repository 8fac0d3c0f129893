//! Seeded fuzzing of recovery on the real file system: a WAL with several segments and a
//! snapshot is damaged at random (bit flips, truncations, garbage appended or written over,
//! files zeroed) and opened again. Opening must answer — the recovered log or an error —
//! and never panic; a recovered log must be readable and consistent (first index ≤ last
//! index + 1, every entry in between readable with its index).
//!
//! `RAFTKV_FUZZ_CASES=N` sets the number of damaged copies (default 100, about a second).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use bytes::Bytes;
use raft::{ConfState, HardState, Storage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wal::conformance::entries;
use wal::{Wal, WalOptions, WriteBatch};

fn options() -> WalOptions {
    WalOptions { segment_size_bytes_max: 2048, ..WalOptions::new(5, 3) }
}

fn cases() -> u64 {
    std::env::var("RAFTKV_FUZZ_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(100)
}

fn build(directory: &Path) {
    let conf = ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] };
    let mut wal = Wal::create(directory, options(), conf.clone()).unwrap();
    for first in (1..=40).step_by(5) {
        let batch = WriteBatch {
            snapshot: None,
            entries: entries(1, first, first + 4),
            hard_state: Some(HardState { term: 1, vote: 1, commit: first }),
        };
        wal.write(&batch).unwrap();
    }
    wal.compact(12, conf, Bytes::from_static(b"state at 12")).unwrap();
    let batch = WriteBatch { snapshot: None, entries: entries(2, 41, 50), hard_state: None };
    wal.write(&batch).unwrap();
}

fn copy_directory(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn damage(rng: &mut ChaCha8Rng, directory: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(directory).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    let path = &files[rng.gen_range(0..files.len())];
    let mut bytes = std::fs::read(path).unwrap();
    let action = rng.gen_range(0..5);
    match action {
        0 if !bytes.is_empty() => {
            let position = rng.gen_range(0..bytes.len());
            bytes[position] ^= 1 << rng.gen_range(0..8);
        }
        1 => bytes.truncate(rng.gen_range(0..=bytes.len())),
        2 => bytes.extend((0..rng.gen_range(1..64)).map(|_| rng.gen::<u8>())),
        3 if !bytes.is_empty() => {
            let start = rng.gen_range(0..bytes.len());
            let end = (start + rng.gen_range(1..64)).min(bytes.len());
            bytes[start..end].iter_mut().for_each(|byte| *byte = rng.gen());
        }
        _ => bytes.iter_mut().for_each(|byte| *byte = 0),
    }
    std::fs::write(path, &bytes).unwrap();
    format!("action {action} on {}", path.file_name().unwrap().to_string_lossy())
}

fn check_recovered(wal: &Wal) -> Result<(), String> {
    let (first, last) = (wal.first_index(), wal.last_index());
    if first > last + 1 {
        return Err(format!("first index {first} after last index {last}"));
    }
    let read = wal.entries(first, last + 1, u64::MAX).map_err(|error| format!("entries: {error}"))?;
    if read.len() as u64 != last + 1 - first || read.iter().zip(first..).any(|(entry, index)| entry.index != index) {
        return Err(format!("entries {first}..={last} read back as {} entries", read.len()));
    }
    wal.initial_state().map_err(|error| format!("initial state: {error}"))?;
    Ok(())
}

#[test]
fn recovery_survives_random_damage() {
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    build(&pristine);
    check_recovered(&Wal::open(&pristine, options()).unwrap()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let (mut opened, mut refused) = (0, 0);
    for case in 0..cases() {
        let directory = root.path().join(format!("case-{case}"));
        copy_directory(&pristine, &directory);
        let mut what = Vec::new();
        for _ in 0..rng.gen_range(1..3) {
            what.push(damage(&mut rng, &directory));
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| Wal::open(&directory, options())));
        match outcome {
            Err(_) => panic!("case {case} ({what:?}): recovery panicked"),
            Ok(Ok(wal)) => {
                opened += 1;
                if let Err(problem) = check_recovered(&wal) {
                    panic!("case {case} ({what:?}): {problem}");
                }
            }
            Ok(Err(_)) => refused += 1,
        }
        std::fs::remove_dir_all(&directory).unwrap();
    }
    println!("{opened} damaged copies recovered, {refused} refused with an error");
    assert!(opened + refused == cases());
}
