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

    /// A [`WalError::Corrupt`] at `offset` of `path`.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        WalError::Corrupt { path: path.into(), offset, reason: reason.into() }
    }
}

impl From<WalError> for raft::StorageError {
    fn from(error: WalError) -> Self {
        raft::StorageError::Other(error.to_string())
    }
}
