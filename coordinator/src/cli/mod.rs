//! Subcommands of the `fedsec-coordinator` binary, one module each.

pub(crate) mod admin;
pub(crate) mod admin_view;
pub(crate) mod audit;
pub(crate) mod budget;
pub(crate) mod certs;
pub(crate) mod incident;
pub(crate) mod keys;
pub(crate) mod logging;
pub(crate) mod serve;
pub(crate) mod tokens;

/// Error type of CLI subcommands: any error with a readable message.
pub(crate) type CliError = Box<dyn std::error::Error + Send + Sync>;
