//! The member table as this node applied it, and the member list served as JSON.

use std::collections::BTreeSet;
use std::sync::Arc;

use proto::etcdserverpb::Member;

use crate::transport::PeerDirectory;

/// The member table as this node applied it, shared with the transport (which refuses
/// removed members and serves `GET /members`) and the client services.
///
/// Rule: written only by the Raft loop (after an apply or a restore, and when it decides a
/// peer's removal notice is about this member); everyone else reads.
#[derive(Clone, Debug, Default)]
pub struct MemberTable {
    inner: Arc<std::sync::RwLock<TableState>>,
}

#[derive(Debug, Default)]
struct TableState {
    members: Vec<Member>,
    removed: BTreeSet<u64>,
}

impl MemberTable {
    /// Replaces the table with the store's.
    pub fn refresh(&self, store: &kv::Store) {
        let mut state = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.members = store.members().cloned().collect();
        state.removed = store.removed_members().collect();
    }

    /// Records a removed member.
    pub fn mark_removed(&self, id: u64) {
        let mut state = self.inner.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.removed.insert(id);
        state.members.retain(|member| member.id != id);
    }

    /// The members (without client URLs), ordered by id.
    pub fn members(&self) -> Vec<Member> {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).members.clone()
    }

    /// True if `id` is a learner (read in place: every response header asks).
    pub fn is_learner(&self, id: u64) -> bool {
        let state = self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.members.iter().any(|member| member.id == id && member.is_learner)
    }

    /// True if `id` was removed from the cluster.
    pub fn is_removed(&self, id: u64) -> bool {
        self.inner.read().unwrap_or_else(|poisoned| poisoned.into_inner()).removed.contains(&id)
    }
}

/// The member list with client URLs and names filled in from what members told this node
/// about themselves (their handshakes) and from this node's own flags.
pub fn members_with_urls(directory: &PeerDirectory) -> Vec<Member> {
    let known = directory.known.read().map(|known| known.clone()).unwrap_or_default();
    directory
        .members
        .members()
        .into_iter()
        .map(|mut member| {
            if let Some(info) = known.get(&member.id) {
                member.client_ur_ls = info.client_urls.clone();
                if member.name.is_empty() {
                    member.name = info.name.clone();
                }
            }
            member
        })
        .collect()
}

/// The body of `GET /members` on the peer port: a JSON array of members.
pub fn members_json(directory: &PeerDirectory) -> String {
    let members: Vec<serde_json::Value> = members_with_urls(directory)
        .into_iter()
        .map(|member| {
            serde_json::json!({
                "id": member.id,
                "name": member.name,
                "peerURLs": member.peer_ur_ls,
                "clientURLs": member.client_ur_ls,
                "isLearner": member.is_learner,
            })
        })
        .collect();
    serde_json::Value::Array(members).to_string()
}
