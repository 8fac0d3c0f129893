//! Requests waiting on the Raft loop: a membership change until it applied here, a leader
//! transfer until the target leads, each answered at the latest at its deadline; the
//! learners the leader promotes once they caught up; when a removed member stops.

use std::collections::BTreeSet;

use proto::etcdserverpb::Member;
use raft::{ConfChange, RawNode, Role, Storage};
use tokio::sync::oneshot;

use super::checks::plan_change;
use super::{Membership, MembershipAnswer, MembershipError, MembershipRequest, LEARNERS_MAX};
use crate::handle::ServerError;

/// Membership requests waiting on one node at most.
const WAITING_REQUESTS_MAX: usize = 64;

pub(super) struct Waiting {
    /// The member whose change (or leadership) we wait for.
    member_id: u64,
    /// MoveLeader waits for leadership instead of an applied change.
    transfer: bool,
    respond: oneshot::Sender<MembershipAnswer>,
    deadline_tick: u64,
}

/// Ticks a removed member keeps running after applying its removal, so its last answers
/// and the commit index reach the others before it stops.
const REMOVED_LINGER_TICKS: u64 = 10;

impl Membership {
    /// Answers the requests waiting for a change of `member` (as it is now applied).
    pub(super) fn answer_applied(&mut self, member: &Member) {
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|waiting| !waiting.transfer && waiting.member_id == member.id);
        self.waiting = waiting;
        for waiting in done {
            let _ = waiting.respond.send(Ok(Some(member.clone())));
        }
    }

    /// Checks `request` and, when valid, proposes it (or starts the leader transfer); the
    /// answer goes to `respond` once the change applied here, or fails at `deadline_tick`.
    pub fn handle<S: Storage>(
        &mut self,
        node: &mut RawNode<S>,
        store: &kv::Store,
        request: MembershipRequest,
        respond: oneshot::Sender<MembershipAnswer>,
        deadline_tick: u64,
    ) {
        if self.waiting.len() >= WAITING_REQUESTS_MAX {
            let _ = respond.send(Err(MembershipError::Server(ServerError::TooManyRequests)));
            return;
        }
        let started = self.started_members(node.id());
        let outcome = match &request {
            MembershipRequest::MoveLeader { target } => start_transfer(node, *target).map(|()| (*target, None)),
            _ => plan_change(node, store, &request, &started, self.strict_reconfig_check, &self.cluster_token)
                .and_then(|(change, member)| propose(node, change).map(|()| (member.id, Some(member)))),
        };
        match outcome {
            Ok((member_id, member)) => {
                let wants_voter = matches!(request, MembershipRequest::Add { is_learner: false, .. });
                if wants_voter && member.is_some_and(|member| member.is_learner) {
                    self.promote_when_caught_up.insert(member_id);
                    assert!(self.promote_when_caught_up.len() <= LEARNERS_MAX, "one learner at a time");
                }
                let transfer = matches!(request, MembershipRequest::MoveLeader { .. });
                self.waiting.push(Waiting { member_id, transfer, respond, deadline_tick });
            }
            Err(error) => {
                let _ = respond.send(Err(error));
            }
        }
    }

    /// Members known to have started: this node and every peer that connected to it.
    fn started_members(&self, local_id: u64) -> BTreeSet<u64> {
        let known = self.directory.known.read().map(|known| known.keys().copied().collect()).unwrap_or_default();
        let mut started: BTreeSet<u64> = known;
        started.insert(local_id);
        started
    }

    /// True if a learner waits to be promoted once caught up (the loop then calls
    /// [`Membership::promote_caught_up_learners`] on its ticks).
    pub fn has_learners_to_promote(&self) -> bool {
        !self.promote_when_caught_up.is_empty()
    }

    /// Leader: proposes the promotion of every learner in `promote_when_caught_up` whose
    /// log caught up (the checks of `etcdctl member promote`); one still behind, or a change
    /// in progress, is tried again on a later tick. A member no longer a learner (promoted
    /// or removed by hand) or a lost leadership drops the plan.
    pub fn promote_caught_up_learners<S: Storage>(&mut self, node: &mut RawNode<S>, store: &kv::Store) {
        if node.role() != Role::Leader {
            self.promote_when_caught_up.clear();
            return;
        }
        let learners = store.members().filter(|member| member.is_learner).map(|member| member.id).collect();
        let learners: BTreeSet<u64> = learners;
        self.promote_when_caught_up.retain(|id| learners.contains(id));
        let started = self.started_members(node.id());
        for id in self.promote_when_caught_up.clone() {
            let request = MembershipRequest::Promote { id };
            let planned = plan_change(node, store, &request, &started, self.strict_reconfig_check, &self.cluster_token);
            let Ok((change, _)) = planned else { continue };
            match propose(node, change) {
                Ok(()) => tracing::info!(member = %format!("{id:x}"), "learner caught up; promoting it to voter"),
                Err(error) => tracing::debug!(member = %format!("{id:x}"), ?error, "promotion deferred"),
            }
        }
    }

    /// True once the Raft loop must stop: this member was removed a little while ago.
    pub fn should_stop(&self, now_tick: u64) -> bool {
        self.stop_at_tick.is_some_and(|stop_at_tick| now_tick >= stop_at_tick)
    }

    /// Answers transfers that ended (the target leads: done; another member leads: failed,
    /// "leader changed") and requests past their deadline.
    pub fn on_tick(&mut self, now_tick: u64, leader: u64) {
        if self.removed_self && self.stop_at_tick.is_none() {
            self.stop_at_tick = Some(now_tick + REMOVED_LINGER_TICKS);
        }
        let local = self.directory.local_id;
        let outcome = |waiting: &Waiting| -> Option<MembershipAnswer> {
            if waiting.transfer && waiting.member_id == leader {
                Some(Ok(None))
            } else if waiting.transfer && leader != raft::NO_NODE && leader != local {
                Some(Err(MembershipError::Server(ServerError::LeaderChanged)))
            } else if waiting.deadline_tick <= now_tick {
                Some(Err(MembershipError::Server(ServerError::Timeout)))
            } else {
                None
            }
        };
        let mut still_waiting = Vec::new();
        for waiting in std::mem::take(&mut self.waiting) {
            match outcome(&waiting) {
                Some(answer) => {
                    let _ = waiting.respond.send(answer);
                }
                None => still_waiting.push(waiting),
            }
        }
        self.waiting = still_waiting;
    }
}

fn start_transfer<S: Storage>(node: &mut RawNode<S>, target: u64) -> Result<(), MembershipError> {
    if node.role() != Role::Leader {
        return Err(MembershipError::NotLeader);
    }
    if !node.conf_state().voters.contains(&target) {
        return Err(MembershipError::BadLeaderTransferee);
    }
    if target == node.id() {
        return Ok(());
    }
    node.transfer_leader(target).map_err(|error| match error {
        raft::ProposeError::InvalidConfChange(_) => MembershipError::BadLeaderTransferee,
        other => propose_error(other),
    })
}

fn propose<S: Storage>(node: &mut RawNode<S>, change: ConfChange) -> Result<(), MembershipError> {
    node.propose_conf_change(change).map_err(propose_error)
}

fn propose_error(error: raft::ProposeError) -> MembershipError {
    match error {
        raft::ProposeError::ConfChangePending => MembershipError::ChangeInProgress,
        raft::ProposeError::InvalidConfChange(reason) => {
            tracing::warn!(%reason, "the core refused a membership change");
            MembershipError::Unhealthy
        }
        raft::ProposeError::Busy => MembershipError::Server(ServerError::TooManyRequests),
        raft::ProposeError::TooLarge => MembershipError::Server(ServerError::RequestTooLarge),
        raft::ProposeError::NoLeader | raft::ProposeError::NotLeader { .. } => MembershipError::NotLeader,
    }
}
