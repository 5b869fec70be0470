//! Per-session explanations: how much each feature moved the bot logit away
//! from a baseline, and the top reasons in plain words.
//!
//! - Logistic regression: exact linear attributions `wᵢ·(xᵢ − bᵢ)`; they sum
//!   to `logit(x) − logit(b)` exactly.
//! - MLP: integrated gradients (Sundararajan et al. 2017) along the straight
//!   path from the baseline, midpoint rule with at least
//!   [`MIN_IG_STEPS`] = 32 steps. Completeness (attributions summing to
//!   `logit(x) − logit(b)`) is checked per session; a session whose error
//!   exceeds 1 % (or 1e-4 absolute, for tiny differences) is recomputed with
//!   twice the steps, up to [`MAX_IG_STEPS`].
//!
//! The baseline is a set of the tenant's own typical humans
//! ([`baseline::Baseline`]: sessions labelled human, or scored as human by
//! the model, sampled deterministically), attributions averaged over them;
//! with too few of them, the fixed feature centres ([`baseline_for`]: every
//! continuous feature at its transform's center (0), a current-browser user
//! agent, no robots.txt). Either way the missing-field flags are copied from
//! the session itself, so the log format never shows up as a "reason".
//!
//! [`reasons`] turns attributions into sentences: presence reasons first,
//! absence reasons only beside one and with their context, evidence-aware
//! wording for walks through pages.

pub mod baseline;
pub mod reasons;

pub use baseline::{
    Baseline, BaselineSource, GoodBot, ReferenceSampler, is_typical_human, typical_humans,
};
pub use reasons::{Reason, ReasonContext, ReasonKind, reasons, top_reasons};

use burn::tensor::{Tensor, TensorData};
use fedsec_model::{ModelKind, ModelSpec};

use crate::features::{NUM_FEATURES, idx};
use crate::model::{Detector, ModelError, Scorer, check_rows, check_weights, cpu_autodiff};

/// Fewest integrated-gradient steps.
pub const MIN_IG_STEPS: u32 = 32;
/// Most integrated-gradient steps before giving up on the 1 % target.
pub const MAX_IG_STEPS: u32 = 4096;
/// Completeness tolerance, relative to |logit(x) − logit(b)|.
pub const COMPLETENESS_REL_TOL: f64 = 0.01;
/// Completeness tolerance floor, absolute (logit units).
pub const COMPLETENESS_ABS_TOL: f64 = 1e-4;

/// Attributions of one session.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Bot logit of the session.
    pub logit: f32,
    /// Bot logit of the baseline.
    pub baseline_logit: f32,
    /// Per-feature contribution to `logit − baseline_logit`.
    pub attributions: Vec<f32>,
    /// Integrated-gradient steps used (0 for exact linear attributions).
    pub steps: u32,
    /// |Σ attributions − (logit − baseline_logit)|.
    pub completeness_error: f64,
}

impl Explanation {
    /// Bot probability of the session.
    pub fn probability(&self) -> f32 {
        1.0 / (1.0 + (-self.logit).exp())
    }

    /// Whether completeness holds within 1 % (or 1e-4 absolute).
    pub fn is_complete(&self) -> bool {
        within_tolerance(
            self.completeness_error,
            f64::from(self.logit - self.baseline_logit),
        )
    }
}

fn within_tolerance(err: f64, diff: f64) -> bool {
    err <= (COMPLETENESS_REL_TOL * diff.abs()).max(COMPLETENESS_ABS_TOL)
}

/// Missing-field flags: every baseline takes the session's own values.
pub const COPIED_FLAGS: [usize; 5] = [
    idx::SESSION_ID_MISSING,
    idx::USER_MISSING,
    idx::OUTCOME_MISSING,
    idx::ASN_MISSING,
    idx::CRAWLER_RANGES_MISSING,
];

/// The feature-centre baseline for a session's model inputs (see the module
/// docs). For inputs that are not [`NUM_FEATURES`] wide, the all-zero vector.
pub fn baseline_for(x: &[f32]) -> Vec<f32> {
    let mut b = vec![0.0f32; x.len()];
    if x.len() == NUM_FEATURES {
        b[idx::UA_BROWSER] = 1.0;
        for i in COPIED_FLAGS {
            b[i] = x[i];
        }
    }
    b
}

/// Explains each row of `features` (row-major, `input_dim` wide) against the
/// matching row of `baselines`.
pub fn explain(
    spec: &ModelSpec,
    weights: &[f32],
    features: &[f32],
    baselines: &[f32],
) -> Result<Vec<Explanation>, ModelError> {
    check_weights(spec, weights)?;
    let d = spec.input_dim as usize;
    let n = check_rows(features, d)?;
    if check_rows(baselines, d)? != n {
        return Err(ModelError::InputShape {
            len: baselines.len(),
            input_dim: d,
        });
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let scorer = Scorer::new(spec, weights)?;
    let logits = scorer.logits(features)?;
    let base_logits = scorer.logits(baselines)?;
    let mut out = Vec::with_capacity(n);
    match spec.kind {
        ModelKind::Logistic => {
            let w = &weights[..d];
            for r in 0..n {
                let (x, b) = (
                    &features[r * d..(r + 1) * d],
                    &baselines[r * d..(r + 1) * d],
                );
                let attributions: Vec<f32> = (0..d).map(|i| w[i] * (x[i] - b[i])).collect();
                out.push(finish(logits[r], base_logits[r], attributions, 0));
            }
        }
        ModelKind::Mlp => {
            let device = cpu_autodiff();
            let model = Detector::from_flat(spec, weights, &device)?;
            for r in 0..n {
                let (x, b) = (
                    &features[r * d..(r + 1) * d],
                    &baselines[r * d..(r + 1) * d],
                );
                let mut steps = MIN_IG_STEPS;
                loop {
                    let attributions = integrated_gradients(&model, &device, x, b, steps)?;
                    let e = finish(logits[r], base_logits[r], attributions, steps);
                    if e.is_complete() || steps >= MAX_IG_STEPS {
                        out.push(e);
                        break;
                    }
                    steps *= 2;
                }
            }
        }
    }
    Ok(out)
}

pub(crate) fn finish(
    logit: f32,
    baseline_logit: f32,
    attributions: Vec<f32>,
    steps: u32,
) -> Explanation {
    let sum: f64 = attributions.iter().map(|&a| f64::from(a)).sum();
    let completeness_error = (sum - (f64::from(logit) - f64::from(baseline_logit))).abs();
    Explanation {
        logit,
        baseline_logit,
        attributions,
        steps,
        completeness_error,
    }
}

/// IG with the midpoint rule: mean over k of ∂f/∂x at b + (k − ½)/m·(x − b),
/// times (x − b).
fn integrated_gradients(
    model: &Detector,
    device: &burn::tensor::Device,
    x: &[f32],
    b: &[f32],
    steps: u32,
) -> Result<Vec<f32>, ModelError> {
    let d = x.len();
    let m = steps as usize;
    let mut points = Vec::with_capacity(m * d);
    for k in 0..m {
        let alpha = (k as f32 + 0.5) / m as f32;
        points.extend((0..d).map(|i| b[i] + alpha * (x[i] - b[i])));
    }
    let input = Tensor::<2>::from_data(TensorData::new(points, [m, d]), device).require_grad();
    let out = model.forward(input.clone()).sum();
    let grads = out.backward();
    let g = input
        .grad(&grads)
        .ok_or_else(|| ModelError::Backend("no input gradient".into()))?;
    let g = g
        .try_into_data()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
    let mut avg = vec![0.0f64; d];
    for row in g.chunks_exact(d) {
        for (a, v) in avg.iter_mut().zip(row) {
            *a += f64::from(*v);
        }
    }
    Ok((0..d)
        .map(|i| (avg[i] / m as f64) as f32 * (x[i] - b[i]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, d: usize, seed: u64) -> Vec<f32> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..n * d).map(|_| rng.random_range(-2.0f32..2.0)).collect()
    }

    #[test]
    fn linear_attributions_are_exact() {
        let spec = ModelSpec::logistic(NUM_FEATURES as u32);
        let w = spec.init_weights(4);
        let x = rows(5, NUM_FEATURES, 1);
        let b: Vec<f32> = x.chunks(NUM_FEATURES).flat_map(baseline_for).collect();
        let ex = explain(&spec, &w, &x, &b).unwrap();
        for (r, e) in ex.iter().enumerate() {
            assert_eq!(e.steps, 0);
            assert!(e.completeness_error < 1e-5, "{}", e.completeness_error);
            for i in 0..NUM_FEATURES {
                let want = w[i] * (x[r * NUM_FEATURES + i] - b[r * NUM_FEATURES + i]);
                assert_eq!(e.attributions[i], want);
            }
            // Missing-field flags are copied into the baseline: no attribution.
            assert_eq!(e.attributions[idx::OUTCOME_MISSING], 0.0);
        }
    }

    #[test]
    fn integrated_gradients_are_complete_within_one_percent() {
        let spec = ModelSpec::mlp(NUM_FEATURES as u32, [16, 8]);
        let w = spec.init_weights(8);
        let x = rows(20, NUM_FEATURES, 2);
        let b: Vec<f32> = x.chunks(NUM_FEATURES).flat_map(baseline_for).collect();
        let ex = explain(&spec, &w, &x, &b).unwrap();
        for e in &ex {
            assert!(e.steps >= MIN_IG_STEPS);
            let diff = f64::from(e.logit - e.baseline_logit);
            assert!(
                e.completeness_error <= 0.01 * diff.abs() + 1e-4,
                "error {} for difference {diff} with {} steps",
                e.completeness_error,
                e.steps
            );
        }
    }

    #[test]
    fn ig_on_a_linear_mlp_region_matches_the_exact_gradient() {
        // With all ReLUs active along the path, IG equals w_eff · (x − b).
        let spec = ModelSpec::mlp(2, [1]);
        let w = [1.0f32, 2.0, 10.0, 3.0, 0.0];
        let ex = explain(&spec, &w, &[1.0, 1.0], &[0.0, 0.0]).unwrap();
        let a = &ex[0].attributions;
        assert!(
            (a[0] - 3.0).abs() < 1e-5 && (a[1] - 6.0).abs() < 1e-5,
            "{a:?}"
        );
    }
}
