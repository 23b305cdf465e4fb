//! `tern-lab`: build, inspect and tear down labs from containerlab-format topology files, on
//! network namespaces (see `e2e/README.md`).
//!
//! ```text
//! tern-lab up FILE                       build the lab (a stale one of that name is removed first)
//! tern-lab down FILE|NAME                tear it down
//! tern-lab status [FILE|NAME]            what runs (all labs when none is named)
//! tern-lab exec [-t FILE|NAME] NODE[/POD] CMD...   run CMD inside a node or pod
//! ```

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tern_e2e::Lab;

#[derive(Parser)]
#[command(
    name = "tern-lab",
    version,
    about = "containerlab-format labs on network namespaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Build the lab a topology file describes and leave it running.
    Up {
        /// The topology file (`*.clab.yml`).
        file: String,
    },
    /// Tear a lab down: stop its daemons, delete its namespaces.
    Down {
        /// The topology file or the lab name.
        lab: String,
    },
    /// Show a lab's nodes, namespaces and daemons (every lab when none is named).
    Status {
        /// The topology file or the lab name.
        lab: Option<String>,
    },
    /// Run a command inside a node (`vtysh` and `birdc` reach the node's own daemon) or a pod
    /// (`NODE/POD`).
    Exec {
        /// The topology file or the lab name (optional when a single lab is up).
        #[arg(short = 't', long = "topo")]
        lab: Option<String>,
        /// The node, or `node/pod`.
        node: String,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tern-lab: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Action::Up { file } => {
            let lab = Lab::up(&file).with_context(|| format!("cannot bring up {file}"))?;
            let name = lab.name().to_string();
            lab.detach();
            print!("{}", Lab::status(&name)?);
            println!("tear it down with: tern-lab down {name}");
        }
        Action::Down { lab } => {
            let removed =
                Lab::down_named(&lab).with_context(|| format!("cannot tear down {lab}"))?;
            if removed.is_empty() {
                println!("nothing to remove for {lab}");
            } else {
                println!("removed {}", removed.join(" "));
            }
        }
        Action::Status { lab } => {
            let labs = match lab {
                Some(lab) => vec![lab],
                None => Lab::list()?,
            };
            if labs.is_empty() {
                println!("no lab is up");
            }
            for lab in labs {
                print!("{}", Lab::status(&lab)?);
            }
        }
        Action::Exec { lab, node, command } => {
            let lab = match lab {
                Some(lab) => lab,
                None => match Lab::list()?.as_slice() {
                    [only] => only.clone(),
                    [] => bail!("no lab is up"),
                    many => bail!(
                        "several labs are up ({}): pick one with -t",
                        many.join(", ")
                    ),
                },
            };
            let lab = Lab::attach(&lab)?;
            let status = lab
                .command(&node, &command)?
                .status()
                .with_context(|| format!("cannot run {command:?}"))?;
            return Ok(match status.code() {
                Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                None => ExitCode::FAILURE,
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
