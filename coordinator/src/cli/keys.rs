//! `fedsec-coordinator keys generate`: a key file for encryption at rest,
//! or (`--signing`) the Ed25519 release signing key and its public key.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fedsec_coordinator::store::seal::AtRestKey;

use super::CliError;

/// Key commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Write a random 256-bit key for `[storage] encryption_key_file`
    /// (64 hex digits and a newline, mode 0600); with `--signing`, an
    /// Ed25519 release signing key for `[signing] key_file` (PKCS#8 PEM,
    /// mode 0600) and its public key next to it (`<stem>.pub.pem`).
    Generate(GenerateArgs),
}

/// Arguments of `keys generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// The key file to create.
    #[arg(long)]
    out: PathBuf,
    /// Overwrite an existing file (data sealed with the old key becomes
    /// unreadable; clients that trust an old release key refuse new releases).
    #[arg(long)]
    force: bool,
    /// Write an Ed25519 release signing key instead of an encryption key.
    #[arg(long)]
    signing: bool,
}

/// Runs a keys subcommand.
pub(crate) fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Generate(args) if args.signing => {
            use fedsec_proto::release::ReleaseKey;
            let key = ReleaseKey::generate();
            let public = key.write(&args.out, args.force)?;
            // Check that what was written loads (permissions, format).
            let id = ReleaseKey::load(&args.out)?.public().key_id();
            println!(
                "wrote Ed25519 release signing key {id} to {} (mode 0600) and its public key to {}; \
                 set [signing] key_file to the key, ship the public key with the CA bundle and \
                 name it in each client's release_public_key",
                args.out.display(),
                public.display()
            );
            Ok(())
        }
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
