//! What one run simulates: cluster size, seed, durations, fault rates, and the deliberate
//! bug planted for the simulator's self-test.

/// A deliberately broken build, for the self-test (see `tests/sabotage.rs`). Every value but
/// [`Sabotage::None`] needs the crate's `sabotage` feature (the `raftkv` binary has it off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Sabotage {
    /// The correct server and Raft cores.
    #[default]
    None,
    /// The server core answers a write as soon as it is proposed, before it is durable and applied.
    AcknowledgeBeforeDurable,
    /// The server core answers a linearizable-read barrier at once, without its ReadIndex round.
    ReadWithoutReadIndex,
    /// The Raft core answers ReadIndex without the heartbeat round that confirms leadership.
    RaftReadIndexWithoutConfirmation,
    /// The Raft core grants votes without the election restriction (runs with pre-vote off).
    RaftVoteWithoutElectionRestriction,
    /// The Raft leader counts its own entries toward commit before they are durable.
    RaftLeaderCountsUndurableEntries,
    /// Raft followers acknowledge appends before the entries are durable.
    RaftFollowerAcknowledgesBeforeDurable,
}

impl Sabotage {
    /// Every sabotage, in table order.
    pub const ALL: [Sabotage; 6] = [
        Sabotage::AcknowledgeBeforeDurable,
        Sabotage::ReadWithoutReadIndex,
        Sabotage::RaftReadIndexWithoutConfirmation,
        Sabotage::RaftVoteWithoutElectionRestriction,
        Sabotage::RaftLeaderCountsUndurableEntries,
        Sabotage::RaftFollowerAcknowledgesBeforeDurable,
    ];

    /// A short name for tables and the command line.
    pub fn name(self) -> &'static str {
        match self {
            Sabotage::None => "none",
            Sabotage::AcknowledgeBeforeDurable => "ack-before-durable",
            Sabotage::ReadWithoutReadIndex => "read-without-read-index",
            Sabotage::RaftReadIndexWithoutConfirmation => "raft-read-index-unconfirmed",
            Sabotage::RaftVoteWithoutElectionRestriction => "raft-vote-unrestricted",
            Sabotage::RaftLeaderCountsUndurableEntries => "raft-leader-counts-undurable",
            Sabotage::RaftFollowerAcknowledgesBeforeDurable => "raft-follower-acks-undurable",
        }
    }
}

/// One run's settings. Everything random in the run is drawn from `seed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Members (3 or 5 are typical; 1..=9).
    pub nodes: usize,
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// Simulated milliseconds of client load with faults.
    pub fault_phase_ms: u64,
    /// Most simulated milliseconds, after healing, for the cluster to settle.
    pub settle_ms_max: u64,
    /// Concurrent clients (each has at most one request outstanding).
    pub clients: usize,
    /// Whether crashes (power loss, torn writes, failed operations) happen.
    pub crashes: bool,
    /// Whether partitions (symmetric and one-way) happen.
    pub partitions: bool,
    /// The deliberate bug planted (self-test only).
    pub sabotage: Sabotage,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            nodes: 3,
            seed: 1,
            fault_phase_ms: 3_000,
            settle_ms_max: 20_000,
            clients: 5,
            crashes: true,
            partitions: true,
            sabotage: Sabotage::None,
        }
    }
}

/// Simulated milliseconds per Raft tick.
pub const TICK_MS: u64 = 10;
/// Raft election timeout in ticks (heartbeats every tick).
pub const ELECTION_TICKS: u32 = 10;
/// Ticks a client request may wait in a core before it times out there.
pub const REQUEST_TIMEOUT_TICKS: u64 = 100;
/// Simulated milliseconds a client waits for an answer before giving up (outcome unknown).
pub const CLIENT_TIMEOUT_MS: u64 = 1_500;
/// Longest lease TTL clients grant, in seconds (the store's minimum is 2).
pub const LEASE_TTL_SECONDS_MAX: i64 = 3;
/// Size at which a WAL segment rolls (small, so segments roll and compaction removes them).
pub const SEGMENT_SIZE_BYTES_MAX: u64 = 16 << 10;
/// Cluster id of every simulated cluster.
pub const CLUSTER_ID: u64 = 0x5eed;

/// What a run draws from its seed once, before it starts (the run's variation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drawn {
    /// Pre-vote on or off.
    pub pre_vote: bool,
    /// Check-quorum on or off (off: an isolated leader keeps leading until it hears a
    /// higher term, so anything it answers alone is visible).
    pub check_quorum: bool,
    /// Raft's largest append message, in bytes (tiny ones split every batch).
    pub append_size_bytes_max: u64,
    /// Applied entries between snapshots.
    pub snapshot_entries: u64,
    /// Chance per simulated millisecond, in millionths, that a member crashes.
    pub crash_per_million: u64,
    /// Chance per simulated millisecond, in millionths, that a partition starts.
    pub partition_per_million: u64,
    /// Chance, in percent, that a message is lost.
    pub loss_percent: u64,
    /// Longest network delay, in simulated milliseconds.
    pub delay_ms_max: u64,
    /// Longest fsync, in simulated milliseconds.
    pub fsync_ms_max: u64,
}

impl Drawn {
    /// The variation of a run with `options`, drawn from `random`.
    pub fn draw(options: &Options, random: &mut raft::SplitMix64) -> Drawn {
        let crash_heavy = random.chance(1, 3);
        let vote_sabotage = options.sabotage == Sabotage::RaftVoteWithoutElectionRestriction;
        Drawn {
            pre_vote: !vote_sabotage && random.chance(1, 2),
            check_quorum: random.chance(2, 3),
            append_size_bytes_max: if random.chance(1, 4) { 256 } else { 1 << 20 },
            snapshot_entries: random.range(8, 80),
            crash_per_million: match (options.crashes, crash_heavy) {
                (false, _) => 0,
                (true, true) => 2_000,
                (true, false) => 500,
            },
            partition_per_million: if options.partitions { random.range(500, 2_500) } else { 0 },
            loss_percent: random.range(0, 6),
            delay_ms_max: random.range(2, 12),
            fsync_ms_max: random.range(1, 20),
        }
    }
}
