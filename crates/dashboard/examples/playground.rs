//! Runs the playground on its own: `cargo run -p raftkv-dashboard --example playground -- --seed 7`
//! (the same as `raftkv playground`).

use clap::Parser;

/// The playground's flags.
#[derive(Parser)]
struct Arguments {
    #[command(flatten)]
    playground: dashboard::PlaygroundArgs,
}

fn main() -> anyhow::Result<()> {
    dashboard::run_playground(Arguments::parse().playground)
}
