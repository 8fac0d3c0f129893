//! Entries/s committed by a 3-node in-memory cluster driven through the core on one
//! thread, with batched proposals (issue 2's core benchmark; target ≥ 1,000,000/s).
//!
//! Run: `cargo bench -p raftkv-raft --bench commit`

use std::collections::VecDeque;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use raft::{Config, EntryKind, MemoryStorage, Message, RawNode, Role};

struct Cluster {
    nodes: Vec<RawNode<MemoryStorage>>,
    network: VecDeque<Message>,
    applied_entries: u64,
}

impl Cluster {
    fn new() -> Self {
        let voters = [1, 2, 3];
        let nodes = voters
            .iter()
            .map(|id| RawNode::new(Config::new(*id), MemoryStorage::new_with_voters(&voters)).expect("valid config"))
            .collect();
        let mut cluster = Cluster { nodes, network: VecDeque::new(), applied_entries: 0 };
        cluster.nodes[0].campaign();
        cluster.drive();
        assert_eq!(cluster.nodes[0].role(), Role::Leader);
        cluster
    }

    /// Persist, send, apply on every node until nothing moves.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            for node in &mut self.nodes {
                while node.has_ready() {
                    moved = true;
                    let ready = node.ready();
                    node.storage_mut().append(&ready.entries);
                    if let Some(hard_state) = ready.hard_state {
                        node.storage_mut().set_hard_state(hard_state);
                    }
                    node.on_persisted(ready.persist_sequence);
                    self.network.extend(ready.messages);
                    self.applied_entries +=
                        ready.committed_entries.iter().filter(|entry| entry.kind == EntryKind::Normal).count() as u64;
                }
            }
            while let Some(message) = self.network.pop_front() {
                moved = true;
                let to = message.to as usize - 1;
                self.nodes[to].step(message).expect("well-formed");
            }
            if !moved {
                return;
            }
        }
    }

    /// Keeps the logs short so memory stays flat across iterations.
    fn compact(&mut self) {
        for node in &mut self.nodes {
            let applied = node.applied_index();
            let conf = raft::ConfState { voters: vec![1, 2, 3], learners: vec![], voters_outgoing: vec![] };
            node.storage_mut().compact(applied, conf, Bytes::new());
        }
    }
}

fn commit_throughput(criterion: &mut Criterion) {
    let batch_size = 1024usize;
    let command = Bytes::from(vec![7u8; 64]);
    let mut group = criterion.benchmark_group("three_node_commit");
    group.throughput(Throughput::Elements(batch_size as u64));
    group.bench_function("batch_1024_entries_64_bytes", |bencher| {
        let mut cluster = Cluster::new();
        let mut rounds = 0u64;
        bencher.iter(|| {
            let before = cluster.applied_entries;
            cluster.nodes[0].propose_batch(vec![command.clone(); batch_size]).expect("leader accepts");
            cluster.drive();
            assert_eq!(cluster.applied_entries - before, 3 * batch_size as u64, "every node applies the batch");
            rounds += 1;
            if rounds.is_multiple_of(64) {
                cluster.compact();
            }
        });
    });
    group.finish();
}

criterion_group!(benches, commit_throughput);
criterion_main!(benches);
