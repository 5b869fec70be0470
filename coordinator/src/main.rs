//! The `fedsec-coordinator` binary: serve DP-FedAvg jobs, administer them,
//! plan privacy budgets, create a development PKI, at-rest key files and
//! bearer tokens.
//!
//! Each subcommand lives in its own module under `src/cli/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// fedsec coordinator: privacy-preserving federated training of bot-abuse detectors.
#[derive(Debug, Parser)]
#[command(name = "fedsec-coordinator", version, about, long_about = None)]
struct Cli {
    /// Log format on stderr (the level comes from RUST_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = cli::logging::LogFormat::Human)]
    log_format: cli::logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the coordinator until SIGINT/SIGTERM.
    Serve(cli::serve::ServeArgs),
    /// Administer a running coordinator over mutual TLS (admin certificate).
    Admin(cli::admin::AdminArgs),
    /// Create development certificates (CA, server, clients, admin).
    #[command(subcommand)]
    Certs(cli::certs::CertsCommand),
    /// Plan privacy budgets: ε for a job, noise for a target ε, rounds for a noise level.
    #[command(subcommand)]
    Budget(cli::budget::BudgetCommand),
    /// Create the key file for encryption at rest.
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Issue bearer tokens from a local key (the embedded default for `[auth.tokens]`).
    #[command(subcommand)]
    Tokens(cli::tokens::TokensCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::logging::init(cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(args),
        Command::Admin(args) => cli::admin::run(args),
        Command::Certs(cmd) => cli::certs::run(cmd),
        Command::Budget(cmd) => cli::budget::run(cmd),
        Command::Keys(cmd) => cli::keys::run(cmd),
        Command::Tokens(cmd) => cli::tokens::run(cmd),
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
