//! The privacy loss of one Poisson-subsampled Gaussian round, in both
//! directions of the add/remove-one relation, and its connect-the-dots
//! discretisation.
//!
//! With sensitivity 1 and noise `σ = z`, let `μ₀ = N(0, σ²)`, `μ₁ = N(1, σ²)`
//! and `M = (1 − q)μ₀ + qμ₁`.
//! - **remove** (the neighbour lacks the client): pair `(M, μ₀)`. Its hockey
//!   stick is `δ_R(ε) = q·δ_G(ε')` with `ε' = ln(1 + (e^ε − 1)/q)` for
//!   `ε > ln(1 − q)`, and `1 − e^ε` below (the loss is at least `ln(1 − q)`).
//! - **add**: pair `(μ₀, M)`: `δ_A(ε) = q·e^{ε−ε''}·δ_G(ε'')` with
//!   `ε'' = −ln(1 + (e^{−ε} − 1)/q)` for `ε < −ln(1 − q)`, 0 above (the loss
//!   is at most `−ln(1 − q)`).
//!
//! `δ_G` is the Gaussian curve with `μ = 1/z` ([`gaussian_delta`]). Both are
//! the standard tight expressions (Balle, Barthe & Gaboardi 2018; Zhu, Dong &
//! Wang 2022, "Optimal accounting of differential privacy via characteristic
//! function").
//!
//! # Connect the dots (Doroshenko, Ghazi, Kamath, Kumar & Manurangsi 2022)
//!
//! On grid points `ε_0 < … < ε_{n−1}` (spacing `h`), the discrete PLD with
//! `p_∞ = δ(ε_{n−1})` and masses `p_k = e^{ε_k}(s_k − s_{k−1})` — where `s_k`
//! is the slope of the chord of `δ` as a function of `y = e^ε` between
//! `y_k` and `y_{k+1}`, `s_{−1}` the chord from `(0, 1)` and `s_{n−1} = 0` —
//! has exactly the true `δ` at every grid point and the chord in between.
//! Since `δ` is convex in `y`, the chord lies above the true curve: the
//! discrete pair *dominates* the true one for every `ε`, so every ε computed
//! from it (and from its compositions) is an upper bound. The grid runs from a
//! point below which at most [`TAIL`] of the loss's mass lies (the region
//! below is absorbed by the first chord, still pessimistically) to a point
//! whose `δ` is at most [`TAIL`] (which becomes `p_∞`).

use crate::special::{gaussian_delta, log_add, norm_isf};

/// Largest tail mass (lower side) and `δ` (upper side) left outside the grid
/// of one round's loss; the accountant lowers it to `1e-19/T` for `T` rounds
/// so that the `+∞` mass it creates stays below 1e-19 in total (1e-4 of the
/// smallest δ the accountant answers for).
pub(crate) const TAIL: f64 = 1e-20;

/// One round's discretised, untilted PLD: mass `probs[i]` at loss
/// `(offset + i)·h`, and `inf_mass` at `+∞`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Base {
    pub(crate) offset: i64,
    pub(crate) probs: Vec<f64>,
    pub(crate) inf_mass: f64,
}

impl Base {
    /// Mean and variance of the finite part (normalised by its mass).
    pub(crate) fn mean_var(&self, h: f64) -> (f64, f64) {
        let mass: f64 = self.probs.iter().sum();
        if mass <= 0.0 {
            return (0.0, 0.0);
        }
        let at = |i: usize| (self.offset + i as i64) as f64 * h;
        let mean = self
            .probs
            .iter()
            .enumerate()
            .map(|(i, p)| p * at(i))
            .sum::<f64>()
            / mass;
        let var = self
            .probs
            .iter()
            .enumerate()
            .map(|(i, p)| p * (at(i) - mean).powi(2))
            .sum::<f64>()
            / mass;
        (mean, var)
    }

    /// `δ(ε)` of this discrete distribution (tests).
    #[cfg(test)]
    pub(crate) fn delta_for_epsilon(&self, h: f64, eps: f64) -> f64 {
        let mut d = self.inf_mass;
        for (i, &p) in self.probs.iter().enumerate() {
            let l = (self.offset + i as i64) as f64 * h;
            if l > eps {
                d += p * -(eps - l).exp_m1();
            }
        }
        d.min(1.0)
    }
}

/// Which neighbouring direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// `(M, μ₀)`: the real dataset contains the client.
    Remove,
    /// `(μ₀, M)`: the real dataset lacks the client.
    Add,
}

/// The exact hockey-stick curve `δ(ε)` of one round in one direction.
pub(crate) fn true_delta(q: f64, z: f64, dir: Direction, eps: f64) -> f64 {
    let mu = 1.0 / z;
    if q >= 1.0 {
        return gaussian_delta(mu, eps);
    }
    let ln_q = q.ln();
    let one_m_q = 1.0 - q;
    let d = match dir {
        Direction::Remove => {
            // ε' = ln((e^ε − (1 − q))/q), defined when ε > ln(1 − q).
            let e1 = if eps > 1.0 {
                // Overflow-free: ε − ln q + ln(1 − (1 − q)e^{−ε}).
                eps - ln_q + (-one_m_q * (-eps).exp()).ln_1p()
            } else {
                // e^ε − (1 − q) without cancellation in either regime.
                let u = if eps > -0.5 {
                    eps.exp_m1() + q
                } else {
                    eps.exp() - one_m_q
                };
                if u <= 0.0 {
                    return (-eps.exp_m1()).clamp(0.0, 1.0);
                }
                u.ln() - ln_q
            };
            q * gaussian_delta(mu, e1)
        }
        Direction::Add => {
            // ε'' = ln q − ln(e^{−ε} − (1 − q)), defined when ε < −ln(1 − q);
            // the factor q·e^{ε − ε''} is e^ε·(e^{−ε} − (1 − q)).
            let (e2, ln_factor) = if eps < -1.0 {
                // Overflow-free: ln(e^{−ε} − (1 − q)) = −ε + ln(1 − (1 − q)e^ε).
                let l = (-one_m_q * eps.exp()).ln_1p();
                (ln_q + eps - l, l)
            } else {
                let v = if eps < 0.5 {
                    (-eps).exp_m1() + q
                } else {
                    (-eps).exp() - one_m_q
                };
                if v <= 0.0 {
                    return 0.0;
                }
                (ln_q - v.ln(), eps + v.ln())
            };
            ln_factor.exp() * gaussian_delta(mu, e2)
        }
    };
    // NaN propagates (the caller refuses it); only the range is enforced.
    if d.is_nan() { d } else { d.clamp(0.0, 1.0) }
}

impl Direction {
    /// The other direction: the pair with `P` and `Q` swapped.
    pub(crate) fn reversed(self) -> Self {
        match self {
            Direction::Remove => Direction::Add,
            Direction::Add => Direction::Remove,
        }
    }
}

/// `γ(ε) = δ(ε) − (1 − e^ε) = e^ε Q(L ≤ ε) − P(L ≤ ε) = e^ε δ_{Q‖P}(−ε)`:
/// the same curve without its `1 − e^ε` part, accurate for `ε < 0` where
/// `δ(ε)` is within rounding of `1 − e^ε`. The reversed pair of remove is add.
pub(crate) fn true_gamma(q: f64, z: f64, dir: Direction, eps: f64) -> f64 {
    (eps + true_delta(q, z, dir.reversed(), -eps).ln()).exp()
}

/// Range `[lo, hi]` (in loss units) outside which one round's loss is
/// negligible (see the module docs and [`TAIL`]).
pub(crate) fn loss_range(q: f64, z: f64, dir: Direction, tail: f64) -> (f64, f64) {
    let mu = 1.0 / z;
    let z_tail = norm_isf(tail);
    if q >= 1.0 {
        // L ~ N(μ²/2, μ²) in both directions.
        return (mu * mu / 2.0 - mu * z_tail, mu * mu / 2.0 + mu * z_tail);
    }
    let ln_1mq = (-q).ln_1p();
    match dir {
        Direction::Remove => {
            // δ_R(ε) = q δ_G(ε') ≤ q Φ̄(ε'/μ − μ/2) ≤ tail at ε'/μ − μ/2 = Φ̄⁻¹(tail/q).
            let e1 = mu * norm_isf(tail / q) + mu * mu / 2.0;
            (ln_1mq, log_add(ln_1mq, q.ln() + e1))
        }
        Direction::Add => {
            // L_A(x) = −ln(1 − q + q e^{(2x−1)/(2z²)}) decreases in x ~ N(0, z²).
            let x = z * z_tail;
            let lo = -log_add(ln_1mq, q.ln() + (2.0 * x - 1.0) / (2.0 * z * z));
            (lo, -ln_1mq)
        }
    }
}

/// Connect-the-dots discretisation of one round on the grid `h·ℤ` (tails
/// beyond `tail` left out, see [`TAIL`]); `None` when the loss range is not
/// finite, needs more than `max_points` points, or the curve is not finite.
pub(crate) fn discretise(
    q: f64,
    z: f64,
    dir: Direction,
    h: f64,
    tail: f64,
    max_points: f64,
) -> Option<Base> {
    let (lo, hi) = loss_range(q, z, dir, tail);
    if !(lo.is_finite() && hi.is_finite() && h > 0.0 && (hi - lo) / h < max_points) {
        return None;
    }
    let (lo_h, hi_h) = ((lo / h).floor(), (hi / h).ceil());
    if lo_h.abs() > 1e15 || hi_h.abs() > 1e15 {
        return None;
    }
    let i_lo = lo_h as i64;
    let i_hi = (hi_h as i64).max(i_lo + 1);
    let grid: Vec<f64> = (i_lo..=i_hi).map(|i| i as f64 * h).collect();
    // Both forms of the curve: δ for ε ≥ 0, γ = δ − (1 − e^ε) for ε < 0. The
    // mass formulas are linear in the curve and the `1 − e^ε` part contributes
    // exactly nothing to them, so each point may use the form that is
    // accurate around it (δ is within rounding of 1 − e^ε far below 0, and γ
    // grows like e^ε far above 0).
    let deltas: Vec<f64> = grid.iter().map(|&e| true_delta(q, z, dir, e)).collect();
    let gammas: Vec<f64> = grid
        .iter()
        .map(|&e| if e < h { true_gamma(q, z, dir, e) } else { 0.0 })
        .collect();
    if deltas.iter().chain(&gammas).any(|v| !v.is_finite()) {
        return None;
    }
    let n = grid.len();
    // 1/(e^h − 1) and e^h/(e^h − 1) = 1/(1 − e^{−h}), overflow-free for any h.
    let em1 = h.exp_m1();
    let one_m_emh = -(-h).exp_m1();
    let mut probs = Vec::with_capacity(n);
    for k in 0..n {
        let low = grid[k] < 0.0;
        let c = if low { &gammas } else { &deltas };
        // (c_k − c_{k+1})/(e^h − 1); past the last point the curve is flat for δ
        // (no mass above) and rises like e^ε for γ = δ − 1 + e^ε.
        let drop_next = if k + 1 < n {
            (c[k] - c[k + 1]) / em1
        } else if low {
            -grid[k].exp()
        } else {
            0.0
        };
        let p = if k == 0 {
            // Chord from (y, δ) = (0, 1): p_0 = (1 − δ_0) − (δ_0 − δ_1)/(e^h − 1),
            // i.e. p_0 = −γ_0 − (γ_0 − γ_1)/(e^h − 1) in the γ form.
            if low {
                -c[0] - drop_next
            } else {
                (1.0 - c[0]) - drop_next
            }
        } else {
            // p_k = [e^h (δ_{k−1} − δ_k) − (δ_k − δ_{k+1})]/(e^h − 1), same in γ.
            let prev = if low || grid[k - 1] >= 0.0 {
                c[k - 1]
            } else {
                // Previous point is in the other form: convert γ → δ.
                gammas[k - 1] + 1.0 - grid[k - 1].exp()
            };
            (prev - c[k]) / one_m_emh - drop_next
        };
        if !p.is_finite() {
            return None;
        }
        probs.push(p.max(0.0));
    }
    // The construction satisfies Σ p_k + p_∞ = 1 exactly (the masses
    // telescope); round-off in the curve leaves it off by ~1e-13, which T-fold
    // composition would multiply by T. Restore the identity on the largest
    // mass (a relative change of ~1e-13 there).
    let inf_mass = deltas[n - 1];
    let total: f64 = probs.iter().sum::<f64>() + inf_mass;
    if let Some(max) = probs.iter_mut().max_by(|a, b| a.total_cmp(b)) {
        *max = (*max + (1.0 - total)).max(0.0);
    }
    Some(Base {
        offset: i_lo,
        probs,
        inf_mass,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_continuous_at_their_kinks_and_monotone() {
        for &(q, z) in &[(0.01, 4.0), (0.1, 0.5), (0.001, 1.0), (1.0, 1.0)] {
            for dir in [Direction::Remove, Direction::Add] {
                let mut prev = 1.0;
                for i in -400..400 {
                    let e = i as f64 * 0.01;
                    let d = true_delta(q, z, dir, e);
                    assert!(d <= prev + 1e-15, "q={q} z={z} {dir:?} ε={e}: {d} > {prev}");
                    assert!((0.0..=1.0).contains(&d));
                    prev = d;
                }
            }
            if q < 1.0 {
                let k = (-q).ln_1p();
                let (a, b) = (
                    true_delta(q, z, Direction::Remove, k - 1e-9),
                    true_delta(q, z, Direction::Remove, k + 1e-9),
                );
                assert!((a - b).abs() < 1e-8, "{a} {b}");
            }
        }
    }

    #[test]
    fn add_curve_is_never_above_remove_at_positive_epsilon_for_small_q() {
        // Known fact for the subsampled Gaussian: the remove direction dominates at ε ≥ 0.
        for &(q, z) in &[(0.01, 1.0), (0.05, 0.8)] {
            for i in 0..50 {
                let e = i as f64 * 0.1;
                assert!(
                    true_delta(q, z, Direction::Add, e)
                        <= true_delta(q, z, Direction::Remove, e) + 1e-15
                );
            }
        }
    }

    #[test]
    fn discretisation_is_a_distribution_that_dominates_the_curve() {
        for &(q, z, h) in &[(0.01, 4.0, 1e-4), (0.1, 0.5, 1e-2), (1.0, 2.0, 1e-3)] {
            for dir in [Direction::Remove, Direction::Add] {
                let p = discretise(q, z, dir, h, TAIL, 1e7).unwrap();
                let mass: f64 = p.probs.iter().sum::<f64>() + p.inf_mass;
                assert!(
                    (mass - 1.0).abs() < 1e-9,
                    "q={q} z={z} {dir:?}: mass {mass}"
                );
                // Q-mass of the discrete pair is at most 1.
                let qmass: f64 = p
                    .probs
                    .iter()
                    .enumerate()
                    .map(|(i, pi)| pi * (-((p.offset + i as i64) as f64) * h).exp())
                    .sum();
                assert!(
                    qmass <= 1.0 + 1e-9,
                    "q={q} z={z} {dir:?} offset {} d0 {:e}: Q mass {qmass}",
                    p.offset,
                    p.probs[0]
                );
                for i in 0..60 {
                    let e = i as f64 * 0.037 + 0.001;
                    let t = true_delta(q, z, dir, e);
                    let d = p.delta_for_epsilon(h, e);
                    assert!(d >= t - 1e-12, "q={q} z={z} {dir:?} ε={e}: {d} < {t}");
                    // Exactly the chord (in y = e^ε) between the neighbouring grid points.
                    let (e0, e1) = ((e / h).floor() * h, (e / h).floor() * h + h);
                    let (d0, d1) = (true_delta(q, z, dir, e0), true_delta(q, z, dir, e1));
                    let w = (e.exp() - e0.exp()) / (e1.exp() - e0.exp());
                    let chord = d0 + w * (d1 - d0);
                    assert!(
                        (d - chord).abs() <= 1e-9 * chord + 1e-15,
                        "q={q} z={z} {dir:?} ε={e}: {d} vs chord {chord}"
                    );
                }
            }
        }
    }
}
