//! A fault-injecting, in-memory file system for crash tests.
//!
//! [`SimulatedFileSystem`] keeps, for every file, what is durable (content at the last
//! `sync_data`) beside what was written, and for every directory the names that are
//! durable (as of the last `sync_directory`) beside the current ones. Every mutating
//! operation (create, write, sync, truncate, rename, remove, directory sync) is a
//! numbered *crash point*: [`SimulatedFileSystem::crash_at`] makes operation `k` fail and
//! every later one too, as if the machine lost power there. A write at the crash point
//! reaches the page cache before failing, so a torn prefix of it may survive.
//! [`SimulatedFileSystem::restart`] then gives the file system a machine would find after
//! rebooting: durable names and durable bytes, plus optionally a prefix of each file's
//! unsynced appended bytes (a torn write).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::file_system::{FileSystem, WalFile};

/// What survives of unsynced data when the simulated machine restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Unsynced bytes and unsynced directory changes are all lost.
    LoseUnsynced,
    /// Each file keeps a prefix of its unsynced appended bytes, of a length drawn from
    /// `seed` (0 to all of them); unsynced directory changes are lost.
    TornWrites {
        /// Seeds the choice of prefix lengths.
        seed: u64,
    },
    /// Unsynced directory changes (creations, renames, removals) survive; unsynced
    /// bytes are lost.
    KeepDirectoryChanges,
    /// A random subset (drawn from `seed`) of the unsynced directory changes survives,
    /// each change whole (a rename is atomic); unsynced bytes are lost.
    SomeDirectoryChanges {
        /// Seeds the choice of changes.
        seed: u64,
    },
}

/// A directory change not yet made durable by a directory sync.
#[derive(Clone, Debug)]
enum DirectoryChange {
    Create { path: PathBuf, inode: u64 },
    Rename { from: PathBuf, to: PathBuf, inode: u64 },
    Remove { path: PathBuf },
}

impl DirectoryChange {
    fn directory(&self) -> Option<&Path> {
        let directory = match self {
            DirectoryChange::Create { path, .. } | DirectoryChange::Remove { path } => path.parent(),
            DirectoryChange::Rename { from, to, .. } => {
                assert_eq!(from.parent(), to.parent(), "renames stay in one directory");
                to.parent()
            }
        };
        assert!(directory.is_some(), "every changed path is in a directory");
        directory
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirectoryChange::Create { path, inode } => {
                names.insert(path.clone(), *inode);
                assert_eq!(names.get(path), Some(inode), "the created name survives");
            }
            DirectoryChange::Rename { from, to, inode } => {
                names.remove(from);
                names.insert(to.clone(), *inode);
                assert_eq!(names.get(to), Some(inode), "a rename survives whole");
            }
            DirectoryChange::Remove { path } => {
                names.remove(path);
                assert!(!names.contains_key(path), "a removed name is gone");
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable_data: Vec<u8>,
    /// Where the next write goes (the end of the file unless zeros were preallocated).
    /// Invariant: `position <= data.len()`.
    position: usize,
}

impl Inode {
    fn assert_position(&self) {
        assert!(self.position <= self.data.len(), "the write position is inside the file");
    }
}

/// Invariants: every name (current or durable) points to an inode in `inodes`, numbered
/// below `next_inode`; once `crashed`, `operation_count` has reached `crash_at_operation`
/// and never moves again.
#[derive(Debug, Default)]
struct Disk {
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    unsynced_changes: Vec<DirectoryChange>,
    next_inode: u64,
    operation_count: u64,
    crash_at_operation: Option<u64>,
    crashed: bool,
}

impl Disk {
    /// Counts one crash point; fails at the chosen one and after.
    fn step(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crashed_error());
        }
        self.operation_count += 1;
        if self.crash_at_operation == Some(self.operation_count) {
            self.crashed = true;
            return Err(crashed_error());
        }
        assert!(!self.crashed, "a crashed disk counts no more operations");
        assert!(self.crash_at_operation.is_none_or(|at| self.operation_count < at), "the crash point is ahead");
        Ok(())
    }

    /// Checks the invariants on the fields (O(files): debug builds only).
    fn debug_assert_invariants(&self) {
        debug_assert!(self
            .names
            .values()
            .chain(self.durable_names.values())
            .all(|inode| { *inode < self.next_inode && self.inodes.contains_key(inode) }));
        debug_assert!(self.inodes.values().all(|inode| inode.position <= inode.data.len()));
        assert!(!self.crashed || self.crash_at_operation == Some(self.operation_count), "a crash stops the count");
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        let inode = self
            .names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display())));
        if let Ok(inode) = &inode {
            assert!(self.inodes.contains_key(inode), "names point to inodes");
        }
        inode
    }
}

fn crashed_error() -> io::Error {
    io::Error::other("simulated crash")
}

/// An in-memory file system that can crash at any operation. Cloning shares the disk.
#[derive(Clone, Debug, Default)]
pub struct SimulatedFileSystem {
    disk: Arc<Mutex<Disk>>,
}

impl SimulatedFileSystem {
    /// An empty disk that never crashes.
    pub fn new() -> Self {
        let file_system = SimulatedFileSystem::default();
        assert_eq!(file_system.operation_count(), 0, "a new disk has seen no operation");
        file_system
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes the `operation`-th mutating operation from now (1-based) fail, and every
    /// operation after it.
    pub fn crash_at(&self, operation: u64) {
        assert!(operation > 0, "operations are numbered from 1");
        let mut disk = self.lock();
        assert!(!disk.crashed, "a crash point is chosen on a running disk");
        disk.crash_at_operation = Some(disk.operation_count + operation);
    }

    /// Mutating operations performed so far (crash points passed).
    pub fn operation_count(&self) -> u64 {
        let disk = self.lock();
        disk.debug_assert_invariants();
        disk.operation_count
    }

    /// True once the crash point was reached.
    pub fn has_crashed(&self) -> bool {
        let disk = self.lock();
        assert!(!disk.crashed || disk.crash_at_operation.is_some(), "only a chosen crash point crashes");
        disk.crashed
    }

    /// The disk as found after a restart: a new file system (sharing nothing with this
    /// one) holding what survived under `mode`.
    pub fn restart(&self, mode: CrashMode) -> SimulatedFileSystem {
        let disk = self.lock();
        let mut random = raft::SplitMix64::new(match mode {
            CrashMode::TornWrites { seed } | CrashMode::SomeDirectoryChanges { seed } => seed,
            _ => 0,
        });
        let names = match mode {
            CrashMode::KeepDirectoryChanges => disk.names.clone(),
            CrashMode::SomeDirectoryChanges { .. } => {
                let mut names = disk.durable_names.clone();
                for change in disk.unsynced_changes.iter().filter(|_| random.chance(1, 2)) {
                    change.apply(&mut names);
                }
                names
            }
            _ => disk.durable_names.clone(),
        };
        let mut inodes = HashMap::new();
        assert!(names.values().all(|inode| disk.inodes.contains_key(inode)), "surviving names point to inodes");
        for inode_number in names.values() {
            let inode = &disk.inodes[inode_number];
            let mut survived = inode.durable_data.clone();
            // Unsynced bytes start where the content differs from the durable one (past
            // its end for appends; inside it for writes over synced preallocated zeros).
            let unsynced_start = inode.data.iter().zip(&survived).take_while(|(now, durable)| now == durable).count();
            if let (CrashMode::TornWrites { .. }, true) = (mode, inode.data.len() > unsynced_start) {
                let unsynced = &inode.data[unsynced_start..];
                let kept_end = unsynced_start + random.range(0, unsynced.len() as u64 + 1) as usize;
                if survived.len() < kept_end {
                    survived.resize(kept_end, 0);
                }
                survived[unsynced_start..kept_end].copy_from_slice(&inode.data[unsynced_start..kept_end]);
            }
            let position = survived.len();
            inodes.insert(*inode_number, Inode { data: survived.clone(), durable_data: survived, position });
        }
        let restarted =
            Disk { inodes, durable_names: names.clone(), names, next_inode: disk.next_inode, ..Disk::default() };
        assert!(restarted.unsynced_changes.is_empty() && !restarted.crashed, "a restarted disk is clean");
        restarted.debug_assert_invariants();
        SimulatedFileSystem { disk: Arc::new(Mutex::new(restarted)) }
    }

    /// Names of the files in `directory` (current, not necessarily durable).
    pub fn list_directory_names(&self, directory: &Path) -> Vec<String> {
        let names = self.list_directory(directory).expect("listing never fails");
        debug_assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "listed in order, once each");
        names
    }

    /// The current (not necessarily durable) content of the file at `path`.
    pub fn file_content(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.lock();
        let inode = disk.names.get(path)?;
        disk.inodes[inode].assert_position();
        Some(disk.inodes[inode].data.clone())
    }

    /// Replaces the content of the file at `path`, durably (for damage tests).
    pub fn set_file_content(&self, path: &Path, content: Vec<u8>) {
        let mut disk = self.lock();
        let inode = disk.inode_of(path).expect("file exists");
        let position = content.len();
        let replaced = disk.inodes.insert(inode, Inode { data: content.clone(), durable_data: content, position });
        assert!(replaced.is_some(), "the file existed");
    }
}

#[derive(Debug)]
struct SimulatedFile {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
}

impl SimulatedFile {
    fn lock(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl WalFile for SimulatedFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut disk = self.lock();
        let crashed_earlier = disk.crashed;
        let result = disk.step();
        if !crashed_earlier {
            // Success, or the crash point itself: the bytes reached the page cache
            // before the power went (only a synced prefix is sure to survive).
            let inode = disk.inodes.get_mut(&self.inode).expect("open file");
            let end = inode.position + bytes.len();
            if inode.data.len() < end {
                inode.data.resize(end, 0);
            }
            inode.data[inode.position..end].copy_from_slice(bytes);
            inode.position = end;
            inode.assert_position();
        }
        result
    }

    /// Preallocates like the real file system (a crash point, as the zeros are a write),
    /// so crash tests cover records written over preallocated zeros.
    fn preallocate(&mut self, length_bytes: u64) -> io::Result<u64> {
        let mut disk = self.lock();
        disk.step()?;
        let inode = disk.inodes.get_mut(&self.inode).expect("open file");
        let position = inode.position;
        if inode.data.len() < length_bytes as usize {
            inode.data.resize(length_bytes as usize, 0);
        }
        assert_eq!(inode.position, position, "preallocating does not move the write position");
        assert!(inode.data.len() as u64 >= length_bytes, "at least the length asked for");
        Ok(inode.data.len() as u64)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step()?;
        let inode = disk.inodes.get_mut(&self.inode).expect("open file");
        inode.durable_data = inode.data.clone();
        inode.assert_position();
        Ok(())
    }

    fn truncate(&mut self, length_bytes: u64) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step()?;
        let inode = disk.inodes.get_mut(&self.inode).expect("open file");
        inode.data.truncate(length_bytes as usize);
        inode.position = inode.data.len();
        inode.durable_data = inode.data.clone();
        assert!(inode.data.len() as u64 <= length_bytes, "cut to at most the length");
        Ok(())
    }

    fn try_clone(&self) -> io::Result<Box<dyn WalFile>> {
        assert!(self.lock().inodes.contains_key(&self.inode), "an open file keeps its inode");
        Ok(Box::new(SimulatedFile { disk: self.disk.clone(), inode: self.inode }))
    }
}

impl FileSystem for SimulatedFileSystem {
    fn create_directory_all(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list_directory(&self, path: &Path) -> io::Result<Vec<String>> {
        let disk = self.lock();
        let names = disk.names.keys().filter(|name| name.parent() == Some(path));
        let listed: Vec<String> =
            names.map(|name| name.file_name().expect("file name").to_string_lossy().into_owned()).collect();
        assert!(listed.len() <= disk.names.len(), "only this directory's names");
        Ok(listed)
    }

    fn create_file(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut disk = self.lock();
        disk.step()?;
        let inode = disk.next_inode;
        disk.next_inode += 1;
        let reused = disk.inodes.insert(inode, Inode::default());
        assert!(reused.is_none(), "inode numbers are never reused");
        disk.names.insert(path.to_path_buf(), inode);
        disk.unsynced_changes.push(DirectoryChange::Create { path: path.to_path_buf(), inode });
        assert_eq!(disk.names.get(path), Some(&inode), "the name points to the new, empty file");
        Ok(Box::new(SimulatedFile { disk: self.disk.clone(), inode }))
    }

    fn open_file_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let mut disk = self.lock();
        let inode = disk.inode_of(path)?;
        let file = disk.inodes.get_mut(&inode).expect("named files exist");
        file.position = file.data.len();
        file.assert_position();
        Ok(Box::new(SimulatedFile { disk: self.disk.clone(), inode }))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.lock();
        let inode = disk.inode_of(path)?;
        disk.inodes[&inode].assert_position();
        Ok(disk.inodes[&inode].data.clone())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step()?;
        let inode = disk.inode_of(from)?;
        disk.names.remove(from);
        disk.names.insert(to.to_path_buf(), inode);
        disk.unsynced_changes.push(DirectoryChange::Rename { from: from.to_path_buf(), to: to.to_path_buf(), inode });
        assert_eq!(disk.names.get(to), Some(&inode), "the name now points to the renamed file");
        assert!(from == to || !disk.names.contains_key(from), "the old name is gone");
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step()?;
        disk.inode_of(path)?;
        disk.names.remove(path);
        disk.unsynced_changes.push(DirectoryChange::Remove { path: path.to_path_buf() });
        assert!(!disk.names.contains_key(path), "the name is gone (its inode stays for open files)");
        Ok(())
    }

    fn sync_directory(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.step()?;
        let in_directory = |name: &PathBuf| name.parent() == Some(path);
        disk.durable_names.retain(|name, _| !in_directory(name));
        let current: Vec<(PathBuf, u64)> = disk
            .names
            .iter()
            .filter(|(name, _)| in_directory(name))
            .map(|(name, inode)| (name.clone(), *inode))
            .collect();
        disk.durable_names.extend(current);
        disk.unsynced_changes.retain(|change| change.directory() != Some(path));
        debug_assert!(disk.unsynced_changes.iter().all(|change| change.directory() != Some(path)), "all durable");
        disk.debug_assert_invariants();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_data_and_names_are_lost() {
        let file_system = SimulatedFileSystem::new();
        let directory = Path::new("/d");
        let mut file = file_system.create_file(&directory.join("a")).unwrap();
        file.write_all(b"durable").unwrap();
        file.sync_data().unwrap();
        file_system.sync_directory(directory).unwrap();
        file.write_all(b" lost").unwrap();
        file_system.create_file(&directory.join("b")).unwrap();
        let restarted = file_system.restart(CrashMode::LoseUnsynced);
        assert_eq!(restarted.read_file(&directory.join("a")).unwrap(), b"durable");
        assert_eq!(restarted.list_directory(directory).unwrap(), vec!["a".to_string()]);
    }

    #[test]
    fn crash_point_fails_and_keeps_the_torn_write() {
        let file_system = SimulatedFileSystem::new();
        let path = Path::new("/d/a");
        let mut file = file_system.create_file(path).unwrap();
        file_system.crash_at(1);
        assert!(file.write_all(b"abcd").is_err());
        assert!(file.sync_data().is_err());
        assert!(file_system.has_crashed());
        assert_eq!(file_system.file_content(path).unwrap(), b"abcd");
    }
}
