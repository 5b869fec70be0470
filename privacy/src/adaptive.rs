//! Adaptive clipping (Andrew, Thakkar, McMahan & Ramaswamy 2021,
//! "Differentially Private Learning with Adaptive Clipping").
//!
//! Each round the clip norm `C` moves geometrically toward the target quantile
//! `γ` of the clients' update norms, driven by a *noised* count of clients
//! whose update was within `C`:
//! `C ← C · exp(−η (b̃ − γ))`, `b̃ = noisy count / expected cohort size`.
//!
//! # Accounting
//!
//! The count query uses centred bits `bᵢ − ½ ∈ {−½, ½}`, so under add/remove
//! of one client its L2 sensitivity is `½` (see [`COUNT_SENSITIVITY`]); with
//! noise `N(0, σ_b²)` it is a Gaussian mechanism with noise multiplier `2σ_b`.
//! Released together with the update sum (noise multiplier `z_Δ`), the round
//! is one Gaussian mechanism with
//! `z = (z_Δ⁻² + (2σ_b)⁻²)^(−1/2)` ([`effective_noise_multiplier`]). To keep a
//! target total `z`, the update must use `z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2)`
//! ([`update_noise_multiplier`]), which requires `z < 2σ_b`.
//!
//! The coordinator computes the query as [`centered_count`]` + N(0, σ_b²)`
//! (noise from the same [`crate::noise::GaussianNoise`] source) and passes
//! [`noisy_within_clip_count`] of that to [`AdaptiveClipState::update`]. The
//! denominator is the fixed expected cohort size `q·N`, never the realised
//! number of reports.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// L2 sensitivity of the centred within-clip count under add/remove-one.
pub const COUNT_SENSITIVITY: f64 = 0.5;

/// Invalid adaptive-clipping configuration.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AdaptiveError {
    /// The total noise multiplier is not a finite number > 0.
    #[error("total noise multiplier {0} must be a finite number > 0")]
    InvalidNoiseMultiplier(f64),
    /// The count noise stddev is not a finite number > 0.
    #[error("count noise stddev {0} must be a finite number > 0")]
    InvalidCountStddev(f64),
    /// `z ≥ 2σ_b`: the count query alone would already spend the whole budget.
    #[error(
        "total noise multiplier {total} must be below 2 x count stddev = {limit}: \
         the clipped-count query alone would use the whole privacy budget"
    )]
    CountNoiseTooSmall {
        /// Requested total noise multiplier `z`.
        total: f64,
        /// `2σ_b`.
        limit: f64,
    },
}

/// Noise multiplier `z_Δ` for the update sum that keeps the round's total
/// noise multiplier at `z` when the clipped-count query has noise stddev
/// `σ_b`: `z_Δ = (z⁻² − (2σ_b)⁻²)^(−1/2)`. Refuses `z ≥ 2σ_b`.
pub fn update_noise_multiplier(
    total_noise_multiplier: f64,
    count_stddev: f64,
) -> Result<f64, AdaptiveError> {
    let z = total_noise_multiplier;
    if !(z > 0.0 && z.is_finite()) {
        return Err(AdaptiveError::InvalidNoiseMultiplier(z));
    }
    if !(count_stddev > 0.0 && count_stddev.is_finite()) {
        return Err(AdaptiveError::InvalidCountStddev(count_stddev));
    }
    let limit = 2.0 * count_stddev;
    if z >= limit {
        return Err(AdaptiveError::CountNoiseTooSmall { total: z, limit });
    }
    let inv2 = 1.0 / (z * z) - 1.0 / (limit * limit);
    Ok(1.0 / inv2.sqrt())
}

/// The round's total noise multiplier given the update's `z_Δ` and the count
/// noise `σ_b`: `(z_Δ⁻² + (2σ_b)⁻²)^(−1/2)`; equals `z_Δ` when
/// `count_stddev == 0` (fixed clipping).
pub fn effective_noise_multiplier(update_noise_multiplier: f64, count_stddev: f64) -> f64 {
    if count_stddev <= 0.0 {
        return update_noise_multiplier;
    }
    let z = update_noise_multiplier;
    let b = 2.0 * count_stddev;
    1.0 / (1.0 / (z * z) + 1.0 / (b * b)).sqrt()
}

/// The centred count `Σ (bᵢ − ½) = within − reports/2` whose sensitivity is
/// [`COUNT_SENSITIVITY`]; add `N(0, σ_b²)` to it before releasing it.
pub fn centered_count(within_clip: u64, reports: u64) -> f64 {
    within_clip as f64 - reports as f64 / 2.0
}

/// Turns the noised centred count back into a noisy count of clients within
/// the clip norm, relative to the expected cohort:
/// `noisy_centered + expected_cohort/2` (post-processing, no privacy cost).
pub fn noisy_within_clip_count(noisy_centered_count: f64, expected_cohort: f64) -> f64 {
    noisy_centered_count + expected_cohort / 2.0
}

/// State of the adaptive clip norm across rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveClipState {
    /// Current clip norm `C`.
    pub clip_norm: f64,
    /// Target quantile `γ ∈ (0, 1)` of update norms (e.g. 0.5).
    pub target_quantile: f64,
    /// Geometric learning rate `η` (e.g. 0.2).
    pub learning_rate: f64,
    /// Stddev `σ_b` of the noise on the clipped count.
    pub count_stddev: f64,
}

impl AdaptiveClipState {
    /// Geometric update `C ← C·exp(−η(b̃ − γ))` with
    /// `b̃ = noisy_within_clip_count / expected_cohort` (the fixed expected
    /// cohort `q·N`, not the realised one). Returns the new `C`. A
    /// non-positive or non-finite expected cohort leaves `C` unchanged.
    pub fn update(&mut self, noisy_within_clip_count: f64, expected_cohort: f64) -> f64 {
        if expected_cohort > 0.0
            && expected_cohort.is_finite()
            && noisy_within_clip_count.is_finite()
        {
            let b = noisy_within_clip_count / expected_cohort;
            let next = self.clip_norm * (-self.learning_rate * (b - self.target_quantile)).exp();
            if next.is_finite() && next > 0.0 {
                self.clip_norm = next;
            }
        }
        self.clip_norm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_of_andrew_et_al() {
        // /work/shared/reference/README.md: z=1, σ_b=5 → 1.00504; z=1, σ_b=2.5 → 1.02062;
        // z=2, σ_b=5 → 2.04124.
        for &(z, sb, expect) in &[
            (1.0, 5.0, 1.00504),
            (1.0, 2.5, 1.02062),
            (2.0, 5.0, 2.04124),
        ] {
            let zd = update_noise_multiplier(z, sb).unwrap();
            assert!((zd - expect).abs() < 5e-6, "z={z} σ_b={sb}: {zd}");
            assert!((effective_noise_multiplier(zd, sb) - z).abs() < 1e-12);
        }
    }

    #[test]
    fn refuses_count_noise_that_is_too_small() {
        assert!(matches!(
            update_noise_multiplier(2.0, 1.0),
            Err(AdaptiveError::CountNoiseTooSmall { .. })
        ));
        assert!(update_noise_multiplier(2.1, 1.0).is_err());
        assert!(update_noise_multiplier(1.0, 0.0).is_err());
        assert!(update_noise_multiplier(0.0, 1.0).is_err());
        assert_eq!(effective_noise_multiplier(1.3, 0.0), 1.3);
    }

    #[test]
    fn clip_norm_moves_toward_the_target_quantile() {
        let mut s = AdaptiveClipState {
            clip_norm: 1.0,
            target_quantile: 0.5,
            learning_rate: 0.2,
            count_stddev: 5.0,
        };
        // Everyone within C: C shrinks by exp(−0.2·0.5).
        let c = s.update(100.0, 100.0);
        assert!((c - (-0.1f64).exp()).abs() < 1e-15);
        // Nobody within C: C grows.
        let c2 = s.update(0.0, 100.0);
        assert!((c2 - c * 0.1f64.exp()).abs() < 1e-15);
        // Exactly on target: unchanged.
        assert_eq!(s.update(50.0, 100.0), c2);
        // Invalid cohort: unchanged.
        assert_eq!(s.update(10.0, 0.0), c2);
        // Centred count round trip.
        let noisy = noisy_within_clip_count(centered_count(30, 80), 80.0);
        assert_eq!(noisy, 30.0);
    }
}
