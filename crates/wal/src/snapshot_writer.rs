//! Snapshots written off the Raft thread, in two steps:
//!
//! 1. **Prepare** ([`Wal::snapshot_writer`], then [`SnapshotWriter::write_from`] on any
//!    thread): the snapshot file is written under a temporary name from a state machine
//!    view, synced, and its directory synced. The WAL is not needed (nor locked) meanwhile:
//!    it goes on taking appends.
//! 2. **Install** ([`Wal::install_snapshot`], on the WAL's thread, short): the file is
//!    renamed into place, the directory synced, the snapshot marker record written and
//!    synced, obsolete segments and snapshot files removed.
//!
//! Rules:
//! - Nothing refers to a prepared file before its install writes the marker, so a crash at
//!   any point leaves the old snapshot in force: recovery removes leftover temporary files
//!   and snapshot files newer than the log's.
//! - An install checks that the log has not moved past the prepared snapshot (a snapshot
//!   from the leader installed, or another compaction, meanwhile, or the entry at its index
//!   replaced): then the prepared file is removed and [`SnapshotInstall::Discarded`]
//!   returned, and the log is unchanged.
//! - A failed prepare leaves the WAL as it was (it is not poisoned: nothing refers to the
//!   file) and removes its temporary file; a full disk is [`WalError::NoSpace`].
//! - Every writer has its own temporary name, so writers never overwrite each other's
//!   files, nor the file of a snapshot received from the leader.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::{ConfState, Index, SnapshotMeta};

use crate::codec::{self, FileIdentity, SnapshotMarker};
use crate::error::{is_no_space_error, WalError};
use crate::file_system::{FileSystem, WalFile};
use crate::names;
use crate::wal::Wal;

/// Writes one snapshot file without the WAL, on any thread (see the module rules). Taken
/// with [`Wal::snapshot_writer`]; consumed by writing.
#[derive(Debug)]
pub struct SnapshotWriter {
    file_system: Arc<dyn FileSystem>,
    directory: PathBuf,
    identity: FileIdentity,
    /// Where the snapshot goes. Invariant: `meta.index > 0`.
    meta: SnapshotMeta,
    /// This writer's own temporary file (in `directory`).
    temporary_path: PathBuf,
}

/// A snapshot file written and durable under its temporary name, that the log does not
/// refer to yet: give it to [`Wal::install_snapshot`], or [`PreparedSnapshot::discard`] it.
#[derive(Debug)]
#[must_use = "a prepared snapshot is installed or discarded"]
pub struct PreparedSnapshot {
    meta: SnapshotMeta,
    directory: PathBuf,
    temporary_path: PathBuf,
    data_length_bytes: u64,
    file_system: Arc<dyn FileSystem>,
}

/// What [`Wal::install_snapshot`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotInstall {
    /// The prepared snapshot is the log's snapshot; the entries it covers are compacted.
    Installed,
    /// The log moved past the prepared snapshot meanwhile; its file was removed and the
    /// log is unchanged.
    Discarded {
        /// Why.
        reason: String,
    },
}

impl SnapshotWriter {
    /// The snapshot's position and membership.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Writes the snapshot of `state_machine`, which must be at the snapshot index,
    /// streamed straight into the file ([`raft::Snapshottable::write_snapshot`]).
    pub fn write_from(self, state_machine: &dyn raft::Snapshottable) -> Result<PreparedSnapshot, WalError> {
        assert_eq!(state_machine.applied_index(), self.meta.index, "the state machine is at the snapshot index");
        let length_bytes = state_machine.snapshot_length_bytes();
        self.write_with(length_bytes, &mut |out| state_machine.write_snapshot(out))
    }

    /// Writes the `data_length_bytes` bytes that `write_data` produces as the snapshot's
    /// data (an error if it produces another count), syncs the file and its directory.
    pub fn write_with(
        self,
        data_length_bytes: u64,
        write_data: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> Result<PreparedSnapshot, WalError> {
        assert!(self.meta.index > 0, "a snapshot stands for at least one entry");
        let header = codec::snapshot_file_header(self.identity, &self.meta, data_length_bytes);
        let written = self.write_file(&header, data_length_bytes, write_data);
        if let Err(error) = written {
            remove_best_effort(&*self.file_system, &self.temporary_path);
            let path = self.temporary_path.clone();
            return Err(if is_no_space_error(&error) {
                WalError::NoSpace { path, source: error }
            } else {
                WalError::io(path, error)
            });
        }
        let SnapshotWriter { file_system, directory, meta, temporary_path, .. } = self;
        Ok(PreparedSnapshot { meta, directory, temporary_path, data_length_bytes, file_system })
    }

    fn write_file(
        &self,
        header: &[u8],
        data_length_bytes: u64,
        write_data: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        assert_eq!(self.temporary_path.parent(), Some(self.directory.as_path()), "synced with its directory");
        let mut file = self.file_system.create_file(&self.temporary_path)?;
        write_snapshot_body(&mut *file, header, data_length_bytes, write_data)?;
        file.sync_data()?;
        // The name is made durable now too, so the install's rename has only its own
        // directory sync to wait for.
        self.file_system.sync_directory(&self.directory)
    }
}

impl PreparedSnapshot {
    /// The snapshot's position and membership.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Bytes of state machine data in the file.
    pub fn data_length_bytes(&self) -> u64 {
        self.data_length_bytes
    }

    /// Removes the prepared file (best effort: a file left behind is removed when the WAL
    /// is next opened).
    pub fn discard(self) {
        assert!(self.temporary_path.starts_with(&self.directory), "only the prepared file is removed");
        remove_best_effort(&*self.file_system, &self.temporary_path);
    }
}

impl Wal {
    /// A writer for a snapshot of the state machine at `index` with membership `conf`
    /// (see [`SnapshotWriter`]); `None` if `index` is not above the current snapshot (as
    /// [`Wal::compact`], there is nothing to do). Fails if `index` is past the last entry.
    pub fn snapshot_writer(&mut self, index: Index, conf: ConfState) -> Result<Option<SnapshotWriter>, WalError> {
        self.check_usable()?;
        if index <= self.state.snapshot_meta.index {
            return Ok(None);
        }
        if index > self.state.last_index() {
            return Err(WalError::InvalidWrite(format!(
                "compact to {index} beyond the last entry {}",
                self.state.last_index()
            )));
        }
        assert!(index > self.state.snapshot_meta.index && index <= self.state.last_index(), "checked above");
        let term = self.state.term(index).expect("index is in range");
        self.snapshot_writers_started += 1;
        let name = names::snapshot_file_name(index, term);
        let temporary_path = names::prepared_snapshot_path(&self.directory, &name, self.snapshot_writers_started);
        assert!(temporary_path.starts_with(&self.directory), "the prepared file lives in the WAL directory");
        Ok(Some(SnapshotWriter {
            file_system: self.options.file_system.clone(),
            directory: self.directory.clone(),
            identity: self.identity(),
            meta: SnapshotMeta { index, term, conf },
            temporary_path,
        }))
    }

    /// Makes `prepared` the log's snapshot (see the module rules): renames its file into
    /// place, syncs the directory, writes and syncs the snapshot marker, then removes the
    /// obsolete files. A full disk is [`WalError::NoSpace`] with the old snapshot kept and
    /// the prepared file removed; any other I/O failure poisons the WAL.
    pub fn install_snapshot(&mut self, prepared: PreparedSnapshot) -> Result<SnapshotInstall, WalError> {
        if let Err(error) = self.check_usable() {
            prepared.discard();
            return Err(error);
        }
        assert_eq!(prepared.directory, self.directory, "a snapshot is installed in the WAL that prepared it");
        if let Some(reason) = self.install_conflict(&prepared.meta) {
            prepared.discard();
            return Ok(SnapshotInstall::Discarded { reason });
        }
        let meta = prepared.meta.clone();
        let final_path = self.directory.join(names::snapshot_file_name(meta.index, meta.term));
        let renamed = self.options.file_system.rename(&prepared.temporary_path, &final_path);
        if let Err(error) = self.check_space(renamed, &final_path) {
            prepared.discard();
            return Err(error);
        }
        let synced = self.options.file_system.sync_directory(&self.directory);
        self.check_io(synced, self.directory.clone())?;
        let marker = SnapshotMarker { index: meta.index, term: meta.term, conf: meta.conf.clone(), keep_suffix: true };
        self.write_snapshot_marker(marker, &meta)?;
        assert_eq!(self.state.snapshot_meta, meta, "the marker made the prepared snapshot current");
        self.sync()?;
        Ok(SnapshotInstall::Installed)
    }

    /// Why a prepared snapshot at `meta` may not be installed now, if so.
    fn install_conflict(&self, meta: &SnapshotMeta) -> Option<String> {
        assert!(meta.index > 0, "a prepared snapshot stands for at least one entry");
        let current = &self.state.snapshot_meta;
        if meta.index <= current.index {
            return Some(format!(
                "the log's snapshot moved to ({}, {}) past the prepared ({}, {})",
                current.index, current.term, meta.index, meta.term
            ));
        }
        match self.state.term(meta.index) {
            Ok(term) if term == meta.term => None,
            found => {
                Some(format!("the log no longer holds entry {} of term {} (found {found:?})", meta.index, meta.term))
            }
        }
    }
}

/// Writes a snapshot file's content to `file`: `header`, the `data_length_bytes` bytes
/// that `write_data` produces (streamed in large writes), the checksum of both.
pub(crate) fn write_snapshot_body(
    file: &mut dyn WalFile,
    header: &[u8],
    data_length_bytes: u64,
    write_data: &mut dyn FnMut(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut out = ChecksummingWriter::new(file);
    std::io::Write::write_all(&mut out, header)?;
    write_data(&mut out)?;
    let checksum = out.finish()?;
    let data_written_bytes = out.written_bytes - header.len() as u64;
    if data_written_bytes != data_length_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("snapshot data is {data_written_bytes} bytes, announced {data_length_bytes}"),
        ));
    }
    assert!(out.buffer.is_empty(), "everything buffered reached the file");
    assert_eq!(out.written_bytes, header.len() as u64 + data_length_bytes, "header and data, as announced");
    file.write_all(&checksum.to_le_bytes())
}

/// Removes `path`, logging (not failing) if it cannot.
fn remove_best_effort(file_system: &dyn FileSystem, path: &Path) {
    let name = path.to_string_lossy();
    assert!(name.ends_with(".tmp") || name.ends_with(".snap"), "only snapshot files are removed here");
    if let Err(error) = file_system.remove_file(path) {
        tracing::warn!(path = %path.display(), %error, "WAL: could not remove a snapshot file nothing refers to");
    }
}

/// Forwards bytes to a [`WalFile`] in writes of about [`ChecksummingWriter::WRITE_BYTES`],
/// keeping their CRC32C and count.
struct ChecksummingWriter<'a> {
    file: &'a mut dyn WalFile,
    /// Bytes not yet written to the file. Invariant: shorter than `WRITE_BYTES` between calls.
    buffer: Vec<u8>,
    checksum: u32,
    written_bytes: u64,
}

impl<'a> ChecksummingWriter<'a> {
    const WRITE_BYTES: usize = 1 << 20;

    fn new(file: &'a mut dyn WalFile) -> ChecksummingWriter<'a> {
        let writer =
            ChecksummingWriter { file, buffer: Vec::with_capacity(Self::WRITE_BYTES), checksum: 0, written_bytes: 0 };
        assert!(writer.buffer.capacity() >= Self::WRITE_BYTES, "the buffer is allocated once");
        writer
    }

    /// Writes what is buffered; returns the checksum of everything written.
    fn finish(&mut self) -> std::io::Result<u32> {
        std::io::Write::flush(self)?;
        assert!(self.buffer.is_empty(), "a flush empties the buffer");
        Ok(self.checksum)
    }
}

impl std::io::Write for ChecksummingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.checksum = crc32c::crc32c_append(self.checksum, bytes);
        self.written_bytes += bytes.len() as u64;
        if bytes.len() >= Self::WRITE_BYTES {
            self.flush()?;
            self.file.write_all(bytes)?;
            return Ok(bytes.len());
        }
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= Self::WRITE_BYTES {
            self.flush()?;
        }
        assert!(self.buffer.len() < Self::WRITE_BYTES, "the buffer stays bounded");
        assert!(self.written_bytes >= self.buffer.len() as u64, "buffered bytes are counted");
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            self.file.write_all(&self.buffer)?;
            self.buffer.clear();
        }
        assert!(self.buffer.is_empty(), "everything reached the file");
        Ok(())
    }
}
