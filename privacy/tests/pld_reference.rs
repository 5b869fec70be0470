//! The PLD accountant against Google dp_accounting 0.6.0 (`eps_pld`),
//! Microsoft prv-accountant's certified bounds, the exact full-batch values
//! (`eps_exact_q1`) and an independent exact single-round computation.
#![allow(clippy::unwrap_used)]

mod support;

use fedsec_privacy::accounting::{Accountant, Mechanism, PldAccountant};
use support::{Row, read_csv};

fn mech(q: f64, z: f64) -> Mechanism {
    Mechanism {
        sampling_rate: q,
        noise_multiplier: z,
    }
}

fn comp(r: &Row) -> [(Mechanism, u64); 1] {
    [(mech(r.f("q"), r.f("z")), r.u("T"))]
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs()
}

/// Reference rows where fedsec's PLD ε is more than 0.5 % below dp_accounting's.
///
/// All are q = 0.001, z = 4, where one round's privacy loss is spread over only
/// ~2.5·10⁻⁴ (a couple of dp_accounting's fixed grid steps of 10⁻⁴): at that
/// resolution connect-the-dots inflates the loss's variance by a constant
/// factor, so dp_accounting's ε is ~1.3 % high at every T. fedsec sizes its
/// grid to the composed distribution (here h ≈ 10⁻⁶…10⁻⁵). Verified per row:
/// (1) fedsec with dp_accounting's interval 1e-4 reproduces eps_pld within
/// 0.5 %; (2) refining fedsec's own grid 4× changes ε by < 0.1 %; (3) the value
/// lies inside prv-accountant's certified [lower, upper] bracket and, for
/// T = 1, above and within 0.1 % of the exact ε from the closed-form curve
/// (`single_rounds_match_the_exact_curve`). Both discretisations are
/// pessimistic, so the finer one is the tighter valid bound.
const EXPLAINED_ROWS: &[&str] = &[
    "q=0.001 z=4.0 T=1 δ=1e-05",
    "q=0.001 z=4.0 T=100 δ=1e-05",
    "q=0.001 z=4.0 T=100 δ=1e-06",
    "q=0.001 z=4.0 T=1000 δ=1e-05",
    "q=0.001 z=4.0 T=1000 δ=1e-06",
    "q=0.001 z=4.0 T=10000 δ=1e-05",
    "q=0.001 z=4.0 T=10000 δ=1e-06",
];

#[test]
fn every_row_within_one_percent_and_never_half_a_percent_below_unless_explained() {
    let rows = read_csv("eps_reference_extended.csv");
    assert_eq!(rows.len(), 200);
    let mut below = Vec::new();
    let (mut worst_above, mut worst_below) = (0.0f64, 0.0f64);
    for r in &rows {
        let reference = r.f("eps_pld");
        let c = comp(r);
        let e = PldAccountant.epsilon(&c, r.f("delta")).unwrap();
        let rel = e / reference - 1.0;
        worst_above = worst_above.max(rel);
        worst_below = worst_below.min(rel);
        assert!(
            rel <= 0.01,
            "{}: {e} more than 1 % above {reference}",
            r.label()
        );
        // prv-accountant's lower bound, as a sanity floor. It is not reliable
        // at large ε: in three high-ε rows (q = 0.1, T = 10⁴; two of them logged
        // "Discrete mean differs from continuous mean significantly" and were
        // retried) it lies up to 0.23 % above dp_accounting's *pessimistic* PLD
        // value, which is impossible for a true lower bound. Hence the slack.
        if let Some(lower) = r.opt("eps_prv_lower") {
            assert!(
                e >= lower * (1.0 - 0.005),
                "{}: {e} below PRV's lower bound {lower}",
                r.label()
            );
        }
        // (The CSV keeps 6 significant digits, hence 1e-5.)
        if let Some(exact) = r.opt("eps_exact_q1") {
            assert!(
                e >= exact * (1.0 - 1e-5),
                "{}: {e} below the exact {exact}",
                r.label()
            );
        }
        if rel < -0.005 {
            below.push(r.label());
            assert!(
                EXPLAINED_ROWS.contains(&r.label().as_str()),
                "{}: {e} is {rel:+.3e} below {reference}",
                r.label()
            );
            let delta = r.f("delta");
            let coarse = PldAccountant
                .epsilon_with_interval(&c, delta, 1e-4)
                .unwrap();
            assert!(
                close(coarse, reference, 0.005),
                "{}: at h = 1e-4 {coarse} vs {reference}",
                r.label()
            );
            let h = PldAccountant.interval(&c).unwrap().unwrap();
            let fine = PldAccountant
                .epsilon_with_interval(&c, delta, h / 4.0)
                .unwrap();
            assert!(
                close(e, fine, 1e-3),
                "{}: h {h}: {e}, h/4: {fine}",
                r.label()
            );
            let (lo, up) = (r.f("eps_prv_lower"), r.f("eps_prv_upper"));
            assert!(
                lo <= e && e <= up,
                "{}: {e} outside PRV [{lo}, {up}]",
                r.label()
            );
        }
    }
    assert_eq!(
        below,
        EXPLAINED_ROWS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    eprintln!("PLD vs dp_accounting: worst {worst_below:+.2e} .. {worst_above:+.2e}");
}

#[test]
fn full_batch_is_exact() {
    // README: q = 1, z = 4, δ = 1e-5: exact ε after T = 1, 100, 10,000 is 0.926, 13.207, 418.20.
    for &(t, want) in &[(1u64, 0.926), (100, 13.207), (10_000, 418.20)] {
        let e = PldAccountant.epsilon(&[(mech(1.0, 4.0), t)], 1e-5).unwrap();
        assert!(
            (e - want).abs() < 6e-4 * want.max(1.0),
            "T={t}: {e} vs {want}"
        );
    }
    for r in read_csv("eps_reference_extended.csv")
        .iter()
        .filter(|r| r.f("q") == 1.0)
    {
        let e = PldAccountant.epsilon(&comp(r), r.f("delta")).unwrap();
        let exact = r.f("eps_exact_q1");
        assert!(close(e, exact, 1e-5), "{}: {e} vs exact {exact}", r.label());
    }
}

#[test]
fn fft_composition_reproduces_exact_full_batch_values() {
    // Force the discretise-and-FFT path (no exact shortcut) on full-batch rows,
    // where the exact answer is known: checks discretisation, squaring, packing,
    // truncation and the read-out together.
    for r in read_csv("eps_reference_extended.csv")
        .iter()
        .filter(|r| r.f("q") == 1.0 && r.u("T") <= 1000)
    {
        let (z, t) = (r.f("z"), r.u("T"));
        // Grid: 2^16 points over ±8 standard deviations of the composed loss.
        let sd = (t as f64).sqrt() / z;
        let h = (16.0 * sd + 20.0 / z) / 65_536.0;
        let e = PldAccountant
            .epsilon_with_interval(&comp(r), r.f("delta"), h)
            .unwrap();
        let exact = r.f("eps_exact_q1");
        assert!(
            e >= exact * (1.0 - 1e-5),
            "{}: {e} below exact {exact}",
            r.label()
        );
        assert!(close(e, exact, 1e-3), "{}: {e} vs exact {exact}", r.label());
    }
}

/// Hockey stick of N(0,1) vs N(μ,1) (Balle & Wang 2018), via libm.
fn gauss_delta(mu: f64, eps: f64) -> f64 {
    let sf = |x: f64| 0.5 * libm::erfc(x / 2f64.sqrt());
    sf(eps / mu - mu / 2.0) - (eps + sf(eps / mu + mu / 2.0).ln()).exp()
}

/// Exact δ(ε) of one subsampled-Gaussian round, worse direction: remove is
/// `q·δ_G(ln(1 + (e^ε − 1)/q))`, add is `q·e^{ε−ε''}·δ_G(ε'')` with
/// `ε'' = −ln(1 + (e^{−ε} − 1)/q)`.
fn single_round_delta(q: f64, z: f64, eps: f64) -> f64 {
    let mu = 1.0 / z;
    let remove = q * gauss_delta(mu, (eps.exp_m1() / q).ln_1p());
    let t = (-eps).exp_m1() / q;
    let add = if t <= -1.0 {
        0.0
    } else {
        let e2 = -t.ln_1p();
        q * (eps - e2).exp() * gauss_delta(mu, e2)
    };
    remove.max(add)
}

#[test]
fn single_rounds_match_the_exact_curve() {
    for r in read_csv("eps_reference_extended.csv")
        .iter()
        .filter(|r| r.u("T") == 1 && r.f("q") < 1.0)
    {
        let (q, z, delta) = (r.f("q"), r.f("z"), r.f("delta"));
        let (mut lo, mut hi) = (0.0, 50.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if single_round_delta(q, z, mid) > delta {
                lo = mid
            } else {
                hi = mid
            }
        }
        let exact = hi;
        let e = PldAccountant.epsilon(&comp(r), delta).unwrap();
        assert!(
            e >= exact * (1.0 - 1e-9),
            "{}: {e} below the exact {exact}",
            r.label()
        );
        assert!(close(e, exact, 1e-3), "{}: {e} vs exact {exact}", r.label());
    }
}

#[test]
fn abadi_et_al_setting() {
    // README: q = 0.01, z = 4, δ = 1e-5, T = 10,000: PLD 0.9470, PRV [0.937, 0.957].
    let e = PldAccountant
        .epsilon(&[(mech(0.01, 4.0), 10_000)], 1e-5)
        .unwrap();
    assert!(close(e, 0.9470, 0.005), "{e}");
    assert!((0.937..=0.957).contains(&e), "{e}");
}

#[test]
fn heterogeneous_histories() {
    let a = mech(0.01, 1.0);
    let b = mech(0.02, 1.5);
    let only_a = PldAccountant.epsilon(&[(a, 100)], 1e-5).unwrap();
    let both = PldAccountant.epsilon(&[(a, 100), (b, 50)], 1e-5).unwrap();
    let more_a = PldAccountant.epsilon(&[(a, 150)], 1e-5).unwrap();
    assert!(both > only_a, "{both} {only_a}");
    // The tight bound never exceeds the RDP bound of the same history.
    let rdp = fedsec_privacy::accounting::RdpAccountant;
    assert!(both <= rdp.epsilon(&[(a, 100), (b, 50)], 1e-5).unwrap());
    assert!(more_a > only_a);
    // Splitting a homogeneous history changes nothing but the grid.
    let split = PldAccountant.epsilon(&[(a, 60), (a, 40)], 1e-5).unwrap();
    assert!(close(split, only_a, 2e-3), "{split} vs {only_a}");
    // Mixing full-batch and subsampled rounds.
    let mixed = PldAccountant
        .epsilon(&[(a, 100), (mech(1.0, 20.0), 3)], 1e-5)
        .unwrap();
    assert!(mixed > only_a);
    // δ(ε) is consistent with ε(δ) on a heterogeneous history.
    let d = PldAccountant.delta(&[(a, 100), (b, 50)], both).unwrap();
    assert!(close(d, 1e-5, 1e-4), "{d}");
}
