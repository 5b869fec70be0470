//! Choice of the exponential tilt `λ` (module `pmf`): the Chernoff-optimal
//! tilt for the question asked, from a coarse discretisation of each round.
//!
//! The composed loss has log-MGF `K(λ) = Σ_g T_g·K_g(λ)`. For a target δ
//! the tilt minimises the Chernoff estimate `(K(λ) + ln(1/δ))/λ` of ε; for a
//! target ε it minimises `K(λ) − λε`. Either way the tilted composition is
//! centred near the ε that decides the answer, which is all the tilt is for:
//! any `λ ≥ 0` gives a valid bound, a good one a tight error term.

use super::subsampled_gaussian::Base;

/// What an accounting call asks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// ε at this δ.
    Delta(f64),
    /// δ at this ε.
    Epsilon(f64),
}

/// Smallest tilt searched.
const LAMBDA_MIN: f64 = 1e-4;
/// Largest tilt searched.
pub(crate) const LAMBDA_MAX: f64 = 1e6;

/// The log-MGF `K(λ)` of a composition in one direction, from each group's
/// coarse base (with its grid interval) and round count.
pub(crate) struct LogMgf {
    /// Per group: `(ln p_i, l_i)` of every positive mass, and the count.
    groups: Vec<(Vec<(f64, f64)>, f64)>,
}

impl LogMgf {
    pub(crate) fn new(groups: &[(&Base, f64, u64)]) -> Self {
        let groups = groups
            .iter()
            .map(|(b, h, n)| {
                let v = b
                    .probs
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| **p > 0.0)
                    .map(|(i, p)| (p.ln(), (b.offset + i as i64) as f64 * h))
                    .collect();
                (v, *n as f64)
            })
            .collect();
        Self { groups }
    }

    /// `K(λ) = Σ_g T_g ln Σ_i p_i e^{λ l_i}`.
    pub(crate) fn at(&self, lambda: f64) -> f64 {
        self.groups
            .iter()
            .map(|(v, n)| {
                let top = v
                    .iter()
                    .map(|(lp, l)| lp + lambda * l)
                    .fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = v.iter().map(|(lp, l)| (lp + lambda * l - top).exp()).sum();
                n * (top + s.ln())
            })
            .sum()
    }

    /// `K(λ) − λε`: the logarithm of the weight `exp(ln Z − λε)` a unit of
    /// tilted error has at ε (module `pmf`), up to the discretisation.
    pub(crate) fn log_weight(&self, lambda: f64, eps: f64) -> f64 {
        self.at(lambda) - lambda * eps
    }

    /// The tilt for `target`.
    pub(crate) fn choose(&self, target: Target) -> f64 {
        let k = |lambda: f64| self.at(lambda);
        let objective = |ln_lambda: f64| -> f64 {
            let lambda = ln_lambda.exp();
            let v = match target {
                Target::Delta(delta) => (k(lambda) - delta.ln()) / lambda,
                Target::Epsilon(eps) => k(lambda) - lambda * eps,
            };
            if v.is_nan() { f64::INFINITY } else { v }
        };
        // Golden-section search on ln λ (the objectives are unimodal: convex K).
        let (mut a, mut b) = (LAMBDA_MIN.ln(), LAMBDA_MAX.ln());
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
        let (mut fc, mut fd) = (objective(c), objective(d));
        // 48 steps shrink the bracket (23 wide in ln λ) to 2e-9.
        for _ in 0..48 {
            if fc <= fd {
                b = d;
                d = c;
                fd = fc;
                c = b - g * (b - a);
                fc = objective(c);
            } else {
                a = c;
                c = d;
                fc = fd;
                d = a + g * (b - a);
                fd = objective(d);
            }
        }
        (0.5 * (a + b)).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_tilt_is_the_saddle_point() {
        // One Gaussian loss N(m, s²) on a fine grid: K(λ) = λm + λ²s²/2, so for
        // a target ε the optimum is λ = (ε − m)/s².
        let (m, s, h) = (0.5, 1.0, 1e-3);
        let probs: Vec<f64> = (-8000..=20000)
            .map(|i| {
                let x = (i as f64 * h - m) / s;
                (-x * x / 2.0).exp() * h / (s * (2.0 * std::f64::consts::PI).sqrt())
            })
            .collect();
        let b = Base {
            offset: -8000,
            probs,
            inf_mass: 0.0,
        };
        let k = LogMgf::new(&[(&b, h, 1)]);
        let l = k.choose(Target::Epsilon(3.5));
        assert!((l - 3.0).abs() < 1e-2, "{l}");
        // For δ: ε* = m + s·√(2 ln 1/δ), λ = √(2 ln 1/δ)/s.
        let l = k.choose(Target::Delta(1e-10));
        let want = (2.0 * 1e10f64.ln()).sqrt();
        assert!((l / want - 1.0).abs() < 1e-2, "{l} vs {want}");
    }
}
