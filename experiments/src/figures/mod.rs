//! The five experiments of the results README, each a function writing one
//! CSV, one PNG and one README section:
//!
//! 1. [`privacy_utility`]: held-out AUC against ε (several noise multipliers,
//!    same rounds);
//! 2. [`non_iid`]: Dirichlet α ∈ {0.1, 0.5, 1, 10};
//! 3. [`scale`]: 10 → 1,000 tenants at a fixed ε;
//! 4. [`poisoning`]: malicious tenants (boosted and adaptive), server-side
//!    clipping on and off, the update screen off and on, over seeds;
//! 5. [`small_tenants`]: per-tenant AUC by tenant size, federated vs local-only;
//! 6. [`audit`]: the coordinator's canary audit against the accountant's ε;
//! 7. [`weak_labels`]: tenants with no ground truth, on silver labels.
//!
//! [`Setup`] holds what they share: the mode (fast: CI-sized, seconds; full:
//! the committed results), the seed, the output directory and the default
//! population, model and training settings.

pub mod audit;
pub mod non_iid;
pub mod poisoning;
pub mod privacy_utility;
pub mod scale;
pub mod small_tenants;
pub mod weak_labels;

use std::path::{Path, PathBuf};

use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::synth::SynthConfig;
use fedsec_detector::train::{Optimizer, TrainConfig};
use fedsec_model::ModelSpec;
use serde::Serialize;

use crate::baselines::{self, Baseline, BaselineConfig};
use crate::data::{HoldoutSet, Population};
use crate::error::{Error, Result};
use crate::eval;
use crate::sim::{self, FedConfig, FedRun, Noise};

/// What an experiment wrote: its rows (as in the CSV), the CSV and the PNG.
#[derive(Debug, Clone)]
pub struct Outcome<R> {
    /// CSV rows.
    pub rows: Vec<R>,
    /// CSV file.
    pub csv: PathBuf,
    /// PNG file.
    pub png: PathBuf,
}

/// How big an experiment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// CI-sized: a few tenants and rounds, seconds even in a debug build.
    Fast,
    /// The committed results: hundreds of tenants, 50 rounds.
    Full,
}

impl Mode {
    /// `"fast"` or `"full"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Full => "full",
        }
    }
}

/// What every experiment shares.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Size.
    pub mode: Mode,
    /// Seed of data, selection, training and noise.
    pub seed: u64,
    /// Output directory (CSV, PNG, README.md).
    pub out: PathBuf,
    /// Worker threads.
    pub threads: usize,
    /// Hide progress bars.
    pub quiet: bool,
}

/// δ of every experiment (and the demo).
pub const DELTA: f64 = 1e-6;
/// Target ε of the fixed-budget experiments (and the demo).
pub const TARGET_EPSILON: f64 = 3.0;
/// Hidden units of the MLP every experiment trains (d = 51·8 + 8 + 8 + 1 = 425).
pub const HIDDEN: u32 = 8;

/// The model: MLP 51 → 8 → 1.
pub fn model() -> ModelSpec {
    ModelSpec::mlp(NUM_FEATURES as u32, [HIDDEN])
}

/// Local training of each selected tenant in a round (the job's task).
pub fn round_training() -> TrainConfig {
    TrainConfig {
        epochs: 5,
        batch_size: 32,
        learning_rate: 0.5,
        optimizer: Optimizer::Sgd,
        momentum: 0.0,
        class_weighting: true,
        max_steps: 0,
    }
}

/// Clip norm C.
pub const CLIP_NORM: f64 = 1.0;
/// FedAvgM server momentum.
pub const SERVER_MOMENTUM: f64 = 0.5;

/// Seeds every experiment runs over in full mode (issue 23: ≥ 3).
pub const SEEDS_FULL: u64 = 3;
/// Seeds in fast mode (two, so CI exercises the mean ± sd path).
pub const SEEDS_FAST: u64 = 2;

/// Local-only training candidates (epochs, Adam learning rate) that
/// [`choose_local_training`] picks from on a validation split.
pub const LOCAL_GRID: [(u32, f64); 4] = [(20, 0.01), (50, 0.01), (50, 0.003), (100, 0.003)];

/// Share of each tenant's training rows held out for validation when a
/// choice is made from data.
pub const VALIDATION_FRACTION: f64 = 0.25;

impl Setup {
    /// The seeds of this mode's runs: `seed`, `seed + 1`, … ([`SEEDS_FULL`]
    /// in full mode, [`SEEDS_FAST`] in fast mode).
    pub fn seeds(&self) -> Vec<u64> {
        crate::seeds::seed_list(
            self.seed,
            match self.mode {
                Mode::Fast => SEEDS_FAST,
                Mode::Full => SEEDS_FULL,
            },
        )
    }

    /// The same setup with another seed (one run of a multi-seed experiment).
    pub fn with_seed(&self, seed: u64) -> Setup {
        Setup {
            seed,
            ..self.clone()
        }
    }

    /// The synthetic population of this mode (α = 1 unless changed).
    pub fn population_config(&self) -> SynthConfig {
        match self.mode {
            Mode::Fast => SynthConfig {
                tenants: 16,
                seed: self.seed,
                median_sessions: 60.0,
                sessions_sigma: 0.5,
                min_sessions: 30,
                max_sessions: 150,
                days: 1,
                ..SynthConfig::default()
            },
            Mode::Full => SynthConfig {
                tenants: 300,
                seed: self.seed,
                median_sessions: 160.0,
                sessions_sigma: 0.6,
                min_sessions: 60,
                max_sessions: 2000,
                days: 2,
                ..SynthConfig::default()
            },
        }
    }

    /// Rounds of a federated job.
    pub fn rounds(&self) -> u64 {
        match self.mode {
            Mode::Fast => 6,
            Mode::Full => 50,
        }
    }

    /// Expected cohort for `tenants` tenants: 60 (q = 0.2 of 300) in full
    /// mode, half the tenants in fast mode.
    pub fn cohort(&self, tenants: usize) -> f64 {
        match self.mode {
            Mode::Fast => (tenants as f64 / 2.0).max(2.0),
            Mode::Full => (0.2 * tenants as f64).max(2.0),
        }
    }

    /// A federated job over `tenants` tenants with the given noise.
    pub fn fed_config(&self, tenants: usize, noise: Noise) -> FedConfig {
        FedConfig {
            model: model(),
            init_seed: self.seed,
            rounds: self.rounds(),
            expected_cohort: self.cohort(tenants),
            noise,
            delta: DELTA,
            clip_norm: CLIP_NORM,
            train: round_training(),
            server_learning_rate: 1.0,
            server_momentum: SERVER_MOMENTUM,
            server_clipping: true,
            seed: self.seed,
            threads: self.threads,
            eval_every: 0,
            screen: None,
        }
    }

    /// The baselines' training.
    pub fn baseline_config(&self) -> BaselineConfig {
        BaselineConfig {
            model: model(),
            init_seed: self.seed,
            central: TrainConfig {
                epochs: match self.mode {
                    Mode::Fast => 5,
                    Mode::Full => 10,
                },
                batch_size: 128,
                learning_rate: 0.003,
                optimizer: Optimizer::Adam,
                momentum: 0.0,
                class_weighting: true,
                max_steps: 0,
            },
            local: local_only_training(),
            seed: self.seed,
            threads: self.threads,
        }
    }

    /// Generates a population (with a progress bar).
    pub fn population(&self, cfg: &SynthConfig) -> Result<Population> {
        let pb = crate::progress::bar(cfg.tenants as u64, "tenants", self.quiet);
        pb.set_message(format!("generating (α = {}, seed {})", cfg.alpha, cfg.seed));
        let p = Population::generate(cfg, HOLDOUT_FRACTION, self.threads, &|n| {
            pb.set_position(n as u64)
        });
        pb.finish_and_clear();
        p
    }

    /// Creates the output directory and returns the path of `file` in it.
    pub fn output(&self, file: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))?;
        Ok(self.out.join(file))
    }

    /// The results README.
    pub fn readme(&self) -> PathBuf {
        self.out.join("README.md")
    }

    /// The command that reproduces an experiment.
    pub fn command(&self, sub: &str) -> String {
        format!(
            "cargo run --release -p fedsec-experiments -- {sub} --mode {} --seed {}",
            self.mode.name(),
            self.seed
        )
    }
}

/// Local-only training: each tenant alone, many epochs of Adam (the best of
/// a small grid on the default population; a strong baseline).
pub fn local_only_training() -> TrainConfig {
    TrainConfig {
        epochs: 50,
        batch_size: 32,
        learning_rate: 0.01,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        class_weighting: true,
        max_steps: 0,
    }
}

/// Share of each tenant's sessions held out for evaluation.
pub const HOLDOUT_FRACTION: f64 = 0.3;

/// Pooled and per-tenant AUC of one trained model or baseline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Scores {
    /// ROC-AUC over every tenant's holdout sessions together.
    pub pooled_auc: f64,
    /// Mean over tenants of the ROC-AUC on the tenant's own holdout.
    pub mean_tenant_auc: f64,
    /// Tenants whose holdout has both classes (the mean's denominator).
    pub tenants_with_auc: usize,
    /// Recall of abuse at the threshold flagging 1 % of the pooled held-out
    /// people and good bots.
    pub recall_at_1pct_fpr: f64,
    /// Precision at that threshold (pooled holdout).
    pub precision_at_1pct_fpr: f64,
}

impl Scores {
    /// Scores of a baseline.
    pub fn of_baseline(b: &Baseline) -> Self {
        let (m, n) = eval::mean_defined(&b.tenant_auc);
        Self {
            pooled_auc: b.pooled_auc,
            mean_tenant_auc: m,
            tenants_with_auc: n,
            recall_at_1pct_fpr: b.operating.recall,
            precision_at_1pct_fpr: b.operating.precision,
        }
    }

    /// Scores of global weights.
    pub fn of_weights(
        spec: &ModelSpec,
        weights: &[f32],
        holdout: &HoldoutSet,
        tenants: usize,
    ) -> Result<(Self, Vec<Option<f64>>)> {
        let s = eval::score(spec, weights, holdout.data.features())?;
        let per = eval::per_tenant_auc(&s, holdout, tenants);
        let (m, n) = eval::mean_defined(&per);
        let op = eval::OperatingPoint::at_report_fpr(&s, &holdout.labels);
        Ok((
            Self {
                pooled_auc: eval::auc(&s, &holdout.labels).unwrap_or(f64::NAN),
                mean_tenant_auc: m,
                tenants_with_auc: n,
                recall_at_1pct_fpr: op.recall,
                precision_at_1pct_fpr: op.precision,
            },
            per,
        ))
    }
}

/// The centralised and local-only baselines of a population.
#[derive(Debug, Clone)]
pub struct Baselines {
    /// Centralised, non-private.
    pub central: Baseline,
    /// Local-only.
    pub local: Baseline,
}

impl Baselines {
    /// Trains both.
    pub fn train(setup: &Setup, pop: &Population, holdout: &HoldoutSet) -> Result<Self> {
        let pb = crate::progress::spinner("baselines", setup.quiet);
        let cfg = setup.baseline_config();
        pb.set_message("centralised, non-private");
        let central = baselines::central(pop, holdout, &cfg)?;
        pb.set_message(format!("local-only ({} tenants)", pop.len()));
        let local = baselines::local_only(pop, holdout, &cfg)?;
        pb.finish_and_clear();
        Ok(Self { central, local })
    }
}

/// Local-only training chosen on a validation split of each tenant's
/// training rows ([`Population::validation_split`]; the holdout is never
/// looked at): the [`LOCAL_GRID`] candidate with the best mean per-tenant
/// validation AUC. Returns it and every candidate's validation AUC.
pub fn choose_local_training(
    setup: &Setup,
    pop: &Population,
) -> Result<(TrainConfig, Vec<(TrainConfig, f64)>)> {
    let val = pop.validation_split(VALIDATION_FRACTION, setup.seed)?;
    let val_holdout = val.pooled_holdout();
    let mut scored = Vec::new();
    for (epochs, lr) in LOCAL_GRID {
        let cand = TrainConfig {
            epochs,
            learning_rate: lr,
            ..local_only_training()
        };
        let cfg = BaselineConfig {
            local: cand.clone(),
            ..setup.baseline_config()
        };
        let b = baselines::local_only(&val, &val_holdout, &cfg)?;
        scored.push((cand, b.mean_tenant_auc()));
    }
    let best = crate::seeds::pick_best(&scored).unwrap_or_else(local_only_training);
    Ok((best, scored))
}

/// The sentence every multi-seed section states.
pub fn seeds_text(seeds: &[u64]) -> String {
    format!(
        "Seeds {} (data, splits, initial weights, cohort selection and noise all follow the seed); \
         each cell is the mean ± sample standard deviation over the {} seeds. Recall and precision are \
         at the operating point that flags {} % of the pooled held-out people and good bots (threshold \
         set on those negatives; precision depends on the holdout's share of abuse).",
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        seeds.len(),
        eval::REPORT_FPR * 100.0
    )
}

/// Runs a federated job with a progress bar; returns the run and its scores.
pub fn run_fed(
    setup: &Setup,
    pop: &Population,
    holdout: &HoldoutSet,
    cfg: &FedConfig,
    adversary: Option<&crate::attack::Adversary>,
    label: &str,
) -> Result<(FedRun, Scores, Vec<Option<f64>>)> {
    let pb = crate::progress::bar(cfg.rounds, "federated", setup.quiet);
    pb.set_message(label.to_string());
    let run = sim::run(pop, holdout, cfg, adversary, &mut |r| {
        pb.set_position(r.round);
    })?;
    pb.finish_and_clear();
    let (scores, per) = Scores::of_weights(&cfg.model, &run.weights, holdout, pop.len())?;
    Ok((run, scores, per))
}

/// Caption line shared by the figures: model, rounds, cohort, C, noise source.
pub fn caption(setup: &Setup, extra: &str) -> String {
    let base = format!(
        "MLP d={}, C={CLIP_NORM}, δ={DELTA:e}, noise: SimulationGaussian (simulation only), {} mode, seed {}",
        model().num_params(),
        setup.mode.name(),
        setup.seed
    );
    if extra.is_empty() {
        base
    } else {
        format!("{extra}; {base}")
    }
}

/// Markdown link to a file next to the README.
pub fn link(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("[`{name}`]({name})")
}

/// Markdown image of a PNG next to the README.
pub fn image(path: &Path, alt: &str) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("![{alt}]({name})")
}

/// The shared "setup" paragraph of a README section.
pub fn setup_text(
    setup: &Setup,
    sub: &str,
    pop: &SynthConfig,
    fed: &FedConfig,
    elapsed_s: f64,
) -> String {
    format!(
        "Setup: {} tenants (synthetic, Dirichlet α {}, median {} sessions, seed {}), {}% of each tenant's \
         sessions held out; model {} (d = {}); {} rounds, expected cohort m = q·N, clip C = {}, \
         local SGD {} epochs (lr {}, batch {}), FedAvgM server momentum {}; δ = {}; server noise from \
         `SimulationGaussian` (simulation only). Mode `{}`, {:.0} s on this machine.\n\n\
         Reproduce: `{}` (or `experiments/scripts/{}.sh {}`).",
        pop.tenants,
        if sub == non_iid::KEY {
            "as in the table".to_string()
        } else {
            format!("= {}", pop.alpha)
        },
        pop.median_sessions,
        pop.seed,
        (HOLDOUT_FRACTION * 100.0).round(),
        fed.model,
        fed.model.num_params(),
        fed.rounds,
        fed.clip_norm,
        fed.train.epochs,
        fed.train.learning_rate,
        fed.train.batch_size,
        fed.server_momentum,
        fed.delta,
        setup.mode.name(),
        elapsed_s,
        setup.command(sub),
        sub.replace('-', "_"),
        setup.mode.name()
    )
}
