//! The demo's settings: defaults, the synthetic tenants, the job, each
//! tenant's ε cap and who takes part.

use std::path::PathBuf;

use fedsec_client::PrivacyPolicy;
use fedsec_coordinator::JobSpec;
use fedsec_coordinator::config::{
    ClippingSpec, LocalOptimizerKind, ServerOptimizerSpec, TrainingSpec,
};
use fedsec_detector::synth::SynthConfig;
use fedsec_privacy::NoiseKind;
use serde::Serialize;

use super::JOB_ID;
use crate::error::{Error, Result};
use crate::figures;

/// Abandoned round attempts a demo tenant's ε cap leaves room for
/// ([`DemoConfig::tenant_cap`]).
pub const ABANDONED_ATTEMPT_SLACK: u64 = 2;

/// `data.min_examples` of the demo's participants.
pub(crate) const DEMO_MIN_EXAMPLES: usize = 10;

/// Settings of a demo run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoConfig {
    /// Tenants (one participant each).
    pub tenants: usize,
    /// Planned rounds.
    pub rounds: u64,
    /// Expected cohort m (clamped to the number of tenants).
    pub cohort: u32,
    /// Target ε after all rounds.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Seed of the data, the initial model and the clients' local training.
    pub seed: u64,
    /// Where `report.md` and its figures go.
    pub out: PathBuf,
    /// Working directory for logs, PKI and state (default: a temporary
    /// directory removed at the end).
    pub work_dir: Option<PathBuf>,
    /// Threads for data generation and the baselines.
    pub threads: usize,
    /// Hide progress bars.
    pub quiet: bool,
    /// Median sessions per tenant.
    pub median_sessions: f64,
}

impl DemoConfig {
    /// The README's defaults: 300 tenants, 50 rounds, cohort 60, ε = 3 at δ = 1e-6.
    pub fn standard(out: PathBuf) -> Self {
        Self {
            tenants: 300,
            rounds: 50,
            cohort: 60,
            epsilon: figures::TARGET_EPSILON,
            delta: figures::DELTA,
            seed: 1,
            out,
            work_dir: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            quiet: false,
            median_sessions: 160.0,
        }
    }

    /// The synthetic tenants.
    pub fn synth(&self) -> SynthConfig {
        SynthConfig {
            tenants: self.tenants,
            seed: self.seed,
            median_sessions: self.median_sessions,
            sessions_sigma: 0.6,
            min_sessions: 60,
            max_sessions: 2000,
            days: 2,
            ..SynthConfig::default()
        }
    }

    /// Expected cohort actually used.
    pub fn expected_cohort(&self) -> u32 {
        self.cohort.min(self.tenants as u32).max(2)
    }

    /// The ε cap (at [`Self::delta`]) each demo tenant sets for its own
    /// guard: the participation-basis ε of contributing to every one of the
    /// job's rounds plus [`ABANDONED_ATTEMPT_SLACK`] more, at the noise
    /// multiplier the coordinator calibrates (same accountant and
    /// calibration). No tenant can exceed it, so none skips; see the module
    /// docs for why the job's ε is not enough. The slack: a client's ledger
    /// charges every update it sends, also one to an attempt that is then
    /// abandoned (a `jobs pause` or a restart mid-round, as in the incident
    /// runbook) and trained again; without it a tenant selected in every
    /// round (q = 1) would refuse the job's last round after one pause, and
    /// that round would wait for its deadline.
    pub fn tenant_cap(&self, population: usize) -> Result<f64> {
        use fedsec_privacy::{Accountant, Mechanism, PldAccountant};
        let m = self.cohort.min(population as u32).max(2);
        let q = f64::from(m) / population as f64;
        let z = fedsec_round::calibrate(q, self.rounds, self.delta, self.epsilon)?;
        let every_round = PldAccountant
            .epsilon(
                &[(
                    Mechanism {
                        sampling_rate: 1.0,
                        noise_multiplier: z,
                    },
                    self.rounds + ABANDONED_ATTEMPT_SLACK,
                )],
                self.delta,
            )
            .map_err(Error::Accounting)?;
        // The guard computes the same number; a hair of slack for rounding.
        Ok(every_round * (1.0 + 1e-9))
    }

    /// Whether a tenant with `examples` training sessions can serve the
    /// demo's tasks under its own guard (the same check the participant
    /// makes before training: batch size and examples-per-update floors).
    pub fn serves(&self, examples: usize) -> bool {
        examples >= DEMO_MIN_EXAMPLES
            && fedsec_client::guard::check_training(
                &PrivacyPolicy::new(1.0, self.delta),
                figures::round_training(),
                examples,
            )
            .is_ok()
    }

    /// The job the demo creates for `population` participating tenants
    /// (one participant each; the expected cohort is clamped to it).
    pub fn job(&self, population: usize) -> JobSpec {
        let t = figures::round_training();
        let mut job = JobSpec::new(JOB_ID, figures::model(), 1.0, population as u64);
        job.name = "bot-abuse detector (demo)".into();
        job.init_seed = self.seed;
        job.rounds = self.rounds;
        job.sampling_rate = None;
        job.expected_cohort = Some(self.cohort.min(population as u32).max(2));
        job.clipping = ClippingSpec {
            clip_norm: figures::CLIP_NORM,
            ..ClippingSpec::default()
        };
        job.noise_multiplier = None;
        job.target_epsilon = Some(self.epsilon);
        job.delta = self.delta;
        job.min_clients = 2;
        job.round_deadline_ms = 120_000;
        job.training = TrainingSpec {
            local_epochs: t.epochs,
            batch_size: t.batch_size,
            learning_rate: t.learning_rate,
            optimizer: LocalOptimizerKind::Sgd,
            momentum: t.momentum,
            class_weighting: t.class_weighting,
            max_steps: t.max_steps,
        };
        job.server_optimizer = ServerOptimizerSpec {
            learning_rate: 1.0,
            momentum: figures::SERVER_MOMENTUM,
        };
        job.noise_source = NoiseKind::OpenDp;
        job
    }
}
