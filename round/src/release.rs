//! Turning a closed round's sum into the next model: noise, the fixed
//! denominator, adaptive clipping and the server optimiser.
//!
//! Pure numerics (no I/O); the coordinator runs it on a blocking thread, the
//! simulator in its round loop:
//!
//! 1. `sum += N(0, (z_Δ · sensitivity)² I)` from the job's noise source,
//!    with `sensitivity = C + source.sensitivity_inflation(d)`;
//! 2. with adaptive clipping, the centred within-clip count gets
//!    `N(0, σ_b'²)` from the same source, where `σ_b' = σ_b · (½ + infl(1)) / ½`
//!    keeps the accounted ratio σ/Δ = 2σ_b despite grid rounding, and C moves
//!    toward the target quantile;
//! 3. `mean = sum / expected_cohort` — the fixed q·N, never the realised count;
//! 4. FedAvg `w ← w + η·mean`, or FedAvgM `m ← β·m + mean; w ← w + η·m`
//!    (post-processing; the momentum buffer is persisted with each version so
//!    a restarted coordinator continues exactly).

use fedsec_privacy::adaptive::{COUNT_SENSITIVITY, centered_count, noisy_within_clip_count};
use fedsec_privacy::{AdaptiveClipState, GaussianNoise};

use crate::error::RoundError;

/// Noise settings of one release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoisePlan {
    /// Stddev of the noise on each coordinate of the sum (z_Δ · sensitivity).
    pub update_stddev: f64,
}

/// Adaptive clipping inputs of one release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptivePlan {
    /// The clip state before the round (C used in the round).
    pub state: AdaptiveClipState,
    /// Updates counted as within C.
    pub within_clip: u64,
    /// Updates accepted.
    pub reports: u64,
}

/// Server optimiser settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerOpt {
    /// Learning rate η.
    pub learning_rate: f64,
    /// Momentum β (0: plain FedAvg).
    pub momentum: f64,
}

/// The next model.
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    /// New weights.
    pub weights: Vec<f32>,
    /// New momentum buffer (FedAvgM only).
    pub momentum: Option<Vec<f32>>,
    /// Clip norm for the next round.
    pub next_clip_norm: f64,
}

/// What a release starts from, besides the sum.
pub struct Release<'a> {
    /// The published weights the round was trained on.
    pub weights: &'a [f32],
    /// FedAvgM momentum after the published version, if any.
    pub momentum: Option<&'a [f32]>,
    /// The noise source and its plan; `None` only for jobs with noise
    /// disabled under `[dangerous]`.
    pub noise: Option<(&'a mut dyn GaussianNoise, NoisePlan)>,
    /// Adaptive clipping inputs, when the job clips adaptively.
    pub adaptive: Option<AdaptivePlan>,
    /// The clip norm `C` of the round.
    pub clip_norm: f64,
    /// The fixed denominator q·N (never the realised count).
    pub expected_cohort: f64,
    /// The server optimiser.
    pub opt: ServerOpt,
}

impl std::fmt::Debug for Release<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("dim", &self.weights.len())
            .field("noise", &self.noise.as_ref().map(|(_, p)| p))
            .field("adaptive", &self.adaptive)
            .field("clip_norm", &self.clip_norm)
            .field("expected_cohort", &self.expected_cohort)
            .field("opt", &self.opt)
            .finish_non_exhaustive()
    }
}

/// Computes the next model from a round's sum.
pub fn release(mut sum: Vec<f64>, input: Release<'_>) -> Result<Released, RoundError> {
    let Release {
        weights,
        momentum,
        noise,
        adaptive,
        clip_norm,
        expected_cohort,
        opt,
    } = input;
    if sum.len() != weights.len() {
        return Err(RoundError::Dimension {
            sum: sum.len(),
            model: weights.len(),
        });
    }
    if !(expected_cohort > 0.0 && expected_cohort.is_finite()) {
        return Err(RoundError::ExpectedCohort(expected_cohort));
    }
    let mut next_clip_norm = clip_norm;
    match noise {
        Some((source, plan)) => {
            source
                .add_noise(&mut sum, plan.update_stddev)
                .map_err(|source| RoundError::Noise {
                    what: "sum",
                    source,
                })?;
            if let Some(a) = adaptive {
                let mut state = a.state;
                let inflation = source.sensitivity_inflation(1);
                let stddev =
                    state.count_stddev * (COUNT_SENSITIVITY + inflation) / COUNT_SENSITIVITY;
                let mut count = [centered_count(a.within_clip, a.reports)];
                source
                    .add_noise(&mut count, stddev)
                    .map_err(|source| RoundError::Noise {
                        what: "clip count",
                        source,
                    })?;
                next_clip_norm = state.update(
                    noisy_within_clip_count(count[0], expected_cohort),
                    expected_cohort,
                );
            }
        }
        None => {
            if adaptive.is_some() {
                return Err(RoundError::AdaptiveWithoutNoise);
            }
        }
    }
    let inv = 1.0 / expected_cohort;
    let lr = opt.learning_rate;
    let mut new_weights = Vec::with_capacity(weights.len());
    let new_momentum = if opt.momentum > 0.0 {
        let mut m: Vec<f32> = match momentum {
            Some(m) if m.len() == weights.len() => m.to_vec(),
            _ => vec![0.0; weights.len()],
        };
        for ((w, s), mi) in weights.iter().zip(&sum).zip(m.iter_mut()) {
            let v = opt.momentum * f64::from(*mi) + s * inv;
            *mi = v as f32;
            new_weights.push((f64::from(*w) + lr * f64::from(*mi)) as f32);
        }
        Some(m)
    } else {
        for (w, s) in weights.iter().zip(&sum) {
            new_weights.push((f64::from(*w) + lr * (s * inv)) as f32);
        }
        None
    };
    if let Some(i) = new_weights.iter().position(|w| !w.is_finite()) {
        return Err(RoundError::NonFiniteModel { index: i });
    }
    Ok(Released {
        weights: new_weights,
        momentum: new_momentum,
        next_clip_norm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsec_privacy::SimulationGaussian;

    const FEDAVG: ServerOpt = ServerOpt {
        learning_rate: 1.0,
        momentum: 0.0,
    };

    #[test]
    fn without_noise_the_update_is_sum_over_the_fixed_cohort() {
        let r = release(
            vec![2.0, -4.0],
            Release {
                weights: &[1.0, 1.0],
                momentum: None,
                noise: None,
                adaptive: None,
                clip_norm: 1.0,
                expected_cohort: 4.0,
                opt: FEDAVG,
            },
        )
        .unwrap();
        assert_eq!(r.weights, vec![1.5, 0.0]);
        assert!(r.momentum.is_none());
        assert_eq!(r.next_clip_norm, 1.0);
    }

    #[test]
    fn momentum_accumulates_and_is_returned() {
        let opt = ServerOpt {
            learning_rate: 0.5,
            momentum: 0.9,
        };
        let r1 = release(
            vec![1.0],
            Release {
                weights: &[0.0],
                momentum: None,
                noise: None,
                adaptive: None,
                clip_norm: 1.0,
                expected_cohort: 1.0,
                opt,
            },
        )
        .unwrap();
        assert_eq!(r1.momentum.as_deref(), Some(&[1.0f32][..]));
        assert_eq!(r1.weights, vec![0.5]);
        let r2 = release(
            vec![1.0],
            Release {
                weights: &r1.weights,
                momentum: r1.momentum.as_deref(),
                noise: None,
                adaptive: None,
                clip_norm: 1.0,
                expected_cohort: 1.0,
                opt,
            },
        )
        .unwrap();
        assert!((r2.momentum.as_ref().unwrap()[0] - 1.9).abs() < 1e-6);
        assert!((r2.weights[0] - (0.5 + 0.95)).abs() < 1e-6);
    }

    #[test]
    fn noise_has_the_planned_stddev() {
        let d = 200_000;
        let mut src = SimulationGaussian::seeded(3);
        let plan = NoisePlan { update_stddev: 2.0 };
        let r = release(
            vec![0.0; d],
            Release {
                weights: &vec![0.0; d],
                momentum: None,
                noise: Some((&mut src, plan)),
                adaptive: None,
                clip_norm: 1.0,
                expected_cohort: 10.0,
                opt: FEDAVG,
            },
        )
        .unwrap();
        // mean = N(0, 2²)/10 → stddev 0.2
        let var = r.weights.iter().map(|&w| f64::from(w).powi(2)).sum::<f64>() / d as f64;
        assert!((var.sqrt() - 0.2).abs() < 0.002, "{}", var.sqrt());
    }

    #[test]
    fn adaptive_clipping_moves_c_toward_the_quantile() {
        let mut src = SimulationGaussian::seeded(1);
        let state = AdaptiveClipState {
            clip_norm: 1.0,
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_stddev: 0.01,
        };
        // Everyone was within C: C shrinks.
        let r = release(
            vec![0.0; 2],
            Release {
                weights: &[0.0; 2],
                momentum: None,
                noise: Some((&mut src, NoisePlan { update_stddev: 0.1 })),
                adaptive: Some(AdaptivePlan {
                    state,
                    within_clip: 100,
                    reports: 100,
                }),
                clip_norm: 1.0,
                expected_cohort: 100.0,
                opt: FEDAVG,
            },
        )
        .unwrap();
        assert!(
            r.next_clip_norm < 1.0 && r.next_clip_norm > 0.85,
            "{}",
            r.next_clip_norm
        );
    }

    #[test]
    fn a_diverging_model_is_refused() {
        let opt = ServerOpt {
            learning_rate: 1e30,
            momentum: 0.0,
        };
        assert!(
            release(
                vec![1e10],
                Release {
                    weights: &[0.0],
                    momentum: None,
                    noise: None,
                    adaptive: None,
                    clip_norm: 1.0,
                    expected_cohort: 1.0,
                    opt
                }
            )
            .is_err()
        );
    }
}
