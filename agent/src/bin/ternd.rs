//! `ternd`: the tern node agent. `ternd --config FILE` peers over BGP, announces this node's
//! blocks, programs the routes it learns into the kernel, tagged `proto bird`, and serves the
//! control API on its unix socket (and over TCP with mutual TLS when configured).
//! `ternd check-config FILE` checks a file and says what ternd would do with it, touching
//! nothing.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tern_agent::agent::Agent;
use tern_agent::api::Server;
use tern_agent::config::Config;

/// The tern node agent: BGP for a bare-metal Kubernetes node, the Calico way.
#[derive(Debug, Parser)]
#[command(
    name = "ternd",
    version,
    about = "The tern node agent: BGP for a bare-metal Kubernetes node, the Calico way.",
    after_help = "See agent/examples/ternd.yaml."
)]
struct Args {
    /// The configuration file (YAML, Calico's field names).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Action>,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Check a configuration file and print the peers, pools, blocks and data path ternd would
    /// use, without touching anything (a dry run before a rollout).
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match (args.command, args.config) {
        (Some(Action::CheckConfig { file }), _) => check_config(file),
        (None, Some(config)) => run(config),
        (None, None) => {
            eprintln!("ternd: no configuration given: ternd --config FILE (see ternd --help)");
            ExitCode::from(2)
        }
    }
}

fn check_config(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ternd: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    match tern_agent::check::describe(&config) {
        Ok(text) => {
            println!("{}: valid\n", path.display());
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ternd: invalid configuration: {}: {error}", path.display());
            ExitCode::from(2)
        }
    }
}

fn run(config_path: PathBuf) -> ExitCode {
    let config = match Config::load(&config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ternd: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ternd: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        let agent = Agent::start(config.clone()).await?;
        let api = Server::start(agent.handle(), &config).await?;
        let result = agent.run(config_path).await;
        api.stop().await;
        Ok(result?)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "ternd stopped");
            eprintln!("ternd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let level = config.log.level.clone().unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = tern_agent::logs::colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if config.log.format.as_deref() == Some("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
