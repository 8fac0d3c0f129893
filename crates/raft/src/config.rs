//! Node configuration.

use crate::types::{Index, NodeId, NO_NODE};

/// How a node behaves. `Config::new(id)` gives the defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's id (not 0).
    pub id: NodeId,
    /// Ticks without hearing from a leader before a follower campaigns. The actual timeout
    /// is drawn from `election_ticks..2*election_ticks` at every reset (§5.2).
    pub election_ticks: u32,
    /// Ticks between leader heartbeats. Must be below `election_ticks`.
    pub heartbeat_ticks: u32,
    /// Pre-vote (thesis §9.6): a node campaigns only if a majority would vote for it, so a
    /// partitioned node that rejoins does not bump terms and depose a healthy leader.
    pub pre_vote: bool,
    /// Check-quorum (thesis §6.2): a leader that has not heard from a majority within an
    /// election timeout steps down; followers that heard from a leader recently ignore votes.
    pub check_quorum: bool,
    /// Forward proposals (and ReadIndex requests) made on a follower to the leader (R1).
    /// When false they are refused with a leader hint.
    pub forward_proposals: bool,
    /// Most AppendEntries messages in flight to one follower (pipelining window).
    pub inflight_messages_max: usize,
    /// Most entry bytes in flight to one follower.
    pub inflight_bytes_max: u64,
    /// Most entry bytes in one AppendEntries message.
    pub append_size_bytes_max: u64,
    /// Most bytes of appended but uncommitted proposals on a leader; further proposals are
    /// refused with `ProposeError::Busy` (a bound on the proposal queue).
    pub uncommitted_bytes_max: u64,
    /// Most entry bytes handed out to apply in one `Ready`.
    pub apply_batch_bytes_max: u64,
    /// Most snapshot bytes per InstallSnapshot chunk.
    pub snapshot_chunk_bytes_max: u64,
    /// Largest snapshot a follower accepts (a bound on the reassembly buffer).
    pub snapshot_bytes_max: u64,
    /// Index the driver's state machine has already applied (on restart).
    pub applied: Index,
    /// Seed of the election-timeout randomness.
    pub random_seed: u64,
    /// For a node that (re)joins a running cluster with an empty log (e.g. its data was
    /// lost): it neither votes nor campaigns until it has caught up with the commit index
    /// the leader announced in its first AppendEntries or snapshot. Without this, a node
    /// that forgot its log could help elect a leader that lacks committed entries.
    pub abstain_until_caught_up: bool,
    /// Test-only: a deliberately broken behaviour (see [`Sabotage`]). Always
    /// [`Sabotage::None`] unless set with `Config::with_sabotage`, which exists only with the
    /// `sabotage` cargo feature (enabled by the simulator alone, so the server crate cannot
    /// call it); never set outside the simulator's self-tests.
    pub(crate) sabotage: Sabotage,
}

/// Deliberately broken core behaviours, for the simulator to show that its checkers catch
/// classic Raft safety bugs. Test-only: never set outside crates/sim.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(not(feature = "sabotage"), allow(dead_code))]
pub enum Sabotage {
    /// Correct Raft.
    #[default]
    None,
    /// The leader commits entries of earlier terms by counting replicas (the Figure 8 bug,
    /// §5.4.2): without the rule that only entries of the leader's term commit by counting.
    CommitPreviousTermByCounting,
    /// The leader counts its own copy of new entries toward the majority before they are
    /// durable on its disk.
    LeaderCountsUndurableEntries,
    /// A ReadIndex request is answered at once with the commit index, without the
    /// heartbeat round that confirms the leader still leads (thesis §6.4).
    ReadIndexWithoutConfirmation,
    /// Votes (not pre-votes) are granted without the election restriction (§5.4.1): a
    /// candidate whose log is behind may win. Visible when pre-vote is off.
    VoteWithoutElectionRestriction,
    /// A follower acknowledges AppendEntries before the entries are durable.
    FollowerAcknowledgesBeforeDurable,
}

#[cfg_attr(not(feature = "sabotage"), allow(dead_code))]
impl Sabotage {
    /// Every sabotage, in a fixed order (for tables).
    pub const ALL: [Sabotage; 5] = [
        Sabotage::CommitPreviousTermByCounting,
        Sabotage::LeaderCountsUndurableEntries,
        Sabotage::ReadIndexWithoutConfirmation,
        Sabotage::VoteWithoutElectionRestriction,
        Sabotage::FollowerAcknowledgesBeforeDurable,
    ];
}

/// An invalid configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "invalid raft config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Defaults: election 10 ticks, heartbeat 1 tick, pre-vote and check-quorum on,
    /// forwarding on, 256 messages / 32 MiB in flight per follower, 1 MiB per message.
    pub fn new(id: NodeId) -> Self {
        let config = Config {
            id,
            election_ticks: 10,
            heartbeat_ticks: 1,
            pre_vote: true,
            check_quorum: true,
            forward_proposals: true,
            inflight_messages_max: 256,
            inflight_bytes_max: 32 << 20,
            append_size_bytes_max: 1 << 20,
            uncommitted_bytes_max: 64 << 20,
            apply_batch_bytes_max: 16 << 20,
            snapshot_chunk_bytes_max: 1 << 20,
            snapshot_bytes_max: 8 << 30,
            applied: 0,
            random_seed: id,
            abstain_until_caught_up: false,
            sabotage: Sabotage::None,
        };
        assert!(id == NO_NODE || config.validate().is_ok(), "the defaults are valid");
        config
    }

    /// Test-only: the same configuration with a deliberately broken behaviour. Exists only
    /// with the `sabotage` cargo feature, which only the simulator enables.
    #[cfg(feature = "sabotage")]
    pub fn with_sabotage(mut self, sabotage: Sabotage) -> Self {
        self.sabotage = sabotage;
        self
    }

    /// The sabotage in effect (always [`Sabotage::None`] without the `sabotage` feature, so
    /// the checks compile away).
    #[inline]
    pub(crate) fn is_sabotaged(&self, sabotage: Sabotage) -> bool {
        cfg!(feature = "sabotage") && self.sabotage == sabotage
    }

    /// Checks the bounds every other part relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |reason: &str| Err(ConfigError(reason.to_string()));
        if self.id == NO_NODE {
            return fail("id must not be 0");
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return fail("need 0 < heartbeat_ticks < election_ticks");
        }
        if self.inflight_messages_max == 0 || self.inflight_bytes_max == 0 {
            return fail("in-flight window must be positive");
        }
        if self.snapshot_chunk_bytes_max == 0 || self.snapshot_bytes_max < self.snapshot_chunk_bytes_max {
            return fail("need 0 < snapshot_chunk_bytes_max <= snapshot_bytes_max");
        }
        if self.append_size_bytes_max == 0 || self.apply_batch_bytes_max == 0 {
            return fail("message and apply sizes must be positive");
        }
        // The randomized election timeout draws from 0..election_ticks: never empty.
        assert!(self.election_ticks >= 2, "0 < heartbeat_ticks < election_ticks");
        Ok(())
    }
}
