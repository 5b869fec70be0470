//! `client.toml`: the configuration file of `fedsec-client run` (and of
//! `model pull`). Every key, its default and its meaning is listed in the
//! crate README; unknown keys are errors, and every validation error names
//! the key, e.g. `privacy.max_epsilon: must be > 0 (got -1)`.
//!
//! Relative paths in the file are resolved against the file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fedsec_detector::logs::LogFormat;
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
    /// `auto` (default), `clf` or `json`.
    #[serde(default)]
    pub format: LogFormat,
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

    /// A participant builder with everything from this file.
    pub fn builder(&self) -> ParticipantBuilder {
        let d = &self.data;
        let t = &self.timing;
        let ms = Duration::from_millis;
        let mut b = crate::Participant::builder()
            .endpoint(&self.endpoint)
            .tls_files(self.tls.clone())
            .data(self.data_source())
            .data_options(DataOptions {
                format: d.format,
                sessions: fedsec_detector::session::SessionConfig {
                    idle_timeout_ms: d.session_idle_timeout_ms,
                    ..Default::default()
                },
                holdout_fraction: d.holdout_fraction,
                max_examples: d.max_examples,
                min_examples: d.min_examples,
                rescan_interval: ms(d.rescan_interval_ms),
            })
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
        assert!(c.privacy.refuse_noise_disabled);
        assert!(
            !c.privacy.trust_coordinator_sampling,
            "participation basis by default"
        );
        assert_eq!(c.privacy.min_batch_size, 16);
        assert_eq!(c.privacy.min_examples_per_update, 32);
        assert_eq!(c.privacy.max_learning_rate_steps, 100.0);
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
                MINIMAL.replace("max_epsilon = 8.0", "max_epsilon = 8.0\nmin_batch_size = 0"),
                "privacy.min_batch_size",
            ),
        ];
        for (text, key) in cases {
            let e = ClientConfig::from_toml_str(&text).unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
        // Unknown keys and missing required keys: the parser names them.
        let e = ClientConfig::from_toml_str(&format!("{MINIMAL}\nbogus = 1\n")).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = ClientConfig::from_toml_str(&MINIMAL.replace("max_epsilon = 8.0", "")).unwrap_err();
        assert!(e.to_string().contains("max_epsilon"), "{e}");
        // The old key is gone (its meaning changed): the parser names the new one.
        let e = ClientConfig::from_toml_str(&MINIMAL.replace(
            "max_epsilon = 8.0",
            "max_epsilon = 8.0\namplification = true",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("trust_coordinator_sampling"), "{e}");
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
}
