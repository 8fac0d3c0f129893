//! What network tasks saw, decided on by the Raft loop: a peer's handshake, a removal
//! notice, whether a peer can be reached. Network tasks never write these tables
//! themselves; they report [`PeerObservation`]s and the loop calls [`Membership::observe`].

use super::Membership;
use crate::transport::PeerObservation;

impl Membership {
    /// Handles what a network task reported about a peer (the loop decides):
    /// - a handshake of a member this node dials records its name and URLs (`known`); one
    ///   of a member no longer a peer (removed since the connection started) is ignored;
    /// - a removal notice naming this member makes it stop after a short linger;
    /// - reachability is recorded for current peers only.
    pub fn observe(&mut self, observation: PeerObservation) {
        let local = self.directory.local_id;
        match observation {
            PeerObservation::Introduced { id, info } => {
                if !self.peers.contains_key(&id) {
                    tracing::debug!(member = %format!("{id:x}"), "handshake of a member that is no peer now; ignored");
                    return;
                }
                if let Ok(mut known) = self.directory.known.write() {
                    known.insert(id, info);
                }
            }
            PeerObservation::RemovedSelf { told_by } => {
                if self.removed_self {
                    return;
                }
                // A peer refused this member's messages: it was removed while down or cut off.
                tracing::warn!(peer = %format!("{told_by:x}"), "this member has been removed from the cluster (told by a peer); stopping");
                self.directory.members.mark_removed(local);
                self.removed_self = true;
            }
            PeerObservation::Reachable { id, reachable } => {
                if self.peers.contains_key(&id) {
                    self.directory.set_reachable(id, reachable);
                }
            }
        }
        assert!(!self.peers.contains_key(&local), "a node is not its own peer");
    }
}
