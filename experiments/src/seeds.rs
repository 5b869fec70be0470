//! The shared multi-seed harness (issue 23): every experiment runs over
//! several seeds (seed `s`, `s + 1`, …: data, splits, initial weights,
//! cohort selection and noise all follow the seed) and reports the mean and
//! sample standard deviation over seeds; small groups get 95 % intervals
//! (Wilson for shares, a percentile bootstrap over tenants for mean AUCs);
//! choices made from data are made on a validation split carved out of the
//! training rows ([`crate::data::Population::validation_split`]), never on
//! the holdout.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seeds `first`, `first + 1`, …, `first + count - 1` (at least one).
pub fn seed_list(first: u64, count: u64) -> Vec<u64> {
    (0..count.max(1)).map(|k| first.wrapping_add(k)).collect()
}

/// Mean and sample standard deviation of one metric over seeds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MeanSd {
    /// Mean over the finite values.
    pub mean: f64,
    /// Sample standard deviation (n − 1 in the denominator); 0 for one value.
    pub sd: f64,
    /// Finite values the mean is over.
    pub n: usize,
}

impl MeanSd {
    /// Mean ± sd of the finite `values` (NaN and infinities are left out; an
    /// empty set gives NaN).
    pub fn of(values: &[f64]) -> Self {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        let n = v.len();
        if n == 0 {
            return Self {
                mean: f64::NAN,
                sd: f64::NAN,
                n,
            };
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n < 2 {
            0.0
        } else {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        Self { mean, sd, n }
    }

    /// `0.862 ± 0.012` (three decimals; the mean alone for one seed, `–`
    /// when undefined).
    pub fn show(&self) -> String {
        self.show_with(3)
    }

    /// As [`show`](Self::show) with `decimals` decimals.
    pub fn show_with(&self, decimals: usize) -> String {
        if !self.mean.is_finite() {
            "–".into()
        } else if self.n < 2 {
            format!("{:.*}", decimals, self.mean)
        } else {
            format!("{:.*} ± {:.*}", decimals, self.mean, decimals, self.sd)
        }
    }
}

/// Rows grouped by a key, in the order each key first appears.
pub fn group_by<'a, K: Ord + Clone, R>(
    rows: &'a [R],
    key: impl Fn(&R) -> K,
) -> Vec<(K, Vec<&'a R>)> {
    let mut order: Vec<K> = Vec::new();
    let mut groups: BTreeMap<K, Vec<&'a R>> = BTreeMap::new();
    for r in rows {
        let k = key(r);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(r);
    }
    order
        .into_iter()
        .map(|k| {
            let g = groups.remove(&k).unwrap_or_default();
            (k, g)
        })
        .collect()
}

/// Mean ± sd of `metric` over a group's rows (one row per seed).
pub fn over<R>(group: &[&R], metric: impl Fn(&R) -> f64) -> MeanSd {
    MeanSd::of(&group.iter().map(|r| metric(r)).collect::<Vec<_>>())
}

/// 95 % Wilson score interval of a share `successes / n` ((0, 1) for n = 0).
pub fn wilson(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054f64;
    let n_f = n as f64;
    let p = successes.min(n) as f64 / n_f;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n_f)) / (1.0 + z2 / n_f);
    let half = z / (1.0 + z2 / n_f) * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// 95 % percentile-bootstrap interval of the mean of `values` (finite ones;
/// `reps` resamples with replacement, seeded). NaN for no values.
pub fn bootstrap_mean(values: &[f64], reps: usize, seed: u64) -> (f64, f64) {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let reps = reps.max(20);
    let mut means: Vec<f64> = (0..reps)
        .map(|_| {
            (0..v.len())
                .map(|_| v[rng.random_range(0..v.len())])
                .sum::<f64>()
                / v.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (reps - 1) as f64).round() as usize).min(reps - 1)];
    (at(0.025), at(0.975))
}

/// The candidate with the highest validation score (the first on ties;
/// NaN scores never win). `None` for no candidates.
pub fn pick_best<C: Clone>(scored: &[(C, f64)]) -> Option<C> {
    let mut best: Option<(&C, f64)> = None;
    for (c, s) in scored {
        if s.is_finite() && best.is_none_or(|(_, b)| *s > b) {
            best = Some((c, *s));
        }
    }
    best.map(|(c, _)| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd_match_hand_computation() {
        // 0.80, 0.86, 0.83: mean 0.83, deviations −0.03, 0.03, 0 → s² = 0.0018/2.
        let m = MeanSd::of(&[0.80, 0.86, 0.83]);
        assert!((m.mean - 0.83).abs() < 1e-12);
        assert!((m.sd - 0.03).abs() < 1e-12, "{}", m.sd);
        assert_eq!(m.n, 3);
        assert_eq!(m.show(), "0.830 ± 0.030");
        // NaN (a one-class holdout) is left out, not averaged as zero.
        let m = MeanSd::of(&[0.9, f64::NAN, 0.7]);
        assert!((m.mean - 0.8).abs() < 1e-12 && m.n == 2);
        assert!((m.sd - 0.02f64.sqrt()).abs() < 1e-12);
        let one = MeanSd::of(&[0.5]);
        assert_eq!((one.sd, one.show()), (0.0, "0.500".to_string()));
        assert_eq!(MeanSd::of(&[]).show(), "–");
    }

    #[test]
    fn seeds_are_consecutive_and_groups_keep_first_appearance_order() {
        assert_eq!(seed_list(1, 3), vec![1, 2, 3]);
        assert_eq!(seed_list(7, 0), vec![7]);
        let rows = [("b", 1.0), ("a", 2.0), ("b", 3.0)];
        let g = group_by(&rows, |r| r.0);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0, "b");
        assert_eq!(over(&g[0].1, |r| r.1).mean, 2.0);
        assert_eq!(over(&g[1].1, |r| r.1).n, 1);
    }

    #[test]
    fn wilson_interval_matches_the_textbook_values() {
        // 8 of 10: 95 % Wilson interval (0.490, 0.943) (Newcombe 1998, table I).
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 5e-4 && (hi - 0.9433).abs() < 5e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 12);
        assert!(lo.abs() < 1e-9, "{lo}");
        assert!((hi - 0.2425).abs() < 5e-4, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn bootstrap_interval_covers_the_mean_and_shrinks_with_n() {
        let few: Vec<f64> = (0..6).map(|i| 0.7 + 0.05 * f64::from(i)).collect();
        let many: Vec<f64> = (0..600).map(|i| 0.7 + 0.05 * f64::from(i % 6)).collect();
        let (a, b) = bootstrap_mean(&few, 2_000, 1);
        let (c, d) = bootstrap_mean(&many, 2_000, 1);
        assert!(a < 0.825 && 0.825 < b, "{a} {b}");
        assert!(c < 0.825 && 0.825 < d, "{c} {d}");
        assert!(d - c < (b - a) / 5.0, "{a} {b} {c} {d}");
        assert_eq!(bootstrap_mean(&few, 500, 3), bootstrap_mean(&few, 500, 3));
        assert!(bootstrap_mean(&[], 100, 1).0.is_nan());
    }

    #[test]
    fn pick_best_takes_the_highest_finite_score() {
        let c = [("a", 0.8), ("b", f64::NAN), ("c", 0.9), ("d", 0.9)];
        assert_eq!(pick_best(&c), Some("c"));
        assert_eq!(pick_best::<&str>(&[]), None);
    }
}
