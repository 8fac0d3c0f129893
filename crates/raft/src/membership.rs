//! Membership changes (thesis chapter 4): single-server changes (§4.1), joint consensus
//! (§4.3), learners (R10), as data plus the pure function that applies a change to a
//! configuration.
//!
//! A [`ConfChange`] with one change is a single-server change: adding or removing one voter
//! moves between configurations whose majorities always overlap (§4.1). Two or more changes
//! enter a joint configuration C_old,new; the leader leaves it automatically with an empty
//! `ConfChange` once the joint entry is applied (§4.3).

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{ConfState, NodeId, NO_NODE};

/// Most single changes in one [`ConfChange`] (a bound on decoding).
pub const CONF_CHANGES_MAX: usize = 64;
/// Most bytes of a [`ConfChange`]'s context (a bound on decoding).
pub const CONF_CONTEXT_BYTES_MAX: usize = 1 << 20;

/// Format version written by [`ConfChange::encode`].
const ENCODING_VERSION: u8 = 1;
/// Format version of Config entries written by the core: version 1 followed by the
/// configuration that results from the change, so that a node that never saw the cluster's
/// initial configuration (a new member catching up from the log) learns it exactly.
const ENTRY_ENCODING_VERSION: u8 = 2;
/// Most members in one list of an encoded configuration (a bound on decoding).
const CONF_MEMBERS_MAX: usize = 4096;

/// What one change does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfChangeKind {
    /// Make `node_id` a voter: a new member, or the promotion of a learner.
    AddVoter,
    /// Add `node_id` as a learner (receives the log, never votes, counts in no quorum).
    AddLearner,
    /// Remove `node_id` (voter or learner) from the cluster.
    RemoveNode,
}

impl ConfChangeKind {
    fn code(self) -> u8 {
        let code = match self {
            ConfChangeKind::AddVoter => 1,
            ConfChangeKind::AddLearner => 2,
            ConfChangeKind::RemoveNode => 3,
        };
        assert_eq!(ConfChangeKind::from_code(code), Some(self), "the code of {self:?} decodes to it");
        code
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ConfChangeKind::AddVoter),
            2 => Some(ConfChangeKind::AddLearner),
            3 => Some(ConfChangeKind::RemoveNode),
            _ => None,
        }
    }
}

/// One change of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConfChangeSingle {
    /// What happens to the node.
    pub kind: ConfChangeKind,
    /// The node.
    pub node_id: NodeId,
}

/// A membership change, carried by an [`crate::EntryKind::Config`] entry.
///
/// - one change: a single-server change (§4.1);
/// - two or more: joint consensus (§4.3), left automatically by the leader;
/// - none: "leave the joint configuration" (proposed by the core itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfChange {
    /// The changes, applied together.
    pub changes: Vec<ConfChangeSingle>,
    /// Opaque to the core (e.g. the new member's name and URLs); handed back with the entry.
    pub context: Bytes,
}

/// Why bytes do not decode as a [`ConfChange`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfChangeDecodeError(pub String);

impl std::fmt::Display for ConfChangeDecodeError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "malformed configuration change: {}", self.0)
    }
}

impl std::error::Error for ConfChangeDecodeError {}

impl ConfChange {
    /// A single-server change.
    pub fn single(kind: ConfChangeKind, node_id: NodeId) -> Self {
        let change = ConfChange { changes: vec![ConfChangeSingle { kind, node_id }], context: Bytes::new() };
        assert!(!change.is_leave_joint(), "a single-server change is not the empty change");
        change
    }

    /// True for the empty change that leaves a joint configuration.
    pub fn is_leave_joint(&self) -> bool {
        self.changes.is_empty()
    }

    /// The entry payload: version byte, change count (u32 BE), per change a kind byte and
    /// the node id (u64 BE), then the context length (u32 BE) and bytes.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(1 + 4 + 9 * self.changes.len() + 4 + self.context.len());
        out.put_u8(ENCODING_VERSION);
        out.put_u32(self.changes.len() as u32);
        for change in &self.changes {
            out.put_u8(change.kind.code());
            out.put_u64(change.node_id);
        }
        out.put_u32(self.context.len() as u32);
        out.put_slice(&self.context);
        assert_eq!(out.len(), 1 + 4 + 9 * self.changes.len() + 4 + self.context.len(), "the documented layout");
        out.freeze()
    }

    /// Parses [`ConfChange::encode`]'s output, or the data of any Config entry of the log;
    /// refuses anything else with a reason.
    pub fn decode(data: &[u8]) -> Result<ConfChange, ConfChangeDecodeError> {
        let decoded = decode_config_entry(data).map(|(change, _)| change);
        let bounded = |change: &ConfChange| {
            change.changes.len() <= CONF_CHANGES_MAX && change.context.len() <= CONF_CONTEXT_BYTES_MAX
        };
        assert!(decoded.as_ref().map_or(true, bounded), "a decoded change within its bounds");
        decoded
    }

    /// The data of a Config entry: the change and the configuration it results in.
    pub(crate) fn encode_entry(&self, result: &ConfState) -> Bytes {
        let mut out = BytesMut::from(&self.encode()[..]);
        out[0] = ENTRY_ENCODING_VERSION;
        for list in [&result.voters, &result.learners, &result.voters_outgoing] {
            out.put_u32(list.len() as u32);
            for member in list.iter() {
                out.put_u64(*member);
            }
        }
        let members = result.voters.len() + result.learners.len() + result.voters_outgoing.len();
        assert_eq!(out.len(), self.encode().len() + 3 * 4 + 8 * members, "the change, then three lists");
        debug_assert!(decode_config_entry(&out).is_ok_and(|(_, decoded)| decoded.as_ref() == Some(result)));
        out.freeze()
    }
}

/// The configuration a Config entry written by the core results in (`None` for other
/// data): what `conf_state()` becomes once that entry is handed out.
pub fn conf_state_in_entry(data: &[u8]) -> Option<ConfState> {
    decode_config_entry(data).ok().and_then(|(_, result)| result)
}

/// Decodes a Config entry's data: the change, and the resulting configuration when the
/// entry carries it (entries written by the core do).
pub(crate) fn decode_config_entry(data: &[u8]) -> Result<(ConfChange, Option<ConfState>), ConfChangeDecodeError> {
    let fail = |reason: &str| Err(ConfChangeDecodeError(reason.to_string()));
    let mut reader = Reader { data, position: 0 };
    let with_result = match reader.take(1) {
        Some([ENCODING_VERSION]) => false,
        Some([ENTRY_ENCODING_VERSION]) => true,
        Some(_) => return fail("unknown version"),
        None => return fail("empty"),
    };
    let change = decode_change(&mut reader)?;
    let result = if with_result {
        let mut lists = [Vec::new(), Vec::new(), Vec::new()];
        for list in lists.iter_mut() {
            let Some(count) = reader.u32() else { return fail("truncated member count") };
            if count as usize > CONF_MEMBERS_MAX {
                return fail("too many members");
            }
            for _ in 0..count {
                let Some(member) = reader.u64() else { return fail("truncated member") };
                list.push(member);
            }
        }
        let [voters, learners, voters_outgoing] = lists;
        Some(ConfState { voters, learners, voters_outgoing })
    } else {
        None
    };
    if reader.position != data.len() {
        return fail("trailing bytes");
    }
    let lists_bounded = |conf: &ConfState| {
        [&conf.voters, &conf.learners, &conf.voters_outgoing].iter().all(|list| list.len() <= CONF_MEMBERS_MAX)
    };
    assert!(result.as_ref().is_none_or(lists_bounded), "decoded lists within their bound");
    Ok((change, result))
}

fn decode_change(reader: &mut Reader<'_>) -> Result<ConfChange, ConfChangeDecodeError> {
    let fail = |reason: &str| Err(ConfChangeDecodeError(reason.to_string()));
    let Some(count) = reader.u32() else { return fail("truncated change count") };
    if count as usize > CONF_CHANGES_MAX {
        return fail("too many changes");
    }
    let mut changes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (Some([code]), Some(node_id)) = (reader.take(1), reader.u64()) else {
            return fail("truncated change");
        };
        let Some(kind) = ConfChangeKind::from_code(*code) else { return fail("unknown change kind") };
        changes.push(ConfChangeSingle { kind, node_id });
    }
    assert_eq!(changes.len(), count as usize, "every announced change decoded");
    let Some(context_length) = reader.u32() else { return fail("truncated context length") };
    if context_length as usize > CONF_CONTEXT_BYTES_MAX {
        return fail("context too large");
    }
    let Some(context) = reader.take(context_length as usize) else { return fail("truncated context") };
    assert_eq!(context.len(), context_length as usize, "the whole context taken");
    Ok(ConfChange { changes, context: Bytes::copy_from_slice(context) })
}

struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let end = self.position.checked_add(length)?;
        let slice = self.data.get(self.position..end)?;
        self.position = end;
        assert!(self.position <= self.data.len() && slice.len() == length, "a read within the data");
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|bytes| u32::from_be_bytes(bytes.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|bytes| u64::from_be_bytes(bytes.try_into().expect("8 bytes")))
    }
}

impl ConfState {
    /// True in a joint configuration C_old,new (§4.3).
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// True if `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// True if `id` is a voter (either half) or a learner.
    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// True if the configuration has no voter at all (a new node that has not yet
    /// received its cluster's configuration).
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty() && self.voters_outgoing.is_empty()
    }

    /// Every member (voters of both halves and learners), sorted, without duplicates.
    pub fn members(&self) -> Vec<NodeId> {
        let mut members: Vec<NodeId> =
            self.voters.iter().chain(&self.voters_outgoing).chain(&self.learners).copied().collect();
        members.sort_unstable();
        members.dedup();
        assert!(members.windows(2).all(|pair| pair[0] < pair[1]), "members sorted without duplicates");
        members
    }

    /// The configuration after `change`, or why the change is not allowed here.
    ///
    /// Rules: the empty change leaves a joint configuration (and is refused outside one);
    /// no other change is allowed while joint; node ids are non-zero and distinct; a voter
    /// cannot be added again, a learner cannot be re-added nor a voter demoted, only members
    /// can be removed; the result keeps at least one voter. One change is applied directly
    /// (§4.1); several enter C_old,new with `voters_outgoing` = the current voters (§4.3).
    pub fn apply_change(&self, change: &ConfChange) -> Result<ConfState, String> {
        if change.is_leave_joint() {
            if !self.is_joint() {
                return Err("empty change outside a joint configuration".into());
            }
            let next = ConfState { voters_outgoing: Vec::new(), ..self.clone() };
            assert!(!next.is_joint() && next.voters == self.voters, "leaving joint keeps C_new only");
            return Ok(next);
        }
        if self.is_joint() {
            return Err("in a joint configuration: only leaving it is allowed".into());
        }
        let mut next = self.clone();
        for (position, single) in change.changes.iter().enumerate() {
            if single.node_id == NO_NODE {
                return Err("node id 0 is not allowed".into());
            }
            if change.changes[..position].iter().any(|earlier| earlier.node_id == single.node_id) {
                return Err(format!("node {:x} appears twice in one change", single.node_id));
            }
            next.apply_single(single)?;
        }
        if next.voters.is_empty() {
            return Err("the configuration would have no voter left".into());
        }
        next.voters.sort_unstable();
        next.learners.sort_unstable();
        if change.changes.len() > 1 {
            next.voters_outgoing = self.voters.clone();
            next.voters_outgoing.sort_unstable();
        }
        assert!(change.changes.iter().all(|single| next.reflects(single)), "a change not reflected");
        assert!(!next.voters.is_empty() && next.voters.is_sorted(), "voters sorted, at least one");
        Ok(next)
    }

    fn apply_single(&mut self, single: &ConfChangeSingle) -> Result<(), String> {
        let id = single.node_id;
        match single.kind {
            ConfChangeKind::AddVoter => {
                if self.voters.contains(&id) {
                    return Err(format!("node {id:x} is already a voter"));
                }
                self.learners.retain(|learner| *learner != id);
                self.voters.push(id);
            }
            ConfChangeKind::AddLearner => {
                if self.voters.contains(&id) {
                    return Err(format!("node {id:x} is a voter; demotion is not supported"));
                }
                if self.learners.contains(&id) {
                    return Err(format!("node {id:x} is already a learner"));
                }
                self.learners.push(id);
            }
            ConfChangeKind::RemoveNode => {
                if !self.voters.contains(&id) && !self.learners.contains(&id) {
                    return Err(format!("node {id:x} is not a member"));
                }
                self.voters.retain(|voter| *voter != id);
                self.learners.retain(|learner| *learner != id);
            }
        }
        assert!(self.reflects(single), "{single:?} not reflected");
        Ok(())
    }

    /// True if `single`'s effect shows: an added voter votes (and is no learner), an added
    /// learner is a learner (and no voter), a removed node is neither.
    fn reflects(&self, single: &ConfChangeSingle) -> bool {
        let (voter, learner) = (self.voters.contains(&single.node_id), self.learners.contains(&single.node_id));
        match single.kind {
            ConfChangeKind::AddVoter => voter && !learner,
            ConfChangeKind::AddLearner => learner && !voter,
            ConfChangeKind::RemoveNode => !voter && !learner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(voters: &[NodeId], learners: &[NodeId]) -> ConfState {
        ConfState { voters: voters.to_vec(), learners: learners.to_vec(), voters_outgoing: Vec::new() }
    }

    fn change(changes: &[(ConfChangeKind, NodeId)]) -> ConfChange {
        let changes = changes.iter().map(|(kind, node_id)| ConfChangeSingle { kind: *kind, node_id: *node_id });
        ConfChange { changes: changes.collect(), context: Bytes::new() }
    }

    #[test]
    fn encoding_round_trips_and_refuses_garbage() {
        let original = ConfChange {
            changes: vec![
                ConfChangeSingle { kind: ConfChangeKind::AddVoter, node_id: 4 },
                ConfChangeSingle { kind: ConfChangeKind::RemoveNode, node_id: u64::MAX },
                ConfChangeSingle { kind: ConfChangeKind::AddLearner, node_id: 9 },
            ],
            context: Bytes::from_static(b"member info"),
        };
        let encoded = original.encode();
        assert_eq!(ConfChange::decode(&encoded), Ok(original));
        assert_eq!(ConfChange::decode(&ConfChange::default().encode()), Ok(ConfChange::default()));
        for cut in 0..encoded.len() {
            assert!(ConfChange::decode(&encoded[..cut]).is_err(), "prefix of {cut} bytes decoded");
        }
        let mut trailing = encoded.to_vec();
        trailing.push(0);
        assert!(ConfChange::decode(&trailing).is_err());
        let mut bad_kind = encoded.to_vec();
        bad_kind[5] = 7;
        assert!(ConfChange::decode(&bad_kind).is_err());
        assert!(ConfChange::decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(ConfChange::decode(&[1, 255, 255, 255, 255]).is_err());
        let result = ConfState { voters: vec![1, 4], learners: vec![9], voters_outgoing: vec![1, 2, 3] };
        let original = ConfChange::decode(&encoded).unwrap();
        let entry = original.encode_entry(&result);
        assert_eq!(decode_config_entry(&entry), Ok((original.clone(), Some(result))));
        assert_eq!(ConfChange::decode(&entry), Ok(original), "the public decoder reads entries too");
        for cut in 0..entry.len() {
            assert!(decode_config_entry(&entry[..cut]).is_err(), "prefix of {cut} bytes decoded");
        }
    }

    #[test]
    fn single_changes() {
        use ConfChangeKind::*;
        let start = conf(&[1, 2, 3], &[]);
        let with_learner = start.apply_change(&change(&[(AddLearner, 4)])).unwrap();
        assert_eq!(with_learner, conf(&[1, 2, 3], &[4]));
        let promoted = with_learner.apply_change(&change(&[(AddVoter, 4)])).unwrap();
        assert_eq!(promoted, conf(&[1, 2, 3, 4], &[]));
        assert_eq!(promoted.apply_change(&change(&[(RemoveNode, 2)])).unwrap(), conf(&[1, 3, 4], &[]));
        assert!(promoted.apply_change(&change(&[(AddVoter, 4)])).is_err());
        assert!(promoted.apply_change(&change(&[(AddLearner, 4)])).is_err());
        assert!(promoted.apply_change(&change(&[(RemoveNode, 8)])).is_err());
        assert!(promoted.apply_change(&change(&[(AddVoter, 0)])).is_err());
        assert!(conf(&[1], &[]).apply_change(&change(&[(RemoveNode, 1)])).is_err());
        assert!(start.apply_change(&ConfChange::default()).is_err());
    }

    #[test]
    fn joint_changes_keep_the_old_voters_until_left() {
        use ConfChangeKind::*;
        let start = conf(&[1, 2, 3], &[5]);
        let replace = change(&[(RemoveNode, 1), (RemoveNode, 2), (AddVoter, 4), (AddVoter, 5)]);
        let joint = start.apply_change(&replace).unwrap();
        assert_eq!(joint, ConfState { voters: vec![3, 4, 5], learners: vec![], voters_outgoing: vec![1, 2, 3] });
        assert!(joint.is_joint() && joint.is_voter(1) && joint.is_voter(4));
        assert_eq!(joint.members(), vec![1, 2, 3, 4, 5]);
        assert!(joint.apply_change(&change(&[(AddLearner, 7)])).is_err(), "no change while joint");
        let left = joint.apply_change(&ConfChange::default()).unwrap();
        assert_eq!(left, conf(&[3, 4, 5], &[]));
        assert!(start.apply_change(&change(&[(AddVoter, 6), (AddVoter, 6)])).is_err(), "duplicate id");
        assert!(start.apply_change(&change(&[(RemoveNode, 1), (RemoveNode, 2), (RemoveNode, 3)])).is_err());
    }
}
