//! ReadIndex (thesis §6.4, R7): a read is served at the commit index recorded when it
//! arrived, once a heartbeat round confirms leadership.

use bytes::Bytes;

use super::{PendingRead, ProposeError, RawNode, PENDING_READS_MAX};
use crate::config::Sabotage;
use crate::quorum;
use crate::storage::Storage;
use crate::types::*;

impl<S: Storage> RawNode<S> {
    /// Thesis §6.4: record the commit index, confirm leadership with a heartbeat round,
    /// then the read may be served once that index is applied.
    pub(super) fn leader_read_index(&mut self, requester: NodeId, context: Bytes) -> Result<(), ProposeError> {
        if self.pending_reads.len() + self.reads_before_commit.len() >= PENDING_READS_MAX {
            return Err(ProposeError::Busy);
        }
        if self.log.term(self.log.committed) != Some(self.term) {
            self.reads_before_commit.push((requester, context));
            return Ok(());
        }
        assert_eq!(self.role, Role::Leader, "only a leader serves ReadIndex");
        let index = self.log.committed;
        let alone = quorum::joint_has_quorum(&self.conf.voters, &self.conf.voters_outgoing, &[self.config.id]);
        if alone || self.config.is_sabotaged(Sabotage::ReadIndexWithoutConfirmation) {
            self.answer_read(requester, index, context);
            return Ok(());
        }
        self.read_round += 1;
        let round = self.read_round;
        assert!(self.pending_reads.back().is_none_or(|read| read.round < round), "read rounds increase");
        self.pending_reads.push_back(PendingRead { round, index, requester, context });
        self.broadcast_heartbeat();
        Ok(())
    }

    pub(super) fn release_confirmed_reads(&mut self) {
        while let Some(read) = self.pending_reads.front() {
            let mut confirmed = vec![self.config.id];
            for (peer, progress) in &self.progress {
                if progress.acknowledged_read_round >= read.round {
                    confirmed.push(*peer);
                }
            }
            if !quorum::joint_has_quorum(&self.conf.voters, &self.conf.voters_outgoing, &confirmed) {
                break;
            }
            let read = self.pending_reads.pop_front().expect("front exists");
            self.answer_read(read.requester, read.index, read.context);
        }
    }

    pub(super) fn answer_read(&mut self, requester: NodeId, index: Index, context: Bytes) {
        assert!(index <= self.log.committed, "a read answered above the commit index");
        if requester == self.config.id {
            self.read_states.push(ReadState { index, context });
        } else {
            let message = self.message(requester, MessageBody::ReadIndexResponse { context, index });
            self.outbox.push(message);
        }
    }
}
