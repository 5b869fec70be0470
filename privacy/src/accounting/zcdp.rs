//! Zero-concentrated DP (Bun & Steinke 2016) → approximate DP, for the
//! full-batch (`q = 1`) Gaussian: `T` rounds with noise multiplier `z` are
//! `ρ`-zCDP with `ρ = T/(2z²)`.
//!
//! Two independent routes to the same Canonne–Kamath–Steinke 2020 bound
//! `ε(δ) = inf_{α>1} [αρ + ln(1 − 1/α) − (ln δ + ln α)/(α − 1)]`:
//! - [`epsilon_from_rho`] (what [`super::RdpAccountant`] uses): the minimiser
//!   solves `ρ(α−1)² + ln α + ln δ = 0` (the derivative's root; the left side
//!   increases in `α`), found by bisection to machine precision;
//! - [`opendp_gaussian_epsilon`]: opendp's own chain
//!   `make_gaussian` (zCDP) → `make_zCDP_to_approxDP` → `make_fix_delta`,
//!   used as the cross-check (they agree to better than 1e-6 relative).

use opendp::combinators::{make_fix_delta, make_zCDP_to_approxDP};
use opendp::domains::AtomDomain;
use opendp::measurements::make_gaussian;
use opendp::measures::ZeroConcentratedDivergence;
use opendp::metrics::AbsoluteDistance;

use super::{AccountingError, check_delta, check_epsilon};
use crate::special::bisect_decreasing;

/// Canonne–Kamath–Steinke `ε` of a `ρ`-zCDP mechanism at `δ` (continuous
/// optimum over the Rényi order), with dp_accounting's KL shortcut
/// (`ε = 0` when `δ² > 1 − e^{−ρ}`).
pub fn epsilon_from_rho(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    if delta * delta + (-rho).exp_m1() > 0.0 {
        return 0.0;
    }
    let ln_delta = delta.ln();
    // g(α) = ρ(α−1)² + ln α + ln δ: g(1) = ln δ < 0, increasing.
    let g = |a: f64| rho * (a - 1.0) * (a - 1.0) + a.ln() + ln_delta;
    let mut hi = 2.0;
    while g(hi) < 0.0 {
        hi = 1.0 + 2.0 * (hi - 1.0);
    }
    let alpha = bisect_decreasing(1.0, hi, |a| g(a) < 0.0);
    let eps = |a: f64| a * rho + (-1.0 / a).ln_1p() - (ln_delta + a.ln()) / (a - 1.0);
    eps(alpha).max(0.0)
}

/// Canonne–Kamath–Steinke `δ` of a `ρ`-zCDP mechanism at `ε` (continuous
/// optimum over the order, and the KL bound `√(1 − e^{−ρ})`).
pub fn delta_from_rho(rho: f64, epsilon: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    let log_delta =
        |a: f64| (a - 1.0) * (a * rho - epsilon) + a * (-1.0 / a).ln_1p() - (a - 1.0).ln();
    // d/dα = (2α − 1)ρ − ε + ln(1 − 1/α): increasing in α, −∞ at α = 1.
    let deriv = |a: f64| (2.0 * a - 1.0) * rho - epsilon + (-1.0 / a).ln_1p();
    let mut hi = 2.0;
    while deriv(hi) < 0.0 {
        hi = 1.0 + 2.0 * (hi - 1.0);
    }
    let alpha = bisect_decreasing(1.0, hi, |a| deriv(a) < 0.0);
    let kl = 0.5 * (-(-rho).exp()).ln_1p();
    log_delta(alpha).min(kl).exp().min(1.0)
}

/// `ε(δ)` of `rounds` full-batch Gaussian rounds with noise multiplier `z`,
/// computed by opendp: a Gaussian measurement with scale `z` at L2 distance
/// `√T` (ρ = T/(2z²)), cast from zCDP to approximate DP and fixed at `δ`.
pub fn opendp_gaussian_epsilon(
    noise_multiplier: f64,
    rounds: u64,
    delta: f64,
) -> Result<f64, AccountingError> {
    check_delta(delta)?;
    if !(noise_multiplier > 0.0 && noise_multiplier.is_finite()) {
        return Err(AccountingError::InvalidNoiseMultiplier(noise_multiplier));
    }
    let numerical = |e: opendp::error::Error| AccountingError::Numerical {
        accountant: "opendp-zcdp",
        message: format!("{}: {}", e.variant, e.message.unwrap_or_default()),
    };
    let meas = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        AtomDomain::<f64>::new_non_nan(),
        AbsoluteDistance::<f64>::default(),
        noise_multiplier,
        None,
    )
    .map_err(numerical)?;
    let approx = make_zCDP_to_approxDP(meas).map_err(numerical)?;
    let fixed = make_fix_delta(&approx, delta).map_err(numerical)?;
    let (eps, _) = fixed.map(&(rounds as f64).sqrt()).map_err(numerical)?;
    Ok(eps)
}

/// Checks `ε ≥ 0` then returns `δ` via opendp's privacy profile (for tests
/// and cross-checks of [`delta_from_rho`]).
pub fn opendp_gaussian_delta(
    noise_multiplier: f64,
    rounds: u64,
    epsilon: f64,
) -> Result<f64, AccountingError> {
    check_epsilon(epsilon)?;
    let numerical = |e: opendp::error::Error| AccountingError::Numerical {
        accountant: "opendp-zcdp",
        message: format!("{}: {}", e.variant, e.message.unwrap_or_default()),
    };
    let meas = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        AtomDomain::<f64>::new_non_nan(),
        AbsoluteDistance::<f64>::default(),
        noise_multiplier,
        None,
    )
    .map_err(numerical)?;
    let approx = make_zCDP_to_approxDP(meas).map_err(numerical)?;
    let profile = approx.map(&(rounds as f64).sqrt()).map_err(numerical)?;
    profile.delta(epsilon).map_err(numerical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_from_the_readme() {
        // z = 1, T = 1, δ = 1e-5: Canonne–Kamath–Steinke 4.7284.
        let eps = epsilon_from_rho(0.5, 1e-5);
        assert!((eps - 4.7284).abs() < 1e-4, "{eps}");
        let od = opendp_gaussian_epsilon(1.0, 1, 1e-5).unwrap();
        assert!((eps / od - 1.0).abs() < 1e-9, "{eps} vs opendp {od}");
    }

    #[test]
    fn delta_and_epsilon_are_inverse() {
        for &rho in &[0.01, 0.5, 3.0, 200.0] {
            for &d in &[1e-3, 1e-6, 1e-10] {
                let e = epsilon_from_rho(rho, d);
                let back = delta_from_rho(rho, e);
                assert!(
                    (back / d - 1.0).abs() < 1e-6,
                    "ρ={rho} δ={d}: ε={e} → δ={back}"
                );
                let od = opendp_gaussian_delta((1.0 / (2.0 * rho)).sqrt(), 1, e).unwrap();
                assert!((back / od - 1.0).abs() < 1e-6, "opendp δ {od} vs {back}");
            }
        }
    }
}
