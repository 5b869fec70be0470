//! Resolve: a job's round parameters, fixed once when it starts, from its
//! declared parameters only (never from who has registered or reported).

use fedsec_privacy::{PldAccountant, calibrate_noise_multiplier, update_noise_multiplier};

use crate::error::RoundError;

/// How a job chooses its noise multiplier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoiseLevel {
    /// A fixed z.
    Multiplier(f64),
    /// A target ε after `rounds` rounds.
    TargetEpsilon(f64),
}

/// A job's declared parameters, as far as its rounds depend on them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobParams {
    /// Poisson sampling rate q of each unit (tenant).
    pub sampling_rate: f64,
    /// The fixed denominator q × population.
    pub expected_cohort: f64,
    /// Rounds the job runs (what a target ε is calibrated over).
    pub rounds: u64,
    /// δ of the guarantee.
    pub delta: f64,
    /// The noise choice; `None`: noise disabled (no guarantee).
    pub noise: Option<NoiseLevel>,
    /// Adaptive clipping's count noise stddev σ_b, when the job clips
    /// adaptively: `Some(0.0)` means the default, expected cohort / 20.
    pub adaptive_count_stddev: Option<f64>,
}

/// A job's round parameters once resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved {
    /// Poisson sampling rate q.
    pub sampling_rate: f64,
    /// The fixed denominator q·N.
    pub expected_cohort: f64,
    /// Total noise multiplier z the job is accounted with (0: no noise).
    pub noise_multiplier: f64,
    /// Noise multiplier z_Δ of the model update (= z without adaptive clipping).
    pub update_noise_multiplier: f64,
    /// Stddev σ_b of the clipped-count noise (0 without adaptive clipping).
    pub count_stddev: f64,
}

/// Noise multiplier z for `rounds` rounds at rate `q` reaching
/// `target_epsilon` at `delta`, by the PLD accountant (the one receipts
/// report).
pub fn calibrate(q: f64, rounds: u64, delta: f64, target_epsilon: f64) -> Result<f64, RoundError> {
    calibrate_noise_multiplier(&PldAccountant, q, rounds, delta, target_epsilon)
        .map_err(RoundError::Calibration)
}

/// Resolves a job's parameters: calibrates z for a target ε (which can take
/// a second: callers in async code run it on a blocking thread), and splits
/// it between the update and the clip count under adaptive clipping.
pub fn resolve(p: &JobParams) -> Result<Resolved, RoundError> {
    let count_stddev = match p.adaptive_count_stddev {
        Some(s) if s > 0.0 => s,
        Some(_) => p.expected_cohort / 20.0,
        None => 0.0,
    };
    let z = match p.noise {
        None => 0.0,
        Some(NoiseLevel::Multiplier(z)) => z,
        Some(NoiseLevel::TargetEpsilon(eps)) => calibrate(p.sampling_rate, p.rounds, p.delta, eps)?,
    };
    let update_noise_multiplier = if p.adaptive_count_stddev.is_some() {
        update_noise_multiplier(z, count_stddev).map_err(|source| RoundError::Adaptive {
            count_stddev,
            source,
        })?
    } else {
        z
    };
    Ok(Resolved {
        sampling_rate: p.sampling_rate,
        expected_cohort: p.expected_cohort,
        noise_multiplier: z,
        update_noise_multiplier,
        count_stddev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> JobParams {
        JobParams {
            sampling_rate: 0.2,
            expected_cohort: 20.0,
            rounds: 10,
            delta: 1e-6,
            noise: Some(NoiseLevel::Multiplier(1.5)),
            adaptive_count_stddev: None,
        }
    }

    #[test]
    fn a_fixed_multiplier_is_kept_and_adaptive_clipping_splits_it() {
        let r = resolve(&params()).unwrap();
        assert_eq!((r.noise_multiplier, r.update_noise_multiplier), (1.5, 1.5));
        assert_eq!(r.count_stddev, 0.0);
        let a = resolve(&JobParams {
            adaptive_count_stddev: Some(0.0),
            ..params()
        })
        .unwrap();
        assert_eq!(a.count_stddev, 1.0, "default σ_b = cohort / 20");
        assert!(a.update_noise_multiplier > 1.5);
        let e = resolve(&JobParams {
            adaptive_count_stddev: Some(0.5),
            ..params()
        })
        .unwrap_err();
        assert!(e.is_accounting(), "{e}");
    }

    #[test]
    fn a_target_epsilon_is_calibrated_and_no_noise_is_zero() {
        let r = resolve(&JobParams {
            noise: Some(NoiseLevel::TargetEpsilon(3.0)),
            ..params()
        })
        .unwrap();
        assert_eq!(r.noise_multiplier, calibrate(0.2, 10, 1e-6, 3.0).unwrap());
        let off = resolve(&JobParams {
            noise: None,
            ..params()
        })
        .unwrap();
        assert_eq!(off.noise_multiplier, 0.0);
    }
}
