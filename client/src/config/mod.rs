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

use crate::data::{DataOptions, DataSource, LabelOptions, LabelledLog};
use crate::error::BuildError;
use crate::participant::{ParticipantBuilder, Timing};
use crate::policy::{PrivacyPolicy, TrainingLimits};

use fedsec_proto::config_file;
pub use fedsec_proto::config_file::ConfigError;

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
    /// The coordinator's release public key (SPKI PEM,
    /// `release-signing.pub.pem`, shipped with the CA bundle): every
    /// downloaded model's signature is checked against it before it is
    /// installed or trained on. Required by `run` and `model pull`.
    #[serde(default)]
    pub release_public_key: Option<PathBuf>,
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
    /// Weak labels for sessions without ground truth (`[labels]`,
    /// `[labels.rules]`, `[labels.outcomes]`).
    #[serde(default)]
    pub labels: LabelOptions,
    /// Authentication on top of mTLS (coordinators with `[auth.tokens]`).
    #[serde(default)]
    pub auth: AuthConfig,
}

/// The `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// File holding the bearer token (a JWT from the platform's IdP or
    /// `fedsec-coordinator tokens issue`) sent on every call; re-read when
    /// it changes; mode 0600. Default none: no token (mTLS alone).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("fedsec-client-state")
}

impl ClientConfig {
    /// Reads, parses and validates a file; relative paths are resolved
    /// against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let (mut c, base) = config_file::load(path, Self::from_toml_str)?;
        c.resolve_paths(&base);
        Ok(c)
    }

    /// Parses and validates TOML text (paths kept as written).
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let c: Self = config_file::parse(text)?;
        c.validate()?;
        Ok(c)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| config_file::resolve(base, p);
        fix(&mut self.state_dir);
        fix(&mut self.tls.ca);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        if let Some(k) = &mut self.release_public_key {
            fix(k);
        }
        for f in &mut self.data.files {
            fix(&mut f.log);
            if let Some(l) = &mut f.labels {
                fix(l);
            }
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
        for f in &mut self.labels.outcomes_files {
            fix(f);
        }
        if let Some(t) = &mut self.auth.token_file {
            fix(t);
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
        if let Some(t) = &self.auth.token_file
            && t.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(
                "auth.token_file",
                "must not be empty when set",
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
        self.labels
            .check()
            .map_err(|(key, problem)| ConfigError::invalid(&key, problem))?;
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
            labels: self.labels.clone(),
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
        if let Some(k) = &self.release_public_key {
            b = b.release_public_key_file(k);
        }
        if let Some(t) = &self.auth.token_file {
            b = b.token_file(t);
        }
        b
    }
}

#[cfg(test)]
mod tests;
