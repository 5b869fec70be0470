//! The RDP accountant against Google dp_accounting 0.6.0 (`eps_rdp` in
//! `tests/data/eps_reference.csv`), against opendp's zCDP route for q = 1,
//! against independent quadrature, and the classic Abadi et al. 2016 check.
#![allow(clippy::unwrap_used)]

mod support;

use fedsec_privacy::accounting::rdp::{DEFAULT_ORDERS, epsilon_from_rdp, rdp_poisson_gaussian};
use fedsec_privacy::accounting::zcdp::opendp_gaussian_epsilon;
use fedsec_privacy::accounting::{Accountant, Mechanism, RdpAccountant};
use support::{Row, read_csv};

fn mech(q: f64, z: f64) -> Mechanism {
    Mechanism {
        sampling_rate: q,
        noise_multiplier: z,
    }
}

fn ours(r: &Row) -> f64 {
    RdpAccountant
        .epsilon(&[(mech(r.f("q"), r.f("z")), r.u("T"))], r.f("delta"))
        .unwrap()
}

/// `ln erfc(x)`, independent of the crate (libm below 26, asymptotic above).
fn ln_erfc(x: f64) -> f64 {
    if x < 26.0 {
        libm::erfc(x).ln()
    } else {
        let y = 1.0 / (2.0 * x * x);
        -x * x - (x * std::f64::consts::PI.sqrt()).ln()
            + (1.0 - y + 3.0 * y * y - 15.0 * y * y * y).ln()
    }
}

fn log_add(a: f64, b: f64) -> f64 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        hi
    } else {
        hi + (lo - hi).exp().ln_1p()
    }
}

/// dp_accounting 0.6.0's `_compute_log_a_frac`, transcribed to explain the
/// rows where fedsec is lower: it adds the *magnitudes* of the two-series terms
/// (`_log_add` regardless of the sign of C(α, i) — an upper bound on A_α that
/// is loose when negative terms matter, i.e. small σ and large q), stops when
/// both terms decrease and are 30 nats below the total, and returns ∞ (the
/// order is dropped from the minimum) after 1000 steps.
fn dp_accounting_log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut a0, mut a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let ln_1mq = (-q).ln_1p();
    let (mut last0, mut last1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    for i in 0..1000 {
        let fi = i as f64;
        let log_coef =
            libm::lgamma(alpha + 1.0) - libm::lgamma(fi + 1.0) - libm::lgamma(alpha - fi + 1.0);
        let j = alpha - fi;
        let log_t0 = log_coef + fi * q.ln() + j * ln_1mq;
        let log_t1 = log_coef + j * q.ln() + fi * ln_1mq;
        let log_e0 = 0.5f64.ln() + ln_erfc((fi - z0) / (2f64.sqrt() * sigma));
        let log_e1 = 0.5f64.ln() + ln_erfc((z0 - j) / (2f64.sqrt() * sigma));
        let s0 = log_t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + log_e0;
        let s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        a0 = log_add(a0, s0);
        a1 = log_add(a1, s1);
        let total = log_add(a0, a1);
        if s0 < last0 && s1 < last1 && s0.max(s1) < total - 30.0 {
            return total;
        }
        last0 = s0;
        last1 = s1;
    }
    f64::INFINITY
}

/// ε as dp_accounting 0.6.0 computes it (its fractional-order series, its
/// dropped orders, its discrete orders also for q = 1).
fn dp_accounting_epsilon(q: f64, z: f64, t: u64, delta: f64) -> f64 {
    let rdp: Vec<f64> = DEFAULT_ORDERS
        .iter()
        .map(|&a| {
            let r = if q >= 1.0 || a.fract() == 0.0 {
                rdp_poisson_gaussian(q, z, a)
            } else {
                dp_accounting_log_a_frac(q, z, a) / (a - 1.0)
            };
            r * t as f64
        })
        .collect();
    epsilon_from_rdp(&DEFAULT_ORDERS, &rdp, delta).0
}

/// Every reference row on which fedsec's RDP ε is more than 0.5 % below
/// dp_accounting's, with the reason (checked by the test below: the list is
/// exactly the set of such rows, and each reason is verified numerically).
///
/// - "cont": q = 1. The composition is ρ-zCDP and fedsec minimises the
///   conversion over every real order α > 1; with large ρ the optimum lies
///   below dp_accounting's smallest order 1.1 (e.g. q = 1, z = 0.5, T = 10⁴:
///   α* ≈ 1.02), so the grid minimum is up to 5 % higher. Verified: the
///   grid-restricted minimum reproduces eps_rdp, and fedsec's value equals
///   opendp's zCDP → approx-DP conversion to 1e-6.
/// - "abs": q < 1, small z. dp_accounting 0.6.0 sums the magnitudes of the
///   alternating two-series terms for fractional orders (and drops orders
///   needing > 1000 terms), which over-estimates A_α at the low fractional
///   orders that are optimal for large ε; fedsec sums with signs (and
///   matches independent quadrature to 1e-8, see `fractional_orders_match_quadrature`).
///   Verified: transcribing dp_accounting's series reproduces eps_rdp.
const EXPLAINED_ROWS: &[(&str, &str)] = &[
    ("q=0.01 z=0.5 T=10000 δ=1e-05", "abs"),
    ("q=0.01 z=0.5 T=10000 δ=1e-06", "abs"),
    ("q=0.05 z=0.5 T=1000 δ=1e-05", "abs"),
    ("q=0.05 z=0.5 T=1000 δ=1e-06", "abs"),
    ("q=0.05 z=0.5 T=10000 δ=1e-05", "abs"),
    ("q=0.05 z=0.5 T=10000 δ=1e-06", "abs"),
    ("q=0.05 z=0.8 T=10000 δ=1e-05", "abs"),
    ("q=0.05 z=0.8 T=10000 δ=1e-06", "abs"),
    ("q=0.05 z=1.0 T=10000 δ=1e-05", "abs"),
    ("q=0.05 z=1.0 T=10000 δ=1e-06", "abs"),
    ("q=0.1 z=0.5 T=100 δ=1e-05", "abs"),
    ("q=0.1 z=0.5 T=100 δ=1e-06", "abs"),
    ("q=0.1 z=0.5 T=1000 δ=1e-05", "abs"),
    ("q=0.1 z=0.5 T=1000 δ=1e-06", "abs"),
    ("q=0.1 z=0.5 T=10000 δ=1e-05", "abs"),
    ("q=0.1 z=0.5 T=10000 δ=1e-06", "abs"),
    ("q=0.1 z=0.8 T=1000 δ=1e-05", "abs"),
    ("q=0.1 z=0.8 T=1000 δ=1e-06", "abs"),
    ("q=0.1 z=0.8 T=10000 δ=1e-05", "abs"),
    ("q=0.1 z=0.8 T=10000 δ=1e-06", "abs"),
    ("q=0.1 z=1.0 T=10000 δ=1e-05", "abs"),
    ("q=0.1 z=1.0 T=10000 δ=1e-06", "abs"),
    ("q=0.1 z=1.5 T=10000 δ=1e-05", "abs"),
    ("q=0.1 z=1.5 T=10000 δ=1e-06", "abs"),
    ("q=1.0 z=0.5 T=1000 δ=1e-05", "cont"),
    ("q=1.0 z=0.5 T=10000 δ=1e-05", "cont"),
    ("q=1.0 z=0.5 T=10000 δ=1e-06", "cont"),
    ("q=1.0 z=0.8 T=1000 δ=1e-06", "cont"),
    ("q=1.0 z=0.8 T=10000 δ=1e-05", "cont"),
    ("q=1.0 z=0.8 T=10000 δ=1e-06", "cont"),
    ("q=1.0 z=1.0 T=1000 δ=1e-05", "cont"),
    ("q=1.0 z=1.0 T=10000 δ=1e-05", "cont"),
    ("q=1.0 z=1.0 T=10000 δ=1e-06", "cont"),
    ("q=1.0 z=1.5 T=1000 δ=1e-06", "cont"),
    ("q=1.0 z=1.5 T=10000 δ=1e-05", "cont"),
];

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

#[test]
fn every_row_matches_dp_accounting_or_is_explained() {
    let rows = read_csv("eps_reference_extended.csv");
    assert_eq!(rows.len(), 200);
    let mut below = Vec::new();
    for r in &rows {
        let (q, z, t, delta) = (r.f("q"), r.f("z"), r.u("T"), r.f("delta"));
        let reference = r.f("eps_rdp");
        let e = ours(r);
        // Never higher than dp_accounting beyond the CSV's 6-digit rounding.
        assert!(
            e <= reference * (1.0 + 1e-5),
            "{}: {e} > {reference}",
            r.label()
        );
        // Never below a certified lower bound on the true ε.
        if let Some(lower) = r.opt("eps_prv_lower") {
            assert!(
                e >= lower,
                "{}: {e} below PRV lower bound {lower}",
                r.label()
            );
        }
        if let Some(exact) = r.opt("eps_exact_q1") {
            assert!(e >= exact, "{}: {e} below the exact ε {exact}", r.label());
        }
        // The transcription of dp_accounting reproduces every row, so the
        // explanations below rest on a faithful model of the reference.
        let dp = dp_accounting_epsilon(q, z, t, delta);
        assert!(
            close(dp, reference, 1e-4),
            "{}: dp_accounting model {dp} vs {reference}",
            r.label()
        );
        if e < reference * (1.0 - 0.005) {
            below.push(r.label());
            let reason = EXPLAINED_ROWS
                .iter()
                .find(|(label, _)| *label == r.label())
                .map(|(_, reason)| *reason)
                .unwrap_or_else(|| {
                    panic!(
                        "{}: {e} is > 0.5 % below {reference} without explanation",
                        r.label()
                    )
                });
            match reason {
                "cont" => {
                    assert_eq!(q, 1.0);
                    let od = opendp_gaussian_epsilon(z, t, delta).unwrap();
                    assert!(close(e, od, 1e-6), "{}: {e} vs opendp {od}", r.label());
                }
                "abs" => assert!(q < 1.0 && z <= 1.5, "{}", r.label()),
                other => panic!("unknown reason {other}"),
            }
        }
    }
    let listed: Vec<String> = EXPLAINED_ROWS.iter().map(|(l, _)| l.to_string()).collect();
    assert_eq!(below, listed, "the explained-row list is out of date");
}

#[test]
fn full_batch_matches_the_opendp_zcdp_route() {
    // README: z = 1, T = 1, δ = 1e-5 → Canonne–Kamath–Steinke 4.7284.
    let e = RdpAccountant.epsilon(&[(mech(1.0, 1.0), 1)], 1e-5).unwrap();
    assert!((e - 4.7284).abs() < 5e-5, "{e}");
    for r in read_csv("eps_reference.csv")
        .iter()
        .filter(|r| r.f("q") == 1.0)
    {
        let e = ours(r);
        let od = opendp_gaussian_epsilon(r.f("z"), r.u("T"), r.f("delta")).unwrap();
        assert!(close(e, od, 1e-6), "{}: ours {e} vs opendp {od}", r.label());
    }
    // Also off the reference grid, and for heterogeneous full-batch histories.
    for &(z, t, d) in &[(0.3, 7, 1e-3), (2.5, 123, 1e-8), (10.0, 1, 0.5 / 1000.0)] {
        let e = RdpAccountant.epsilon(&[(mech(1.0, z), t)], d).unwrap();
        let od = opendp_gaussian_epsilon(z, t, d).unwrap();
        assert!(close(e, od, 1e-6), "z={z} T={t} δ={d}: {e} vs {od}");
    }
    let mixed = RdpAccountant
        .epsilon(&[(mech(1.0, 1.0), 3), (mech(1.0, 2.0), 4)], 1e-5)
        .unwrap();
    // ρ = 3/2 + 4/8 = 2 = ρ of one Gaussian with z = 0.5.
    let od = opendp_gaussian_epsilon(0.5, 1, 1e-5).unwrap();
    assert!(close(mixed, od, 1e-6), "{mixed} vs {od}");
}

#[test]
fn abadi_et_al_setting() {
    // README classic check: q = 0.01, z = 4, δ = 1e-5, T = 10,000.
    let e = RdpAccountant
        .epsilon(&[(mech(0.01, 4.0), 10_000)], 1e-5)
        .unwrap();
    assert!(close(e, 1.0355, 5e-4), "dp_accounting RDP 1.0355, got {e}");
    // The paper's moments accountant: integer orders 2..32, classic conversion
    // ε = r_α + ln(1/δ)/(α − 1) → 1.2586 (the paper's 1.26).
    let classic = (2..=32)
        .map(|a| {
            let a = a as f64;
            10_000.0 * rdp_poisson_gaussian(0.01, 4.0, a) + (1.0f64 / 1e-5).ln() / (a - 1.0)
        })
        .fold(f64::INFINITY, f64::min);
    assert!(close(classic, 1.2586, 5e-4), "{classic}");
}

/// `ln A_α` by brute-force quadrature of
/// `E_{x∼N(0,σ²)}[((1−q) + q e^{(2x−1)/(2σ²)})^α]` (log-space trapezoid),
/// independent of the series.
fn log_a_quadrature(q: f64, s: f64, a: f64) -> f64 {
    let n = 400_000;
    let lo = -40.0 * s - 5.0;
    let hi = 40.0 * s + 60.0 * s * s + 5.0;
    let h = (hi - lo) / n as f64;
    let terms: Vec<f64> = (0..=n)
        .map(|i| {
            let x = lo + h * i as f64;
            let lr = log_add((-q).ln_1p(), q.ln() + (2.0 * x - 1.0) / (2.0 * s * s));
            let log_pdf = -x * x / (2.0 * s * s) - (s * (2.0 * std::f64::consts::PI).sqrt()).ln();
            a * lr + log_pdf + h.ln()
        })
        .collect();
    let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
}

#[test]
fn fractional_orders_match_quadrature() {
    for &(q, s) in &[
        (0.05, 0.5),
        (0.1, 0.5),
        (0.01, 0.5),
        (0.1, 1.5),
        (0.01, 4.0),
    ] {
        for &a in &[1.1, 1.5, 1.6, 2.5, 3.4, 5.5, 10.9] {
            let series = rdp_poisson_gaussian(q, s, a);
            let quad = log_a_quadrature(q, s, a) / (a - 1.0);
            // The series carries its Leibniz remainder bound, so it may only sit above.
            assert!(
                series >= quad * (1.0 - 1e-9),
                "q={q} σ={s} α={a}: {series} < {quad}"
            );
            assert!(
                close(series, quad, 2e-8),
                "q={q} σ={s} α={a}: {series} vs {quad}"
            );
        }
    }
}

#[test]
fn heterogeneous_histories_add_rdp_curves() {
    let a = mech(0.01, 1.0);
    let b = mech(0.02, 1.5);
    let both = RdpAccountant.epsilon(&[(a, 100), (b, 50)], 1e-5).unwrap();
    let curve_a = RdpAccountant.curve(&[(a, 100)]).unwrap();
    let curve_b = RdpAccountant.curve(&[(b, 50)]).unwrap();
    let sum: Vec<f64> = curve_a.iter().zip(curve_b).map(|(x, y)| x + y).collect();
    assert_eq!(both, epsilon_from_rdp(&DEFAULT_ORDERS, &sum, 1e-5).0);
    let only_a = RdpAccountant.epsilon(&[(a, 100)], 1e-5).unwrap();
    assert!(both > only_a);
    // Splitting a homogeneous history does not change it.
    let split = RdpAccountant.epsilon(&[(a, 60), (a, 40)], 1e-5).unwrap();
    assert!(close(split, only_a, 1e-12));
}
