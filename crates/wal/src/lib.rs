//! raftkv's durable Raft log (write-ahead log).
//!
//! A [`Wal`] keeps a node's log, hard state and snapshot in a directory:
//!
//! - **Segments** (`segment-<seq>.wal`): append-only files of checksummed records. Each
//!   [`WriteBatch`] (snapshot position, entries, hard state: what one `raft::Ready` asks
//!   to persist) is one record, so it is recovered whole or not at all. A segment rolls
//!   at [`WalOptions::segment_size_bytes_max`] (64 MiB by default).
//! - **Snapshots** (`snapshot-<index>-<term>.snap`): written atomically (temporary file,
//!   fsync, rename, directory fsync), with a checksum.
//!
//! Durability: [`Wal::write`] returns once the batch is on disk (`fdatasync`). For group
//! commit, call [`Wal::append_batch`] for several batches and then one [`Wal::sync`].
//! Files are created, renamed and removed with a directory fsync.
//!
//! Reads go through [`raft::Storage`], served from memory. Recovery ([`Wal::open`]) cuts
//! a torn tail of the last segment and refuses any other damage with an error naming the
//! file and offset. The format is described in `docs/wal-format.md`.
//!
//! [`fault::SimulatedFileSystem`] is an in-memory file layer that loses unsynced data at a
//! chosen operation, for crash tests; [`conformance`] checks any `raft::Storage` against
//! the trait's rules.
//!
//! ```
//! use raft::{ConfState, Entry, EntryKind, HardState, Storage};
//! use wal::{Wal, WalOptions, WriteBatch};
//!
//! let directory = tempfile::tempdir().unwrap();
//! let conf = ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] };
//! let mut log = Wal::create(directory.path(), WalOptions::new(7, 1), conf).unwrap();
//! let entry = Entry { term: 1, index: 1, kind: EntryKind::Normal, data: "put a 1".into() };
//! let hard_state = HardState { term: 1, vote: 1, commit: 0 };
//! log.write(&WriteBatch { snapshot: None, entries: vec![entry], hard_state: Some(hard_state) }).unwrap();
//! drop(log);
//! let log = Wal::open(directory.path(), WalOptions::new(7, 1)).unwrap();
//! assert_eq!(log.last_index(), 1);
//! assert_eq!(log.initial_state().unwrap().hard_state, hard_state);
//! ```

#![warn(missing_docs)]

mod codec;
pub mod conformance;
mod error;
pub mod fault;
mod file_system;
mod names;
mod recovery;
mod snapshot_writer;
mod state;
mod wal;

pub use error::{is_no_space_error, WalError};
pub use file_system::{BufferedUntilSyncFileSystem, FileSystem, StdFileSystem, WalFile};
pub use snapshot_writer::{PreparedSnapshot, SnapshotInstall, SnapshotWriter};
pub use wal::{DetachedSync, Wal, WalOptions, WriteBatch, PREALLOCATION_STEP_BYTES, SEGMENT_SIZE_BYTES_MAX_DEFAULT};
