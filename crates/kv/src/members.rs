//! The cluster's member table, replicated with the key-value state: every replica
//! applies the same membership changes (carried in the context of Raft configuration
//! entries, see [`MemberChange`]) at the same log index, and the table travels in
//! snapshots, so a member that joins by snapshot learns who the members are.
//!
//! Client URLs are not replicated (members advertise their own); the table holds ids,
//! names, peer URLs and the learner flag, plus the ids of removed members, which are
//! never admitted again.

use std::collections::{BTreeMap, BTreeSet};

use proto::etcdserverpb::{Member, MemberUpdateRequest, MemberUpdateResponse};
use proto::prost::Message;
use proto::raftkvpb;

use crate::command::DecodeError;
use crate::store::Store;

/// What a [`MemberChange`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberAction {
    /// Adds a member (a voter, or a learner when `is_learner` is set).
    Add,
    /// Removes a member for good.
    Remove,
    /// Makes a learner a voter.
    Promote,
}

impl MemberAction {
    fn code(self) -> u32 {
        match self {
            MemberAction::Add => 1,
            MemberAction::Remove => 2,
            MemberAction::Promote => 3,
        }
    }

    fn from_code(code: u32) -> Option<MemberAction> {
        match code {
            1 => Some(MemberAction::Add),
            2 => Some(MemberAction::Remove),
            3 => Some(MemberAction::Promote),
            _ => None,
        }
    }
}

/// One membership change, as carried in a configuration entry's context.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberChange {
    /// What to do.
    pub action: MemberAction,
    /// The member (id, name, peer URLs, learner flag; client URLs are ignored).
    pub member: Member,
}

impl MemberChange {
    /// Deterministic bytes (`raftkvpb.MemberChange`).
    pub fn encode(&self) -> Vec<u8> {
        let member = Member { client_ur_ls: Vec::new(), ..self.member.clone() };
        raftkvpb::MemberChange { action: self.action.code(), member: Some(member) }.encode_to_vec()
    }

    /// Parses [`MemberChange::encode`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<MemberChange, DecodeError> {
        let message =
            raftkvpb::MemberChange::decode(bytes).map_err(|error| DecodeError::Malformed(error.to_string()))?;
        let action = MemberAction::from_code(message.action)
            .ok_or_else(|| DecodeError::Malformed(format!("unknown member action {}", message.action)))?;
        let member = message.member.ok_or(DecodeError::MissingOperation)?;
        if member.id == 0 {
            return Err(DecodeError::Malformed("member id 0".into()));
        }
        Ok(MemberChange { action, member })
    }
}

/// The member table (part of [`Store`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Members {
    pub(crate) by_id: BTreeMap<u64, Member>,
    pub(crate) removed: BTreeSet<u64>,
}

impl Members {
    fn apply(&mut self, change: &MemberChange) {
        let id = change.member.id;
        match change.action {
            MemberAction::Add => {
                if !self.removed.contains(&id) {
                    let member = Member { client_ur_ls: Vec::new(), ..change.member.clone() };
                    self.by_id.insert(id, member);
                }
            }
            MemberAction::Remove => {
                self.by_id.remove(&id);
                self.removed.insert(id);
            }
            MemberAction::Promote => {
                if let Some(member) = self.by_id.get_mut(&id) {
                    member.is_learner = false;
                }
            }
        }
    }
}

impl Store {
    /// The members, ordered by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.by_id.values()
    }

    /// One member, if it belongs to the cluster.
    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.by_id.get(&id)
    }

    /// True if `id` was removed from the cluster (it may never come back).
    pub fn is_removed_member(&self, id: u64) -> bool {
        self.members.removed.contains(&id)
    }

    /// Ids of the members removed from the cluster, in order.
    pub fn removed_members(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.removed.iter().copied()
    }

    /// Fills an empty member table (a new cluster's founders from `--initial-cluster`, a
    /// joining member from the running cluster's list); does nothing if it has members.
    pub fn seed_members(&mut self, members: impl IntoIterator<Item = Member>) {
        if !self.members.by_id.is_empty() {
            return;
        }
        for member in members {
            if member.id != 0 {
                self.members.by_id.insert(member.id, Member { client_ur_ls: Vec::new(), ..member });
            }
        }
    }

    /// Applies the membership change of configuration entry `index` (indexes strictly
    /// increase, as for [`Store::apply`]).
    pub fn apply_member_change(&mut self, index: u64, change: &MemberChange) {
        self.advance_applied_index(index);
        self.members.apply(change);
    }

    /// Applies a MemberUpdate command: new peer URLs for a member (no-op if it is gone).
    pub(crate) fn member_update(&mut self, request: &MemberUpdateRequest) -> MemberUpdateResponse {
        if let Some(member) = self.members.by_id.get_mut(&request.id) {
            member.peer_ur_ls = request.peer_ur_ls.clone();
        }
        MemberUpdateResponse { header: None, members: self.members.by_id.values().cloned().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, learner: bool) -> Member {
        Member {
            id,
            name: format!("m{id}"),
            peer_ur_ls: vec![format!("http://127.0.0.1:{}", 2000 + id)],
            client_ur_ls: vec!["http://ignored".into()],
            is_learner: learner,
        }
    }

    #[test]
    fn changes_round_trip_and_apply_in_order() {
        let mut store = Store::default();
        store.seed_members([member(1, false), member(2, false)]);
        let add = MemberChange { action: MemberAction::Add, member: member(3, true) };
        assert_eq!(MemberChange::decode(&add.encode()).unwrap().member.id, 3);
        assert!(MemberChange::decode(&[0xff]).is_err());
        store.apply_member_change(1, &MemberChange::decode(&add.encode()).unwrap());
        assert!(store.member(3).unwrap().is_learner);
        assert!(store.member(3).unwrap().client_ur_ls.is_empty(), "client URLs are not replicated");
        store.apply_member_change(2, &MemberChange { action: MemberAction::Promote, member: member(3, false) });
        assert!(!store.member(3).unwrap().is_learner);
        store.apply_member_change(3, &MemberChange { action: MemberAction::Remove, member: member(1, false) });
        assert!(store.member(1).is_none() && store.is_removed_member(1));
        store.apply_member_change(4, &MemberChange { action: MemberAction::Add, member: member(1, false) });
        assert!(store.member(1).is_none(), "a removed id never comes back");
        assert_eq!(store.applied_index(), 4);
        let restored = Store::restore(store.config().clone(), &store.snapshot()).unwrap();
        assert_eq!(restored.members().map(|member| member.id).collect::<Vec<_>>(), vec![2, 3]);
        assert!(restored.is_removed_member(1));
        store.seed_members([member(9, false)]);
        assert!(store.member(9).is_none(), "seeding only fills an empty table");
    }
}
