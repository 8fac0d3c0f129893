//! Shows which invariants catch each deliberate driver bug:
//! `cargo run --release -p raftkv-sim --example sabotage`.

use sim::{Faults, Options, Sabotage};

fn main() {
    for (sabotage, faults) in
        [(Sabotage::ForgetVote, "crash,partition,loss"), (Sabotage::AcknowledgeBeforeSync, "crash,partition")]
    {
        let faults = Faults::parse(faults).expect("known faults");
        let mut caught = std::collections::BTreeMap::<String, u64>::new();
        let runs = 300;
        for seed in 0..runs {
            let result = sim::run(&Options { nodes: 3, seed, faults, sabotage, ..Options::default() });
            if let Some(violation) = result.violations.first() {
                *caught.entry(violation.invariant.clone()).or_default() += 1;
            }
        }
        println!("{sabotage:?}: {runs} runs, first violations by invariant: {caught:?}");
    }
}
