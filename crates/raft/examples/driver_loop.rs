//! The whole driver loop of a raftkv core, for a 3-node cluster in one process: tick,
//! deliver messages, take `Ready`, persist, report persisted, send, apply.
//!
//! Run: `cargo run -p raftkv-raft --example driver_loop`

use std::collections::VecDeque;

use bytes::Bytes;
use raft::{Config, EntryKind, MemoryStorage, Message, RawNode, Role};

fn main() {
    let voters = [1, 2, 3];
    let mut nodes: Vec<RawNode<MemoryStorage>> = voters
        .iter()
        .map(|id| RawNode::new(Config::new(*id), MemoryStorage::new_with_voters(&voters)).expect("valid config"))
        .collect();
    let mut network: VecDeque<Message> = VecDeque::new();
    let mut proposed = false;
    for round in 0..200 {
        // 1. Inputs: time passes, messages arrive, clients propose.
        for node in &mut nodes {
            node.tick();
        }
        while let Some(message) = network.pop_front() {
            let to = message.to as usize - 1;
            if let Err(error) = nodes[to].step(message) {
                eprintln!("refused: {error}");
            }
        }
        if let Some(leader) = nodes.iter_mut().find(|node| node.role() == Role::Leader) {
            if !proposed {
                leader.propose(Bytes::from_static(b"x=1")).expect("the leader accepts");
                proposed = true;
                println!("round {round}: node {} leads term {} and proposes x=1", leader.id(), leader.term());
            }
        }
        // 2. Outputs: for each node, persist, then report, send and apply.
        for node in &mut nodes {
            while node.has_ready() {
                let ready = node.ready();
                if let Some(snapshot) = ready.snapshot.clone() {
                    node.storage_mut().apply_snapshot(snapshot);
                }
                node.storage_mut().append(&ready.entries);
                if let Some(hard_state) = ready.hard_state {
                    node.storage_mut().set_hard_state(hard_state);
                }
                // A real driver fsyncs here (the WAL's `write` does), then reports it.
                node.on_persisted(ready.persist_sequence);
                network.extend(ready.messages);
                for entry in ready.committed_entries {
                    if entry.kind == EntryKind::Normal {
                        println!("round {round}: node {} applies {:?} at index {}", node.id(), entry.data, entry.index);
                    }
                }
            }
        }
    }
}
