//! Replays every seed in `tests/regression_seeds.txt` (seeds that once exposed a bug in
//! the core or the simulator) and asserts that no invariant breaks.

use sim::{Faults, Options, Variation};

/// One line of the seeds file.
struct Regression {
    seed: u64,
    nodes: usize,
    faults: Faults,
    comment: String,
}

fn parse(line: &str) -> Option<Result<Regression, String>> {
    let (fields, comment) = line.split_once('#').unwrap_or((line, ""));
    let fields: Vec<&str> = fields.split_whitespace().collect();
    if fields.is_empty() {
        return None;
    }
    let parsed = (|| {
        let seed = fields[0].parse().map_err(|error| format!("seed {:?}: {error}", fields[0]))?;
        let nodes =
            fields.get(1).map_or(Ok(5), |text| text.parse().map_err(|error| format!("nodes {text:?}: {error}")))?;
        let faults = Faults::parse(fields.get(2).copied().unwrap_or("all"))?;
        Ok(Regression { seed, nodes, faults, comment: comment.trim().to_string() })
    })();
    Some(parsed)
}

#[test]
fn regression_seeds_stay_fixed() {
    let text = include_str!("regression_seeds.txt");
    let mut replayed = 0;
    for (number, line) in text.lines().enumerate() {
        let Some(parsed) = parse(line) else { continue };
        let regression = parsed.unwrap_or_else(|reason| panic!("regression_seeds.txt line {}: {reason}", number + 1));
        // Replayed with the settings they were found with (Classic) and with the drawn ones.
        for variation in [Variation::Classic, Variation::Drawn] {
            let options = Options {
                seed: regression.seed,
                nodes: regression.nodes,
                faults: regression.faults,
                variation,
                ..Options::default()
            };
            replay(&regression, &options);
        }
        replayed += 1;
    }
    assert!(replayed > 0, "regression_seeds.txt lists no seed");
}

fn replay(regression: &Regression, options: &Options) {
    let result = sim::run(options);
    assert!(
            result.violations.is_empty(),
            "regression seed {} ({}) broke again: {:?}\nreplay: cargo run --release -- sim --runs 1 --start-seed {} --nodes {} --faults {}\n{}",
            regression.seed,
            regression.comment,
            result.violations,
            regression.seed,
            regression.nodes,
            regression.faults,
            result.trace_tail.join("\n")
        );
}

#[test]
fn parser_reads_lines_and_skips_comments() {
    assert!(parse("# only a comment").is_none());
    assert!(parse("   ").is_none());
    let regression = parse("42 3 loss,crash  # why").expect("a line").expect("valid");
    assert_eq!((regression.seed, regression.nodes, regression.comment.as_str()), (42, 3, "why"));
    assert!(regression.faults.loss && regression.faults.crash && !regression.faults.torn);
    assert!(parse("x 3").expect("a line").is_err());
}
