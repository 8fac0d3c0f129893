//! Seeds that found something, kept as regression tests.

use server_sim::{run, Options, Sabotage};

/// (seed, members, what it found).
const REGRESSION_SEEDS: [(u64, usize, &str); 1] = [(
    204_033,
    5,
    "a duplicated forwarded proposal applied a compare-and-set twice (the network no longer duplicates proposals)",
)];

#[test]
fn regression_seeds_pass() {
    for (seed, nodes, found) in REGRESSION_SEEDS {
        let result = run(&Options { nodes, seed, sabotage: Sabotage::None, ..Options::default() });
        assert!(result.violations.is_empty(), "seed {seed} ({found}): {}", result.describe());
    }
}
