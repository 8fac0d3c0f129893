//! Snapshot transfer (§7, R9): the leader sends the latest snapshot in chunks with one in
//! flight at a time; the follower reassembles and installs it.

use super::RawNode;
use crate::progress::ProgressState;
use crate::storage::Storage;
use crate::types::*;

impl<S: Storage> RawNode<S> {
    /// A snapshot chunk unanswered for an election timeout is re-sent from the last offset
    /// the follower acknowledged (the transfer resumes; it does not restart).
    pub(super) fn retry_stalled_snapshots(&mut self) {
        let timeout_ticks = self.config.election_ticks;
        let mut stalled = Vec::new();
        for (peer, progress) in self.leader_state_mut().progress.iter_mut() {
            if progress.state == ProgressState::Snapshot {
                progress.snapshot_wait_ticks += 1;
                if progress.snapshot_wait_ticks >= timeout_ticks {
                    progress.snapshot_wait_ticks = 0;
                    progress.snapshot_chunk_in_flight = false;
                    stalled.push(*peer);
                }
            }
        }
        for peer in stalled {
            let resent = self.send_snapshot_chunk(peer);
            let progress = self.leader_state().and_then(|leader| leader.progress.get(&peer));
            let in_flight = progress.is_some_and(|progress| progress.snapshot_chunk_in_flight);
            assert!(!resent || in_flight, "a resent chunk is in flight");
        }
    }

    /// Reassembles snapshot chunks (§7, Figure 13: offset, data, done); returns the whole
    /// snapshot once its last chunk arrived. Every chunk is answered with the bytes held.
    pub(super) fn receive_snapshot_chunk(
        &mut self,
        leader: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: &[u8],
        done: bool,
    ) -> Option<Snapshot> {
        if meta.index <= self.log.committed {
            // Already have it (e.g. the answer to the last chunk was lost): say so.
            self.incoming_snapshot = None;
            let reply = self.append_response(leader, false, self.log.committed, 0, 0);
            self.held.push(reply);
            return None;
        }
        let same = self.incoming_snapshot.as_ref().is_some_and(|(current, _)| *current == meta);
        if offset == 0 && !same {
            self.incoming_snapshot = Some((meta.clone(), bytes::BytesMut::new()));
        }
        let index = meta.index;
        let received_bytes = match self.incoming_snapshot.as_mut() {
            Some((current, buffer)) if *current == meta => {
                if buffer.len() as u64 == offset {
                    buffer.extend_from_slice(data);
                }
                buffer.len() as u64
            }
            _ => 0, // a chunk of a snapshot we are not receiving: ask for it from the start
        };
        // `validate` refused chunks ending past the bound; the buffer grows only in order.
        assert!(received_bytes <= self.config.snapshot_bytes_max, "a snapshot buffer over its bound");
        let complete = done && received_bytes == offset + data.len() as u64;
        if complete {
            let (meta, buffer) = self.incoming_snapshot.take().expect("matched above");
            assert_eq!(buffer.len() as u64, received_bytes, "the whole snapshot is assembled");
            return Some(Snapshot { meta, data: buffer.freeze() });
        }
        let reply = self.message(leader, MessageBody::SnapshotProgress { index, received_bytes });
        self.held.push(reply);
        None
    }

    /// InstallSnapshot receiver (§7, R9).
    pub(super) fn handle_snapshot(&mut self, leader: NodeId, snapshot: Snapshot) {
        let (index, snapshot_term) = (snapshot.meta.index, snapshot.meta.term);
        if index <= self.log.committed {
            let reply = self.append_response(leader, false, self.log.committed, 0, 0);
            self.held.push(reply);
            return;
        }
        if self.log.matches(index, snapshot.meta.term) {
            // We already have the entries: only the commit index moves.
            self.log.commit_to(index);
        } else {
            self.restore_configuration(snapshot.meta.index, snapshot.meta.conf.clone());
            self.log.restore(snapshot);
        }
        assert!(self.log.committed >= index, "an installed snapshot is committed");
        assert!(self.log.matches(index, snapshot_term), "the log holds the snapshot's last entry");
        let reply = self.append_response(leader, false, index, 0, 0);
        self.held.push(reply);
    }

    /// Starts sending the latest snapshot to `peer` (its next entries were compacted).
    pub(super) fn send_snapshot(&mut self, peer: NodeId) -> bool {
        let Ok(snapshot) = self.log.storage.snapshot() else { return false };
        if snapshot.meta.index == 0 {
            return false;
        }
        assert!(snapshot.meta.index >= self.log.first_index() - 1, "sending a snapshot older than the log");
        let Some(progress) = self.leader_state_mut().progress.get_mut(&peer) else { return false };
        progress.become_snapshot(snapshot.meta.index);
        let sent = self.send_snapshot_chunk(peer);
        let snapshotting = self.leader_state().and_then(|leader| leader.progress.get(&peer)).map(|p| p.state);
        assert_eq!(snapshotting, Some(ProgressState::Snapshot), "a peer sent a snapshot waits for it");
        sent
    }

    /// Sends the next chunk after what `peer` acknowledged (one chunk in flight at a time).
    pub(super) fn send_snapshot_chunk(&mut self, peer: NodeId) -> bool {
        let Ok(snapshot) = self.log.storage.snapshot() else { return false };
        let chunk_bytes_max = self.config.snapshot_chunk_bytes_max;
        let Some(progress) = self.leader_state_mut().progress.get_mut(&peer) else { return false };
        if progress.state != ProgressState::Snapshot || progress.snapshot_chunk_in_flight {
            return false;
        }
        if snapshot.meta.index != progress.pending_snapshot {
            // A newer snapshot replaced the one being sent: start it from the beginning.
            progress.become_snapshot(snapshot.meta.index);
        }
        let total_bytes = snapshot.data.len() as u64;
        let offset = progress.snapshot_acknowledged_bytes.min(total_bytes);
        let end = (offset + chunk_bytes_max).min(total_bytes);
        assert!(offset <= end && end <= total_bytes, "chunk {offset}..{end} outside the snapshot");
        progress.snapshot_chunk_in_flight = true;
        let body = MessageBody::InstallSnapshot {
            meta: snapshot.meta,
            offset,
            data: snapshot.data.slice(offset as usize..end as usize),
            done: end == total_bytes,
        };
        let message = self.message(peer, body);
        self.outbox.push(message);
        true
    }

    pub(super) fn handle_snapshot_progress(&mut self, from: NodeId, index: Index, received_bytes: u64) {
        let Some(progress) = self.leader_state_mut().progress.get_mut(&from) else { return };
        if progress.state != ProgressState::Snapshot || progress.pending_snapshot != index {
            return; // stale: about another snapshot
        }
        // Less than acknowledged before means the follower lost its partial copy: resend.
        progress.snapshot_acknowledged_bytes = received_bytes;
        progress.snapshot_chunk_in_flight = false;
        progress.snapshot_wait_ticks = 0;
        self.send_snapshot_chunk(from);
    }
}
