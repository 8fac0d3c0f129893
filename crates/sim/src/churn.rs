//! Membership churn (thesis chapter 4) as a fault: the scheduler asks the leader to add a
//! learner, promote one, remove a voter (possibly itself) or a learner, replace several
//! voters at once (joint consensus), or hand its leadership to another voter (§3.10).
//! Voters stay within `VOTERS_MIN..=VOTERS_MAX` out of the pool of ids `1..=9`; a node
//! added again after its removal starts from an empty data dir, as etcd requires.

use raft::{ConfChange, ConfChangeKind, ConfChangeSingle, NodeId};

use crate::events::EventKind;
use crate::simulator::{Simulator, TICK_INTERVAL_TIME, VOTERS_MAX, VOTERS_MIN};
use crate::Violation;

/// What the churn step asks of the leader.
enum Request {
    Change(Vec<(ConfChangeKind, NodeId)>),
    Transfer(NodeId),
}

impl Simulator {
    /// One churn action on the current leader (skipped while a change is in flight).
    pub(crate) fn churn_membership(&mut self) {
        let Some(position) = self.leader_position() else { return };
        let raw = self.nodes[position].raw().expect("a leader is alive");
        let conf = raw.latest_conf_state().clone();
        if conf.is_joint() || raw.conf_state() != conf {
            self.note("churn: a membership change is still in flight".to_string());
            return;
        }
        let leader = raw.id();
        let outsiders: Vec<NodeId> = (1..=self.nodes.len() as NodeId).filter(|id| !conf.is_member(*id)).collect();
        // Ids never used in any configuration may join directly as voters; ids used before
        // come back only as learners (with a wiped disk, abstaining until caught up), as
        // etcd's "learner first" practice: a stale removed node's configuration may still
        // list them, and their empty vote must not count there.
        let fresh: Vec<NodeId> = outsiders.iter().copied().filter(|id| !self.used_ids.contains(id)).collect();
        // Only learners that caught up are promoted (etcd refuses the others): a promoted
        // learner that must still abstain could leave the cluster without a quorum.
        let commit = raw.commit_index();
        let learners: Vec<NodeId> = conf
            .learners
            .iter()
            .copied()
            .filter(|learner| raw.progress(*learner).is_some_and(|progress| progress.match_index >= commit))
            .collect();
        let Some(request) = self.choose_request(leader, &conf.voters, &learners, &outsiders, &fresh) else {
            return;
        };
        match request {
            Request::Transfer(target) => {
                let raw = self.nodes[position].raw_mut().expect("alive");
                let outcome = raw.transfer_leader(target);
                self.note(format!("churn: n{leader} transfers leadership to n{target}: {outcome:?}"));
            }
            Request::Change(changes) => {
                for (_, id) in changes.iter().filter(|(_, id)| outsiders.contains(id)) {
                    if self.used_ids.contains(id) {
                        self.wipe(*id as usize - 1);
                    }
                }
                self.used_ids.extend(changes.iter().map(|(_, id)| *id));
                let singles = changes.iter().map(|(kind, node_id)| ConfChangeSingle { kind: *kind, node_id: *node_id });
                let change = ConfChange { changes: singles.collect(), context: bytes::Bytes::new() };
                let Some(raw) = self.nodes[position].raw_mut() else { return };
                let outcome = raw.propose_conf_change(change);
                self.note(format!("churn: n{leader} proposes {changes:?}: {outcome:?}"));
                self.statistics.membership_changes += u64::from(outcome.is_ok());
            }
        }
        self.after_input(position);
    }

    fn choose_request(
        &mut self,
        leader: NodeId,
        voters: &[NodeId],
        learners: &[NodeId],
        outsiders: &[NodeId],
        fresh: &[NodeId],
    ) -> Option<Request> {
        let pick = |rng: &mut raft::SplitMix64, list: &[NodeId]| list[rng.range(0, list.len() as u64) as usize];
        use ConfChangeKind::*;
        let request = match self.rng.range(0, 6) {
            0 if !outsiders.is_empty() => Request::Change(vec![(AddLearner, pick(&mut self.rng, outsiders))]),
            1 if !learners.is_empty() && voters.len() < VOTERS_MAX => {
                Request::Change(vec![(AddVoter, pick(&mut self.rng, learners))])
            }
            2 if voters.len() > VOTERS_MIN => Request::Change(vec![(RemoveNode, pick(&mut self.rng, voters))]),
            3 if !learners.is_empty() => Request::Change(vec![(RemoveNode, pick(&mut self.rng, learners))]),
            4 => Request::Change(self.joint_replacement(voters, learners, fresh)?),
            5 if voters.len() > 1 => {
                let others: Vec<NodeId> = voters.iter().copied().filter(|voter| *voter != leader).collect();
                Request::Transfer(pick(&mut self.rng, &others))
            }
            _ => return None,
        };
        Some(request)
    }

    /// Removes 0–2 voters and adds 1–2 (learners or never-used ids) in one joint change of at
    /// least two single changes, keeping the voter count within bounds.
    fn joint_replacement(
        &mut self,
        voters: &[NodeId],
        learners: &[NodeId],
        fresh: &[NodeId],
    ) -> Option<Vec<(ConfChangeKind, NodeId)>> {
        let mut candidates: Vec<NodeId> = learners.iter().chain(fresh).copied().collect();
        let mut remaining: Vec<NodeId> = voters.to_vec();
        let mut changes = Vec::new();
        let additions = self.rng.range(1, 3) as usize;
        for _ in 0..additions.min(candidates.len()) {
            let id = candidates.swap_remove(self.rng.range(0, candidates.len() as u64) as usize);
            changes.push((ConfChangeKind::AddVoter, id));
        }
        let added = changes.len();
        let removals = self.rng.range(0, 3) as usize;
        for _ in 0..removals {
            if remaining.len() + added <= VOTERS_MIN {
                break;
            }
            let id = remaining.swap_remove(self.rng.range(0, remaining.len() as u64) as usize);
            changes.push((ConfChangeKind::RemoveNode, id));
        }
        let voters_after = remaining.len() + added;
        let valid = changes.len() >= 2 && (VOTERS_MIN..=VOTERS_MAX).contains(&voters_after);
        valid.then_some(changes)
    }

    /// Replaces node `position` by a brand-new empty node (new incarnation) and starts it.
    fn wipe(&mut self, position: usize) {
        let seed = self.rng.next_u64();
        if let Err(message) = self.nodes[position].wipe(seed, &mut self.view.nodes[position]) {
            self.violations.push(Violation { invariant: "restart".to_string(), message, step: self.view.step });
            return;
        }
        self.pending_reads[position].clear();
        self.nodes[position].disk_busy_until = 0;
        let incarnation = self.view.nodes[position].incarnation;
        self.note(format!("churn: n{} starts again with an empty data dir", position + 1));
        self.after_input(position);
        let first_tick = self.rng.range(1, TICK_INTERVAL_TIME);
        self.queue.schedule_after(first_tick, EventKind::Tick { position, incarnation });
    }
}
