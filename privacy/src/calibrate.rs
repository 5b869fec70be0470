//! Calibration: the noise a job needs for a target ε, and the rounds a noise
//! level allows.
//!
//! Both searches rely only on ε being non-decreasing in the number of rounds
//! and non-increasing in the noise multiplier, and both return a value that
//! was *evaluated* to meet the target (never an interpolated guess):
//! - [`calibrate_noise_multiplier`]: bracketing by doubling/halving, then
//!   bisection on `z` until the bracket `[lo, hi]` satisfies
//!   `hi/lo − 1 ≤` [`Z_RELATIVE_TOLERANCE`]; returns `hi`, for which
//!   `ε(hi) ≤ target` was computed, while `ε(lo) > target`. So the result is
//!   within a factor `1 + 1e-4` of the smallest sufficient `z`.
//! - [`max_rounds`]: exponential then integer bisection search; exact.

use thiserror::Error;

use crate::accounting::{Accountant, AccountingError, Mechanism};

/// Relative width of the final bisection bracket on `z`.
pub const Z_RELATIVE_TOLERANCE: f64 = 1e-4;
/// Smallest noise multiplier the calibration searches.
pub const Z_MIN: f64 = 1e-3;
/// Largest noise multiplier the calibration searches.
pub const Z_MAX: f64 = 1e5;
/// Largest number of rounds [`max_rounds`] searches.
pub const MAX_ROUNDS: u64 = 1 << 32;

/// Why a calibration has no answer.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum CalibrationError {
    /// The accountant refused the inputs or failed.
    #[error(transparent)]
    Accounting(#[from] AccountingError),
    /// The target ε is not a finite number > 0.
    #[error("target epsilon {0} must be a finite number > 0")]
    InvalidTarget(f64),
    /// Zero rounds: nothing to calibrate.
    #[error("rounds must be at least 1")]
    ZeroRounds,
    /// Even the largest searched noise multiplier misses the target.
    #[error(
        "target epsilon {target} is not reachable with noise multiplier <= {z_max} (epsilon there: {epsilon})"
    )]
    Unreachable {
        /// Target ε.
        target: f64,
        /// Largest noise multiplier tried.
        z_max: f64,
        /// ε at that noise multiplier.
        epsilon: f64,
    },
    /// Even the smallest searched noise multiplier meets the target.
    #[error(
        "target epsilon {target} is met even with noise multiplier {z_min}: the target is too loose to calibrate"
    )]
    TargetTooLoose {
        /// Target ε.
        target: f64,
        /// Smallest noise multiplier tried.
        z_min: f64,
    },
    /// The target allows more rounds than the search covers.
    #[error("more than {cap} rounds fit in the target epsilon")]
    RoundsExceedCap {
        /// The search cap.
        cap: u64,
    },
}

fn check_target(target: f64) -> Result<(), CalibrationError> {
    if target > 0.0 && target.is_finite() {
        Ok(())
    } else {
        Err(CalibrationError::InvalidTarget(target))
    }
}

/// Smallest noise multiplier `z` (within [`Z_RELATIVE_TOLERANCE`], rounded
/// up) such that `rounds` rounds at sampling rate `q` cost at most
/// `target_epsilon` at `delta` according to `acct`.
pub fn calibrate_noise_multiplier(
    acct: &dyn Accountant,
    sampling_rate: f64,
    rounds: u64,
    delta: f64,
    target_epsilon: f64,
) -> Result<f64, CalibrationError> {
    check_target(target_epsilon)?;
    if rounds == 0 {
        return Err(CalibrationError::ZeroRounds);
    }
    let eps = |z: f64| {
        let m = Mechanism {
            sampling_rate,
            noise_multiplier: z,
        };
        acct.epsilon(&[(m, rounds)], delta)
    };
    // Bracket: eps(lo) > target ≥ eps(hi).
    let mut hi = 1.0;
    let mut lo;
    let e1 = eps(hi)?;
    if e1 > target_epsilon {
        lo = hi;
        loop {
            hi *= 2.0;
            if hi > Z_MAX {
                let epsilon = eps(Z_MAX)?;
                if epsilon <= target_epsilon {
                    hi = Z_MAX;
                    break;
                }
                return Err(CalibrationError::Unreachable {
                    target: target_epsilon,
                    z_max: Z_MAX,
                    epsilon,
                });
            }
            if eps(hi)? <= target_epsilon {
                break;
            }
            lo = hi;
        }
    } else {
        loop {
            lo = hi / 2.0;
            if lo < Z_MIN {
                if eps(Z_MIN)? <= target_epsilon {
                    return Err(CalibrationError::TargetTooLoose {
                        target: target_epsilon,
                        z_min: Z_MIN,
                    });
                }
                lo = Z_MIN;
                break;
            }
            if eps(lo)? > target_epsilon {
                break;
            }
            hi = lo;
        }
    }
    while hi / lo - 1.0 > Z_RELATIVE_TOLERANCE {
        let mid = (lo * hi).sqrt();
        if eps(mid)? <= target_epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// Largest number of rounds at `(q, z)` whose ε at `delta` stays at most
/// `target_epsilon` according to `acct` (0 if even one round exceeds it).
pub fn max_rounds(
    acct: &dyn Accountant,
    sampling_rate: f64,
    noise_multiplier: f64,
    delta: f64,
    target_epsilon: f64,
) -> Result<u64, CalibrationError> {
    check_target(target_epsilon)?;
    let m = Mechanism {
        sampling_rate,
        noise_multiplier,
    };
    let fits = |t: u64| -> Result<bool, CalibrationError> {
        Ok(acct.epsilon(&[(m, t)], delta)? <= target_epsilon)
    };
    if !fits(1)? {
        return Ok(0);
    }
    let mut lo = 1u64; // fits
    let mut hi = 2u64;
    while fits(hi)? {
        lo = hi;
        if hi >= MAX_ROUNDS {
            return Err(CalibrationError::RoundsExceedCap { cap: MAX_ROUNDS });
        }
        hi = (hi * 2).min(MAX_ROUNDS);
    }
    // lo fits, hi does not.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::RdpAccountant;

    #[test]
    fn rdp_calibration_round_trips() {
        let acct = RdpAccountant;
        for &(q, t, target) in &[(0.01, 10_000, 1.0), (0.05, 100, 3.0), (1.0, 1, 4.7284)] {
            let z = calibrate_noise_multiplier(&acct, q, t, 1e-5, target).unwrap();
            let m = |z| {
                [(
                    Mechanism {
                        sampling_rate: q,
                        noise_multiplier: z,
                    },
                    t,
                )]
            };
            assert!(acct.epsilon(&m(z), 1e-5).unwrap() <= target);
            assert!(acct.epsilon(&m(0.99 * z), 1e-5).unwrap() > target);
            assert!(
                acct.epsilon(&m(z / (1.0 + Z_RELATIVE_TOLERANCE)), 1e-5)
                    .unwrap()
                    > target
            );
        }
    }

    #[test]
    fn rdp_max_rounds_is_exact() {
        let acct = RdpAccountant;
        let t = max_rounds(&acct, 0.01, 1.0, 1e-5, 2.0).unwrap();
        let m = |t| {
            [(
                Mechanism {
                    sampling_rate: 0.01,
                    noise_multiplier: 1.0,
                },
                t,
            )]
        };
        assert!(acct.epsilon(&m(t), 1e-5).unwrap() <= 2.0);
        assert!(acct.epsilon(&m(t + 1), 1e-5).unwrap() > 2.0);
        assert_eq!(max_rounds(&acct, 1.0, 0.5, 1e-5, 1.0), Ok(0));
    }

    #[test]
    fn bad_targets_are_errors() {
        let acct = RdpAccountant;
        assert!(matches!(
            calibrate_noise_multiplier(&acct, 0.01, 10, 1e-5, 0.0),
            Err(CalibrationError::InvalidTarget(_))
        ));
        assert!(matches!(
            calibrate_noise_multiplier(&acct, 0.01, 0, 1e-5, 1.0),
            Err(CalibrationError::ZeroRounds)
        ));
        assert!(matches!(
            calibrate_noise_multiplier(&acct, 1.5, 10, 1e-5, 1.0),
            Err(CalibrationError::Accounting(
                AccountingError::InvalidSamplingRate(_)
            ))
        ));
        assert!(matches!(
            calibrate_noise_multiplier(&acct, 0.5, 10, 1e-5, 1e-9),
            Err(CalibrationError::Unreachable { .. })
        ));
    }
}
