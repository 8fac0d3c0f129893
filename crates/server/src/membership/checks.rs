//! The leader's checks of a membership request (etcd's checks and error texts) and the
//! configuration change it then proposes.

use std::collections::{BTreeMap, BTreeSet};

use proto::etcdserverpb::Member;
use raft::{ConfChange, ConfChangeKind, ConfChangeSingle, ConfState, ProgressState, RawNode, Role, Storage};

use super::{new_member_id, MembershipError, MembershipRequest, LEARNERS_MAX};

/// A learner is ready for promotion once it has at least this share (per mille) of the
/// leader's log, as etcd requires (90 %).
const LEARNER_READY_PER_MILLE: u64 = 900;

/// What the leader knows when it checks a request.
struct ClusterView<'a> {
    store: &'a kv::Store,
    conf: ConfState,
    started: &'a BTreeSet<u64>,
    /// `--strict-reconfig-check`: refuse changes that too few started (or active) members would leave.
    strict: bool,
    /// Follower progress: (match index, replicating).
    progress: BTreeMap<u64, (u64, bool)>,
    leader_id: u64,
    last_index: u64,
}

/// Checks `request` as etcd does and builds the configuration change to propose.
pub(super) fn plan_change<S: Storage>(
    node: &RawNode<S>,
    store: &kv::Store,
    request: &MembershipRequest,
    started: &BTreeSet<u64>,
    strict: bool,
    cluster_token: &str,
) -> Result<(ConfChange, Member), MembershipError> {
    if node.role() != Role::Leader {
        return Err(MembershipError::NotLeader);
    }
    let conf = node.conf_state();
    let progress = conf
        .voters
        .iter()
        .chain(&conf.learners)
        .filter_map(|id| {
            node.progress(*id).map(|view| (*id, (view.match_index, view.state == ProgressState::Replicate)))
        })
        .collect();
    let view =
        ClusterView { store, conf, started, strict, progress, leader_id: node.id(), last_index: node.last_index() };
    check_request(&view, request, cluster_token)
}

fn check_request(
    view: &ClusterView<'_>,
    request: &MembershipRequest,
    cluster_token: &str,
) -> Result<(ConfChange, Member), MembershipError> {
    match request {
        MembershipRequest::Add { peer_urls, is_learner } => check_add(view, peer_urls, *is_learner, cluster_token),
        MembershipRequest::Remove { id } => check_remove(view, *id),
        MembershipRequest::Promote { id } => check_promote(view, *id),
        MembershipRequest::MoveLeader { .. } => unreachable!("handled by start_transfer"),
    }
}

fn conf_change(kind: ConfChangeKind, member: &Member, action: kv::MemberAction) -> ConfChange {
    let context = kv::MemberChange { action, member: member.clone() }.encode();
    ConfChange { changes: vec![ConfChangeSingle { kind, node_id: member.id }], context: context.into() }
}

fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

fn check_add(
    view: &ClusterView<'_>,
    peer_urls: &[String],
    is_learner: bool,
    cluster_token: &str,
) -> Result<(ConfChange, Member), MembershipError> {
    if peer_urls.is_empty() || peer_urls.iter().any(|url| crate::config::parse_url(url).is_err()) {
        return Err(MembershipError::BadUrls);
    }
    let mut sorted: Vec<String> = peer_urls.to_vec();
    sorted.sort();
    sorted.dedup();
    let in_use = view.store.members().any(|member| member.peer_ur_ls.iter().any(|url| sorted.contains(url)));
    if in_use {
        return Err(MembershipError::PeerUrlExists);
    }
    if is_learner && view.store.members().filter(|member| member.is_learner).count() >= LEARNERS_MAX {
        return Err(MembershipError::TooManyLearners);
    }
    // A one-voter cluster (regrowing after --force-new-cluster or a restore) may grow, as in
    // etcd; the new member first catches up as a learner (see `catches_up_first`).
    let regrowing = !is_learner && view.conf.voters.len() == 1;
    if !is_learner && view.strict && !regrowing {
        let voters = view.conf.voters.len() + 1;
        let started = view.conf.voters.iter().filter(|id| view.started.contains(id)).count();
        if started < quorum(voters) {
            return Err(MembershipError::NotEnoughStartedMembers);
        }
    }
    let as_learner = is_learner || catches_up_first(view, regrowing);
    let id = new_member_id(&sorted, cluster_token);
    let member =
        Member { id, name: String::new(), peer_ur_ls: sorted, client_ur_ls: Vec::new(), is_learner: as_learner };
    let kind = if as_learner { ConfChangeKind::AddLearner } else { ConfChangeKind::AddVoter };
    Ok((conf_change(kind, &member, kv::MemberAction::Add), member))
}

/// Thesis §4.2.1 ("catching up new servers"): a voter added to a one-voter cluster would
/// make the new configuration's quorum need the new member before it has even started (the
/// add itself could not commit, and the cluster would be unavailable until it caught up).
/// It joins as a learner instead and the leader promotes it once it has caught up (see
/// [`Membership::promote_caught_up_learners`]). Not when the cluster already holds its
/// [`LEARNERS_MAX`] learners: then it is added as a voter directly, as etcd does.
fn catches_up_first(view: &ClusterView<'_>, regrowing: bool) -> bool {
    regrowing && view.store.members().filter(|member| member.is_learner).count() < LEARNERS_MAX
}

fn check_remove(view: &ClusterView<'_>, id: u64) -> Result<(ConfChange, Member), MembershipError> {
    let member = view.store.member(id).cloned().ok_or(MembershipError::MemberNotFound)?;
    if view.conf.voters.contains(&id) && view.strict {
        let voters = view.conf.voters.len() - 1;
        let remaining = view.conf.voters.iter().filter(|voter| **voter != id);
        let started = remaining.clone().filter(|voter| view.started.contains(voter)).count();
        if started < quorum(voters) {
            return Err(MembershipError::NotEnoughStartedMembers);
        }
        let active = remaining
            .filter(|voter| {
                **voter == view.leader_id || view.progress.get(voter).is_some_and(|(_, replicating)| *replicating)
            })
            .count();
        if active < quorum(voters) {
            return Err(MembershipError::Unhealthy);
        }
    }
    Ok((conf_change(ConfChangeKind::RemoveNode, &member, kv::MemberAction::Remove), member))
}

fn check_promote(view: &ClusterView<'_>, id: u64) -> Result<(ConfChange, Member), MembershipError> {
    let member = view.store.member(id).cloned().ok_or(MembershipError::MemberNotFound)?;
    if !member.is_learner || !view.conf.learners.contains(&id) {
        return Err(MembershipError::MemberNotLearner);
    }
    let match_index = view.progress.get(&id).map_or(0, |(match_index, _)| *match_index);
    if match_index.saturating_mul(1000) < view.last_index.saturating_mul(LEARNER_READY_PER_MILLE) || match_index == 0 {
        return Err(MembershipError::LearnerNotReady);
    }
    let voters = view.conf.voters.len() + 1;
    let started = view.conf.voters.iter().chain([&id]).filter(|voter| view.started.contains(voter)).count();
    if view.strict && started < quorum(voters) {
        return Err(MembershipError::NotEnoughStartedMembers);
    }
    let promoted = Member { is_learner: false, ..member };
    Ok((conf_change(ConfChangeKind::AddVoter, &promoted, kv::MemberAction::Promote), promoted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, learner: bool) -> Member {
        Member {
            id,
            name: format!("n{id}"),
            peer_ur_ls: vec![format!("http://127.0.0.1:{}", 2000 + id)],
            client_ur_ls: Vec::new(),
            is_learner: learner,
        }
    }

    fn store_with(members: &[Member]) -> kv::Store {
        let mut store = kv::Store::default();
        store.seed_members(members.iter().cloned());
        store
    }

    fn view<'a>(store: &'a kv::Store, started: &'a BTreeSet<u64>, learners: &[u64]) -> ClusterView<'a> {
        let voters: Vec<u64> = store.members().filter(|member| !member.is_learner).map(|member| member.id).collect();
        let progress = voters.iter().chain(learners).map(|id| (*id, (100, true))).collect();
        ClusterView {
            store,
            conf: ConfState { voters, learners: learners.to_vec(), voters_outgoing: Vec::new() },
            started,
            strict: true,
            progress,
            leader_id: 1,
            last_index: 100,
        }
    }

    #[test]
    fn add_is_checked_as_etcd_does() {
        let store = store_with(&[member(1, false), member(2, false), member(3, false)]);
        let all: BTreeSet<u64> = [1, 2, 3].into();
        let add = |urls: &[&str], learner: bool, started: &BTreeSet<u64>| {
            let peer_urls = urls.iter().map(|url| url.to_string()).collect();
            check_request(&view(&store, started, &[]), &MembershipRequest::Add { peer_urls, is_learner: learner }, "t")
        };
        let (change, added) = add(&["http://127.0.0.1:9000"], false, &all).unwrap();
        assert_eq!(change.changes, vec![ConfChangeSingle { kind: ConfChangeKind::AddVoter, node_id: added.id }]);
        let context = kv::MemberChange::decode(&change.context).unwrap();
        assert_eq!((context.action, context.member.peer_ur_ls), (kv::MemberAction::Add, added.peer_ur_ls));
        assert_eq!(add(&["http://127.0.0.1:2001"], false, &all).unwrap_err(), MembershipError::PeerUrlExists);
        assert_eq!(add(&["127.0.0.1:9000"], false, &all).unwrap_err(), MembershipError::BadUrls);
        assert_eq!(add(&[], true, &all).unwrap_err(), MembershipError::BadUrls);
        let only_leader: BTreeSet<u64> = [1].into();
        assert_eq!(
            add(&["http://127.0.0.1:9000"], false, &only_leader).unwrap_err(),
            MembershipError::NotEnoughStartedMembers
        );
        assert!(add(&["http://127.0.0.1:9000"], true, &only_leader).is_ok(), "a learner needs no quorum");
        let alone = store_with(&[member(1, false)]);
        let request = MembershipRequest::Add { peer_urls: vec!["http://127.0.0.1:9000".into()], is_learner: false };
        let (change, added) = check_request(&view(&alone, &only_leader, &[]), &request, "t")
            .expect("a one-member cluster may add a voter (etcd: regrowing a restored or forced cluster)");
        assert_eq!(change.changes[0].kind, ConfChangeKind::AddLearner, "it catches up as a learner first");
        assert!(added.is_learner);
        let alone_with_learner = store_with(&[member(1, false), member(4, true)]);
        let (change, added) = check_request(&view(&alone_with_learner, &only_leader, &[4]), &request, "t").unwrap();
        assert_eq!(change.changes[0].kind, ConfChangeKind::AddVoter, "one learner at most: added as a voter");
        assert!(!added.is_learner);
        let lax = ClusterView { strict: false, ..view(&store, &only_leader, &[]) };
        let request = MembershipRequest::Add { peer_urls: vec!["http://127.0.0.1:9000".into()], is_learner: false };
        assert!(check_request(&lax, &request, "t").is_ok(), "--strict-reconfig-check=false skips the started check");
        assert_eq!(
            check_request(&lax, &MembershipRequest::Remove { id: 2 }, "t").map(|(_, member)| member.id),
            Ok(2),
            "--strict-reconfig-check=false: a removal that leaves too few started members is allowed"
        );
        let with_learner = store_with(&[member(1, false), member(2, false), member(4, true)]);
        let request = MembershipRequest::Add { peer_urls: vec!["http://127.0.0.1:9000".into()], is_learner: true };
        assert_eq!(
            check_request(&view(&with_learner, &all, &[4]), &request, "t").unwrap_err(),
            MembershipError::TooManyLearners
        );
    }

    #[test]
    fn remove_and_promote_are_checked_as_etcd_does() {
        let store = store_with(&[member(1, false), member(2, false), member(3, false), member(4, true)]);
        let all: BTreeSet<u64> = [1, 2, 3, 4].into();
        let check = |request: MembershipRequest, view: &ClusterView<'_>| check_request(view, &request, "t");
        assert_eq!(
            check(MembershipRequest::Remove { id: 9 }, &view(&store, &all, &[4])).unwrap_err(),
            MembershipError::MemberNotFound
        );
        let (change, _) = check(MembershipRequest::Remove { id: 3 }, &view(&store, &all, &[4])).unwrap();
        assert_eq!(change.changes[0].kind, ConfChangeKind::RemoveNode);
        let mut unhealthy = view(&store, &all, &[4]);
        unhealthy.progress.insert(2, (10, false));
        assert_eq!(check(MembershipRequest::Remove { id: 3 }, &unhealthy).unwrap_err(), MembershipError::Unhealthy);
        assert_eq!(
            check(MembershipRequest::Promote { id: 2 }, &view(&store, &all, &[4])).unwrap_err(),
            MembershipError::MemberNotLearner
        );
        let mut lagging = view(&store, &all, &[4]);
        lagging.progress.insert(4, (50, true));
        assert_eq!(
            check(MembershipRequest::Promote { id: 4 }, &lagging).unwrap_err(),
            MembershipError::LearnerNotReady
        );
        let (change, promoted) = check(MembershipRequest::Promote { id: 4 }, &view(&store, &all, &[4])).unwrap();
        assert_eq!(change.changes[0], ConfChangeSingle { kind: ConfChangeKind::AddVoter, node_id: 4 });
        assert!(!promoted.is_learner);
    }
}
