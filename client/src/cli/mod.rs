//! Subcommands of the `fedsec-client` binary, one module each.

pub(crate) mod label;
pub(crate) mod ledger;
pub(crate) mod model;
pub(crate) mod run;
pub(crate) mod score;
pub(crate) mod sessions;
pub(crate) mod synth;

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use clap::Args;
use fedsec_detector::logs::{Cidr, RealIpHeader};
use fedsec_detector::network::CrawlerRangesFile;

use fedsec_client::{DataOptions, DataPipeline};

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

/// How `sessions` and `score` read a log: the `[data]` settings of
/// `client.toml` as flags.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Log syntax: auto, json, clf, a preset (combined, main, common,
    /// vhost_combined) or the server's nginx log_format / Apache LogFormat string.
    #[arg(long, visible_alias = "format", default_value = "auto")]
    log_format: String,
    /// CIDR of a proxy whose forwarding header is believed (repeat for
    /// several); default: loopback and private ranges.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<Cidr>,
    /// Believe no proxy at all (the client is always the connecting address).
    #[arg(long, conflicts_with = "trusted_proxies")]
    trust_no_proxy: bool,
    /// Header naming the client behind a trusted proxy: x_forwarded_for,
    /// x_real_ip or cf_connecting_ip.
    #[arg(long, default_value = "x_forwarded_for")]
    real_ip_header: RealIpHeader,
    /// AS database: a MaxMind .mmdb or an iptoasn TSV.
    #[arg(long, value_name = "FILE")]
    asn_db: Option<PathBuf>,
    /// Crawler IP-range file in Google's googlebot.json format (repeat);
    /// the file name (googlebot, bingbot) is the user-agent token.
    #[arg(long = "crawler-ranges", value_name = "FILE")]
    crawler_ranges: Vec<PathBuf>,
}

impl LogArgs {
    /// The reader settings and network files.
    pub(crate) fn pipeline(&self) -> Result<DataPipeline, CliError> {
        let options = DataOptions {
            log_format: self.log_format.clone(),
            trusted_proxies: if self.trust_no_proxy {
                Some(Vec::new())
            } else if self.trusted_proxies.is_empty() {
                None
            } else {
                Some(self.trusted_proxies.clone())
            },
            real_ip_header: self.real_ip_header,
            asn_db: self.asn_db.clone(),
            crawler_ranges: self
                .crawler_ranges
                .iter()
                .map(|f| CrawlerRangesFile {
                    file: f.clone(),
                    user_agent: None,
                })
                .collect(),
            ..DataOptions::default()
        };
        Ok(options.pipeline()?)
    }
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
            tracing::warn!(
                line = m.line,
                client = m.client.as_deref().unwrap_or("-"),
                reason = %m.reason,
                "malformed log line skipped"
            );
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

/// The clients with the most malformed lines, most first (at most `n`).
pub(crate) fn top_malformed_clients(
    stats: &fedsec_detector::logs::ReaderStats,
    n: usize,
) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = stats
        .malformed_by_client
        .iter()
        .map(|(k, c)| (k.clone(), *c))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}
