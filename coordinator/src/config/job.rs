//! The job-spec family: one job's definition (model, sampling, noise,
//! clipping, local training, server optimiser, audit), its defaults and its
//! validation, which names the offending key.

use std::path::PathBuf;

use fedsec_model::ModelSpec;
use fedsec_privacy::NoiseKind;
use fedsec_proto::tls::is_valid_id;
use serde::{Deserialize, Serialize};

use super::{CResult, ConfigError, DangerousConfig};

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

pub(super) fn one() -> f64 {
    1.0
}
pub(super) fn half() -> f64 {
    0.5
}
pub(super) fn default_clip_lr() -> f64 {
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

pub(super) fn default_epochs() -> u32 {
    1
}
pub(super) fn default_batch() -> u32 {
    32
}
pub(super) fn default_local_lr() -> f64 {
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

/// Largest number of inserted canaries a job may ask for.
pub const MAX_CANARIES: u32 = 100_000;

/// Canary audit settings (see `crate::canary`).
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

pub(super) fn default_rounds() -> u64 {
    100
}
pub(super) fn default_delta() -> f64 {
    1e-5
}
pub(super) fn default_min_clients() -> u32 {
    2
}
pub(super) fn default_population_drift() -> f64 {
    0.2
}
pub(super) fn default_deadline_ms() -> u64 {
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

/// How a job chooses its noise multiplier (the round core's).
pub use fedsec_round::NoiseLevel;

pub(super) fn positive_finite(key: &str, v: f64) -> CResult {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, format!("must be > 0 (got {v})")))
    }
}

pub(super) fn in_unit_open(key: &str, v: f64) -> CResult {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be in (0, 1) (got {v})"),
        ))
    }
}

pub(super) fn momentum_range(key: &str, v: f64) -> CResult {
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
            && (a.canaries == 1 || a.canaries > MAX_CANARIES)
        {
            return Err(ConfigError::invalid(
                k("audit.canaries"),
                format!(
                    "must be 0 (no audit) or 2..={} (got {})",
                    MAX_CANARIES, a.canaries
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
}
