//! The replicated state machine: the ordered list of applied client commands.
//!
//! A command is 16 bytes: client number and operation id (little endian). Applying a
//! command whose operation id was already applied records it but changes nothing else
//! (request-id deduplication, R8). The state serializes into a snapshot.
//!
//! Seen by clients, the state is one register: its value is the last operation that took
//! effect (what a read returns).

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use raft::{Entry, EntryKind, Index};

use crate::view::AppliedView;

/// Size of an encoded command.
pub const COMMAND_BYTES: usize = 16;
const RECORD_BYTES: usize = 32;

/// Encodes a client command.
pub fn encode_command(client: u64, operation: u64) -> Bytes {
    let mut bytes = BytesMut::with_capacity(COMMAND_BYTES);
    bytes.extend_from_slice(&client.to_le_bytes());
    bytes.extend_from_slice(&operation.to_le_bytes());
    bytes.freeze()
}

/// The operation id of a command (`None` if the payload is not a command).
pub fn decode_operation(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(8..COMMAND_BYTES)?.try_into().ok()?;
    (data.len() == COMMAND_BYTES).then(|| u64::from_le_bytes(bytes))
}

/// The little-endian u64 at `offset` of `data` (which must hold it).
fn read_word(data: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(data[offset..offset + 8].try_into().expect("8 bytes"))
}

/// Extra per-node state-machine data next to the applied list kept in the node's view.
#[derive(Clone, Debug, Default)]
pub struct StateMachine {
    /// Highest index applied (including blank entries).
    pub applied_index: Index,
    /// Operation id of each entry of the applied list (parallel to it).
    pub operations: Vec<u64>,
    /// Operation ids applied so far.
    pub operation_set: HashSet<u64>,
    /// The last operation that took effect (duplicates change nothing): the value of the
    /// register the client model reads.
    pub last_effective: Option<u64>,
}

impl StateMachine {
    /// Applies one committed entry, appending to `applied` when it carries a command.
    /// Returns the operation id applied, if any.
    pub fn apply(&mut self, entry: &Entry, applied: &mut Vec<AppliedView>) -> Option<u64> {
        self.applied_index = entry.index;
        if entry.kind != EntryKind::Normal {
            return None;
        }
        let operation = decode_operation(&entry.data).unwrap_or(0);
        applied.push(AppliedView { index: entry.index, term: entry.term, data_hash: crate::hash_entry(entry) });
        self.record(operation);
        Some(operation)
    }

    /// Appends `operation` to the applied list; it takes effect unless it is a duplicate.
    fn record(&mut self, operation: u64) {
        self.operations.push(operation);
        if self.operation_set.insert(operation) {
            self.last_effective = Some(operation);
        }
    }

    /// Serializes the state as of `index` (which must not exceed `applied_index`).
    pub fn encode(&self, index: Index, applied: &[AppliedView]) -> Bytes {
        assert!(index <= self.applied_index, "snapshot at {index} beyond applied {}", self.applied_index);
        let count = applied.partition_point(|record| record.index <= index);
        let mut bytes = BytesMut::with_capacity(8 + count * RECORD_BYTES);
        bytes.extend_from_slice(&index.to_le_bytes());
        for (record, operation) in applied[..count].iter().zip(&self.operations) {
            for value in [record.index, record.term, record.data_hash, *operation] {
                bytes.extend_from_slice(&value.to_le_bytes());
            }
        }
        bytes.freeze()
    }

    /// Restores a state encoded by [`StateMachine::encode`] (empty data: the empty state).
    pub fn decode(data: &[u8]) -> Result<(StateMachine, Vec<AppliedView>), String> {
        let mut state = StateMachine::default();
        let mut applied = Vec::new();
        if data.is_empty() {
            return Ok((state, applied));
        }
        if data.len() < 8 || !(data.len() - 8).is_multiple_of(RECORD_BYTES) {
            return Err(format!("state machine snapshot of {} bytes is malformed", data.len()));
        }
        state.applied_index = read_word(data, 0);
        for record in data[8..].chunks_exact(RECORD_BYTES) {
            let value = |field: usize| read_word(record, field * 8);
            applied.push(AppliedView { index: value(0), term: value(1), data_hash: value(2) });
            state.record(value(3));
        }
        Ok((state, applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: Index, kind: EntryKind, data: Bytes) -> Entry {
        Entry { term: 1, index, kind, data }
    }

    #[test]
    fn apply_encode_decode_round_trip() {
        let mut state = StateMachine::default();
        let mut applied = Vec::new();
        assert_eq!(state.apply(&entry(1, EntryKind::Blank, Bytes::new()), &mut applied), None);
        assert_eq!(state.apply(&entry(2, EntryKind::Normal, encode_command(1, 7)), &mut applied), Some(7));
        assert_eq!(state.apply(&entry(3, EntryKind::Normal, encode_command(2, 8)), &mut applied), Some(8));
        assert_eq!(state.apply(&entry(4, EntryKind::Normal, encode_command(1, 7)), &mut applied), Some(7));
        assert_eq!(state.last_effective, Some(8), "a duplicate changes nothing");
        let (restored, restored_applied) = StateMachine::decode(&state.encode(2, &applied)).unwrap();
        assert_eq!(restored.applied_index, 2);
        assert_eq!(restored_applied, applied[..1].to_vec());
        assert!(restored.operation_set.contains(&7) && !restored.operation_set.contains(&8));
        assert_eq!(restored.last_effective, Some(7));
        let (all, _) = StateMachine::decode(&state.encode(4, &applied)).unwrap();
        assert_eq!(all.last_effective, Some(8));
        let (empty, empty_applied) = StateMachine::decode(&[]).unwrap();
        assert_eq!((empty.applied_index, empty_applied.len(), empty.last_effective), (0, 0, None));
        assert!(StateMachine::decode(&[1, 2, 3]).is_err());
    }
}
