//! The incident-response admin commands: `incident report` (post-mortem
//! draft as Markdown + JSON), `clients quarantine|release --tenant` and
//! `models rollback --before-client`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use fedsec_coordinator::incident::{IncidentReport, markdown};
use fedsec_proto::bearer::BearerInterceptor;
use fedsec_proto::v1::admin_client::AdminClient;
use fedsec_proto::v1::{self, IncidentReportRequest, RollbackModelRequest, TenantActionRequest};
use serde_json::{Value, json};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CliError;

/// The Admin client the CLI uses.
pub(crate) type Admin = AdminClient<InterceptedService<Channel, BearerInterceptor>>;

/// Largest report accepted (the coordinator bounds its rows).
const MAX_REPORT_BYTES: usize = 64 << 20;

/// Incident commands.
#[derive(Debug, Subcommand)]
pub(crate) enum IncidentCommand {
    /// Write a post-mortem draft about one client identity or one tenant:
    /// `DIR/incident-<who>.md` and `DIR/incident-<who>.json` (rounds and
    /// versions it contributed to, screen scores, rejected uploads, admin
    /// actions, the last version before its first contribution, the privacy
    /// already spent, a timeline). Runs over the Admin RPC (admin read
    /// scope) against the live coordinator; audited as `incident_report`.
    Report {
        /// The client identity.
        #[arg(long, conflicts_with = "tenant", required_unless_present = "tenant")]
        client: Option<String>,
        /// The tenant (every identity of it).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this job.
        #[arg(long)]
        job: Option<String>,
        /// Directory the two files are written to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

fn write_file(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// Only characters safe in a file name (ids follow `[A-Za-z0-9._-]` anyway).
fn file_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs `incident report`.
pub(crate) async fn run(
    admin: &mut Admin,
    cmd: IncidentCommand,
    json_out: bool,
) -> Result<(), CliError> {
    let IncidentCommand::Report {
        client,
        tenant,
        job,
        out,
    } = cmd;
    let who = match (&client, &tenant) {
        (Some(c), _) => format!("client-{}", file_part(c)),
        (None, Some(t)) => format!("tenant-{}", file_part(t)),
        (None, None) => return Err("--client or --tenant is required".into()),
    };
    let response = admin
        .clone()
        .max_decoding_message_size(MAX_REPORT_BYTES)
        .incident_report(IncidentReportRequest {
            client_id: client.unwrap_or_default(),
            tenant_id: tenant.unwrap_or_default(),
            job_id: job.unwrap_or_default(),
        })
        .await?
        .into_inner();
    let report: IncidentReport = serde_json::from_str(&response.report_json)
        .map_err(|e| format!("the coordinator's report does not parse: {e}"))?;
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let md = out.join(format!("incident-{who}.md"));
    let js = out.join(format!("incident-{who}.json"));
    write_file(&js, &serde_json::to_string_pretty(&report)?)?;
    write_file(&md, &markdown::render(&report))?;
    if json_out {
        println!(
            "{}",
            json!({"markdown": md.display().to_string(), "json": js.display().to_string()})
        );
    } else {
        println!("wrote {} and {}", md.display(), js.display());
        for j in &report.jobs {
            println!(
                "  job {}: rounds {:?}, last version before the first contribution {}, current version {} {}",
                j.job_id,
                j.rounds_contributed,
                j.last_version_before
                    .map_or_else(|| "none".to_owned(), |v| v.to_string()),
                j.current_version,
                if j.current_carries {
                    "CARRIES its influence"
                } else {
                    "is free of it"
                }
            );
        }
        if !report.coverage.complete {
            println!(
                "  warning: the record of who took part is incomplete (retention); see the report"
            );
        }
    }
    Ok(())
}

fn containment_json(c: &v1::TenantContainment) -> Value {
    json!({
        "tenant_id": c.tenant_id,
        "contained": c.contained,
        "reason": c.reason,
        "since_unix_ms": c.since_unix_ms,
        "changed_client_ids": c.changed_client_ids,
        "clients": c.clients.iter().map(super::admin::client_json).collect::<Vec<_>>(),
    })
}

/// `clients quarantine --tenant` (`contain`) or `clients release --tenant`.
pub(crate) async fn tenant(
    admin: &mut Admin,
    tenant_id: String,
    reason: String,
    contain: bool,
    json_out: bool,
) -> Result<(), CliError> {
    let req = TenantActionRequest { tenant_id, reason };
    let r = if contain {
        admin.quarantine_tenant(req).await?
    } else {
        admin.release_tenant(req).await?
    }
    .into_inner();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&containment_json(&r))?);
        return Ok(());
    }
    if contain {
        println!(
            "tenant {} contained: {} identit(ies) quarantined ({}); registrations of the tenant are refused until `admin clients release --tenant {}`",
            r.tenant_id,
            r.changed_client_ids.len(),
            r.changed_client_ids.join(", "),
            r.tenant_id
        );
    } else {
        println!(
            "tenant {} released: {} identit(ies) active again ({})",
            r.tenant_id,
            r.changed_client_ids.len(),
            r.changed_client_ids.join(", ")
        );
    }
    for c in &r.clients {
        let v = super::admin::client_json(c);
        println!(
            "  {:<24} {:<12} {}",
            c.client_id,
            v["status"].as_str().unwrap_or("?"),
            c.status_reason
        );
    }
    Ok(())
}

/// `models rollback --before-client ID [--job J]`.
pub(crate) async fn rollback_before_client(
    admin: &mut Admin,
    job: Option<String>,
    client: String,
    reason: String,
    json_out: bool,
) -> Result<(), CliError> {
    let r = admin
        .rollback_model(RollbackModelRequest {
            job_id: job.unwrap_or_default(),
            version: 0,
            reason,
            before_client_id: client.clone(),
        })
        .await?
        .into_inner();
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&super::admin::job_json(&r))?
        );
    } else {
        println!(
            "job {} rolled back to version {}, the last before client {client}'s first contribution; privacy already spent stays spent",
            r.job_id, r.current_version
        );
    }
    Ok(())
}
