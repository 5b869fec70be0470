//! The checks a task must pass before any training: its mechanism against
//! the tenant's floors and ceilings ([`check_task`]), and the training it
//! asks for against the tenant's floors on what one update may be computed
//! from ([`check_training`]). A refusal is a [`SkipReason`], reported as an
//! event.

use fedsec_detector::train::TrainConfig;

use super::{Basis, PlannedRound};
use crate::policy::{AccountantKind, PrivacyPolicy};

/// Why a task was not trained on.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// The tenant's ε cap would be exceeded.
    EpsilonCap {
        /// ε after the round.
        epsilon_after: f64,
        /// The cap.
        cap: f64,
        /// The tenant's δ.
        delta: f64,
        /// Accountant.
        accountant: AccountantKind,
        /// Basis of `epsilon_after`.
        basis: Basis,
    },
    /// z below the tenant's floor.
    NoiseMultiplierBelowFloor {
        /// The task's z.
        noise_multiplier: f64,
        /// The floor.
        floor: f64,
    },
    /// C above the tenant's ceiling.
    ClipNormAboveCeiling {
        /// The task's C.
        clip_norm: f64,
        /// The ceiling.
        ceiling: f64,
    },
    /// The job publishes without noise.
    NoiseDisabled,
    /// The task's values are unusable (e.g. q outside (0, 1]).
    InvalidTask(String),
    /// The privacy accountant failed; nothing is claimed, nothing is sent.
    Accounting(String),
    /// Too few local examples.
    NotEnoughData {
        /// Training examples available.
        have: usize,
        /// The minimum.
        need: usize,
    },
    /// The model could not be downloaded or was refused.
    ModelRejected(String),
    /// Local training failed.
    TrainingFailed(String),
    /// The round's deadline passed before the update was ready.
    DeadlinePassed,
    /// The task's minibatch is below the tenant's floor.
    BatchSizeBelowFloor {
        /// The task's batch size (or the local examples, if fewer).
        batch_size: usize,
        /// The floor.
        floor: u32,
    },
    /// The update would be computed from too few local examples.
    TooFewExamplesPerUpdate {
        /// Distinct local examples the task's training would use.
        examples: usize,
        /// The floor.
        floor: usize,
    },
    /// Not even one step fits under the tenant's learning rate × steps ceiling.
    LearningRateAboveCeiling {
        /// The task's learning rate.
        learning_rate: f64,
        /// The ceiling on learning rate × steps.
        ceiling: f64,
    },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EpsilonCap {
                epsilon_after,
                cap,
                delta,
                accountant,
                basis,
            } => write!(
                f,
                "ε after this round would be {epsilon_after:.4} > the tenant's cap {cap} at δ = {delta} \
                 ({} accountant, {} basis)",
                accountant.name(),
                basis.as_str()
            ),
            Self::NoiseMultiplierBelowFloor {
                noise_multiplier,
                floor,
            } => write!(
                f,
                "noise multiplier z = {noise_multiplier} is below the tenant's floor {floor}"
            ),
            Self::ClipNormAboveCeiling { clip_norm, ceiling } => write!(
                f,
                "clip norm C = {clip_norm} is above the tenant's ceiling {ceiling}"
            ),
            Self::NoiseDisabled => write!(
                f,
                "the job publishes without noise and the tenant refuses such tasks"
            ),
            Self::InvalidTask(m) => write!(f, "invalid task: {m}"),
            Self::Accounting(m) => write!(f, "privacy accounting failed: {m}"),
            Self::NotEnoughData { have, need } => write!(
                f,
                "{have} local training example(s), at least {need} needed"
            ),
            Self::ModelRejected(m) => write!(f, "model rejected: {m}"),
            Self::TrainingFailed(m) => write!(f, "local training failed: {m}"),
            Self::DeadlinePassed => {
                write!(f, "the round's deadline passed before the update was ready")
            }
            Self::BatchSizeBelowFloor { batch_size, floor } => write!(
                f,
                "minibatches of {batch_size} example(s) are below the tenant's floor of {floor}"
            ),
            Self::TooFewExamplesPerUpdate { examples, floor } => write!(
                f,
                "the update would be computed from {examples} local example(s), below the \
                 tenant's floor of {floor} per update"
            ),
            Self::LearningRateAboveCeiling {
                learning_rate,
                ceiling,
            } => write!(
                f,
                "learning rate {learning_rate} exceeds the tenant's ceiling of {ceiling} on \
                 learning rate × steps even for one step"
            ),
        }
    }
}

impl PlannedRound {
    /// Whether the round's terms are usable at all, whatever the policy:
    /// round and attempt 1-based, a valid job id, q in (0, 1], C finite and
    /// positive, δ in (0, 1), z finite and ≥ 0 (positive when noise is on).
    /// Called where a task arrives
    /// ([`TaskTerms::from_proto`](crate::task::TaskTerms::from_proto)) and
    /// again by [`check_task`], for rounds a host builds itself.
    ///
    /// # Errors
    ///
    /// [`SkipReason::InvalidTask`] naming the first unusable term.
    pub fn validate(&self) -> Result<(), SkipReason> {
        let task = self;
        if task.round == 0 || task.attempt == 0 {
            return Err(SkipReason::InvalidTask(format!(
                "round {} attempt {}: both are 1-based",
                task.round, task.attempt
            )));
        }
        if !fedsec_proto::tls::is_valid_id(&task.job_id) {
            return Err(SkipReason::InvalidTask(format!(
                "job id {:?} is not a valid id",
                task.job_id
            )));
        }
        let q = task.sampling_rate;
        if !(q > 0.0 && q <= 1.0) {
            return Err(SkipReason::InvalidTask(format!(
                "sampling rate {q} is not in (0, 1]"
            )));
        }
        if !(task.clip_norm > 0.0 && task.clip_norm.is_finite()) {
            return Err(SkipReason::InvalidTask(format!(
                "clip norm {} is not a finite number > 0",
                task.clip_norm
            )));
        }
        if !(task.delta > 0.0 && task.delta < 1.0) {
            return Err(SkipReason::InvalidTask(format!(
                "δ = {} is not in (0, 1)",
                task.delta
            )));
        }
        let z = task.noise_multiplier;
        if !(z >= 0.0 && z.is_finite()) || (task.noise_enabled && z == 0.0) {
            return Err(SkipReason::InvalidTask(format!(
                "noise multiplier {z} is not a finite number > 0"
            )));
        }
        Ok(())
    }
}

/// Checks the task's mechanism: usable terms ([`PlannedRound::validate`]),
/// then the policy's floors and ceilings.
pub fn check_task(policy: &PrivacyPolicy, task: &PlannedRound) -> Result<(), SkipReason> {
    task.validate()?;
    let z = task.noise_multiplier;
    if !task.noise_enabled {
        if policy.refuse_noise_disabled {
            return Err(SkipReason::NoiseDisabled);
        }
    } else if z < policy.min_noise_multiplier {
        return Err(SkipReason::NoiseMultiplierBelowFloor {
            noise_multiplier: z,
            floor: policy.min_noise_multiplier,
        });
    }
    if let Some(ceiling) = policy.max_clip_norm
        && task.clip_norm > ceiling
    {
        return Err(SkipReason::ClipNormAboveCeiling {
            clip_norm: task.clip_norm,
            ceiling,
        });
    }
    Ok(())
}

/// Applies the policy's training floors to the task's training (after the
/// tenant's own [`TrainingLimits`](crate::policy::TrainingLimits)) over
/// `examples` local training examples: caps the local steps so that
/// learning rate × steps stays under the ceiling, then checks the batch size
/// and the number of distinct examples the update is computed from. Returns
/// the training to run.
pub fn check_training(
    policy: &PrivacyPolicy,
    mut config: TrainConfig,
    examples: usize,
) -> Result<TrainConfig, SkipReason> {
    let lr = config.learning_rate;
    let ceiling = policy.max_learning_rate_steps;
    if !(lr.is_finite() && lr > 0.0) {
        return Err(SkipReason::InvalidTask(format!(
            "learning rate {lr} is not a finite number > 0"
        )));
    }
    if lr > ceiling {
        return Err(SkipReason::LearningRateAboveCeiling {
            learning_rate: lr,
            ceiling,
        });
    }
    // ⌊ceiling / lr⌋ ≥ 1 here; saturating for absurdly small learning rates.
    let cap = (ceiling / lr).floor().min(f64::from(u32::MAX)) as u32;
    config.max_steps = match config.max_steps {
        0 => cap,
        m => m.min(cap),
    };
    let batch = (config.batch_size as usize).min(examples);
    if batch < policy.min_batch_size as usize {
        return Err(SkipReason::BatchSizeBelowFloor {
            batch_size: batch,
            floor: policy.min_batch_size,
        });
    }
    // Steps over the epochs, each on a fresh batch; the first epoch visits
    // distinct examples, so the update sees min(n, steps × batch) of them.
    let per_epoch = examples.div_ceil(config.batch_size.max(1) as usize) as u64;
    let steps = (u64::from(config.epochs) * per_epoch).min(u64::from(config.max_steps));
    let used = (steps.saturating_mul(config.batch_size as u64)).min(examples as u64) as usize;
    if used < policy.min_examples_per_update {
        return Err(SkipReason::TooFewExamplesPerUpdate {
            examples: used,
            floor: policy.min_examples_per_update,
        });
    }
    Ok(config)
}
