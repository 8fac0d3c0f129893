//! Two checks on how a leader moves its commit index, made on the node's real (simulated)
//! disks rather than on the core's word:
//! - `committed_durable_on_quorum`: an entry a leader commits is durable on a quorum of its
//!   configuration (Figure 2: a server responds only after persisting; the leader counts
//!   its own copy only once durable). Catches acknowledgements sent before fsync.
//! - `leader_commit_rule`: a leader moves its commit index only to an entry of its own
//!   term (Figure 2, §5.4.2: entries of earlier terms commit only with one of the leader's
//!   term after them — the Figure 8 rule).

use raft::{Index, MemoryStorage, Role, Storage, Term};

use crate::simulator::Simulator;
use crate::Violation;

/// What a leader's commit index was when last seen: (incarnation, term, commit).
pub(crate) type LeaderCommitSeen = Option<(u64, Term, Index)>;

/// True if `storage` durably holds the entry (`index`, `term`), or has compacted past it.
fn durably_holds(storage: &MemoryStorage, index: Index, term: Term) -> bool {
    index < storage.first_index() || storage.term(index) == Ok(term)
}

impl Simulator {
    /// Checks the leader at `position` after an input (see the module docs).
    pub(crate) fn check_leader_commit(&mut self, position: usize) {
        let incarnation = self.view.nodes[position].incarnation;
        let Some(raw) = self.nodes[position].raw() else { return };
        if raw.role() != Role::Leader {
            self.leader_commits[position] = None;
            return;
        }
        let (term, commit) = (raw.term(), raw.commit_index());
        let previous = self.leader_commits[position].replace((incarnation, term, commit));
        let Some((seen_incarnation, seen_term, seen_commit)) = previous else { return };
        if seen_incarnation != incarnation || seen_term != term || commit <= seen_commit {
            return;
        }
        let Some(entry_term) = raw.term_at(commit) else { return };
        let id = raw.id();
        let mut messages = Vec::new();
        if entry_term != term {
            messages.push((
                "leader_commit_rule",
                format!("leader {id} of term {term} moved its commit index to {commit}, an entry of term {entry_term}"),
            ));
        }
        let conf = raw.latest_conf_state().clone();
        let durable: Vec<raft::NodeId> = conf
            .voters
            .iter()
            .chain(&conf.voters_outgoing)
            .copied()
            .filter(|voter| {
                let node = self.nodes.get(*voter as usize - 1);
                node.and_then(|node| node.durable_storage())
                    .is_some_and(|storage| durably_holds(storage, commit, entry_term))
            })
            .collect();
        if !raft::quorum::joint_has_quorum(&conf.voters, &conf.voters_outgoing, &durable) {
            messages.push((
                "committed_durable_on_quorum",
                format!(
                    "leader {id} of term {term} committed index {commit} (term {entry_term}) durable only on {durable:?} of voters {:?} / {:?}",
                    conf.voters, conf.voters_outgoing
                ),
            ));
        }
        for (invariant, message) in messages {
            self.violations.push(Violation { invariant: invariant.to_string(), message, step: self.view.step });
        }
    }
}
