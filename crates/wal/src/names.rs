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
    let name = format!("{SEGMENT_PREFIX}{sequence:020}{SEGMENT_SUFFIX}");
    assert_eq!(name.len(), SEGMENT_PREFIX.len() + 20 + SEGMENT_SUFFIX.len(), "fixed width: names sort by sequence");
    name
}

/// `snapshot-<index, 20 digits>-<term, 20 digits>.snap`.
pub(crate) fn snapshot_file_name(index: Index, term: Term) -> String {
    let name = format!("{SNAPSHOT_PREFIX}{index:020}-{term:020}{SNAPSHOT_SUFFIX}");
    assert!(is_snapshot_file_name(&name) && !name.ends_with(TEMPORARY_SUFFIX), "listed as a snapshot");
    name
}

/// `path` with `.tmp` appended: where a file is written before it is renamed into place.
pub(crate) fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file path").to_os_string();
    name.push(TEMPORARY_SUFFIX);
    let temporary = path.with_file_name(name);
    assert!(temporary.to_string_lossy().ends_with(TEMPORARY_SUFFIX), "listed as a temporary");
    temporary
}

/// Where snapshot writer `writer_number` writes the snapshot file `snapshot_name` of
/// `directory` before it is installed: `<snapshot_name>.<writer_number>.tmp` (a temporary,
/// removed on open if left behind).
pub(crate) fn prepared_snapshot_path(directory: &Path, snapshot_name: &str, writer_number: u64) -> PathBuf {
    assert!(writer_number > 0, "writers are numbered from 1");
    let path = directory.join(format!("{snapshot_name}.{writer_number}{TEMPORARY_SUFFIX}"));
    assert!(path.to_string_lossy().ends_with(TEMPORARY_SUFFIX), "listed as a temporary, never as a snapshot");
    path
}

fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SEGMENT_PREFIX)?.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let sequence = digits.parse().ok();
    // Holds for any name (not an assumption on the directory): 20 digits print back alike.
    assert!(sequence.is_none_or(|sequence| segment_file_name(sequence) == name), "names round-trip");
    sequence
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
    debug_assert!(listing.segments.windows(2).all(|pair| pair[0] < pair[1]), "sequences are distinct and sorted");
    debug_assert!(listing.snapshots.iter().all(|name| !name.ends_with(TEMPORARY_SUFFIX)), "kinds are exclusive");
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
