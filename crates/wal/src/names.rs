//! File names inside a WAL directory.

use std::path::{Path, PathBuf};

use raft::{Index, Term};

use crate::error::WalError;
use crate::file_system::FileSystem;

const SEGMENT_PREFIX: &str = "segment-";
const SEGMENT_SUFFIX: &str = ".wal";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const TEMPORARY_SUFFIX: &str = ".tmp";

/// `segment-<sequence, 20 digits>.wal`.
pub(crate) fn segment_file_name(sequence: u64) -> String {
    format!("{SEGMENT_PREFIX}{sequence:020}{SEGMENT_SUFFIX}")
}

/// `snapshot-<index, 20 digits>-<term, 20 digits>.snap`.
pub(crate) fn snapshot_file_name(index: Index, term: Term) -> String {
    format!("{SNAPSHOT_PREFIX}{index:020}-{term:020}{SNAPSHOT_SUFFIX}")
}

/// `path` with `.tmp` appended: where a file is written before it is renamed into place.
pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file path").to_os_string();
    name.push(TEMPORARY_SUFFIX);
    path.with_file_name(name)
}

fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SEGMENT_PREFIX)?.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_snapshot_file_name(name: &str) -> bool {
    name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(SNAPSHOT_SUFFIX)
}

/// The WAL files of a directory, by kind.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// Segment sequence numbers, ascending.
    pub segments: Vec<u64>,
    /// Snapshot file names.
    pub snapshots: Vec<String>,
    /// Leftover temporary files (a crash while writing them).
    pub temporaries: Vec<String>,
}

/// Lists and classifies the files of `directory` (none if it does not exist); other
/// files are ignored.
pub(crate) fn list(file_system: &dyn FileSystem, directory: &Path) -> Result<Listing, WalError> {
    let mut listing = Listing::default();
    let names = match file_system.list_directory(directory) {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
        Err(error) => return Err(WalError::io(directory, error)),
    };
    for name in names {
        if name.ends_with(TEMPORARY_SUFFIX) {
            listing.temporaries.push(name);
        } else if let Some(sequence) = parse_segment_file_name(&name) {
            listing.segments.push(sequence);
        } else if is_snapshot_file_name(&name) {
            listing.snapshots.push(name);
        }
    }
    listing.segments.sort_unstable();
    listing.snapshots.sort();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("segment-1.wal"), None);
        assert!(is_snapshot_file_name(&snapshot_file_name(3, 4)));
        assert_eq!(temporary_path(Path::new("/a/b.wal")), PathBuf::from("/a/b.wal.tmp"));
    }
}
