//! The job-spec family: one job's definition (model, sampling, noise,
//! clipping, local training, server optimiser, audit), its defaults and its
//! validation, which names the offending key.

use std::path::PathBuf;

use fedsec_model::ModelSpec;
use fedsec_privacy::NoiseKind;
use serde::{Deserialize, Serialize};

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
    /// `discrete` (default), `opendp`, or `simulation` (needs
    /// `dangerous.allow_simulation_noise`).
    #[serde(default)]
    pub noise_source: NoiseKind,
    /// Publish without noise (needs `dangerous.allow_disabled_noise`). Default `false`.
    #[serde(default)]
    pub disable_noise: bool,
    /// Canary audit (empirical ε and lower bounds computed when the job ends).
    #[serde(default)]
    pub audit: Option<AuditSpec>,
    /// Update screening: policy and thresholds (default: `exclude`, the
    /// default thresholds).
    #[serde(default)]
    pub screen: super::ScreenSpec,
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
            screen: super::ScreenSpec::default(),
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
}
