//! The simulator's [`MembershipApply`]: committed configuration entries update the store's
//! member table (as the server's `Membership` does) and nothing else; the simulated
//! network needs no transport updates.

use server::server_core::MembershipApply;

/// Applies configuration entries to the member table only.
#[derive(Debug, Default)]
pub struct SimulatedMembership {
    /// Configuration entries applied (for the report).
    pub configurations_applied: u64,
}

impl MembershipApply for SimulatedMembership {
    fn apply_config(&mut self, store: &mut kv::Store, entry: &raft::Entry) {
        self.configurations_applied += 1;
        let member_change = raft::ConfChange::decode(&entry.data)
            .ok()
            .filter(|change| !change.changes.is_empty() && !change.context.is_empty())
            .and_then(|change| kv::MemberChange::decode(&change.context).ok());
        match member_change {
            Some(change) => store.apply_member_change(entry.index, &change),
            None => store.advance_applied_index(entry.index),
        }
        assert_eq!(store.applied_index(), entry.index, "a configuration entry advances the applied index");
    }

    fn member_updated(&mut self, _store: &kv::Store, _id: u64) {}

    fn restored(&mut self, _store: &kv::Store) {}
}
