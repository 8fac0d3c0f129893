//! Unit tests of the core through a minimal synchronous in-memory cluster.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::*;

struct Cluster {
    nodes: Vec<RawNode<MemoryStorage>>,
    in_flight: VecDeque<Message>,
    applied: Vec<Vec<Bytes>>,
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
    let unknown = Message { from: 9, to: 1, term: 5, body: MessageBody::Heartbeat { commit: 100, read_round: 0 } };
    assert_eq!(node.step(unknown), Err(StepError::UnknownSender(9)));
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
