//! `ternctl`: the tern command-line client (not built yet).

fn main() -> std::process::ExitCode {
    eprintln!("{}", tern_agent::NOT_BUILT_YET);
    std::process::ExitCode::from(2)
}
