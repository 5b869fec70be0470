//! Local training: from the global weights, a few epochs of minibatch SGD
//! (with momentum) or Adam on a tenant's sessions, returning
//! `delta = local − global` and the training loss before and after.
//!
//! The loss is binary cross-entropy on the bot logit, `ℓ(z, y) = −log σ(z) +
//! (1 − y)·z`, averaged with weights: with class weighting, bot rows weigh
//! `negatives / positives` (clamped to [0.01, 100]), humans 1, each times the
//! row's own weight ([`Dataset::weights`]: 1 for ground truth, a silver
//! label's confidence for weak labels; the class ratio is then of weight
//! sums). Minibatches
//! come from a seeded shuffle per epoch (ChaCha8), so a run is reproducible.
//! [`TrainConfig`] mirrors the wire's `fedsec.v1.TrainingConfig`; the conversions
//! live where the wire does (`fedsec_client::wire`).

use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::tensor::activation::log_sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use fedsec_model::ModelSpec;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::dataset::Dataset;
use crate::model::{Detector, ModelError, check_weights, cpu, cpu_autodiff};

/// Local optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// SGD with optional (heavy-ball, no dampening) momentum.
    Sgd,
    /// Adam (β = 0.9, 0.999; ε = 1e-5, burn's defaults).
    Adam,
}

/// How to train locally in one round.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Passes over the local data (1–10 000).
    pub epochs: u32,
    /// Minibatch size (1–1 048 576).
    pub batch_size: u32,
    /// Learning rate (finite, in (0, 10]).
    pub learning_rate: f64,
    /// Optimiser.
    pub optimizer: Optimizer,
    /// SGD momentum in [0, 1); ignored by Adam.
    pub momentum: f64,
    /// Weight bots by the local negative/positive ratio.
    pub class_weighting: bool,
    /// Most optimiser steps; 0 = no bound.
    pub max_steps: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 1,
            batch_size: 64,
            learning_rate: 0.01,
            optimizer: Optimizer::Adam,
            momentum: 0.0,
            class_weighting: true,
            max_steps: 0,
        }
    }
}

/// Why a training configuration is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Epochs out of range.
    #[error("local_epochs must be 1..=10000, got {0}")]
    Epochs(u32),
    /// Batch size out of range.
    #[error("batch_size must be 1..=1048576, got {0}")]
    BatchSize(u32),
    /// Learning rate not finite or out of range.
    #[error("learning_rate must be finite and in (0, 10], got {0}")]
    LearningRate(f64),
    /// Momentum not finite or out of range.
    #[error("momentum must be finite and in [0, 1), got {0}")]
    Momentum(f64),
    /// Unknown optimiser value on the wire.
    #[error("unknown optimizer value {0}")]
    Optimizer(i32),
}

impl TrainConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=10_000).contains(&self.epochs) {
            return Err(ConfigError::Epochs(self.epochs));
        }
        if !(1..=1 << 20).contains(&self.batch_size) {
            return Err(ConfigError::BatchSize(self.batch_size));
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 10.0)
        {
            return Err(ConfigError::LearningRate(self.learning_rate));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(ConfigError::Momentum(self.momentum));
        }
        Ok(())
    }
}

/// Why local training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad spec or weights.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The data does not fit the model.
    #[error("data has {got} features, the model expects {expected}")]
    InputDim {
        /// Model input width.
        expected: usize,
        /// Data width.
        got: usize,
    },
    /// No rows to train on.
    #[error("no training data")]
    Empty,
    /// Training produced NaN or infinite weights or loss.
    #[error("training diverged (non-finite {0}); lower the learning rate")]
    Diverged(&'static str),
}

/// Result of one local training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOutcome {
    /// `local − global`, in the canonical layout.
    pub delta: Vec<f32>,
    /// Weighted loss of the global weights on all local rows.
    pub loss_before: f64,
    /// Weighted loss of the local weights on all local rows.
    pub loss_after: f64,
    /// Mean of the minibatch losses seen during training.
    pub mean_batch_loss: f64,
    /// Optimiser steps taken.
    pub steps: u64,
    /// Rows processed (with repetition across epochs).
    pub samples_seen: u64,
    /// Local rows.
    pub examples: usize,
    /// Weight of a bot row (1 without class weighting).
    pub positive_weight: f64,
}

/// Weight of bot rows for a dataset under `class_weighting`.
pub fn positive_weight(data: &Dataset, class_weighting: bool) -> f64 {
    // Sums of row weights (counts when every row weighs 1, as with ground truth).
    let (mut pos, mut neg) = (0.0f64, 0.0f64);
    for (&y, &w) in data.labels().iter().zip(data.weights()) {
        if y == 1.0 {
            pos += f64::from(w);
        } else {
            neg += f64::from(w);
        }
    }
    if class_weighting && pos > 0.0 && neg > 0.0 {
        (neg / pos).clamp(0.01, 100.0)
    } else {
        1.0
    }
}

fn batch_tensors(
    data: &Dataset,
    rows: &[usize],
    pos_w: f64,
    device: &Device,
) -> (Tensor<2>, Tensor<2>, Tensor<2>, f64) {
    let d = data.dim();
    let mut x = Vec::with_capacity(rows.len() * d);
    let mut y = Vec::with_capacity(rows.len());
    let mut w = Vec::with_capacity(rows.len());
    let mut wsum = 0.0;
    for &i in rows {
        x.extend_from_slice(data.row(i));
        let label = data.labels()[i];
        y.push(label);
        let wi = if label == 1.0 { pos_w } else { 1.0 } * f64::from(data.weights()[i]);
        wsum += wi;
        w.push(wi as f32);
    }
    let n = rows.len();
    (
        Tensor::from_data(TensorData::new(x, [n, d]), device),
        Tensor::from_data(TensorData::new(y, [n, 1]), device),
        Tensor::from_data(TensorData::new(w, [n, 1]), device),
        wsum,
    )
}

/// Σ wᵢ ℓᵢ (not normalised) of a batch.
fn weighted_loss_sum(logits: Tensor<2>, y: Tensor<2>, w: Tensor<2>) -> Tensor<1> {
    // ℓ = −log σ(z) + (1 − y)·z
    let one_minus_y = y.neg().add_scalar(1.0);
    let l = log_sigmoid(logits.clone()).neg() + one_minus_y * logits;
    (l * w).sum()
}

/// Weighted mean loss of `weights` on all rows of `data`.
pub fn evaluate_loss(
    spec: &ModelSpec,
    weights: &[f32],
    data: &Dataset,
    class_weighting: bool,
) -> Result<f64, TrainError> {
    if data.is_empty() {
        return Err(TrainError::Empty);
    }
    if data.dim() != spec.input_dim as usize {
        return Err(TrainError::InputDim {
            expected: spec.input_dim as usize,
            got: data.dim(),
        });
    }
    let device = cpu();
    let model = Detector::from_flat(spec, weights, &device)?;
    let pos_w = positive_weight(data, class_weighting);
    let all: Vec<usize> = (0..data.len()).collect();
    let mut total = 0.0;
    let mut wsum = 0.0;
    for chunk in all.chunks(8192) {
        let (x, y, w, ws) = batch_tensors(data, chunk, pos_w, &device);
        let s: f32 = weighted_loss_sum(model.forward(x), y, w).into_scalar();
        total += f64::from(s);
        wsum += ws;
    }
    Ok(total / wsum)
}

/// Trains from `global_weights` on `data` and returns the update. See the
/// [module docs](self).
pub fn train_local(
    spec: &ModelSpec,
    global_weights: &[f32],
    data: &Dataset,
    config: &TrainConfig,
    seed: u64,
) -> Result<TrainOutcome, TrainError> {
    config.validate()?;
    check_weights(spec, global_weights)?;
    if data.is_empty() {
        return Err(TrainError::Empty);
    }
    if data.dim() != spec.input_dim as usize {
        return Err(TrainError::InputDim {
            expected: spec.input_dim as usize,
            got: data.dim(),
        });
    }
    let pos_w = positive_weight(data, config.class_weighting);
    let loss_before = evaluate_loss(spec, global_weights, data, config.class_weighting)?;

    let device = cpu_autodiff();
    let mut model = Detector::from_flat(spec, global_weights, &device)?;
    let mut optim = match config.optimizer {
        Optimizer::Sgd => {
            let momentum = (config.momentum > 0.0).then(|| {
                MomentumConfig::new()
                    .with_momentum(config.momentum)
                    .with_dampening(0.0)
                    .with_nesterov(false)
            });
            SgdConfig::new().with_momentum(momentum).init()
        }
        Optimizer::Adam => AdamConfig::new().init(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..data.len()).collect();
    let max_steps = if config.max_steps == 0 {
        u64::MAX
    } else {
        u64::from(config.max_steps)
    };
    let (mut steps, mut seen, mut batch_loss_sum) = (0u64, 0u64, 0.0f64);
    'epochs: for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for rows in order.chunks(config.batch_size as usize) {
            if steps >= max_steps {
                break 'epochs;
            }
            let (x, y, w, wsum) = batch_tensors(data, rows, pos_w, &device);
            let loss = weighted_loss_sum(model.forward(x), y, w).div_scalar(wsum);
            let value: f32 = loss.clone().into_scalar();
            if !value.is_finite() {
                return Err(TrainError::Diverged("loss"));
            }
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.learning_rate, model, grads);
            batch_loss_sum += f64::from(value);
            steps += 1;
            seen += rows.len() as u64;
        }
    }
    let local = model.to_flat()?;
    if local.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::Diverged("weights"));
    }
    let loss_after = evaluate_loss(spec, &local, data, config.class_weighting)?;
    if !loss_after.is_finite() {
        return Err(TrainError::Diverged("loss"));
    }
    let delta = local
        .iter()
        .zip(global_weights)
        .map(|(l, g)| l - g)
        .collect();
    Ok(TrainOutcome {
        delta,
        loss_before,
        loss_after,
        mean_batch_loss: if steps > 0 {
            batch_loss_sum / steps as f64
        } else {
            loss_before
        },
        steps,
        samples_seen: seen,
        examples: data.len(),
        positive_weight: pos_w,
    })
}

/// Adds a delta to weights (`global + delta`), e.g. to apply a local update.
pub fn apply_delta(weights: &[f32], delta: &[f32]) -> Vec<f32> {
    weights.iter().zip(delta).map(|(w, d)| w + d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two Gaussian blobs in 4-D, 20 % bots.
    fn blobs(n: usize, seed: u64) -> Dataset {
        use rand::RngExt;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut d = Dataset::new(4);
        for i in 0..n {
            let bot = i % 5 == 0;
            let shift = if bot { 1.0 } else { -0.5 };
            let row: Vec<f32> = (0..4)
                .map(|_| shift + rng.random_range(-1.0f32..1.0))
                .collect();
            d.push(&row, bot).unwrap();
        }
        d
    }

    #[test]
    fn training_reduces_loss_for_both_optimisers_and_kinds() {
        let data = blobs(600, 1);
        for spec in [ModelSpec::logistic(4), ModelSpec::mlp(4, [8])] {
            for (optimizer, lr, momentum) in
                [(Optimizer::Sgd, 0.1, 0.9), (Optimizer::Adam, 0.02, 0.0)]
            {
                let cfg = TrainConfig {
                    epochs: 3,
                    batch_size: 32,
                    learning_rate: lr,
                    optimizer,
                    momentum,
                    class_weighting: true,
                    max_steps: 0,
                };
                let w0 = spec.init_weights(5);
                let out = train_local(&spec, &w0, &data, &cfg, 11).unwrap();
                assert_eq!(out.delta.len(), spec.num_params());
                assert_eq!(out.steps, 3 * 600u64.div_ceil(32));
                assert_eq!(out.samples_seen, 1800);
                assert!((out.positive_weight - 4.0).abs() < 1e-12);
                assert!(
                    out.loss_after < 0.7 * out.loss_before,
                    "{spec} {optimizer:?}: {} -> {}",
                    out.loss_before,
                    out.loss_after
                );
                let local = apply_delta(&w0, &out.delta);
                let again = evaluate_loss(&spec, &local, &data, true).unwrap();
                assert!((again - out.loss_after).abs() < 1e-5);
                // Deterministic per seed.
                assert_eq!(train_local(&spec, &w0, &data, &cfg, 11).unwrap(), out);
            }
        }
    }

    #[test]
    fn max_steps_and_errors() {
        let data = blobs(100, 2);
        let spec = ModelSpec::logistic(4);
        let w0 = spec.init_weights(0);
        let cfg = TrainConfig {
            epochs: 10,
            batch_size: 10,
            max_steps: 7,
            ..TrainConfig::default()
        };
        assert_eq!(train_local(&spec, &w0, &data, &cfg, 0).unwrap().steps, 7);
        let bad = TrainConfig {
            learning_rate: f64::NAN,
            ..cfg.clone()
        };
        assert!(matches!(
            train_local(&spec, &w0, &data, &bad, 0),
            Err(TrainError::Config(_))
        ));
        assert!(matches!(
            train_local(
                &ModelSpec::logistic(3),
                &ModelSpec::logistic(3).init_weights(0),
                &data,
                &cfg,
                0
            ),
            Err(TrainError::InputDim {
                expected: 3,
                got: 4
            })
        ));
        assert!(matches!(
            train_local(&spec, &w0[1..], &data, &cfg, 0),
            Err(TrainError::Model(ModelError::WrongLength { .. }))
        ));
        assert!(matches!(
            train_local(&spec, &w0, &Dataset::new(4), &cfg, 0),
            Err(TrainError::Empty)
        ));
    }

    #[test]
    fn loss_matches_a_hand_computation() {
        let spec = ModelSpec::logistic(1);
        let w = [2.0f32, -1.0];
        let data =
            Dataset::from_parts(1, vec![1.0, 0.0, 3.0], vec![1.0, 0.0, 0.0], vec![0; 3]).unwrap();
        let bce = |z: f64, y: f64| {
            -(y * (1.0 / (1.0 + (-z).exp())).ln() + (1.0 - y) * (1.0 / (1.0 + z.exp())).ln())
        };
        let (l1, l2, l3) = (bce(1.0, 1.0), bce(-1.0, 0.0), bce(5.0, 0.0));
        let plain = evaluate_loss(&spec, &w, &data, false).unwrap();
        assert!((plain - (l1 + l2 + l3) / 3.0).abs() < 1e-6);
        // Class weighting: bots weigh negatives/positives = 2.
        let weighted = evaluate_loss(&spec, &w, &data, true).unwrap();
        assert!((weighted - (2.0 * l1 + l2 + l3) / 4.0).abs() < 1e-6);
    }
}
