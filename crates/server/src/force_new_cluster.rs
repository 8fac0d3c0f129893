//! `--force-new-cluster` (etcd's meaning): a member that survived the permanent loss of
//! its cluster's quorum restarts as a one-member cluster with all its committed data.
//!
//! Before the Raft core starts, the WAL gets the Config entries of
//! [`raft::standalone_restart`] (every other member removed, entries after the commit
//! index dropped), committed at once. They are applied on start like any committed
//! entry, so the core's configuration, the store's member table, the member table the
//! services read and the transport's peers all follow from them, and a restart without
//! the flag finds the same one-member cluster in the log. The cluster is regrown with
//! `etcdctl member add` and new members started with `--initial-cluster-state existing`.

use crate::config::InitialMember;

/// Refuses `--force-new-cluster` on a data dir without a WAL (nothing to recover).
pub fn check_data_dir(data_dir: &std::path::Path) -> Result<(), String> {
    let wal = data_dir.join("wal");
    let has_files = std::fs::read_dir(&wal).is_ok_and(|mut entries| entries.next().is_some());
    if has_files {
        return Ok(());
    }
    Err(format!(
        "--force-new-cluster: the data dir {} holds no write-ahead log: it restarts a member that \
         survived the loss of its cluster from that member's data dir; to start a new cluster, \
         leave the flag out",
        data_dir.display()
    ))
}

/// Makes `wal` the log of a one-member cluster of `local` (see the module doc).
pub fn restart_standalone(wal: &mut wal::Wal, local: &InitialMember) -> Result<(), String> {
    let mut context = |single: &raft::ConfChangeSingle| -> bytes::Bytes {
        let member = proto::etcdserverpb::Member {
            id: single.node_id,
            name: local.name.clone(),
            peer_ur_ls: local.peer_urls.clone(),
            client_ur_ls: Vec::new(),
            is_learner: false,
        };
        let change = match single.kind {
            raft::ConfChangeKind::RemoveNode => kv::MemberChange {
                action: kv::MemberAction::Remove,
                member: proto::etcdserverpb::Member { id: single.node_id, ..Default::default() },
            },
            _ => kv::MemberChange { action: kv::MemberAction::Add, member },
        };
        change.encode().into()
    };
    let restart = raft::standalone_restart(wal, local.id, &mut context).map_err(|error| error.to_string())?;
    if restart.committed_conf.voters.is_empty() {
        return Err(
            "--force-new-cluster: the data dir holds no cluster configuration yet (a member that never caught up)"
                .into(),
        );
    }
    let removed: Vec<String> = restart
        .committed_conf
        .voters
        .iter()
        .chain(&restart.committed_conf.learners)
        .filter(|id| **id != local.id)
        .map(|id| format!("{id:x}"))
        .collect();
    tracing::warn!(
        member = %format!("{:x}", local.id),
        commit_index = restart.hard_state.commit,
        discarded_uncommitted_entries = restart.discarded_entries,
        removed_members = ?removed,
        "forcing restart as a one-member cluster (--force-new-cluster)"
    );
    if restart.entries.is_empty() {
        return Ok(());
    }
    let batch = wal::WriteBatch { snapshot: None, entries: restart.entries, hard_state: Some(restart.hard_state) };
    wal.write(&batch).map_err(|error| format!("--force-new-cluster: cannot write the WAL: {error}"))
}
