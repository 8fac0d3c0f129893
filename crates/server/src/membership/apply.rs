//! Applying committed membership changes: a configuration entry, a member update, or a
//! snapshot from the leader that replaced the member table.
//!
//! Apply never calls into the transport: it updates the member table and the loop's peer
//! set ([`Membership::take_peer_change`]), which the Raft loop hands to the transport after
//! the apply batch.

use std::collections::BTreeMap;

use raft::ConfChange;

use super::Membership;

/// What applying a committed configuration entry did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// This member was removed: it must stop.
    pub removed_self: bool,
}

impl Membership {
    /// Applies committed configuration entry `entry` to `store`'s member table, the peer
    /// set and waiting requests.
    pub fn apply_entry(&mut self, store: &mut kv::Store, entry: &raft::Entry) -> Applied {
        let change = match ConfChange::decode(&entry.data) {
            Ok(change) => change,
            Err(error) => {
                tracing::error!(index = entry.index, %error, "undecodable configuration entry; skipped");
                store.advance_applied_index(entry.index);
                return Applied::default();
            }
        };
        if change.changes.is_empty() || change.context.is_empty() {
            // Leaving a joint configuration: nothing changes in the member table.
            store.advance_applied_index(entry.index);
            return Applied::default();
        }
        let member_change = match kv::MemberChange::decode(&change.context) {
            Ok(member_change) => member_change,
            Err(error) => {
                tracing::error!(index = entry.index, %error, "configuration entry without member metadata");
                store.advance_applied_index(entry.index);
                return Applied::default();
            }
        };
        store.apply_member_change(entry.index, &member_change);
        self.directory.members.refresh(store);
        self.after_change(store, &member_change)
    }

    fn after_change(&mut self, store: &kv::Store, change: &kv::MemberChange) -> Applied {
        let id = change.member.id;
        let local = self.directory.local_id;
        match change.action {
            kv::MemberAction::Add => {
                tracing::info!(member = %format!("{id:x}"), peer_urls = ?change.member.peer_ur_ls, learner = change.member.is_learner, "added member");
                if let Some(address) =
                    change.member.peer_ur_ls.first().and_then(|url| crate::config::parse_url(url).ok())
                {
                    self.set_peer(id, address);
                }
            }
            kv::MemberAction::Remove => {
                tracing::info!(member = %format!("{id:x}"), "removed member");
                self.peers_changed |= self.peers.remove(&id).is_some();
            }
            kv::MemberAction::Promote => tracing::info!(member = %format!("{id:x}"), "promoted learner to voter"),
        }
        if change.action != kv::MemberAction::Add {
            self.promote_when_caught_up.remove(&id);
        }
        let member = store.member(id).cloned().unwrap_or_else(|| change.member.clone());
        self.answer_applied(&member);
        let removed_self = change.action == kv::MemberAction::Remove && id == local;
        if removed_self {
            tracing::warn!("this member has been removed from the cluster; stopping");
            self.removed_self = true;
        }
        Applied { removed_self }
    }

    /// Brings the member table, the peer set and this member's own removal in line
    /// with `store` after a snapshot from the leader replaced it. The snapshot may cover
    /// configuration entries this member never applied one by one (members added, removed
    /// or moved while it was behind).
    pub fn after_restore(&mut self, store: &kv::Store) {
        let local = self.directory.local_id;
        if store.members().next().is_none() {
            // A snapshot without a member table (nothing was ever recorded): keep what we have.
            tracing::warn!("restored snapshot holds no member table; keeping the current peers");
            return;
        }
        self.directory.members.refresh(store);
        let wanted: BTreeMap<u64, String> = store
            .members()
            .filter(|member| member.id != local)
            .filter_map(|member| {
                let address = member.peer_ur_ls.first().and_then(|url| crate::config::parse_url(url).ok())?;
                Some((member.id, address))
            })
            .collect();
        let current = self.peers.clone();
        for peer in current.keys().filter(|peer| !wanted.contains_key(peer)) {
            tracing::info!(member = %format!("{peer:x}"), "member removed in the restored snapshot");
            self.peers.remove(peer);
            self.peers_changed = true;
        }
        for (peer, address) in wanted.iter().filter(|(peer, address)| current.get(peer) != Some(address)) {
            tracing::info!(member = %format!("{peer:x}"), %address, "member added in the restored snapshot");
            self.set_peer(*peer, address.clone());
        }
        if store.is_removed_member(local) && !self.removed_self {
            tracing::warn!("this member has been removed from the cluster (restored snapshot); stopping");
            self.removed_self = true;
        }
        assert!(self.peers.len() <= wanted.len(), "the peers are a subset of the restored members");
    }

    /// Updates a member's address after a MemberUpdate applied.
    pub fn apply_update(&mut self, store: &kv::Store, id: u64) {
        self.directory.members.refresh(store);
        let address = store.member(id).and_then(|member| member.peer_ur_ls.first().cloned());
        if let Some(address) = address.and_then(|url| crate::config::parse_url(&url).ok()) {
            self.set_peer(id, address);
        }
    }

    /// Dials `id` at `address` from now on (not this node itself).
    fn set_peer(&mut self, id: u64, address: String) {
        if id == self.directory.local_id {
            return;
        }
        if self.peers.get(&id) != Some(&address) {
            self.peers.insert(id, address);
            self.peers_changed = true;
        }
        assert!(!self.peers.contains_key(&self.directory.local_id), "a node is not its own peer");
    }

    /// The peer set, if it changed since the last call: the Raft loop hands it to
    /// [`crate::transport::Transport::set_peers`] after an apply batch or a restore.
    pub fn take_peer_change(&mut self) -> Option<BTreeMap<u64, String>> {
        if !std::mem::take(&mut self.peers_changed) {
            return None;
        }
        Some(self.peers.clone())
    }
}
