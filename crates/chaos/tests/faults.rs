//! One 3-node run per fault kind (bounded for CI; `RAFTKV_CHAOS_SECONDS` runs longer), and
//! one run mixing every kind. Each must pass every check: linearizable history, no lost
//! acknowledged write, converged stores, no panic.

mod common;

fn run_and_check(faults: &str, seed: u64) {
    let _guard = common::ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let report = chaos::run(common::arguments(faults, seed, common::run_seconds(12))).expect("the run starts");
    println!("{report}");
    assert!(report.passed(), "chaos run with faults {faults} failed:\n{report}");
    assert!(report.counts.puts_acknowledged + report.counts.compare_and_sets_succeeded > 0, "no write succeeded");
    assert!(!report.faults_injected.is_empty(), "no fault was injected");
}

#[test]
fn kill_leader() {
    run_and_check("kill-leader", 101);
}

#[test]
fn kill_random() {
    run_and_check("kill-random", 102);
}

#[test]
fn pause() {
    run_and_check("pause", 103);
}

#[test]
fn isolate() {
    run_and_check("isolate", 104);
}

#[test]
fn split() {
    run_and_check("split", 105);
}

#[test]
fn one_way() {
    run_and_check("one-way", 106);
}

#[test]
fn crash_losing_unsynced_writes() {
    run_and_check("crash", 107);
}

#[test]
fn bad_input() {
    run_and_check("bad-input", 108);
}

#[test]
fn every_fault_mixed() {
    run_and_check("all", 109);
}

/// Five members, every fault kind (splits are then 2 against 3). Not in the CI bound: run
/// with `cargo test -p raftkv-chaos --test faults -- --ignored`.
#[test]
#[ignore = "longer than the CI bound; run with --ignored"]
fn five_members_every_fault() {
    let _guard = common::ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut arguments = common::arguments("all", 110, common::run_seconds(30));
    arguments.nodes = 5;
    arguments.clients = 10;
    let report = chaos::run(arguments).expect("the run starts");
    println!("{report}");
    assert!(report.passed(), "5-member chaos run failed:\n{report}");
}

#[test]
fn a_passing_run_without_a_directory_keeps_no_files() {
    let _guard = common::ONE_CLUSTER_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let seed = 707;
    let arguments = chaos::ChaosArgs { history_out: None, ..common::arguments("none", seed, 2) };
    let report = chaos::run(arguments).expect("the run starts");
    let text = report.to_string();
    println!("{text}");
    assert!(report.passed(), "{text}");
    assert!(
        !chaos::temporary_directory(seed).exists(),
        "{} was left behind",
        chaos::temporary_directory(seed).display()
    );
    let recovery = text.lines().find_map(|line| line.split("recovery=").nth(1)).expect("a recovery field");
    assert!(!recovery.starts_with("Some("), "durations are printed for people: {recovery}");
}
