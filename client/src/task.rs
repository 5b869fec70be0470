//! A task's terms, parsed and validated once, where `GetTask`'s answer
//! arrives, into one [`TaskTerms`] that the participant carries from there on.
//!
//! Everything the coordinator announces for a round — which round it is, the
//! mechanism it will be charged at (q, z, C, δ, noise on or off), the model
//! architecture, the training configuration, client-side noise and the time
//! left — is hostile input. It is read here and nowhere else: a task that
//! fails any check becomes a [`SkipReason::InvalidTask`] before the policy,
//! the download, the guard or training see it, and the rest of the client
//! never reads a `fedsec.v1.Task` field again. The guard keeps its own
//! validity checks ([`PlannedRound::validate`], called by
//! [`check_task`](crate::guard::check_task)) so that a host calling it with a
//! hand-built round is defended too.

use std::time::Duration;

use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::train::TrainConfig;
use fedsec_model::ModelSpec;
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::v1;

use crate::events::TaskRef;
use crate::guard::{PlannedRound, SkipReason};
use crate::wire::TrainConfigWire;

/// Longest time to the deadline a task may announce (24 h, the coordinator's
/// own maximum round deadline): a longer one is cut to this.
pub const MAX_ROUND: Duration = Duration::from_millis(86_400_000);

/// The terms of one task, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTerms {
    /// The round and the mechanism it is charged at (the guard's input):
    /// job, round, attempt, q, z, C, δ, whether the coordinator adds noise.
    pub planned: PlannedRound,
    /// The model version the round trains from.
    pub base_version: u64,
    /// The job's model (its input width is this client's feature count).
    pub spec: ModelSpec,
    /// The task's training configuration, before the tenant's limits.
    pub training: TrainConfig,
    /// Standard deviation of the noise this client adds itself (0: the
    /// coordinator adds central noise).
    pub client_noise_stddev: f64,
    /// Time left until the round's deadline, at most [`MAX_ROUND`].
    pub remaining: Duration,
}

impl TaskTerms {
    /// Parses and validates a task as it arrived.
    ///
    /// # Errors
    ///
    /// [`SkipReason::InvalidTask`] naming the first problem: round or
    /// attempt 0, an invalid job id, q outside (0, 1], C not finite and > 0,
    /// δ outside (0, 1), an unusable noise multiplier, a missing or invalid
    /// model spec (or one whose input width is not this client's feature
    /// count), a missing or invalid training configuration, an unknown noise
    /// mode or a client-noise stddev that is not finite and > 0.
    pub fn from_proto(task: &v1::Task) -> Result<Self, SkipReason> {
        let invalid = |m: String| SkipReason::InvalidTask(m);
        let planned = PlannedRound {
            job_id: task.job_id.clone(),
            round: task.round,
            attempt: task.attempt,
            sampling_rate: task.sampling_rate,
            noise_multiplier: task.noise_multiplier,
            clip_norm: task.clip_norm,
            delta: task.delta,
            noise_enabled: task.noise_enabled,
        };
        planned.validate()?;
        let spec = task
            .model_spec
            .as_ref()
            .ok_or_else(|| invalid("the task has no model spec".into()))
            .and_then(|s| {
                ModelSpec::from_proto(s).map_err(|e| invalid(format!("model spec: {e}")))
            })?;
        if spec.input_dim as usize != NUM_FEATURES {
            return Err(invalid(format!(
                "the job's model takes {} inputs; this client's sessions have {NUM_FEATURES} features",
                spec.input_dim
            )));
        }
        let training = task
            .training
            .as_ref()
            .ok_or_else(|| invalid("the task has no training configuration".into()))
            .and_then(|t| {
                TrainConfig::from_proto(t).map_err(|e| invalid(format!("training config: {e}")))
            })?;
        let client_noise_stddev = match &task.client_noise {
            Some(n) if n.mode == v1::NoiseMode::Client as i32 => {
                if !(n.stddev > 0.0 && n.stddev.is_finite()) {
                    return Err(invalid(format!(
                        "client noise mode with stddev {}",
                        n.stddev
                    )));
                }
                n.stddev
            }
            Some(n)
                if n.mode == v1::NoiseMode::Central as i32
                    || n.mode == v1::NoiseMode::Unspecified as i32 =>
            {
                0.0
            }
            None => 0.0,
            Some(n) => return Err(invalid(format!("unknown noise mode {}", n.mode))),
        };
        Ok(Self {
            planned,
            base_version: task.base_version,
            spec,
            training,
            client_noise_stddev,
            remaining: Duration::from_millis(task.remaining_ms).min(MAX_ROUND),
        })
    }

    /// Job, round, attempt and base version: what events, the ledger lookup
    /// and the upload header name.
    pub fn reference(&self) -> TaskRef {
        TaskRef {
            job_id: self.planned.job_id.clone(),
            round: self.planned.round,
            attempt: self.planned.attempt,
            base_version: self.base_version,
        }
    }
}

#[cfg(test)]
mod tests {
    use fedsec_detector::train::Optimizer;

    use super::*;

    fn good() -> v1::Task {
        let training = TrainConfig {
            epochs: 1,
            batch_size: 32,
            learning_rate: 0.05,
            optimizer: Optimizer::Sgd,
            momentum: 0.0,
            class_weighting: false,
            max_steps: 0,
        };
        v1::Task {
            job_id: "bots".into(),
            round: 3,
            attempt: 1,
            base_version: 2,
            model_spec: Some(ModelSpec::mlp(NUM_FEATURES as u32, [8]).to_proto()),
            training: Some(training.to_proto()),
            clip_norm: 1.0,
            remaining_ms: 5_000,
            sampling_rate: 0.2,
            noise_multiplier: 1.1,
            delta: 1e-6,
            noise_enabled: true,
            client_noise: None,
            ..Default::default()
        }
    }

    #[test]
    fn a_well_formed_task_is_parsed_into_its_terms() {
        let terms = TaskTerms::from_proto(&good()).unwrap();
        assert_eq!(terms.planned.job_id, "bots");
        assert_eq!((terms.planned.round, terms.planned.attempt), (3, 1));
        assert_eq!(terms.planned.sampling_rate, 0.2);
        assert_eq!(terms.planned.noise_multiplier, 1.1);
        assert_eq!(terms.planned.clip_norm, 1.0);
        assert_eq!(terms.planned.delta, 1e-6);
        assert!(terms.planned.noise_enabled);
        assert_eq!(terms.base_version, 2);
        assert_eq!(terms.spec.input_dim as usize, NUM_FEATURES);
        assert_eq!(terms.training.batch_size, 32);
        assert_eq!(terms.client_noise_stddev, 0.0);
        assert_eq!(terms.remaining, Duration::from_millis(5_000));
        let r = terms.reference();
        assert_eq!(
            (r.job_id.as_str(), r.round, r.attempt, r.base_version),
            ("bots", 3, 1, 2)
        );
        let mut long = good();
        long.remaining_ms = u64::MAX;
        assert_eq!(TaskTerms::from_proto(&long).unwrap().remaining, MAX_ROUND);
    }

    /// Every malformed term is refused where the task arrives, naming the
    /// problem; nothing downstream ever sees it.
    #[test]
    fn malformed_terms_are_refused_at_arrival() {
        type Mutation = fn(&mut v1::Task);
        let cases: Vec<(Mutation, &str)> = vec![
            (|t| t.round = 0, "1-based"),
            (|t| t.attempt = 0, "1-based"),
            (|t| t.job_id = "../etc".into(), "not a valid id"),
            (|t| t.sampling_rate = 0.0, "sampling rate"),
            (|t| t.sampling_rate = 1.5, "sampling rate"),
            (|t| t.sampling_rate = f64::NAN, "sampling rate"),
            (|t| t.clip_norm = -1.0, "clip norm"),
            (|t| t.clip_norm = f64::INFINITY, "clip norm"),
            (|t| t.delta = 0.0, "δ"),
            (|t| t.delta = 1.0, "δ"),
            (|t| t.noise_multiplier = f64::NAN, "noise multiplier"),
            (|t| t.noise_multiplier = 0.0, "noise multiplier"),
            (|t| t.noise_multiplier = -1.0, "noise multiplier"),
            (|t| t.model_spec = None, "no model spec"),
            (
                |t| t.model_spec = Some(ModelSpec::mlp(3, [8]).to_proto()),
                "inputs",
            ),
            (|t| t.training = None, "no training configuration"),
            (
                |t| {
                    if let Some(c) = t.training.as_mut() {
                        c.learning_rate = f64::NAN;
                    }
                },
                "training config",
            ),
            (
                |t| {
                    if let Some(c) = t.training.as_mut() {
                        c.optimizer = 9;
                    }
                },
                "training config",
            ),
            (
                |t| {
                    t.client_noise = Some(v1::ClientNoise {
                        mode: v1::NoiseMode::Client as i32,
                        stddev: f64::NAN,
                    })
                },
                "client noise",
            ),
            (
                |t| {
                    t.client_noise = Some(v1::ClientNoise {
                        mode: 42,
                        stddev: 1.0,
                    })
                },
                "unknown noise mode",
            ),
        ];
        for (i, (mutate, needle)) in cases.into_iter().enumerate() {
            let mut t = good();
            mutate(&mut t);
            match TaskTerms::from_proto(&t) {
                Err(SkipReason::InvalidTask(m)) => {
                    assert!(m.contains(needle), "case {i}: {m:?} lacks {needle:?}")
                }
                other => panic!("case {i}: {other:?}"),
            }
        }
    }
}
