//! Runs a campaign of seeds and prints each failing run and a summary:
//! `cargo run --release -p raftkv-server-sim --example campaign -- RUNS START_SEED [NODES [SABOTAGE]]`
//! (NODES 0: 3 and 5 alternating; SABOTAGE a name from the sabotage table).

fn main() {
    let sabotage_name = std::env::args().nth(4).unwrap_or_else(|| "none".into());
    let sabotage = std::iter::once(server_sim::Sabotage::None)
        .chain(server_sim::Sabotage::ALL)
        .find(|sabotage| sabotage.name() == sabotage_name)
        .expect("a sabotage name");
    let arguments: Vec<u64> = std::env::args().skip(1).take(3).map(|text| text.parse().expect("a number")).collect();
    let runs = arguments.first().copied().unwrap_or(20);
    let start_seed = arguments.get(1).copied().unwrap_or(1);
    let nodes = arguments.get(2).copied().unwrap_or(0) as usize;
    let started = std::time::Instant::now();
    let (mut violations, mut steps, mut acknowledged) = (0, 0, 0);
    for index in 0..runs {
        let options = server_sim::campaign_options(start_seed, index, nodes, sabotage);
        let result = server_sim::run(&options);
        steps += result.steps;
        acknowledged += result.acknowledged;
        if !result.violations.is_empty() {
            violations += 1;
            println!("{}", result.describe());
        }
        if index < 3 {
            println!(
                "seed {}: {:?} steps {} acknowledged {}",
                options.seed, result.statistics, result.steps, result.acknowledged
            );
        }
    }
    let elapsed_ms = started.elapsed().as_millis();
    println!("runs={runs} violations={violations} steps={steps} acknowledged={acknowledged} elapsed_ms={elapsed_ms}");
}
