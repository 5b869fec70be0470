//! `fedsec-coordinator keys generate`: a key file for encryption at rest.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fedsec_coordinator::store::seal::AtRestKey;

use super::CliError;

/// Key commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Write a random 256-bit key for `[storage] encryption_key_file`
    /// (64 hex digits and a newline, mode 0600).
    Generate(GenerateArgs),
}

/// Arguments of `keys generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The key file to create.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite an existing file (data sealed with the old key becomes unreadable).
    #[arg(long)]
    force: bool,
}

/// Runs a keys subcommand.
pub(crate) fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Generate(args) => {
            AtRestKey::generate_file(&args.out, args.force)?;
            // Check that what was written loads (permissions, format).
            AtRestKey::load(&args.out)?;
            println!(
                "wrote a 256-bit encryption key to {} (mode 0600); set \
                 [storage] encryption_key_file to it and keep a copy apart from the data directory",
                args.out.display()
            );
            Ok(())
        }
    }
}
