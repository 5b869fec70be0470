//! `fedsec-client synth`: write synthetic tenants (log + labels per tenant).

use std::path::PathBuf;

use clap::Args;
use fedsec_detector::synth::{self, SynthConfig, SynthFormat};

use super::CliError;

/// Arguments of `synth`.
#[derive(Debug, Args)]
pub(crate) struct SynthArgs {
    /// Number of tenants.
    #[arg(long)]
    tenants: usize,
    /// Output directory (created if missing): tenant-NNN.log,
    /// tenant-NNN.labels.jsonl and manifest.json.
    #[arg(long)]
    out: PathBuf,
    /// Seed; the same seed writes the same files.
    #[arg(long)]
    seed: u64,
    /// Dirichlet concentration of each tenant's bot mix: 0.1 very non-IID,
    /// 1 default, 10 near IID.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Log format: clf (nginx/Apache combined, nginx main), json, or mixed.
    #[arg(long, default_value = "clf")]
    format: SynthFormat,
    /// Simulated days per tenant.
    #[arg(long, default_value_t = 2)]
    days: u32,
    /// Median sessions per tenant (sizes are log-normal around it).
    #[arg(long, default_value_t = 1500.0)]
    median_sessions: f64,
}

/// Runs `synth`; prints one JSON summary line.
pub(crate) fn run(args: SynthArgs) -> Result<(), CliError> {
    let cfg = SynthConfig {
        tenants: args.tenants,
        seed: args.seed,
        alpha: args.alpha,
        format: args.format,
        days: args.days,
        median_sessions: args.median_sessions,
        ..SynthConfig::default()
    };
    cfg.validate()?;
    let summaries = synth::write_dir(&cfg, &args.out)
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    let mut sessions = 0usize;
    let mut bots = 0usize;
    let mut abusive = 0usize;
    let mut lines = 0usize;
    for s in &summaries {
        let n: usize = s.sessions_by_archetype.values().sum();
        let count = |keep: &dyn Fn(synth::Archetype) -> bool| -> usize {
            s.sessions_by_archetype
                .iter()
                .filter(|(name, _)| name.parse::<synth::Archetype>().is_ok_and(keep))
                .map(|(_, c)| c)
                .sum()
        };
        let b = count(&|a| a.is_bot());
        let ab = count(&|a| a.class().is_abuse());
        tracing::info!(
            tenant = %s.profile.name,
            kind = s.profile.kind.name(),
            sessions = n,
            bot_share = format!("{:.2}", b as f64 / n.max(1) as f64),
            lines = s.lines,
            "tenant written"
        );
        sessions += n;
        bots += b;
        abusive += ab;
        lines += s.lines;
    }
    println!(
        "{}",
        serde_json::json!({
            "tenants": summaries.len(),
            "sessions": sessions,
            "bot_sessions": bots,
            "abusive_bot_sessions": abusive,
            "good_bot_sessions": bots - abusive,
            "lines": lines,
            "out": args.out.display().to_string(),
        })
    );
    Ok(())
}
