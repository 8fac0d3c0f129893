//! The leader's per-follower replication state (etcd-raft's Progress).

/// How the leader replicates to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Unknown follower state: one AppendEntries at a time until one is accepted.
    Probe,
    /// Follower is in sync: AppendEntries pipelined up to the in-flight window.
    Replicate,
    /// Follower is installing a snapshot; nothing else is sent meanwhile.
    Snapshot,
}
