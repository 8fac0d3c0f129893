//! Quorum math as pure functions (Raft §5.2 elections, §5.3–5.4 commitment).

use crate::types::{Index, NodeId};

/// Smallest number of voters that forms a majority of `voter_count` (N/2+1).
pub fn majority(voter_count: usize) -> usize {
    assert!(voter_count > 0, "a configuration needs at least one voter");
    voter_count / 2 + 1
}

/// The highest index stored on a majority, given each voter's match index.
///
/// Sorting descending, the majority-th value is on at least a majority (§5.3).
pub fn committed_index(match_indexes: &mut [Index]) -> Index {
    assert!(!match_indexes.is_empty());
    match_indexes.sort_unstable_by(|left, right| right.cmp(left));
    match_indexes[majority(match_indexes.len()) - 1]
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
}
