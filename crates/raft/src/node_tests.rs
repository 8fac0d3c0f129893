//! Unit tests of the core through a minimal synchronous in-memory cluster.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::*;

struct Cluster {
    nodes: Vec<RawNode<MemoryStorage>>,
    in_flight: VecDeque<Message>,
    applied: Vec<Vec<Bytes>>,
    /// Read states each node handed out, in order.
    read_states: Vec<Vec<ReadState>>,
    down: Vec<bool>,
}

impl Cluster {
    fn new(size: u64) -> Self {
        let voters: Vec<u64> = (1..=size).collect();
        let nodes = voters
            .iter()
            .map(|id| RawNode::new(Config::new(*id), MemoryStorage::new_with_voters(&voters)).unwrap())
            .collect();
        Cluster {
            nodes,
            in_flight: VecDeque::new(),
            applied: vec![Vec::new(); size as usize],
            read_states: vec![Vec::new(); size as usize],
            down: vec![false; size as usize],
        }
    }

    fn node(&mut self, id: u64) -> &mut RawNode<MemoryStorage> {
        &mut self.nodes[id as usize - 1]
    }

    /// Drives every node's Ready synchronously (persist, send, apply) until quiet.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            for position in 0..self.nodes.len() {
                let node = &mut self.nodes[position];
                while node.has_ready() {
                    progressed = true;
                    let ready = node.ready();
                    if let Some(snapshot) = ready.snapshot.clone() {
                        node.storage_mut().apply_snapshot(snapshot);
                    }
                    node.storage_mut().append(&ready.entries);
                    if let Some(hard_state) = ready.hard_state {
                        node.storage_mut().set_hard_state(hard_state);
                    }
                    node.on_persisted(ready.persist_sequence);
                    self.in_flight.extend(ready.messages);
                    self.read_states[position].extend(ready.read_states);
                    for entry in ready.committed_entries {
                        if entry.kind == EntryKind::Normal {
                            self.applied[position].push(entry.data);
                        }
                    }
                }
            }
            while let Some(message) = self.in_flight.pop_front() {
                progressed = true;
                let to = message.to as usize - 1;
                if !self.down[to] && !self.down[message.from as usize - 1] {
                    let _ = self.nodes[to].step(message);
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("cluster did not settle");
    }

    fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            for position in 0..self.nodes.len() {
                if !self.down[position] {
                    self.nodes[position].tick();
                }
            }
            self.settle();
        }
    }

    fn leader(&self) -> Option<u64> {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(position, node)| !self.down[*position] && node.role() == Role::Leader)
            .map(|(_, node)| node.id())
            .collect();
        leaders.iter().max_by_key(|id| self.nodes[**id as usize - 1].term()).copied()
    }
}

#[test]
fn elects_a_leader_and_replicates() {
    let mut cluster = Cluster::new(3);
    cluster.tick_all(30);
    let leader = cluster.leader().expect("a leader is elected");
    cluster.node(leader).propose(Bytes::from_static(b"x=1")).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    for position in 0..3 {
        assert_eq!(cluster.applied[position], vec![Bytes::from_static(b"x=1")], "node {}", position + 1);
    }
}

#[test]
fn follower_forwards_proposals() {
    let mut cluster = Cluster::new(3);
    cluster.tick_all(30);
    let leader = cluster.leader().unwrap();
    let follower = if leader == 1 { 2 } else { 1 };
    cluster.node(follower).propose(Bytes::from_static(b"y")).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    assert!(cluster.applied.iter().all(|applied| applied == &vec![Bytes::from_static(b"y")]));
}

#[test]
fn forwarding_off_gives_leader_hint() {
    let voters = [1, 2, 3];
    let mut config = Config::new(2);
    config.forward_proposals = false;
    let mut node = RawNode::new(config, MemoryStorage::new_with_voters(&voters)).unwrap();
    assert_eq!(node.propose(Bytes::new()), Err(ProposeError::NotLeader { leader_hint: NO_NODE }));
    let heartbeat = Message { from: 1, to: 2, term: 1, body: MessageBody::Heartbeat { commit: 0, read_round: 0 } };
    node.step(heartbeat).unwrap();
    assert_eq!(node.propose(Bytes::new()), Err(ProposeError::NotLeader { leader_hint: 1 }));
}

#[test]
fn new_leader_after_leader_crash_keeps_committed_entries() {
    let mut cluster = Cluster::new(5);
    cluster.tick_all(30);
    let leader = cluster.leader().unwrap();
    for value in 0..20u8 {
        cluster.node(leader).propose(Bytes::from(vec![value])).unwrap();
    }
    cluster.settle();
    cluster.down[leader as usize - 1] = true;
    cluster.tick_all(40);
    let new_leader = cluster.leader().unwrap();
    assert_ne!(new_leader, leader);
    cluster.node(new_leader).propose(Bytes::from_static(b"after")).unwrap();
    cluster.settle();
    cluster.tick_all(2);
    let expected = cluster.applied[new_leader as usize - 1].clone();
    assert_eq!(expected.len(), 21);
    for position in 0..5 {
        if position + 1 != leader as usize {
            assert_eq!(cluster.applied[position], expected);
        }
    }
}

#[test]
fn read_index_confirms_leadership() {
    let mut cluster = Cluster::new(3);
    cluster.tick_all(30);
    let leader = cluster.leader().unwrap();
    cluster.node(leader).read_index(Bytes::from_static(b"r1")).unwrap();
    cluster.node(leader).tick();
    // Collect read states by hand: settle would discard them.
    let mut read_states = Vec::new();
    for _ in 0..20 {
        for position in 0..3 {
            let node = &mut cluster.nodes[position];
            while node.has_ready() {
                let ready = node.ready();
                node.storage_mut().append(&ready.entries);
                if let Some(hard_state) = ready.hard_state {
                    node.storage_mut().set_hard_state(hard_state);
                }
                node.on_persisted(ready.persist_sequence);
                read_states.extend(ready.read_states);
                cluster.in_flight.extend(ready.messages);
            }
        }
        while let Some(message) = cluster.in_flight.pop_front() {
            let to = message.to as usize - 1;
            let _ = cluster.nodes[to].step(message);
        }
    }
    assert_eq!(read_states.len(), 1);
    assert_eq!(read_states[0].context, Bytes::from_static(b"r1"));
    assert!(read_states[0].index >= 1);
}

#[test]
fn bad_input_is_refused() {
    let mut node = RawNode::new(Config::new(1), MemoryStorage::new_with_voters(&[1, 2, 3])).unwrap();
    // Leader messages are heard from senders outside the configuration (a leader of a
    // configuration this node has not seen yet); other kinds are ignored.
    let unknown = Message { from: 9, to: 1, term: 5, body: MessageBody::VoteResponse { reject: false } };
    assert_eq!(node.step(unknown), Ok(()));
    assert_eq!(node.term(), 0, "ignored");
    let nobody = Message { from: 0, to: 1, term: 5, body: MessageBody::Heartbeat { commit: 100, read_round: 0 } };
    assert_eq!(node.step(nobody), Err(StepError::UnknownSender(0)));
    let gap = Message {
        from: 2,
        to: 1,
        term: 1,
        body: MessageBody::Append {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry { term: 1, index: 5, kind: EntryKind::Normal, data: Bytes::new() }],
            commit: 5,
        },
    };
    assert!(matches!(node.step(gap), Err(StepError::Malformed(_))));
    assert_eq!(node.term(), 0, "refused messages change nothing");
    let far = Message { from: 2, to: 1, term: 3, body: MessageBody::Heartbeat { commit: 1_000_000, read_round: 0 } };
    node.step(far).unwrap();
    assert_eq!(node.commit_index(), 0, "commit is bounded by the local log");
}

#[test]
fn wiped_follower_catches_up_and_abstains_until_then() {
    let mut cluster = Cluster::new(3);
    cluster.tick_all(30);
    let leader = cluster.leader().unwrap();
    for value in 0..10u8 {
        cluster.node(leader).propose(Bytes::from(vec![value])).unwrap();
    }
    cluster.settle();
    cluster.tick_all(2);
    let wiped = if leader == 3 { 2 } else { 3 };
    let mut config = Config::new(wiped);
    config.abstain_until_caught_up = true;
    let fresh = RawNode::new(config, MemoryStorage::new_with_voters(&[1, 2, 3])).unwrap();
    cluster.nodes[wiped as usize - 1] = fresh;
    cluster.applied[wiped as usize - 1].clear();
    // Before hearing from the leader it refuses to vote.
    let vote =
        Message { from: leader, to: wiped, term: 50, body: MessageBody::Vote { last_log_index: 0, last_log_term: 0 } };
    cluster.node(wiped).step(vote).unwrap();
    let ready = cluster.node(wiped).ready();
    assert!(ready.messages.is_empty(), "held until persisted");
    cluster.node(wiped).storage_mut().set_hard_state(ready.hard_state.unwrap());
    cluster.node(wiped).on_persisted(ready.persist_sequence);
    let reply = cluster.node(wiped).ready().messages;
    assert_eq!(reply[0].body, MessageBody::VoteResponse { reject: true });
    // Back to term order: recreate it and let the cluster repair it.
    let mut config = Config::new(wiped);
    config.abstain_until_caught_up = true;
    cluster.nodes[wiped as usize - 1] = RawNode::new(config, MemoryStorage::new_with_voters(&[1, 2, 3])).unwrap();
    cluster.tick_all(5);
    let leader_applied = cluster.applied[leader as usize - 1].clone();
    assert_eq!(leader_applied.len(), 10);
    assert_eq!(cluster.applied[wiped as usize - 1], leader_applied, "the wiped follower caught up");
}

/// §7 with Figure 13's chunks: a lost chunk is re-sent from the follower's last
/// acknowledged offset, so the transfer resumes instead of restarting.
#[test]
fn snapshot_transfer_resumes_after_a_lost_chunk() {
    let voters = [1, 2, 3];
    let mut cluster = Cluster::new(3);
    for position in 0..3 {
        let mut config = Config::new(position as u64 + 1);
        config.snapshot_chunk_bytes_max = 1000;
        cluster.nodes[position] = RawNode::new(config, MemoryStorage::new_with_voters(&voters)).unwrap();
    }
    cluster.node(1).campaign();
    cluster.settle();
    assert_eq!(cluster.node(1).role(), Role::Leader);
    cluster.down[2] = true;
    for value in 0..20u8 {
        cluster.node(1).propose(Bytes::from(vec![value])).unwrap();
    }
    cluster.settle();
    let applied = cluster.node(1).applied_index();
    let state = Bytes::from(vec![42u8; 10_500]);
    let conf = ConfState { voters: voters.to_vec(), learners: vec![], voters_outgoing: vec![] };
    cluster.node(1).storage_mut().compact(applied, conf, state.clone());
    cluster.down[2] = false;
    // Drive by hand: deliver everything except the fourth chunk, once.
    let mut chunks_sent = 0u64;
    let mut bytes_sent = 0u64;
    let mut dropped = false;
    let mut installed = None;
    for _ in 0..200 {
        for position in 0..3 {
            cluster.nodes[position].tick();
            while cluster.nodes[position].has_ready() {
                let ready = cluster.nodes[position].ready();
                let node = &mut cluster.nodes[position];
                if let Some(snapshot) = ready.snapshot.clone() {
                    installed = Some(snapshot.clone());
                    node.storage_mut().apply_snapshot(snapshot);
                }
                node.storage_mut().append(&ready.entries);
                if let Some(hard_state) = ready.hard_state {
                    node.storage_mut().set_hard_state(hard_state);
                }
                node.on_persisted(ready.persist_sequence);
                cluster.in_flight.extend(ready.messages);
            }
        }
        while let Some(message) = cluster.in_flight.pop_front() {
            if let MessageBody::InstallSnapshot { data, .. } = &message.body {
                chunks_sent += 1;
                bytes_sent += data.len() as u64;
                if chunks_sent == 4 && !dropped {
                    dropped = true;
                    continue;
                }
            }
            let to = message.to as usize - 1;
            let _ = cluster.nodes[to].step(message);
        }
        if installed.is_some() && cluster.node(3).commit_index() >= applied {
            break;
        }
    }
    let installed = installed.expect("the follower installed the snapshot");
    assert_eq!(installed.data, state, "reassembled byte for byte");
    assert_eq!(installed.meta.index, applied);
    assert!(dropped, "a chunk was lost on the way");
    assert!(bytes_sent < 10_500 + 2 * 1000, "resumed, not restarted: {bytes_sent} bytes sent");
    assert_eq!(chunks_sent, 12, "11 chunks plus the one re-sent");
}

// ---------------------------------------------------------------- membership (thesis ch. 4)

/// `size` nodes; only `voters` start with a configuration, the others start empty (new
/// members started with `--initial-cluster-state existing`).
fn cluster_with_voters(size: u64, voters: &[u64]) -> Cluster {
    let mut cluster = Cluster::new(size);
    for id in 1..=size {
        let storage =
            if voters.contains(&id) { MemoryStorage::new_with_voters(voters) } else { MemoryStorage::default() };
        cluster.nodes[id as usize - 1] = RawNode::new(Config::new(id), storage).unwrap();
    }
    cluster
}

fn change(changes: &[(ConfChangeKind, u64)]) -> ConfChange {
    let changes = changes.iter().map(|(kind, node_id)| ConfChangeSingle { kind: *kind, node_id: *node_id });
    ConfChange { changes: changes.collect(), context: Bytes::from_static(b"ctx") }
}

fn elect(cluster: &mut Cluster, id: u64) {
    cluster.node(id).campaign();
    cluster.settle();
    assert_eq!(cluster.node(id).role(), Role::Leader);
}

#[test]
fn learner_catches_up_then_is_promoted() {
    use ConfChangeKind::*;
    let mut cluster = cluster_with_voters(4, &[1, 2, 3]);
    elect(&mut cluster, 1);
    cluster.node(1).propose(Bytes::from_static(b"before")).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(4).role(), Role::Learner, "an empty node never campaigns");
    cluster.node(1).propose_conf_change(change(&[(AddLearner, 4)])).unwrap();
    assert_eq!(
        cluster.node(1).propose_conf_change(change(&[(AddVoter, 4)])),
        Err(ProposeError::ConfChangePending),
        "one change at a time"
    );
    cluster.settle();
    assert_eq!(cluster.node(1).conf_state().learners, vec![4]);
    assert_eq!(cluster.node(4).conf_state().learners, vec![4], "the learner learned its role from the log");
    assert_eq!(cluster.node(4).role(), Role::Learner);
    assert_eq!(cluster.applied[3], vec![Bytes::from_static(b"before")], "the learner caught up");
    let leader_last = cluster.node(1).last_index();
    assert_eq!(cluster.node(1).progress(4).unwrap().match_index, leader_last);
    cluster.node(1).propose_conf_change(change(&[(AddVoter, 4)])).unwrap();
    cluster.settle();
    for id in 1..=4 {
        assert_eq!(cluster.node(id).conf_state().voters, vec![1, 2, 3, 4], "node {id}");
    }
    assert_eq!(cluster.node(4).role(), Role::Follower);
    assert!(matches!(
        cluster.node(1).propose_conf_change(change(&[(AddVoter, 4)])),
        Err(ProposeError::InvalidConfChange(_))
    ));
    assert!(matches!(
        cluster.node(2).propose_conf_change(change(&[(RemoveNode, 4)])),
        Err(ProposeError::NotLeader { .. })
    ));
}

#[test]
fn joint_replacement_is_left_automatically() {
    use ConfChangeKind::*;
    let mut cluster = cluster_with_voters(6, &[1, 2, 3]);
    elect(&mut cluster, 1);
    let replace = change(&[(RemoveNode, 2), (RemoveNode, 3), (AddVoter, 4), (AddVoter, 5), (AddVoter, 6)]);
    cluster.node(1).propose_conf_change(replace).unwrap();
    assert!(cluster.node(1).latest_conf_state().is_joint());
    cluster.settle();
    for id in [1, 4, 5, 6] {
        let conf = cluster.node(id).conf_state();
        assert_eq!(conf.voters, vec![1, 4, 5, 6], "node {id}");
        assert!(!conf.is_joint(), "node {id} left the joint configuration");
    }
    let config_entries: Vec<Entry> =
        cluster.node(1).log_entries().into_iter().filter(|entry| entry.kind == EntryKind::Config).collect();
    assert_eq!(config_entries.len(), 2, "the joint entry and the leave entry");
    assert!(ConfChange::decode(&config_entries[1].data).unwrap().is_leave_joint());
    assert_eq!(conf_state_in_entry(&config_entries[1].data), Some(cluster.node(1).conf_state()));
    assert!(conf_state_in_entry(&config_entries[0].data).unwrap().is_joint());
    // The handed-out entries include the joint entry and the empty "leave" entry.
    cluster.node(1).propose(Bytes::from_static(b"after")).unwrap();
    cluster.settle();
    assert!(cluster.applied[5].contains(&Bytes::from_static(b"after")));
    // Removed nodes are not voters and never campaign.
    cluster.tick_all(100);
    cluster.settle();
    assert_eq!(cluster.node(2).role(), Role::Learner);
    assert_eq!(cluster.node(3).role(), Role::Learner);
    assert_eq!(cluster.node(1).role(), Role::Leader);
}

#[test]
fn removed_leader_steps_down_and_hands_over() {
    use ConfChangeKind::*;
    let mut cluster = cluster_with_voters(3, &[1, 2, 3]);
    elect(&mut cluster, 1);
    cluster.node(1).propose_conf_change(change(&[(RemoveNode, 1)])).unwrap();
    cluster.settle();
    assert_ne!(cluster.node(1).role(), Role::Leader, "§4.2.2: steps down once the removal commits");
    let new_leader = [2, 3].into_iter().find(|id| cluster.node(*id).role() == Role::Leader);
    let new_leader = new_leader.expect("TimeoutNow elected a successor without waiting for a timeout");
    cluster.node(new_leader).propose(Bytes::from_static(b"x")).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(new_leader).conf_state().voters, vec![2, 3]);
}

#[test]
fn leader_transfer_hands_leadership_to_a_caught_up_target() {
    let mut cluster = cluster_with_voters(3, &[1, 2, 3]);
    elect(&mut cluster, 1);
    cluster.down[2] = true;
    cluster.node(1).propose(Bytes::from_static(b"a")).unwrap();
    cluster.settle();
    cluster.down[2] = false;
    cluster.node(1).transfer_leader(3).unwrap();
    assert_eq!(cluster.node(1).propose(Bytes::from_static(b"b")), Err(ProposeError::Busy));
    cluster.settle();
    assert_eq!(cluster.node(3).role(), Role::Leader, "§3.10: the target caught up and won at once");
    assert_eq!(cluster.node(1).role(), Role::Follower);
    assert!(matches!(cluster.node(3).transfer_leader(9), Err(ProposeError::InvalidConfChange(_))));
}

/// Thesis §3.10: while transferring, the leader accepts no new entries, also not a
/// proposal a follower forwards. Otherwise entries appended after TimeoutNow reach a
/// majority without the target, which then loses the election it starts (with 4 voters the
/// old leader and one follower holding the extra entry refuse it; seen in a real cluster:
/// every node moved to the next term with no leader).
#[test]
fn leader_transfer_refuses_forwarded_proposals_until_the_target_leads() {
    let mut cluster = cluster_with_voters(4, &[1, 2, 3, 4]);
    elect(&mut cluster, 1);
    cluster.node(1).propose(Bytes::from_static(b"a")).unwrap();
    cluster.settle();
    let term = cluster.node(1).term();
    cluster.node(1).transfer_leader(4).unwrap();
    // The target is caught up: TimeoutNow leaves in the next Ready, before the forwarded proposal.
    cluster.node(2).propose(Bytes::from_static(b"forwarded")).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(4).role(), Role::Leader, "§3.10: the target wins the election TimeoutNow starts");
    assert_eq!(cluster.node(4).term(), term + 1, "won at once, without a second election");
}

/// Thesis §3.10 with §4.3: a joint configuration applied during a transfer is not left by
/// the transferring leader (its leave entry would make the target's log too short); the
/// target leaves it once it leads.
#[test]
fn leader_transfer_defers_leaving_joint_to_the_target() {
    use ConfChangeKind::*;
    let mut cluster = cluster_with_voters(5, &[1, 2, 3, 4]);
    elect(&mut cluster, 1);
    cluster.node(1).propose(Bytes::from_static(b"a")).unwrap();
    cluster.settle();
    let term = cluster.node(1).term();
    cluster.node(1).propose_conf_change(change(&[(AddVoter, 5), (RemoveNode, 3)])).unwrap();
    cluster.node(1).transfer_leader(4).unwrap();
    cluster.settle();
    assert_eq!(cluster.node(4).role(), Role::Leader, "§3.10: the target wins the election TimeoutNow starts");
    assert_eq!(cluster.node(4).term(), term + 1, "won at once, without a second election");
    cluster.node(4).propose(Bytes::from_static(b"b")).unwrap();
    cluster.settle();
    let conf = cluster.node(4).conf_state();
    assert!(!conf.is_joint(), "the new leader left joint: {conf:?}");
    assert_eq!(conf.voters, vec![1, 2, 4, 5]);
}

/// A transfer abandoned after an election timeout (§3.10) lets the leader leave the joint
/// configuration it deferred leaving, and accept proposals again.
#[test]
fn abandoned_leader_transfer_leaves_joint_afterwards() {
    use ConfChangeKind::*;
    let mut cluster = cluster_with_voters(5, &[1, 2, 3, 4]);
    elect(&mut cluster, 1);
    cluster.down[3] = true;
    cluster.node(1).propose_conf_change(change(&[(AddVoter, 5), (RemoveNode, 3)])).unwrap();
    cluster.node(1).transfer_leader(4).unwrap();
    cluster.settle();
    assert!(cluster.node(1).conf_state().is_joint(), "joint applied, leave deferred during the transfer");
    assert_eq!(cluster.node(1).propose(Bytes::from_static(b"x")), Err(ProposeError::Busy));
    cluster.tick_all(10);
    assert_eq!(cluster.node(1).role(), Role::Leader);
    assert_eq!(cluster.node(1).transfer_target(), None, "abandoned after an election timeout");
    cluster.node(1).propose(Bytes::from_static(b"y")).unwrap();
    cluster.settle();
    let conf = cluster.node(1).conf_state();
    assert!(!conf.is_joint(), "left joint once the transfer was abandoned: {conf:?}");
    assert_eq!(conf.voters, vec![1, 2, 4, 5]);
}

#[test]
fn restart_derives_the_configuration_from_snapshot_and_log() {
    use ConfChangeKind::*;
    let mut cluster = cluster_with_voters(4, &[1, 2, 3]);
    elect(&mut cluster, 1);
    cluster.node(1).propose_conf_change(change(&[(AddLearner, 4)])).unwrap();
    cluster.settle();
    cluster.node(1).propose_conf_change(change(&[(RemoveNode, 2), (AddVoter, 4)])).unwrap();
    cluster.settle();
    let expected = cluster.node(3).conf_state();
    assert_eq!(expected.voters, vec![1, 3, 4]);
    let storage = cluster.node(3).storage().clone();
    let restarted = RawNode::new(Config::new(3), storage.clone()).unwrap();
    assert_eq!(restarted.latest_conf_state(), &expected);
    let mut config = Config::new(3);
    config.applied = storage.hard_state().commit;
    let restarted = RawNode::new(config, storage).unwrap();
    assert_eq!(restarted.conf_state(), expected);
}

// ---------------------------------------------------------------- role-typed state (issue 17)

/// A membership change is back-pressured like commands: with the uncommitted budget spent
/// it is `Busy` (it used to be appended past the bound the leader asserts). A change no node
/// could decode (more changes than `CONF_CHANGES_MAX`) is refused as invalid.
#[test]
fn conf_change_over_the_uncommitted_budget_is_busy() {
    use ConfChangeKind::*;
    let mut cluster = cluster_with_voters(3, &[1, 2, 3]);
    let mut config = Config::new(1);
    config.uncommitted_bytes_max = 256;
    cluster.nodes[0] = RawNode::new(config, MemoryStorage::new_with_voters(&[1, 2, 3])).unwrap();
    elect(&mut cluster, 1);
    cluster.down[1] = true;
    cluster.down[2] = true;
    let command = Bytes::from(vec![b'x'; 100]);
    let mut accepted = 0;
    while cluster.node(1).propose(command.clone()).is_ok() {
        accepted += 1;
        assert!(accepted < 10, "the uncommitted budget never ran out");
    }
    assert_eq!(cluster.node(1).propose_conf_change(change(&[(AddLearner, 4)])), Err(ProposeError::Busy));
    let too_many: Vec<(ConfChangeKind, u64)> = (0..=CONF_CHANGES_MAX as u64).map(|id| (AddLearner, 10 + id)).collect();
    assert!(matches!(cluster.node(1).propose_conf_change(change(&too_many)), Err(ProposeError::InvalidConfChange(_))));
}

/// Becoming a role builds its state fresh: a deposed leader keeps no transfer, no progress,
/// and, elected again, starts a new leadership without the old one's transfer or reads.
#[test]
fn a_deposed_leader_keeps_no_state_of_its_leadership() {
    let mut cluster = cluster_with_voters(3, &[1, 2, 3]);
    elect(&mut cluster, 1);
    cluster.down[1] = true; // node 2 never answers: the transfer to it stays pending
    cluster.node(1).transfer_leader(2).unwrap();
    cluster.node(1).read_index(Bytes::from_static(b"read")).unwrap();
    assert_eq!(cluster.node(1).transfer_target(), Some(2));
    assert!(cluster.node(1).progress(3).is_some());
    let term = cluster.node(1).term();
    let deposing =
        Message { from: 3, to: 1, term: term + 1, body: MessageBody::Heartbeat { commit: 0, read_round: 0 } };
    cluster.node(1).step(deposing).unwrap();
    assert_eq!(cluster.node(1).role(), Role::Follower);
    assert_eq!((cluster.node(1).transfer_target(), cluster.node(1).progress(3)), (None, None));
    cluster.down[1] = false;
    elect(&mut cluster, 1);
    assert_eq!(cluster.node(1).transfer_target(), None, "a new leadership starts without a transfer");
    assert_eq!(cluster.node(1).propose(Bytes::from_static(b"after")), Ok(()), "not refused as during a transfer");
    cluster.settle();
    cluster.tick_all(3);
    assert!(cluster.read_states[0].is_empty(), "an old leadership's read answered: {:?}", cluster.read_states[0]);
    assert_eq!(cluster.applied[0].last(), Some(&Bytes::from_static(b"after")));
}

/// A leader may replicate a Config entry whose configuration has no voter (a faulty or
/// hostile leader): the follower neither panics nor stops; it still campaigns by the
/// configuration it applied (assertions never test network input).
#[test]
fn a_replicated_configuration_without_voters_is_survived() {
    let mut node = RawNode::new(Config::new(1), MemoryStorage::new_with_voters(&[1, 2, 3])).unwrap();
    let data = ConfChange::default().encode_entry(&ConfState::default());
    let entry = Entry { term: 1, index: 1, kind: EntryKind::Config, data };
    let body = MessageBody::Append { prev_log_index: 0, prev_log_term: 0, entries: vec![entry], commit: 0 };
    node.step(Message { from: 2, to: 1, term: 1, body }).unwrap();
    let mut roles = Vec::new();
    for _ in 0..100 {
        node.tick();
        while node.has_ready() {
            let ready = node.ready();
            node.storage_mut().append(&ready.entries);
            if let Some(hard_state) = ready.hard_state {
                node.storage_mut().set_hard_state(hard_state);
            }
            node.on_persisted(ready.persist_sequence);
        }
        roles.push(node.role());
    }
    assert!(node.latest_conf_state().voters.is_empty(), "the entry is in the log");
    assert!(roles.contains(&Role::Leader), "it campaigns by the applied configuration: {roles:?}");
}
