//! `fedsec-client run --config client.toml`: the participant as a service.
//!
//! Checks the connection once at start (a certificate problem is an error
//! with a clear message, not an endless retry), then runs the protocol loop
//! until Ctrl-C / SIGTERM or, for a configured job, until that job finishes.
//! Events are logged to stderr.

use std::path::PathBuf;

use clap::Args;
use fedsec_client::config::ClientConfig;
use fedsec_client::{Error, RunOutcome};

use super::{CliError, runtime};

/// Arguments of `run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The client's configuration file (TOML; keys in the crate README).
    #[arg(long)]
    config: PathBuf,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested");
}

/// Runs `run`.
pub(crate) fn run(args: RunArgs) -> Result<(), CliError> {
    let config = ClientConfig::load(&args.config)?;
    let mut participant = config
        .builder()
        .build()
        .map_err(|e| CliError::from(format!("{}: {e}", args.config.display())))?;
    runtime()?.block_on(async move {
        match participant.register().await {
            Ok(r) => tracing::info!(
                tenant = %r.tenant_id,
                client = %r.client_id,
                endpoint = %config.endpoint,
                job = config.job.as_deref().unwrap_or("any"),
                "registered"
            ),
            Err(Error::Rpc(e))
                if e.connection
                    .as_ref()
                    .is_some_and(|c| c.is_certificate_problem()) =>
            {
                return Err(CliError::from(e.message));
            }
            Err(Error::Rpc(e)) => {
                tracing::warn!(error = %e, "coordinator not reachable yet; will keep trying");
            }
            Err(e) => return Err(e.into()),
        }
        let outcome = participant.run(shutdown_signal()).await?;
        match outcome {
            RunOutcome::Shutdown => tracing::info!("stopped"),
            RunOutcome::JobFinished {
                job_id,
                state,
                final_version,
            } => tracing::info!(job = %job_id, state, final_version, "job finished"),
        }
        Ok(())
    })
}
