//! Runs one simulation and prints its statistics and trace tail:
//! `cargo run --release -p raftkv-sim --example one_run -- SEED [NODES] [FAULTS] [STEPS] [TRACE_LINES]`.

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let argument = |position: usize| arguments.get(position).map(String::as_str);
    let mut options = sim::Options::default();
    options.seed = argument(0).and_then(|text| text.parse().ok()).unwrap_or(1);
    options.nodes = argument(1).and_then(|text| text.parse().ok()).unwrap_or(5);
    options.faults = argument(2).map(|text| sim::Faults::parse(text).expect("faults")).unwrap_or_else(sim::Faults::all);
    options.steps_max = argument(3).and_then(|text| text.parse().ok()).unwrap_or(options.steps_max);
    options.trace_lines_max = argument(4).and_then(|text| text.parse().ok()).unwrap_or(200);
    let result = sim::run(&options);
    for line in &result.trace_tail {
        println!("{line}");
    }
    println!("{:?}", result.statistics);
    println!("steps={} commits={} acknowledged={}", result.steps, result.commits, result.acknowledged);
    for violation in &result.violations {
        println!("VIOLATION {violation:?}");
    }
}
