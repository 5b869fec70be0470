//! `fedsec-client model pull`: download a published model version, verify
//! it (digest, spec, finite values, privacy receipt) and write it as the
//! detector's model file, ready for `fedsec-client score --model`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use fedsec_client::GlobalModel;
use fedsec_client::config::ClientConfig;
use fedsec_client::rpc::{DownloadError, Rpc};
use fedsec_client::state::write_atomic;
use fedsec_proto::tls::ClientTls;

use super::{CliError, runtime};

/// `model` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Download and verify a model version; write it as a safetensors file.
    Pull(PullArgs),
}

/// Arguments of `model pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The client's configuration file (endpoint and TLS identity).
    #[arg(long)]
    config: PathBuf,
    /// Job; default: the config's `job`.
    #[arg(long)]
    job: Option<String>,
    /// Version; 0 (default) is the current one.
    #[arg(long, default_value_t = 0)]
    version: u64,
    /// Output file (safetensors with the spec and provenance in its metadata).
    #[arg(long)]
    out: PathBuf,
}

/// Runs `model ...`.
pub(crate) fn run(command: ModelCommand) -> Result<(), CliError> {
    match command {
        ModelCommand::Pull(args) => pull(args),
    }
}

fn pull(args: PullArgs) -> Result<(), CliError> {
    let config = ClientConfig::load(&args.config)?;
    let job = args
        .job
        .or(config.job.clone())
        .ok_or("--job is required (the config sets no `job`)")?;
    let tls = ClientTls::from_files(&config.tls)?;
    let timeout = Duration::from_millis(config.timing.rpc_timeout_ms);
    runtime()?.block_on(async move {
        let rpc = Rpc::new(tls, &config.endpoint, timeout)?.with_bearer(
            fedsec_proto::bearer::BearerInterceptor::optional(config.auth.token_file.as_deref()),
        );
        // The coordinator serves registered clients only.
        rpc.register().await?;
        let d = match rpc.download_model(&job, args.version, None, None).await {
            Ok(Some(d)) => d,
            Ok(None) => return Err(CliError::from("empty download")),
            Err(DownloadError::Rpc(e)) => return Err(e.into()),
            Err(DownloadError::Rejected(m)) => {
                return Err(format!("model refused: {m}").into());
            }
        };
        if let Some(problem) = &d.receipt_problem {
            tracing::warn!(problem, "the model's privacy receipt is not usable");
        }
        let model = GlobalModel {
            job_id: d.job_id.clone(),
            version: d.version,
            round: d.round,
            spec: d.spec.clone(),
            weights: d.weights,
            epsilon: d.receipt.as_ref().map(|r| r.epsilon_pld),
        };
        let bytes = model.to_model_file()?.to_bytes()?;
        write_atomic(&args.out, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
        let summary = serde_json::json!({
            "job": d.job_id,
            "version": d.version,
            "round": d.round,
            "spec": d.spec.to_string(),
            "params": d.spec.num_params(),
            "epsilon_pld": d.receipt.as_ref().map(|r| r.epsilon_pld),
            "epsilon_rdp": d.receipt.as_ref().map(|r| r.epsilon_rdp),
            "delta": d.receipt.as_ref().map(|r| r.delta),
            "out": args.out,
        });
        println!("{summary}");
        Ok(())
    })
}
