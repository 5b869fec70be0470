//! `fedsec-coordinator serve --config FILE`: run the coordinator until
//! SIGINT or SIGTERM, then shut down gracefully (an open round is abandoned,
//! nothing charged).

use std::path::PathBuf;

use clap::Args;
use fedsec_coordinator::{Coordinator, CoordinatorConfig};

use super::CliError;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML; see the crate README for every key).
    #[arg(long, short, env = "FEDSEC_CONFIG")]
    config: PathBuf,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
}

/// Runs `serve`.
pub(crate) fn run(args: ServeArgs) -> Result<(), CliError> {
    let config = CoordinatorConfig::load(&args.config)?;
    if args.check {
        println!(
            "{}: valid ({} job(s) defined)",
            args.config.display(),
            config.jobs.len()
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let running = Coordinator::start(config).await?;
        let signal = wait_for_signal().await?;
        tracing::info!(signal, "stopping");
        running.shutdown().await?;
        Ok(())
    })
}

async fn wait_for_signal() -> Result<&'static str, CliError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("Ctrl-C")
    }
}
