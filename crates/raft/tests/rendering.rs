//! `render_scenario` (for `raftkv sim --scenario`) and the Figure 7 round-trip table.

use raft::testkit::render::row_cells;
use raft::testkit::{render_scenario, run_script, Measurement, FIGURE7_SCRIPT, SCENARIO_NAMES};

/// The Raft paper's Figure 7: the leader's log and followers (a)-(f), as terms by index.
const LEADER_LOG: [u64; 10] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
const FOLLOWER_LOGS: [(&str, &[u64]); 6] = [
    ("(a)", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
    ("(b)", &[1, 1, 1, 4]),
    ("(c)", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
    ("(d)", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
    ("(e)", &[1, 1, 1, 4, 4, 4, 4]),
    ("(f)", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
];

/// Round trips a leader that backs up one entry per rejection needs: the first probe's
/// prev index is the leader's last index L; it goes down to the last agreeing index m.
fn naive_round_trips(follower: &[u64]) -> u64 {
    let agreeing = LEADER_LOG.iter().zip(follower).take_while(|(leader, other)| leader == other).count();
    (LEADER_LOG.len() - agreeing) as u64 + 1
}

/// The rows of the drawing titled `title` (entry cells by row name).
fn drawing_rows<'text>(text: &'text str, title: &str) -> Vec<(&'text str, &'text str)> {
    let start = text.find(&format!("-- {title}")).unwrap_or_else(|| panic!("no drawing `{title}` in:\n{text}"));
    text[start..].lines().skip(2).map_while(row_cells).collect()
}

#[test]
fn every_scenario_renders() {
    for name in SCENARIO_NAMES {
        let text = render_scenario(name).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(text.contains("legend:"), "{name} has no legend");
        assert!(text.contains("[") && text.contains("S1"), "{name} draws no logs:\n{text}");
    }
    assert!(render_scenario("nonsense").is_err());
}

#[test]
fn figure7_drawing_shows_every_follower_equal_to_the_leader_after() {
    let text = render_scenario("figure7").expect("figure7 runs");
    println!("{text}");
    let before = drawing_rows(&text, "before");
    let after = drawing_rows(&text, "after");
    assert_eq!(before.len(), 7);
    assert_eq!(after.len(), 7);
    let (leader_name, leader_cells) = after[0];
    assert!(leader_name.starts_with("S1 leader (leader, term 8)"), "{leader_name}");
    assert_eq!(leader_cells, "[1] [1] [1] [4] [4] [5] [5] [6] [6] [6] [8]");
    for (name, cells) in &after[1..] {
        assert_eq!(*cells, leader_cells, "{name} differs from the leader after replication");
    }
    assert!(before.iter().skip(1).any(|(_, cells)| *cells != leader_cells));
}

#[test]
fn walkthrough_and_figure8_render() {
    let walkthrough = render_scenario("walkthrough").expect("walkthrough runs");
    println!("{walkthrough}");
    let figure7 = drawing_rows(&walkthrough, "Figure 7");
    assert!(figure7.iter().all(|(_, cells)| *cells == "[2] [2]"), "{walkthrough}");
    let figure8 = render_scenario("figure8").expect("figure8 runs");
    println!("{figure8}");
    let part_c = drawing_rows(&figure8, "(c)");
    assert!(part_c[0].1.starts_with("(1) (2) (4)"), "{figure8}");
}

fn measured(measurements: &[Measurement], section: &str, to_label: &str) -> u64 {
    measurements
        .iter()
        .find(|measurement| {
            measurement.section.starts_with(section)
                && measurement.to_label == to_label
                && measurement.quantity == "appends-until-converged"
        })
        .unwrap_or_else(|| panic!("no measurement for {to_label} in section {section}"))
        .value
}

#[test]
fn figure7_round_trip_table() {
    let outcome = run_script("figure7.txt", FIGURE7_SCRIPT).unwrap_or_else(|error| panic!("{error}"));
    println!("Raft Figure 7: AppendEntries round trips until the follower's log equals the leader's");
    println!("follower | with conflict hint | naive (measured) | naive (analytic L-m+1)");
    let mut totals = (0, 0);
    for (label, log) in FOLLOWER_LOGS {
        let hinted = measured(&outcome.measurements, "with conflict hint", label);
        let naive = measured(&outcome.measurements, "naive", label);
        let analytic = naive_round_trips(log);
        println!("{label:<8} | {hinted:>18} | {naive:>16} | {analytic:>22}");
        assert_eq!(naive, analytic, "{label}: the naive emulation must back up one entry per round trip");
        assert!(hinted <= naive, "{label}: the hint must never cost round trips");
        assert!(hinted <= 2, "{label}: with the hint one rejection suffices for Figure 7");
        totals = (totals.0 + hinted, totals.1 + naive);
    }
    println!("total    | {:>18} | {:>16} |", totals.0, totals.1);
    assert!(totals.0 < totals.1);
}

#[test]
fn figure7_rendering_draws_the_naive_section_and_the_round_trip_table() {
    let text = render_scenario("figure7").expect("figure7 runs");
    let naive_start = text.find("== naive backing up").expect("naive section");
    let table_start = text.find("== AppendEntries round trips").expect("round-trip table");
    let naive_section = &text[naive_start..table_start];
    assert_eq!(drawing_rows(naive_section, "before").len(), 7, "{naive_section}");
    assert_eq!(drawing_rows(naive_section, "after").len(), 7, "{naive_section}");
    let table = &text[table_start..];
    let rows: Vec<Vec<&str>> = table.lines().skip(2).map(|line| line.split('|').map(str::trim).collect()).collect();
    let expected = [("(a)", 2, 2), ("(b)", 2, 7), ("(c)", 1, 1), ("(d)", 1, 1), ("(e)", 2, 6), ("(f)", 2, 8)];
    assert_eq!(rows.len(), expected.len(), "{table}");
    for (row, (label, hinted, naive)) in rows.iter().zip(expected) {
        assert_eq!(row[..], [label, &hinted.to_string(), &naive.to_string()], "{table}");
    }
}
