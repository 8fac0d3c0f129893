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
