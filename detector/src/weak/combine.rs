//! The model's score combined with the rules' own score, inside the tenant.
//!
//! A model trained on silver labels learns the rules' cases from features
//! only; the rules themselves see facts the features summarise (the exact
//! user agent, honeypot paths, imported outcomes). At scoring time a tenant
//! has both, so [`with_rules`] adds them on the log-odds scale, a product
//! of experts: `logit(p) + γ·s`, with `p` the model's abuse probability and
//! `s` the labeller's vote sum ([`super::WeakLabel::score`]). With γ = 0 it
//! ranks exactly as the model; with a large γ it ranks as the rules and the
//! model breaks the rules' ties (most sessions have no vote at all).
//!
//! [`rules_first`] is the other end of that scale, in rank space: the rules'
//! vote sum first, and within a vote sum (most sessions: no vote at all) a
//! tie-break in [0, 1] from the global model's and the local anomaly score's
//! **percentiles among the tenant's own sessions** ([`Percentiles`],
//! [`tie_break`]). With the rules' default weights (steps of 0.5) and
//! τ < 0.5 it is strictly lexicographic: the model and the anomaly score
//! only order sessions the rules cannot tell apart, so where the tie-break
//! is better than chance the tenant ranks strictly better than its rules
//! alone. Measured in experiment 7 (`experiments/results` section 7) and
//! centrally by `experiments/scripts/weak_methods.py`.
//!
//! Nothing here leaves the tenant: it changes how the tenant ranks its own
//! sessions, not what it sends.

/// Probabilities are clamped to `[P_FLOOR, 1 − P_FLOOR]` before the logit.
pub const P_FLOOR: f32 = 1e-6;

/// `ln(p / (1 − p))`, with `p` clamped to `[P_FLOOR, 1 − P_FLOOR]` (NaN → 0).
pub fn logit(p: f32) -> f32 {
    if p.is_nan() {
        return 0.0;
    }
    let p = p.clamp(P_FLOOR, 1.0 - P_FLOOR);
    (p / (1.0 - p)).ln()
}

/// `logit(p) + γ·rules_score` (γ ≥ 0; a negative or non-finite γ counts as 0,
/// a non-finite rules score as no vote).
pub fn with_rules(probability: f32, rules_score: f64, gamma: f32) -> f32 {
    logit_with_rules(logit(probability), rules_score, gamma)
}

/// `x` clamped to `[lo, hi]`, or `otherwise` when `x` is not finite.
fn clamp_finite(x: f32, lo: f32, hi: f32, otherwise: f32) -> f32 {
    if x.is_finite() {
        x.clamp(lo, hi)
    } else {
        otherwise
    }
}

/// A rules' vote sum as f32; a non-finite sum counts as no vote (0).
fn vote_sum(rules_score: f64) -> f32 {
    if rules_score.is_finite() {
        rules_score as f32
    } else {
        0.0
    }
}

/// [`with_rules`] from the model's logit itself (no clamping of `logit`).
pub fn logit_with_rules(logit: f32, rules_score: f64, gamma: f32) -> f32 {
    logit + clamp_finite(gamma, 0.0, f32::INFINITY, 0.0) * vote_sum(rules_score)
}

/// Scores' ranks within a reference set (a tenant's own sessions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Percentiles {
    sorted: Vec<f32>,
}

impl Percentiles {
    /// The reference scores (non-finite values are dropped).
    pub fn new(reference: &[f32]) -> Self {
        let mut sorted: Vec<f32> = reference
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        sorted.sort_by(f32::total_cmp);
        Self { sorted }
    }

    /// Mid-rank of `x` among the reference, in [0, 1]: the share strictly
    /// below plus half the share equal. 0.5 with no reference or a
    /// non-finite `x` (no information either way).
    pub fn of(&self, x: f32) -> f32 {
        if self.sorted.is_empty() || !x.is_finite() {
            return 0.5;
        }
        let below = self.sorted.partition_point(|&s| s < x);
        let at_or_below = self.sorted.partition_point(|&s| s <= x);
        (below as f32 + 0.5 * (at_or_below - below) as f32) / self.sorted.len() as f32
    }

    /// Mid-ranks of every value of `xs`.
    pub fn all(&self, xs: &[f32]) -> Vec<f32> {
        xs.iter().map(|&x| self.of(x)).collect()
    }
}

/// `(1 − β)·model_percentile + β·anomaly_percentile`, β clamped to [0, 1]
/// (non-finite: 0.5); both percentiles clamped to [0, 1].
pub fn tie_break(model_percentile: f32, anomaly_percentile: f32, beta: f32) -> f32 {
    let b = clamp_finite(beta, 0.0, 1.0, 0.5);
    let c = |x: f32| clamp_finite(x, 0.0, 1.0, 0.5);
    (1.0 - b) * c(model_percentile) + b * c(anomaly_percentile)
}

/// `rules_score + τ·tie_break`: the rules' vote sum first, the tie-break
/// ([`tie_break`], in [0, 1]) within it. τ is clamped to [0, 100] (non-finite:
/// 0, the rules alone); a non-finite rules score counts as no vote.
pub fn rules_first(rules_score: f64, tie_break: f32, tau: f32) -> f32 {
    vote_sum(rules_score)
        + clamp_finite(tau, 0.0, 100.0, 0.0) * clamp_finite(tie_break, 0.0, 1.0, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::roc_auc;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn percentiles_are_mid_ranks_in_the_reference() {
        let p = Percentiles::new(&[1.0, 2.0, 2.0, 3.0, f32::NAN]);
        assert_eq!(p.of(0.0), 0.0);
        assert_eq!(p.of(1.0), 0.125);
        assert_eq!(p.of(2.0), 0.5);
        assert_eq!(p.of(9.0), 1.0);
        assert_eq!(p.of(f32::NAN), 0.5);
        assert_eq!(Percentiles::new(&[]).of(1.0), 0.5);
        assert_eq!(p.all(&[0.0, 9.0]), vec![0.0, 1.0]);
    }

    #[test]
    fn rules_first_orders_by_rules_then_by_the_tie_break() {
        // (rules score, tie break)
        let rows = [
            (0.0f64, 0.9f32),
            (1.0, 0.1),
            (0.0, 0.2),
            (-0.5, 1.0),
            (1.0, 0.8),
        ];
        let mut ix: Vec<usize> = (0..rows.len()).collect();
        ix.sort_by(|&a, &b| {
            rules_first(rows[b].0, rows[b].1, 0.4)
                .total_cmp(&rules_first(rows[a].0, rows[a].1, 0.4))
        });
        assert_eq!(ix, vec![4, 1, 0, 2, 3]);
        assert_eq!(rules_first(2.0, 0.7, f32::NAN), 2.0);
        assert_eq!(rules_first(f64::NAN, 0.5, 1.0), 0.5);
        assert_eq!(tie_break(0.2, 0.6, 0.5), 0.4);
        assert_eq!(tie_break(0.2, 0.6, 0.0), 0.2);
        assert_eq!(tie_break(0.2, 0.6, 7.0), 0.6);
    }

    /// Rules that vote on a third of the sessions and tie on the rest: an
    /// informative tie-break lifts the AUC strictly above the rules', an
    /// uninformative one leaves it where it was (up to sampling noise), and a
    /// small τ never reorders sessions the rules separate.
    #[test]
    fn an_informative_tie_break_beats_the_rules_and_noise_does_not() {
        let mut rng = ChaCha8Rng::seed_from_u64(20);
        let n = 4000;
        let (mut rules, mut good, mut noise, mut labels) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let bot = rng.random_bool(0.3);
            let vote = rng.random_bool(if bot { 0.5 } else { 0.1 });
            rules.push(if vote { 1.0 } else { 0.0 });
            // The model sees the bots the rules miss (shifted by 1σ).
            good.push(rng.random::<f32>() + if bot { 0.5 } else { 0.0 });
            noise.push(rng.random::<f32>());
            labels.push(bot);
        }
        // Every session's rules-first score, `tb` as percentiles among all.
        let scores = |tb: &[f32], tau: f32| -> Vec<f32> {
            let p = Percentiles::new(tb);
            rules
                .iter()
                .zip(tb)
                .map(|(&r, &t)| rules_first(r, p.of(t), tau))
                .collect()
        };
        let auc = |tb: &[f32], tau: f32| roc_auc(&scores(tb, tau), &labels).unwrap();
        let rules_only: Vec<f32> = rules.iter().map(|&r| r as f32).collect();
        let base = roc_auc(&rules_only, &labels).unwrap();
        let informed = auc(&good, 0.4);
        let noisy = auc(&noise, 0.4);
        assert!(informed > base + 0.1, "{informed} vs rules {base}");
        assert!((noisy - base).abs() < 0.02, "{noisy} vs rules {base}");
        // τ < 1 keeps every voted session above every unvoted one.
        let s = scores(&good, 0.4);
        let lowest_voted = (0..n)
            .filter(|&i| rules[i] > 0.0)
            .map(|i| s[i])
            .fold(f32::INFINITY, f32::min);
        let highest_unvoted = (0..n)
            .filter(|&i| rules[i] == 0.0)
            .map(|i| s[i])
            .fold(f32::NEG_INFINITY, f32::max);
        assert!(lowest_voted > highest_unvoted);
    }

    #[test]
    fn gamma_zero_keeps_the_models_order_and_large_gamma_the_rules_order() {
        // (p, rules score)
        let rows = [(0.9f32, 0.0f64), (0.2, 3.0), (0.6, 0.0), (0.1, -1.0)];
        let order = |g: f32| {
            let mut ix: Vec<usize> = (0..rows.len()).collect();
            ix.sort_by(|&a, &b| {
                with_rules(rows[b].0, rows[b].1, g).total_cmp(&with_rules(rows[a].0, rows[a].1, g))
            });
            ix
        };
        assert_eq!(order(0.0), vec![0, 2, 1, 3], "the model alone");
        // Rules first (3 > 0 > −1); the model breaks the tie at 0.
        assert_eq!(order(100.0), vec![1, 0, 2, 3]);
    }

    #[test]
    fn logit_is_safe_at_the_edges() {
        assert_eq!(logit(0.5), 0.0);
        assert!(logit(1.0).is_finite() && logit(0.0).is_finite());
        assert!(logit(1.0) > 13.0 && logit(0.0) < -13.0);
        assert_eq!(logit(f32::NAN), 0.0);
        assert_eq!(with_rules(0.5, f64::NAN, 1.0), 0.0);
        assert_eq!(with_rules(0.5, 2.0, -1.0), 0.0);
        assert_eq!(with_rules(0.5, 2.0, f32::INFINITY), 0.0);
    }
}
