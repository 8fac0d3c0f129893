//! The file operations the WAL uses, behind a trait so tests can inject crashes.
//!
//! [`StdFileSystem`] is the real implementation (std::fs, `fdatasync`, directory fsync).
//! [`crate::fault::SimulatedFileSystem`] is an in-memory one that loses unsynced data
//! at a chosen operation.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// An open file the WAL appends to.
pub trait WalFile: Send + Debug {
    /// Appends all of `bytes` at the end of the file (not durable until [`WalFile::sync_data`]).
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `length_bytes` and makes the new length durable; later writes
    /// append at the new end.
    fn truncate(&mut self, length_bytes: u64) -> io::Result<()>;
    /// A second handle on the same open file, for syncing from another thread: its
    /// `sync_data` makes durable every byte written through either handle before the call.
    fn try_clone(&self) -> io::Result<Box<dyn WalFile>>;
    /// Extends the file with zero bytes to at least `length_bytes`, without moving the
    /// write position, and returns the file's length. Later writes up to that length
    /// then overwrite zeros instead of growing the file, so their `fdatasync` has no
    /// file size (inode) to write: one disk write per sync instead of two (etcd
    /// preallocates its WAL segments for the same reason). The zeros are not durable
    /// before the next [`WalFile::sync_data`], and recovery reads an all-zero tail as
    /// the end of the log. File systems that do not preallocate return `Ok(0)`.
    fn preallocate(&mut self, length_bytes: u64) -> io::Result<u64> {
        let _ = length_bytes;
        Ok(0)
    }
}

/// The directory and file operations the WAL needs.
///
/// Creating, renaming and removing files is durable only after [`FileSystem::sync_directory`]
/// on the parent directory; file contents only after [`WalFile::sync_data`].
pub trait FileSystem: Send + Sync + Debug {
    /// Creates `path` and its parents if missing.
    fn create_directory_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of directory `path`.
    fn list_directory(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Creates (or empties) the file at `path`, open for appending.
    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Opens the existing file at `path` for appending at its end.
    fn open_file_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// The whole content of the file at `path`.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in directory `path` durable.
    fn sync_directory(&self, path: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFileSystem;

#[derive(Debug)]
struct StdFile {
    file: File,
    /// The file's length: written bytes, then zeros from [`WalFile::preallocate`]. Known
    /// after `create_file`, `open_file_append`, `truncate` and `preallocate`; it may lag
    /// behind appends in between (`preallocate` catches up from the write position).
    length_bytes: u64,
}

/// Zeros written per `write` call when preallocating.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

impl WalFile for StdFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        self.file.set_len(length_bytes)?;
        let position = self.file.seek(SeekFrom::Start(length_bytes))?;
        assert_eq!(position, length_bytes, "later writes append at the new end");
        self.length_bytes = length_bytes;
        self.file.sync_all()
    }

    fn try_clone(&self) -> io::Result<Box<dyn WalFile>> {
        let clone = StdFile { file: self.file.try_clone()?, length_bytes: self.length_bytes };
        assert_eq!(clone.length_bytes, self.length_bytes, "both handles know the same file");
        Ok(Box::new(clone))
    }

    fn preallocate(&mut self, length_bytes: u64) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let position = self.file.stream_position()?;
        self.length_bytes = self.length_bytes.max(position);
        // Bounded: each write covers up to 64 KiB of the (bounded) gap.
        while self.length_bytes < length_bytes {
            let count = (length_bytes - self.length_bytes).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..count], self.length_bytes)?;
            self.length_bytes += count as u64;
        }
        assert_eq!(self.file.stream_position()?, position, "preallocating does not move the write position");
        assert!(self.length_bytes >= length_bytes, "at least the length asked for");
        Ok(self.length_bytes)
    }
}

impl FileSystem for StdFileSystem {
    fn create_directory_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)?;
        debug_assert!(path.is_dir(), "the directory exists");
        Ok(())
    }

    fn list_directory(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        debug_assert!(names.iter().all(|name| !name.contains('/')), "entry names, not paths");
        Ok(names)
    }

    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        assert_eq!(file.stream_position()?, 0, "a created file is empty and written from its start");
        Ok(Box::new(StdFile { file, length_bytes: 0 }))
    }

    fn open_file_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut file = OpenOptions::new().write(true).open(path)?;
        let length_bytes = file.seek(SeekFrom::End(0))?;
        assert_eq!(file.stream_position()?, length_bytes, "appends go at the end");
        Ok(Box::new(StdFile { file, length_bytes }))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut content = Vec::new();
        File::open(path)?.read_to_end(&mut content)?;
        Ok(content)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)?;
        debug_assert!(to.exists(), "the file is at its new name");
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        debug_assert!(!path.exists(), "the name is gone");
        Ok(())
    }

    fn sync_directory(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// A test-only file system that keeps written bytes in process memory until
/// [`WalFile::sync_data`]: a `SIGKILL` then loses everything not yet synced, as a power
/// failure would lose the page cache. Used by chaos tests (`raftkv serve
/// --unsafe-wal-buffer-unsynced`); never in production.
#[derive(Clone, Copy, Debug, Default)]
pub struct BufferedUntilSyncFileSystem;

#[derive(Debug)]
struct BufferedFile {
    file: File,
    /// Bytes written but not yet synced, shared by every handle on the file (see
    /// [`WalFile::try_clone`]). Bounded by what the WAL writes between syncs.
    pending: Arc<Mutex<Vec<u8>>>,
}

impl BufferedFile {
    fn new(file: File) -> BufferedFile {
        let buffered = BufferedFile { file, pending: Arc::new(Mutex::new(Vec::new())) };
        assert!(buffered.lock_pending().is_empty(), "nothing pending in a newly opened file");
        buffered
    }

    fn lock_pending(&self) -> MutexGuard<'_, Vec<u8>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl WalFile for BufferedFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut pending = self.lock_pending();
        let before = pending.len();
        pending.extend_from_slice(bytes);
        assert_eq!(pending.len(), before + bytes.len(), "every byte waits for the sync");
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        // The lock is held through the fsync so two handles never interleave their flushes.
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.file.write_all(&pending)?;
        pending.clear();
        assert!(pending.is_empty(), "a sync leaves nothing pending");
        self.file.sync_data()
    }

    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.file.write_all(&pending)?;
        pending.clear();
        self.file.set_len(length_bytes)?;
        let position = self.file.seek(SeekFrom::Start(length_bytes))?;
        assert_eq!(position, length_bytes, "later writes append at the new end");
        self.file.sync_all()
    }

    fn try_clone(&self) -> io::Result<Box<dyn WalFile>> {
        let clone = BufferedFile { file: self.file.try_clone()?, pending: self.pending.clone() };
        assert!(Arc::ptr_eq(&clone.pending, &self.pending), "handles share what is pending");
        Ok(Box::new(clone))
    }
}

impl FileSystem for BufferedUntilSyncFileSystem {
    fn create_directory_all(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.create_directory_all(path)
    }

    fn list_directory(&self, path: &Path) -> io::Result<Vec<String>> {
        StdFileSystem.list_directory(path)
    }

    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
        assert_eq!(file.stream_position()?, 0, "a created file is empty and written from its start");
        Ok(Box::new(BufferedFile::new(file)))
    }

    fn open_file_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(BufferedFile::new(file)))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        StdFileSystem.read_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFileSystem.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.remove_file(path)
    }

    fn sync_directory(&self, path: &Path) -> io::Result<()> {
        StdFileSystem.sync_directory(path)
    }
}
