//! A run is replayed exactly from its seed (violations are reported by seed), and the
//! faults and checks really happen.

use server_sim::{campaign_options, run, Sabotage};

#[test]
fn a_seed_replays_the_same_run() {
    for index in 0..4 {
        let options = campaign_options(11, index, 0, Sabotage::None);
        let (first, second) = (run(&options), run(&options));
        assert_eq!((first.steps, first.acknowledged), (second.steps, second.acknowledged), "seed {}", options.seed);
        assert_eq!(first.statistics, second.statistics, "seed {}", options.seed);
        assert_eq!(first.trace_tail, second.trace_tail, "seed {}", options.seed);
    }
}

#[test]
fn a_campaign_exercises_every_fault() {
    let mut totals = server_sim::Statistics::default();
    for index in 0..40 {
        let result = run(&campaign_options(1, index, 0, Sabotage::None));
        assert!(result.violations.is_empty(), "{}", result.describe());
        let statistics = result.statistics;
        totals.crashes += statistics.crashes;
        totals.partitions += statistics.partitions;
        totals.snapshots_taken += statistics.snapshots_taken;
        totals.snapshots_installed += statistics.snapshots_installed;
        totals.messages_dropped += statistics.messages_dropped;
        totals.history_operations += statistics.history_operations;
        totals.linearizability_inconclusive += statistics.linearizability_inconclusive;
    }
    assert!(totals.crashes > 40 && totals.partitions > 20, "crashes and partitions happen: {totals:?}");
    assert!(totals.snapshots_installed > 10, "followers catch up by snapshot: {totals:?}");
    assert!(totals.messages_dropped > 0 && totals.history_operations > 4_000, "{totals:?}");
    assert!(totals.linearizability_inconclusive <= 2, "the checker decides the histories: {totals:?}");
}
