//! Seeded fuzzing of `RawNode::step` (stable Rust, runs in CI): arbitrary message
//! sequences from peers, strangers and impostors — wrong terms, indexes far off,
//! non-contiguous or conflicting entries, snapshot chunks out of order, huge values —
//! interleaved with ticks, proposals, reads and durability reports at random moments,
//! driven through a correct Ready loop over `MemoryStorage`. No input may panic the core, and
//! after every input: the term never decreases, the commit index never decreases and stays
//! within the log, applied ≤ commit, a leader names itself.
//!
//! `RAFTKV_FUZZ_CASES=N` sets the number of sequences (default 2000, each of 400 inputs;
//! well under a second in release builds). Every failure prints the case seed to replay with
//! `RAFTKV_FUZZ_SEED=S`.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use raft::*;

const INPUTS_PER_CASE: usize = 400;

fn cases() -> u64 {
    std::env::var("RAFTKV_FUZZ_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(2_000)
}

/// A small value near `around` most of the time, sometimes anything.
fn near(rng: &mut SplitMix64, around: u64) -> u64 {
    match rng.range(0, 10) {
        0 => rng.next_u64(),
        1 => 0,
        2 => u64::MAX - rng.range(0, 3),
        _ => around.saturating_add(rng.range(0, 7)).saturating_sub(3),
    }
}

fn bytes(rng: &mut SplitMix64, length_max: u64) -> Bytes {
    let length = rng.range(0, length_max + 1) as usize;
    (0..length).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>().into()
}

fn entries(rng: &mut SplitMix64, first_index: Index, term: Term) -> Vec<Entry> {
    let count = rng.range(0, 5);
    let contiguous = rng.chance(4, 5);
    let mut index = first_index;
    let mut entry_term = term.saturating_sub(rng.range(0, 2));
    (0..count)
        .map(|_| {
            let kind = match rng.range(0, 6) {
                0 => EntryKind::Blank,
                1 => EntryKind::Config,
                _ => EntryKind::Normal,
            };
            let entry = Entry { term: entry_term, index, kind, data: bytes(rng, 24) };
            index = if contiguous { index.saturating_add(1) } else { near(rng, index) };
            if rng.chance(1, 4) {
                entry_term = near(rng, entry_term);
            }
            entry
        })
        .collect()
}

fn conf(rng: &mut SplitMix64) -> ConfState {
    let mut voters: Vec<NodeId> = (1..=rng.range(0, 5)).collect();
    if rng.chance(1, 8) {
        voters.push(near(rng, 4));
    }
    ConfState { voters, learners: Vec::new(), voters_outgoing: Vec::new() }
}

/// An arbitrary message to node 1, mostly from members 2 and 3 with plausible fields.
fn message(rng: &mut SplitMix64, node: &RawNode<MemoryStorage>) -> Message {
    let last = node.last_index();
    let term = match rng.range(0, 4) {
        0 => node.term(),
        1 => node.term() + 1,
        _ => near(rng, node.term()),
    };
    let (index, log_term) = (near(rng, last), near(rng, node.term_at(last).unwrap_or(0)));
    let body = match rng.range(0, 17) {
        0 => MessageBody::PreVote { last_log_index: index, last_log_term: log_term },
        1 => MessageBody::PreVoteResponse { reject: rng.chance(1, 2) },
        2 => MessageBody::Vote { last_log_index: index, last_log_term: log_term },
        3 => MessageBody::VoteResponse { reject: rng.chance(1, 3) },
        4 | 5 => MessageBody::Append {
            prev_log_index: index,
            prev_log_term: log_term,
            entries: entries(rng, index.saturating_add(1), term),
            commit: near(rng, node.commit_index() + 1),
        },
        6 => MessageBody::AppendResponse {
            reject: rng.chance(1, 3),
            index,
            hint_index: near(rng, index),
            hint_term: near(rng, log_term),
        },
        7 => MessageBody::Heartbeat { commit: near(rng, node.commit_index()), read_round: near(rng, 1) },
        8 => MessageBody::HeartbeatResponse { read_round: near(rng, 1), last_index: index },
        9 => MessageBody::InstallSnapshot {
            meta: SnapshotMeta { index, term: log_term, conf: conf(rng) },
            offset: near(rng, 0),
            data: bytes(rng, 40),
            done: rng.chance(1, 2),
        },
        10 => MessageBody::SnapshotProgress { index, received_bytes: near(rng, 0) },
        11 => MessageBody::Propose { commands: (0..rng.range(0, 3)).map(|_| bytes(rng, 16)).collect() },
        12 => MessageBody::ReadIndex { context: bytes(rng, 8) },
        13 => MessageBody::ReadIndexResponse { context: bytes(rng, 8), index: near(rng, last) },
        14 => MessageBody::TimeoutNow,
        15 => MessageBody::TransferVote { last_log_index: index, last_log_term: log_term },
        _ => MessageBody::Heartbeat { commit: rng.next_u64(), read_round: rng.next_u64() },
    };
    let from = match rng.range(0, 12) {
        0 => 0,
        1 => 1,
        2 => near(rng, 9),
        _ => rng.range(2, 4),
    };
    let to = if rng.chance(1, 20) { near(rng, 2) } else { 1 };
    Message { from, to, term, body }
}

/// A Ready's writes waiting for their fsync: sequence, snapshot, entries, hard state.
type UnsyncedWrite = (u64, Option<Snapshot>, Vec<Entry>, Option<HardState>);

/// A correct driver over `MemoryStorage`: persists Readys in order, reports durability
/// later (sometimes out of turn), applies what it is handed.
struct Driver {
    node: RawNode<MemoryStorage>,
    unsynced: VecDeque<UnsyncedWrite>,
}

impl Driver {
    fn drain(&mut self) {
        for _ in 0..8 {
            if !self.node.has_ready() {
                break;
            }
            let ready = self.node.ready();
            if ready.persist_sequence != 0 {
                self.unsynced.push_back((ready.persist_sequence, ready.snapshot, ready.entries, ready.hard_state));
            }
        }
    }

    fn sync_one(&mut self) {
        let Some((sequence, snapshot, entries, hard_state)) = self.unsynced.pop_front() else { return };
        let storage = self.node.storage_mut();
        if let Some(snapshot) = snapshot {
            storage.apply_snapshot(snapshot);
        }
        storage.append(&entries);
        if let Some(hard_state) = hard_state {
            storage.set_hard_state(hard_state);
        }
        self.node.on_persisted(sequence);
    }
}

/// What a case reached (to see that the inputs are not all refused).
#[derive(Default)]
struct Reached {
    led: bool,
    applied: bool,
}

/// Runs one case; returns a description of the first broken invariant.
fn run_case(seed: u64) -> Result<Reached, String> {
    let mut rng = SplitMix64::new(seed);
    let mut config = Config::new(1);
    config.random_seed = seed;
    config.pre_vote = rng.chance(1, 2);
    config.check_quorum = rng.chance(1, 2);
    config.snapshot_bytes_max = 1 << 10;
    config.snapshot_chunk_bytes_max = 64;
    let node = RawNode::new(config, MemoryStorage::new_with_voters(&[1, 2, 3])).map_err(|error| error.to_string())?;
    let mut driver = Driver { node, unsynced: VecDeque::new() };
    let (mut term, mut commit) = (0, 0);
    let mut reached = Reached::default();
    for input in 0..INPUTS_PER_CASE {
        match rng.range(0, 10) {
            0 => driver.node.tick(),
            1 => {
                let _ = driver.node.propose(bytes(&mut rng, 16));
            }
            2 => {
                let _ = driver.node.read_index(bytes(&mut rng, 8));
            }
            3 => driver.node.campaign(),
            4 => driver.sync_one(),
            _ => {
                let message = message(&mut rng, &driver.node);
                let _ = driver.node.step(message);
            }
        }
        driver.drain();
        if rng.chance(1, 2) {
            driver.sync_one();
            driver.drain();
        }
        let node = &driver.node;
        let problem = if node.term() < term {
            Some(format!("term went from {term} to {}", node.term()))
        } else if node.commit_index() < commit {
            Some(format!("commit went from {commit} to {}", node.commit_index()))
        } else if node.commit_index() > node.last_index() {
            Some(format!("commit {} beyond last index {}", node.commit_index(), node.last_index()))
        } else if node.applied_index() > node.commit_index() {
            Some(format!("applied {} beyond commit {}", node.applied_index(), node.commit_index()))
        } else if node.role() == Role::Leader && node.leader() != node.id() {
            Some(format!("leader names {} as leader", node.leader()))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(format!("input {input}: {problem}"));
        }
        (term, commit) = (node.term(), node.commit_index());
        reached.led |= node.role() == Role::Leader;
        reached.applied |= node.applied_index() > 0;
    }
    Ok(reached)
}

#[test]
fn step_survives_arbitrary_message_sequences() {
    let seeds: Vec<u64> = match std::env::var("RAFTKV_FUZZ_SEED").ok().and_then(|text| text.parse().ok()) {
        Some(seed) => vec![seed],
        None => (1..=cases()).collect(),
    };
    let (mut led, mut applied) = (0, 0);
    let total = seeds.len();
    for seed in seeds {
        let outcome = catch_unwind(AssertUnwindSafe(|| run_case(seed)));
        match outcome {
            Ok(Ok(reached)) => {
                led += u64::from(reached.led);
                applied += u64::from(reached.applied);
            }
            Ok(Err(problem)) => panic!("fuzz case {seed}: {problem} (replay: RAFTKV_FUZZ_SEED={seed})"),
            Err(_) => panic!("fuzz case {seed} panicked the core (replay: RAFTKV_FUZZ_SEED={seed})"),
        }
    }
    println!("{total} cases: {led} reached leadership, {applied} applied entries");
    if total > 100 {
        assert!(led > 0 && applied > 0, "the inputs never got the node to lead ({led}) or apply ({applied})");
    }
}

#[test]
fn a_snapshot_index_near_the_end_of_the_index_space_is_refused() {
    // Found by the fuzzer (case 1): the log's offset overflowed and the core panicked.
    let mut node = RawNode::new(Config::new(1), MemoryStorage::new_with_voters(&[1, 2, 3])).expect("valid");
    let meta =
        SnapshotMeta { index: u64::MAX, term: 1, conf: ConfState { voters: vec![1, 2, 3], ..ConfState::default() } };
    let body = MessageBody::InstallSnapshot { meta, offset: 0, data: Bytes::new(), done: true };
    let outcome = node.step(Message { from: 2, to: 1, term: 1, body });
    assert_eq!(outcome, Err(StepError::Malformed("snapshot index out of range")));
    assert_eq!(node.last_index(), 0);
}

#[test]
fn a_hard_state_committing_past_the_log_is_an_error() {
    let mut storage = MemoryStorage::new_with_voters(&[1, 2, 3]);
    storage.append(&[Entry { term: 1, index: 1, kind: EntryKind::Blank, data: Bytes::new() }]);
    storage.set_hard_state(HardState { term: 1, vote: 2, commit: 5 });
    let error = RawNode::new(Config::new(1), storage).err().expect("refused");
    assert!(error.to_string().contains("commit 5 beyond the last stored entry 1"), "{error}");
}
