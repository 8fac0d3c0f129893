//! Backups in etcd's own format: `raftkv snapshot status FILE` and
//! `raftkv snapshot restore FILE` (etcdctl's flags), for files saved from raftkv
//! (`Maintenance.Snapshot`) or from a real etcd 3.4/3.5.
//!
//! A snapshot file is a bbolt database in etcd's backend layout ([`layout`]), followed by
//! the SHA-256 of the database (as etcd streams it; a bare `db` file copied from an etcd
//! data dir has none and needs `--skip-hash-check`).
//!
//! Restore reads and checks the whole file first (digest, bbolt structure, etcd layout,
//! store invariants), then writes the new data dir under a temporary name beside the
//! target and renames it into place: a refused file leaves the target untouched.

pub mod layout;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

/// Index and term of the Raft snapshot a restored member starts from (every member of
/// the new cluster restores the same file to the same position).
pub const RESTORED_SNAPSHOT_INDEX: u64 = 1;

/// `raftkv snapshot`.
#[derive(Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

/// `raftkv snapshot` subcommands (as `etcdctl snapshot`'s).
#[derive(Subcommand, Debug, Clone)]
pub enum SnapshotCommand {
    /// Print a snapshot file's hash, revision, total keys and size (as `etcdctl snapshot status`).
    Status(StatusArgs),
    /// Write a fresh data dir for one member of a new cluster from a snapshot file.
    Restore(RestoreArgs),
}

/// `raftkv snapshot status FILE`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The snapshot file (`etcdctl snapshot save`'s output, or an etcd `db` file).
    pub file: PathBuf,
    /// Output format: simple, table or json.
    #[arg(long = "write-out", short = 'w', default_value = "simple", value_parser = ["simple", "table", "json"])]
    pub write_out: String,
}

/// `raftkv snapshot restore FILE` with `etcdctl snapshot restore`'s flags.
#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The snapshot file.
    pub file: PathBuf,
    /// Name of the member being restored (must appear in --initial-cluster).
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Data dir to create (default: `<name>.raftkv`, as `raftkv serve`); must not exist or be empty.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Put the WAL in this directory instead (the data dir's `wal` becomes a link to it).
    #[arg(long)]
    pub wal_dir: Option<PathBuf>,
    /// The new cluster's members, `name=peer-url,...`.
    #[arg(long, default_value = "default=http://localhost:2380")]
    pub initial_cluster: String,
    /// The new cluster's token (with the member URLs it makes the member and cluster ids).
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URLs (must match its --initial-cluster entry).
    #[arg(long, default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: String,
    /// Accept a file whose SHA-256 is missing (a copied `db`) or does not match.
    #[arg(long)]
    pub skip_hash_check: bool,
}

/// Runs `raftkv snapshot …`.
pub fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    match args.command {
        SnapshotCommand::Status(status) => {
            print!("{}", status_text(&status)?);
            Ok(())
        }
        SnapshotCommand::Restore(restore_args) => {
            let summary = restore(&restore_args)?;
            println!("{summary}");
            Ok(())
        }
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| anyhow::anyhow!("cannot read snapshot file {}: {error}", path.display()))
}

/// `etcdctl snapshot status`'s output for `args.file`.
pub fn status_text(args: &StatusArgs) -> anyhow::Result<String> {
    let bytes = read_file(&args.file)?;
    // As etcdctl: the digest is not checked, bbolt reads the database and ignores it.
    let database_bytes = layout::database_part(&bytes, true).unwrap_or(&bytes);
    let database = bbolt::read_database(database_bytes)
        .map_err(|error| anyhow::anyhow!("snapshot file {}: {error}", args.file.display()))?;
    let status = layout::status(&database);
    let size = human_bytes(status.total_size);
    Ok(match args.write_out.as_str() {
        "json" => format!(
            "{{\"hash\":{},\"revision\":{},\"totalKey\":{},\"totalSize\":{}}}\n",
            status.hash, status.revision, status.total_key, status.total_size
        ),
        "table" => table(&[
            ["HASH".to_string(), "REVISION".into(), "TOTAL KEYS".into(), "TOTAL SIZE".into()],
            [format!("{:x}", status.hash), status.revision.to_string(), status.total_key.to_string(), size],
        ]),
        _ => format!("{:x}, {}, {}, {}\n", status.hash, status.revision, status.total_key, size),
    })
}

/// A size as go-humanize's `Bytes` (SI units) prints it, as etcdctl does.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 10 {
        return format!("{bytes} B");
    }
    let exponent = ((bytes as f64).ln() / 1000_f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = (bytes as f64 / 1000_f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

/// etcdctl's table: a header row and data rows, centred headers, right-aligned cells.
fn table(rows: &[[String; 4]]) -> String {
    let widths: Vec<usize> = (0..4).map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0)).collect();
    let rule = format!("+{}+\n", widths.iter().map(|width| "-".repeat(width + 2)).collect::<Vec<_>>().join("+"));
    let mut text = rule.clone();
    for (index, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| if index == 0 { format!("{cell:^width$}") } else { format!("{cell:>width$}") })
            .collect();
        text.push_str(&format!("| {} |\n", cells.join(" | ")));
        if index == 0 {
            text.push_str(&rule);
        }
    }
    text.push_str(&rule);
    text
}

/// The store a snapshot file holds, checked whole, with the new cluster's `members`
/// and applied index [`RESTORED_SNAPSHOT_INDEX`].
pub fn store_from_file(
    bytes: &[u8],
    skip_hash_check: bool,
    members: Vec<proto::etcdserverpb::Member>,
) -> Result<(kv::Store, layout::BackendExtras), String> {
    use proto::prost::Message;
    let database_bytes = layout::database_part(bytes, skip_hash_check)?;
    let database = bbolt::read_database(database_bytes).map_err(|error| error.to_string())?;
    let (mut snapshot, extras) = layout::snapshot_from_database(&database.root)?;
    snapshot.applied_index = RESTORED_SNAPSHOT_INDEX;
    snapshot.members = members;
    let store = kv::Store::restore(kv::Config::default(), &snapshot.encode_to_vec())
        .map_err(|error| format!("not a valid etcd snapshot: {error}"))?;
    Ok((store, extras))
}

/// Restores `args.file` into a new data dir; returns a one-line summary.
pub fn restore(args: &RestoreArgs) -> anyhow::Result<String> {
    use anyhow::Context;
    let members = crate::config::parse_initial_cluster(&args.initial_cluster, &args.initial_cluster_token)
        .map_err(anyhow::Error::msg)?;
    let local = members
        .iter()
        .find(|member| member.name == args.name)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("--initial-cluster has no member named '{}' (--name)", args.name))?;
    let mut advertised = crate::config::split_urls(&args.initial_advertise_peer_urls);
    advertised.sort();
    anyhow::ensure!(
        advertised == local.peer_urls,
        "--initial-advertise-peer-urls {:?} does not match --initial-cluster's URLs for '{}': {:?}",
        advertised,
        args.name,
        local.peer_urls
    );
    let cluster_id = crate::config::cluster_id(&members, &args.initial_cluster_token);
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.raftkv", args.name)));
    ensure_absent_or_empty(&data_dir, "--data-dir")?;
    if let Some(wal_dir) = &args.wal_dir {
        ensure_absent_or_empty(wal_dir, "--wal-dir")?;
    }
    let bytes = read_file(&args.file)?;
    let (store, _) = store_from_file(&bytes, args.skip_hash_check, layout::members_of(&members))
        .map_err(|reason| anyhow::anyhow!("refusing snapshot file {}: {reason}", args.file.display()))?;
    let voters = members.iter().map(|member| member.id).collect();
    write_data_dir(&store, &data_dir, args.wal_dir.as_deref(), wal::WalOptions::new(cluster_id, local.id), voters)
        .with_context(|| format!("cannot write data dir {}", data_dir.display()))?;
    Ok(format!(
        "restored snapshot {} into {} (member {} id {:x} of cluster {:x}): revision {}, {} key versions, {} leases",
        args.file.display(),
        data_dir.display(),
        local.name,
        local.id,
        cluster_id,
        store.current_revision(),
        store.record_count(),
        store.leases().count()
    ))
}

fn ensure_absent_or_empty(directory: &Path, flag: &str) -> anyhow::Result<()> {
    match std::fs::read_dir(directory) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(anyhow::anyhow!("{flag} {}: {error}", directory.display())),
        Ok(mut entries) => {
            anyhow::ensure!(entries.next().is_none(), "{flag} {} exists and is not empty", directory.display());
            Ok(())
        }
    }
}

/// Writes the WAL (a Raft snapshot of `store` at [`RESTORED_SNAPSHOT_INDEX`], term 1,
/// membership `voters`) under temporary names, then renames it into place.
fn write_data_dir(
    store: &kv::Store,
    data_dir: &Path,
    wal_dir: Option<&Path>,
    options: wal::WalOptions,
    voters: Vec<u64>,
) -> anyhow::Result<()> {
    let staging = |target: &Path| {
        let name = target.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        target.with_file_name(format!(".{name}.restoring-{}", std::process::id()))
    };
    let data_staging = staging(data_dir);
    let wal_staging = wal_dir.map(staging).unwrap_or_else(|| data_staging.join("wal"));
    let result = write_wal(store, &wal_staging, options, voters).and_then(|()| {
        std::fs::create_dir_all(&data_staging)?;
        if let Some(wal_dir) = wal_dir {
            let absolute = std::path::absolute(wal_dir)?;
            std::os::unix::fs::symlink(&absolute, data_staging.join("wal"))?;
            replace_empty_dir(&wal_staging, wal_dir)?;
        }
        replace_empty_dir(&data_staging, data_dir)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&data_staging);
        if wal_dir.is_some() {
            let _ = std::fs::remove_dir_all(&wal_staging);
        }
    }
    result
}

fn write_wal(store: &kv::Store, directory: &Path, options: wal::WalOptions, voters: Vec<u64>) -> anyhow::Result<()> {
    let conf = raft::ConfState { voters, learners: vec![], voters_outgoing: vec![] };
    let mut log = wal::Wal::create(directory, options, conf.clone())?;
    let meta = raft::SnapshotMeta { index: RESTORED_SNAPSHOT_INDEX, term: 1, conf };
    let snapshot = raft::Snapshot { meta, data: bytes::Bytes::from(store.snapshot()) };
    let hard_state = raft::HardState { term: 1, vote: 0, commit: RESTORED_SNAPSHOT_INDEX };
    log.write(&wal::WriteBatch { snapshot: Some(snapshot), entries: Vec::new(), hard_state: Some(hard_state) })?;
    Ok(())
}

/// Renames `from` to `to` (an empty directory there is replaced) and syncs the parent.
fn replace_empty_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    if to.exists() {
        std::fs::remove_dir(to)?;
    }
    std::fs::rename(from, to)?;
    let parent = to.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_etcdctl_prints_them() {
        assert_eq!(human_bytes(73728), "74 kB");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(2_100_000), "2.1 MB");
        assert_eq!(human_bytes(5), "5 B");
    }

    #[test]
    fn a_store_round_trips_through_the_etcd_layout() {
        use proto::etcdserverpb::{LeaseGrantRequest, PutRequest};
        let mut store = kv::Store::default();
        let grant = kv::Operation::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 });
        store.apply(1, &kv::Command::new(grant));
        for (index, key) in ["a", "b", "a"].iter().enumerate() {
            let put = PutRequest {
                key: key.as_bytes().to_vec().into(),
                value: vec![b'v'; index].into(),
                lease: 7,
                ..Default::default()
            };
            store.apply(index as u64 + 2, &kv::Command::new(kv::Operation::Put(put)));
        }
        let bytes = crate::grpc::snapshot::snapshot_file(&store);
        let database = bbolt::read_database(layout::database_part(&bytes, false).unwrap()).unwrap();
        let status = layout::status(&database);
        assert_eq!(status.revision, 4);
        let (restored, extras) = store_from_file(&bytes, false, Vec::new()).unwrap();
        assert_eq!(extras.consistent_index, 4);
        assert_eq!(restored.current_revision(), store.current_revision());
        assert_eq!(restored.hash_kv(0), store.hash_kv(0));
        assert_eq!(restored.lease(7).unwrap().keys.len(), 2);
        let mut corrupted = bytes.clone();
        corrupted[5000] ^= 1;
        assert!(store_from_file(&corrupted, false, Vec::new()).unwrap_err().contains("hash mismatch"));
        assert!(store_from_file(&bytes[..bytes.len() - 100], false, Vec::new()).unwrap_err().contains("truncated"));
        assert!(store_from_file(&bytes[..bytes.len() - 32], false, Vec::new()).unwrap_err().contains("missing hash"));
    }
}
