//! `fedsec-client model pull`: download a published model version, verify
//! it (release signature, digest, spec, finite values, privacy receipt) and
//! write it as the detector's model file, ready for `fedsec-client score
//! --model`; `model verify`: check a model file's release signature offline.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use fedsec_client::GlobalModel;
use fedsec_client::config::ClientConfig;
use fedsec_client::rpc::{DownloadError, Rpc};
use fedsec_client::state::write_atomic;
use fedsec_proto::release::ReleasePublicKey;
use fedsec_proto::tls::ClientTls;

use super::{CliError, runtime};

/// `model` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelCommand {
    /// Download and verify a model version; write it as a safetensors file
    /// (with its release signature, for `model verify`).
    Pull(PullArgs),
    /// Check a model file's release signature offline: the coordinator's
    /// safetensors export or a `model pull` file. Exits non-zero if the
    /// file is unsigned, changed in any byte that matters, or signed by
    /// another key.
    Verify(VerifyArgs),
}

/// Arguments of `model verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The model file.
    file: PathBuf,
    /// The coordinator's release public key (SPKI PEM, `release-signing.pub.pem`).
    #[arg(long)]
    public_key: PathBuf,
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
        ModelCommand::Verify(args) => verify(&args),
    }
}

fn verify(args: &VerifyArgs) -> Result<(), CliError> {
    let key = ReleasePublicKey::load(&args.public_key)?;
    let bytes = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let v = fedsec_client::release_file::verify_model_file(&bytes, &key)
        .map_err(|e| format!("{}: refused: {e}", args.file.display()))?;
    let summary = serde_json::json!({
        "verified": true,
        "file": args.file,
        "job": v.job_id,
        "version": v.version,
        "round": v.round,
        "spec": v.spec.to_string(),
        "signing_key_id": key.key_id(),
        "audit_head": hex::encode(v.audit_head),
    });
    println!("{summary}");
    Ok(())
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
        let key = config.release_public_key.as_ref().ok_or(
            "release_public_key is required in the config (the coordinator's release public key)",
        )?;
        let key = ReleasePublicKey::load(key)?;
        let key_id = key.key_id();
        let rpc = Rpc::new(tls, &config.endpoint, timeout)?
            .with_release_key(key)
            .with_bearer(fedsec_proto::bearer::BearerInterceptor::optional(
                config.auth.token_file.as_deref(),
            ));
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
        // The provenance note also carries what the signature covers, so
        // `model verify` can check the file offline.
        let mut file = model.to_model_file()?;
        let mut note: serde_json::Value = serde_json::from_str(&file.note)?;
        note["release"] = serde_json::to_value(fedsec_client::release_file::ReleaseRecord {
            receipt_json: d.receipt_json.clone(),
            signature: hex::encode(&d.signature),
            signing_key_id: key_id.clone(),
            audit_head: hex::encode(d.audit_head),
        })?;
        file.note = note.to_string();
        let bytes = file.to_bytes()?;
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
