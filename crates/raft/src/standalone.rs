//! Restarting a survivor of a lost quorum as a one-member cluster (etcd's
//! `--force-new-cluster`), as a pure function of its durable log.
//!
//! As etcd: entries after the commit index are discarded (nobody can tell whether they
//! were committed), and Config entries are appended after the commit index that make this
//! node the only voter (first adding itself if it is not a voter, then removing every
//! other member one by one). They are committed at once (the hard state's commit index
//! moves to the last of them), so they are applied on start like any committed entry, and
//! travel to members added later in the log or in snapshots.

use bytes::Bytes;

use crate::membership::{decode_config_entry, ConfChange, ConfChangeKind, ConfChangeSingle};
use crate::storage::{Storage, StorageError};
use crate::types::{ConfState, Entry, EntryKind, HardState, Index, NodeId};

/// Bytes read at a time while folding the committed Config entries.
const READ_CHUNK_BYTES: u64 = 16 << 20;

/// What to write to make the node a one-member cluster: `entries` replace the log from
/// `entries[0].index` (the suffix after the commit index is dropped), then `hard_state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandaloneRestart {
    /// Config entries from the commit index + 1 on; empty if the node already is the only
    /// voter and member.
    pub entries: Vec<Entry>,
    /// The hard state to store with them (commit index at the last entry).
    pub hard_state: HardState,
    /// The configuration as of the commit index, before the change.
    pub committed_conf: ConfState,
    /// Entries after the commit index that are dropped.
    pub discarded_entries: u64,
}

/// Builds the [`StandaloneRestart`] of node `local` from `storage`. `context(change)`
/// gives the context of each change (what the state machine needs to apply it).
pub fn standalone_restart<S: Storage>(
    storage: &S,
    local: NodeId,
    context: &mut dyn FnMut(&ConfChangeSingle) -> Bytes,
) -> Result<StandaloneRestart, StorageError> {
    let initial = storage.initial_state()?;
    let hard_state = initial.hard_state;
    let commit = hard_state.commit.max(storage.first_index() - 1);
    let mut conf = initial.conf_state;
    let mut low = storage.first_index();
    while low <= commit {
        let entries = storage.entries(low, commit + 1, READ_CHUNK_BYTES)?;
        let Some(last) = entries.last() else { break };
        low = last.index + 1;
        for entry in entries.iter().filter(|entry| entry.kind == EntryKind::Config) {
            if let Ok((change, result)) = decode_config_entry(&entry.data) {
                conf = result.unwrap_or_else(|| conf.apply_change(&change).unwrap_or_else(|_| conf.clone()));
            }
        }
    }
    let committed_conf = conf.clone();
    let mut changes = Vec::new();
    if !conf.voters.contains(&local) {
        changes.push(ConfChangeSingle { kind: ConfChangeKind::AddVoter, node_id: local });
    }
    let mut others: Vec<NodeId> = conf
        .voters
        .iter()
        .chain(&conf.learners)
        .chain(&conf.voters_outgoing)
        .copied()
        .filter(|id| *id != local)
        .collect();
    others.sort_unstable();
    others.dedup();
    changes.extend(others.iter().map(|id| ConfChangeSingle { kind: ConfChangeKind::RemoveNode, node_id: *id }));
    let term = hard_state.term.max(storage.term(commit)?);
    let mut current =
        ConfState { voters: conf.voters.clone(), learners: conf.learners.clone(), voters_outgoing: vec![] };
    let mut entries = Vec::with_capacity(changes.len());
    for (offset, single) in changes.iter().enumerate() {
        current.voters.retain(|id| *id != single.node_id);
        current.learners.retain(|id| *id != single.node_id);
        if single.kind == ConfChangeKind::AddVoter {
            current.voters.push(single.node_id);
            current.voters.sort_unstable();
        }
        let change = ConfChange { changes: vec![*single], context: context(single) };
        let data = change.encode_entry(&current);
        entries.push(Entry { term, index: commit + 1 + offset as Index, kind: EntryKind::Config, data });
    }
    assert!(entries.is_empty() || (current.voters == vec![local] && current.learners.is_empty()), "one voter left");
    let contiguous = entries.iter().enumerate().all(|(offset, entry)| entry.index == commit + 1 + offset as Index);
    assert!(contiguous, "the new entries follow the commit index");
    let last = entries.last().map_or(commit, |entry| entry.index);
    assert!(last >= commit, "the new commit index is not below the old one");
    let discarded_entries = storage.last_index().saturating_sub(commit);
    let hard_state = HardState { term, vote: hard_state.vote, commit: last };
    Ok(StandaloneRestart { entries, hard_state, committed_conf, discarded_entries })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, MemoryStorage, RawNode, Role};

    fn entry(term: u64, index: Index) -> Entry {
        Entry { term, index, kind: EntryKind::Normal, data: Bytes::from_static(b"x") }
    }

    #[test]
    fn survivor_becomes_the_only_voter_and_keeps_committed_entries() {
        let mut storage = MemoryStorage::new_with_voters(&[1, 2, 3]);
        storage.append(&[entry(1, 1), entry(1, 2), entry(2, 3), entry(2, 4)]);
        storage.set_hard_state(HardState { term: 2, vote: 1, commit: 3 });
        let mut contexts = Vec::new();
        let restart = standalone_restart(&storage, 2, &mut |single| {
            contexts.push(single.node_id);
            Bytes::from(vec![single.node_id as u8])
        })
        .unwrap();
        assert_eq!(contexts, vec![1, 3], "every other member is removed");
        assert_eq!(restart.discarded_entries, 1, "the uncommitted entry 4 goes");
        assert_eq!(restart.entries.iter().map(|entry| entry.index).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(restart.hard_state, HardState { term: 2, vote: 1, commit: 5 });
        storage.append(&restart.entries);
        storage.set_hard_state(restart.hard_state);
        let mut config = Config::new(2);
        config.random_seed = 7;
        let mut node = RawNode::new(config, storage).unwrap();
        assert_eq!(node.voters(), &[2]);
        for _ in 0..100 {
            node.tick();
            let ready = node.ready();
            node.storage_mut().append(&ready.entries);
            if let Some(hard_state) = ready.hard_state {
                node.storage_mut().set_hard_state(hard_state);
            }
            node.on_persisted(ready.persist_sequence);
        }
        assert_eq!(node.role(), Role::Leader, "a one-voter cluster elects its survivor");
        assert!(node.commit_index() > 5);
        assert_eq!(node.term_at(3), Some(2), "committed entries are kept");
    }

    #[test]
    fn a_learner_adds_itself_and_a_lone_voter_needs_nothing() {
        let mut storage = MemoryStorage::new_with_voters(&[1]);
        storage.set_conf_state(ConfState { voters: vec![1], learners: vec![4], voters_outgoing: vec![] });
        let restart = standalone_restart(&storage, 4, &mut |_| Bytes::new()).unwrap();
        let kinds: Vec<_> =
            restart.entries.iter().map(|entry| ConfChange::decode(&entry.data).unwrap().changes[0]).collect();
        assert_eq!(kinds[0], ConfChangeSingle { kind: ConfChangeKind::AddVoter, node_id: 4 });
        assert_eq!(kinds[1], ConfChangeSingle { kind: ConfChangeKind::RemoveNode, node_id: 1 });
        let alone = MemoryStorage::new_with_voters(&[1]);
        assert!(standalone_restart(&alone, 1, &mut |_| Bytes::new()).unwrap().entries.is_empty());
    }
}
