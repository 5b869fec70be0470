//! `fedsec-coordinator certs init`: a development PKI in a directory.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fedsec_proto::devca::{DevPkiOptions, write_dev_pki};

use super::CliError;

/// Certificate commands.
#[derive(Debug, Subcommand)]
pub(crate) enum CertsCommand {
    /// Write a dev CA, a server certificate, N client certificates and an
    /// admin certificate (private keys mode 0600) plus manifest.json.
    Init(InitArgs),
}

/// Arguments of `certs init`.
#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Number of client certificates.
    #[arg(long, default_value_t = 3)]
    clients: usize,
    /// Tenant ids, comma separated; clients are assigned round-robin.
    /// Default: one tenant per client (tenant-0001, ...).
    #[arg(long, value_delimiter = ',')]
    tenants: Vec<String>,
    /// Name of the admin identity.
    #[arg(long, default_value = "admin")]
    admin_name: String,
    /// DNS names and IP addresses of the server certificate (repeatable).
    #[arg(long = "server-name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
    server_names: Vec<String>,
    /// Overwrite an existing PKI in the directory.
    #[arg(long)]
    force: bool,
}

/// Runs a certs subcommand.
pub(crate) fn run(cmd: CertsCommand) -> Result<(), CliError> {
    match cmd {
        CertsCommand::Init(args) => init(args),
    }
}

fn init(args: InitArgs) -> Result<(), CliError> {
    for t in &args.tenants {
        if !fedsec_proto::tls::is_valid_id(t) {
            return Err(format!(
                "--tenants: {t:?} is not a valid id ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})"
            )
            .into());
        }
    }
    if !fedsec_proto::tls::is_valid_id(&args.admin_name) {
        return Err(format!("--admin-name: {:?} is not a valid id", args.admin_name).into());
    }
    let out = std::path::absolute(&args.out)?;
    let manifest = write_dev_pki(
        &out,
        &DevPkiOptions {
            clients: args.clients,
            tenants: args.tenants,
            admin_name: args.admin_name,
            server_names: args.server_names,
            force: args.force,
        },
    )?;
    println!(
        "wrote a development PKI to {}: CA, server certificate, {} client certificate(s), admin {:?}; index in manifest.json",
        out.display(),
        manifest.clients.len(),
        manifest.admin_name
    );
    Ok(())
}
