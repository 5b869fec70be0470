//! Statistical tests of both noise sources: mean, variance, lag-1
//! correlation and a Kolmogorov–Smirnov test against N(0, σ²).
//!
//! The simulation source is seeded, so its tests are deterministic. The
//! opendp source draws from OpenSSL and cannot be seeded, so its tests must
//! hold for every draw: each statistic is compared at a significance level of
//! 1e-9 (mean and correlation at 6.1 standard errors, variance at 6.1 standard
//! errors of the sample variance, KS p-value > 1e-9), so a correct sampler
//! fails one run of this file with probability below 5e-9 — never in
//! practice — while the power checks below show the same thresholds reject a
//! 5 % error in σ or a shifted mean.
#![allow(clippy::unwrap_used)]

use fedsec_privacy::noise::{
    DiscreteGaussianNoise, GaussianNoise, NoiseKind, OpenDpGaussian, SimulationGaussian,
};

/// Significance level of every assertion.
const ALPHA: f64 = 1e-9;
/// Two-sided normal quantile for ALPHA: Φ̄(6.109) = 5e-10.
const Z_ALPHA: f64 = 6.109;

/// Kolmogorov distribution tail Q(λ) = 2 Σ (−1)^{k−1} e^{−2k²λ²}.
fn kolmogorov_tail(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut s = 0.0;
    for k in 1..=100 {
        let kf = k as f64;
        let term = (-2.0 * kf * kf * lambda * lambda).exp();
        s += if k % 2 == 1 { term } else { -term };
        if term < 1e-300 {
            break;
        }
    }
    (2.0 * s).clamp(0.0, 1.0)
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// KS p-value of `samples` against N(mean, sd²) (asymptotic distribution with
/// Stephens' small-sample correction).
fn ks_p_value(samples: &[f64], mean: f64, sd: f64) -> f64 {
    let mut x: Vec<f64> = samples.to_vec();
    x.sort_by(f64::total_cmp);
    let n = x.len() as f64;
    let mut d: f64 = 0.0;
    for (i, v) in x.iter().enumerate() {
        let f = normal_cdf((v - mean) / sd);
        d = d
            .max(((i + 1) as f64 / n - f).abs())
            .max((f - i as f64 / n).abs());
    }
    kolmogorov_tail((n.sqrt() + 0.12 + 0.11 / n.sqrt()) * d)
}

struct Summary {
    mean: f64,
    var: f64,
    lag1: f64,
}

fn summarize(x: &[f64]) -> Summary {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    let lag1 = x
        .windows(2)
        .map(|w| (w[0] - mean) * (w[1] - mean))
        .sum::<f64>()
        / ((n - 1.0) * var);
    Summary { mean, var, lag1 }
}

/// All checks for noise added to a constant vector `base`.
fn check_gaussian(noised: &[f64], base: f64, sd: f64) {
    let n = noised.len() as f64;
    let noise: Vec<f64> = noised.iter().map(|v| v - base).collect();
    let s = summarize(&noise);
    assert!(
        s.mean.abs() <= Z_ALPHA * sd / n.sqrt(),
        "mean {} (σ = {sd}, n = {n})",
        s.mean
    );
    // Var of the sample variance of a normal: 2σ⁴/(n−1).
    let rel = s.var / (sd * sd) - 1.0;
    assert!(
        rel.abs() <= Z_ALPHA * (2.0 / (n - 1.0)).sqrt(),
        "variance off by {rel:+.4}"
    );
    assert!(
        s.lag1.abs() <= Z_ALPHA / n.sqrt(),
        "lag-1 correlation {}",
        s.lag1
    );
    let p = ks_p_value(&noise, 0.0, sd);
    assert!(p > ALPHA, "KS p-value {p}");
}

#[test]
fn ks_machinery_has_power() {
    // Same thresholds, wrong hypotheses: must reject. Deterministic samples.
    let mut src = SimulationGaussian::seeded(11);
    let mut x = vec![0.0; 20_000];
    src.add_noise(&mut x, 1.0).unwrap();
    assert!(ks_p_value(&x, 0.0, 1.0) > ALPHA);
    assert!(
        ks_p_value(&x, 0.0, 1.1) < ALPHA,
        "a 10 % error in σ must be rejected"
    );
    assert!(
        ks_p_value(&x, 0.1, 1.0) < ALPHA,
        "a 0.1σ shift must be rejected"
    );
    let s = summarize(&x);
    assert!(
        (s.var / 1.05f64.powi(2) - 1.0).abs() > Z_ALPHA * (2.0f64 / 19_999.0).sqrt(),
        "a 5 % error in σ must fail the variance check"
    );
    // The Kolmogorov tail itself: Q(1.3581) = 0.05, Q(1.6276) = 0.01.
    assert!((kolmogorov_tail(1.3581) - 0.05).abs() < 1e-4);
    assert!((kolmogorov_tail(1.6276) - 0.01).abs() < 1e-4);
}

#[test]
fn simulation_source_is_gaussian() {
    for (seed, sd) in [(1u64, 1.0), (2, 0.01), (3, 250.0)] {
        let mut src = SimulationGaussian::seeded(seed);
        assert_eq!(src.kind(), NoiseKind::Simulation);
        let mut x = vec![3.5; 1_000_000];
        src.add_noise(&mut x, sd).unwrap();
        check_gaussian(&x, 3.5, sd);
    }
}

#[test]
fn discrete_source_is_gaussian() {
    // Seeded, deterministic; 200,000 draws per σ on several threads.
    for (seed, sd) in [(1u64, 1.0), (2, 0.05), (3, 37.0)] {
        let mut src = DiscreteGaussianNoise::seeded(seed);
        assert_eq!(src.kind(), NoiseKind::Discrete);
        let mut x = vec![3.5; 200_000];
        src.add_noise(&mut x, sd).unwrap();
        check_gaussian(&x, 3.5, sd);
    }
}

#[test]
fn opendp_source_is_gaussian() {
    // Unseedable (OpenSSL): 20,000 draws per σ, thresholds at 1e-9 (see top).
    for sd in [1.0, 0.05, 37.0] {
        let mut src = OpenDpGaussian::new();
        assert_eq!(src.kind(), NoiseKind::OpenDp);
        let mut x = vec![0.0; 20_000];
        src.add_noise(&mut x, sd).unwrap();
        check_gaussian(&x, 0.0, sd);
    }
}

#[test]
fn opendp_source_noises_around_the_rounded_value() {
    // base lies on the 2^-40 grid, so rounding leaves it unchanged.
    let base = 1234.5;
    let mut x = vec![base; 20_000];
    OpenDpGaussian::new().add_noise(&mut x, 2.0).unwrap();
    check_gaussian(&x, base, 2.0);
    // Two calls draw independent noise.
    let mut a = vec![0.0; 64];
    let mut b = vec![0.0; 64];
    OpenDpGaussian::new().add_noise(&mut a, 1.0).unwrap();
    OpenDpGaussian::new().add_noise(&mut b, 1.0).unwrap();
    assert_ne!(a, b);
}

#[test]
fn opendp_source_splits_long_vectors_without_losing_independence() {
    // Longer than one chunk (2^14) on several threads: every chunk must be noised
    // and the chunks must not repeat each other.
    let mut x = vec![0.0; 3 * (1 << 14) + 17];
    OpenDpGaussian::new().add_noise(&mut x, 1.0).unwrap();
    assert!(x.iter().all(|v| v.is_finite()));
    let (a, b) = (&x[..1 << 14], &x[1 << 14..2 << 14]);
    assert_ne!(a, b);
    assert!(x[x.len() - 17..].iter().any(|v| *v != 0.0));
    check_gaussian(&x, 0.0, 1.0);
}
