//! The write-ahead log: write paths, group commit, snapshots, compaction, and the
//! `raft::Storage` implementation.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use raft::{ConfState, Entry, HardState, Index, Snapshot, SnapshotMeta, Storage, StorageError, Term};

use crate::codec::{self, FileIdentity, RecordParts, SnapshotMarker};
use crate::error::{is_no_space_error, WalError};
use crate::file_system::{FileSystem, StdFileSystem, WalFile};
use crate::names;
use crate::state::LogState;

/// Default size at which a segment is closed and a new one started.
pub const SEGMENT_SIZE_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// Zeros preallocated at a time ahead of the last segment's records.
pub const PREALLOCATION_STEP_BYTES: u64 = 1 << 20;

/// How to open or create a WAL.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Cluster this node belongs to; written in every file header and checked on open.
    pub cluster_id: u64,
    /// This node; written in every file header and checked on open.
    pub node_id: u64,
    /// A segment that reaches this size is closed and the next write starts a new one
    /// (a single record larger than this gets a segment of its own).
    pub segment_size_bytes_max: u64,
    /// The file layer (the real one by default; a fault-injecting one in tests).
    pub file_system: Arc<dyn FileSystem>,
    /// Most segment files kept (etcd's `--max-wals`; 0: unlimited): once a snapshot covers
    /// them, the oldest segments beyond this are removed. Segments still needed for
    /// recovery are never removed, so there may be more. Default 1: only needed ones.
    pub segment_files_max: u64,
    /// Most snapshot files kept (etcd's `--max-snapshots`; 0: unlimited), the current one
    /// included; older ones beyond this are removed. Default 1: only the current one.
    pub snapshot_files_max: u64,
}

impl WalOptions {
    /// Options for node `node_id` of cluster `cluster_id`, with default segment size and
    /// the real file system.
    pub fn new(cluster_id: u64, node_id: u64) -> Self {
        let options = WalOptions {
            cluster_id,
            node_id,
            segment_size_bytes_max: SEGMENT_SIZE_BYTES_MAX_DEFAULT,
            file_system: Arc::new(StdFileSystem),
            segment_files_max: 1,
            snapshot_files_max: 1,
        };
        assert!(options.segment_size_bytes_max >= PREALLOCATION_STEP_BYTES, "a segment holds a preallocation step");
        options
    }
}

/// What one `raft::Ready` asks to persist, applied in this order: snapshot, entries,
/// hard state. Each field may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// A snapshot received from the leader: replaces the log (see [`Wal::apply_snapshot`]).
    pub snapshot: Option<Snapshot>,
    /// Entries to append; a first index at or below the last index replaces the stored
    /// suffix from there (follower conflict truncation).
    pub entries: Vec<Entry>,
    /// The new hard state.
    pub hard_state: Option<HardState>,
}

/// A sync of a WAL's current segment that may run on another thread (see
/// [`Wal::detached_sync`]): the leader's fsync in parallel with its Raft loop.
#[derive(Debug)]
pub struct DetachedSync {
    file: Box<dyn WalFile>,
    path: PathBuf,
}

impl DetachedSync {
    /// Makes durable everything the WAL had appended when this handle was taken (one
    /// `fdatasync`).
    pub fn sync(mut self) -> Result<(), WalError> {
        self.file.sync_data().map_err(|error| WalError::io(self.path.clone(), error))
    }

    /// The segment file this handle syncs.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A segment the WAL holds, oldest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    /// Sequence number (file name).
    pub sequence: u64,
    /// Highest entry index written in the segment (0 if none): the segment may be
    /// deleted once the snapshot covers it.
    pub max_index_written: Index,
}

/// A validated write, ready to encode.
#[derive(Debug, Default)]
struct WritePlan<'a> {
    snapshot: Option<Snapshot>,
    marker: Option<SnapshotMarker>,
    conf_state: Option<ConfState>,
    entries: &'a [Entry],
    truncates: bool,
    hard_state: Option<HardState>,
}

/// A durable Raft log in a directory of segment and snapshot files.
///
/// Writes: [`Wal::write`] (durable on return), or [`Wal::append_batch`] several times and
/// then one [`Wal::sync`] (group commit: the batches share one `fdatasync`). Reads go
/// through [`raft::Storage`] and are served from memory (entries since the snapshot are
/// kept in a `VecDeque`). After `append_batch` and before `sync`, reads already see the
/// appended data; the driver must not report it persisted (`on_persisted`) before `sync`
/// returns.
///
/// Any I/O failure while writing poisons the WAL: every later write returns
/// [`WalError::Poisoned`], and the caller must reopen it (recovery decides what is durable).
/// Except a full disk: a write, preallocation, file creation or rename that fails with
/// `ENOSPC` returns [`WalError::NoSpace`], cuts off whatever part of a record reached the
/// file and removes half-written new files, and leaves the WAL usable: the log holds
/// exactly what it held before the call (for a batch split into several records, a
/// prefix of them), so the caller retries the same batch later. A failing `fdatasync`
/// still poisons, whatever the error: after one, the kernel may have dropped the data.
#[derive(Debug)]
pub struct Wal {
    pub(crate) directory: PathBuf,
    pub(crate) options: WalOptions,
    pub(crate) state: LogState,
    /// The current snapshot's data when it is in memory: loaded from its file on first use
    /// (a follower to catch up; sent in chunks, so kept until the next snapshot) and
    /// dropped when a new snapshot is written, so a node does not hold a second copy of its
    /// state machine between snapshots. `None`: read it from the file when asked.
    pub(crate) snapshot_data: std::sync::Mutex<Option<Bytes>>,
    /// The segment files held, oldest first. Invariant: never empty once created, and
    /// their sequences are consecutive (recovery refuses a gap; a roll adds the next one).
    pub(crate) segments: VecDeque<SegmentInfo>,
    /// The last segment, open for appending.
    pub(crate) current_file: Box<dyn WalFile>,
    /// Bytes of records in the current segment (where the next record goes). Invariant: at
    /// least the segment header.
    pub(crate) current_size_bytes: u64,
    /// Length of the current segment's file: its records, then zeros preallocated ahead
    /// of them (see [`WalFile::preallocate`]); 0 when the file system does not
    /// preallocate. Invariant: `0` or `>= current_size_bytes`.
    pub(crate) preallocated_bytes: u64,
    /// True once the current segment holds a record besides its preamble (a segment rolls
    /// only then, so one record larger than a segment still fits in one).
    pub(crate) current_has_records: bool,
    /// The frame being written (reused between records).
    pub(crate) encode_buffer: Vec<u8>,
    /// True while records were appended to the current segment since its last sync.
    /// Invariant: implies `current_has_records` (a new segment is synced when created).
    pub(crate) unsynced: bool,
    /// True after a new snapshot became current: obsolete files are removed at the next
    /// [`Wal::sync`], once its marker is durable.
    pub(crate) cleanup_pending: bool,
    /// True after a write or sync failed: every later write is refused. Never goes back.
    pub(crate) poisoned: bool,
    /// Bytes of a torn tail cut at open.
    pub(crate) torn_bytes_truncated: u64,
    /// Snapshot writers handed out ([`Wal::snapshot_writer`]): numbers their temporary
    /// files, so no two writers share one.
    pub(crate) snapshot_writers_started: u64,
}

impl Wal {
    /// Creates a new, empty WAL in `directory` (created if missing) whose initial
    /// membership is `conf`. Fails with [`WalError::AlreadyExists`] if it holds segments.
    pub fn create(directory: impl AsRef<Path>, options: WalOptions, conf: ConfState) -> Result<Wal, WalError> {
        let directory = directory.as_ref().to_path_buf();
        let file_system = options.file_system.clone();
        file_system.create_directory_all(&directory).map_err(|error| WalError::io(&directory, error))?;
        if let Some(parent) = directory.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            // The directory entry itself must survive a crash.
            file_system.sync_directory(parent).map_err(|error| WalError::io(parent, error))?;
        }
        let listing = names::list(&*file_system, &directory)?;
        if !listing.segments.is_empty() {
            return Err(WalError::AlreadyExists { directory });
        }
        let mut wal = Wal {
            directory,
            options,
            state: LogState::new(conf),
            snapshot_data: std::sync::Mutex::new(None),
            segments: VecDeque::new(),
            current_file: Box::new(NoFile),
            current_size_bytes: 0,
            preallocated_bytes: 0,
            current_has_records: false,
            encode_buffer: Vec::new(),
            unsynced: false,
            cleanup_pending: false,
            poisoned: false,
            torn_bytes_truncated: 0,
            snapshot_writers_started: 0,
        };
        wal.start_segment(1)?;
        assert_eq!(wal.segments.len(), 1, "a new WAL has one segment");
        assert!(!wal.poisoned && wal.state.last_index() == 0, "a new WAL is usable and empty");
        Ok(wal)
    }

    /// Opens the WAL in `directory`, or creates it with membership `conf` if there is none.
    pub fn open_or_create(directory: impl AsRef<Path>, options: WalOptions, conf: ConfState) -> Result<Wal, WalError> {
        let opened = match Wal::open(directory.as_ref(), options.clone()) {
            Err(WalError::NotFound { .. }) => Wal::create(directory, options, conf),
            other => other,
        };
        if let Ok(wal) = &opened {
            wal.assert_invariants();
        }
        opened
    }

    /// Appends `batch` (snapshot, then entries, then hard state) and makes it durable:
    /// when this returns `Ok`, the batch survives a crash.
    pub fn write(&mut self, batch: &WriteBatch) -> Result<(), WalError> {
        self.append_batch(batch)?;
        self.sync()?;
        assert!(!self.unsynced, "durable on return");
        Ok(())
    }

    /// Appends `batch` without waiting for the disk (group commit): the batch is durable
    /// only once a later [`Wal::sync`] returns. A batch is one record, so after a crash it
    /// is recovered whole or not at all (batches over 64 MiB are split and may be
    /// recovered as a prefix of their entries). A snapshot in the batch is written to its
    /// own file durably before this returns; the log refers to it once synced.
    pub fn append_batch(&mut self, batch: &WriteBatch) -> Result<(), WalError> {
        self.check_usable()?;
        let plan = self.plan_batch(batch)?;
        self.execute(plan)?;
        assert!(batch.entries.last().is_none_or(|last| self.state.last_index() >= last.index), "entries appended");
        assert!(!self.poisoned, "a write that returns Ok leaves the WAL usable");
        Ok(())
    }

    /// Makes everything appended so far durable (one `fdatasync`), then removes the
    /// segments and snapshot files a newer snapshot made obsolete.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.check_usable()?;
        if self.unsynced {
            let result = self.current_file.sync_data();
            self.check_io(result, self.current_segment_path())?;
            self.unsynced = false;
        }
        if self.cleanup_pending {
            self.cleanup_pending = false;
            self.remove_obsolete_files()?;
        }
        assert!(!self.unsynced && !self.cleanup_pending && !self.poisoned, "everything durable, nothing left to do");
        self.assert_invariants();
        Ok(())
    }

    /// A handle whose [`DetachedSync::sync`], run on any thread, makes everything appended
    /// so far durable, while this WAL goes on taking appends (they are not covered).
    ///
    /// Rules:
    /// - Segments closed before now were synced when they were closed, so one sync of the
    ///   current segment covers every earlier append.
    /// - A batch holding a snapshot has obsolete files to remove once durable: make it
    ///   durable with [`Wal::sync`] instead (this panics if such cleanup is pending).
    /// - If the detached sync fails, durability is unknown: stop using this WAL and reopen
    ///   it (recovery decides what survived), exactly as after a poisoning error.
    pub fn detached_sync(&mut self) -> Result<DetachedSync, WalError> {
        self.check_usable()?;
        assert!(!self.cleanup_pending, "a snapshot write must be made durable with Wal::sync");
        let path = self.current_segment_path();
        let cloned = self.current_file.try_clone();
        let file = self.check_io(cloned, path.clone())?;
        Ok(DetachedSync { file, path })
    }

    /// Durably appends `entries`, first removing any stored suffix from `entries[0].index`
    /// on (as `raft::MemoryStorage::append`).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        self.write(&WriteBatch { entries: entries.to_vec(), ..WriteBatch::default() })?;
        // Entries at or below the snapshot are skipped; the others end the log.
        assert!(entries.last().is_none_or(|last| self.state.last_index() >= last.index));
        Ok(())
    }

    /// Durably stores `hard_state`. Its term must not be lower than the stored one.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), WalError> {
        self.write(&WriteBatch { hard_state: Some(hard_state), ..WriteBatch::default() })?;
        assert_eq!(self.state.hard_state, hard_state, "the hard state is stored");
        Ok(())
    }

    /// Durably replaces the log with `snapshot` (as `raft::MemoryStorage::apply_snapshot`):
    /// entries after it stay if the log holds the snapshot's (index, term), otherwise the
    /// log is emptied; the commit index rises to the snapshot index. A snapshot not newer
    /// than the current one is ignored.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), WalError> {
        let index = snapshot.meta.index;
        self.write(&WriteBatch { snapshot: Some(snapshot), ..WriteBatch::default() })?;
        assert!(self.state.snapshot_meta.index >= index, "the log starts at or after the snapshot");
        Ok(())
    }

    /// Durably drops the entries up to and including `index`, recording
    /// `snapshot_data` (the state machine at `index`) with membership `conf` as the
    /// snapshot (as `raft::MemoryStorage::compact`). Segments wholly covered are deleted.
    /// An `index` not above the current snapshot is ignored.
    pub fn compact(&mut self, index: Index, conf: ConfState, snapshot_data: Bytes) -> Result<(), WalError> {
        self.compact_with(index, conf, snapshot_data.len() as u64, &mut |out| out.write_all(&snapshot_data))?;
        assert!(self.state.snapshot_meta.index >= index, "compacted up to the index");
        Ok(())
    }

    /// As [`Wal::compact`], with the snapshot written by `state_machine` straight into the
    /// snapshot file ([`raft::Snapshottable::write_snapshot`]), so the serialized state is
    /// never held in memory as a whole.
    pub fn compact_from(
        &mut self,
        index: Index,
        conf: ConfState,
        state_machine: &dyn raft::Snapshottable,
    ) -> Result<(), WalError> {
        assert_eq!(state_machine.applied_index(), index, "the state machine is at the snapshot index");
        let length_bytes = state_machine.snapshot_length_bytes();
        self.compact_with(index, conf, length_bytes, &mut |out| state_machine.write_snapshot(out))?;
        assert!(self.state.snapshot_meta.index >= index, "compacted up to the index");
        Ok(())
    }

    /// Prepares and installs a snapshot in one call (see [`crate::SnapshotWriter`]): the
    /// snapshot file is written here, then made the log's snapshot. An I/O failure other
    /// than a full disk poisons the WAL, as for every write.
    fn compact_with(
        &mut self,
        index: Index,
        conf: ConfState,
        data_length_bytes: u64,
        write_data: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(), WalError> {
        let Some(writer) = self.snapshot_writer(index, conf)? else { return Ok(()) };
        let prepared = match writer.write_with(data_length_bytes, write_data) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.poisoned |= !error.is_no_space();
                return Err(error);
            }
        };
        let installed = self.install_snapshot(prepared)?;
        assert_eq!(installed, crate::SnapshotInstall::Installed, "nothing moved the log between prepare and install");
        assert_eq!(self.state.snapshot_meta.index, index, "the marker moved the snapshot");
        Ok(())
    }

    /// Writes the record of `marker` for the snapshot file of `meta`, already in place. A
    /// full disk removes that file (nothing refers to it). The file becomes current.
    pub(crate) fn write_snapshot_marker(
        &mut self,
        marker: SnapshotMarker,
        meta: &SnapshotMeta,
    ) -> Result<(), WalError> {
        assert_eq!((marker.index, marker.term), (meta.index, meta.term), "the marker names the file");
        let marked = self.execute(WritePlan { marker: Some(marker), ..WritePlan::default() });
        if matches!(&marked, Err(error) if error.is_no_space()) {
            self.remove_unreferenced_snapshot(meta);
        }
        marked?;
        self.snapshot_file_replaced();
        assert!(self.cleanup_pending && self.state.snapshot_meta.index == meta.index, "the file is current");
        Ok(())
    }

    /// Durably replaces the current membership (as `raft::MemoryStorage::set_conf_state`,
    /// used when a config entry is persisted).
    pub fn set_conf_state(&mut self, conf: ConfState) -> Result<(), WalError> {
        self.check_usable()?;
        self.execute(WritePlan { conf_state: Some(conf.clone()), ..WritePlan::default() })?;
        self.sync()?;
        assert_eq!(self.state.snapshot_meta.conf, conf, "the membership is stored");
        Ok(())
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> HardState {
        self.state.hard_state
    }

    /// The current snapshot's position and membership (cheap; [`raft::Storage::snapshot`]
    /// returns it with the data).
    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        let meta = &self.state.snapshot_meta;
        assert!(meta.index < self.state.entries_first_index, "snapshot index <= first index - 1");
        meta
    }

    /// The directory the WAL lives in.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Sequence numbers of the segment files held, oldest first.
    pub fn segment_sequences(&self) -> Vec<u64> {
        let sequences: Vec<u64> = self.segments.iter().map(|segment| segment.sequence).collect();
        assert!(sequences.windows(2).all(|pair| pair[0] + 1 == pair[1]), "consecutive sequences");
        sequences
    }

    /// Bytes of a torn tail that recovery cut from the last segment when this WAL was
    /// opened (0 if none).
    pub fn torn_bytes_truncated(&self) -> u64 {
        self.torn_bytes_truncated
    }

    /// Drops the in-memory copy of the current snapshot's data (it stays in its file and is
    /// read back when needed). Call after restoring the state machine from it at start-up.
    pub fn release_snapshot_data(&self) {
        *self.snapshot_data.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// True after a failed write: the WAL must be reopened.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub(crate) fn identity(&self) -> FileIdentity {
        FileIdentity { cluster_id: self.options.cluster_id, node_id: self.options.node_id }
    }

    pub(crate) fn current_segment_path(&self) -> PathBuf {
        let sequence = self.segments.back().expect("a WAL always has a segment").sequence;
        assert!(sequence > 0, "segments are numbered from 1");
        self.directory.join(names::segment_file_name(sequence))
    }

    /// Checks the invariants written on the fields (O(1): on in release builds). Called
    /// after every change of the segment or the log.
    pub(crate) fn assert_invariants(&self) {
        let (Some(first), Some(last)) = (self.segments.front(), self.segments.back()) else {
            panic!("a WAL always has a segment");
        };
        assert_eq!(last.sequence - first.sequence + 1, self.segments.len() as u64, "consecutive segments");
        assert!(self.current_size_bytes >= codec::SEGMENT_HEADER_SIZE_BYTES as u64, "a segment holds its header");
        assert!(
            self.preallocated_bytes == 0 || self.preallocated_bytes >= self.current_size_bytes,
            "preallocated zeros lie ahead of the records ({} < {})",
            self.preallocated_bytes,
            self.current_size_bytes
        );
        assert!(!self.unsynced || self.current_has_records, "only records are unsynced");
        let state = &self.state;
        assert_eq!(state.entries_first_index, state.snapshot_meta.index + 1, "first index = snapshot index + 1");
        assert!(state.last_index() >= state.snapshot_meta.index, "the log ends at or after its snapshot");
    }

    pub(crate) fn check_usable(&self) -> Result<(), WalError> {
        if self.poisoned {
            return Err(WalError::Poisoned);
        }
        Ok(())
    }

    /// Passes `result` through; an error poisons the WAL.
    pub(crate) fn check_io<T>(&mut self, result: std::io::Result<T>, path: impl Into<PathBuf>) -> Result<T, WalError> {
        let checked = result.map_err(|error| {
            self.poisoned = true;
            WalError::io(path, error)
        });
        assert!(checked.is_ok() || self.poisoned, "an I/O error poisons");
        checked
    }

    /// Passes `result` through. A full disk becomes [`WalError::NoSpace`] and leaves the WAL
    /// usable (the caller undoes what the failed call started); any other error poisons it.
    pub(crate) fn check_space<T>(
        &mut self,
        result: std::io::Result<T>,
        path: impl Into<PathBuf>,
    ) -> Result<T, WalError> {
        match result {
            Err(source) if is_no_space_error(&source) => Err(WalError::NoSpace { path: path.into(), source }),
            other => self.check_io(other, path),
        }
    }

    /// Validates `batch` against the log and decides what to write. No side effects.
    fn plan_batch<'a>(&self, batch: &'a WriteBatch) -> Result<WritePlan<'a>, WalError> {
        let mut plan = WritePlan::default();
        let mut snapshot_index = self.state.snapshot_meta.index;
        let mut last_index = self.state.last_index();
        let mut hard_state = self.state.hard_state;
        assert!(last_index >= snapshot_index, "the log ends at or after its snapshot");
        if let Some(snapshot) = batch.snapshot.as_ref().filter(|snapshot| snapshot.meta.index > snapshot_index) {
            let meta = &snapshot.meta;
            let keep_suffix = self.state.term(meta.index) == Ok(meta.term);
            last_index = if keep_suffix { last_index } else { meta.index };
            snapshot_index = meta.index;
            hard_state.commit = hard_state.commit.max(meta.index);
            plan.marker =
                Some(SnapshotMarker { index: meta.index, term: meta.term, conf: meta.conf.clone(), keep_suffix });
            plan.snapshot = Some(snapshot.clone());
        }
        if let Some(first) = batch.entries.first() {
            check_entries(&batch.entries, last_index)?;
            let skip = batch.entries.len().min(snapshot_index.saturating_sub(first.index - 1) as usize);
            plan.entries = &batch.entries[skip..];
            plan.truncates = plan.entries.first().is_some_and(|entry| entry.index <= last_index);
        }
        if let Some(new_hard_state) = batch.hard_state {
            if new_hard_state.term < self.state.hard_state.term {
                return Err(WalError::InvalidWrite(format!(
                    "hard state term went backwards: {} after {}",
                    new_hard_state.term, self.state.hard_state.term
                )));
            }
            hard_state = new_hard_state;
        }
        assert!(hard_state.term >= self.state.hard_state.term, "terms never go back");
        assert!(plan.entries.first().is_none_or(|first| first.index > snapshot_index), "no entry below the snapshot");
        plan.hard_state = Some(hard_state).filter(|hard_state| *hard_state != self.state.hard_state);
        assert_eq!(plan.marker.is_some(), plan.snapshot.is_some(), "a received snapshot comes with its marker");
        assert!(!plan.truncates || !plan.entries.is_empty(), "a truncation comes with entries");
        Ok(plan)
    }

    /// Writes a validated plan: snapshot file first, then the record(s).
    fn execute(&mut self, plan: WritePlan<'_>) -> Result<(), WalError> {
        assert!(plan.marker.as_ref().is_none_or(|marker| marker.index > self.state.snapshot_meta.index), "newer");
        if let Some(snapshot) = &plan.snapshot {
            let data = &snapshot.data;
            self.store_snapshot_file(&snapshot.meta, data.len() as u64, &mut |out| out.write_all(data))?;
        }
        let fixed_size_bytes = 256
            + plan.marker.as_ref().map_or(0, |marker| codec::conf_encoded_size_bytes(&marker.conf))
            + plan.conf_state.as_ref().map_or(0, codec::conf_encoded_size_bytes);
        let entry_budget_bytes = codec::RECORD_SIZE_BYTES_MAX - fixed_size_bytes.min(codec::RECORD_SIZE_BYTES_MAX / 2);
        let chunks = split_entries(plan.entries, entry_budget_bytes)?;
        let written = self.write_chunks(&plan, chunks);
        if let (Err(error), Some(snapshot)) = (&written, &plan.snapshot) {
            if error.is_no_space() && self.state.snapshot_meta.index < snapshot.meta.index {
                self.remove_unreferenced_snapshot(&snapshot.meta);
            }
        }
        written?;
        if plan.snapshot.is_some() {
            self.snapshot_file_replaced();
        }
        assert!(plan.marker.is_none() || self.state.snapshot_meta.index > 0, "a marker moved the snapshot");
        Ok(())
    }

    /// Writes the records of `plan`, one per chunk of its entries.
    fn write_chunks(&mut self, plan: &WritePlan<'_>, chunks: Vec<&[Entry]>) -> Result<(), WalError> {
        let chunk_count = chunks.len();
        assert!(chunk_count > 0, "a plan is written as at least one record");
        for (position, chunk) in chunks.into_iter().enumerate() {
            let (first_chunk, last_chunk) = (position == 0, position + 1 == chunk_count);
            let parts = RecordParts {
                snapshot_marker: plan.marker.as_ref().filter(|_| first_chunk),
                conf_state: plan.conf_state.as_ref().filter(|_| first_chunk),
                truncates: plan.truncates && first_chunk,
                entries: chunk,
                hard_state: plan.hard_state.filter(|_| last_chunk),
            };
            self.write_record(&parts)?;
        }
        assert!(plan.hard_state.is_none_or(|hard_state| self.state.hard_state == hard_state), "stored last");
        Ok(())
    }

    /// Removes the file of a snapshot whose marker could not be written for lack of space
    /// (nothing refers to it; it would only hold space). Best effort: a file left behind
    /// is removed by the next cleanup after a newer snapshot, or replaced on retry.
    fn remove_unreferenced_snapshot(&mut self, meta: &SnapshotMeta) {
        assert!(meta.index > self.state.snapshot_meta.index, "never the log's own snapshot file");
        let path = self.directory.join(names::snapshot_file_name(meta.index, meta.term));
        if let Err(error) = self.options.file_system.remove_file(&path) {
            tracing::warn!(path = %path.display(), %error, "WAL: could not remove an unreferenced snapshot file");
        }
    }

    /// A new snapshot file is current: older files go at the next sync, and the data is
    /// read back from the file if a follower needs it.
    fn snapshot_file_replaced(&mut self) {
        assert!(self.state.snapshot_meta.index > 0, "a snapshot file is current");
        *self.snapshot_data.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.cleanup_pending = true;
    }

    /// Encodes one record, rolls the segment if it would overflow, writes and applies it.
    fn write_record(&mut self, parts: &RecordParts<'_>) -> Result<(), WalError> {
        let is_empty = parts.snapshot_marker.is_none()
            && parts.conf_state.is_none()
            && parts.entries.is_empty()
            && parts.hard_state.is_none();
        if is_empty {
            return Ok(());
        }
        self.encode_buffer.clear();
        let frame_length = codec::encode_frame(&mut self.encode_buffer, |out| codec::encode_record(parts, out)) as u64;
        let frame_length_max = (codec::FRAME_HEADER_SIZE_BYTES + codec::RECORD_SIZE_BYTES_MAX) as u64;
        assert!(frame_length <= frame_length_max, "record lengths are in bounds (batches are split)");
        if self.current_has_records && self.current_size_bytes + frame_length > self.options.segment_size_bytes_max {
            let sequence = self.segments.back().expect("a WAL always has a segment").sequence + 1;
            self.start_segment(sequence)?;
        }
        if let Err(error) = self.append_frame(frame_length) {
            if error.is_no_space() {
                self.cut_partial_record()?;
            }
            return Err(error);
        }
        self.current_size_bytes += frame_length;
        assert!(self.preallocated_bytes == 0 || self.preallocated_bytes >= self.current_size_bytes);
        self.current_has_records = true;
        self.unsynced = true;
        self.state.apply(parts, false).expect("a validated write applies");
        let segment = self.segments.back_mut().expect("a WAL always has a segment");
        if let Some(last) = parts.entries.last() {
            segment.max_index_written = segment.max_index_written.max(last.index);
        }
        self.assert_invariants();
        Ok(())
    }

    /// Writes the encoded frame of `frame_length` bytes after the current segment's last
    /// record (preallocating first).
    fn append_frame(&mut self, frame_length: u64) -> Result<(), WalError> {
        assert_eq!(self.encode_buffer.len() as u64, frame_length, "the encoded frame is what is written");
        self.preallocate_for(frame_length)?;
        let result = self.current_file.write_all(&self.encode_buffer);
        self.check_space(result, self.current_segment_path())?;
        let end_bytes = self.current_size_bytes + frame_length;
        assert!(self.preallocated_bytes == 0 || self.preallocated_bytes >= end_bytes, "written over zeros");
        Ok(())
    }

    /// After a write the disk had no room for: cuts the current segment back to its last
    /// whole record, so no partial record (or zeros of a partial preallocation) stays in
    /// the file, and their space is freed. Failing to cut poisons the WAL.
    fn cut_partial_record(&mut self) -> Result<(), WalError> {
        let result = self.current_file.truncate(self.current_size_bytes);
        self.check_io(result, self.current_segment_path())?;
        if self.preallocated_bytes != 0 {
            self.preallocated_bytes = self.current_size_bytes;
        }
        assert!(self.preallocated_bytes == 0 || self.preallocated_bytes == self.current_size_bytes);
        assert!(!self.poisoned, "a cut after a full disk keeps the WAL usable");
        tracing::debug!(bytes = self.current_size_bytes, "WAL: cut a partial record after a full disk");
        Ok(())
    }

    /// Makes room for `frame_length` more bytes in the current segment's preallocated
    /// zeros, extending them by [`PREALLOCATION_STEP_BYTES`] when they run out.
    fn preallocate_for(&mut self, frame_length: u64) -> Result<(), WalError> {
        assert!(frame_length > codec::FRAME_HEADER_SIZE_BYTES as u64, "a frame has a header and a payload");
        let needed_bytes = self.current_size_bytes + frame_length;
        if needed_bytes <= self.preallocated_bytes {
            return Ok(());
        }
        let step = PREALLOCATION_STEP_BYTES;
        let target_bytes = needed_bytes.div_ceil(step) * step;
        let target_bytes = target_bytes.min(self.options.segment_size_bytes_max).max(needed_bytes);
        let result = self.current_file.preallocate(target_bytes);
        self.preallocated_bytes = self.check_space(result, self.current_segment_path())?;
        // `WalFile::preallocate`: the file's length, at least the one asked for, or 0.
        assert!(self.preallocated_bytes == 0 || self.preallocated_bytes >= needed_bytes, "room for the frame");
        Ok(())
    }

    /// Syncs the current segment, then creates segment `sequence` (header and a preamble
    /// record holding the snapshot position and hard state) under a temporary name,
    /// syncs it, renames it into place and syncs the directory. It becomes current.
    pub(crate) fn start_segment(&mut self, sequence: u64) -> Result<(), WalError> {
        assert!(self.segments.back().is_none_or(|last| last.sequence + 1 == sequence), "the next sequence");
        if self.preallocated_bytes > self.current_size_bytes {
            // Sealed segments end at their last record: only the last one has zeros ahead.
            let result = self.current_file.truncate(self.current_size_bytes);
            self.check_io(result, self.current_segment_path())?;
        }
        self.preallocated_bytes = 0;
        if self.unsynced {
            let result = self.current_file.sync_data();
            self.check_io(result, self.current_segment_path())?;
            self.unsynced = false;
        }
        let mut bytes = Vec::with_capacity(codec::SEGMENT_HEADER_SIZE_BYTES + 256);
        codec::encode_segment_header(self.identity(), sequence, &mut bytes);
        let meta = &self.state.snapshot_meta;
        let marker = SnapshotMarker { index: meta.index, term: meta.term, conf: meta.conf.clone(), keep_suffix: true };
        let preamble = RecordParts {
            snapshot_marker: Some(&marker),
            hard_state: Some(self.state.hard_state),
            ..RecordParts::default()
        };
        codec::encode_frame(&mut bytes, |out| codec::encode_record(&preamble, out));
        let final_path = self.directory.join(names::segment_file_name(sequence));
        let file = self.write_file_atomically(&final_path, &mut |file| file.write_all(&bytes))?;
        self.current_file = file;
        self.current_size_bytes = bytes.len() as u64;
        self.current_has_records = false;
        self.segments.push_back(SegmentInfo { sequence, max_index_written: 0 });
        debug_assert!(self
            .segments
            .iter()
            .zip(self.segments.iter().skip(1))
            .all(|(a, b)| b.sequence == a.sequence + 1));
        self.assert_invariants();
        Ok(())
    }

    /// Writes a temporary file with `write`, syncs it, renames it to `final_path` and
    /// syncs the directory. Returns the open file (positioned at its end). If the disk is
    /// full before the rename, the temporary file is removed and nothing changed.
    fn write_file_atomically(
        &mut self,
        final_path: &Path,
        write: &mut dyn FnMut(&mut dyn WalFile) -> std::io::Result<()>,
    ) -> Result<Box<dyn WalFile>, WalError> {
        let file_system = self.options.file_system.clone();
        let temporary_path = names::temporary_path(final_path);
        assert!(final_path.starts_with(&self.directory), "WAL files live in its directory");
        let placed = self.write_and_rename(&temporary_path, final_path, write);
        if matches!(&placed, Err(error) if error.is_no_space()) {
            if let Err(error) = file_system.remove_file(&temporary_path) {
                let path = temporary_path.display();
                tracing::warn!(path = %path, %error, "WAL: could not remove a temporary file after a full disk");
            }
        }
        let file = placed?;
        let directory_synced = file_system.sync_directory(&self.directory);
        self.check_io(directory_synced, self.directory.clone())?;
        assert!(!self.poisoned, "placed and durable");
        Ok(file)
    }

    /// The part of [`Wal::write_file_atomically`] a full disk can stop without harm:
    /// create, write and sync `temporary_path`, rename it to `final_path`.
    fn write_and_rename(
        &mut self,
        temporary_path: &Path,
        final_path: &Path,
        write: &mut dyn FnMut(&mut dyn WalFile) -> std::io::Result<()>,
    ) -> Result<Box<dyn WalFile>, WalError> {
        assert_ne!(temporary_path, final_path, "written under another name first");
        let file_system = self.options.file_system.clone();
        let created = file_system.create_file(temporary_path);
        let mut file = self.check_space(created, temporary_path)?;
        let written = write(&mut *file);
        self.check_space(written, temporary_path)?;
        // A failed sync of a file nothing refers to yet loses nothing, but only a full
        // disk is retried; any other error poisons (the disk may be failing).
        let synced = file.sync_data();
        self.check_space(synced, temporary_path)?;
        let renamed = file_system.rename(temporary_path, final_path);
        self.check_space(renamed, final_path)?;
        Ok(file)
    }

    /// Writes the snapshot file for `meta`: header, the `data_length_bytes` bytes that
    /// `write_data` produces (streamed in large writes), checksum.
    fn store_snapshot_file(
        &mut self,
        meta: &SnapshotMeta,
        data_length_bytes: u64,
        write_data: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<(), WalError> {
        assert!(meta.index > self.state.snapshot_meta.index, "only a newer snapshot is stored");
        let header = codec::snapshot_file_header(self.identity(), meta, data_length_bytes);
        let path = self.directory.join(names::snapshot_file_name(meta.index, meta.term));
        self.write_file_atomically(&path, &mut |file| {
            crate::snapshot_writer::write_snapshot_body(file, &header, data_length_bytes, write_data)
        })?;
        Ok(())
    }

    /// Removes, oldest first, the segments whose entries the snapshot covers (never the
    /// current one) while there are more than `segment_files_max`, then the snapshot files
    /// older than the current one beyond `snapshot_files_max` (and any that is not older).
    /// Called only once the snapshot marker is durable.
    pub(crate) fn remove_obsolete_files(&mut self) -> Result<(), WalError> {
        let file_system = self.options.file_system.clone();
        let snapshot_index = self.state.snapshot_meta.index;
        let current_sequence = self.segments.back().map(|segment| segment.sequence);
        let too_many = |count: usize, max: u64| max != 0 && count as u64 > max;
        while self.segments.len() > 1
            && self.segments[0].max_index_written <= snapshot_index
            && too_many(self.segments.len(), self.options.segment_files_max)
        {
            let path = self.directory.join(names::segment_file_name(self.segments[0].sequence));
            let removed = file_system.remove_file(&path);
            self.check_io(removed, &path)?;
            // One directory sync per removal keeps the retained segments contiguous.
            let synced = file_system.sync_directory(&self.directory);
            self.check_io(synced, self.directory.clone())?;
            self.segments.pop_front();
        }
        let listing = names::list(&*file_system, &self.directory)?;
        let current_name = names::snapshot_file_name(snapshot_index, self.state.snapshot_meta.term);
        let mut removed_any = false;
        let older = listing.snapshots.iter().filter(|name| **name < current_name).count();
        // The current file counts as one of the kept files.
        let older_kept = match self.options.snapshot_files_max {
            0 => older,
            max => older.min(max.saturating_sub(1) as usize),
        };
        let mut older_seen = 0;
        let removable = listing.snapshots.iter().filter(|name| {
            let is_older = **name < current_name;
            older_seen += usize::from(is_older);
            **name != current_name && (!is_older || older_seen <= older - older_kept)
        });
        for name in removable {
            let path = self.directory.join(name);
            let removed = file_system.remove_file(&path);
            self.check_io(removed, &path)?;
            removed_any = true;
        }
        if removed_any {
            let synced = file_system.sync_directory(&self.directory);
            self.check_io(synced, self.directory.clone())?;
        }
        assert!(!self.segments.is_empty(), "the current segment is never removed");
        assert_eq!(self.segments.back().map(|segment| segment.sequence), current_sequence, "still current");
        debug_assert!(self
            .segments
            .iter()
            .zip(self.segments.iter().skip(1))
            .all(|(a, b)| b.sequence == a.sequence + 1));
        Ok(())
    }
}

/// Checks that `entries` are contiguous and start at most one after `last_index`.
fn check_entries(entries: &[Entry], last_index: Index) -> Result<(), WalError> {
    let first_index = entries[0].index;
    if first_index == 0 || first_index > last_index + 1 {
        return Err(WalError::InvalidWrite(format!("gap in log: entry {first_index} after {last_index}")));
    }
    let contiguous = entries.iter().enumerate().all(|(position, entry)| entry.index == first_index + position as u64);
    if !contiguous {
        return Err(WalError::InvalidWrite("entries in a batch are not contiguous".into()));
    }
    assert!(first_index > 0 && first_index <= last_index + 1, "checked above");
    Ok(())
}

/// Splits `entries` into runs whose encoding fits `budget_bytes` (always at least one run).
fn split_entries(entries: &[Entry], budget_bytes: usize) -> Result<Vec<&[Entry]>, WalError> {
    let mut chunks = Vec::new();
    let (mut start, mut size_bytes) = (0, 0);
    for (position, entry) in entries.iter().enumerate() {
        let entry_size_bytes = codec::encoded_entry_size_bytes(entry);
        if entry_size_bytes > budget_bytes {
            return Err(WalError::InvalidWrite(format!(
                "entry {} of {entry_size_bytes} bytes is too large",
                entry.index
            )));
        }
        if size_bytes + entry_size_bytes > budget_bytes {
            chunks.push(&entries[start..position]);
            (start, size_bytes) = (position, 0);
        }
        size_bytes += entry_size_bytes;
    }
    chunks.push(&entries[start..]);
    debug_assert!(chunks
        .iter()
        .all(|chunk| chunk.iter().map(codec::encoded_entry_size_bytes).sum::<usize>() <= budget_bytes));
    assert!(chunks.iter().map(|chunk| chunk.len()).sum::<usize>() == entries.len(), "chunks cover the batch");
    Ok(chunks)
}

impl Drop for Wal {
    /// A WAL closed cleanly leaves its last segment ending at its last record; after a
    /// crash, recovery cuts the preallocated zeros instead.
    fn drop(&mut self) {
        if !self.poisoned && self.preallocated_bytes > self.current_size_bytes {
            if let Err(error) = self.current_file.truncate(self.current_size_bytes) {
                tracing::warn!(%error, "WAL: could not cut preallocated zeros on close (recovery will)");
            }
        }
    }
}

/// The file handle of a WAL that has no segment yet (only during `create`).
#[derive(Debug)]
struct NoFile;

impl WalFile for NoFile {
    fn write_all(&mut self, _bytes: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("no segment open"))
    }

    fn sync_data(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn truncate(&mut self, _length_bytes: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("no segment open"))
    }

    fn try_clone(&self) -> std::io::Result<Box<dyn WalFile>> {
        Err(std::io::Error::other("no segment open"))
    }
}

impl Storage for Wal {
    fn initial_state(&self) -> Result<raft::InitialState, StorageError> {
        Ok(raft::InitialState { hard_state: self.state.hard_state, conf_state: self.state.snapshot_meta.conf.clone() })
    }

    fn entries(&self, low: Index, high: Index, size_bytes_max: u64) -> Result<Vec<Entry>, StorageError> {
        assert!(low <= high, "entries: low {low} > high {high}");
        if low < self.first_index() {
            return Err(StorageError::Compacted);
        }
        if high > self.last_index() + 1 {
            return Err(StorageError::Unavailable);
        }
        let offset = self.state.entries_first_index;
        assert!(low >= offset, "first_index() is entries_first_index");
        let range = (low - offset) as usize..(high - offset) as usize;
        let mut result = Vec::with_capacity(range.len().min(1024));
        let mut total_bytes = 0u64;
        for entry in self.state.entries.range(range) {
            total_bytes += entry.size_bytes();
            if !result.is_empty() && total_bytes > size_bytes_max {
                break;
            }
            result.push(entry.clone());
        }
        assert!(result.len() <= (high - low) as usize, "no more than asked for");
        debug_assert!(result.iter().enumerate().all(|(position, entry)| entry.index == low + position as u64));
        Ok(result)
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        let term = self.state.term(index);
        assert!(term.is_ok() || index != self.state.snapshot_meta.index, "the snapshot's term is known");
        term
    }

    fn first_index(&self) -> Index {
        let first_index = self.state.snapshot_meta.index + 1;
        assert!(first_index <= self.state.last_index() + 1, "an empty log has first = last + 1");
        first_index
    }

    fn last_index(&self) -> Index {
        let last_index = self.state.last_index();
        assert!(last_index >= self.state.snapshot_meta.index, "the log ends at or after its snapshot");
        last_index
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        let mut cached = self.snapshot_data.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let data = match &*cached {
            Some(data) => data.clone(),
            None => {
                let data = crate::recovery::load_snapshot(
                    &*self.options.file_system,
                    &self.directory,
                    self.identity(),
                    &self.state,
                )
                .map_err(|error| StorageError::Other(error.to_string()))?;
                cached.insert(data).clone()
            }
        };
        assert!(self.state.snapshot_meta.index > 0 || data.is_empty(), "snapshot data without a snapshot");
        Ok(Snapshot { meta: self.state.snapshot_meta.clone(), data })
    }
}
