//! `fedsec-client ledger`: the tenant's own view of its privacy ledger —
//! every round it contributed to, and ε by PLD and RDP at the tenant's δ on
//! both accounting bases (see the crate README, "The tenant-side guard").

use std::path::PathBuf;

use clap::Args;
use fedsec_client::AccountantKind;
use fedsec_client::config::ClientConfig;
use fedsec_client::guard::{Spent, spent};
use fedsec_client::ledger::{LEDGER_FILE, Ledger, LedgerFile};
use fedsec_detector::logs::time::format_rfc3339;
use serde_json::json;

use super::CliError;

/// Arguments of `ledger`.
#[derive(Debug, Args)]
pub(crate) struct LedgerArgs {
    /// State directory of the participant.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    state: Option<PathBuf>,
    /// Or the client's configuration file (its `state_dir` and `privacy.delta`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// δ to state ε at. Default: the config's `privacy.delta`, else 1e-5.
    #[arg(long)]
    delta: Option<f64>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn fmt_eps(e: f64) -> String {
    if e.is_finite() {
        format!("{e:.4}")
    } else {
        "unbounded".into()
    }
}

fn json_eps(e: f64) -> serde_json::Value {
    if e.is_finite() { json!(e) } else { json!(null) }
}

fn spent_json(s: &Spent) -> serde_json::Value {
    json!({
        "participation_epsilon": json_eps(s.participation_epsilon),
        "jobs": s.jobs.iter().map(|j| json!({
            "job_id": j.job_id,
            "contributions": j.contributions,
            "participation_epsilon": json_eps(j.participation_epsilon),
            "amplified": j.amplified.map(|(rounds, eps)| json!({
                "rounds": rounds,
                "epsilon": json_eps(eps),
            })),
        })).collect::<Vec<_>>(),
    })
}

fn print_text(path: &std::path::Path, file: &LedgerFile, delta: f64, pld: &Spent, rdp: &Spent) {
    println!("ledger   {}", path.display());
    match &file.identity {
        Some(i) => println!("client   {}/{}", i.tenant_id, i.client_id),
        None => println!("client   (not registered yet)"),
    }
    println!("δ        {delta} (the tenant's)");
    println!();
    if file.entries.is_empty() {
        println!("no contributions recorded");
    } else {
        println!(
            "{:<16} {:>5} {:>3} {:>8} {:>8} {:>8} {:<9} {:<24} {:>10} basis",
            "job", "round", "try", "q", "z", "C", "status", "recorded (UTC)", "ε after"
        );
        for e in &file.entries {
            println!(
                "{:<16} {:>5} {:>3} {:>8.4} {:>8.4} {:>8.4} {:<9} {:<24} {:>10} {}",
                e.job_id,
                e.round,
                e.attempt,
                e.sampling_rate,
                e.noise_multiplier,
                e.clip_norm,
                e.status.as_str(),
                format_rfc3339(e.recorded_unix_ms, 0),
                e.epsilon_after.map_or_else(|| "unbounded".into(), fmt_eps),
                e.basis,
            );
        }
    }
    println!();
    println!(
        "{:<44} {:>10} {:>10}",
        format!("ε spent at δ = {delta}"),
        "PLD",
        "RDP"
    );
    println!(
        "{:<44} {:>10} {:>10}",
        "all jobs, rounds joined (participation)",
        fmt_eps(pld.participation_epsilon),
        fmt_eps(rdp.participation_epsilon)
    );
    for (jp, jr) in pld.jobs.iter().zip(&rdp.jobs) {
        println!("job {} ({} contribution(s))", jp.job_id, jp.contributions);
        println!(
            "{:<44} {:>10} {:>10}",
            "  participation (q = 1 per round joined)",
            fmt_eps(jp.participation_epsilon),
            fmt_eps(jr.participation_epsilon)
        );
        if let (Some((n, ep)), Some((_, er))) = (jp.amplified, jr.amplified) {
            println!(
                "{:<44} {:>10} {:>10}",
                format!("  amplified ({n} round(s) of the last receipt)"),
                fmt_eps(ep),
                fmt_eps(er)
            );
        }
    }
}

/// Runs `ledger`.
pub(crate) fn run(args: LedgerArgs) -> Result<(), CliError> {
    let (state, config_delta) = match (&args.state, &args.config) {
        (Some(s), _) => (s.clone(), None),
        (None, Some(c)) => {
            let config = ClientConfig::load(c)?;
            (config.state_dir.clone(), Some(config.privacy.delta))
        }
        (None, None) => return Err("give --state DIR or --config FILE".into()),
    };
    let delta = args.delta.or(config_delta).unwrap_or(1e-5);
    if !(delta > 0.0 && delta < 1.0) {
        return Err(format!("--delta must be in (0, 1) (got {delta})").into());
    }
    let path = state.join(LEDGER_FILE);
    let file = Ledger::read(&path)?;
    let pld = spent(&file, delta, AccountantKind::Pld)?;
    let rdp = spent(&file, delta, AccountantKind::Rdp)?;
    if args.json {
        let out = json!({
            "ledger": path,
            "identity": file.identity,
            "delta": delta,
            "entries": file.entries,
            "spent": { "pld": spent_json(&pld), "rdp": spent_json(&rdp) },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&path, &file, delta, &pld, &rdp);
    }
    Ok(())
}
