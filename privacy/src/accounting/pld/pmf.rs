//! Discrete privacy loss distributions on the grid `h·ℤ`, held *exponentially
//! tilted*: composition, truncation with error accounting, and the
//! `ε(δ)` / `δ(ε)` read-outs with a rigorous bound.
//!
//! # Tilting
//!
//! A PLD `p` (the law of the loss `L` under `P`) is stored as
//! `p̃_l = p_l·e^{λl}/Z`, normalised to total mass 1, with `ln Z` kept in
//! [`Pmf::log_norm`]: `p_l = p̃_l·exp(ln Z − λl)`. Tilting commutes with
//! convolution (`(a*b)~ = ã*b̃`, `Z_{a*b} = Z_a Z_b`), so compositions are
//! computed on tilted vectors. With `λ` chosen so the tilted composition is
//! centred near the ε of interest (module `tilt`), the masses that decide
//! `δ(ε)` are of order 1 in the tilted vector instead of order δ, and the
//! FFT's round-off, which is relative to the bulk of the vector, becomes
//! negligible against them: an L1 error `e` of the tilted vector changes
//! `δ(ε') = Σ_{l>ε'} p_l(1 − e^{ε'−l})` by at most `e·exp(ln Z − λε')` for
//! every `ε' ≥ ε`, and `exp(ln Z − λε)` is the Chernoff bound on `δ(ε)`,
//! within a small factor of δ itself at the saddle point.
//!
//! # Error accounting (rigorous)
//!
//! [`Pmf::err`] bounds the L1 distance between the stored tilted vector and
//! the exact composition (in real arithmetic) of the discretised rounds,
//! normalised by the same factors: every FFT adds its a-priori bound (module
//! `fft`), errors of the inputs propagate as `e_a + e_b + e_a·e_b`, and
//! entries cut from the tails are counted as error (so truncation needs no
//! pessimistic move: dropping tilted mass `m` changes δ by at most
//! `m·exp(ln Z − λε)`). Mass at `+∞` (the discretisation's tail beyond its
//! grid) is kept untilted in [`Pmf::inf_mass`]. The read-outs add
//! `err·exp(ln Z − λε)` to δ, so `δ(ε)` reported is an upper bound on the
//! discretised composition, itself an upper bound on the true one.

use super::fft::{Convolver, U};

/// A tilted privacy loss distribution on `h·ℤ` (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pmf {
    /// Grid index of `probs[0]`.
    pub(crate) offset: i64,
    /// Tilted masses `p̃`, total ≈ 1.
    pub(crate) probs: Vec<f64>,
    /// Tilt `λ ≥ 0`.
    pub(crate) lambda: f64,
    /// `ln Z`: untilted `p_l = p̃_l·exp(log_norm − λl)`.
    pub(crate) log_norm: f64,
    /// Untilted mass at `L = +∞`.
    pub(crate) inf_mass: f64,
    /// Bound on the L1 error of `probs`.
    pub(crate) err: f64,
}

fn loss(h: f64, offset: i64, i: usize) -> f64 {
    (offset + i as i64) as f64 * h
}

impl Pmf {
    /// Tilts an untilted distribution (`probs` untilted, total finite mass
    /// `1 − inf_mass`) by `λ`. The relative error of each tilted mass is at
    /// most `(4·(|ln p| + |λl| + |top|) + 6)·u` with `top = max(ln p + λl)`;
    /// [`Pmf::err`] books their mass-weighted sum (×2).
    pub(crate) fn tilted(h: f64, offset: i64, probs: &[f64], inf_mass: f64, lambda: f64) -> Self {
        let logs: Vec<f64> = probs
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                if p > 0.0 {
                    p.ln() + lambda * loss(h, offset, i)
                } else {
                    f64::NEG_INFINITY
                }
            })
            .collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut out: Vec<f64> = logs.iter().map(|&w| (w - top).exp()).collect();
        let s: f64 = out.iter().sum();
        let (log_norm, s) = if s > 0.0 && top.is_finite() {
            (top + s.ln(), s)
        } else {
            (f64::NEG_INFINITY, 1.0)
        };
        out.iter_mut().for_each(|x| *x /= s);
        // Each tilted mass is exp(w − top)/s with w = ln p + λl: the absolute
        // error of the exponent is at most 4u·(|ln p| + |λl| + |top|), the
        // exponential and the division add 2u, so entry i has relative
        // error r_i ≤ (4·(|ln p_i| + |λ l_i| + |top|) + 6)·u. (The error of
        // s itself does not count: log_norm records the s actually divided
        // by.) The L1 error is Σ x_i·r_i over the exact masses x_i; entries
        // far from the tilted bulk have the largest r_i but negligible mass,
        // so weighting by mass is far tighter than charging every entry the
        // largest r_i (a large tilt on a wide support made that bound ~10³×
        // too big). With the computed masses x̂_i = x_i(1 ± r_i):
        // |x̂_i − x_i| ≤ x̂_i·r_i/(1 − r_i) ≤ 2·x̂_i·r_i for r_i ≤ 1/2, and the
        // factor 2 also covers the rounding of the sum itself.
        let top_abs = if top.is_finite() { top.abs() } else { 0.0 };
        let rel = |i: usize, p: f64| {
            (4.0 * (p.ln().abs() + (lambda * loss(h, offset, i)).abs() + top_abs) + 6.0) * U
        };
        let (mut weighted, mut r_max) = (0.0f64, 0.0f64);
        for (i, (&p, &x)) in probs.iter().zip(&out).enumerate() {
            if p > 0.0 {
                let r = rel(i, p);
                r_max = r_max.max(r);
                weighted += x * r;
            }
        }
        let err = if r_max <= 0.5 {
            2.0 * weighted
        } else {
            // No useful relative bound: every entry may be entirely wrong.
            2.0
        };
        Self {
            offset,
            probs: out,
            lambda,
            log_norm,
            inf_mass,
            err,
        }
    }

    /// Untilted mass of entry `i` (`probs[i] ≥ 0` assumed; negative → 0).
    fn untilted(&self, h: f64, i: usize) -> f64 {
        let p = self.probs[i];
        if p <= 0.0 {
            return 0.0;
        }
        (p.ln() + self.log_norm - self.lambda * loss(h, self.offset, i)).exp()
    }

    /// `exp(ln Z − λε)`: what one unit of tilted L1 error can change δ by at
    /// any ε' ≥ ε.
    fn error_weight(&self, eps: f64) -> f64 {
        (self.log_norm - self.lambda * eps).exp()
    }

    /// Cuts each tail while the tilted mass cut stays within `tau` (per
    /// side; callers allow at least the fresh FFT error bound, so entries at
    /// the round-off level go), adding
    /// what is cut to [`Pmf::err`]; sets negative entries (only round-off
    /// produces them, and the exact values are ≥ 0) to 0.
    pub(crate) fn truncate(&mut self, tau: f64) {
        for p in self.probs.iter_mut() {
            if *p < 0.0 {
                *p = 0.0;
            }
        }
        let n = self.probs.len();
        let (mut lo, mut cut) = (0, 0.0);
        while lo + 1 < n && cut + self.probs[lo] <= tau {
            cut += self.probs[lo];
            lo += 1;
        }
        let mut hi = n;
        let lo_cut = cut;
        while hi > lo + 1 && cut - lo_cut + self.probs[hi - 1] <= tau {
            cut += self.probs[hi - 1];
            hi -= 1;
        }
        if lo > 0 || hi < n {
            self.probs.truncate(hi);
            self.probs.drain(..lo);
            self.offset += lo as i64;
            self.err += cut;
        }
    }

    /// Renormalises to total 1 (the factor goes into `log_norm`); refuses
    /// non-finite values and totals far from 1 (a numerical breakdown).
    pub(crate) fn normalise(&mut self) -> Result<(), String> {
        if !self.inf_mass.is_finite() || self.probs.iter().any(|p| !p.is_finite()) {
            return Err("non-finite probability mass".into());
        }
        let total: f64 = self.probs.iter().sum();
        if !(total > 0.5 && total < 2.0) {
            return Err(format!("tilted probability mass {total} is far from 1"));
        }
        self.probs.iter_mut().for_each(|p| *p /= total);
        self.log_norm += total.ln();
        self.err = self.err / total + 2.0 * U;
        Ok(())
    }

    /// `δ(ε)` of the stored distribution without the error term.
    fn delta_estimate(&self, h: f64, eps: f64) -> f64 {
        let mut d = self.inf_mass;
        for i in 0..self.probs.len() {
            let l = loss(h, self.offset, i);
            if l > eps {
                d += self.untilted(h, i) * -(eps - l).exp_m1();
            }
        }
        d
    }

    /// Upper bound on `δ(ε)` (estimate plus the error term), at most 1.
    pub(crate) fn delta_for_epsilon(&self, h: f64, eps: f64) -> f64 {
        (self.delta_estimate(h, eps) + self.err * self.error_weight(eps)).min(1.0)
    }

    /// The part of [`Self::delta_for_epsilon`] that is the error bound.
    pub(crate) fn error_term(&self, eps: f64) -> f64 {
        self.err * self.error_weight(eps)
    }

    /// Smallest `ε ≥ 0` with [`Self::delta_for_epsilon`]`(ε) ≤ delta`; `∞` if
    /// no ε qualifies.
    pub(crate) fn epsilon_for_delta(&self, h: f64, delta: f64) -> f64 {
        if self.inf_mass >= delta {
            return f64::INFINITY;
        }
        let n = self.probs.len();
        let top = loss(h, self.offset, n.saturating_sub(1));
        let bound = |e: f64| self.err * self.error_weight(e);
        // Above the grid only the mass at +∞ and the error term remain.
        if self.inf_mass + bound(top) > delta {
            if self.lambda <= 0.0 || self.err <= 0.0 {
                return f64::INFINITY;
            }
            // inf + err·exp(ln Z − λε) = δ.
            let e = (self.log_norm + self.err.ln() - (delta - self.inf_mass).ln()) / self.lambda;
            return e.max(top).max(0.0);
        }
        let decay = (-h).exp();
        // For ε in [l_{j−1}, l_j): δ̂(ε) = inf + A_j − e^{ε − l_j} C_j with
        // A_j = Σ_{i≥j} p_i and C_j = Σ_{i≥j} p_i e^{l_j − l_i} = p_j + e^{−h} C_{j+1}.
        let (mut a, mut c) = (0.0, 0.0);
        for j in (0..n).rev() {
            let p = self.untilted(h, j);
            a += p;
            c = p + decay * c;
            let lj = loss(h, self.offset, j);
            let left = lj - h;
            let f = |e: f64| self.inf_mass + a - (e - lj).exp() * c + bound(e);
            if f(left) > delta || j == 0 {
                if j == 0 && f(left) <= delta {
                    // δ ≤ target already at the first grid point: the curve
                    // below is 1 − e^ε-like; search down to 0.
                    return self.below_grid(h, delta, lj - h).max(0.0);
                }
                // Bisection on [left, lj]: f is decreasing, f(left) > δ ≥ f(lj).
                let (mut lo, mut hi) = (left, lj);
                for _ in 0..100 {
                    let mid = 0.5 * (lo + hi);
                    if mid <= lo || mid >= hi {
                        break;
                    }
                    if f(mid) > delta {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                return hi.max(0.0);
            }
        }
        0.0
    }

    /// ε below the grid, where every finite mass lies above ε: δ(ε) =
    /// inf + M − e^ε·Σ p_i e^{−l_i} + error term; bisection down to 0.
    fn below_grid(&self, h: f64, delta: f64, upper: f64) -> f64 {
        let f = |e: f64| self.delta_for_epsilon(h, e);
        if upper <= 0.0 || f(0.0) <= delta {
            return 0.0;
        }
        let (mut lo, mut hi) = (0.0, upper);
        for _ in 0..100 {
            let mid = 0.5 * (lo + hi);
            if f(mid) > delta {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }
}

/// Composition of two tilted PLDs with the same tilt (convolution of the
/// finite parts; the `+∞` masses combine as `1 − (1 − a)(1 − b)`), for two
/// independent pairs at once; then truncation to `tau` and renormalisation.
pub(crate) fn compose_pair(
    conv: &mut Convolver,
    x: (&Pmf, &Pmf),
    y: (&Pmf, &Pmf),
    squaring: bool,
    tau: f64,
) -> Result<(Pmf, Pmf), String> {
    let r = conv.convolve_pair(&x.0.probs, &y.0.probs, &x.1.probs, &y.1.probs, squaring);
    let combine = |a: &Pmf, b: &Pmf, probs: Vec<f64>, fft_err: f64| -> Result<Pmf, String> {
        // Entries within the fresh round-off may go as well: cutting them at
        // most doubles this step's error.
        let tau = tau.max(fft_err);
        if a.lambda != b.lambda {
            return Err("composing PLDs with different tilts".into());
        }
        let mut p = Pmf {
            offset: a.offset + b.offset,
            probs,
            lambda: a.lambda,
            log_norm: a.log_norm + b.log_norm,
            inf_mass: 1.0 - (1.0 - a.inf_mass) * (1.0 - b.inf_mass),
            err: a.err + b.err + a.err * b.err + fft_err,
        };
        p.truncate(tau);
        p.normalise()?;
        Ok(p)
    };
    Ok((
        combine(x.0, y.0, r.first, r.first_error)?,
        combine(x.1, y.1, r.second, r.second_error)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untilted(probs: Vec<f64>, offset: i64, inf: f64) -> Pmf {
        Pmf {
            offset,
            probs,
            lambda: 0.0,
            log_norm: 0.0,
            inf_mass: inf,
            err: 0.0,
        }
    }

    #[test]
    fn tilting_keeps_the_untilted_distribution() {
        let h = 0.25;
        let p = [0.1, 0.2, 0.3, 0.2, 0.1, 0.05, 0.05 - 1e-6];
        for lambda in [0.0, 1.0, 7.5] {
            let t = Pmf::tilted(h, -3, &p, 1e-6, lambda);
            for (i, &want) in p.iter().enumerate() {
                let got = t.untilted(h, i);
                assert!(
                    (got / want - 1.0).abs() < 1e-13,
                    "λ={lambda} i={i}: {got} vs {want}"
                );
            }
            let flat = untilted(p.to_vec(), -3, 1e-6);
            for e in [0.0, 0.1, 0.4, 0.7] {
                let (a, b) = (t.delta_estimate(h, e), flat.delta_estimate(h, e));
                assert!((a - b).abs() < 1e-14, "λ={lambda} ε={e}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn tilted_composition_equals_untilted() {
        let h = 0.1;
        let p = [0.05, 0.1, 0.5, 0.2, 0.1, 0.05];
        let mut conv = Convolver::new();
        let flat = untilted(p.to_vec(), -2, 0.0);
        let tilt = Pmf::tilted(h, -2, &p, 0.0, 3.0);
        let (f2, _) = compose_pair(&mut conv, (&flat, &flat), (&flat, &flat), true, 0.0).unwrap();
        let (t2, _) = compose_pair(&mut conv, (&tilt, &tilt), (&tilt, &tilt), true, 0.0).unwrap();
        assert_eq!(f2.offset, t2.offset);
        for i in 0..f2.probs.len() {
            let (a, b) = (f2.untilted(h, i), t2.untilted(h, i));
            assert!((a - b).abs() <= 1e-12 * a.max(1e-300), "{i}: {a} vs {b}");
        }
    }

    #[test]
    fn epsilon_inverts_delta_and_includes_the_error() {
        let p = untilted(vec![0.1, 0.2, 0.3, 0.2, 0.1, 0.05, 0.05 - 1e-6], -3, 1e-6);
        let h = 0.25;
        for &d in &[0.3, 0.1, 0.01, 1e-4, 2e-6] {
            let e = p.epsilon_for_delta(h, d);
            assert!(
                (p.delta_for_epsilon(h, e) - d).abs() < 1e-12 || e == 0.0,
                "δ={d} ε={e}"
            );
            assert!(p.delta_for_epsilon(h, e * 0.999 - 1e-9) > d || e == 0.0);
        }
        assert_eq!(p.epsilon_for_delta(h, 1e-7), f64::INFINITY);
        let with_err = Pmf {
            err: 1e-3,
            ..p.clone()
        };
        assert!(with_err.epsilon_for_delta(h, 0.01) > p.epsilon_for_delta(h, 0.01));
    }

    #[test]
    fn truncation_counts_what_it_cuts() {
        let mut p = untilted(vec![1e-20, 1e-18, 0.5, 0.5 - 2e-18, 1e-18, -1e-19], -2, 0.0);
        p.truncate(1e-15);
        assert_eq!(p.offset, 0);
        assert_eq!(p.probs.len(), 2);
        assert!(p.err >= 2e-18 && p.err < 1e-17, "{}", p.err);
    }
}
