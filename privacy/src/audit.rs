//! Empirical privacy auditing: estimators that turn what an attacker observed
//! about canaries into lower bounds on (or estimates of) ε. They measure; the
//! accountants prove. An audit lower bound above the accountant's ε means a
//! bug in the pipeline, not a result.
//!
//! - [`clopper_pearson_epsilon`]: the hypothesis-test bound of Jagielski,
//!   Ullman & Oprea 2020 ("Auditing Differentially Private Machine Learning:
//!   How Private is Private SGD?"): any `(ε, δ)`-DP mechanism forces every
//!   membership test to satisfy `FPR + e^ε FNR ≥ 1 − δ` and
//!   `FNR + e^ε FPR ≥ 1 − δ`; with Clopper–Pearson upper confidence bounds on
//!   both error rates (`α` split evenly between them) this gives
//!   `ε ≥ max(ln((1 − δ − FNR⁺)/FPR⁺), ln((1 − δ − FPR⁺)/FNR⁺))` with
//!   confidence `1 − α`.
//! - [`one_run_epsilon`]: Steinke, Nasr & Jagielski 2023 ("Privacy Auditing
//!   with One (1) Training Run"), Theorem / Algorithm for `m` canaries of
//!   which `r` were guessed and `v` guessed correctly: the largest `ε` whose
//!   p-value `P[Bin(r, e^ε/(1+e^ε)) ≥ v] + 2mδ·max_i(P[v > Bin ≥ v − i]/i)` is
//!   below `p`.
//! - [`gaussian_dp_audit`]: the Gaussian-DP reading of one (FPR, FNR) pair:
//!   `μ = Φ⁻¹(1 − FPR) − Φ⁻¹(FNR)` and the `ε(δ)` of a `μ`-GDP mechanism.
//! - [`two_gaussians_epsilon`] / [`one_shot_epsilon`]: the one-shot estimate of
//!   Andrew, Kairouz, Oh, Oprea, McMahan & Suriyakumar 2024 ("One-shot
//!   Empirical Privacy Estimation for Federated Learning"): cosines between
//!   the released model delta and unseen canaries follow `N(0, 1/d)`; those
//!   of inserted canaries are fitted by `N(μ̂, σ̂²)`; ε̂ is the ε at which these
//!   two Gaussians have the target δ, computed from the exact privacy-loss
//!   tails in both directions (a quadratic loss when the variances differ).

use serde::{Deserialize, Serialize};
use statrs::function::beta::beta_reg;
use statrs::function::gamma::ln_gamma;
use thiserror::Error;

use crate::special::{
    bisect_decreasing, gaussian_epsilon, ln_norm_sf, norm_cdf, norm_ppf, norm_sf,
};

/// Invalid inputs to an audit estimator.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AuditError {
    /// Counts are inconsistent (e.g. more errors than trials, `v > r > m`).
    #[error("inconsistent counts: {0}")]
    InvalidCounts(String),
    /// A probability parameter is outside its range.
    #[error("{name} = {value} must be in {range}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: f64,
        /// Allowed range.
        range: &'static str,
    },
}

fn check_open_unit(name: &'static str, value: f64) -> Result<(), AuditError> {
    if value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(AuditError::InvalidParameter {
            name,
            value,
            range: "(0, 1)",
        })
    }
}

fn check_delta(delta: f64) -> Result<(), AuditError> {
    if (0.0..1.0).contains(&delta) {
        Ok(())
    } else {
        Err(AuditError::InvalidParameter {
            name: "delta",
            value: delta,
            range: "[0, 1)",
        })
    }
}

/// One-sided Clopper–Pearson upper confidence bound on a binomial rate:
/// the `p` with `P[Bin(n, p) ≤ k] = alpha` (1 when `k = n`).
pub fn clopper_pearson_upper(k: u64, n: u64, alpha: f64) -> Result<f64, AuditError> {
    check_open_unit("alpha", alpha)?;
    if n == 0 || k > n {
        return Err(AuditError::InvalidCounts(format!(
            "{k} successes out of {n} trials"
        )));
    }
    if k == n {
        return Ok(1.0);
    }
    // P[Bin(n,p) ≤ k] = 1 − I_p(k+1, n−k), decreasing in p.
    let (a, b) = (k as f64 + 1.0, (n - k) as f64);
    Ok(bisect_decreasing(0.0, 1.0, |p| {
        1.0 - beta_reg(a, b, p) > alpha
    }))
}

/// Result of the Clopper–Pearson hypothesis-test audit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HypothesisTestBound {
    /// Lower bound on ε, valid with confidence `1 − alpha`.
    pub epsilon: f64,
    /// Upper confidence bound on the false-positive rate.
    pub fpr_upper: f64,
    /// Upper confidence bound on the false-negative rate.
    pub fnr_upper: f64,
}

/// ε lower bound from a membership test's error counts (Jagielski et al.
/// 2020), with confidence `1 − alpha` (`alpha/2` for each rate).
pub fn clopper_pearson_epsilon(
    false_positives: u64,
    negatives: u64,
    false_negatives: u64,
    positives: u64,
    delta: f64,
    alpha: f64,
) -> Result<HypothesisTestBound, AuditError> {
    check_delta(delta)?;
    check_open_unit("alpha", alpha)?;
    let fpr_upper = clopper_pearson_upper(false_positives, negatives, alpha / 2.0)?;
    let fnr_upper = clopper_pearson_upper(false_negatives, positives, alpha / 2.0)?;
    let side = |a: f64, b: f64| {
        let num = 1.0 - delta - a;
        if num > 0.0 && b > 0.0 {
            (num / b).ln()
        } else {
            0.0
        }
    };
    let epsilon = side(fnr_upper, fpr_upper)
        .max(side(fpr_upper, fnr_upper))
        .max(0.0);
    Ok(HypothesisTestBound {
        epsilon,
        fpr_upper,
        fnr_upper,
    })
}

/// `ln P[Bin(n, p) = k]` for `k = 0..=n`.
fn binomial_log_pmf(n: u64, p: f64) -> Vec<f64> {
    let (ln_p, ln_1mp) = (p.ln(), (-p).ln_1p());
    let nf = n as f64;
    let ln_n_fact = ln_gamma(nf + 1.0);
    (0..=n)
        .map(|k| {
            let kf = k as f64;
            let head = if k == 0 { 0.0 } else { kf * ln_p };
            let tail = if k == n { 0.0 } else { (nf - kf) * ln_1mp };
            ln_n_fact - ln_gamma(kf + 1.0) - ln_gamma(nf - kf + 1.0) + head + tail
        })
        .collect()
}

/// The p-value of observing `v` correct out of `r` guesses on `m` canaries
/// under `(ε, δ)`-DP (Steinke, Nasr & Jagielski 2023, Algorithm/Theorem for δ > 0).
fn one_run_p_value(m: u64, r: u64, v: u64, epsilon: f64, delta: f64) -> f64 {
    let q = 1.0 / (1.0 + (-epsilon).exp());
    let pmf: Vec<f64> = binomial_log_pmf(r, q).into_iter().map(f64::exp).collect();
    let beta: f64 = pmf[v as usize..].iter().sum();
    let mut alpha = 0.0f64;
    let mut sum = 0.0;
    for i in 1..=v {
        sum += pmf[(v - i) as usize];
        alpha = alpha.max(sum / i as f64);
    }
    (beta + alpha * delta * 2.0 * m as f64).min(1.0)
}

/// One-run ε lower bound (Steinke, Nasr & Jagielski 2023): `m` canaries,
/// `r` guesses made, `v` of them correct, at `δ` and significance `p`
/// (confidence `1 − p`). Bisection to a relative precision of ~1e-12.
pub fn one_run_epsilon(m: u64, r: u64, v: u64, delta: f64, p: f64) -> Result<f64, AuditError> {
    if !(v <= r && r <= m) {
        return Err(AuditError::InvalidCounts(format!(
            "need v <= r <= m, got v = {v}, r = {r}, m = {m}"
        )));
    }
    check_delta(delta)?;
    check_open_unit("p", p)?;
    if one_run_p_value(m, r, v, 0.0, delta) >= p {
        return Ok(0.0);
    }
    let mut lo = 0.0;
    let mut hi = 1.0;
    while one_run_p_value(m, r, v, hi, delta) < p {
        lo = hi;
        hi += 1.0;
        if hi > 1e4 {
            return Err(AuditError::InvalidCounts("p-value never reaches p".into()));
        }
    }
    // Largest ε with p-value < p: "above" = p-value still < p.
    let boundary = bisect_decreasing(lo, hi, |e| one_run_p_value(m, r, v, e, delta) < p);
    Ok(boundary)
}

/// Gaussian-DP reading of one operating point: `μ = Φ⁻¹(1 − FPR) − Φ⁻¹(FNR)`
/// and the `ε(δ)` of a `μ`-GDP mechanism (0 if `μ ≤ 0`). Returns `(μ, ε)`.
pub fn gaussian_dp_audit(fpr: f64, fnr: f64, delta: f64) -> Result<(f64, f64), AuditError> {
    check_open_unit("fpr", fpr)?;
    check_open_unit("fnr", fnr)?;
    check_open_unit("delta", delta)?;
    let mu = norm_ppf(1.0 - fpr) - norm_ppf(fnr);
    let eps = if mu > 0.0 {
        gaussian_epsilon(mu, delta)
    } else {
        0.0
    };
    Ok((mu, eps))
}

/// `P(S)` and `ln Q(S)` for `S = {x : a x² + b x + c > 0}` under `P = N(mp, sp²)`
/// and `Q = N(mq, sq²)`, with tails computed on the accurate side.
fn quadratic_set_masses(a: f64, b: f64, c: f64, p: (f64, f64), q: (f64, f64)) -> (f64, f64) {
    // Mass of (lo, hi) under N(m, s²), accurate in either tail.
    let interval = |lo: f64, hi: f64, (m, s): (f64, f64)| -> f64 {
        let (zl, zh) = ((lo - m) / s, (hi - m) / s);
        if zl > 0.0 {
            norm_sf(zl) - norm_sf(zh)
        } else {
            norm_cdf(zh) - norm_cdf(zl)
        }
    };
    // ln of the mass, keeping precision for tiny upper tails.
    let ln_interval = |lo: f64, hi: f64, (m, s): (f64, f64)| -> f64 {
        let (zl, zh) = ((lo - m) / s, (hi - m) / s);
        if hi == f64::INFINITY && zl > 0.0 {
            ln_norm_sf(zl)
        } else if lo == f64::NEG_INFINITY && zh < 0.0 {
            ln_norm_sf(-zh)
        } else {
            interval(lo, hi, (m, s)).ln()
        }
    };
    let union = |parts: &[(f64, f64)], g: (f64, f64), ln: bool| -> f64 {
        if ln {
            parts
                .iter()
                .map(|&(l, h)| ln_interval(l, h, g))
                .fold(f64::NEG_INFINITY, crate::special::log_add)
        } else {
            parts.iter().map(|&(l, h)| interval(l, h, g)).sum()
        }
    };
    let inf = f64::INFINITY;
    let parts: Vec<(f64, f64)> = if a == 0.0 {
        if b > 0.0 {
            vec![(-c / b, inf)]
        } else if b < 0.0 {
            vec![(-inf, -c / b)]
        } else if c > 0.0 {
            vec![(-inf, inf)]
        } else {
            vec![]
        }
    } else {
        let disc = b * b - 4.0 * a * c;
        if disc <= 0.0 {
            if a > 0.0 { vec![(-inf, inf)] } else { vec![] }
        } else {
            let sq = disc.sqrt();
            let t = -0.5 * (b + b.signum() * sq);
            let (r1, r2) = if t == 0.0 {
                let r = sq / (2.0 * a.abs());
                (-r, r)
            } else {
                let (x1, x2) = (t / a, c / t);
                (x1.min(x2), x1.max(x2))
            };
            if a > 0.0 {
                vec![(-inf, r1), (r2, inf)]
            } else {
                vec![(r1, r2)]
            }
        }
    };
    (union(&parts, p, false), union(&parts, q, true))
}

/// Hockey-stick divergence `δ_{P‖Q}(ε) = P(L > ε) − e^ε Q(L > ε)` for
/// `P = N(mp, sp²)`, `Q = N(mq, sq²)` (exact, via the quadratic privacy loss).
fn two_gaussians_delta(p: (f64, f64), q: (f64, f64), eps: f64) -> f64 {
    let ((mp, sp), (mq, sq)) = (p, q);
    // L(x) = ln(sq/sp) − (x−mp)²/(2sp²) + (x−mq)²/(2sq²); S = {L − ε > 0}.
    let (ip, iq) = (1.0 / (2.0 * sp * sp), 1.0 / (2.0 * sq * sq));
    let a = iq - ip;
    let b = 2.0 * (mp * ip - mq * iq);
    let c = mq * mq * iq - mp * mp * ip + (sq / sp).ln() - eps;
    let (p_mass, ln_q_mass) = quadratic_set_masses(a, b, c, p, q);
    (p_mass - (eps + ln_q_mass).exp()).clamp(0.0, 1.0)
}

/// ε at which `N(mean0, std0²)` and `N(mean1, std1²)` are `(ε, δ)`-indistinguishable
/// in both directions (the larger of the two directions' ε).
pub fn two_gaussians_epsilon(
    mean0: f64,
    std0: f64,
    mean1: f64,
    std1: f64,
    delta: f64,
) -> Result<f64, AuditError> {
    check_open_unit("delta", delta)?;
    for (name, s) in [("std0", std0), ("std1", std1)] {
        if !(s > 0.0 && s.is_finite()) {
            return Err(AuditError::InvalidParameter {
                name,
                value: s,
                range: "(0, inf)",
            });
        }
    }
    if !(mean0.is_finite() && mean1.is_finite()) {
        return Err(AuditError::InvalidParameter {
            name: "mean",
            value: if mean0.is_finite() { mean1 } else { mean0 },
            range: "finite numbers",
        });
    }
    let (g0, g1) = ((mean0, std0), (mean1, std1));
    let worst = |e: f64| two_gaussians_delta(g1, g0, e).max(two_gaussians_delta(g0, g1, e));
    if worst(0.0) <= delta {
        return Ok(0.0);
    }
    let mut hi = 1.0;
    while worst(hi) > delta {
        hi *= 2.0;
        if hi > 1e6 {
            return Ok(f64::INFINITY);
        }
    }
    Ok(bisect_decreasing(0.0, hi, |e| worst(e) > delta))
}

/// Andrew et al. 2024 one-shot ε estimate from the fitted statistics: null
/// cosines `N(0, null_std²)` (`null_std = 1/√d`) against inserted-canary
/// cosines `N(obs_mean, obs_std²)`, at `δ`.
pub fn one_shot_epsilon(
    null_std: f64,
    obs_mean: f64,
    obs_std: f64,
    delta: f64,
) -> Result<f64, AuditError> {
    two_gaussians_epsilon(0.0, null_std, obs_mean, obs_std, delta)
}

/// Andrew et al. 2024 one-shot ε estimate from raw cosines of inserted
/// canaries with the released update, for a model of dimension `dim`: fits
/// the sample mean and (n − 1) standard deviation and calls
/// [`one_shot_epsilon`] with `null_std = 1/√dim`.
pub fn one_shot_epsilon_from_cosines(
    dim: usize,
    cosines: &[f64],
    delta: f64,
) -> Result<f64, AuditError> {
    if dim == 0 || cosines.len() < 2 {
        return Err(AuditError::InvalidCounts(format!(
            "need dim > 0 and at least 2 cosines, got dim = {dim}, {} cosines",
            cosines.len()
        )));
    }
    if cosines.iter().any(|c| !c.is_finite()) {
        return Err(AuditError::InvalidCounts("non-finite cosine".into()));
    }
    let n = cosines.len() as f64;
    let mean = cosines.iter().sum::<f64>() / n;
    let var = cosines.iter().map(|c| (c - mean) * (c - mean)).sum::<f64>() / (n - 1.0);
    one_shot_epsilon(
        1.0 / (dim as f64).sqrt(),
        mean,
        var.sqrt().max(f64::MIN_POSITIVE),
        delta,
    )
}

/// Cosine similarity of two vectors (0 if either is zero); `f64` accumulation.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_matches_the_closed_form_at_zero_successes() {
        // k = 0: P[Bin(n,p) = 0] = (1−p)^n = α  →  p = 1 − α^{1/n}.
        let p = clopper_pearson_upper(0, 1000, 0.025).unwrap();
        assert!((p - (1.0 - 0.025f64.powf(1e-3))).abs() < 1e-12, "{p}");
        assert_eq!(clopper_pearson_upper(5, 5, 0.05), Ok(1.0));
        assert!(clopper_pearson_upper(6, 5, 0.05).is_err());
    }

    #[test]
    fn identical_gaussians_are_zero_epsilon_and_order_does_not_matter() {
        assert_eq!(two_gaussians_epsilon(0.0, 1.0, 0.0, 1.0, 1e-6), Ok(0.0));
        let a = two_gaussians_epsilon(0.0, 1.0, 1.0, 1.5, 1e-5).unwrap();
        let b = two_gaussians_epsilon(1.0, 1.5, 0.0, 1.0, 1e-5).unwrap();
        assert!((a - b).abs() < 1e-9);
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-15);
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 3.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 3.0]), 0.0);
    }
}
