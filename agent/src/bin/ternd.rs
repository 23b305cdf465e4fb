//! `ternd`: the tern node agent. `ternd --config FILE` peers over BGP, announces this node's
//! blocks, programs the routes it learns into the kernel, tagged `proto bird`, and serves the
//! control API on its unix socket (and over TCP with mutual TLS when configured).

use std::path::PathBuf;
use std::process::ExitCode;

use tern_agent::agent::Agent;
use tern_agent::api::Server;
use tern_agent::config::Config;

const USAGE: &str = "usage: ternd --config FILE   (see agent/examples/ternd.yaml)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config_path = args.next().map(PathBuf::from),
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--version" | "-V" => {
                println!("ternd {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("ternd: unknown argument {other:?}; {USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(config_path) = config_path else {
        eprintln!("ternd: no configuration given; {USAGE}");
        return ExitCode::from(2);
    };
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
    let result = runtime.block_on(async move {
        let agent = Agent::start(config.clone()).await?;
        let api = Server::start(agent.handle(), &config).await?;
        let result = agent.run(config_path).await;
        api.stop().await;
        result
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format.as_deref() == Some("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
