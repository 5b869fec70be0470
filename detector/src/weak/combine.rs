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

/// [`with_rules`] from the model's logit itself (no clamping of `logit`).
pub fn logit_with_rules(logit: f32, rules_score: f64, gamma: f32) -> f32 {
    let g = if gamma.is_finite() {
        gamma.max(0.0)
    } else {
        0.0
    };
    let s = if rules_score.is_finite() {
        rules_score as f32
    } else {
        0.0
    };
    logit + g * s
}

#[cfg(test)]
mod tests {
    use super::*;

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
