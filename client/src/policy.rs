//! What the tenant allows: its privacy policy (ε cap at its own δ, floors and
//! ceilings on the task's mechanism and on the training it asks for, which
//! accountant, whether to trust the coordinator's sampling) and the limits it
//! puts on local training. Pure values and their validation; the guard
//! ([`crate::guard`]) applies them.

use fedsec_privacy::{Accountant, PldAccountant, RdpAccountant};
use serde::{Deserialize, Serialize};

use crate::error::BuildError;

/// Which accountant the guard uses for its decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountantKind {
    /// Privacy loss distributions: the tight bound (default).
    #[default]
    Pld,
    /// Rényi DP: a looser, more conservative bound.
    Rdp,
}

impl AccountantKind {
    /// The accountant.
    pub fn accountant(self) -> Box<dyn Accountant> {
        match self {
            Self::Pld => Box::new(PldAccountant),
            Self::Rdp => Box::new(RdpAccountant),
        }
    }

    /// `"pld"` or `"rdp"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pld => "pld",
            Self::Rdp => "rdp",
        }
    }
}

/// The tenant's privacy policy, enforced by the client before it trains.
///
/// See the crate README ("The tenant-side guard") for the accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyPolicy {
    /// The tenant's ε cap at [`Self::delta`]: a round is skipped when the ε
    /// the tenant would have spent after it exceeds this. Required.
    pub max_epsilon: f64,
    /// The tenant's δ (its own, not the job's). Default 1e-5.
    #[serde(default = "default_delta")]
    pub delta: f64,
    /// Tasks whose noise multiplier z is below this are refused. Default 0.5.
    #[serde(default = "default_min_z")]
    pub min_noise_multiplier: f64,
    /// Tasks whose clip norm C is above this are refused. Default: no ceiling
    /// (ε does not depend on C; a ceiling bounds how far one round can move
    /// the model).
    #[serde(default)]
    pub max_clip_norm: Option<f64>,
    /// Refuse tasks of jobs that publish without noise. Default `true`.
    #[serde(default = "yes")]
    pub refuse_noise_disabled: bool,
    /// Accountant of the decision. Default PLD.
    #[serde(default)]
    pub accountant: AccountantKind,
    /// Trust the coordinator's sampling: that it selects this tenant in each
    /// round independently with the probability q its tasks state, and keeps
    /// the cohort secret. Only then may the guard use the amplified basis
    /// for the job the participant is bound to. A client cannot check
    /// either (the coordinator decides which rounds it hears of), so the
    /// default is `false`: the participation basis, valid whatever the
    /// coordinator does.
    #[serde(default)]
    pub trust_coordinator_sampling: bool,
    /// Tasks whose minibatch is smaller are refused: one update should never
    /// be the gradient of a handful of sessions (the coordinator sees each
    /// update before noise). Default 16.
    #[serde(default = "default_min_batch")]
    pub min_batch_size: u32,
    /// Tasks whose update would be computed from fewer distinct local
    /// training examples (steps × batch size, or all local examples if
    /// fewer) are refused. Default 32.
    #[serde(default = "default_min_examples_per_update")]
    pub min_examples_per_update: usize,
    /// Ceiling on learning rate × local steps: the client caps its local
    /// steps at ⌊this / learning rate⌋ (how far one round of local training
    /// may move the model towards memorising local sessions), and refuses a
    /// task whose learning rate alone exceeds it. Default 100.
    #[serde(default = "default_max_lr_steps")]
    pub max_learning_rate_steps: f64,
}

fn default_delta() -> f64 {
    1e-5
}
fn default_min_z() -> f64 {
    0.5
}
fn default_min_batch() -> u32 {
    16
}
fn default_min_examples_per_update() -> usize {
    32
}
fn default_max_lr_steps() -> f64 {
    100.0
}
fn yes() -> bool {
    true
}

impl PrivacyPolicy {
    /// A policy with the given cap at `delta` and every other default.
    pub fn new(max_epsilon: f64, delta: f64) -> Self {
        Self {
            max_epsilon,
            delta,
            min_noise_multiplier: default_min_z(),
            max_clip_norm: None,
            refuse_noise_disabled: true,
            accountant: AccountantKind::Pld,
            trust_coordinator_sampling: false,
            min_batch_size: default_min_batch(),
            min_examples_per_update: default_min_examples_per_update(),
            max_learning_rate_steps: default_max_lr_steps(),
        }
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), BuildError> {
        let bad = |field, problem: String| Err(BuildError::invalid(field, problem));
        if self.max_epsilon.is_nan() || self.max_epsilon <= 0.0 {
            return bad(
                "privacy.max_epsilon",
                format!("must be > 0 (got {}); use inf for no cap", self.max_epsilon),
            );
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return bad(
                "privacy.delta",
                format!("must be in (0, 1) (got {})", self.delta),
            );
        }
        if !(self.min_noise_multiplier >= 0.0 && self.min_noise_multiplier.is_finite()) {
            return bad(
                "privacy.min_noise_multiplier",
                format!("must be >= 0 (got {})", self.min_noise_multiplier),
            );
        }
        if let Some(c) = self.max_clip_norm
            && !(c > 0.0 && c.is_finite())
        {
            return bad(
                "privacy.max_clip_norm",
                format!("must be a finite number > 0 (got {c})"),
            );
        }
        if self.min_batch_size == 0 {
            return bad("privacy.min_batch_size", "must be at least 1".into());
        }
        if self.min_examples_per_update == 0 {
            return bad(
                "privacy.min_examples_per_update",
                "must be at least 1".into(),
            );
        }
        if !(self.max_learning_rate_steps > 0.0 && self.max_learning_rate_steps.is_finite()) {
            return bad(
                "privacy.max_learning_rate_steps",
                format!(
                    "must be a finite number > 0 (got {})",
                    self.max_learning_rate_steps
                ),
            );
        }
        Ok(())
    }
}

/// Limits the tenant puts on the training a task asks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingLimits {
    /// At most this many local epochs, whatever the task says. Default: the task's.
    #[serde(default)]
    pub max_local_epochs: Option<u32>,
    /// At most this many optimiser steps per round. Default: the task's.
    #[serde(default)]
    pub max_steps: Option<u32>,
    /// Train on at most this many examples per round (a seeded sample).
    /// Default: all local training examples.
    #[serde(default)]
    pub max_examples_per_round: Option<usize>,
}

impl TrainingLimits {
    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.max_local_epochs == Some(0) {
            return Err(BuildError::invalid(
                "training.max_local_epochs",
                "must be at least 1",
            ));
        }
        if self.max_steps == Some(0) {
            return Err(BuildError::invalid(
                "training.max_steps",
                "must be at least 1",
            ));
        }
        if self.max_examples_per_round == Some(0) {
            return Err(BuildError::invalid(
                "training.max_examples_per_round",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The task's training configuration with these limits applied.
    pub fn apply(
        &self,
        mut config: fedsec_detector::train::TrainConfig,
    ) -> fedsec_detector::train::TrainConfig {
        if let Some(cap) = self.max_local_epochs {
            config.epochs = config.epochs.min(cap);
        }
        if let Some(cap) = self.max_steps {
            config.max_steps = if config.max_steps == 0 {
                cap
            } else {
                config.max_steps.min(cap)
            };
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_validation_names_the_field() {
        assert!(PrivacyPolicy::new(3.0, 1e-5).validate().is_ok());
        assert!(PrivacyPolicy::new(f64::INFINITY, 1e-5).validate().is_ok());
        for (p, field) in [
            (PrivacyPolicy::new(0.0, 1e-5), "privacy.max_epsilon"),
            (PrivacyPolicy::new(f64::NAN, 1e-5), "privacy.max_epsilon"),
            (PrivacyPolicy::new(1.0, 0.0), "privacy.delta"),
            (PrivacyPolicy::new(1.0, 1.0), "privacy.delta"),
            (
                PrivacyPolicy {
                    min_noise_multiplier: -1.0,
                    ..PrivacyPolicy::new(1.0, 1e-5)
                },
                "privacy.min_noise_multiplier",
            ),
            (
                PrivacyPolicy {
                    max_clip_norm: Some(0.0),
                    ..PrivacyPolicy::new(1.0, 1e-5)
                },
                "privacy.max_clip_norm",
            ),
            (
                PrivacyPolicy {
                    min_batch_size: 0,
                    ..PrivacyPolicy::new(1.0, 1e-5)
                },
                "privacy.min_batch_size",
            ),
            (
                PrivacyPolicy {
                    min_examples_per_update: 0,
                    ..PrivacyPolicy::new(1.0, 1e-5)
                },
                "privacy.min_examples_per_update",
            ),
            (
                PrivacyPolicy {
                    max_learning_rate_steps: f64::INFINITY,
                    ..PrivacyPolicy::new(1.0, 1e-5)
                },
                "privacy.max_learning_rate_steps",
            ),
        ] {
            match p.validate() {
                Err(BuildError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{p:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn limits_cap_the_task() {
        let task = fedsec_detector::train::TrainConfig {
            epochs: 5,
            max_steps: 0,
            ..Default::default()
        };
        let l = TrainingLimits {
            max_local_epochs: Some(2),
            max_steps: Some(10),
            max_examples_per_round: None,
        };
        let c = l.apply(task.clone());
        assert_eq!((c.epochs, c.max_steps), (2, 10));
        let c = TrainingLimits::default().apply(task.clone());
        assert_eq!((c.epochs, c.max_steps), (5, 0));
        let c = l.apply(fedsec_detector::train::TrainConfig {
            max_steps: 4,
            ..task
        });
        assert_eq!(c.max_steps, 4);
        assert!(
            TrainingLimits {
                max_local_epochs: Some(0),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
