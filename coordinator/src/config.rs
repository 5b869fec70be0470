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
use fedsec_proto::model::ModelSpec;
use fedsec_proto::tls::{TlsFiles, is_valid_id};
use fedsec_proto::v1;
use serde::{Deserialize, Serialize};

/// Why a configuration cannot be used.
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
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line, column and key).
        message: String,
    },
    /// A value is out of range or inconsistent with another one.
    #[error("{key}: {problem}")]
    Invalid {
        /// Dotted path of the offending key, e.g. `jobs[0].delta`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    /// An invalid value at `key`.
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
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

type CResult<T = ()> = Result<T, ConfigError>;

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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses and validates TOML text (paths are kept as written).
    pub fn from_toml_str(text: &str) -> CResult<Self> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        for job in &mut config.jobs {
            job.fill_defaults();
        }
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        if let Some(k) = &mut self.storage.encryption_key_file {
            fix(k);
        }
        if let Some(t) = &mut self.metrics.bearer_token_file {
            fix(t);
        }
        if let Some(d) = &mut self.init_weights_dir {
            fix(d);
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

/// Local optimiser clients use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalOptimizerKind {
    /// SGD with optional momentum (the default).
    #[default]
    Sgd,
    /// Adam with default betas.
    Adam,
}

/// Clipping of client updates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClippingSpec {
    /// Fixed clip norm C, or the initial C of adaptive clipping. Default 1.0.
    #[serde(default = "one")]
    pub clip_norm: f64,
    /// Adaptive clipping (Andrew et al. 2021). Default `false`.
    #[serde(default)]
    pub adaptive: bool,
    /// Target quantile γ of update norms (adaptive only). Default 0.5.
    #[serde(default = "half")]
    pub target_quantile: f64,
    /// Geometric learning rate η of C (adaptive only). Default 0.2.
    #[serde(default = "default_clip_lr")]
    pub learning_rate: f64,
    /// Stddev σ_b of the noise on the clipped count (adaptive only).
    /// Default 0, meaning expected cohort / 20 (resolved at job start).
    #[serde(default)]
    pub count_stddev: f64,
}

fn one() -> f64 {
    1.0
}
fn half() -> f64 {
    0.5
}
fn default_clip_lr() -> f64 {
    0.2
}

impl Default for ClippingSpec {
    fn default() -> Self {
        Self {
            clip_norm: 1.0,
            adaptive: false,
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_stddev: 0.0,
        }
    }
}

/// Local training handed to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Passes over local data. Default 1.
    #[serde(default = "default_epochs")]
    pub local_epochs: u32,
    /// Minibatch size. Default 32.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// Local learning rate. Default 0.05.
    #[serde(default = "default_local_lr")]
    pub learning_rate: f64,
    /// `sgd` (default) or `adam`.
    #[serde(default)]
    pub optimizer: LocalOptimizerKind,
    /// SGD momentum; 0 disables it. Default 0.
    #[serde(default)]
    pub momentum: f64,
    /// Weight bot examples by the local negative/positive ratio. Default `false`.
    #[serde(default)]
    pub class_weighting: bool,
    /// Cap on local steps per round; 0 = none. Default 0.
    #[serde(default)]
    pub max_steps: u32,
}

fn default_epochs() -> u32 {
    1
}
fn default_batch() -> u32 {
    32
}
fn default_local_lr() -> f64 {
    0.05
}

impl Default for TrainingSpec {
    fn default() -> Self {
        Self {
            local_epochs: 1,
            batch_size: 32,
            learning_rate: 0.05,
            optimizer: LocalOptimizerKind::Sgd,
            momentum: 0.0,
            class_weighting: false,
            max_steps: 0,
        }
    }
}

/// Server optimiser (post-processing; costs no privacy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerOptimizerSpec {
    /// Server learning rate; 1 is plain FedAvg. Default 1.0.
    #[serde(default = "one")]
    pub learning_rate: f64,
    /// FedAvgM momentum β; 0 disables it. Default 0.
    #[serde(default)]
    pub momentum: f64,
}

impl Default for ServerOptimizerSpec {
    fn default() -> Self {
        Self {
            learning_rate: 1.0,
            momentum: 0.0,
        }
    }
}

/// Canary audit settings (see [`crate::canary`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSpec {
    /// Inserted canaries k (as many unseen ones are drawn); 0 disables the
    /// audit, otherwise 2..=100000. Default 0.
    #[serde(default)]
    pub canaries: u32,
    /// Seed of the canary directions. Default 0.
    #[serde(default)]
    pub seed: u64,
}

/// One job's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job id (`[A-Za-z0-9][A-Za-z0-9._-]{0,63}`). Required in the config
    /// file; empty in `CreateJob` means the coordinator generates one.
    #[serde(default)]
    pub id: String,
    /// Human-readable name. Default empty.
    #[serde(default)]
    pub name: String,
    /// Model architecture, e.g. `{ kind = "mlp", input_dim = 25, hidden = [64] }`. Required.
    pub model: ModelSpec,
    /// Seed of the initial weights (when `init_weights_path` is not set). Default 0.
    #[serde(default)]
    pub init_seed: u64,
    /// safetensors file with the initial weights (names `layers.{l}.weight`
    /// / `layers.{l}.bias`, f32). Default: none (seeded initialisation).
    #[serde(default)]
    pub init_weights_path: Option<PathBuf>,
    /// Rounds to run (the budget may stop the job earlier). Default 100.
    #[serde(default = "default_rounds")]
    pub rounds: u64,
    /// Number of tenants N the job is sized for: a declared, public
    /// parameter (the privacy unit is the tenant). The fixed denominator is
    /// `q × population`; it never depends on who registered or reported.
    /// Required for new jobs (jobs stored before it existed keep the count
    /// registered when they started).
    #[serde(default)]
    pub population: Option<u64>,
    /// Poisson sampling rate q in (0, 1] of each tenant. One of
    /// `sampling_rate` and `expected_cohort` is required.
    #[serde(default)]
    pub sampling_rate: Option<f64>,
    /// Expected cohort size m: q = m / `population`.
    #[serde(default)]
    pub expected_cohort: Option<u32>,
    /// Relative drift of the registered tenant count from `population`
    /// above which the coordinator warns (log, audit event and the
    /// `fedsec_population_drift` metric). Privacy does not depend on it (q
    /// is each tenant's inclusion probability whatever the count); the
    /// fixed denominator only fits the data when the population is right.
    /// Default 0.2.
    #[serde(default = "default_population_drift")]
    pub population_drift: f64,
    /// Clipping.
    #[serde(default)]
    pub clipping: ClippingSpec,
    /// Noise multiplier z. Default 1.0 when `target_epsilon` is not set.
    #[serde(default)]
    pub noise_multiplier: Option<f64>,
    /// Target ε after `rounds` rounds at `delta`; z is calibrated (PLD) at job start.
    #[serde(default)]
    pub target_epsilon: Option<f64>,
    /// δ of the guarantee, in (0, 1). Default 1e-5.
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// Hard ε budget (PLD) at `delta`. Default: `target_epsilon` if set, else none.
    #[serde(default)]
    pub epsilon_budget: Option<f64>,
    /// Smallest *expected* cohort `q × population` the job may be created
    /// with (a data-independent check; rounds are released whatever their
    /// realised cohort, including 0 reports). Default 2.
    #[serde(default = "default_min_clients")]
    pub min_clients: u32,
    /// Time a round stays open for submissions, in ms. Default 60000.
    #[serde(default = "default_deadline_ms")]
    pub round_deadline_ms: u64,
    /// Close every round at its deadline, even when every selected tenant
    /// has already reported. Then a new version's publication time does not
    /// depend on who was selected or how fast they were (a timing channel
    /// the accountant does not cover), at the price of rounds that always
    /// last `round_deadline_ms`. Default `false` (close as soon as the whole
    /// cohort reported).
    #[serde(default)]
    pub close_at_deadline: bool,
    /// Local training.
    #[serde(default)]
    pub training: TrainingSpec,
    /// Server optimiser.
    #[serde(default)]
    pub server_optimizer: ServerOptimizerSpec,
    /// `opendp` (default) or `simulation` (needs `dangerous.allow_simulation_noise`).
    #[serde(default)]
    pub noise_source: NoiseKind,
    /// Publish without noise (needs `dangerous.allow_disabled_noise`). Default `false`.
    #[serde(default)]
    pub disable_noise: bool,
    /// Canary audit (empirical ε and lower bounds computed when the job ends).
    #[serde(default)]
    pub audit: Option<AuditSpec>,
}

fn default_rounds() -> u64 {
    100
}
fn default_delta() -> f64 {
    1e-5
}
fn default_min_clients() -> u32 {
    2
}
fn default_population_drift() -> f64 {
    0.2
}
fn default_deadline_ms() -> u64 {
    60_000
}

/// Largest declared population.
pub const MAX_POPULATION: u64 = 1_000_000_000;

/// Default noise multiplier when neither z nor a target ε is given.
pub const DEFAULT_NOISE_MULTIPLIER: f64 = 1.0;

/// How a job chooses its sampling rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// A fixed q.
    Rate(f64),
    /// An expected cohort m; q = m / N at job start.
    Cohort(u32),
}

/// How a job chooses its noise multiplier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoiseLevel {
    /// A fixed z.
    Multiplier(f64),
    /// A target ε after `rounds` rounds.
    TargetEpsilon(f64),
}

fn positive_finite(key: &str, v: f64) -> CResult {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, format!("must be > 0 (got {v})")))
    }
}

fn in_unit_open(key: &str, v: f64) -> CResult {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be in (0, 1) (got {v})"),
        ))
    }
}

fn momentum_range(key: &str, v: f64) -> CResult {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be in [0, 1) (got {v})"),
        ))
    }
}

impl JobSpec {
    /// A job with every default, the given model, sampling rate q and
    /// declared population (tenants).
    pub fn new(
        id: impl Into<String>,
        model: ModelSpec,
        sampling_rate: f64,
        population: u64,
    ) -> Self {
        Self {
            id: id.into(),
            name: String::new(),
            model,
            init_seed: 0,
            init_weights_path: None,
            rounds: default_rounds(),
            population: Some(population),
            sampling_rate: Some(sampling_rate),
            expected_cohort: None,
            population_drift: default_population_drift(),
            clipping: ClippingSpec::default(),
            noise_multiplier: None,
            target_epsilon: None,
            delta: default_delta(),
            epsilon_budget: None,
            min_clients: default_min_clients(),
            round_deadline_ms: default_deadline_ms(),
            close_at_deadline: false,
            training: TrainingSpec::default(),
            server_optimizer: ServerOptimizerSpec::default(),
            noise_source: NoiseKind::default(),
            disable_noise: false,
            audit: None,
        }
    }

    /// Makes implicit defaults explicit (today: z = 1 when neither
    /// `noise_multiplier` nor `target_epsilon` is set), so a stored
    /// definition never depends on a default that might change.
    pub fn fill_defaults(&mut self) {
        if self.noise_multiplier.is_none() && self.target_epsilon.is_none() {
            self.noise_multiplier = Some(DEFAULT_NOISE_MULTIPLIER);
        }
    }

    /// The sampling choice (call after [`validate`](Self::validate)).
    pub fn sampling(&self) -> Sampling {
        match (self.sampling_rate, self.expected_cohort) {
            (_, Some(m)) => Sampling::Cohort(m),
            (Some(q), None) => Sampling::Rate(q),
            (None, None) => Sampling::Rate(1.0),
        }
    }

    /// The sampling rate q and the expected cohort `q × population` (the
    /// fixed denominator) for a declared population; `None` without one.
    pub fn cohort(&self) -> Option<(f64, f64)> {
        let n = self.population? as f64;
        Some(match self.sampling() {
            Sampling::Rate(q) => (q, q * n),
            Sampling::Cohort(m) => (f64::from(m) / n, f64::from(m)),
        })
    }

    /// The noise choice (call after [`validate`](Self::validate)).
    pub fn noise_level(&self) -> NoiseLevel {
        match (self.noise_multiplier, self.target_epsilon) {
            (_, Some(eps)) => NoiseLevel::TargetEpsilon(eps),
            (Some(z), None) => NoiseLevel::Multiplier(z),
            (None, None) => NoiseLevel::Multiplier(DEFAULT_NOISE_MULTIPLIER),
        }
    }

    /// The hard ε budget, if any: `epsilon_budget`, else `target_epsilon`.
    pub fn budget(&self) -> Option<f64> {
        self.epsilon_budget.or(self.target_epsilon)
    }

    /// Why the `[dangerous]` settings in force forbid this job, if they do
    /// (simulation noise or disabled noise without its flag). Checked at
    /// creation and again for every stored job at every start and resume.
    pub fn dangerous_violation(&self, dangerous: &DangerousConfig) -> Option<String> {
        if self.noise_source == NoiseKind::Simulation && !dangerous.allow_simulation_noise {
            return Some(
                "it uses noise_source = \"simulation\" (not floating-point safe) and the \
                 coordinator config no longer has [dangerous] allow_simulation_noise = true"
                    .into(),
            );
        }
        if self.disable_noise && !dangerous.allow_disabled_noise {
            return Some(
                "it publishes without noise (disable_noise = true) and the coordinator \
                 config no longer has [dangerous] allow_disabled_noise = true"
                    .into(),
            );
        }
        None
    }

    /// Checks every value; `key` prefixes the offending key in the error
    /// (e.g. `jobs[0]`). `dangerous` decides whether unsafe noise settings
    /// are allowed.
    pub fn validate(&self, key: &str, dangerous: &DangerousConfig) -> CResult {
        let k = |field: &str| format!("{key}.{field}");
        if !self.id.is_empty() && !is_valid_id(&self.id) {
            return Err(ConfigError::invalid(
                k("id"),
                format!(
                    "{} is not a valid id ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})",
                    crate::fields::shown(&self.id)
                ),
            ));
        }
        if self.name.len() > crate::fields::MAX_NAME_BYTES {
            return Err(ConfigError::invalid(
                k("name"),
                format!("longer than {} bytes", crate::fields::MAX_NAME_BYTES),
            ));
        }
        self.model
            .validate()
            .map_err(|e| ConfigError::invalid(k("model"), e.to_string()))?;
        if !(1..=1_000_000).contains(&self.rounds) {
            return Err(ConfigError::invalid(
                k("rounds"),
                format!("must be in 1..=1000000 (got {})", self.rounds),
            ));
        }
        match (self.sampling_rate, self.expected_cohort) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    k("sampling_rate"),
                    "set either sampling_rate or expected_cohort, not both",
                ));
            }
            (None, None) => {
                return Err(ConfigError::invalid(
                    k("sampling_rate"),
                    "one of sampling_rate or expected_cohort is required",
                ));
            }
            (Some(q), None) => {
                if !(q > 0.0 && q <= 1.0) {
                    return Err(ConfigError::invalid(
                        k("sampling_rate"),
                        format!("must be in (0, 1] (got {q})"),
                    ));
                }
            }
            (None, Some(m)) => {
                if m == 0 {
                    return Err(ConfigError::invalid(
                        k("expected_cohort"),
                        "must be at least 1",
                    ));
                }
            }
        }
        let c = &self.clipping;
        positive_finite(&k("clipping.clip_norm"), c.clip_norm)?;
        if c.adaptive {
            in_unit_open(&k("clipping.target_quantile"), c.target_quantile)?;
            positive_finite(&k("clipping.learning_rate"), c.learning_rate)?;
            if !(c.count_stddev.is_finite() && c.count_stddev >= 0.0) {
                return Err(ConfigError::invalid(
                    k("clipping.count_stddev"),
                    format!("must be >= 0 (got {})", c.count_stddev),
                ));
            }
            if self.disable_noise {
                return Err(ConfigError::invalid(
                    k("clipping.adaptive"),
                    "adaptive clipping needs noise; it cannot be combined with disable_noise",
                ));
            }
        }
        match (self.noise_multiplier, self.target_epsilon) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    k("noise_multiplier"),
                    "set either noise_multiplier or target_epsilon, not both",
                ));
            }
            (Some(z), None) => positive_finite(&k("noise_multiplier"), z)?,
            (None, Some(eps)) => positive_finite(&k("target_epsilon"), eps)?,
            (None, None) => {}
        }
        in_unit_open(&k("delta"), self.delta)?;
        if self.delta < fedsec_privacy::accounting::pld::DELTA_FLOOR {
            return Err(ConfigError::invalid(
                k("delta"),
                format!(
                    "must be at least {:e}, the smallest δ the PLD accountant answers for (got {:e})",
                    fedsec_privacy::accounting::pld::DELTA_FLOOR,
                    self.delta
                ),
            ));
        }
        if let Some(b) = self.epsilon_budget {
            positive_finite(&k("epsilon_budget"), b)?;
        }
        self.validate_population(&k)?;
        if !(50..=86_400_000).contains(&self.round_deadline_ms) {
            return Err(ConfigError::invalid(
                k("round_deadline_ms"),
                format!("must be in 50..=86400000 (got {})", self.round_deadline_ms),
            ));
        }
        let t = &self.training;
        if t.local_epochs == 0 {
            return Err(ConfigError::invalid(
                k("training.local_epochs"),
                "must be at least 1",
            ));
        }
        if t.batch_size == 0 {
            return Err(ConfigError::invalid(
                k("training.batch_size"),
                "must be at least 1",
            ));
        }
        positive_finite(&k("training.learning_rate"), t.learning_rate)?;
        momentum_range(&k("training.momentum"), t.momentum)?;
        positive_finite(
            &k("server_optimizer.learning_rate"),
            self.server_optimizer.learning_rate,
        )?;
        momentum_range(
            &k("server_optimizer.momentum"),
            self.server_optimizer.momentum,
        )?;
        if self.noise_source == NoiseKind::Simulation && !dangerous.allow_simulation_noise {
            return Err(ConfigError::invalid(
                k("noise_source"),
                "\"simulation\" noise is not floating-point safe; refused unless the \
                 coordinator config has [dangerous] allow_simulation_noise = true",
            ));
        }
        if self.disable_noise {
            if !dangerous.allow_disabled_noise {
                return Err(ConfigError::invalid(
                    k("disable_noise"),
                    "publishing without noise voids all privacy; refused unless the \
                     coordinator config has [dangerous] allow_disabled_noise = true",
                ));
            }
            if self.target_epsilon.is_some() || self.epsilon_budget.is_some() {
                return Err(ConfigError::invalid(
                    k("disable_noise"),
                    "an ε target or budget cannot be met without noise",
                ));
            }
        }
        if let Some(a) = &self.audit
            && (a.canaries == 1 || a.canaries > crate::canary::MAX_CANARIES)
        {
            return Err(ConfigError::invalid(
                k("audit.canaries"),
                format!(
                    "must be 0 (no audit) or 2..={} (got {})",
                    crate::canary::MAX_CANARIES,
                    a.canaries
                ),
            ));
        }
        if let Some(p) = &self.init_weights_path {
            if p.as_os_str().is_empty() {
                return Err(ConfigError::invalid(
                    k("init_weights_path"),
                    "must not be empty when set",
                ));
            }
            if p.as_os_str().len() > crate::fields::MAX_PATH_BYTES {
                return Err(ConfigError::invalid(
                    k("init_weights_path"),
                    format!(
                        "{} bytes, the limit is {}",
                        p.as_os_str().len(),
                        crate::fields::MAX_PATH_BYTES
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The declared population, the expected cohort and `min_clients`:
    /// data-independent checks, done when the job is created.
    fn validate_population(&self, k: &dyn Fn(&str) -> String) -> CResult {
        let Some(n) = self.population else {
            return Err(ConfigError::invalid(
                k("population"),
                "required: the number of tenants the job is sized for (public; the fixed \
                 denominator is sampling_rate × population)",
            ));
        };
        if !(1..=MAX_POPULATION).contains(&n) {
            return Err(ConfigError::invalid(
                k("population"),
                format!("must be in 1..={MAX_POPULATION} (got {n})"),
            ));
        }
        if let Some(m) = self.expected_cohort
            && u64::from(m) > n
        {
            return Err(ConfigError::invalid(
                k("expected_cohort"),
                format!("{m} is more than the population of {n} tenants (q would exceed 1)"),
            ));
        }
        if !(self.population_drift.is_finite() && self.population_drift > 0.0) {
            return Err(ConfigError::invalid(
                k("population_drift"),
                format!("must be > 0 (got {})", self.population_drift),
            ));
        }
        if self.min_clients == 0 {
            return Err(ConfigError::invalid(k("min_clients"), "must be at least 1"));
        }
        if let Some((q, cohort)) = self.cohort()
            && cohort < f64::from(self.min_clients)
        {
            return Err(ConfigError::invalid(
                k("min_clients"),
                format!(
                    "the expected cohort q × population = {q} × {n} = {cohort} is below \
                     min_clients = {} (min_clients is the smallest expected cohort a job may \
                     have; every round is released whatever its realised cohort)",
                    self.min_clients
                ),
            ));
        }
        Ok(())
    }

    /// Reads a job from the Admin API's `JobConfig`, filling defaults for
    /// zero/empty fields, and validates it (keys are prefixed `config.`).
    pub fn from_proto(msg: &v1::JobConfig, dangerous: &DangerousConfig) -> CResult<Self> {
        let model = msg
            .model_spec
            .as_ref()
            .ok_or_else(|| ConfigError::invalid("config.model_spec", "required"))?;
        let model = ModelSpec::from_proto(model)
            .map_err(|e| ConfigError::invalid("config.model_spec", e.to_string()))?;
        let mut spec = Self::new(msg.job_id.clone(), model, 1.0, 0);
        spec.name = msg.name.clone();
        spec.init_seed = msg.init_seed;
        spec.init_weights_path =
            (!msg.init_weights_path.is_empty()).then(|| PathBuf::from(&msg.init_weights_path));
        if msg.rounds != 0 {
            spec.rounds = msg.rounds;
        }
        match msg.sampling {
            Some(v1::job_config::Sampling::SamplingRate(q)) => spec.sampling_rate = Some(q),
            Some(v1::job_config::Sampling::ExpectedCohort(m)) => {
                spec.sampling_rate = None;
                spec.expected_cohort = Some(m);
            }
            None => spec.sampling_rate = None,
        }
        if let Some(c) = &msg.clipping {
            let d = ClippingSpec::default();
            spec.clipping = ClippingSpec {
                clip_norm: if c.clip_norm == 0.0 {
                    d.clip_norm
                } else {
                    c.clip_norm
                },
                adaptive: c.adaptive,
                target_quantile: if c.target_quantile == 0.0 {
                    d.target_quantile
                } else {
                    c.target_quantile
                },
                learning_rate: if c.learning_rate == 0.0 {
                    d.learning_rate
                } else {
                    c.learning_rate
                },
                count_stddev: c.count_stddev,
            };
        }
        match msg.noise {
            Some(v1::job_config::Noise::NoiseMultiplier(z)) => spec.noise_multiplier = Some(z),
            Some(v1::job_config::Noise::TargetEpsilon(e)) => spec.target_epsilon = Some(e),
            None => {}
        }
        if msg.delta != 0.0 {
            spec.delta = msg.delta;
        }
        spec.epsilon_budget = (msg.epsilon_budget != 0.0).then_some(msg.epsilon_budget);
        if msg.min_clients != 0 {
            spec.min_clients = msg.min_clients;
        }
        spec.population = (msg.population != 0).then_some(msg.population);
        if msg.population_drift != 0.0 {
            spec.population_drift = msg.population_drift;
        }
        if msg.round_deadline_ms != 0 {
            spec.round_deadline_ms = msg.round_deadline_ms;
        }
        spec.close_at_deadline = msg.close_at_deadline;
        if let Some(t) = &msg.training {
            let d = TrainingSpec::default();
            spec.training = TrainingSpec {
                local_epochs: if t.local_epochs == 0 {
                    d.local_epochs
                } else {
                    t.local_epochs
                },
                batch_size: if t.batch_size == 0 {
                    d.batch_size
                } else {
                    t.batch_size
                },
                learning_rate: if t.learning_rate == 0.0 {
                    d.learning_rate
                } else {
                    t.learning_rate
                },
                optimizer: match v1::LocalOptimizer::try_from(t.optimizer) {
                    Ok(v1::LocalOptimizer::Adam) => LocalOptimizerKind::Adam,
                    Ok(_) => LocalOptimizerKind::Sgd,
                    Err(_) => {
                        return Err(ConfigError::invalid(
                            "config.training.optimizer",
                            format!("unknown optimizer {}", t.optimizer),
                        ));
                    }
                },
                momentum: t.momentum,
                class_weighting: t.class_weighting,
                max_steps: t.max_steps,
            };
        }
        if let Some(o) = &msg.server_optimizer {
            spec.server_optimizer = ServerOptimizerSpec {
                learning_rate: if o.learning_rate == 0.0 {
                    1.0
                } else {
                    o.learning_rate
                },
                momentum: o.momentum,
            };
        }
        if msg.noise_source.len() > crate::fields::MAX_NOISE_SOURCE_BYTES {
            return Err(ConfigError::invalid(
                "config.noise_source",
                format!(
                    "{} bytes, the limit is {} (expected \"opendp\" or \"simulation\")",
                    msg.noise_source.len(),
                    crate::fields::MAX_NOISE_SOURCE_BYTES
                ),
            ));
        }
        spec.noise_source = if msg.noise_source.is_empty() {
            NoiseKind::default()
        } else {
            msg.noise_source
                .parse()
                .map_err(|e: fedsec_privacy::NoiseError| {
                    ConfigError::invalid("config.noise_source", e.to_string())
                })?
        };
        spec.disable_noise = msg.disable_noise;
        spec.audit = msg.audit.map(|a| AuditSpec {
            canaries: a.canaries,
            seed: a.seed,
        });
        spec.fill_defaults();
        spec.validate("config", dangerous)?;
        Ok(spec)
    }

    /// The job as the Admin API's `JobConfig` (defaults filled in).
    pub fn to_proto(&self) -> v1::JobConfig {
        v1::JobConfig {
            job_id: self.id.clone(),
            name: self.name.clone(),
            model_spec: Some(self.model.to_proto()),
            init_seed: self.init_seed,
            init_weights_path: self
                .init_weights_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            rounds: self.rounds,
            sampling: match self.sampling() {
                Sampling::Rate(q) => Some(v1::job_config::Sampling::SamplingRate(q)),
                Sampling::Cohort(m) => Some(v1::job_config::Sampling::ExpectedCohort(m)),
            },
            clipping: Some(v1::ClippingConfig {
                clip_norm: self.clipping.clip_norm,
                adaptive: self.clipping.adaptive,
                target_quantile: self.clipping.target_quantile,
                learning_rate: self.clipping.learning_rate,
                count_stddev: self.clipping.count_stddev,
            }),
            noise: match self.noise_level() {
                NoiseLevel::Multiplier(z) => Some(v1::job_config::Noise::NoiseMultiplier(z)),
                NoiseLevel::TargetEpsilon(e) => Some(v1::job_config::Noise::TargetEpsilon(e)),
            },
            delta: self.delta,
            epsilon_budget: self.epsilon_budget.unwrap_or(0.0),
            min_clients: self.min_clients,
            population: self.population.unwrap_or(0),
            population_drift: self.population_drift,
            round_deadline_ms: self.round_deadline_ms,
            close_at_deadline: self.close_at_deadline,
            training: Some(self.training_proto()),
            server_optimizer: Some(v1::ServerOptimizer {
                learning_rate: self.server_optimizer.learning_rate,
                momentum: self.server_optimizer.momentum,
            }),
            noise_source: self.noise_source.as_str().to_owned(),
            disable_noise: self.disable_noise,
            audit: self.audit.as_ref().map(|a| v1::AuditConfig {
                canaries: a.canaries,
                seed: a.seed,
            }),
        }
    }

    /// The local training config as sent in tasks.
    pub fn training_proto(&self) -> v1::TrainingConfig {
        let t = &self.training;
        v1::TrainingConfig {
            local_epochs: t.local_epochs,
            batch_size: t.batch_size,
            learning_rate: t.learning_rate,
            optimizer: match t.optimizer {
                LocalOptimizerKind::Sgd => v1::LocalOptimizer::Sgd,
                LocalOptimizerKind::Adam => v1::LocalOptimizer::Adam,
            } as i32,
            momentum: t.momentum,
            class_weighting: t.class_weighting,
            max_steps: t.max_steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        data_dir = "/tmp/x"
        admins = ["ops"]
        [tls]
        ca = "ca.pem"
        cert = "server.pem"
        key = "server.key"
        [[jobs]]
        id = "bots"
        model = { kind = "mlp", input_dim = 25, hidden = [64] }
        population = 50
        sampling_rate = 0.1
    "#;

    fn invalid_key(text: &str) -> String {
        match CoordinatorConfig::from_toml_str(text) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid-key error, got {other:?}"),
        }
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = CoordinatorConfig::from_toml_str(MINIMAL).unwrap();
        assert_eq!(c.listen, "0.0.0.0:7443".parse().unwrap());
        assert_eq!(c.poll_interval_ms, 2000);
        assert!(c.metrics.enabled);
        assert_eq!(c.metrics.listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(c.limits.max_concurrent_uploads, 8);
        assert!(c.dangerous.is_none());
        let j = &c.jobs[0];
        assert_eq!(j.rounds, 100);
        assert_eq!(j.clipping.clip_norm, 1.0);
        assert_eq!(j.delta, 1e-5);
        assert_eq!(j.min_clients, 2);
        assert_eq!(j.population, Some(50));
        assert_eq!(j.population_drift, 0.2);
        assert_eq!(j.cohort(), Some((0.1, 5.0)));
        assert_eq!(j.round_deadline_ms, 60_000);
        assert_eq!(j.noise_source, NoiseKind::OpenDp);
        assert_eq!(j.noise_level(), NoiseLevel::Multiplier(1.0));
        assert_eq!(j.sampling(), Sampling::Rate(0.1));
        assert_eq!(j.budget(), None);
    }

    #[test]
    fn errors_name_the_key() {
        let bad_clip = MINIMAL.replace(
            "sampling_rate = 0.1",
            "sampling_rate = 0.1\nclipping = { clip_norm = -1.0 }",
        );
        assert_eq!(invalid_key(&bad_clip), "jobs[0].clipping.clip_norm");
        let e = CoordinatorConfig::from_toml_str(&bad_clip).unwrap_err();
        assert_eq!(
            e.to_string(),
            "jobs[0].clipping.clip_norm: must be > 0 (got -1)"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "sampling_rate = 1.5")),
            "jobs[0].sampling_rate"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "expected_cohort = 0")),
            "jobs[0].expected_cohort"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "")),
            "jobs[0].sampling_rate"
        );
        assert_eq!(
            invalid_key(
                &MINIMAL.replace("sampling_rate = 0.1", "sampling_rate = 0.1\ndelta = 1.0")
            ),
            "jobs[0].delta"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("admins = [\"ops\"]", "admins = [\"bad name\"]")),
            "admins[0]"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("id = \"bots\"", "")),
            "jobs[0].id"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace("hidden = [64]", "hidden = []")),
            "jobs[0].model"
        );
    }

    #[test]
    fn population_is_declared_and_min_clients_bounds_the_expected_cohort() {
        let without = MINIMAL.replace("population = 50\n", "");
        let e = CoordinatorConfig::from_toml_str(&without).unwrap_err();
        assert_eq!(e.key(), Some("jobs[0].population"));
        assert!(e.to_string().contains("required"), "{e}");
        assert_eq!(
            invalid_key(&MINIMAL.replace("population = 50", "population = 0")),
            "jobs[0].population"
        );
        // q × population = 0.1 × 50 = 5: min_clients 5 is fine, 6 is not.
        let with_min = |m: u32| {
            MINIMAL.replace(
                "sampling_rate = 0.1",
                &format!("sampling_rate = 0.1\nmin_clients = {m}"),
            )
        };
        assert!(CoordinatorConfig::from_toml_str(&with_min(5)).is_ok());
        let e = CoordinatorConfig::from_toml_str(&with_min(6)).unwrap_err();
        assert_eq!(e.key(), Some("jobs[0].min_clients"));
        assert!(e.to_string().contains("expected cohort"), "{e}");
        assert_eq!(invalid_key(&with_min(0)), "jobs[0].min_clients");
        // An expected cohort fixes q = m / population.
        let cohort = MINIMAL.replace("sampling_rate = 0.1", "expected_cohort = 10");
        let c = CoordinatorConfig::from_toml_str(&cohort).unwrap();
        assert_eq!(c.jobs[0].cohort(), Some((0.2, 10.0)));
        assert_eq!(
            invalid_key(&MINIMAL.replace("sampling_rate = 0.1", "expected_cohort = 51")),
            "jobs[0].expected_cohort"
        );
        assert_eq!(
            invalid_key(&MINIMAL.replace(
                "sampling_rate = 0.1",
                "sampling_rate = 0.1\npopulation_drift = 0.0"
            )),
            "jobs[0].population_drift"
        );
    }

    #[test]
    fn init_weights_paths_need_init_weights_dir() {
        let with_path = MINIMAL.replace(
            "sampling_rate = 0.1",
            "sampling_rate = 0.1\ninit_weights_path = \"w.safetensors\"",
        );
        assert_eq!(invalid_key(&with_path), "jobs[0].init_weights_path");
        let with_dir = with_path.replacen(
            "admins = [\"ops\"]",
            "admins = [\"ops\"]\ninit_weights_dir = \"weights\"",
            1,
        );
        let c = CoordinatorConfig::from_toml_str(&with_dir).unwrap();
        assert_eq!(c.init_weights_dir.as_deref(), Some(Path::new("weights")));
    }

    #[test]
    fn the_example_config_is_valid() {
        let c =
            CoordinatorConfig::from_toml_str(include_str!("../coordinator.example.toml")).unwrap();
        assert_eq!(c.jobs.len(), 1);
        let j = &c.jobs[0];
        assert_eq!(j.noise_level(), NoiseLevel::TargetEpsilon(8.0));
        assert_eq!(j.budget(), Some(8.0));
        assert_eq!(j.model.num_params(), 51 * 64 + 64 + 64 + 1);
        // Every default written in the example is the real default.
        let d = CoordinatorConfig::default();
        assert_eq!(
            (c.listen, c.poll_interval_ms),
            (d.listen, d.poll_interval_ms)
        );
        assert_eq!(c.metrics, d.metrics);
        assert_eq!(c.limits, d.limits);
        assert_eq!(c.rate_limits, d.rate_limits);
        assert_eq!(c.storage, d.storage);
        // ... and every [limits] key is written out, not left to its default.
        let example = include_str!("../coordinator.example.toml");
        let limits = toml::to_string(&d.limits).unwrap();
        for key in limits.lines().filter_map(|l| l.split(" = ").next()) {
            assert!(
                example.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "the example config does not list limits.{key}"
            );
        }
        assert_eq!(j.clipping, ClippingSpec::default());
        assert_eq!(j.training, TrainingSpec::default());
        assert_eq!(j.server_optimizer, ServerOptimizerSpec::default());
        assert_eq!(j.population_drift, default_population_drift());
        assert_eq!(j.min_clients, default_min_clients());
        assert_eq!(j.population, Some(300));
    }

    #[test]
    fn rate_limit_and_storage_keys_are_validated() {
        // Top-level tables must precede [[jobs]]: use inline tables.
        let with = |extra: &str| {
            MINIMAL.replacen(
                "admins = [\"ops\"]",
                &format!("admins = [\"ops\"]\n{extra}"),
                1,
            )
        };
        let c = CoordinatorConfig::from_toml_str(&with(
            "rate_limits = { get_task_burst = 5, submit_update_per_minute = 30.0 }\n\
             storage = { encryption_key_file = \"k.hex\" }",
        ))
        .unwrap();
        assert_eq!(c.rate_limits.get_task_burst, 5);
        assert_eq!(c.rate_limits.submit_update_per_minute, 30.0);
        assert_eq!(c.rate_limits.register_burst, 20, "unset keys keep defaults");
        assert_eq!(
            c.storage.encryption_key_file.as_deref(),
            Some(Path::new("k.hex"))
        );
        assert_eq!(
            invalid_key(&with("rate_limits = { get_model_burst = 0 }")),
            "rate_limits.get_model_burst"
        );
        assert_eq!(
            invalid_key(&with("rate_limits = { register_per_minute = 0.0 }")),
            "rate_limits.register_per_minute"
        );
        assert_eq!(
            invalid_key(&with("rate_limits = { audit_window_ms = 10 }")),
            "rate_limits.audit_window_ms"
        );
        assert_eq!(
            invalid_key(&with("storage = { encryption_key_file = \"\" }")),
            "storage.encryption_key_file"
        );
        let e = CoordinatorConfig::from_toml_str(&with("rate_limits = { burst = 3 }")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
    }

    #[test]
    fn remote_metrics_need_a_bearer_token() {
        let with = |extra: &str| {
            MINIMAL.replacen(
                "admins = [\"ops\"]",
                &format!("admins = [\"ops\"]\n{extra}"),
                1,
            )
        };
        assert_eq!(
            invalid_key(&with("metrics = { listen = \"0.0.0.0:9464\" }")),
            "metrics.bearer_token_file"
        );
        let c = CoordinatorConfig::from_toml_str(&with(
            "metrics = { listen = \"0.0.0.0:9464\", bearer_token_file = \"m.token\", tls = true }",
        ))
        .unwrap();
        assert_eq!(
            c.metrics.bearer_token_file.as_deref(),
            Some(Path::new("m.token"))
        );
        assert!(c.metrics.tls);
        // Loopback needs nothing; a disabled endpoint needs nothing.
        assert!(
            CoordinatorConfig::from_toml_str(&with("metrics = { listen = \"127.0.0.1:1\" }"))
                .is_ok()
        );
        assert!(
            CoordinatorConfig::from_toml_str(&with(
                "metrics = { enabled = false, listen = \"0.0.0.0:1\" }"
            ))
            .is_ok()
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = CoordinatorConfig::from_toml_str(&format!("{MINIMAL}\nnoise = 3\n")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("noise"), "{e}");
    }

    #[test]
    fn dangerous_settings_need_the_dangerous_section() {
        let sim = MINIMAL.replace(
            "sampling_rate = 0.1",
            "sampling_rate = 0.1\nnoise_source = \"simulation\"",
        );
        let e = CoordinatorConfig::from_toml_str(&sim).unwrap_err();
        assert_eq!(e.key(), Some("jobs[0].noise_source"));
        assert!(e.to_string().contains("allow_simulation_noise"));
        // Top-level keys must precede [[jobs]], so use the inline form.
        let ok = sim.replacen(
            "admins = [\"ops\"]",
            "admins = [\"ops\"]\ndangerous = { allow_simulation_noise = true }",
            1,
        );
        assert!(CoordinatorConfig::from_toml_str(&ok).is_ok());

        let off = MINIMAL.replace(
            "sampling_rate = 0.1",
            "sampling_rate = 0.1\ndisable_noise = true",
        );
        assert_eq!(invalid_key(&off), "jobs[0].disable_noise");
    }

    #[test]
    fn proto_roundtrip_keeps_the_definition() {
        let c = CoordinatorConfig::from_toml_str(MINIMAL).unwrap();
        let spec = &c.jobs[0];
        let back = JobSpec::from_proto(&spec.to_proto(), &DangerousConfig::default()).unwrap();
        assert_eq!(&back, spec);
    }

    #[test]
    fn proto_zeros_mean_defaults_and_errors_are_prefixed() {
        let msg = v1::JobConfig {
            model_spec: Some(ModelSpec::logistic(4).to_proto()),
            sampling: Some(v1::job_config::Sampling::ExpectedCohort(10)),
            population: 40,
            ..Default::default()
        };
        let spec = JobSpec::from_proto(&msg, &DangerousConfig::default()).unwrap();
        assert_eq!(spec.rounds, 100);
        assert_eq!(spec.population, Some(40));
        assert_eq!(spec.population_drift, 0.2);
        let e = JobSpec::from_proto(
            &v1::JobConfig {
                population: 0,
                ..msg.clone()
            },
            &DangerousConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.key(), Some("config.population"));
        assert_eq!(spec.sampling(), Sampling::Cohort(10));
        assert_eq!(spec.delta, 1e-5);
        let bad = v1::JobConfig {
            noise_source: "fast".into(),
            ..msg.clone()
        };
        let e = JobSpec::from_proto(&bad, &DangerousConfig::default()).unwrap_err();
        assert_eq!(e.key(), Some("config.noise_source"));
        let e = JobSpec::from_proto(&v1::JobConfig::default(), &DangerousConfig::default())
            .unwrap_err();
        assert_eq!(e.key(), Some("config.model_spec"));
    }
}
