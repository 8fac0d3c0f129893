//! The fault schedule of the fault phase, drawn per simulated millisecond: crashes (one
//! member losing power, a crash armed some disk operations ahead so it strikes in the middle
//! of a write, a snapshot or an fsync, or the whole cluster losing power at once) and
//! partitions (a random side or the leader alone, symmetric or one-way).

use raft::Role;

use crate::cluster::Cluster;

/// One in this many milliseconds with a new acknowledged write ends in a whole-cluster power loss.
const POWER_LOSS_AFTER_ACKNOWLEDGEMENT_ONE_IN: u64 = 150;
/// Most disk operations ahead an armed crash strikes.
const ARMED_OPERATIONS_MAX: u64 = 40;

/// Draws this millisecond's faults.
pub fn inject(cluster: &mut Cluster) {
    maybe_crash(cluster);
    maybe_partition(cluster);
}

/// After the turns of a millisecond in which a write was acknowledged, now and then the
/// whole cluster loses power at once: an acknowledged write must already be durable on a
/// majority, so this is where acknowledging too early shows.
pub fn after_turns(cluster: &mut Cluster) {
    if cluster.drawn().crash_per_million == 0 || !cluster.take_new_acknowledged_write() {
        return;
    }
    if cluster.random().chance(1, POWER_LOSS_AFTER_ACKNOWLEDGEMENT_ONE_IN) {
        for index in cluster.up_indexes() {
            cluster.crash(index);
        }
    }
}

fn maybe_crash(cluster: &mut Cluster) {
    let rate = cluster.drawn().crash_per_million;
    if rate == 0 || !cluster.random().chance(rate, 1_000_000) {
        return;
    }
    let up = cluster.up_indexes();
    if up.is_empty() {
        return;
    }
    let nodes = cluster.members().len();
    let chosen = match leader_index(cluster) {
        // Half the crashes hit the leader: its unsynced tail is what matters most.
        Some(leader) if cluster.random().chance(1, 2) => leader,
        _ => up[cluster.random().range(0, up.len() as u64) as usize],
    };
    match cluster.random().range(0, 10) {
        0..=2 => {
            // The whole cluster loses power: only what was durable survives anywhere.
            for index in up {
                cluster.crash(index);
            }
        }
        3..=5 => {
            let operations = cluster.random().range(1, ARMED_OPERATIONS_MAX + 1);
            cluster.arm_crash(chosen, operations);
        }
        // A single crash keeps a majority up (the whole-cluster case covers the rest).
        _ if (nodes - up.len() + 1) * 2 < nodes => cluster.crash(chosen),
        _ => {}
    }
}

fn maybe_partition(cluster: &mut Cluster) {
    if cluster.partition_active() {
        return;
    }
    let rate = cluster.drawn().partition_per_million;
    if rate == 0 || !cluster.random().chance(rate, 1_000_000) {
        return;
    }
    let nodes = cluster.members().len() as u64;
    if nodes < 2 {
        return;
    }
    let leader = leader_index(cluster).map(|index| index as u64 + 1);
    let side: Vec<u64> = match leader {
        Some(leader) if cluster.random().chance(1, 2) => vec![leader],
        _ => {
            let size = cluster.random().range(1, nodes);
            let mut ids: Vec<u64> = (1..=nodes).collect();
            for position in 0..size as usize {
                let swap = cluster.random().range(position as u64, nodes) as usize;
                ids.swap(position, swap);
            }
            ids.truncate(size as usize);
            ids
        }
    };
    let others: Vec<u64> = (1..=nodes).filter(|id| !side.contains(id)).collect();
    let one_way = cluster.random().chance(1, 4);
    let until_ms = cluster.now_ms() + cluster.random().range(50, 900);
    cluster.partition(side, others, one_way, until_ms);
}

/// The index of a member that is up and leads, if any.
fn leader_index(cluster: &Cluster) -> Option<usize> {
    cluster.members().iter().position(|member| {
        member.running.as_ref().is_some_and(|running| running.core.soft_state().role == Role::Leader)
    })
}
