//! Privacy accountants for the Poisson-subsampled Gaussian mechanism under the
//! add/remove-one-client neighbouring relation.
//!
//! A round that selects each client independently with probability `q` and
//! adds `N(0, (z·Δ)²·I)` to the sum of updates clipped to L2 sensitivity `Δ` is
//! the [`Mechanism`] `{ sampling_rate: q, noise_multiplier: z }`. A job's
//! history is a composition `&[(Mechanism, count)]` (see
//! [`crate::receipt::compose`]). Two accountants bound its `(ε, δ)`:
//!
//! - [`RdpAccountant`]: Rényi DP at the dp_accounting default orders, fast and
//!   conservative (the cross-check);
//! - [`PldAccountant`]: privacy loss distributions, tight (the number fedsec
//!   reports).
//!
//! [`zcdp`] holds the zCDP → approximate-DP route through opendp used to
//! cross-check the `q = 1` case.

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod pld;
pub mod rdp;
pub mod zcdp;

pub use self::pld::{PldAccountant, PldEpsilon};
pub use self::rdp::{
    DEFAULT_ORDERS, RdpAccountant, delta_from_rdp, epsilon_from_rdp, rdp_poisson_gaussian,
};

/// One Poisson-subsampled Gaussian round: each client is included with
/// probability `sampling_rate`, and noise with standard deviation
/// `noise_multiplier × sensitivity` is added to the sum.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Mechanism {
    /// Poisson sampling rate `q ∈ (0, 1]`.
    pub sampling_rate: f64,
    /// Noise multiplier `z > 0` (noise stddev / L2 sensitivity).
    pub noise_multiplier: f64,
}

impl Mechanism {
    /// Checks `0 < q ≤ 1` and `0 < z < ∞`.
    pub fn validate(&self) -> Result<(), AccountingError> {
        let q = self.sampling_rate;
        if !(q > 0.0 && q <= 1.0) {
            return Err(AccountingError::InvalidSamplingRate(q));
        }
        let z = self.noise_multiplier;
        if !(z > 0.0 && z.is_finite()) {
            return Err(AccountingError::InvalidNoiseMultiplier(z));
        }
        Ok(())
    }
}

/// Why an accountant could not produce a bound.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AccountingError {
    /// `q` is not in `(0, 1]`.
    #[error("sampling rate q = {0} must be in (0, 1]")]
    InvalidSamplingRate(f64),
    /// `z` is not a finite number > 0.
    #[error("noise multiplier z = {0} must be a finite number > 0")]
    InvalidNoiseMultiplier(f64),
    /// `δ` is not in `(0, 1)`.
    #[error("delta = {0} must be in (0, 1)")]
    InvalidDelta(f64),
    /// `ε` is not a finite number ≥ 0.
    #[error("epsilon = {0} must be a finite number >= 0")]
    InvalidEpsilon(f64),
    /// `δ` is below what the accountant can resolve numerically.
    #[error("delta = {delta} is below the {accountant} accountant's numerical floor {floor}")]
    DeltaBelowFloor {
        /// Accountant name.
        accountant: &'static str,
        /// Requested δ.
        delta: f64,
        /// Smallest δ the accountant supports.
        floor: f64,
    },
    /// A numerical procedure failed; no bound is claimed.
    #[error("numerical failure in the {accountant} accountant: {message}")]
    Numerical {
        /// Accountant name.
        accountant: &'static str,
        /// What failed.
        message: String,
    },
}

/// An `(ε, δ)` accountant for compositions of [`Mechanism`]s.
pub trait Accountant: Send + Sync {
    /// Short name: `"rdp"` or `"pld"`.
    fn name(&self) -> &'static str;
    /// Implementation version and parameters, recorded in receipts.
    fn version(&self) -> String;
    /// Smallest ε (an upper bound on the true one) at which the composition
    /// is `(ε, delta)`-DP.
    fn epsilon(&self, composition: &[(Mechanism, u64)], delta: f64)
    -> Result<f64, AccountingError>;
    /// δ (an upper bound on the true one) at which the composition is
    /// `(epsilon, δ)`-DP.
    fn delta(&self, composition: &[(Mechanism, u64)], epsilon: f64)
    -> Result<f64, AccountingError>;
}

/// Validates every mechanism of a composition and drops entries with count 0.
pub(crate) fn checked_composition(
    composition: &[(Mechanism, u64)],
) -> Result<Vec<(Mechanism, u64)>, AccountingError> {
    let mut out = Vec::with_capacity(composition.len());
    for &(m, n) in composition {
        m.validate()?;
        if n > 0 {
            out.push((m, n));
        }
    }
    Ok(out)
}

pub(crate) fn check_delta(delta: f64) -> Result<(), AccountingError> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(AccountingError::InvalidDelta(delta))
    }
}

pub(crate) fn check_epsilon(epsilon: f64) -> Result<(), AccountingError> {
    if epsilon >= 0.0 && epsilon.is_finite() {
        Ok(())
    } else {
        Err(AccountingError::InvalidEpsilon(epsilon))
    }
}

/// The accountant with the given name (`"rdp"` or `"pld"`), for CLIs and config.
pub fn accountant_by_name(name: &str) -> Option<Box<dyn Accountant>> {
    match name {
        "rdp" => Some(Box::new(RdpAccountant)),
        "pld" => Some(Box::new(PldAccountant)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_are_validated() {
        let ok = Mechanism {
            sampling_rate: 1.0,
            noise_multiplier: 0.5,
        };
        assert!(ok.validate().is_ok());
        for q in [0.0, -0.1, 1.0001, f64::NAN] {
            let m = Mechanism {
                sampling_rate: q,
                ..ok
            };
            assert!(matches!(
                m.validate(),
                Err(AccountingError::InvalidSamplingRate(_))
            ));
        }
        for z in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let m = Mechanism {
                noise_multiplier: z,
                ..ok
            };
            assert!(matches!(
                m.validate(),
                Err(AccountingError::InvalidNoiseMultiplier(_))
            ));
        }
        assert!(
            check_delta(0.0).is_err() && check_delta(1.0).is_err() && check_delta(1e-5).is_ok()
        );
        assert!(check_epsilon(-1.0).is_err() && check_epsilon(f64::INFINITY).is_err());
    }

    #[test]
    fn accountants_by_name() {
        assert_eq!(accountant_by_name("rdp").map(|a| a.name()), Some("rdp"));
        assert_eq!(accountant_by_name("pld").map(|a| a.name()), Some("pld"));
        assert!(accountant_by_name("prv").is_none());
    }
}
