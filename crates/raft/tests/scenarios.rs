//! Runs every protocol scenario script in `tests/scripts/` (one test per script, so a
//! failure names its script and line).

use raft::testkit::{run_script, ScriptOutcome};

/// Runs a script and panics with `script:line: reason` on failure.
fn run(name: &str, text: &str) -> ScriptOutcome {
    match run_script(name, text) {
        Ok(outcome) => outcome,
        Err(error) => panic!("scenario failed: {error}"),
    }
}

macro_rules! scenario_test {
    ($test:ident, $file:literal) => {
        #[test]
        fn $test() {
            run($file, include_str!(concat!("scripts/", $file)));
        }
    };
}

scenario_test!(walkthrough, "walkthrough.txt");
scenario_test!(figure7, "figure7.txt");
scenario_test!(figure8, "figure8.txt");
scenario_test!(lab_initial_election, "lab_initial_election.txt");
scenario_test!(lab_reelection, "lab_reelection.txt");
scenario_test!(lab_many_elections, "lab_many_elections.txt");
scenario_test!(lab_fail_agree, "lab_fail_agree.txt");
scenario_test!(lab_fail_no_agree, "lab_fail_no_agree.txt");
scenario_test!(lab_rejoin, "lab_rejoin.txt");
scenario_test!(lab_backup, "lab_backup.txt");
scenario_test!(lab_concurrent, "lab_concurrent.txt");
scenario_test!(lab_restart_majority, "lab_restart_majority.txt");
scenario_test!(lab_no_disrupt, "lab_no_disrupt.txt");
scenario_test!(bad_input, "bad_input.txt");
scenario_test!(lab_unreliable, "lab_unreliable.txt");
scenario_test!(membership_single_server, "membership_single_server.txt");
scenario_test!(membership_joint, "membership_joint.txt");
scenario_test!(membership_joint_leader_crash, "membership_joint_leader_crash.txt");
scenario_test!(membership_removed_server, "membership_removed_server.txt");
scenario_test!(leader_transfer, "leader_transfer.txt");
scenario_test!(membership_removed_hold_new_config, "membership_removed_hold_new_config.txt");

/// The lab battery asserts properties, not one lucky schedule: it must hold for other seeds
/// (each script's own `config seed` line is replaced).
#[test]
fn lab_scripts_hold_for_other_seeds() {
    let scripts = [
        ("lab_initial_election.txt", include_str!("scripts/lab_initial_election.txt")),
        ("lab_reelection.txt", include_str!("scripts/lab_reelection.txt")),
        ("lab_many_elections.txt", include_str!("scripts/lab_many_elections.txt")),
        ("lab_fail_agree.txt", include_str!("scripts/lab_fail_agree.txt")),
        ("lab_fail_no_agree.txt", include_str!("scripts/lab_fail_no_agree.txt")),
        ("lab_rejoin.txt", include_str!("scripts/lab_rejoin.txt")),
        ("lab_backup.txt", include_str!("scripts/lab_backup.txt")),
        ("lab_concurrent.txt", include_str!("scripts/lab_concurrent.txt")),
        ("lab_restart_majority.txt", include_str!("scripts/lab_restart_majority.txt")),
        ("lab_no_disrupt.txt", include_str!("scripts/lab_no_disrupt.txt")),
        ("lab_unreliable.txt", include_str!("scripts/lab_unreliable.txt")),
        ("bad_input.txt", include_str!("scripts/bad_input.txt")),
    ];
    for (name, text) in scripts {
        let (source_line, body) = text.split_once('\n').expect("a script has a source line");
        let body: String =
            body.lines().filter(|line| !line.starts_with("config seed")).map(|line| format!("{line}\n")).collect();
        for seed in 100..106 {
            let reseeded = format!("{source_line}\nconfig seed {seed}\n{body}");
            if let Err(error) = run_script(name, &reseeded) {
                panic!("with seed {seed} (line numbers are shifted by one): {error}");
            }
        }
    }
}
