//! Distribution tests of the sampler against the exact pmf, for every layout
//! path (single-integer blocks, wide blocks with the fine acceptance, a tail
//! reached often), seeded and deterministic.

use super::*;

/// Exact pmf of `N_ℤ(0, σ′²)` for the sampler's own `T`: `p(z) ∝ 2^(−z²/T)`
/// (f64 is plenty for a goodness-of-fit test).
pub(crate) fn pmf(s: &DiscreteGaussian, z: i64) -> f64 {
    let (t, e) = s.base2_scale();
    let tf = t as f64 * 2f64.powi(e);
    let w = |y: i64| 2f64.powf(-((y as f64).powi(2)) / tf);
    let reach = (12.0 * s.sigma()).ceil() as i64 + 2;
    let norm: f64 = (-reach..=reach).map(w).sum();
    w(z) / norm
}

/// Upper-tail probability of χ²(k) at `x`, by Wilson–Hilferty (accurate to a
/// few percent in the far tail, which is all a 1e-6 threshold needs).
pub(crate) fn chi2_sf(x: f64, k: f64) -> f64 {
    let z = ((x / k).cbrt() - (1.0 - 2.0 / (9.0 * k))) / (2.0 / (9.0 * k)).sqrt();
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// χ² statistic and degrees of freedom of `samples` against `pmf`, bins of
/// single integers with expected count ≥ 20 and the two tails pooled.
pub(crate) fn chi2(samples: &[i64], p: impl Fn(i64) -> f64, sigma: f64) -> (f64, f64) {
    let n = samples.len() as f64;
    let reach = (12.0 * sigma).ceil() as i64 + 2;
    let mut bins: Vec<(i64, i64, f64)> = Vec::new(); // [lo, hi], expected
    let (mut lo, mut acc) = (-reach, 0.0);
    for z in -reach..=reach {
        acc += p(z);
        if acc * n >= 20.0 {
            bins.push((lo, z, acc));
            lo = z + 1;
            acc = 0.0;
        }
    }
    if let Some(last) = bins.last_mut() {
        last.1 = reach;
        last.2 += acc;
    }
    let mut counts = vec![0u64; bins.len()];
    for &x in samples {
        let i = bins.partition_point(|b| b.1 < x).min(bins.len() - 1);
        counts[i] += 1;
    }
    let stat: f64 = bins
        .iter()
        .zip(&counts)
        .map(|(b, &c)| {
            let e = b.2 * n;
            (c as f64 - e).powi(2) / e
        })
        .sum();
    (stat, (bins.len() - 1) as f64)
}

fn draw(s: &DiscreteGaussian, seed: u64, n: usize) -> Vec<i64> {
    let mut rng = SamplerRng::seed_from_u64(seed);
    let mut v = vec![0i64; n];
    s.fill(&mut rng, &mut v);
    v
}

fn assert_fits(s: &DiscreteGaussian, samples: &[i64], what: &str) {
    let (stat, df) = chi2(samples, |z| pmf(s, z), s.sigma());
    let p = chi2_sf(stat, df);
    assert!(p > 1e-6, "{what}: χ² = {stat:.1} on {df} df, p = {p:.2e}");
}

#[test]
fn matches_the_exact_pmf_at_small_sigma() {
    for (i, sigma) in [0.3, 0.8, 1.0, 1.5, 3.7, 10.0].into_iter().enumerate() {
        let s = DiscreteGaussian::new(sigma).unwrap();
        let x = draw(&s, 100 + i as u64, 200_000);
        assert_fits(&s, &x, &format!("σ = {sigma}"));
    }
}

#[test]
fn every_layout_gives_the_same_distribution() {
    // Wide blocks (fine acceptance on almost every value), single-integer
    // blocks, and a table ending early so that the tail is drawn often.
    let sigma = 6.5;
    for (seed, bb, te) in [
        (1u64, Some(0), 40u64),
        (2, Some(2), 40),
        (3, Some(3), 40),
        (4, Some(0), 1),
        (5, Some(2), 2),
        (6, None, 3),
    ] {
        let s = DiscreteGaussian::with_layout(sigma, bb, te).unwrap();
        let x = draw(&s, seed, 200_000);
        assert_fits(&s, &x, &format!("blocks {bb:?}, tail exponent {te}"));
    }
}

#[test]
fn the_tail_path_is_taken_and_exact() {
    let s = DiscreteGaussian::with_layout(4.0, Some(0), 1).unwrap();
    let mut rng = SamplerRng::seed_from_u64(9);
    let mut x = vec![0i64; 200_000];
    s.fill(&mut rng, &mut x);
    let st = rng.stats();
    assert!(st.tail_trials > 10_000, "{st:?}");
    assert_fits(&s, &x, "tail-heavy layout");
}

#[test]
fn the_goodness_of_fit_test_has_power() {
    // Samples at σ = 3.7 must fail against the pmf of σ·1.02, and against a
    // pmf that counts zero twice (the sign rejection dropped).
    let s = DiscreteGaussian::new(3.7).unwrap();
    let wide = DiscreteGaussian::new(3.7 * 1.02).unwrap();
    let x = draw(&s, 7, 200_000);
    let (stat, df) = chi2(&x, |z| pmf(&wide, z), s.sigma());
    assert!(chi2_sf(stat, df) < 1e-6, "2 % error in σ not detected");
    let p0 = pmf(&s, 0);
    let doubled = |z: i64| if z == 0 { 2.0 * p0 } else { pmf(&s, z) } / (1.0 + p0);
    let (stat, df) = chi2(&x, doubled, s.sigma());
    assert!(chi2_sf(stat, df) < 1e-6, "a doubled zero not detected");
}

#[test]
fn large_sigma_moments_and_tails() {
    // σ = 2^40 grid units, the production regime: mean, variance, and the
    // fraction beyond 2σ and 3σ, each within 6 standard errors.
    let sigma = 1099511627776.0;
    let s = DiscreteGaussian::new(sigma).unwrap();
    let n = 400_000;
    let x = draw(&s, 11, n);
    let nf = n as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / nf;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    assert!(mean.abs() < 6.0 * sigma / nf.sqrt(), "mean {mean}");
    assert!(
        (var / (sigma * sigma) - 1.0).abs() < 6.0 * (2.0 / nf).sqrt(),
        "var {var}"
    );
    for (k, p) in [(2.0, 0.045_500_263_9), (3.0, 0.002_699_796_1)] {
        let c = x.iter().filter(|&&v| (v as f64).abs() > k * sigma).count() as f64;
        let sd = (nf * p * (1.0 - p)).sqrt();
        assert!((c - nf * p).abs() < 6.0 * sd, "beyond {k}σ: {c}");
    }
    // The low-order bits are uniform: the residues mod 2^16 fill their range.
    let low: Vec<i64> = x.iter().map(|v| v.rem_euclid(1 << 16)).collect();
    let (stat, df) = chi2_uniform(&low, 1 << 8, 1 << 16);
    assert!(chi2_sf(stat, df) > 1e-6, "low bits not uniform: {stat}");
}

fn chi2_uniform(x: &[i64], bins: usize, range: i64) -> (f64, f64) {
    let mut c = vec![0u64; bins];
    for &v in x {
        c[(v * bins as i64 / range) as usize] += 1;
    }
    let e = x.len() as f64 / bins as f64;
    (
        c.iter().map(|&k| (k as f64 - e).powi(2) / e).sum(),
        (bins - 1) as f64,
    )
}

#[test]
fn seeded_streams_are_reproducible_and_distinct() {
    let s = DiscreteGaussian::new(1e6).unwrap();
    assert_eq!(draw(&s, 5, 1000), draw(&s, 5, 1000));
    assert_ne!(draw(&s, 5, 1000), draw(&s, 6, 1000));
    let mut a = SamplerRng::from_os().unwrap();
    let mut b = SamplerRng::from_os().unwrap();
    assert_ne!(s.sample(&mut a), s.sample(&mut b));
}

#[test]
fn values_never_exceed_the_cap() {
    for sigma in [scale::MIN_SIGMA, 1.0, 1e10, scale::MAX_SIGMA] {
        let s = DiscreteGaussian::new(sigma).unwrap();
        let cap = s.cap() as i64;
        assert!(draw(&s, 3, 10_000).iter().all(|v| v.abs() <= cap));
    }
}
