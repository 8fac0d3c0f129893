//! ReadIndex (thesis §6.4, R7): a read is served at the commit index recorded when it
//! arrived, once a heartbeat round confirms leadership.

use bytes::Bytes;

use super::role::PendingRead;
use super::{ProposeError, RawNode, PENDING_READS_MAX};
use crate::config::Sabotage;
use crate::quorum;
use crate::storage::Storage;
use crate::types::*;

impl<S: Storage> RawNode<S> {
    /// Thesis §6.4: record the commit index, confirm leadership with a heartbeat round,
    /// then the read may be served once that index is applied.
    pub(super) fn leader_read_index(&mut self, requester: NodeId, context: Bytes) -> Result<(), ProposeError> {
        let own_term_committed = self.log.term(self.log.committed) == Some(self.term);
        let leader = self.leader_state_mut();
        if leader.queued_reads() >= PENDING_READS_MAX {
            return Err(ProposeError::Busy);
        }
        if !own_term_committed {
            leader.reads_before_commit.push((requester, context));
            return Ok(());
        }
        let index = self.log.committed;
        // Thesis §6.4: the read index is safe only once an entry of this term is committed.
        assert_eq!(self.log.term(index), Some(self.term), "a read index before the leader's first commit");
        let alone = quorum::joint_has_quorum(&self.conf.voters, &self.conf.voters_outgoing, &[self.config.id]);
        if alone || self.config.is_sabotaged(Sabotage::ReadIndexWithoutConfirmation) {
            self.answer_read(requester, index, context);
            return Ok(());
        }
        self.read_round += 1;
        let round = self.read_round;
        let pending_reads = &mut self.leader_state_mut().pending_reads;
        assert!(pending_reads.back().is_none_or(|read| read.round < round), "read rounds increase");
        pending_reads.push_back(PendingRead { round, index, requester, context });
        self.broadcast_heartbeat();
        Ok(())
    }

    /// Answers the reads whose round a quorum acknowledged. Rounds increase along the
    /// queue, so the confirmed reads are a prefix of it.
    pub(super) fn release_confirmed_reads(&mut self) {
        let leader = self.leader_state().expect("a leader releases reads");
        let confirmed_count = leader
            .pending_reads
            .iter()
            .take_while(|read| {
                let mut confirmed = vec![self.config.id];
                for (peer, progress) in &leader.progress {
                    if progress.acknowledged_read_round >= read.round {
                        confirmed.push(*peer);
                    }
                }
                quorum::joint_has_quorum(&self.conf.voters, &self.conf.voters_outgoing, &confirmed)
            })
            .count();
        let queued_before = leader.pending_reads.len();
        let confirmed: Vec<PendingRead> = self.leader_state_mut().pending_reads.drain(..confirmed_count).collect();
        for read in confirmed {
            self.answer_read(read.requester, read.index, read.context);
        }
        let queued_after = self.leader_state().map_or(0, |leader| leader.pending_reads.len());
        assert_eq!(queued_after + confirmed_count, queued_before, "a read lost or added while releasing");
    }

    pub(super) fn answer_read(&mut self, requester: NodeId, index: Index, context: Bytes) {
        assert!(index <= self.log.committed, "a read answered above the commit index");
        assert!(self.is_leader(), "only a leader answers ReadIndex");
        if requester == self.config.id {
            self.read_states.push(ReadState { index, context });
        } else {
            let message = self.message(requester, MessageBody::ReadIndexResponse { context, index });
            self.outbox.push(message);
        }
    }
}
