//! The error type of every WAL operation.

use std::path::PathBuf;

/// Why a WAL operation failed.
///
/// Errors found while opening name the file and, where it applies, the byte offset of
/// the damage, so an operator can inspect it (`xxd -s OFFSET FILE`).
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// An I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A file is damaged somewhere other than a torn tail of the last segment.
    #[error("corrupt WAL file {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the first damaged record or field.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },
    /// A file's header names another cluster or node than the options.
    #[error(
        "{path} belongs to cluster {found_cluster_id:x} member {found_node_id:x}, \
         but this WAL was opened for cluster {expected_cluster_id:x} member {expected_node_id:x}"
    )]
    WrongIdentity {
        /// The file.
        path: PathBuf,
        /// Cluster id in the file header.
        found_cluster_id: u64,
        /// Node id in the file header.
        found_node_id: u64,
        /// Cluster id the WAL was opened with.
        expected_cluster_id: u64,
        /// Node id the WAL was opened with.
        expected_node_id: u64,
    },
    /// A file that recovery needs does not exist (a segment in the middle of the
    /// sequence, or the snapshot the log refers to).
    #[error("missing WAL file {path}: {reason}")]
    MissingFile {
        /// The file that should exist.
        path: PathBuf,
        /// Why it is needed.
        reason: String,
    },
    /// `open` found no segment in the directory.
    #[error("no WAL found in {directory}")]
    NotFound {
        /// The directory.
        directory: PathBuf,
    },
    /// `create` found segments already in the directory.
    #[error("a WAL already exists in {directory}")]
    AlreadyExists {
        /// The directory.
        directory: PathBuf,
    },
    /// The caller asked for a write that breaks the log's rules (a gap, a term going
    /// backwards, compacting past the last entry). Nothing was written.
    #[error("invalid write: {0}")]
    InvalidWrite(String),
    /// The file system is full (`ENOSPC`, or a disk quota reached: `EDQUOT`) while writing
    /// `path`. Unlike [`WalError::Io`] this does not poison the WAL: nothing that was
    /// durable changed, a partial record was cut off again, and what the failed call
    /// asked for is not in the log. Retry the same call once space is freed.
    #[error("no space left on device writing {path} ({source}); nothing was written, retry once space is freed")]
    NoSpace {
        /// The file (or directory) being written.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An earlier write or sync failed, so what is on disk is unknown; the WAL refuses
    /// every further write. Reopen it (recovery decides what is durable).
    #[error("the WAL is unusable after an earlier write failure; reopen it")]
    Poisoned,
}

impl WalError {
    /// An [`WalError::Io`] about `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        WalError::Io { path: path.into(), source }
    }

    /// True for [`WalError::NoSpace`]: a full disk, retryable once space is freed.
    pub fn is_no_space(&self) -> bool {
        matches!(self, WalError::NoSpace { .. })
    }

    /// A [`WalError::Corrupt`] at `offset` of `path`.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        let (path, reason) = (path.into(), reason.into());
        assert!(!path.as_os_str().is_empty() && !reason.is_empty(), "damage is reported with its file and cause");
        WalError::Corrupt { path, offset, reason }
    }
}

/// True if `error` says the file system is full (`ENOSPC`) or a disk quota is reached
/// (`EDQUOT`).
pub fn is_no_space_error(error: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(error.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        || matches!(error.raw_os_error(), Some(ENOSPC | EDQUOT))
}

impl From<WalError> for raft::StorageError {
    fn from(error: WalError) -> Self {
        raft::StorageError::Other(error.to_string())
    }
}
