//! The simulator's self-test: for each deliberate bug ([`Sabotage`]), how many runs of the
//! default campaign pass before a checker reports a violation. A weakened simulator (a
//! checker or a fault schedule lost) shows as a sabotage caught later or never.

use crate::options::{Faults, Options, Sabotage, Variation};

/// Cluster sizes the campaign cycles through, one per run.
pub const CAMPAIGN_NODES: [usize; 3] = [3, 5, 7];

/// What the campaign found for one sabotage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SabotageRow {
    /// The bug switched on.
    pub sabotage: Sabotage,
    /// Runs up to and including the first one with a violation (`None`: not caught).
    pub runs_to_first_violation: Option<u64>,
    /// Seed, cluster size and invariant of that run.
    pub caught_by: Option<(u64, usize, String)>,
}

/// The options of campaign run `index` (seed `start_seed + index`, sizes cycling 3, 5, 7,
/// all faults, per-run variation) with `sabotage`.
pub fn campaign_options(sabotage: Sabotage, start_seed: u64, index: u64) -> Options {
    Options {
        nodes: CAMPAIGN_NODES[(index % CAMPAIGN_NODES.len() as u64) as usize],
        seed: start_seed.wrapping_add(index),
        faults: Faults::all(),
        sabotage,
        variation: Variation::Drawn,
        ..Options::default()
    }
}

/// Runs the campaign with `sabotage` for at most `runs_max` runs, stopping at the first
/// violation of a safety or history check (a run that merely fails to settle does not count:
/// that is liveness, not a caught bug).
pub fn first_violation(sabotage: Sabotage, start_seed: u64, runs_max: u64) -> SabotageRow {
    for index in 0..runs_max {
        let options = campaign_options(sabotage, start_seed, index);
        let result = crate::run(&options);
        if let Some(violation) = result.violations.iter().find(|violation| violation.invariant != "settle") {
            return SabotageRow {
                sabotage,
                runs_to_first_violation: Some(index + 1),
                caught_by: Some((options.seed, options.nodes, violation.invariant.clone())),
            };
        }
    }
    SabotageRow { sabotage, runs_to_first_violation: None, caught_by: None }
}

/// The whole table: every sabotage in [`Sabotage::ALL`] order.
pub fn sabotage_table(start_seed: u64, runs_max: u64) -> Vec<SabotageRow> {
    Sabotage::ALL.iter().map(|&sabotage| first_violation(sabotage, start_seed, runs_max)).collect()
}

/// The table as text, one line per sabotage.
pub fn render_table(rows: &[SabotageRow], runs_max: u64) -> String {
    let mut text = format!("{:<28} {:>16}  caught by\n", "sabotage", "runs to first");
    for row in rows {
        let runs = row.runs_to_first_violation.map_or(format!("not in {runs_max}"), |runs| runs.to_string());
        let caught = row
            .caught_by
            .as_ref()
            .map_or("-".to_string(), |(seed, nodes, invariant)| format!("{invariant} (seed {seed}, {nodes} nodes)"));
        text += &format!("{:<28} {:>16}  {caught}\n", row.sabotage.name(), runs);
    }
    text
}
