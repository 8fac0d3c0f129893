//! A page cache in front of the simulated disk, so an fsync covers exactly what it must.
//!
//! `SimulatedFileSystem::sync_data` makes durable every byte written when it runs. The
//! simulator runs a detached sync when it completes, so it would also cover bytes appended
//! after the sync was requested, and every append would be durable within milliseconds.
//! Here written bytes stay in a cache until a sync: a file's own `sync_data` writes and
//! syncs all of them, a handle from `try_clone` (the WAL's detached sync) only those
//! written before the handle was taken. Bytes still cached are lost in a crash: a
//! legal, and the most adversarial, behaviour of a real page cache.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use wal::fault::SimulatedFileSystem;
use wal::{FileSystem, WalFile};

/// Bytes a file keeps cached at most before a write fails (the WAL syncs long before).
pub const CACHED_BYTES_MAX: usize = 64 << 20;

/// [`SimulatedFileSystem`] behind a page cache (see the module documentation).
#[derive(Clone, Debug)]
pub struct PageCacheFileSystem {
    inner: SimulatedFileSystem,
}

impl PageCacheFileSystem {
    /// A page cache in front of `inner`.
    pub fn new(inner: SimulatedFileSystem) -> PageCacheFileSystem {
        PageCacheFileSystem { inner }
    }
}

/// What an open file has written but not yet handed to the disk.
///
/// Invariant: `bytes` follow the `flushed` bytes already handed to the disk.
#[derive(Debug, Default)]
struct Cache {
    bytes: Vec<u8>,
    flushed: usize,
}

#[derive(Debug)]
struct CachedFile {
    inner: Box<dyn WalFile>,
    cache: Arc<Mutex<Cache>>,
    /// For a handle from `try_clone`: the end (in bytes written) its sync covers.
    covered_end: Option<usize>,
}

impl CachedFile {
    fn boxed(inner: Box<dyn WalFile>) -> Box<dyn WalFile> {
        Box::new(CachedFile { inner, cache: Arc::default(), covered_end: None })
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands the cached bytes up to `end` (all of them for `None`) to the disk.
    fn flush(&mut self, end: Option<usize>) -> io::Result<()> {
        let cache = self.cache.clone();
        let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let written_end = cache.flushed + cache.bytes.len();
        let count = end.unwrap_or(written_end).min(written_end).saturating_sub(cache.flushed);
        if count > 0 {
            self.inner.write_all(&cache.bytes[..count])?;
            cache.bytes.drain(..count);
            cache.flushed += count;
        }
        Ok(())
    }
}

impl WalFile for CachedFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut cache = self.lock();
        if cache.bytes.len() + bytes.len() > CACHED_BYTES_MAX {
            return Err(io::Error::other("page cache full"));
        }
        cache.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.flush(self.covered_end)?;
        self.inner.sync_data()
    }

    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        self.flush(None)?;
        let mut cache = self.lock();
        cache.flushed = cache.flushed.min(length_bytes as usize);
        drop(cache);
        self.inner.truncate(length_bytes)
    }

    fn try_clone(&self) -> io::Result<Box<dyn WalFile>> {
        let cache = self.lock();
        let covered_end = Some(cache.flushed + cache.bytes.len());
        drop(cache);
        Ok(Box::new(CachedFile { inner: self.inner.try_clone()?, cache: self.cache.clone(), covered_end }))
    }

    fn preallocate(&mut self, length_bytes: u64) -> io::Result<u64> {
        self.inner.preallocate(length_bytes)
    }
}

impl FileSystem for PageCacheFileSystem {
    fn create_directory_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_directory_all(path)
    }

    fn list_directory(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_directory(path)
    }

    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        self.inner.create_file(path).map(CachedFile::boxed)
    }

    fn open_file_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        self.inner.open_file_append(path).map(CachedFile::boxed)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn sync_directory(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_directory(path)
    }
}
