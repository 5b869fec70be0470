//! Rényi-DP accountant for the Poisson-subsampled Gaussian (Mironov, Talwar &
//! Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian Mechanism").
//!
//! For one round with rate `q` and noise multiplier `σ`, the RDP at order `α`
//! is `ln(A_α)/(α − 1)` with `A_α = E_{x∼N(0,σ²)}[((1−q) + q·e^{(2x−1)/(2σ²)})^α]`:
//!
//! - integer `α`: the exact binomial expansion
//!   `A_α = Σ_k C(α,k) q^k (1−q)^{α−k} e^{(k²−k)/(2σ²)}` (all terms positive);
//! - fractional `α`: the two-series formula of MTZ19 §3.3 (integrals over
//!   `(−∞, z₀]` and `[z₀, ∞)`, `z₀ = σ² ln(1/q − 1) + ½`), summed in log space
//!   with the positive and negative terms kept apart. Beyond `i ≥ ⌈α⌉` both
//!   series alternate with decreasing magnitudes (the binomial coefficients
//!   alternate and shrink, the remaining factor is a Mills ratio), so the
//!   summation stops once a term falls below `1e-9·ln A_α` (relative to
//!   `A_α`) and the last term's magnitude is added as a bound on the
//!   remainder (Leibniz), keeping the value an upper bound.
//!   If the series needs more than 100 000 terms, or loses more than 15 nats
//!   (≈ 6.5 decimal digits) to cancellation, or comes out outside the
//!   bracket given by its integer neighbours, the order falls back to the
//!   convexity bound `ln A_α ≤ (n+1−α) ln A_n + (α−n) ln A_{n+1}` with
//!   `n = ⌊α⌋` (`ln A_α` is a log-moment-generating function, hence convex in
//!   `α`, and `ln A_1 = 0`): a valid upper bound, never a dropped order.
//!   dp_accounting instead drops such orders, which is why fedsec can come
//!   out slightly lower in a few high-ε rows.
//!
//! RDP composes by addition; `(ε, δ)` follows from the conversion of Canonne,
//! Kamath & Steinke 2020 / Balle et al. 2020,
//! `ε = min_α [r_α + ln(1 − 1/α) − (ln δ + ln α)/(α − 1)]`, exactly as
//! dp_accounting computes it. When every round has `q = 1` the composition is
//! `ρ`-zCDP with `ρ = Σ T/(2z²)` and the minimum is taken over all real
//! `α > 1` ([`super::zcdp`]), which agrees with opendp's zCDP route.

use super::zcdp;
use super::{
    Accountant, AccountingError, Mechanism, check_delta, check_epsilon, checked_composition,
};
use crate::special::{SignedLogSum, ln_erfc, log_add};

/// Number of default orders.
const N_ORDERS: usize = 156;

/// dp_accounting's default RDP orders: 1.1, 1.2, …, 10.9, 11, 12, …, 63, 128,
/// 256, 512, 1024 (computed as `1 + x/10` like dp_accounting, so 2.0, 3.0, …
/// are exact integers).
pub const DEFAULT_ORDERS: [f64; N_ORDERS] = build_default_orders();

const fn build_default_orders() -> [f64; N_ORDERS] {
    let mut o = [0.0; N_ORDERS];
    let mut i = 0;
    while i < 99 {
        o[i] = 1.0 + (i as f64 + 1.0) / 10.0;
        i += 1;
    }
    let mut a = 11;
    while a <= 63 {
        o[i] = a as f64;
        i += 1;
        a += 1;
    }
    o[i] = 128.0;
    o[i + 1] = 256.0;
    o[i + 2] = 512.0;
    o[i + 3] = 1024.0;
    o
}

/// Alternating-series stopping threshold: stop once a term is below `1e-9`
/// of `ln A_α` (relative to `A_α`), i.e. this many nats below the running
/// total plus `−ln ln A_α`, capped at [`SERIES_MAX_NATS`].
const SERIES_REL_NATS: f64 = 20.7;
/// Cap on the stopping threshold (nats below the running total).
const SERIES_MAX_NATS: f64 = 45.0;
/// Most terms summed for one fractional order before falling back.
const SERIES_MAX_TERMS: usize = 100_000;
/// Most nats of cancellation accepted in a fractional-order series.
const SERIES_MAX_CANCELLATION: f64 = 15.0;

/// `ln A_α` for integer `α ≥ 1`, `0 < q < 1` (exact binomial expansion).
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let two_s2 = 2.0 * sigma * sigma;
    let n = alpha as f64;
    let mut terms = Vec::with_capacity(alpha as usize + 1);
    let mut log_coef = 0.0; // ln C(α, k)
    for k in 0..=alpha {
        let kf = k as f64;
        terms.push(log_coef + kf * ln_q + (n - kf) * ln_1mq + (kf * kf - kf) / two_s2);
        log_coef += ((n - kf) / (kf + 1.0)).ln();
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

/// `ln A_α` for fractional `α > 1`, `0 < q < 1`, by the two-series formula;
/// `None` when the series cannot be trusted (see module docs).
fn log_a_frac_series(q: f64, sigma: f64, alpha: f64) -> Option<f64> {
    let ln_q = q.ln();
    let ln_1mq = (-q).ln_1p();
    let s2 = sigma * sigma;
    let z0 = s2 * (ln_1mq - ln_q) + 0.5;
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    let ln_half = -std::f64::consts::LN_2;
    let alpha_ceil = alpha.ceil();

    let mut a0 = SignedLogSum::zero();
    let mut a1 = SignedLogSum::zero();
    let mut log_coef = 0.0; // ln |C(α, i)|
    let mut positive = true; // sign of C(α, i)
    for i in 0..SERIES_MAX_TERMS {
        let fi = i as f64;
        let j = alpha - fi;
        let log_t0 = log_coef + fi * ln_q + j * ln_1mq;
        let log_t1 = log_coef + j * ln_q + fi * ln_1mq;
        let log_e0 = ln_half + ln_erfc((fi - z0) / sqrt2_sigma);
        let log_e1 = ln_half + ln_erfc((z0 - j) / sqrt2_sigma);
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * s2) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * s2) + log_e1;
        if !(log_s0.is_finite() || log_s0 == f64::NEG_INFINITY)
            || !(log_s1.is_finite() || log_s1 == f64::NEG_INFINITY)
        {
            return None;
        }
        a0.add(positive, log_s0);
        a1.add(positive, log_s1);

        if fi >= alpha_ceil {
            let total = log_add(a0.pos, a1.pos);
            // ln(ln A) with ln A ≈ total (ln A_α > 0 for α > 1).
            let nats = (SERIES_REL_NATS - total.max(1e-300).ln().min(0.0)).min(SERIES_MAX_NATS);
            if log_s0.max(log_s1) < total - nats {
                // Leibniz: each remainder is at most its last term's magnitude.
                a0.add(true, log_s0);
                a1.add(true, log_s1);
                if a0.cancellation() > SERIES_MAX_CANCELLATION
                    || a1.cancellation() > SERIES_MAX_CANCELLATION
                {
                    return None;
                }
                return Some(log_add(a0.ln_total()?, a1.ln_total()?));
            }
        }
        // C(α, i+1) = C(α, i)·(α − i)/(i + 1)
        let ratio = (alpha - fi) / (fi + 1.0);
        if ratio == 0.0 {
            return None; // integer α: not this function's job
        }
        if ratio < 0.0 {
            positive = !positive;
        }
        log_coef += ratio.abs().ln();
    }
    None
}

/// RDP `ε_α` of one Poisson-subsampled Gaussian round at order `α > 1`.
///
/// Exact for `q = 1` (`α/(2z²)`) and for integer orders; for fractional
/// orders the two-series value, or the convexity upper bound where the series
/// cannot be trusted (see the module docs).
pub fn rdp_poisson_gaussian(sampling_rate: f64, noise_multiplier: f64, alpha: f64) -> f64 {
    let (q, sigma) = (sampling_rate, noise_multiplier);
    if q >= 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    if alpha.fract() == 0.0 {
        return log_a_int(q, sigma, alpha as u64) / (alpha - 1.0);
    }
    let n = alpha.floor();
    let ln_a_n = if n <= 1.0 {
        0.0
    } else {
        log_a_int(q, sigma, n as u64)
    };
    let ln_a_n1 = log_a_int(q, sigma, n as u64 + 1);
    let t = alpha - n;
    let upper = (1.0 - t) * ln_a_n + t * ln_a_n1;
    // Lower bracket: RDP is non-decreasing in α, so ln A_α ≥ (α−1)·ε_n.
    let lower = if n <= 1.0 {
        0.0
    } else {
        (alpha - 1.0) * ln_a_n / (n - 1.0)
    };
    let slack = 1e-9 * (1.0 + upper.abs());
    let ln_a = match log_a_frac_series(q, sigma, alpha) {
        Some(v) if v <= upper + slack && v >= lower - slack => v.min(upper),
        _ => upper,
    };
    ln_a / (alpha - 1.0)
}

/// The RDP curve of one mechanism at [`DEFAULT_ORDERS`].
fn rdp_curve(m: &Mechanism) -> [f64; N_ORDERS] {
    let mut out = [0.0; N_ORDERS];
    for (r, &a) in out.iter_mut().zip(DEFAULT_ORDERS.iter()) {
        *r = rdp_poisson_gaussian(m.sampling_rate, m.noise_multiplier, a);
    }
    out
}

/// Best `ε` at `δ` from an RDP curve (dp_accounting's `_compute_epsilon`):
/// `min_α max(0, r_α + ln(1 − 1/α) − (ln δ + ln α)/(α − 1))`, with the KL
/// shortcut `ε = 0` when `δ² > 1 − e^{−r_α}`. Returns `(ε, optimal α)`.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

/// Best `δ` at `ε` from an RDP curve (dp_accounting's `_compute_delta`):
/// `min_α min(√(1 − e^{−r_α}), e^{(α−1)(r_α − ε + ln(1−1/α)) − ln α})`.
/// Returns `(δ, optimal α)`.
pub fn delta_from_rdp(orders: &[f64], rdp: &[f64], epsilon: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let mut log_delta = if r == 0.0 {
            f64::NEG_INFINITY
        } else {
            0.5 * (-(-r).exp()).ln_1p()
        };
        if a > 1.01 {
            let bound = (a - 1.0) * (r - epsilon + (-1.0 / a).ln_1p()) - a.ln();
            log_delta = log_delta.min(bound);
        }
        if log_delta < best.0 {
            best = (log_delta, a);
        }
    }
    (best.0.exp().min(1.0), best.1)
}

/// Rényi-DP accountant (dp_accounting default orders, MTZ19 two-series
/// fractional orders, CKS20 conversion).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RdpAccountant;

impl RdpAccountant {
    /// Total zCDP `ρ` when every round has `q = 1`, else `None`.
    fn all_full_batch_rho(comp: &[(Mechanism, u64)]) -> Option<f64> {
        comp.iter().all(|(m, _)| m.sampling_rate >= 1.0).then(|| {
            comp.iter()
                .map(|(m, n)| *n as f64 / (2.0 * m.noise_multiplier * m.noise_multiplier))
                .sum()
        })
    }

    /// The composed RDP curve at [`DEFAULT_ORDERS`].
    pub fn curve(
        &self,
        composition: &[(Mechanism, u64)],
    ) -> Result<[f64; N_ORDERS], AccountingError> {
        let comp = checked_composition(composition)?;
        let mut total = [0.0; N_ORDERS];
        for (m, n) in &comp {
            let c = rdp_curve(m);
            for (t, r) in total.iter_mut().zip(c) {
                *t += *n as f64 * r;
            }
        }
        if total.iter().any(|r| r.is_nan() || *r < 0.0) {
            return Err(AccountingError::Numerical {
                accountant: "rdp",
                message: "RDP curve is NaN or negative".into(),
            });
        }
        Ok(total)
    }
}

impl Accountant for RdpAccountant {
    fn name(&self) -> &'static str {
        "rdp"
    }

    fn version(&self) -> String {
        format!(
            "fedsec-privacy {} rdp (dp_accounting default orders, MTZ19 two-series, CKS20 conversion)",
            crate::VERSION
        )
    }

    fn epsilon(
        &self,
        composition: &[(Mechanism, u64)],
        delta: f64,
    ) -> Result<f64, AccountingError> {
        check_delta(delta)?;
        let comp = checked_composition(composition)?;
        if comp.is_empty() {
            return Ok(0.0);
        }
        if let Some(rho) = Self::all_full_batch_rho(&comp) {
            return Ok(zcdp::epsilon_from_rho(rho, delta));
        }
        let curve = self.curve(&comp)?;
        Ok(epsilon_from_rdp(&DEFAULT_ORDERS, &curve, delta).0)
    }

    fn delta(
        &self,
        composition: &[(Mechanism, u64)],
        epsilon: f64,
    ) -> Result<f64, AccountingError> {
        check_epsilon(epsilon)?;
        let comp = checked_composition(composition)?;
        if comp.is_empty() {
            return Ok(0.0);
        }
        if let Some(rho) = Self::all_full_batch_rho(&comp) {
            return Ok(zcdp::delta_from_rho(rho, epsilon));
        }
        let curve = self.curve(&comp)?;
        Ok(delta_from_rdp(&DEFAULT_ORDERS, &curve, epsilon).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_orders_match_dp_accounting() {
        assert_eq!(DEFAULT_ORDERS[0], 1.1);
        assert_eq!(DEFAULT_ORDERS[8], 1.9);
        assert_eq!(DEFAULT_ORDERS[9], 2.0);
        assert_eq!(DEFAULT_ORDERS[98], 10.9);
        assert_eq!(DEFAULT_ORDERS[99], 11.0);
        assert_eq!(DEFAULT_ORDERS[151], 63.0);
        assert_eq!(&DEFAULT_ORDERS[152..], &[128.0, 256.0, 512.0, 1024.0]);
        assert!(DEFAULT_ORDERS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn integer_order_two_matches_closed_form() {
        // A_2 = 1 + q²(e^{1/σ²} − 1) for the subsampled Gaussian.
        let (q, s) = (0.01_f64, 4.0_f64);
        let expect = (q * q * ((1.0 / (s * s)).exp() - 1.0)).ln_1p();
        assert!((rdp_poisson_gaussian(q, s, 2.0) - expect).abs() < 1e-15);
    }

    #[test]
    fn fractional_orders_lie_between_their_integer_neighbours() {
        for &(q, s) in &[
            (0.01, 4.0),
            (0.001, 0.5),
            (0.05, 1.0),
            (0.1, 0.8),
            (0.1, 0.5),
        ] {
            let mut prev = 0.0;
            for &a in &DEFAULT_ORDERS[..99] {
                let r = rdp_poisson_gaussian(q, s, a);
                assert!(
                    r.is_finite() && r >= prev - 1e-12,
                    "q={q} σ={s} α={a}: {r} < {prev}"
                );
                prev = r;
            }
        }
    }

    #[test]
    fn series_agrees_with_integer_expansion_near_integers() {
        // The fractional series at α = 3 ± 1e-7 must bracket the exact A_3.
        let (q, s) = (0.01, 1.5);
        let exact = log_a_int(q, s, 3);
        let below = log_a_frac_series(q, s, 3.0 - 1e-7).unwrap();
        let above = log_a_frac_series(q, s, 3.0 + 1e-7).unwrap();
        assert!(
            below <= exact + 1e-9 && exact <= above + 1e-9,
            "{below} {exact} {above}"
        );
        assert!((above - below).abs() < 1e-5);
    }

    #[test]
    fn empty_composition_costs_nothing() {
        assert_eq!(RdpAccountant.epsilon(&[], 1e-5), Ok(0.0));
        assert_eq!(RdpAccountant.delta(&[], 1.0), Ok(0.0));
    }
}
