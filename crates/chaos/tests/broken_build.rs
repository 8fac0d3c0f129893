//! The runner must catch a deliberately broken build: members started with the test-only
//! `--unsafe-local-reads` serve linearizable reads from their local store without ReadIndex,
//! so a leader cut off from the majority keeps answering reads with stale values while the
//! majority elects a new leader and accepts writes. The checker must report the history
//! not linearizable. Timing decides whether a stale read happens in a given run, so a few
//! seeds are tried (bounded); one caught violation is enough.

mod common;

/// Seeds tried before giving up.
const SEEDS: [u64; 4] = [201, 202, 203, 204];

#[test]
fn stale_local_reads_are_caught() {
    let _guard = common::ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut summaries = Vec::new();
    for seed in SEEDS {
        let mut arguments = common::arguments("isolate", seed, common::run_seconds(12));
        arguments.unsafe_local_reads = true;
        let report = chaos::run(arguments).expect("the run starts");
        println!("{report}");
        if report.found_violation() {
            let history = report.history_path.as_ref().expect("a failing history is saved");
            assert!(history.is_file(), "{} was not written", history.display());
            let replayed = chaos::replay(history).expect("the saved history loads");
            assert!(replayed.found_violation(), "replaying {} finds the violation again", history.display());
            return;
        }
        summaries.push(format!("seed {seed}: {:?}", report.verdict));
    }
    panic!("the broken build was not caught with any seed:\n{}", summaries.join("\n"));
}
