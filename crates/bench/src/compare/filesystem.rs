//! Where the comparison keeps its data directories, and which file system that is.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// File systems whose "disk" is memory; fsync there measures nothing.
const MEMORY_FILE_SYSTEMS: [&str; 2] = ["tmpfs", "ramfs"];

/// The default parent of the data directories: `$CARGO_TARGET_DIR`, else `./target` when it
/// exists, else the current directory.
pub fn default_work_root() -> PathBuf {
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR").filter(|value| !value.is_empty()) {
        return PathBuf::from(target);
    }
    let target = PathBuf::from("target");
    if target.is_dir() {
        target
    } else {
        PathBuf::from(".")
    }
}

/// Fails when `directory` is on a memory file system (data dirs must be on a real disk).
pub fn require_disk(directory: &Path) -> Result<()> {
    let canonical = directory.canonicalize().with_context(|| format!("resolving {}", directory.display()))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    if let Some(file_system) = file_system_of(&mountinfo, &canonical) {
        if MEMORY_FILE_SYSTEMS.contains(&file_system.as_str()) {
            bail!(
                "{} is on {file_system} (memory, not disk); pass --work-dir on a disk-backed file system",
                canonical.display()
            );
        }
    }
    Ok(())
}

/// The file-system type of the mount that holds `path` (the longest mount point that is a
/// prefix of it), from the text of `/proc/self/mountinfo`.
pub fn file_system_of(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(separator) = fields.iter().position(|field| *field == "-") else { continue };
        let (Some(mount_point), Some(file_system)) = (fields.get(4), fields.get(separator + 1)) else { continue };
        let mount_point = Path::new(mount_point);
        if path.starts_with(mount_point) {
            let depth = mount_point.components().count();
            if best.as_ref().is_none_or(|(best_depth, _)| depth >= *best_depth) {
                best = Some((depth, file_system.to_string()));
            }
        }
    }
    best.map(|(_, file_system)| file_system)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:21 / /tmp rw,nosuid shared:2 - tmpfs tmpfs rw
24 22 0:22 / /tmpdata rw shared:3 - xfs /dev/sdb1 rw
";

    #[test]
    fn the_longest_matching_mount_point_wins() {
        assert_eq!(file_system_of(MOUNTINFO, Path::new("/work/target")).as_deref(), Some("ext4"));
        assert_eq!(file_system_of(MOUNTINFO, Path::new("/tmp/x")).as_deref(), Some("tmpfs"));
        assert_eq!(file_system_of(MOUNTINFO, Path::new("/tmp")).as_deref(), Some("tmpfs"));
        // A path prefix that is not a component prefix does not match.
        assert_eq!(file_system_of(MOUNTINFO, Path::new("/tmpdata/a")).as_deref(), Some("xfs"));
    }

    #[test]
    fn the_root_directory_has_a_file_system() {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(file_system_of(&mountinfo, Path::new("/")).is_some());
    }
}
