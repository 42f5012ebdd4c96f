//! The operator's entry point. The controller itself is still to be written; until then the
//! binary only answers `--version`, and says so instead of pretending to run.

use std::process::ExitCode;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-V") => {
            println!("bitcoin-operator {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "bitcoin-operator {}: the controller is not implemented yet; only --version works",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
