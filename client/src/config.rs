//! `client.toml`: the configuration file of `fedsec-client run` (and of
//! `model pull`). Every key, its default and its meaning is listed in the
//! crate README; unknown keys are errors, and every validation error names
//! the key, e.g. `privacy.max_epsilon: must be > 0 (got -1)`.
//!
//! Relative paths in the file are resolved against the file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fedsec_detector::logs::{Cidr, JsonFields, RealIpHeader};
use fedsec_detector::network::CrawlerRangesFile;
use fedsec_proto::tls::TlsFiles;
use serde::{Deserialize, Serialize};

use crate::data::{DataOptions, DataSource, LabelledLog};
use crate::error::BuildError;
use crate::participant::{ParticipantBuilder, Timing};
use crate::policy::{PrivacyPolicy, TrainingLimits};

/// Why a configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not TOML, or not the schema (the message names line, column and key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("{key}: {problem}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// The offending key, for `Invalid` errors.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

impl From<BuildError> for ConfigError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Missing { field, hint } => {
                Self::invalid(field, format!("required — {hint}"))
            }
            BuildError::Invalid { field, problem } => Self::invalid(field, problem),
            BuildError::State(e) => Self::invalid("state_dir", e.to_string()),
        }
    }
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Log files with their labels files.
    #[serde(default)]
    pub files: Vec<LabelledLog>,
    /// A directory to watch for new and growing log files.
    #[serde(default)]
    pub watch_dir: Option<PathBuf>,
    /// Suffix of log files in `watch_dir`. Default `.log`.
    #[serde(default = "default_log_suffix")]
    pub log_suffix: String,
    /// Suffix of the labels file next to each log. Default `.labels.jsonl`.
    #[serde(default = "default_labels_suffix")]
    pub labels_suffix: String,
    /// Only sessions handed in by an embedding host (not useful for the CLI).
    #[serde(default)]
    pub host: bool,
    /// Log syntax: `auto` (default), `json`, `clf`, a preset (`combined`,
    /// `main`, `common`, `vhost_combined`) or the server's format string in
    /// nginx `log_format` / Apache `LogFormat` syntax.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// Field names of JSON logs (`[data.json_fields]`; default the
    /// detector's own names).
    #[serde(default)]
    pub json_fields: JsonFields,
    /// CIDRs of proxies whose forwarding headers are believed. Default:
    /// loopback and private ranges; `[]` trusts nobody.
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<Cidr>,
    /// Header naming the client behind a trusted proxy: `x_forwarded_for`
    /// (default), `x_real_ip`, `cf_connecting_ip`.
    #[serde(default)]
    pub real_ip_header: RealIpHeader,
    /// AS database: a MaxMind `.mmdb` or an iptoasn TSV. Default none.
    #[serde(default)]
    pub asn_db: Option<PathBuf>,
    /// Crawler IP-range files: `[{ file = "googlebot.json" }, { file =
    /// "bingbot.json", user_agent = "bingbot" }]`. Default none.
    #[serde(default)]
    pub crawler_ranges: Vec<CrawlerRangesFile>,
    /// Share of examples kept aside as the local holdout. Default 0.2.
    #[serde(default = "default_holdout")]
    pub holdout_fraction: f64,
    /// Most examples kept. Default 200000.
    #[serde(default = "default_max_examples")]
    pub max_examples: usize,
    /// Fewest training examples to take part in a round. Default 20.
    #[serde(default = "default_min_examples")]
    pub min_examples: usize,
    /// How often files are re-read, ms. Default 10000.
    #[serde(default = "default_rescan_ms")]
    pub rescan_interval_ms: u64,
    /// Idle gap that ends a session, ms. Default 1800000 (30 min).
    #[serde(default = "default_idle_ms")]
    pub session_idle_timeout_ms: i64,
}

fn default_trusted_proxies() -> Vec<Cidr> {
    fedsec_detector::logs::ClientIpPolicy::default().trusted_proxies
}
fn default_log_format() -> String {
    "auto".into()
}
fn default_log_suffix() -> String {
    ".log".into()
}
fn default_labels_suffix() -> String {
    ".labels.jsonl".into()
}
fn default_holdout() -> f64 {
    0.2
}
fn default_max_examples() -> usize {
    200_000
}
fn default_min_examples() -> usize {
    20
}
fn default_rescan_ms() -> u64 {
    10_000
}
fn default_idle_ms() -> i64 {
    30 * 60 * 1000
}

/// `[timing]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingConfig {
    /// Longest wait for one call, ms. Default 60000.
    #[serde(default = "default_rpc_timeout")]
    pub rpc_timeout_ms: u64,
    /// Shortest wait between polls, ms. Default 10.
    #[serde(default = "default_min_poll")]
    pub min_poll_ms: u64,
    /// Longest wait between polls, ms. Default 60000.
    #[serde(default = "default_max_poll")]
    pub max_poll_ms: u64,
    /// First backoff after a failure, ms. Default 200.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_ms: u64,
    /// Longest backoff, ms. Default 30000.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// How often to look for a newer model while not selected, ms. Default 30000.
    #[serde(default = "default_model_refresh")]
    pub model_refresh_ms: u64,
}

fn default_rpc_timeout() -> u64 {
    60_000
}
fn default_min_poll() -> u64 {
    10
}
fn default_max_poll() -> u64 {
    60_000
}
fn default_backoff_initial() -> u64 {
    200
}
fn default_backoff_max() -> u64 {
    30_000
}
fn default_model_refresh() -> u64 {
    30_000
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            rpc_timeout_ms: default_rpc_timeout(),
            min_poll_ms: default_min_poll(),
            max_poll_ms: default_max_poll(),
            backoff_initial_ms: default_backoff_initial(),
            backoff_max_ms: default_backoff_max(),
            model_refresh_ms: default_model_refresh(),
        }
    }
}

/// The whole `client.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Coordinator, `https://host:port`. Required.
    pub endpoint: String,
    /// Serve only this job. Default: any running job.
    #[serde(default)]
    pub job: Option<String>,
    /// State directory (ledger, lock, cached model). Default `fedsec-client-state`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Seed of the holdout split and training shuffles. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// `ca`, `cert`, `key` PEM files. Required.
    pub tls: TlsFiles,
    /// Local data. Required.
    pub data: DataConfig,
    /// The tenant's privacy policy; `max_epsilon` is required.
    pub privacy: PrivacyPolicy,
    /// Limits on local training.
    #[serde(default)]
    pub training: TrainingLimits,
    /// Protocol timing.
    #[serde(default)]
    pub timing: TimingConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("fedsec-client-state")
}

impl ClientConfig {
    /// Reads, parses and validates a file; relative paths are resolved
    /// against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut c = Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        c.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        Ok(c)
    }

    /// Parses and validates TOML text (paths kept as written).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let c: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.state_dir);
        fix(&mut self.tls.ca);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        for f in &mut self.data.files {
            fix(&mut f.log);
            fix(&mut f.labels);
        }
        if let Some(d) = &mut self.data.watch_dir {
            fix(d);
        }
        if let Some(p) = &mut self.data.asn_db {
            fix(p);
        }
        for c in &mut self.data.crawler_ranges {
            fix(&mut c.file);
        }
    }

    /// Checks values that do not need the file system; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.endpoint.starts_with("https://") {
            return Err(ConfigError::invalid(
                "endpoint",
                format!("must be https://host:port (got {:?})", self.endpoint),
            ));
        }
        let d = &self.data;
        let sources = usize::from(!d.files.is_empty())
            + usize::from(d.watch_dir.is_some())
            + usize::from(d.host);
        if sources != 1 {
            return Err(ConfigError::invalid(
                "data",
                "set exactly one of `files`, `watch_dir` or `host = true`",
            ));
        }
        if d.rescan_interval_ms == 0 {
            return Err(ConfigError::invalid(
                "data.rescan_interval_ms",
                "must be at least 1",
            ));
        }
        if let Err(e) = fedsec_detector::logs::ReaderConfig::from_log_format(&d.log_format) {
            return Err(ConfigError::invalid("data.log_format", e.problem));
        }
        if let Err(e) = d.json_fields.validate() {
            return Err(ConfigError::invalid("data.json_fields", e));
        }
        if d.session_idle_timeout_ms < 1000 {
            return Err(ConfigError::invalid(
                "data.session_idle_timeout_ms",
                "must be at least 1000",
            ));
        }
        let t = &self.timing;
        for (key, v) in [
            ("timing.rpc_timeout_ms", t.rpc_timeout_ms),
            ("timing.min_poll_ms", t.min_poll_ms),
            ("timing.max_poll_ms", t.max_poll_ms),
            ("timing.backoff_initial_ms", t.backoff_initial_ms),
            ("timing.backoff_max_ms", t.backoff_max_ms),
            ("timing.model_refresh_ms", t.model_refresh_ms),
        ] {
            if v == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if t.max_poll_ms < t.min_poll_ms {
            return Err(ConfigError::invalid(
                "timing.max_poll_ms",
                "must be at least timing.min_poll_ms",
            ));
        }
        self.privacy.validate()?;
        self.training.validate()?;
        Ok(())
    }

    /// The data source.
    pub fn data_source(&self) -> DataSource {
        let d = &self.data;
        if let Some(dir) = &d.watch_dir {
            DataSource::WatchDir {
                dir: dir.clone(),
                log_suffix: d.log_suffix.clone(),
                labels_suffix: d.labels_suffix.clone(),
            }
        } else if d.host {
            DataSource::Host
        } else {
            DataSource::Files(d.files.clone())
        }
    }

    /// The `[data]` reading and keeping options.
    pub fn data_options(&self) -> DataOptions {
        let d = &self.data;
        DataOptions {
            log_format: d.log_format.clone(),
            json_fields: d.json_fields.clone(),
            trusted_proxies: Some(d.trusted_proxies.clone()),
            real_ip_header: d.real_ip_header,
            asn_db: d.asn_db.clone(),
            crawler_ranges: d.crawler_ranges.clone(),
            network: None,
            sessions: fedsec_detector::session::SessionConfig {
                idle_timeout_ms: d.session_idle_timeout_ms,
                ..Default::default()
            },
            holdout_fraction: d.holdout_fraction,
            max_examples: d.max_examples,
            min_examples: d.min_examples,
            rescan_interval: Duration::from_millis(d.rescan_interval_ms),
        }
    }

    /// A participant builder with everything from this file.
    pub fn builder(&self) -> ParticipantBuilder {
        let t = &self.timing;
        let ms = Duration::from_millis;
        let mut b = crate::Participant::builder()
            .endpoint(&self.endpoint)
            .tls_files(self.tls.clone())
            .data(self.data_source())
            .data_options(self.data_options())
            .policy(self.privacy.clone())
            .training_limits(self.training.clone())
            .state_dir(&self.state_dir)
            .seed(self.seed)
            .timing(Timing {
                rpc_timeout: ms(t.rpc_timeout_ms),
                min_poll: ms(t.min_poll_ms),
                max_poll: ms(t.max_poll_ms),
                backoff_initial: ms(t.backoff_initial_ms),
                backoff_max: ms(t.backoff_max_ms),
                model_refresh: ms(t.model_refresh_ms),
            });
        if let Some(j) = &self.job {
            b = b.job(j);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
endpoint = "https://localhost:7443"
[tls]
ca = "pki/ca.pem"
cert = "pki/clients/client-0001.pem"
key = "pki/clients/client-0001.key"
[data]
watch_dir = "logs"
[privacy]
max_epsilon = 8.0
"#;

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = ClientConfig::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("fedsec-client-state"));
        assert_eq!(c.job, None);
        assert_eq!(c.privacy.delta, 1e-5);
        assert_eq!(c.privacy.min_noise_multiplier, 0.5);
        assert!(c.privacy.refuse_noise_disabled && c.privacy.amplification);
        assert_eq!(c.privacy.accountant, crate::AccountantKind::Pld);
        assert_eq!(c.data.holdout_fraction, 0.2);
        assert_eq!(c.data.min_examples, 20);
        assert_eq!(c.data.log_suffix, ".log");
        assert_eq!(c.timing, TimingConfig::default());
        assert_eq!(c.data_source(), DataSource::watch_dir("logs"));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                MINIMAL.replace("max_epsilon = 8.0", "max_epsilon = -1.0"),
                "privacy.max_epsilon",
            ),
            (MINIMAL.replace("https://", "http://"), "endpoint"),
            (
                MINIMAL.replace("watch_dir = \"logs\"", "watch_dir = \"logs\"\nhost = true"),
                "data",
            ),
            (
                format!("{MINIMAL}\n[timing]\nrpc_timeout_ms = 0\n"),
                "timing.rpc_timeout_ms",
            ),
            (
                format!("{MINIMAL}\n[training]\nmax_local_epochs = 0\n"),
                "training.max_local_epochs",
            ),
            (
                MINIMAL.replace(
                    "watch_dir = \"logs\"",
                    "watch_dir = \"logs\"\nlog_format = \"$remote_addr $status\"",
                ),
                "data.log_format",
            ),
            (
                MINIMAL.replace(
                    "watch_dir = \"logs\"",
                    "watch_dir = \"logs\"\njson_fields = { ts = \"a..b\" }",
                ),
                "data.json_fields",
            ),
        ];
        for (text, key) in cases {
            let e = ClientConfig::from_toml_str(&text).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
        // Bad CIDRs and header names: the parser names the key.
        let e = ClientConfig::from_toml_str(&MINIMAL.replace(
            "watch_dir = \"logs\"",
            "watch_dir = \"logs\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("trusted_proxies"), "{e}");
        let e = ClientConfig::from_toml_str(&MINIMAL.replace(
            "watch_dir = \"logs\"",
            "watch_dir = \"logs\"\nreal_ip_header = \"x_client_ip\"",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("real_ip_header"), "{e}");
        // Unknown keys and missing required keys: the parser names them.
        let e = ClientConfig::from_toml_str(&format!("{MINIMAL}\nbogus = 1\n")).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = ClientConfig::from_toml_str(&MINIMAL.replace("max_epsilon = 8.0", "")).unwrap_err();
        assert!(e.to_string().contains("max_epsilon"), "{e}");
    }

    #[test]
    fn the_example_file_parses_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("client.example.toml");
        let c = ClientConfig::load(&path).unwrap();
        assert_eq!(c.job.as_deref(), Some("bot-detector"));
        assert_eq!(c.privacy.max_epsilon, 8.0);
        // Uncommenting every commented default must not change anything.
        let text = std::fs::read_to_string(&path).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| {
                let t = l.trim_start();
                let is_key = t.starts_with("# ")
                    && t[2..].split_once(" = ").is_some_and(|(k, _)| {
                        !k.contains(' ') && k.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_')
                    });
                if is_key
                    && !t.contains("files =")
                    && !t.contains("max_clip_norm")
                    && !t.contains("max_local_epochs")
                    && !t.contains("max_steps")
                    && !t.contains("max_examples_per_round")
                    && !t.contains("asn_db")
                    && !t.contains("crawler_ranges")
                {
                    format!("{}\n", &t[2..])
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let active = |t: &str| {
            t.lines()
                .filter(|l| !l.trim_start().starts_with('#') && l.contains(" = "))
                .count()
        };
        assert!(
            active(&uncommented) >= active(&text) + 20,
            "the defaults were uncommented"
        );
        let d = ClientConfig::from_toml_str(&uncommented).unwrap();
        let plain = ClientConfig::from_toml_str(&text).unwrap();
        assert_eq!(d, plain, "{uncommented}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("client.toml");
        std::fs::write(&p, MINIMAL).unwrap();
        let c = ClientConfig::load(&p).unwrap();
        assert_eq!(c.tls.ca, dir.path().join("pki/ca.pem"));
        assert_eq!(c.state_dir, dir.path().join("fedsec-client-state"));
        assert_eq!(c.data.watch_dir, Some(dir.path().join("logs")));
    }

    #[test]
    fn log_format_proxies_and_network_files_reach_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let ranges = Path::new(env!("CARGO_MANIFEST_DIR")).join("../detector/data/crawler-ranges");
        std::fs::write(
            dir.path().join("asn.tsv"),
            "203.0.113.0\t203.0.113.255\t64500\tZZ\tTEST\n",
        )
        .unwrap();
        let text = MINIMAL.replace(
            "watch_dir = \"logs\"",
            &format!(
                "watch_dir = \"logs\"\nlog_format = \"vhost_combined\"\ntrusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/32\"]\nreal_ip_header = \"cf_connecting_ip\"\nasn_db = \"asn.tsv\"\ncrawler_ranges = [{{ file = \"{}\" }}]\n[data.json_fields]\nts = \"time\"",
                ranges.join("googlebot.json").display()
            ),
        );
        let p = dir.path().join("client.toml");
        std::fs::write(&p, &text).unwrap();
        let c = ClientConfig::load(&p).unwrap();
        assert_eq!(c.data.asn_db, Some(dir.path().join("asn.tsv")));
        let pipe = c.data_options().pipeline().unwrap();
        assert_eq!(
            pipe.reader.line_format.as_ref().unwrap().source(),
            "vhost_combined"
        );
        assert_eq!(pipe.reader.client_ip.trusted_proxies.len(), 2);
        assert_eq!(pipe.reader.client_ip.header, RealIpHeader::CfConnectingIp);
        assert_eq!(pipe.reader.json_fields.ts, "time");
        assert_eq!(
            pipe.enrichment.asn_of(None, "203.0.113.7".parse().ok()),
            Some(64500)
        );
        assert_eq!(pipe.enrichment.crawlers.crawlers.len(), 1);
        // A configured file that is missing or broken is an error naming the key.
        std::fs::write(dir.path().join("asn.tsv"), "not a tsv\n").unwrap();
        let e = c.data_options().pipeline().unwrap_err();
        assert!(e.to_string().contains("data.asn_db"), "{e}");
        let mut missing = c.data_options();
        missing.asn_db = None;
        missing.crawler_ranges[0].file = dir.path().join("nope.json");
        let e = missing.pipeline().unwrap_err();
        assert!(e.to_string().contains("data.crawler_ranges"), "{e}");
        // Nothing configured: defaults (private proxies trusted, no files).
        let plain = ClientConfig::from_toml_str(MINIMAL)
            .unwrap()
            .data_options()
            .pipeline()
            .unwrap();
        assert!(plain.enrichment.asn.is_none() && plain.enrichment.crawlers.is_empty());
        assert_eq!(plain.reader.client_ip.trusted_proxies.len(), 7);
    }
}
