//! `ternctl`: the command-line client of ternd's control API, as a library so that its parts
//! can be tested; `src/bin/ternctl.rs` only parses the command line and calls [`run`].
//!
//! It talks to ternd over its unix socket (`--socket`, default `/var/run/tern/tern.sock`) or, with
//! `--address https://HOST:PORT --cert --key --ca`, over TCP with mutual TLS. Every command
//! prints a table by default, or JSON or YAML with `-o`. `ternctl node status` prints what
//! `calicoctl node status` prints, so runbooks keep working.
//!
//! Exit codes: 0 on success, 1 when ternd cannot be reached or refuses the request, 2 for a
//! command line clap refuses.
//!
//! This file holds the command line (clap) and [`run`]; `client` connects, `output` renders, and
//! each command group has its file (`node`, `peers`, `routes`, `blocks`, `watch`, `status`,
//! `completions`).

mod blocks;
mod client;
mod completions;
mod error;
mod node;
mod output;
mod peers;
mod routes;
mod status;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use error::Error;

use blocks::BlocksCommand;
use node::NodeCommand;
use output::Output;
use peers::PeersCommand;
use routes::Family;

/// Where ternd serves its API unless `--socket` or `TERN_SOCKET` says otherwise.
const DEFAULT_SOCKET: &str = "/var/run/tern/tern.sock";

/// ternctl's command line.
#[derive(Debug, Parser)]
#[command(
    name = "ternctl",
    version,
    about = "Inspect and control ternd, the tern node agent"
)]
pub struct Cli {
    /// ternd's API socket.
    #[arg(long, global = true, env = "TERN_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Reach ternd over TCP with mutual TLS instead of the socket (`https://HOST:PORT`).
    #[arg(long, global = true, requires_all = ["cert", "key", "ca"])]
    address: Option<String>,
    /// Our client certificate (PEM), for --address.
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// Our client key (PEM), for --address.
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    /// The CA that signed ternd's certificate (PEM), for --address.
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// The name to check in ternd's certificate; the host of --address by default.
    #[arg(long, global = true)]
    server_name: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// This node (`ternctl node status`, as calicoctl's).
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// ternd's version, identity, uptime, readiness and data path.
    Status,
    /// BGP peers: list them (the default), or add, update, remove or reset one.
    Peers {
        #[command(subcommand)]
        command: Option<PeersCommand>,
    },
    /// Routes of the Loc-RIB with their ECMP set and kernel state.
    Routes {
        /// Only routes inside this prefix; an address without a length gives the routes that
        /// contain it.
        prefix: Option<String>,
        /// Only routes with a path from this peer.
        #[arg(long)]
        peer: Option<String>,
        /// Only routes of this family.
        #[arg(long, value_enum)]
        family: Option<Family>,
        /// At most this many routes.
        #[arg(long)]
        limit: Option<u32>,
    },
    /// This node's address blocks.
    Blocks {
        #[command(subcommand)]
        command: BlocksCommand,
    },
    /// Streams peer state and route changes until interrupted.
    Watch {
        /// Start with the whole table and every peer's state.
        #[arg(long)]
        initial: bool,
        /// Leave out route changes.
        #[arg(long)]
        no_routes: bool,
        /// Leave out peer state changes.
        #[arg(long)]
        no_peers: bool,
    },
    /// Prints a shell completion script (`ternctl completions bash > /etc/bash_completion.d/ternctl`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Runs the command `cli` asks for: prints its answer on stdout, or returns why it failed (the
/// caller prints the error as one line on stderr and exits with 1).
pub fn run(cli: Cli) -> Result<(), Error> {
    if let Command::Completions { shell } = cli.command {
        completions::print(shell);
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(execute(cli))
}

/// Connects to ternd and runs a command against it.
async fn execute(cli: Cli) -> Result<(), Error> {
    let channel = client::connect(&cli).await?;
    let output = cli.output;
    match cli.command {
        Command::Completions { .. } => Ok(()),
        Command::Node {
            command: NodeCommand::Status,
        } => node::status(channel, output).await,
        Command::Status => status::show(channel, output).await,
        Command::Peers { command } => peers::run(channel, output, command).await,
        Command::Routes {
            prefix,
            peer,
            family,
            limit,
        } => {
            routes::list(
                channel,
                output,
                routes::request(prefix, peer, family, limit),
            )
            .await
        }
        Command::Blocks { command } => blocks::run(channel, output, command).await,
        Command::Watch {
            initial,
            no_routes,
            no_peers,
        } => {
            let request = tern_proto::v1::WatchRequest {
                initial_state: initial,
                no_peers,
                no_routes,
            };
            watch::follow(channel, output, request).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_peer_address_is_not_taken_for_the_tcp_address_of_ternd() {
        for argv in [
            &["ternctl", "peers", "add", "10.0.5.1", "--as", "65000"][..],
            &["ternctl", "peers", "update", "10.0.5.1", "--port", "1179"],
            &["ternctl", "peers", "remove", "10.0.5.1"],
            &["ternctl", "peers", "reset", "10.0.5.1", "--hard"],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            assert_eq!(cli.address, None, "{argv:?}");
            let Command::Peers {
                command: Some(command),
            } = cli.command
            else {
                panic!("{argv:?} is not a peers command");
            };
            let address = match command {
                PeersCommand::Add(args) | PeersCommand::Update(args) => args.address,
                PeersCommand::Remove { address } | PeersCommand::Reset { address, .. } => address,
                PeersCommand::List => panic!("{argv:?} parsed as a listing"),
            };
            assert_eq!(address, "10.0.5.1", "{argv:?}");
        }
    }
}
