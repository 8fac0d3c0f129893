//! Test kit: an in-memory network of nodes under manual control, a scenario-script
//! interpreter (protocol scenarios written as data) and a log renderer.
//!
//! Everything here is pure: no I/O, no clock, no threads. Scripts are given as text
//! (tests read them with `include_str!`); see [`script`] for the language.

pub mod network;
pub mod render;
pub mod script;

pub use network::{MessageFilter, Network, NetworkOptions};
pub use render::{render_logs, LEGEND};
pub use script::{run_script, Measurement, ScriptError, ScriptOutcome};

/// The seed walk-through (figures 1–7 of the first seed article; see docs/design.md).
pub const WALKTHROUGH_SCRIPT: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/walkthrough.txt"));
/// Raft paper Figure 7: six inconsistent follower logs converge to the term-8 leader's.
pub const FIGURE7_SCRIPT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/figure7.txt"));
/// Raft paper Figure 8 (§5.4.2): committing entries from earlier terms.
pub const FIGURE8_SCRIPT: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/figure8.txt"));

/// Names accepted by [`render_scenario`].
pub const SCENARIO_NAMES: [&str; 3] = ["walkthrough", "figure7", "figure8"];

/// Runs scenario `name` (`walkthrough`, `figure7`, `figure8`) and returns its drawing:
/// each node's log before and after, with a legend (for `raftkv sim --scenario`).
pub fn render_scenario(name: &str) -> Result<String, String> {
    let script = match name {
        "walkthrough" => WALKTHROUGH_SCRIPT,
        "figure7" => FIGURE7_SCRIPT,
        "figure8" => FIGURE8_SCRIPT,
        other => return Err(format!("unknown scenario `{other}` (known: {})", SCENARIO_NAMES.join(", "))),
    };
    let outcome = run_script(&format!("{name}.txt"), script).map_err(|error| error.to_string())?;
    let mut text = format!("scenario {name}\n{LEGEND}{}", outcome.transcript);
    if name == "figure7" {
        text.push_str(&round_trip_table(&outcome.measurements));
    }
    Ok(text)
}

/// The Figure 7 table: AppendEntries round trips per follower until its log equals the
/// leader's, with the conflict hint (section `with conflict hint`) and without it
/// (section `naive ...`), from the script's `appends-until-converged` measurements.
fn round_trip_table(measurements: &[Measurement]) -> String {
    let count_in = |section: &str, label: &str| {
        measurements
            .iter()
            .find(|measurement| {
                measurement.section.starts_with(section)
                    && measurement.to_label == label
                    && measurement.quantity == "appends-until-converged"
            })
            .map_or_else(|| "-".to_string(), |measurement| measurement.value.to_string())
    };
    let mut labels: Vec<&str> = Vec::new();
    for measurement in measurements {
        if measurement.quantity == "appends-until-converged" && !labels.contains(&measurement.to_label.as_str()) {
            labels.push(&measurement.to_label);
        }
    }
    let mut table = String::from("\n== AppendEntries round trips until the follower's log equals the leader's ==\n");
    table.push_str("follower | with conflict hint | backing up one entry per round trip\n");
    for label in labels {
        let hinted = count_in("with conflict hint", label);
        let naive = count_in("naive", label);
        table.push_str(&format!("{label:<8} | {hinted:>18} | {naive:>35}\n"));
    }
    table
}
