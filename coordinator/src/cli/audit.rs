//! `fedsec-coordinator admin audit verify|export`: the tamper-evident audit
//! log of a data directory, checked or exported offline (read-only; a
//! running coordinator may keep writing). Without a subcommand,
//! `admin audit` lists recent events over the Admin API (`cli/admin.rs`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use fedsec_coordinator::store::sqlite::audit::{export_file, parse_since, verify_file};

use super::CliError;

/// `admin audit`: list (online), or verify / export (offline).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct AuditArgs {
    /// Only events of this job (listing).
    #[arg(long)]
    pub(crate) job: Option<String>,
    /// Maximum number of events (listing).
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: u32,
    /// Verify or export instead of listing.
    #[command(subcommand)]
    pub(crate) action: Option<AuditCommand>,
}

/// Offline audit commands.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain of the data directory's audit log: every row
    /// against its content and predecessor (from the pruning checkpoint),
    /// no rows missing in the middle or at the end, and every model
    /// version's release anchor. Exits non-zero if anything does not verify.
    Verify {
        /// The coordinator's data directory (holding coordinator.db).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Write the audit log as JSON lines (one event per line, with
    /// `@timestamp`, for ELK / Splunk), oldest first.
    Export {
        /// The coordinator's data directory (holding coordinator.db).
        #[arg(long)]
        data_dir: PathBuf,
        /// Only events at or after this time: Unix ms, an RFC 3339 UTC time
        /// (2026-12-05T23:00:00Z), a date (2026-12-05) or a duration back
        /// from now (90m, 24h, 7d). Default: everything.
        #[arg(long, default_value = "0")]
        since: String,
        /// Output file; default standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs `audit verify` or `audit export`.
pub(crate) fn run_offline(cmd: &AuditCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        AuditCommand::Verify { data_dir } => {
            let report = verify_file(data_dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let head = report.anchor();
                println!(
                    "{} rows checked (ids {}..={}), {} release anchors checked; chain head: row {} {}",
                    report.rows,
                    report.first_id.map_or("-".into(), |i| i.to_string()),
                    report.last_id.map_or("-".into(), |i| i.to_string()),
                    report.anchors_checked,
                    head.seq,
                    hex::encode(head.hash)
                );
                if let Some(c) = &report.checkpoint {
                    println!(
                        "pruned by retention: {} rows up to id {} (checkpoint head {})",
                        c.pruned_rows,
                        c.last_id,
                        hex::encode(c.head)
                    );
                }
                for b in &report.breaks {
                    println!("BROKEN at row {}: {}", b.id, b.problem);
                }
            }
            if report.ok() {
                Ok(())
            } else {
                Err(format!(
                    "the audit log does not verify: {} problem(s), the first at row {}",
                    report.breaks.len(),
                    report.breaks[0].id
                )
                .into())
            }
        }
        AuditCommand::Export {
            data_dir,
            since,
            out,
        } => {
            let since = parse_since(since, fedsec_coordinator::now_unix_ms())?;
            let n = match out {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    export_file(data_dir, since, &mut w)?
                }
                None => export_file(data_dir, since, &mut std::io::stdout().lock())?,
            };
            eprintln!("exported {n} audit events");
            Ok(())
        }
    }
}
