use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use stagecoach::app::{self, Outside};
use stagecoach::cli::Cli;

fn main() -> ExitCode {
    let request = Cli::parse().into_request();
    let level = match (request.global.quiet, request.global.verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0 | 1) => tracing::Level::WARN,
        (false, _) => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();

    let env = |name: &str| std::env::var(name).ok();
    let outside = Outside { env: &env, cwd: std::env::current_dir().unwrap_or_else(|_| ".".into()) };
    let result = app::run(request, &outside, &mut std::io::stdout().lock());
    // Threads still holding temporary directories (a blocking clone when a signal came) end
    // with the process, without dropping them.
    stagecoach::files::remove_scratch_dirs();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
