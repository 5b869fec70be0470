//! Subcommands of the `fedsec-client` binary, one module each.

pub(crate) mod ledger;
pub(crate) mod model;
pub(crate) mod run;
pub(crate) mod score;
pub(crate) mod sessions;
pub(crate) mod synth;

use std::io::{self, BufRead, BufReader};
use std::path::Path;

/// Error type of CLI subcommands: any error with a readable message.
pub(crate) type CliError = Box<dyn std::error::Error + Send + Sync>;

/// Logs go to stderr (stdout carries results); `RUST_LOG` overrides the
/// default `info` level.
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .try_init();
}

/// Opens a log for streaming: a file, or standard input for `-`.
pub(crate) fn open_log(path: &Path) -> Result<Box<dyn BufRead>, CliError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::with_capacity(256 * 1024, io::stdin())));
    }
    let file = std::fs::File::open(path).map_err(|e| format!("--logs {}: {e}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(256 * 1024, file)))
}

/// Reports malformed lines: the first `limit` individually (warn), then a count.
pub(crate) struct MalformedReporter {
    limit: u64,
    seen: u64,
}

impl MalformedReporter {
    pub(crate) fn new(limit: u64) -> Self {
        Self { limit, seen: 0 }
    }

    pub(crate) fn report(&mut self, m: &fedsec_detector::logs::MalformedLine) {
        self.seen += 1;
        if self.seen <= self.limit {
            tracing::warn!(line = m.line, reason = %m.reason, "malformed log line skipped");
        } else if self.seen == self.limit + 1 {
            tracing::warn!("more malformed lines; only the total is reported from here on");
        }
    }
}

/// The tokio runtime of the network subcommands (`run`, `model pull`).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
