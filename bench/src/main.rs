//! tern-bench: how fast a BGP speaker passes a full table from one eBGP peer to another, and how
//! much memory it takes doing so, for tern's speaker, BIRD 2, FRR and GoBGP in the same lab.
//!
//! `run` drives everything; `inject`, `monitor` and `relay` are the parts it starts inside the
//! lab's network namespaces (see `bench/README.md`).

mod inject;
mod monitor;
mod relay;
mod run;
mod session;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Route propagation benchmark: tern, BIRD, FRR and GoBGP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the lab, run every device, print the table (needs root).
    Run(run::Args),
    /// Announce N /24s to the device under test.
    Inject(inject::Args),
    /// Count the /24s the device under test passes on.
    Monitor(monitor::Args),
    /// Relay TCP byte for byte: the harness's own floor.
    Relay(relay::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One thread each: the injector, the monitor and the relay must leave the CPUs to the
    // device under test, and the driver mostly waits.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Inject(args) => inject::run(args).await,
            Command::Monitor(args) => monitor::run(args).await,
            Command::Relay(args) => relay::run(args).await,
        }
    })
}
