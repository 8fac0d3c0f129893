//! Finding (and if needed building) the `raftkv` binary the runner starts.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root: two levels above this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set (relative paths are taken from the
/// workspace root, as cargo does), else `<workspace>/target`.
pub fn target_directory() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(directory) if !directory.is_empty() => {
            let directory = PathBuf::from(directory);
            if directory.is_absolute() {
                directory
            } else {
                workspace_root().join(directory)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The `raftkv` binary: `$RAFTKV_BIN` if set, else the release build under the target
/// directory if present, else the debug build, else `None`.
pub fn find_raftkv_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RAFTKV_BIN").filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let target = target_directory();
    ["release", "debug"].into_iter().map(|profile| target.join(profile).join("raftkv")).find(|path| path.is_file())
}

/// The `raftkv` binary to test. Builds it with `cargo build --release --bin raftkv` (in the
/// workspace root, honouring `CARGO_TARGET_DIR`) when neither build exists.
///
/// Tests call this; the build is skipped when the binary is already there (a nested cargo
/// would wait for the lock `cargo test` holds), so run `cargo build --release --bin raftkv`
/// first after changing the server.
pub fn raftkv_binary_or_build() -> anyhow::Result<PathBuf> {
    if let Some(path) = find_raftkv_binary() {
        return Ok(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--bin", "raftkv"])
        .current_dir(workspace_root())
        .status()
        .map_err(|error| anyhow::anyhow!("cannot run cargo to build raftkv: {error}"))?;
    anyhow::ensure!(status.success(), "`cargo build --release --bin raftkv` failed: {status}");
    find_raftkv_binary().ok_or_else(|| {
        anyhow::anyhow!("built raftkv, but it is not under {}", target_directory().join("release").display())
    })
}
