//! `fedsec-client label`: turn a log into silver labels with the weak
//! labeller (rules of `[labels.rules]`, outcomes imported from JSON lines),
//! write one JSON line per session and print per-rule coverage and
//! abstention statistics — what the participant does inside `run` for
//! sessions without ground truth.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Args;
use fedsec_client::LabelOptions;
use fedsec_client::config::ClientConfig;
use fedsec_detector::features;
use fedsec_detector::logs::LogReader;
use fedsec_detector::session::{SessionConfig, Sessionizer, sessionize};
use fedsec_detector::weak::{Coverage, SessionFacts, Vote};
use serde::Serialize;

use super::{CliError, LogArgs, MalformedReporter, open_log};

/// Arguments of `label`.
#[derive(Debug, Args)]
pub(crate) struct LabelArgs {
    /// Access log to read (`-` for standard input).
    #[arg(long)]
    logs: PathBuf,
    #[command(flatten)]
    log: LogArgs,
    /// Take `[labels]` (rules, outcome weights, outcome files) from this
    /// client.toml; default: the built-in rules.
    #[arg(long)]
    config: Option<PathBuf>,
    /// JSON-lines outcomes to import (repeat; added to the config's `labels.outcomes_files`).
    #[arg(long = "outcomes", value_name = "FILE")]
    outcomes: Vec<PathBuf>,
    /// Silver labels to write, one JSON object per session (`-` for standard output).
    #[arg(long)]
    out: PathBuf,
    /// Print the statistics as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Malformed log lines reported individually before only counting.
    #[arg(long, default_value_t = 20)]
    report_malformed: u64,
}

/// One line of the output.
#[derive(Serialize)]
struct SilverLine<'a> {
    session: String,
    /// `abuse`, `not_abuse` or `abstain`.
    silver: Vote,
    confidence: f64,
    score: f64,
    /// The votes cast: `[rule, vote, weight]`.
    votes: Vec<(&'a str, Vote, f64)>,
}

#[derive(Serialize)]
struct Stats<'a> {
    log_lines: u64,
    malformed_log_lines: u64,
    coverage: &'a Coverage,
    labelled_share: f64,
    outcomes: &'a fedsec_detector::weak::outcomes::ImportStats,
}

/// Runs `label`.
pub(crate) fn run(args: LabelArgs) -> Result<(), CliError> {
    let mut options = match &args.config {
        Some(p) => ClientConfig::load(p)?.labels,
        None => LabelOptions::default(),
    };
    options.weak = true;
    options.outcomes_files.extend(args.outcomes.iter().cloned());
    let weak = options.load()?.ok_or("weak labelling is off")?;
    let pipeline = args.log.pipeline()?;
    let input = open_log(&args.logs)?;
    let sink: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(&args.out)
                .map_err(|e| format!("--out {}: {e}", args.out.display()))?,
        )
    };
    let mut out = BufWriter::new(sink);
    let mut reader = LogReader::new(input, pipeline.reader);
    let mut sessionizer =
        Sessionizer::with_enrichment(SessionConfig::default(), pipeline.enrichment);
    let mut malformed = MalformedReporter::new(args.report_malformed);
    let mut coverage = Coverage::default();
    let mut write_error: Option<std::io::Error> = None;
    let stats = sessionize(
        &mut reader,
        &mut sessionizer,
        |s| {
            if write_error.is_some() {
                return;
            }
            let f = features::extract(&s);
            let facts = SessionFacts::of(&s, &f);
            let label = weak.labeller.label(&facts);
            coverage.add(&label);
            let line = SilverLine {
                session: facts.key,
                silver: label.vote,
                confidence: label.confidence,
                score: label.score,
                votes: label
                    .fired
                    .iter()
                    .map(|v| (v.rule, v.vote, v.weight))
                    .collect(),
            };
            let r = serde_json::to_writer(&mut out, &line)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(e) = r {
                write_error = Some(e);
            }
        },
        |m| malformed.report(m),
    )
    .map_err(|e| format!("reading {}: {e}", args.logs.display()))?;
    if let Some(e) = write_error {
        return Err(format!("writing {}: {e}", args.out.display()).into());
    }
    out.flush()
        .map_err(|e| format!("writing {}: {e}", args.out.display()))?;
    drop(out);
    let summary = Stats {
        log_lines: stats.lines,
        malformed_log_lines: stats.malformed,
        coverage: &coverage,
        labelled_share: coverage.labelled_share(),
        outcomes: weak.labeller.outcomes().stats(),
    };
    // Statistics go to stderr when the labels go to stdout.
    let mut report: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    if args.json {
        writeln!(report, "{}", serde_json::to_string(&summary)?)?;
    } else {
        print_table(&mut report, &summary)?;
    }
    Ok(())
}

fn print_table(w: &mut dyn Write, s: &Stats<'_>) -> std::io::Result<()> {
    let c = s.coverage;
    let pct = |n: u64| {
        if c.sessions == 0 {
            0.0
        } else {
            100.0 * n as f64 / c.sessions as f64
        }
    };
    writeln!(
        w,
        "{} sessions from {} log lines ({} malformed): abuse {} ({:.1} %), not abuse {} ({:.1} %), abstained {} ({:.1} %; {} with cancelling votes)",
        c.sessions,
        s.log_lines,
        s.malformed_log_lines,
        c.abuse,
        pct(c.abuse),
        c.not_abuse,
        pct(c.not_abuse),
        c.abstained,
        pct(c.abstained),
        c.conflicts
    )?;
    writeln!(
        w,
        "{:<28} {:>10} {:>10} {:>9}",
        "rule", "abuse", "not abuse", "coverage"
    )?;
    for (rule, rc) in &c.rules {
        writeln!(
            w,
            "{:<28} {:>10} {:>10} {:>8.1} %",
            rule,
            rc.abuse,
            rc.not_abuse,
            pct(rc.abuse + rc.not_abuse)
        )?;
    }
    let o = s.outcomes;
    if o.lines > 0 {
        writeln!(
            w,
            "outcomes: {} lines, {} imported ({} by session, {} by ip + time), {} skipped",
            o.lines,
            o.accepted,
            o.by_session,
            o.by_ip,
            o.malformed_total()
        )?;
        for (reason, n) in &o.malformed {
            writeln!(w, "  skipped {reason}: {n}")?;
        }
    }
    Ok(())
}
