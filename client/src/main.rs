//! The `fedsec-client` binary: the participant's command line.
//!
//! A thin dispatcher: each subcommand lives in its own module under
//! `src/cli/` (`synth`, `sessions`, `score`, `run`, `ledger`, `model`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// fedsec client: local data tools and the federated participant.
#[derive(Debug, Parser)]
#[command(name = "fedsec-client", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write synthetic tenants: one access log and one labels file each.
    Synth(cli::synth::SynthArgs),
    /// Sessionize an access log and write per-session features as CSV.
    Sessions(cli::sessions::SessionsArgs),
    /// Score a log's sessions with a model; print the most bot-like with reasons.
    Score(cli::score::ScoreArgs),
    /// Weak (silver) labels for a log from rules and imported outcomes, with
    /// per-rule coverage and abstention statistics.
    Label(cli::label::LabelArgs),
    /// Run the federated participant (config: client.toml).
    Run(cli::run::RunArgs),
    /// Print the tenant's own privacy ledger: rounds joined, ε by PLD and RDP.
    Ledger(cli::ledger::LedgerArgs),
    /// Global models: `model pull` downloads and verifies one.
    Model {
        #[command(subcommand)]
        command: cli::model::ModelCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing();
    let result = match cli.command {
        Command::Synth(args) => cli::synth::run(args),
        Command::Sessions(args) => cli::sessions::run(args),
        Command::Score(args) => cli::score::run(args),
        Command::Label(args) => cli::label::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Ledger(args) => cli::ledger::run(args),
        Command::Model { command } => cli::model::run(command),
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
