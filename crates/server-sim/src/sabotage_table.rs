//! The simulator's self-test: for each deliberate bug ([`Sabotage`]), how many runs of the
//! campaign pass before a check reports a violation (a run that merely fails to settle is
//! liveness, not a caught bug). A weakened simulator shows as a sabotage caught later or never.

use crate::options::Sabotage;

/// What the campaign found for one sabotage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SabotageRow {
    /// The bug planted.
    pub sabotage: Sabotage,
    /// Runs up to and including the first with a violation (`None`: not caught).
    pub runs_to_first_violation: Option<u64>,
    /// Seed, cluster size and invariant of that run.
    pub caught_by: Option<(u64, usize, String)>,
}

/// Runs the campaign (sizes 3 and 5 alternating) with `sabotage` for at most `runs_max`
/// runs, stopping at the first safety violation.
pub fn first_violation(sabotage: Sabotage, start_seed: u64, runs_max: u64) -> SabotageRow {
    for index in 0..runs_max {
        let options = crate::campaign_options(start_seed, index, 0, sabotage);
        let result = crate::run(&options);
        if let Some(violation) = result.violations.iter().find(|violation| violation.invariant != "settle") {
            let caught_by = Some((options.seed, options.nodes, violation.invariant.clone()));
            return SabotageRow { sabotage, runs_to_first_violation: Some(index + 1), caught_by };
        }
    }
    SabotageRow { sabotage, runs_to_first_violation: None, caught_by: None }
}

/// The table as text, one line per row.
pub fn render_table(rows: &[SabotageRow], runs_max: u64) -> String {
    let mut text = format!("{:<30} {:>14}  caught by\n", "sabotage", "runs to first");
    for row in rows {
        let runs = row.runs_to_first_violation.map_or(format!("not in {runs_max}"), |runs| runs.to_string());
        let caught = row
            .caught_by
            .as_ref()
            .map_or("-".to_string(), |(seed, nodes, invariant)| format!("{invariant} (seed {seed}, {nodes} nodes)"));
        text += &format!("{:<30} {:>14}  {caught}\n", row.sabotage.name(), runs);
    }
    text
}
