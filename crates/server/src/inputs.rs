//! The Raft loop's inputs, in two bounded queues: peers first.
//!
//! Peer messages (votes, appends and their acknowledgements, heartbeats), what peer
//! connections observed ([`Input::PeerObserved`]: a handshake, before that connection's
//! messages) and the loop's own wake-ups (the WAL sync worker's "synced", the
//! election-clock advance, stop) go to the *peer* queue; client work (proposals, linearizable-read barriers, membership requests)
//! goes to the *client* queue. Rules:
//! - each queue is bounded ([`PEER_QUEUE_MAX`], [`CLIENT_QUEUE_MAX`]); a full client queue
//!   answers the client "too many requests", a full peer queue drops the message (Raft
//!   retransmits) and counts it in `raftkv_inbound_messages_dropped_total`;
//! - a flood of clients fills only the client queue: it can delay clients, never a vote or
//!   an acknowledgement;
//! - the loop takes every waiting peer input before any client input of a turn, and waits
//!   on both queues at once when both are empty ([`InputReceiver::recv_timeout`]).

use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::driver::Input;
use crate::transport::PeerObservation;

/// Peer messages and wake-ups waiting for the loop, at most.
pub const PEER_QUEUE_MAX: usize = 16_384;
/// Client requests waiting for the loop, at most.
pub const CLIENT_QUEUE_MAX: usize = 16_384;

/// Why an input was not queued (the input is dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendRefused {
    /// Its queue is full.
    Full,
    /// The loop has stopped.
    Stopped,
}

/// The sending side of both queues (cheap to clone).
#[derive(Clone)]
pub struct InputSender {
    peers: Sender<Input>,
    clients: Sender<Input>,
}

/// The loop's receiving side of both queues.
pub struct InputReceiver {
    peers: Receiver<Input>,
    clients: Receiver<Input>,
}

/// Two empty queues.
pub fn input_queues() -> (InputSender, InputReceiver) {
    let (peer_sender, peer_receiver) = bounded(PEER_QUEUE_MAX);
    let (client_sender, client_receiver) = bounded(CLIENT_QUEUE_MAX);
    (
        InputSender { peers: peer_sender, clients: client_sender },
        InputReceiver { peers: peer_receiver, clients: client_receiver },
    )
}

/// A network task's observation, for the peer queue (see [`crate::transport::serve_peers`]).
impl From<PeerObservation> for Input {
    fn from(observation: PeerObservation) -> Input {
        Input::PeerObserved(observation)
    }
}

/// True for inputs that come from clients (they wait behind peer inputs).
fn is_client_work(input: &Input) -> bool {
    matches!(input, Input::Propose { .. } | Input::Read { .. } | Input::Membership { .. })
}

impl InputSender {
    /// Queues `input` on its queue without waiting.
    pub fn try_send(&self, input: Input) -> Result<(), SendRefused> {
        let queue = if is_client_work(&input) { &self.clients } else { &self.peers };
        queue.try_send(input).map_err(|error| match error {
            TrySendError::Full(_) => SendRefused::Full,
            TrySendError::Disconnected(_) => SendRefused::Stopped,
        })
    }

    /// The peer queue alone, for the peer listener (which only sends [`Input::Peer`]).
    pub fn peer_queue(&self) -> Sender<Input> {
        self.peers.clone()
    }
}

impl InputReceiver {
    /// Waits up to `timeout` for an input, taking a waiting peer input before a client one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Input, RecvTimeoutError> {
        crossbeam_channel::select_biased! {
            recv(self.peers) -> input => input.map_err(|_| RecvTimeoutError::Disconnected),
            recv(self.clients) -> input => input.map_err(|_| RecvTimeoutError::Disconnected),
            default(timeout) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// A waiting peer input, if any.
    pub fn try_recv_peer(&self) -> Option<Input> {
        self.peers.try_recv().ok()
    }

    /// A waiting client input, if any.
    pub fn try_recv_client(&self) -> Option<Input> {
        self.clients.try_recv().ok()
    }

    /// Inputs waiting on the peer queue and on the client queue.
    pub fn lengths(&self) -> (usize, usize) {
        (self.peers.len(), self.clients.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn read_request() -> Input {
        let (respond, _receiver) = oneshot::channel();
        Input::Read { respond }
    }

    #[test]
    fn a_full_client_queue_does_not_refuse_peer_inputs() {
        let (sender, receiver) = input_queues();
        for _ in 0..CLIENT_QUEUE_MAX {
            sender.try_send(read_request()).expect("room for clients");
        }
        assert_eq!(sender.try_send(read_request()), Err(SendRefused::Full));
        sender.try_send(Input::Synced).expect("the peer queue has its own room");
        let observation = PeerObservation::RemovedSelf { told_by: 2 };
        sender.try_send(Input::from(observation)).expect("observations go to the peer queue");
        assert_eq!(receiver.lengths(), (2, CLIENT_QUEUE_MAX));
    }

    #[test]
    fn peer_inputs_are_taken_before_client_inputs() {
        let (sender, receiver) = input_queues();
        sender.try_send(read_request()).unwrap();
        sender.try_send(read_request()).unwrap();
        sender.try_send(Input::Synced).unwrap();
        let first = receiver.recv_timeout(Duration::from_millis(1)).unwrap();
        assert!(matches!(first, Input::Synced), "the peer input came last but is served first");
        assert!(receiver.try_recv_peer().is_none());
        assert!(matches!(receiver.try_recv_client(), Some(Input::Read { .. })));
    }

    #[test]
    fn recv_timeout_times_out_and_reports_disconnection() {
        let (sender, receiver) = input_queues();
        assert!(matches!(receiver.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Timeout)));
        drop(sender);
        assert!(matches!(receiver.recv_timeout(Duration::from_millis(1)), Err(RecvTimeoutError::Disconnected)));
    }
}
