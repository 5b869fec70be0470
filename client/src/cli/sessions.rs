//! `fedsec-client sessions`: stream a log through the sessionizer and write
//! one CSV row of features per session.

use std::path::PathBuf;

use clap::Args;
use fedsec_detector::features::{self, FEATURE_NAMES};
use fedsec_detector::logs::LogReader;
use fedsec_detector::session::{SessionConfig, Sessionizer, sessionize};

use super::{CliError, LogArgs, MalformedReporter, open_log, top_malformed_clients};

/// Arguments of `sessions`.
#[derive(Debug, Args)]
pub(crate) struct SessionsArgs {
    /// Access log to read (`-` for standard input).
    #[arg(long)]
    logs: PathBuf,
    #[command(flatten)]
    log: LogArgs,
    /// CSV to write: session, start_unix_ms, session_requests, then every feature.
    #[arg(long)]
    out: PathBuf,
    /// Write raw measurements instead of the transformed model inputs.
    #[arg(long)]
    raw: bool,
    /// Malformed lines reported individually before only counting.
    #[arg(long, default_value_t = 20)]
    report_malformed: u64,
}

/// Runs `sessions`; prints `{"lines":…, "malformed":…, "malformed_by_reason":
/// {…}, "malformed_top_clients": [[client, n], …], "sessions":…}`.
pub(crate) fn run(args: SessionsArgs) -> Result<(), CliError> {
    let pipeline = args.log.pipeline()?;
    let input = open_log(&args.logs)?;
    let mut writer = csv::Writer::from_path(&args.out)
        .map_err(|e| format!("--out {}: {e}", args.out.display()))?;
    let mut header = vec!["session", "start_unix_ms", "session_requests"];
    header.extend(FEATURE_NAMES);
    writer.write_record(&header)?;
    let mut reader = LogReader::new(input, pipeline.reader);
    let mut sessionizer =
        Sessionizer::with_enrichment(SessionConfig::default(), pipeline.enrichment);
    let mut malformed = MalformedReporter::new(args.report_malformed);
    let mut sessions = 0u64;
    let mut write_error: Option<csv::Error> = None;
    let stats = sessionize(
        &mut reader,
        &mut sessionizer,
        |s| {
            if write_error.is_some() {
                return;
            }
            sessions += 1;
            let f = features::extract(&s);
            let mut row = Vec::with_capacity(FEATURE_NAMES.len() + 3);
            row.push(s.key.to_string());
            row.push(s.key.start_ms.to_string());
            row.push(s.requests.len().to_string());
            if args.raw {
                row.extend(f.raw.0.iter().map(|v| {
                    if v.is_nan() {
                        String::new()
                    } else {
                        v.to_string()
                    }
                }));
            } else {
                row.extend(f.values.iter().map(|v| v.to_string()));
            }
            if let Err(e) = writer.write_record(&row) {
                write_error = Some(e);
            }
        },
        |m| malformed.report(m),
    )
    .map_err(|e| format!("reading {}: {e}", args.logs.display()))?;
    if let Some(e) = write_error {
        return Err(format!("writing {}: {e}", args.out.display()).into());
    }
    writer.flush()?;
    println!(
        "{}",
        serde_json::json!({
            "lines": stats.lines,
            "malformed": stats.malformed,
            "malformed_by_reason": stats.malformed_by_kind,
            "malformed_top_clients": top_malformed_clients(&stats, 10),
            "sessions": sessions,
        })
    );
    Ok(())
}
