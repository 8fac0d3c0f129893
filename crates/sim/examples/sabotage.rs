//! Prints the sabotage table (runs of the default campaign to the first violation, per
//! deliberate bug): `cargo run --release -p raftkv-sim --example sabotage -- [START_SEED] [RUNS_MAX]`.

fn main() {
    let mut arguments = std::env::args().skip(1);
    let start_seed = arguments.next().and_then(|text| text.parse().ok()).unwrap_or(1);
    let runs_max = arguments.next().and_then(|text| text.parse().ok()).unwrap_or(500);
    let rows = sim::sabotage_table::sabotage_table(start_seed, runs_max);
    print!("{}", sim::sabotage_table::render_table(&rows, runs_max));
}
