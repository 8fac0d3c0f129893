//! `raftkv bench` as a standalone program, for trying the load generator without the
//! `raftkv` binary: `cargo run --release -p raftkv-bench --example bench -- --workload put`.

use clap::Parser;

/// raftkv's load generator over the etcd v3 API.
#[derive(Parser, Debug)]
#[command(name = "bench")]
struct Cli {
    #[command(flatten)]
    bench: bench::BenchArgs,
}

fn main() -> anyhow::Result<()> {
    bench::main_with_args(Cli::parse().bench)
}
