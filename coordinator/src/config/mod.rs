//! Configuration: the coordinator's TOML file and job definitions.
//!
//! [`CoordinatorConfig`] is what `fedsec-coordinator serve --config FILE`
//! reads; [`JobSpec`] is one job, either from a `[[jobs]]` table of that file,
//! from the `jobs create --file` admin command, or from the Admin API's
//! `JobConfig` message ([`JobSpec::from_proto`]). Unknown keys are errors,
//! every default is documented on its field (and in the crate README), and
//! [`CoordinatorConfig::validate`] / [`JobSpec::validate`] name the offending
//! key, e.g. `jobs[0].clipping.clip_norm: must be > 0 (got -1)`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use fedsec_privacy::NoiseKind;
use fedsec_proto::tls::{TlsFiles, is_valid_id};
use serde::{Deserialize, Serialize};

use fedsec_proto::config_file;
pub use fedsec_proto::config_file::ConfigError;

type CResult<T = ()> = Result<T, ConfigError>;

pub use crate::alerts::{AlertFormat, AlertsConfig};
pub use crate::auth::config::{AuthConfig, ScopeNames, TokensConfig};
pub use crate::limits::{LimitsConfig, RateLimitsConfig};

/// The coordinator's configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// gRPC listen address (TLS 1.3, client certificates required).
    /// Default `0.0.0.0:7443`; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory of the SQLite database (`coordinator.db`) and the lock file.
    /// Created if missing. Default `fedsec-data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Server certificate, key and the client CA. Required by `serve`; an
    /// embedding program may pass a `ServerTls` directly instead.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Admin names (`spiffe://fedsec/admin/<name>` certificates) allowed to call
    /// the Admin service. Default empty: nobody can administer.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Suggested interval between clients' `GetTask` polls, in ms. Default 2000.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Resource limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Per-identity rate limits of the gRPC calls.
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    /// Storage options (encryption at rest).
    #[serde(default)]
    pub storage: StorageConfig,
    /// The release signing key (issue 21).
    #[serde(default)]
    pub signing: SigningConfig,
    /// Authentication on top of mTLS: `[auth.tokens]` (OAuth2 / OIDC bearer
    /// tokens). Default: none (the client certificate alone).
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[alerts]`: the webhook alert sink. Default none: no alerts.
    #[serde(default)]
    pub alerts: Option<AlertsConfig>,
    /// Directory of the files jobs may name as `init_weights_path`: only
    /// regular files inside it (after resolving symlinks) are read, at most
    /// `limits.max_init_weights_bytes`. A relative `init_weights_path` in
    /// `CreateJob` is resolved against it. Default none: no job may use
    /// `init_weights_path`.
    #[serde(default)]
    pub init_weights_dir: Option<PathBuf>,
    /// Unsafe settings for tests and simulations. Absent by default; its
    /// presence is logged at start and at every round of a job that uses it.
    #[serde(default)]
    pub dangerous: Option<DangerousConfig>,
    /// Jobs to create at start if no job with their id exists yet.
    #[serde(default)]
    pub jobs: Vec<JobSpec>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("fedsec-data")
}
fn default_poll_interval_ms() -> u64 {
    2000
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            tls: None,
            admins: Vec::new(),
            poll_interval_ms: default_poll_interval_ms(),
            metrics: MetricsConfig::default(),
            limits: LimitsConfig::default(),
            rate_limits: RateLimitsConfig::default(),
            storage: StorageConfig::default(),
            signing: SigningConfig::default(),
            auth: AuthConfig::default(),
            alerts: None,
            init_weights_dir: None,
            dangerous: None,
            jobs: Vec::new(),
        }
    }
}

/// The Prometheus `/metrics` HTTP endpoint. Its round-level counts
/// (participants per round, rejections) are for the platform team, inside
/// the trust boundary: they are not noised, so the endpoint must never be
/// public.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Listen address. Default `127.0.0.1:9464` (loopback only); port 0
    /// picks a free port. Any other address needs `bearer_token_file`.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
    /// File holding the bearer token scrapers must send
    /// (`Authorization: Bearer <token>`): at least 32 characters, the file
    /// not readable by group or others. The token is never logged. Default
    /// none (loopback only).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// Serve `/metrics` over TLS 1.3 with the gRPC server's certificate and
    /// key (`tls.cert`, `tls.key`; no client certificate), so the token
    /// never crosses the network in clear. Default `false`.
    #[serde(default)]
    pub tls: bool,
}

fn yes() -> bool {
    true
}
fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: default_metrics_listen(),
            bearer_token_file: None,
            tls: false,
        }
    }
}

/// Storage options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// File holding the 256-bit key that seals model versions, ledger
    /// charges and the selection key at rest (ChaCha20-Poly1305): 64 hex
    /// digits, optionally followed by a newline; mode 0600 or stricter
    /// (`fedsec-coordinator keys generate --out FILE` writes one). Default
    /// none: stored in clear. A database written with a key cannot be
    /// opened without it, and vice versa.
    #[serde(default)]
    pub encryption_key_file: Option<PathBuf>,
}

/// `[signing]`: the Ed25519 key that signs every served model version and
/// its receipt (clients verify with its public key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// PKCS#8 PEM private key, mode 0600 or stricter
    /// (`fedsec-coordinator keys generate --signing --out FILE` writes it
    /// and its public key `FILE`'s stem + `.pub.pem`). Must exist when set.
    /// Default none: `<data_dir>/release-signing.pem`, created with its
    /// public key on first start if missing.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// File name of the default release signing key in the data directory.
pub const DEFAULT_SIGNING_KEY_FILE: &str = "release-signing.pem";

impl SigningConfig {
    /// The key file in force and whether it may be created (only the default one).
    pub fn key_path(&self, data_dir: &Path) -> (PathBuf, bool) {
        match &self.key_file {
            Some(p) => (p.clone(), false),
            None => (data_dir.join(DEFAULT_SIGNING_KEY_FILE), true),
        }
    }
}

/// Settings that void the privacy guarantee. For tests and simulations only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DangerousConfig {
    /// Allow jobs with `noise_source = "simulation"` (fast noise that is not
    /// floating-point safe). Default `false`.
    #[serde(default)]
    pub allow_simulation_noise: bool,
    /// Allow jobs with `disable_noise = true` (no privacy at all). Default `false`.
    #[serde(default)]
    pub allow_disabled_noise: bool,
}

impl CoordinatorConfig {
    /// Reads, parses and validates a TOML file. Relative paths in it
    /// (`data_dir`, `tls.*`, `jobs[].init_weights_path`) are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> CResult<Self> {
        let (mut config, base) = config_file::load(path, Self::from_toml_str)?;
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Parses and validates TOML text (paths are kept as written).
    pub fn from_toml_str(text: &str) -> CResult<Self> {
        let mut config: Self = config_file::parse(text)?;
        for job in &mut config.jobs {
            job.fill_defaults();
        }
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| config_file::resolve(base, p);
        fix(&mut self.data_dir);
        if let Some(k) = &mut self.storage.encryption_key_file {
            fix(k);
        }
        if let Some(k) = &mut self.signing.key_file {
            fix(k);
        }
        if let Some(t) = &mut self.metrics.bearer_token_file {
            fix(t);
        }
        if let Some(d) = &mut self.init_weights_dir {
            fix(d);
        }
        if let Some(t) = &mut self.auth.tokens {
            t.resolve_paths(base);
        }
        if let Some(a) = &mut self.alerts {
            a.resolve_paths(base);
        }
        if let Some(tls) = &mut self.tls {
            fix(&mut tls.ca);
            fix(&mut tls.cert);
            fix(&mut tls.key);
        }
        for job in &mut self.jobs {
            if let Some(p) = &mut job.init_weights_path {
                fix(p);
            }
        }
    }

    /// `/metrics` stays on loopback unless a bearer token protects it.
    fn validate_metrics(&self) -> CResult {
        let m = &self.metrics;
        if !m.enabled {
            return Ok(());
        }
        if let Some(t) = &m.bearer_token_file
            && t.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(
                "metrics.bearer_token_file",
                "must not be empty when set",
            ));
        }
        if !m.listen.ip().is_loopback() && m.bearer_token_file.is_none() {
            return Err(ConfigError::invalid(
                "metrics.bearer_token_file",
                format!(
                    "required when metrics.listen ({}) is not a loopback address: the metrics \
                     carry exact per-round counts and must never be public",
                    m.listen
                ),
            ));
        }
        Ok(())
    }

    /// The dangerous settings in force (all `false` without a `[dangerous]` section).
    pub fn dangerous(&self) -> DangerousConfig {
        self.dangerous.clone().unwrap_or_default()
    }

    /// Checks every value; the error names the first offending key.
    pub fn validate(&self) -> CResult {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        if self
            .signing
            .key_file
            .as_ref()
            .is_some_and(|k| k.as_os_str().is_empty())
        {
            return Err(ConfigError::invalid(
                "signing.key_file",
                "must not be empty when set",
            ));
        }
        for (i, name) in self.admins.iter().enumerate() {
            if !is_valid_id(name) {
                return Err(ConfigError::invalid(
                    format!("admins[{i}]"),
                    format!(
                        "{name:?} is not a valid admin name ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})"
                    ),
                ));
            }
        }
        if !(10..=3_600_000).contains(&self.poll_interval_ms) {
            return Err(ConfigError::invalid(
                "poll_interval_ms",
                format!("must be in 10..=3600000 (got {})", self.poll_interval_ms),
            ));
        }
        self.limits.validate()?;
        self.validate_metrics()?;
        self.rate_limits.validate()?;
        if let Some(t) = &self.auth.tokens {
            t.validate()?;
        }
        if let Some(a) = &self.alerts {
            a.validate()?;
        }
        if let Some(k) = &self.storage.encryption_key_file
            && k.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(
                "storage.encryption_key_file",
                "must not be empty when set",
            ));
        }
        if let Some(d) = &self.init_weights_dir
            && d.as_os_str().is_empty()
        {
            return Err(ConfigError::invalid(
                "init_weights_dir",
                "must not be empty when set",
            ));
        }
        let dangerous = self.dangerous();
        let mut ids = std::collections::HashSet::new();
        for (i, job) in self.jobs.iter().enumerate() {
            let key = format!("jobs[{i}]");
            if job.id.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.id"),
                    "required for jobs in the config file (a restart must not create the job again)",
                ));
            }
            if !ids.insert(job.id.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.id"),
                    format!("duplicate job id {:?}", job.id),
                ));
            }
            job.validate(&key, &dangerous)?;
            if job.init_weights_path.is_some() && self.init_weights_dir.is_none() {
                return Err(ConfigError::invalid(
                    format!("{key}.init_weights_path"),
                    "set init_weights_dir (the directory initial-weight files must be in) to use it",
                ));
            }
        }
        Ok(())
    }
}

mod job;
mod job_check;
mod job_wire;
mod screen;

pub use job::*;
pub use screen::{ScreenPolicyKind, ScreenSpec};

#[cfg(test)]
mod tests;
