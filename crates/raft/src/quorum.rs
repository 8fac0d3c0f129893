//! Quorum math as pure functions (Raft §5.2 elections, §5.3–5.4 commitment), including
//! joint configurations (thesis §4.3): a decision of C_old,new needs a majority of C_old
//! and, separately, a majority of C_new. An empty half (outside joint) agrees to everything.

use crate::types::{Index, NodeId};

/// Smallest number of voters that forms a majority of `voter_count` (N/2+1).
pub fn majority(voter_count: usize) -> usize {
    assert!(voter_count > 0, "a configuration needs at least one voter");
    let majority = voter_count / 2 + 1;
    // Any two majorities overlap (the basis of election safety and commitment).
    assert!(2 * majority > voter_count && majority <= voter_count, "a majority of {voter_count}");
    majority
}

/// The highest index stored on a majority, given each voter's match index.
///
/// Sorting descending, the majority-th value is on at least a majority (§5.3).
pub fn committed_index(match_indexes: &mut [Index]) -> Index {
    assert!(!match_indexes.is_empty());
    match_indexes.sort_unstable_by(|left, right| right.cmp(left));
    let needed = majority(match_indexes.len());
    let index = match_indexes[needed - 1];
    assert!(match_indexes.iter().filter(|stored| **stored >= index).count() >= needed, "stored on a majority");
    index
}

/// The outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused (or cannot grant any more).
    Lost,
    /// Still undecided.
    Pending,
}

/// Tallies `votes` (voter, granted) against `voters`; votes from non-voters are ignored.
pub fn vote_result(voters: &[NodeId], votes: &[(NodeId, bool)]) -> VoteResult {
    let needed = majority(voters.len());
    let granted = voters.iter().filter(|voter| votes.contains(&(**voter, true))).count();
    let refused = voters.iter().filter(|voter| votes.contains(&(**voter, false))).count();
    if granted >= needed {
        VoteResult::Won
    } else if voters.len() - refused < needed {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

/// True if `active` (the voters heard from recently) form a majority of `voters`.
pub fn has_quorum(voters: &[NodeId], active: &[NodeId]) -> bool {
    let count = voters.iter().filter(|voter| active.contains(voter)).count();
    count >= majority(voters.len())
}

/// The highest index stored on a majority of `incoming` and on a majority of `outgoing`
/// (the lower of the two majorities' indexes). `outgoing` is empty outside a joint
/// configuration. `match_index` gives each voter's match index.
pub fn joint_committed_index(incoming: &[NodeId], outgoing: &[NodeId], match_index: impl Fn(NodeId) -> Index) -> Index {
    let half = |voters: &[NodeId]| -> Index {
        if voters.is_empty() {
            return Index::MAX;
        }
        let mut indexes: Vec<Index> = voters.iter().map(|voter| match_index(*voter)).collect();
        committed_index(&mut indexes)
    };
    let index = half(incoming).min(half(outgoing));
    if index == Index::MAX {
        0
    } else {
        index
    }
}

/// An election in a joint configuration is won when both halves are won and lost when
/// either half is lost (§4.3); an empty half counts as won.
pub fn joint_vote_result(incoming: &[NodeId], outgoing: &[NodeId], votes: &[(NodeId, bool)]) -> VoteResult {
    let half = |voters: &[NodeId]| if voters.is_empty() { VoteResult::Won } else { vote_result(voters, votes) };
    match (half(incoming), half(outgoing)) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// True if `active` holds a majority of `incoming` and a majority of `outgoing` (an empty
/// half is satisfied).
pub fn joint_has_quorum(incoming: &[NodeId], outgoing: &[NodeId], active: &[NodeId]) -> bool {
    let half = |voters: &[NodeId]| voters.is_empty() || has_quorum(voters, active);
    let quorum = half(incoming) && half(outgoing);
    assert!(!quorum || !active.is_empty() || (incoming.is_empty() && outgoing.is_empty()), "a quorum of nobody");
    quorum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_sizes() {
        let table = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)];
        for (voters, needed) in table {
            assert_eq!(majority(voters), needed, "voters={voters}");
        }
    }

    #[test]
    fn committed_index_is_the_majority_th_largest() {
        assert_eq!(committed_index(&mut [5, 1, 3]), 3);
        assert_eq!(committed_index(&mut [5, 5, 1, 1, 2]), 2);
        assert_eq!(committed_index(&mut [9]), 9);
        assert_eq!(committed_index(&mut [4, 2]), 2);
    }

    #[test]
    fn vote_tally() {
        let voters = [1, 2, 3, 4, 5];
        assert_eq!(vote_result(&voters, &[(1, true), (2, true)]), VoteResult::Pending);
        assert_eq!(vote_result(&voters, &[(1, true), (2, true), (4, true)]), VoteResult::Won);
        assert_eq!(vote_result(&voters, &[(1, true), (2, false), (3, false), (4, false)]), VoteResult::Lost);
        assert_eq!(vote_result(&voters, &[(1, true), (9, true), (8, true)]), VoteResult::Pending);
    }

    #[test]
    fn joint_commit_is_the_lower_of_both_majorities() {
        let matches = |voter: NodeId| [0, 9, 9, 1, 7, 7, 2][voter as usize];
        // C_new {4,5,6}: majority at 7; C_old {1,2,3}: majority at 9 → 7.
        assert_eq!(joint_committed_index(&[4, 5, 6], &[1, 2, 3], matches), 7);
        // C_old {1,3,6}: majority at 2 → 2.
        assert_eq!(joint_committed_index(&[4, 5, 6], &[1, 3, 6], matches), 2);
        assert_eq!(joint_committed_index(&[1, 2, 3], &[], matches), 9);
        assert_eq!(joint_committed_index(&[], &[], matches), 0);
    }

    #[test]
    fn joint_votes_need_both_majorities() {
        let (new, old) = ([3, 4, 5], [1, 2, 3]);
        assert_eq!(joint_vote_result(&new, &old, &[(3, true), (4, true)]), VoteResult::Pending);
        assert_eq!(joint_vote_result(&new, &old, &[(3, true), (4, true), (1, true)]), VoteResult::Won);
        assert_eq!(joint_vote_result(&new, &old, &[(1, true), (2, true), (4, false), (5, false)]), VoteResult::Lost);
        assert_eq!(joint_vote_result(&new, &[], &[(3, true), (4, true)]), VoteResult::Won);
        assert!(joint_has_quorum(&new, &old, &[3, 4, 1]));
        assert!(!joint_has_quorum(&new, &old, &[3, 4, 5]));
        assert!(joint_has_quorum(&new, &[], &[3, 4]));
    }
}
