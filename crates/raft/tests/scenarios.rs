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
