//! Runs many seeds and prints every failing one (for long local campaigns without the
//! whole raftkv binary): `cargo run -p raftkv-sim --release --example batch -- START RUNS NODES FAULTS`.

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let number =
        |position: usize, default: u64| arguments.get(position).and_then(|text| text.parse().ok()).unwrap_or(default);
    let (start, runs, nodes) = (number(0, 1), number(1, 100), number(2, 5) as usize);
    let faults =
        arguments.get(3).map(|text| sim::Faults::parse(text).expect("faults")).unwrap_or_else(sim::Faults::all);
    let (mut violations, mut changes) = (0u64, 0u64);
    for seed in start..start + runs {
        let result = sim::run(&sim::Options { nodes, seed, faults, ..sim::Options::default() });
        changes += result.statistics.membership_changes;
        if let Some(violation) = result.violations.first() {
            violations += 1;
            println!("seed {seed}: {violation:?}");
        }
    }
    println!("runs={runs} nodes={nodes} faults={faults} violations={violations} membership_changes={changes}");
}
