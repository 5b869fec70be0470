//! The `fedsec-coordinator` binary: serve DP-FedAvg jobs, administer them,
//! plan privacy budgets and create a development PKI.
//!
//! Each subcommand lives in its own module under `src/cli/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// fedsec coordinator: privacy-preserving federated training of bot-abuse detectors.
#[derive(Debug, Parser)]
#[command(name = "fedsec-coordinator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create development certificates (CA, server, clients, admin).
    #[command(subcommand)]
    Certs(cli::certs::CertsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(cmd) => cli::certs::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
