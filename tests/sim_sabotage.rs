//! `raftkv sim --sabotage-table` and `raftkv sim --sabotage NAME` as a user runs them: the
//! table lists every planted bug as caught, and a replayed sabotaged seed reports its
//! violation and exits 1 while the same seed without sabotage passes.

use std::process::Command;

fn raftkv_sim(arguments: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_raftkv")).arg("sim").args(arguments).output().expect("run raftkv");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code().unwrap_or(-1), stdout)
}

#[test]
fn sabotage_table_and_sabotaged_replay() {
    let (code, table) = raftkv_sim(&["--sabotage-table"]);
    assert_eq!(code, 0, "{table}");
    for name in ["commit-previous-term", "leader-counts-undurable", "read-without-confirmation"] {
        let line = table.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{name}: {table}"));
        assert!(!line.contains("not in"), "{line}");
    }
    assert_eq!(table.lines().count(), 8, "{table}");
    let replay = ["--runs", "1", "--start-seed", "20", "--nodes", "5", "--faults", "all"];
    let (code, output) = raftkv_sim(&[&replay[..], &["--sabotage", "read-without-confirmation"]].concat());
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("invariant: linearizable_read"), "{output}");
    let (code, output) = raftkv_sim(&replay);
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("violations=0"), "{output}");
    let (code, _) = raftkv_sim(&["--sabotage", "flood"]);
    assert_eq!(code, 2);
}
