//! The issue-8 estimators against `tests/data/audit_vectors.json`.
#![allow(clippy::unwrap_used)]

mod support;

use fedsec_privacy::audit::{
    clopper_pearson_epsilon, gaussian_dp_audit, one_run_epsilon, one_shot_epsilon,
    one_shot_epsilon_from_cosines, two_gaussians_epsilon,
};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(support::data_path("audit_vectors.json")).unwrap(),
    )
    .unwrap()
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

#[test]
fn one_run_bound_matches_steinke_nasr_jagielski() {
    let all = vectors();
    let rows = all["one_run"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for row in rows {
        let (m, r, v) = (f(row, "m") as u64, f(row, "r") as u64, f(row, "v") as u64);
        let eps = one_run_epsilon(m, r, v, f(row, "delta"), f(row, "p")).unwrap();
        // The reference ran the paper's 30-step bisection (precision ~1e-8).
        assert!(close(eps, f(row, "eps_lb"), 1e-6), "{row}: got {eps}");
    }
}

#[test]
fn clopper_pearson_bound_matches_jagielski_et_al() {
    let all = vectors();
    let rows = all["cp_audit"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for row in rows {
        let b = clopper_pearson_epsilon(
            f(row, "fp") as u64,
            f(row, "n_neg") as u64,
            f(row, "fn") as u64,
            f(row, "n_pos") as u64,
            f(row, "delta"),
            0.05,
        )
        .unwrap();
        let want: Vec<f64> = row["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(close(b.epsilon, want[0], 1e-7), "{row}: ε {}", b.epsilon);
        assert!(
            close(b.fpr_upper, want[1], 1e-7),
            "{row}: FPR⁺ {}",
            b.fpr_upper
        );
        assert!(
            close(b.fnr_upper, want[2], 1e-7),
            "{row}: FNR⁺ {}",
            b.fnr_upper
        );
    }
}

#[test]
fn gaussian_dp_audit_matches() {
    let all = vectors();
    for row in all["gdp_audit"].as_array().unwrap() {
        let (mu, eps) = gaussian_dp_audit(f(row, "fpr"), f(row, "fnr"), f(row, "delta")).unwrap();
        assert!(close(mu, f(row, "mu"), 1e-10), "{row}: μ {mu}");
        assert!(close(eps, f(row, "eps"), 1e-8), "{row}: ε {eps}");
    }
}

#[test]
fn two_gaussians_reduce_to_the_analytic_gaussian() {
    let all = vectors();
    let want = f(&all["two_gauss_check"], "eps_two_gauss_N01_vs_N21");
    let eps = two_gaussians_epsilon(0.0, 1.0, 2.0, 1.0, 1e-5).unwrap();
    assert!(close(eps, want, 1e-10), "{eps} vs {want}");
    assert!(close(
        eps,
        f(&all["two_gauss_check"], "eps_exact_gaussian_mu2"),
        1e-10
    ));
}

#[test]
fn one_shot_estimate_matches_andrew_et_al() {
    let all = vectors();
    let rows = all["one_shot"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        let null = f(row, "null_std");
        assert!(close(null, 1.0 / f(row, "dim").sqrt(), 1e-12));
        let eps =
            one_shot_epsilon(null, f(row, "obs_mean"), f(row, "obs_std"), f(row, "delta")).unwrap();
        let want = f(row, "eps_est");
        if want == 0.0 {
            assert_eq!(eps, 0.0, "{row}");
        } else {
            assert!(close(eps, want, 1e-8), "{row}: got {eps}");
        }
    }
}

#[test]
fn one_shot_from_cosines_fits_mean_and_std() {
    // Cosines with sample mean 0.004 and (n−1) std 0.001 exactly: ±√(n−1)/√n … use a
    // symmetric two-point sample, whose mean and std are known in closed form.
    let n = 1000;
    let s = 0.001 * ((n as f64 - 1.0) / n as f64).sqrt();
    let cos: Vec<f64> = (0..n)
        .map(|i| if i % 2 == 0 { 0.004 + s } else { 0.004 - s })
        .collect();
    let eps = one_shot_epsilon_from_cosines(1_000_000, &cos, 1e-6).unwrap();
    assert!(close(eps, 26.356963925325804, 1e-8), "{eps}");
    assert!(one_shot_epsilon_from_cosines(0, &cos, 1e-6).is_err());
    assert!(one_shot_epsilon_from_cosines(10, &[0.1], 1e-6).is_err());
}
