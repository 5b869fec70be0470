//! `fedsec-coordinator admin ...`: the Admin API from the command line, over
//! mutual TLS with an admin certificate. Human-readable tables by default,
//! JSON with `--json`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fedsec_coordinator::JobSpec;
use fedsec_proto::bearer::BearerInterceptor;
use fedsec_proto::tls::{ClientTls, TlsFiles};
use fedsec_proto::v1::admin_client::AdminClient;
use fedsec_proto::v1::{
    ClientActionRequest, CreateJobRequest, ExportModelRequest, JobRef, ListAuditEventsRequest,
    ListClientsRequest, ListJobsRequest, RollbackModelRequest,
};
use serde_json::{Value, json};

use super::CliError;
use super::admin_view::{audit_json, eps, ledger_json, model_json, print_jobs};
pub(crate) use super::admin_view::{client_json, job_json};

/// Connection options and the admin command.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    /// Coordinator endpoint.
    #[arg(
        long,
        env = "FEDSEC_ENDPOINT",
        default_value = "https://localhost:7443"
    )]
    endpoint: String,
    /// CA certificate the coordinator's certificate chains to (required
    /// by every command but `audit verify` and `audit export`).
    #[arg(long, env = "FEDSEC_CA")]
    ca: Option<PathBuf>,
    /// Admin certificate (`spiffe://fedsec/admin/<name>`).
    #[arg(long, env = "FEDSEC_CERT")]
    cert: Option<PathBuf>,
    /// Admin private key.
    #[arg(long, env = "FEDSEC_KEY")]
    key: Option<PathBuf>,
    /// Bearer token file (coordinators with `[auth.tokens]`): sent as
    /// `authorization: Bearer <token>` on every call; re-read when it changes.
    #[arg(long, env = "FEDSEC_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

/// What to administer.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Jobs: list, get, create, pause, resume.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Clients: list, quarantine, release, revoke.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// The privacy ledger of a job, in commit order.
    Ledger {
        /// Job id.
        job: String,
    },
    /// Model versions: list, rollback, export.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Audit events, newest first; `audit verify` / `audit export` check
    /// and export the tamper-evident log of a data directory offline.
    Audit(super::audit::AuditArgs),
    /// Incident response: `incident report` writes a post-mortem draft.
    #[command(subcommand)]
    Incident(super::incident::IncidentCommand),
}

/// Job commands.
#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// All jobs, newest first.
    List,
    /// One job.
    Get {
        /// Job id.
        job: String,
    },
    /// Create a job from a TOML file holding one `[[jobs]]`-style table.
    Create {
        /// The job definition (same keys as a `[[jobs]]` entry of the config).
        #[arg(long)]
        file: PathBuf,
    },
    /// Stop opening rounds (an open round is abandoned, nothing charged).
    Pause {
        /// Job id.
        job: String,
    },
    /// Resume a paused job.
    Resume {
        /// Job id.
        job: String,
    },
}

/// Client commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ClientsCommand {
    /// Registered clients with their status and activity.
    List,
    /// Reject the client's calls and never select it, until released;
    /// with `--tenant`, contain the whole tenant: every identity of it
    /// quarantined and its registrations refused until released.
    Quarantine {
        /// Client id.
        #[arg(required_unless_present = "tenant", conflicts_with = "tenant")]
        client: Option<String>,
        /// Contain this tenant instead of one client.
        #[arg(long)]
        tenant: Option<String>,
        /// Why (kept in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a quarantine (with `--tenant`: a tenant's containment).
    Release {
        /// Client id.
        #[arg(required_unless_present = "tenant", conflicts_with = "tenant")]
        client: Option<String>,
        /// Release this contained tenant instead of one client.
        #[arg(long)]
        tenant: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Permanently refuse the client's identity.
    Revoke {
        /// Client id.
        client: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Model commands.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Published versions of a job, oldest first.
    List {
        /// Job id.
        job: String,
    },
    /// Make an earlier version current (privacy already spent stays
    /// spent): `rollback JOB VERSION`, or `rollback --before-client ID
    /// [--job JOB]` for the last version served before the client's first
    /// published contribution.
    Rollback {
        /// Job id.
        #[arg(required_unless_present = "before_client")]
        job: Option<String>,
        /// Version to make current.
        #[arg(
            required_unless_present = "before_client",
            conflicts_with = "before_client"
        )]
        version: Option<u64>,
        /// Roll back to before this client's first contribution.
        #[arg(long)]
        before_client: Option<String>,
        /// The job, with `--before-client` (optional if it contributed to one job only).
        #[arg(long = "job", conflicts_with = "job")]
        job_flag: Option<String>,
        /// Why (kept in the ledger and the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Write a version as a safetensors file (spec and receipt in its metadata).
    Export {
        /// Job id.
        job: String,
        /// Version; 0 means current.
        #[arg(long, default_value_t = 0)]
        version: u64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn print(json_out: bool, value: Value, human: impl FnOnce()) -> Result<(), CliError> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        human();
    }
    Ok(())
}

/// Runs an admin command.
pub(crate) fn run(args: AdminArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: AdminArgs) -> Result<(), CliError> {
    if let AdminCommand::Audit(a) = &args.command
        && let Some(offline) = &a.action
    {
        return super::audit::run_offline(offline, args.json);
    }
    let need = |v: &Option<PathBuf>, flag: &str| {
        v.clone()
            .ok_or_else(|| format!("{flag} is required (or its FEDSEC_* variable)"))
    };
    let tls = ClientTls::from_files(&TlsFiles {
        ca: need(&args.ca, "--ca")?,
        cert: need(&args.cert, "--cert")?,
        key: need(&args.key, "--key")?,
    })?;
    let mut admin = AdminClient::with_interceptor(
        tls.channel(&args.endpoint)?,
        BearerInterceptor::optional(args.token_file.as_deref()),
    );
    let j = args.json;
    match args.command {
        AdminCommand::Jobs(cmd) => match cmd {
            JobsCommand::List => {
                let jobs = admin.list_jobs(ListJobsRequest {}).await?.into_inner().jobs;
                print(j, Value::Array(jobs.iter().map(job_json).collect()), || {
                    print_jobs(&jobs);
                })
            }
            JobsCommand::Get { job } => {
                let r = admin.get_job(JobRef { job_id: job }).await?.into_inner();
                print(j, job_json(&r), || print_jobs(std::slice::from_ref(&r)))
            }
            JobsCommand::Create { file } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let mut spec: JobSpec =
                    toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
                spec.fill_defaults();
                let r = admin
                    .create_job(CreateJobRequest {
                        config: Some(spec.to_proto()),
                    })
                    .await?
                    .into_inner();
                print(j, job_json(&r), || {
                    println!("created job {}", r.job_id);
                    print_jobs(std::slice::from_ref(&r));
                })
            }
            JobsCommand::Pause { job } => {
                let r = admin.pause_job(JobRef { job_id: job }).await?.into_inner();
                print(j, job_json(&r), || print_jobs(std::slice::from_ref(&r)))
            }
            JobsCommand::Resume { job } => {
                let r = admin.resume_job(JobRef { job_id: job }).await?.into_inner();
                print(j, job_json(&r), || print_jobs(std::slice::from_ref(&r)))
            }
        },
        AdminCommand::Incident(cmd) => super::incident::run(&mut admin, cmd, j).await,
        AdminCommand::Clients(ClientsCommand::Quarantine {
            tenant: Some(t),
            reason,
            ..
        }) => super::incident::tenant(&mut admin, t, reason, true, j).await,
        AdminCommand::Clients(ClientsCommand::Release {
            tenant: Some(t),
            reason,
            ..
        }) => super::incident::tenant(&mut admin, t, reason, false, j).await,
        AdminCommand::Clients(cmd) => {
            let (clients, verb) = match cmd {
                ClientsCommand::List => (
                    admin
                        .list_clients(ListClientsRequest {})
                        .await?
                        .into_inner()
                        .clients,
                    None,
                ),
                ClientsCommand::Quarantine { client, reason, .. } => (
                    vec![
                        admin
                            .quarantine_client(ClientActionRequest {
                                client_id: client.unwrap_or_default(),
                                reason,
                            })
                            .await?
                            .into_inner(),
                    ],
                    Some("quarantined"),
                ),
                ClientsCommand::Release { client, reason, .. } => (
                    vec![
                        admin
                            .release_client(ClientActionRequest {
                                client_id: client.unwrap_or_default(),
                                reason,
                            })
                            .await?
                            .into_inner(),
                    ],
                    Some("released"),
                ),
                ClientsCommand::Revoke { client, reason } => (
                    vec![
                        admin
                            .revoke_client(ClientActionRequest {
                                client_id: client,
                                reason,
                            })
                            .await?
                            .into_inner(),
                    ],
                    Some("revoked"),
                ),
            };
            let value = match (verb, clients.as_slice()) {
                (Some(_), [one]) => client_json(one),
                _ => Value::Array(clients.iter().map(client_json).collect()),
            };
            print(j, value, || {
                if let Some(v) = verb {
                    println!("{v}");
                }
                println!(
                    "{:<24} {:<20} {:<12} {:>7} {:>15} {:<}",
                    "CLIENT", "TENANT", "STATUS", "ROUNDS", "LAST SEEN (ms)", "REASON"
                );
                for c in &clients {
                    println!(
                        "{:<24} {:<20} {:<12} {:>7} {:>15} {}",
                        c.client_id,
                        c.tenant_id,
                        client_json(c)["status"].as_str().unwrap_or("?"),
                        c.rounds_participated,
                        c.last_seen_unix_ms,
                        c.status_reason
                    );
                }
            })
        }
        AdminCommand::Ledger { job } => {
            let entries = admin
                .list_ledger(JobRef { job_id: job })
                .await?
                .into_inner()
                .entries;
            print(
                j,
                Value::Array(entries.iter().map(ledger_json).collect()),
                || {
                    println!(
                        "{:>4} {:<9} {:>6} {:>7} {:>8} {:>8} {:>8} {:>7} {:>8} {:>10} {:>10}",
                        "SEQ",
                        "KIND",
                        "ROUND",
                        "ATTEMPT",
                        "Q",
                        "Z",
                        "C",
                        "VERSION",
                        "REPORTS",
                        "EPS_PLD",
                        "EPS_RDP"
                    );
                    for e in &entries {
                        let c = e.charge.unwrap_or_default();
                        println!(
                            "{:>4} {:<9} {:>6} {:>7} {:>8.4} {:>8.4} {:>8.4} {:>7} {:>8} {:>10} {:>10}",
                            e.seq,
                            ledger_json(e)["kind"].as_str().unwrap_or("?"),
                            c.round,
                            e.attempt,
                            c.sampling_rate,
                            c.noise_multiplier,
                            c.clip_norm,
                            e.model_version,
                            e.participants,
                            eps(e.epsilon_pld),
                            eps(e.epsilon_rdp),
                        );
                        if !e.note.is_empty() {
                            println!("     {}", e.note);
                        }
                    }
                },
            )
        }
        AdminCommand::Models(cmd) => match cmd {
            ModelsCommand::List { job } => {
                let versions = admin
                    .list_models(JobRef { job_id: job })
                    .await?
                    .into_inner()
                    .versions;
                print(
                    j,
                    Value::Array(versions.iter().map(model_json).collect()),
                    || {
                        println!(
                            "{:>7} {:>6} {:>10} {:<8} SHA256",
                            "VERSION", "ROUND", "EPS_PLD", "CURRENT"
                        );
                        for v in &versions {
                            println!(
                                "{:>7} {:>6} {:>10} {:<8} {}",
                                v.version,
                                v.round,
                                eps(v.epsilon_pld),
                                if v.current { "*" } else { "" },
                                hex::encode(&v.sha256)
                            );
                        }
                    },
                )
            }
            ModelsCommand::Rollback {
                job,
                before_client: Some(client),
                job_flag,
                reason,
                ..
            } => {
                super::incident::rollback_before_client(
                    &mut admin,
                    job_flag.or(job),
                    client,
                    reason,
                    j,
                )
                .await
            }
            ModelsCommand::Rollback {
                job,
                version,
                reason,
                ..
            } => {
                let (job, version) = (job.unwrap_or_default(), version.unwrap_or_default());
                let r = admin
                    .rollback_model(RollbackModelRequest {
                        job_id: job,
                        version,
                        reason,
                        before_client_id: String::new(),
                    })
                    .await?
                    .into_inner();
                print(j, job_json(&r), || {
                    println!("rolled back to version {version}; privacy already spent stays spent");
                    print_jobs(std::slice::from_ref(&r));
                })
            }
            ModelsCommand::Export { job, version, out } => {
                let mut stream = admin
                    .export_model(ExportModelRequest {
                        job_id: job.clone(),
                        version,
                    })
                    .await?
                    .into_inner();
                let mut file = Vec::new();
                while let Some(chunk) = stream.message().await? {
                    file.extend_from_slice(&chunk.data);
                }
                std::fs::write(&out, &file)
                    .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
                print(
                    j,
                    json!({"job_id": job, "file": out.display().to_string(), "bytes": file.len()}),
                    || println!("wrote {} ({} bytes)", out.display(), file.len()),
                )
            }
        },
        AdminCommand::Audit(super::audit::AuditArgs { job, limit, .. }) => {
            let events = admin
                .list_audit_events(ListAuditEventsRequest {
                    limit,
                    job_id: job.unwrap_or_default(),
                })
                .await?
                .into_inner()
                .events;
            print(
                j,
                Value::Array(events.iter().map(audit_json).collect()),
                || {
                    for e in &events {
                        println!(
                            "{:>6} {:>14} {:<20} {:<16} {:<12} {}",
                            e.id, e.unix_ms, e.kind, e.job_id, e.client_id, e.detail
                        );
                    }
                },
            )
        }
    }
}
