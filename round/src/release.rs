//! Turning a closed round's sum into the next model: noise, the fixed
//! denominator, adaptive clipping and the server optimiser.
//!
//! Pure numerics (no I/O); the coordinator runs it on a blocking thread, the
//! simulator in its round loop:
//!
//! 1. `sum += N(0, (z_Δ · sensitivity)² I)`, drawn ahead from the job's
//!    noise source ([`RoundNoise`], consumed here), with `sensitivity = C′`
//!    (C plus the source's grid inflation plus the sum's rounding bound);
//! 2. with adaptive clipping, the centred within-clip count gets the drawn
//!    `N(0, σ_b'²)`, where `σ_b' = σ_b · (½ + infl(1)) / ½` keeps the
//!    accounted ratio σ/Δ = 2σ_b despite grid rounding, and C moves toward
//!    the target quantile;
//! 3. `mean = sum / expected_cohort` — the fixed q·N, never the realised count;
//! 4. FedAvg `w ← w + η·mean`, or FedAvgM `m ← β·m + mean; w ← w + η·m`
//!    (post-processing; the momentum buffer is persisted with each version so
//!    a restarted coordinator continues exactly).

use fedsec_privacy::AdaptiveClipState;
use fedsec_privacy::adaptive::{centered_count, noisy_within_clip_count};

use crate::error::RoundError;
use crate::noise::RoundNoise;

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
    /// The round's noise, drawn ahead ([`RoundNoise::draw`]), and the plan
    /// it must have been drawn for; `None` only for jobs with noise disabled
    /// under `[dangerous]`.
    pub noise: Option<(RoundNoise, NoisePlan)>,
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
            .field("noise", &self.noise.as_ref().map(|(n, _)| n.request()))
            .field("adaptive", &self.adaptive)
            .field("clip_norm", &self.clip_norm)
            .field("expected_cohort", &self.expected_cohort)
            .field("opt", &self.opt)
            .finish_non_exhaustive()
    }
}

/// Computes the next model from a round's sum, consuming the round's noise.
/// Noise drawn for another plan, dimension or clip-count setting is refused
/// ([`RoundError::NoiseMismatch`]).
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
        Some((drawn, plan)) => {
            let count_stddev = adaptive.map(|a| a.state.count_stddev);
            let (sum_noise, count_noise) = drawn.take(plan, weights.len(), count_stddev)?;
            sum_noise
                .add_to(&mut sum)
                .map_err(|source| RoundError::Noise {
                    what: "sum",
                    source,
                })?;
            if let (Some(a), Some(noise)) = (adaptive, count_noise) {
                let mut state = a.state;
                let mut count = [centered_count(a.within_clip, a.reports)];
                noise
                    .add_to(&mut count)
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
    use crate::noise::NoiseRequest;
    use fedsec_privacy::adaptive::COUNT_SENSITIVITY;
    use fedsec_privacy::{DiscreteGaussianNoise, GaussianNoise, SimulationGaussian};

    fn draw(
        src: &mut dyn GaussianNoise,
        plan: NoisePlan,
        dim: usize,
        count_stddev: Option<f64>,
    ) -> RoundNoise {
        let request = NoiseRequest {
            plan,
            dim,
            count_stddev,
        };
        RoundNoise::draw(src, request).unwrap()
    }

    /// The release before pre-drawn noise: the source added inline.
    fn release_inline(
        sum: &[f64],
        src: &mut dyn GaussianNoise,
        plan: NoisePlan,
        a: AdaptivePlan,
        cohort: f64,
    ) -> (Vec<f32>, f64) {
        let mut sum = sum.to_vec();
        src.add_noise(&mut sum, plan.update_stddev).unwrap();
        let mut state = a.state;
        let stddev = state.count_stddev * (COUNT_SENSITIVITY + src.sensitivity_inflation(1))
            / COUNT_SENSITIVITY;
        let mut count = [centered_count(a.within_clip, a.reports)];
        src.add_noise(&mut count, stddev).unwrap();
        let c = state.update(noisy_within_clip_count(count[0], cohort), cohort);
        let w = sum.iter().map(|s| (s / cohort) as f32).collect();
        (w, c)
    }

    fn adaptive(count_stddev: f64) -> AdaptivePlan {
        AdaptivePlan {
            state: AdaptiveClipState {
                clip_norm: 1.0,
                target_quantile: 0.5,
                learning_rate: 0.2,
                count_stddev,
            },
            within_clip: 7,
            reports: 10,
        }
    }

    #[test]
    fn pre_drawn_noise_releases_what_the_inline_source_did() {
        // Same seed: the same model and next C, bit for bit (sum noise first,
        // then the clip count, with the grid-inflated σ_b').
        let (d, plan, a) = (1000, NoisePlan { update_stddev: 1.5 }, adaptive(0.3));
        let sum: Vec<f64> = (0..d).map(|i| i as f64 * 0.01 - 3.0).collect();
        let (w_inline, c_inline) =
            release_inline(&sum, &mut SimulationGaussian::seeded(11), plan, a, 10.0);
        let mut src = SimulationGaussian::seeded(11);
        let r = release(
            sum,
            Release {
                weights: &vec![0.0; d],
                momentum: None,
                noise: Some((draw(&mut src, plan, d, Some(0.3)), plan)),
                adaptive: Some(a),
                clip_norm: 1.0,
                expected_cohort: 10.0,
                opt: FEDAVG,
            },
        )
        .unwrap();
        assert_eq!(r.weights, w_inline);
        assert_eq!(r.next_clip_norm, c_inline);
    }

    #[test]
    fn two_draws_give_two_models_and_mismatched_noise_is_refused() {
        let (d, plan) = (50_000, NoisePlan { update_stddev: 1.0 });
        let mut src = DiscreteGaussianNoise::seeded(8);
        let first = draw(&mut src, plan, d, None);
        let second = draw(&mut src, plan, d, None);
        let run = |noise: RoundNoise, p: NoisePlan| {
            release(
                vec![0.0; d],
                Release {
                    weights: &vec![0.0; d],
                    momentum: None,
                    noise: Some((noise, p)),
                    adaptive: None,
                    clip_norm: 1.0,
                    expected_cohort: 1.0,
                    opt: FEDAVG,
                },
            )
        };
        let (a, b) = (run(first, plan).unwrap(), run(second, plan).unwrap());
        let same = a
            .weights
            .iter()
            .zip(&b.weights)
            .filter(|(x, y)| x == y)
            .count();
        assert!(same < 10, "{same} of {d} coordinates equal");
        // Noise drawn for another stddev is refused, not silently added.
        let other = NoisePlan { update_stddev: 2.0 };
        let e = run(draw(&mut src, plan, d, None), other).unwrap_err();
        assert!(matches!(e, RoundError::NoiseMismatch { .. }), "{e}");
    }

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
                noise: Some((draw(&mut src, plan, d, None), plan)),
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
        let plan = NoisePlan { update_stddev: 0.1 };
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
                noise: Some((draw(&mut src, plan, 2, Some(0.01)), plan)),
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
