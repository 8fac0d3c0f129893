//! The faults the runner injects, and how each is healed.

use std::fmt;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::cluster::Cluster;
use crate::proxy::LinkMode;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL the leader, restart it when healing.
    KillLeader,
    /// SIGKILL a random member, restart it when healing.
    KillRandom,
    /// SIGSTOP a member (the leader half of the time), SIGCONT when healing.
    Pause,
    /// Cut the leader off from every other member (both directions).
    Isolate,
    /// Split the members into a minority holding the leader and a majority (with 3 members
    /// the minority is the leader alone, as with `isolate`, but cut by blackholing or
    /// closing at random).
    Split,
    /// Lose the leader's messages in one direction only: everything it sends, or everything
    /// sent to it.
    OneWay,
    /// SIGKILL every member at once (their WALs lose writes not yet synced, when the
    /// binary runs with `--unsafe-wal-buffer-unsynced`), restart all when healing.
    Crash,
    /// Send garbage to a member's client and peer ports (no healing needed).
    BadInput,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::KillLeader,
        FaultKind::KillRandom,
        FaultKind::Pause,
        FaultKind::Isolate,
        FaultKind::Split,
        FaultKind::OneWay,
        FaultKind::Crash,
        FaultKind::BadInput,
    ];

    /// The name used in `--faults`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillRandom => "kill-random",
            FaultKind::Pause => "pause",
            FaultKind::Isolate => "isolate",
            FaultKind::Split => "split",
            FaultKind::OneWay => "one-way",
            FaultKind::Crash => "crash",
            FaultKind::BadInput => "bad-input",
        }
    }

    /// Parses a comma list of names; `all` means every kind, `none` (or empty) no faults.
    pub fn parse_list(text: &str) -> anyhow::Result<Vec<FaultKind>> {
        let mut kinds = Vec::new();
        for word in text.split(',').map(str::trim).filter(|word| !word.is_empty()) {
            match word {
                "all" => kinds.extend(FaultKind::ALL),
                "none" => {}
                _ => {
                    let kind = FaultKind::ALL.into_iter().find(|kind| kind.name() == word).ok_or_else(|| {
                        let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
                        anyhow::anyhow!("unknown fault '{word}'; known: {}, all, none", names.join(", "))
                    })?;
                    kinds.push(kind);
                }
            }
        }
        kinds.sort();
        kinds.dedup();
        Ok(kinds)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// What must be undone to heal an injected fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Injected {
    /// These members were killed: restart them.
    Killed(Vec<usize>),
    /// This member was paused: continue it.
    Paused(usize),
    /// Links were cut: let every link pass.
    Network,
    /// Nothing to undo.
    Nothing,
}

/// Injects `kind`, aiming at `leader` when it is known (else at a random member). Returns
/// what was done (for the report) and what healing must undo.
pub fn inject(
    kind: FaultKind,
    cluster: &mut Cluster,
    leader: Option<usize>,
    random: &mut ChaCha8Rng,
) -> anyhow::Result<(String, Injected)> {
    let members = cluster.len();
    let random_member = random.gen_range(0..members);
    let target = leader.unwrap_or(random_member);
    let cut = if random.gen_bool(0.5) { LinkMode::Blackhole } else { LinkMode::Drop };
    let outcome = match kind {
        FaultKind::KillLeader | FaultKind::KillRandom => {
            let victim = if kind == FaultKind::KillLeader { target } else { random_member };
            cluster.kill(victim);
            (format!("SIGKILL {}", cluster.name(victim)), Injected::Killed(vec![victim]))
        }
        FaultKind::Pause => {
            let victim = if random.gen_bool(0.5) { target } else { random_member };
            cluster.pause(victim)?;
            (format!("SIGSTOP {}", cluster.name(victim)), Injected::Paused(victim))
        }
        FaultKind::Isolate => {
            cluster.partition(&[target], cut);
            (format!("isolate {} ({cut:?})", cluster.name(target)), Injected::Network)
        }
        FaultKind::Split => {
            let minority = minority_with(target, members, random);
            cluster.partition(&minority, cut);
            let names: Vec<&str> = minority.iter().map(|&index| cluster.name(index)).collect();
            (format!("split minority [{}] ({cut:?})", names.join(",")), Injected::Network)
        }
        FaultKind::OneWay => one_way(cluster, target, random),
        FaultKind::Crash => {
            let everyone: Vec<usize> = (0..members).collect();
            for &index in &everyone {
                cluster.kill(index);
            }
            ("SIGKILL every member".to_string(), Injected::Killed(everyone))
        }
        FaultKind::BadInput => (format!("bad input to {}", cluster.name(target)), Injected::Nothing),
    };
    Ok(outcome)
}

/// A minority (at most (n-1)/2 members, at least one) that contains `member`.
fn minority_with(member: usize, members: usize, random: &mut ChaCha8Rng) -> Vec<usize> {
    let mut others: Vec<usize> = (0..members).filter(|&index| index != member).collect();
    others.shuffle(random);
    let size = ((members - 1) / 2).max(1);
    let mut minority = vec![member];
    minority.extend(others.into_iter().take(size - 1));
    minority.sort_unstable();
    minority
}

fn one_way(cluster: &mut Cluster, target: usize, random: &mut ChaCha8Rng) -> (String, Injected) {
    let outbound = random.gen_bool(0.5);
    for other in (0..cluster.len()).filter(|&index| index != target) {
        if outbound {
            cluster.set_link(target, other, LinkMode::Blackhole);
        } else {
            cluster.set_link(other, target, LinkMode::Blackhole);
        }
    }
    let direction = if outbound { "from" } else { "to" };
    (format!("lose every message {direction} {}", cluster.name(target)), Injected::Network)
}

/// Undoes `injected`.
pub fn heal(injected: &Injected, cluster: &mut Cluster) -> anyhow::Result<()> {
    match injected {
        Injected::Killed(members) => {
            for &index in members {
                cluster.restart(index)?;
            }
        }
        Injected::Paused(index) => cluster.resume(*index)?,
        Injected::Network => cluster.heal_network(),
        Injected::Nothing => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_lists() {
        assert_eq!(FaultKind::parse_list("all").unwrap(), FaultKind::ALL.to_vec());
        assert_eq!(FaultKind::parse_list("none").unwrap(), Vec::new());
        assert_eq!(
            FaultKind::parse_list("pause, kill-leader,pause").unwrap(),
            vec![FaultKind::KillLeader, FaultKind::Pause]
        );
        assert!(FaultKind::parse_list("meteor").is_err());
    }

    #[test]
    fn minorities_hold_the_member_and_stay_minorities() {
        let mut random = ChaCha8Rng::seed_from_u64(7);
        for members in [3, 5, 7] {
            for member in 0..members {
                let minority = minority_with(member, members, &mut random);
                assert!(minority.contains(&member));
                assert!(minority.len() * 2 < members, "{minority:?} of {members}");
            }
        }
    }
}
