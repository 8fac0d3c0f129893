//! Opening a WAL: replaying its segments, cutting a torn tail, loading the snapshot.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::codec::{self, FileIdentity, FrameRead};
use crate::error::WalError;
use crate::file_system::FileSystem;
use crate::names;
use crate::state::LogState;
use crate::wal::{SegmentInfo, Wal, WalOptions};

/// What replaying one segment found.
struct SegmentReplay {
    /// Bytes of the segment that hold valid records.
    valid_length_bytes: usize,
    /// Length of the file.
    file_length_bytes: usize,
    /// True if every byte after the valid records is zero: preallocated space (see
    /// `WalFile::preallocate`), not a torn record.
    tail_is_zeros: bool,
    /// Records replayed (the preamble included).
    record_count: usize,
}

impl Wal {
    /// Opens the WAL in `directory` and recovers it.
    ///
    /// A torn record at the tail of the last segment (an incomplete or checksum-failing
    /// record with no valid record after it: a crash during a write) is cut off and
    /// reported with `tracing::warn!`. Any other damage — a bad record elsewhere, a
    /// missing segment, a damaged or missing snapshot file, a header of another cluster
    /// or node — refuses to open with an error naming the file and byte offset.
    /// Fails with [`WalError::NotFound`] if the directory holds no segment.
    pub fn open(directory: impl AsRef<Path>, options: WalOptions) -> Result<Wal, WalError> {
        let directory = directory.as_ref().to_path_buf();
        let file_system = options.file_system.clone();
        let identity = FileIdentity { cluster_id: options.cluster_id, node_id: options.node_id };
        let listing = names::list(&*file_system, &directory)?;
        remove_temporaries(&*file_system, &directory, &listing.temporaries)?;
        let (Some(&first_sequence), Some(&last_sequence)) = (listing.segments.first(), listing.segments.last()) else {
            return Err(WalError::NotFound { directory });
        };
        assert!(first_sequence <= last_sequence, "segments are sorted");
        let mut state = LogState::new(raft::ConfState::default());
        let mut segments = VecDeque::new();
        let mut last_replay = None;
        for (position, &sequence) in listing.segments.iter().enumerate() {
            let expected_sequence = first_sequence + position as u64;
            let path = directory.join(names::segment_file_name(expected_sequence));
            if sequence != expected_sequence {
                let reason = format!("segments {first_sequence}..={last_sequence} must all exist");
                return Err(WalError::MissingFile { path, reason });
            }
            let mut info = SegmentInfo { sequence, max_index_written: 0 };
            let replay =
                replay_segment(&*file_system, &path, identity, &mut info, sequence == last_sequence, &mut state)?;
            segments.push_back(info);
            last_replay = Some(replay);
        }
        assert_eq!(segments.len(), listing.segments.len(), "every listed segment replayed");
        let first_path = directory.join(names::segment_file_name(first_sequence));
        state.finish_replay().map_err(|reason| WalError::corrupt(&first_path, 0, reason))?;
        let snapshot_data = load_snapshot(&*file_system, &directory, identity, &state)?;
        let last_replay = last_replay.expect("at least one segment");
        assert!(last_replay.record_count >= 1, "a replayed segment has its preamble");
        finish_open(directory, options, state, snapshot_data, segments, last_replay)
    }
}

fn remove_temporaries(file_system: &dyn FileSystem, directory: &Path, temporaries: &[String]) -> Result<(), WalError> {
    for name in temporaries {
        assert!(name.ends_with(".tmp"), "only temporaries are removed here");
        let path = directory.join(name);
        file_system.remove_file(&path).map_err(|error| WalError::io(&path, error))?;
    }
    if !temporaries.is_empty() {
        file_system.sync_directory(directory).map_err(|error| WalError::io(directory, error))?;
    }
    Ok(())
}

/// Reads segment `info.sequence` at `path` and applies its records to `state`.
fn replay_segment(
    file_system: &dyn FileSystem,
    path: &Path,
    identity: FileIdentity,
    info: &mut SegmentInfo,
    is_last: bool,
    state: &mut LogState,
) -> Result<SegmentReplay, WalError> {
    let bytes = file_system.read_file(path).map_err(|error| WalError::io(path, error))?;
    let (found_identity, sequence) = codec::decode_segment_header(&bytes)
        .map_err(|error| WalError::corrupt(path, error.offset as u64, error.reason))?;
    check_identity(path, found_identity, identity)?;
    if sequence != info.sequence {
        let reason = format!("header says segment {sequence}, file name says {}", info.sequence);
        return Err(WalError::corrupt(path, 24, reason));
    }
    let mut offset = codec::SEGMENT_HEADER_SIZE_BYTES;
    let mut record_count = 0;
    // Each iteration consumes at least one frame header, which bounds the loop.
    while offset < bytes.len() {
        let payload = match codec::read_frame(&bytes, offset) {
            FrameRead::End => break,
            FrameRead::Valid { payload, next_offset } => {
                let payload_offset = offset + codec::FRAME_HEADER_SIZE_BYTES;
                let record = codec::decode_record(payload)
                    .map_err(|error| WalError::corrupt(path, (payload_offset + error.offset) as u64, error.reason))?;
                state.apply(&record.parts(), true).map_err(|reason| WalError::corrupt(path, offset as u64, reason))?;
                if let Some(last) = record.entries.last() {
                    info.max_index_written = info.max_index_written.max(last.index);
                }
                next_offset
            }
            FrameRead::Invalid { reason } => {
                // Zeros to the end: preallocated space (or a torn write that left zeros).
                if is_last
                    && (is_all_zeros(&bytes[offset..]) || codec::find_valid_frame_after(&bytes, offset).is_none())
                {
                    break;
                }
                return Err(WalError::corrupt(path, offset as u64, reason));
            }
        };
        assert!(payload > offset, "replay makes progress");
        offset = payload;
        record_count += 1;
    }
    if record_count == 0 {
        return Err(WalError::corrupt(path, offset as u64, "segment has no preamble record"));
    }
    assert!(record_count >= 1, "the count includes the preamble");
    assert!(offset >= codec::SEGMENT_HEADER_SIZE_BYTES && offset <= bytes.len(), "replay stays in the file");
    let tail_is_zeros = is_all_zeros(&bytes[offset..]);
    Ok(SegmentReplay { valid_length_bytes: offset, file_length_bytes: bytes.len(), tail_is_zeros, record_count })
}

fn is_all_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

fn check_identity(path: &Path, found: FileIdentity, expected: FileIdentity) -> Result<(), WalError> {
    if found != expected {
        return Err(WalError::WrongIdentity {
            path: path.to_path_buf(),
            found_cluster_id: found.cluster_id,
            found_node_id: found.node_id,
            expected_cluster_id: expected.cluster_id,
            expected_node_id: expected.node_id,
        });
    }
    Ok(())
}

/// Loads and checks the snapshot file the log refers to (none for index 0).
pub(crate) fn load_snapshot(
    file_system: &dyn FileSystem,
    directory: &Path,
    identity: FileIdentity,
    state: &LogState,
) -> Result<Bytes, WalError> {
    let meta = &state.snapshot_meta;
    if meta.index == 0 {
        return Ok(Bytes::new());
    }
    let path = directory.join(names::snapshot_file_name(meta.index, meta.term));
    let bytes = match file_system.read_file(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let reason = format!("the log's snapshot at index {} term {}", meta.index, meta.term);
            return Err(WalError::MissingFile { path, reason });
        }
        Err(error) => return Err(WalError::io(path, error)),
    };
    let (found_identity, snapshot) = codec::decode_snapshot_file(&bytes)
        .map_err(|error| WalError::corrupt(&path, error.offset as u64, error.reason))?;
    check_identity(&path, found_identity, identity)?;
    assert_eq!(found_identity, identity, "checked above");
    if (snapshot.meta.index, snapshot.meta.term) != (meta.index, meta.term) {
        let reason = format!("holds snapshot ({}, {})", snapshot.meta.index, snapshot.meta.term);
        return Err(WalError::corrupt(&path, 24, reason));
    }
    assert!(snapshot.meta.index > 0, "index 0 has no file (returned above)");
    Ok(snapshot.data)
}

/// Opens the last segment for appending (cutting a torn tail), builds the `Wal`, and
/// finishes any cleanup a crash interrupted.
fn finish_open(
    directory: PathBuf,
    options: WalOptions,
    state: LogState,
    snapshot_data: Bytes,
    segments: VecDeque<SegmentInfo>,
    replay: SegmentReplay,
) -> Result<Wal, WalError> {
    let file_system = options.file_system.clone();
    assert!(replay.valid_length_bytes <= replay.file_length_bytes, "the valid records are inside the file");
    let last_sequence = segments.back().expect("at least one segment").sequence;
    let path = directory.join(names::segment_file_name(last_sequence));
    let mut file = file_system.open_file_append(&path).map_err(|error| WalError::io(&path, error))?;
    let tail_bytes = replay.file_length_bytes - replay.valid_length_bytes;
    // Appends go at the file's end: cut whatever follows the last valid record (zeros
    // preallocated ahead of the records, or a torn record; only the latter is reported).
    let torn_bytes = if replay.tail_is_zeros { 0 } else { tail_bytes };
    if torn_bytes > 0 {
        tracing::warn!(
            file = %path.display(),
            offset = replay.valid_length_bytes,
            torn_bytes,
            "WAL: cutting a torn record at the tail of the last segment (a crash during a write)"
        );
    }
    if tail_bytes > 0 {
        file.truncate(replay.valid_length_bytes as u64).map_err(|error| WalError::io(&path, error))?;
    }
    // What was read may sit only in the page cache (a process crash): make it durable
    // before deleting anything on its account.
    file.sync_data().map_err(|error| WalError::io(&path, error))?;
    let mut wal = Wal {
        directory,
        options,
        state,
        snapshot_data: std::sync::Mutex::new(Some(snapshot_data)),
        segments,
        current_file: file,
        current_size_bytes: replay.valid_length_bytes as u64,
        preallocated_bytes: 0,
        current_has_records: replay.record_count > 1,
        encode_buffer: Vec::new(),
        unsynced: false,
        cleanup_pending: false,
        poisoned: false,
        torn_bytes_truncated: torn_bytes as u64,
        snapshot_writers_started: 0,
    };
    wal.remove_obsolete_files()?;
    assert!(!wal.poisoned && !wal.segments.is_empty());
    wal.assert_invariants();
    Ok(wal)
}
