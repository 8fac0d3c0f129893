//! What one simulated run does: cluster size, seed, bounds and the faults switched on.

use std::fmt;

/// The fault kinds a run may inject; each can be switched on or off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Messages are lost with a per-run probability.
    pub loss: bool,
    /// Messages are delivered twice with a per-run probability.
    pub duplicate: bool,
    /// Messages on one link may overtake each other (otherwise links are FIFO).
    pub reorder: bool,
    /// Some messages take much longer than usual.
    pub delay: bool,
    /// Symmetric partitions: random splits, majority/minority, isolating the leader.
    pub partition: bool,
    /// One-way partitions: A can send to B but B cannot send back.
    pub one_way: bool,
    /// Nodes crash (losing unsynced writes and volatile state) and restart later.
    pub crash: bool,
    /// A crash may leave a torn write: a prefix of one pending batch's entries.
    pub torn: bool,
    /// Nodes compact their logs into snapshots; laggards catch up by InstallSnapshot.
    pub snapshot: bool,
    /// Membership churn (thesis ch. 4): learners added and promoted, voters removed (the
    /// leader too), several voters replaced at once by joint consensus, leadership moved;
    /// voters stay between 3 and 7 out of a pool of ids 1..=9. Needs 3 to 7 nodes.
    pub churn: bool,
}

/// The names `--faults` accepts, in display order, with their switches.
const FAULT_NAMES: [&str; 10] =
    ["loss", "dup", "reorder", "delay", "partition", "oneway", "crash", "torn", "snapshot", "churn"];

impl Faults {
    /// Every fault on.
    pub fn all() -> Self {
        Faults {
            loss: true,
            duplicate: true,
            reorder: true,
            delay: true,
            partition: true,
            one_way: true,
            crash: true,
            torn: true,
            snapshot: true,
            churn: true,
        }
    }

    /// Every fault off (a perfect network and disk).
    pub fn none() -> Self {
        Faults::default()
    }

    fn switch(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "loss" => &mut self.loss,
            "dup" | "duplicate" => &mut self.duplicate,
            "reorder" => &mut self.reorder,
            "delay" => &mut self.delay,
            "partition" => &mut self.partition,
            "oneway" | "one-way" => &mut self.one_way,
            "crash" => &mut self.crash,
            "torn" => &mut self.torn,
            "snapshot" => &mut self.snapshot,
            "churn" => &mut self.churn,
            _ => return None,
        })
    }

    fn is_on(&self, name: &str) -> bool {
        let mut copy = *self;
        copy.switch(name).map(|switch| *switch).unwrap_or(false)
    }

    /// Parses a comma-separated list (`loss,dup,…`), `all` or `none`.
    pub fn parse(text: &str) -> Result<Faults, String> {
        let mut faults = Faults::none();
        for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            match name {
                "all" => faults = Faults::all(),
                "none" => {}
                _ => {
                    let known = FAULT_NAMES.join(",");
                    let switch =
                        faults.switch(name).ok_or(format!("unknown fault {name:?} (known: {known}, all, none)"))?;
                    *switch = true;
                }
            }
        }
        Ok(faults)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Faults::all() {
            return write!(formatter, "all");
        }
        let names: Vec<&str> = FAULT_NAMES.iter().copied().filter(|name| self.is_on(name)).collect();
        if names.is_empty() {
            write!(formatter, "none")
        } else {
            write!(formatter, "{}", names.join(","))
        }
    }
}

/// Deliberate bugs, to show that the checkers catch what they should: two in the
/// simulator's driver, the others in the core (`raft::Sabotage`, test-only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Sabotage {
    /// A correct driver and core.
    #[default]
    None,
    /// Driver: a restarted node forgets its term and vote (hard state not persisted): it
    /// may vote twice in a term.
    ForgetVote,
    /// Driver: writes are reported persisted as soon as they reach the OS cache, before
    /// fsync: a crash loses entries (and votes) the node already acknowledged.
    AcknowledgeBeforeSync,
    /// Core: previous-term entries committed by counting replicas (Figure 8).
    CommitPreviousTermByCounting,
    /// Core: the leader counts its own entries toward the quorum before they are durable.
    LeaderCountsUndurableEntries,
    /// Core: ReadIndex answered without its confirmation round.
    ReadIndexWithoutConfirmation,
    /// Core: votes granted without the election restriction (§5.4.1); shows with pre-vote off.
    VoteWithoutElectionRestriction,
    /// Core: a follower acknowledges AppendEntries before its entries are durable.
    FollowerAcknowledgesBeforeDurable,
}

impl Sabotage {
    /// Every sabotage (driver and core), in table order.
    pub const ALL: [Sabotage; 7] = [
        Sabotage::ForgetVote,
        Sabotage::AcknowledgeBeforeSync,
        Sabotage::CommitPreviousTermByCounting,
        Sabotage::LeaderCountsUndurableEntries,
        Sabotage::ReadIndexWithoutConfirmation,
        Sabotage::VoteWithoutElectionRestriction,
        Sabotage::FollowerAcknowledgesBeforeDurable,
    ];

    /// The name `--sabotage` accepts and tables print.
    pub fn name(self) -> &'static str {
        match self {
            Sabotage::None => "none",
            Sabotage::ForgetVote => "forget-vote",
            Sabotage::AcknowledgeBeforeSync => "ack-before-sync",
            Sabotage::CommitPreviousTermByCounting => "commit-previous-term",
            Sabotage::LeaderCountsUndurableEntries => "leader-counts-undurable",
            Sabotage::ReadIndexWithoutConfirmation => "read-without-confirmation",
            Sabotage::VoteWithoutElectionRestriction => "vote-without-restriction",
            Sabotage::FollowerAcknowledgesBeforeDurable => "follower-ack-before-durable",
        }
    }

    /// Parses a name from [`Sabotage::name`].
    pub fn parse(text: &str) -> Result<Sabotage, String> {
        std::iter::once(Sabotage::None).chain(Sabotage::ALL).find(|sabotage| sabotage.name() == text.trim()).ok_or_else(
            || {
                let known: Vec<&str> = Sabotage::ALL.iter().map(|sabotage| sabotage.name()).collect();
                format!("unknown sabotage {text:?} (known: {})", known.join(", "))
            },
        )
    }

    /// The broken core behaviour this sabotage switches on (`None` for driver bugs).
    pub(crate) fn core(self) -> raft::Sabotage {
        match self {
            Sabotage::None | Sabotage::ForgetVote | Sabotage::AcknowledgeBeforeSync => raft::Sabotage::None,
            Sabotage::CommitPreviousTermByCounting => raft::Sabotage::CommitPreviousTermByCounting,
            Sabotage::LeaderCountsUndurableEntries => raft::Sabotage::LeaderCountsUndurableEntries,
            Sabotage::ReadIndexWithoutConfirmation => raft::Sabotage::ReadIndexWithoutConfirmation,
            Sabotage::VoteWithoutElectionRestriction => raft::Sabotage::VoteWithoutElectionRestriction,
            Sabotage::FollowerAcknowledgesBeforeDurable => raft::Sabotage::FollowerAcknowledgesBeforeDurable,
        }
    }
}

/// How the per-run settings (core options and fault schedule) are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variation {
    /// Drawn per run from the seed (a stream of its own, so the rest of the run draws as
    /// before): pre-vote and check-quorum on or off, normal or tiny AppendEntries, and a
    /// mixed, crash-heavy or leader-churn fault schedule.
    #[default]
    Drawn,
    /// Always pre-vote and check-quorum on, 1 MiB appends, the mixed schedule (the
    /// campaign before variation; regression seeds found then replay with it).
    Classic,
}

/// Which fault actions a run favours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// Every enabled fault equally often (membership churn twice), at the run's pace.
    #[default]
    Mixed,
    /// Mostly crashes (the leader half the time), short downtimes, faults twice as often.
    CrashHeavy,
    /// Always the leader: crashed (back soon) or isolated (for long: a deposed leader keeps
    /// serving its minority a while); clients read more.
    LeaderChurn,
}

/// The per-run settings a [`Variation`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSettings {
    /// `raft::Config::pre_vote`.
    pub pre_vote: bool,
    /// `raft::Config::check_quorum`.
    pub check_quorum: bool,
    /// `raft::Config::append_size_bytes_max` (tiny: one entry per AppendEntries).
    pub append_size_bytes_max: u64,
    /// The fault schedule.
    pub schedule: Schedule,
    /// Disks four times slower (entries stay unsynced for longer).
    pub slow_disks: bool,
}

impl RunSettings {
    /// The settings of a run with `seed` under `variation`.
    pub fn for_run(variation: Variation, seed: u64) -> RunSettings {
        let classic = RunSettings {
            pre_vote: true,
            check_quorum: true,
            append_size_bytes_max: 1 << 20,
            schedule: Schedule::Mixed,
            slow_disks: false,
        };
        if variation == Variation::Classic {
            return classic;
        }
        let mut rng = raft::SplitMix64::new(seed ^ 0x005e_ed0f_7a71_a710);
        let pre_vote = rng.chance(1, 2);
        let check_quorum = rng.chance(2, 3);
        let append_size_bytes_max = if rng.chance(1, 2) { 1 } else { classic.append_size_bytes_max };
        let schedule = match rng.range(0, 3) {
            0 => Schedule::Mixed,
            1 => Schedule::CrashHeavy,
            _ => Schedule::LeaderChurn,
        };
        let slow_disks = rng.chance(1, 3);
        RunSettings { pre_vote, check_quorum, append_size_bytes_max, schedule, slow_disks }
    }
}

/// Everything that determines a run. Two runs with equal options are identical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Cluster size (1 to 9; 3, 5 and 7 are the interesting ones).
    pub nodes: usize,
    /// The only source of randomness.
    pub seed: u64,
    /// Events processed while faults are injected.
    pub steps_max: u64,
    /// Events allowed after healing for the cluster to converge.
    pub settle_steps_max: u64,
    /// Faults switched on.
    pub faults: Faults,
    /// Concurrent clients, each with one operation outstanding at a time.
    pub clients: usize,
    /// Trace lines kept for reports.
    pub trace_lines_max: usize,
    /// A deliberate driver or core bug (tests of the checkers only).
    pub sabotage: Sabotage,
    /// How pre-vote, append sizes and the fault schedule are chosen per run.
    pub variation: Variation,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 5,
            seed: 0,
            steps_max: 5_000,
            settle_steps_max: 30_000,
            faults: Faults::all(),
            clients: 3,
            trace_lines_max: 50,
            sabotage: Sabotage::None,
            variation: Variation::Drawn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        assert_eq!(Faults::parse("all").unwrap(), Faults::all());
        assert_eq!(Faults::parse("none").unwrap(), Faults::none());
        let some = Faults::parse("loss, oneway,torn").unwrap();
        assert!(some.loss && some.one_way && some.torn && !some.crash);
        assert_eq!(some.to_string(), "loss,oneway,torn");
        assert_eq!(Faults::parse(&some.to_string()).unwrap(), some);
        assert_eq!(Faults::all().to_string(), "all");
        assert_eq!(Faults::none().to_string(), "none");
        assert!(Faults::parse("flood").is_err());
    }
}
