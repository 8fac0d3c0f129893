//! Seeded fuzzing of the peer protocol decoder (stable Rust, runs in CI): byte streams
//! cut into frames, protobuf payloads and mutated valid messages go through
//! `decode_frame`, `decode` and `message_from_wire`; nothing panics, and every message the
//! core can send survives the round trip unchanged.
//!
//! `RAFTKV_FUZZ_CASES=N` sets the number of cases (default 3000, well under a second).

use bytes::{Bytes, BytesMut};
use proto::raftkvpeer as wire;
use raft::{ConfState, Entry, EntryKind, Message, MessageBody, SnapshotMeta, SplitMix64};
use server::codec::{decode, decode_frame, encode_frame, message_from_wire, message_to_wire};

fn cases() -> u64 {
    std::env::var("RAFTKV_FUZZ_CASES").ok().and_then(|text| text.parse().ok()).unwrap_or(3_000)
}

fn bytes(rng: &mut SplitMix64, length_max: u64) -> Bytes {
    (0..rng.range(0, length_max + 1)).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>().into()
}

fn number(rng: &mut SplitMix64) -> u64 {
    if rng.chance(1, 8) {
        rng.next_u64()
    } else {
        rng.range(0, 50)
    }
}

/// A message the core could send (valid field combinations).
fn message(rng: &mut SplitMix64) -> Message {
    let (index, term) = (number(rng), number(rng));
    let body = match rng.range(0, 17) {
        0 => MessageBody::PreVote { last_log_index: index, last_log_term: term },
        1 => MessageBody::PreVoteResponse { reject: rng.chance(1, 2) },
        2 => MessageBody::Vote { last_log_index: index, last_log_term: term },
        3 => MessageBody::VoteResponse { reject: rng.chance(1, 2) },
        4 => MessageBody::Append {
            prev_log_index: index,
            prev_log_term: term,
            entries: (0..rng.range(0, 4))
                .map(|offset| Entry {
                    term,
                    index: index.wrapping_add(offset + 1),
                    kind: [EntryKind::Normal, EntryKind::Blank, EntryKind::Config][rng.range(0, 3) as usize],
                    data: bytes(rng, 12),
                })
                .collect(),
            commit: number(rng),
        },
        5 => MessageBody::AppendResponse {
            reject: rng.chance(1, 2),
            index,
            hint_index: number(rng),
            hint_term: number(rng),
        },
        6 => MessageBody::Heartbeat { commit: index, read_round: number(rng) },
        7 => MessageBody::HeartbeatResponse { read_round: number(rng), last_index: index },
        8 => MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                index,
                term,
                conf: ConfState { voters: vec![1, 2, 3], learners: vec![4], voters_outgoing: vec![] },
            },
            offset: number(rng),
            data: bytes(rng, 30),
            done: rng.chance(1, 2),
        },
        9 => MessageBody::SnapshotProgress { index, received_bytes: number(rng) },
        10 => MessageBody::Propose { commands: (0..rng.range(1, 3)).map(|_| bytes(rng, 10)).collect() },
        11 => MessageBody::ReadIndex { context: bytes(rng, 8) },
        12 => MessageBody::ReadIndexResponse { context: bytes(rng, 8), index },
        13 => MessageBody::TimeoutNow,
        _ => MessageBody::TransferVote { last_log_index: index, last_log_term: term },
    };
    Message { from: rng.range(1, 10), to: rng.range(1, 10), term: number(rng), body }
}

fn mutate(rng: &mut SplitMix64, data: &mut Vec<u8>) {
    for _ in 0..rng.range(1, 4) {
        match rng.range(0, 3) {
            0 if !data.is_empty() => {
                let position = rng.range(0, data.len() as u64) as usize;
                data[position] ^= 1 << rng.range(0, 8);
            }
            1 => data.truncate(rng.range(0, data.len() as u64 + 1) as usize),
            _ => data.extend(bytes(rng, 8)),
        }
    }
}

/// Decodes every frame of `stream` and every payload as a peer message; none may panic.
fn decode_stream(stream: &[u8]) {
    let mut buffer = BytesMut::from(stream);
    for _ in 0..64 {
        match decode_frame(&mut buffer) {
            Ok(Some(payload)) => {
                if let Ok(raft_message) = decode::<wire::RaftMessage>(payload) {
                    let _ = message_from_wire(raft_message);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
}

#[test]
fn peer_decoder_survives_arbitrary_and_mutated_input() {
    let mut rng = SplitMix64::new(29);
    for _ in 0..cases() {
        let original = message(&mut rng);
        let mut frames = BytesMut::new();
        encode_frame(&message_to_wire(&original), &mut frames);
        let mut payload = frames[8..].to_vec();
        mutate(&mut rng, &mut payload);
        if let Ok(raft_message) = decode::<wire::RaftMessage>(Bytes::from(payload)) {
            let _ = message_from_wire(raft_message);
        }
        let mut stream = frames.to_vec();
        if rng.chance(1, 2) {
            mutate(&mut rng, &mut stream);
        }
        decode_stream(&stream);
        // Small lengths only: a header promising up to 16 MiB makes the decoder reserve it.
        let mut garbage = bytes(&mut rng, 64).to_vec();
        if garbage.len() >= 4 && rng.chance(3, 4) {
            garbage[..3].fill(0);
        }
        decode_stream(&garbage);
        if let Ok(raft_message) = decode::<wire::RaftMessage>(bytes(&mut rng, 64)) {
            let _ = message_from_wire(raft_message);
        }
    }
}

#[test]
fn every_message_the_core_sends_round_trips() {
    let mut rng = SplitMix64::new(31);
    for _ in 0..cases() {
        let original = message(&mut rng);
        let mut buffer = BytesMut::new();
        encode_frame(&message_to_wire(&original), &mut buffer);
        let payload = decode_frame(&mut buffer).expect("valid frame").expect("complete frame");
        let decoded = message_from_wire(decode::<wire::RaftMessage>(payload).expect("decodes")).expect("converts");
        assert_eq!(decoded, original);
        assert!(buffer.is_empty());
    }
}
