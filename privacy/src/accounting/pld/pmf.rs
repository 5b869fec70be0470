//! Discrete privacy loss distributions on the grid `h·ℤ`: FFT composition,
//! pessimistic tail truncation, and the `ε(δ)` / `δ(ε)` read-outs.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// A privacy loss distribution (the law of `L = ln(dP/dQ)` under `P`),
/// discretised on `h·ℤ`: mass `probs[i]` at loss `(offset + i)·h`, plus mass
/// `inf_mass` at `L = +∞` (outputs that identify the pair outright).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pmf {
    pub(crate) offset: i64,
    pub(crate) probs: Vec<f64>,
    pub(crate) inf_mass: f64,
    /// Estimate of the FFT round-off in `probs`: the sum over the
    /// convolutions that built it of the L1 size of the round-off each
    /// introduced (an L1 quantity, so it also sizes the round-off in any
    /// `δ(ε)` read from them). A squaring counts its input's round-off once:
    /// round-off is zero-mean noise that later convolutions average rather
    /// than add coherently, so this is an estimate, not a worst-case bound.
    pub(crate) roundoff: f64,
}

impl Pmf {
    /// Pessimistic truncation of both tails: the lower tail's mass moves *up*
    /// to the first kept point (losses only grow, so δ(ε) only grows), the
    /// upper tail's mass goes to `+∞`. A tail is cut while its genuine mass
    /// stays within `tau`; entries at the FFT round-off level `ν` (four times
    /// the largest negative entry, which only round-off produces) are cut
    /// regardless — their mass is still moved pessimistically, never dropped.
    /// Negative entries are set to 0 first, and `ν·len` is added to
    /// [`Pmf::roundoff`].
    pub(crate) fn truncate(&mut self, tau: f64) {
        if self.probs.iter().any(|p| !p.is_finite()) {
            // Leave it for `check` to refuse; never zero a NaN silently.
            return;
        }
        let mut noise: f64 = 0.0;
        for p in self.probs.iter_mut() {
            if *p < 0.0 {
                noise = noise.max(-*p);
                *p = 0.0;
            }
        }
        let noise = 4.0 * noise;
        let n = self.probs.len();
        self.roundoff += noise * n as f64;
        let mut lo = 0;
        let (mut lo_mass, mut lo_genuine) = (0.0, 0.0);
        while lo + 1 < n {
            let p = self.probs[lo];
            let genuine = if p <= noise { 0.0 } else { p };
            if lo_genuine + genuine > tau {
                break;
            }
            lo_genuine += genuine;
            lo_mass += p;
            lo += 1;
        }
        let mut hi = n;
        let (mut hi_mass, mut hi_genuine) = (0.0, 0.0);
        while hi > lo + 1 {
            let p = self.probs[hi - 1];
            let genuine = if p <= noise { 0.0 } else { p };
            if hi_genuine + genuine > tau {
                break;
            }
            hi_genuine += genuine;
            hi_mass += p;
            hi -= 1;
        }
        if lo > 0 || hi < n {
            self.probs.truncate(hi);
            self.probs.drain(..lo);
            self.offset += lo as i64;
            if let Some(first) = self.probs.first_mut() {
                *first += lo_mass;
            }
            self.inf_mass += hi_mass;
        }
    }

    /// `δ(ε) = P(L = ∞) + Σ_{l > ε} p_l (1 − e^{ε − l})`.
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

    /// Smallest `ε ≥ 0` with `δ(ε) ≤ delta` (exact for the discrete
    /// distribution: δ is `A − e^ε B` between grid points); `∞` if the mass at
    /// `+∞` alone exceeds `delta`.
    pub(crate) fn epsilon_for_delta(&self, h: f64, delta: f64) -> f64 {
        if self.inf_mass >= delta {
            return f64::INFINITY;
        }
        let decay = (-h).exp();
        let n = self.probs.len();
        // For ε in [l_{j−1}, l_j): δ(ε) = inf + A_j − e^{ε − l_j} C_j with
        // A_j = Σ_{i≥j} p_i and C_j = Σ_{i≥j} p_i e^{l_j − l_i} = p_j + e^{−h} C_{j+1}.
        let mut a = 0.0;
        let mut c = 0.0;
        for j in (0..n).rev() {
            a += self.probs[j];
            c = self.probs[j] + decay * c;
            let at_left = self.inf_mass + a - decay * c; // δ(l_{j−1})
            if at_left > delta || j == 0 {
                let lj = (self.offset + j as i64) as f64 * h;
                let num = self.inf_mass + a - delta;
                if num <= 0.0 || c <= 0.0 {
                    // Only possible at j = 0: δ(ε) ≤ delta for every ε.
                    return 0.0;
                }
                let eps = lj + (num / c).ln();
                return eps.max(0.0);
            }
        }
        0.0
    }

    /// Refuses non-finite masses and totals more than `1e-3` away from 1
    /// (a numerical breakdown), and charges any deficit below 1 to the mass
    /// at `+∞`: truncation moves mass and never drops it, so a deficit can
    /// only be round-off, and booking it at `+∞` keeps δ(ε) pessimistic
    /// (surplus mass is pessimistic already).
    pub(crate) fn settle(&mut self) -> Result<(), String> {
        if !self.inf_mass.is_finite() || self.probs.iter().any(|p| !p.is_finite()) {
            return Err("non-finite probability mass".into());
        }
        let total = self.probs.iter().sum::<f64>() + self.inf_mass;
        if (total - 1.0).abs() > 1e-3 {
            return Err(format!("total probability mass {total} differs from 1"));
        }
        if total < 1.0 {
            self.inf_mass += 1.0 - total;
        }
        Ok(())
    }

    /// Mean and variance of the finite part (normalised by its mass).
    pub(crate) fn mean_var(&self, h: f64) -> (f64, f64) {
        let mass: f64 = self.probs.iter().sum();
        if mass <= 0.0 {
            return (0.0, 0.0);
        }
        let mean = self
            .probs
            .iter()
            .enumerate()
            .map(|(i, p)| p * (self.offset + i as i64) as f64 * h)
            .sum::<f64>()
            / mass;
        let var = self
            .probs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let d = (self.offset + i as i64) as f64 * h - mean;
                p * d * d
            })
            .sum::<f64>()
            / mass;
        (mean, var)
    }
}

/// Smallest `2^a 3^b ≥ n` (sizes rustfft handles fastest).
fn fft_size(n: usize) -> usize {
    let mut best = n.next_power_of_two();
    let mut p3 = 1usize;
    while p3 < best {
        let mut v = p3;
        while v < n {
            v *= 2;
        }
        best = best.min(v);
        p3 *= 3;
    }
    best
}

/// FFT plans and buffers reused across the compositions of one accounting call.
pub(crate) struct Convolver {
    planner: FftPlanner<f64>,
    scratch: Vec<Complex<f64>>,
}

impl Convolver {
    pub(crate) fn new() -> Self {
        Self {
            planner: FftPlanner::new(),
            scratch: Vec::new(),
        }
    }

    fn plans(&mut self, len: usize) -> (Arc<dyn Fft<f64>>, Arc<dyn Fft<f64>>) {
        let f = self.planner.plan_fft_forward(len);
        let i = self.planner.plan_fft_inverse(len);
        let need = f.get_inplace_scratch_len().max(i.get_inplace_scratch_len());
        if self.scratch.len() < need {
            self.scratch.resize(need, Complex::new(0.0, 0.0));
        }
        (f, i)
    }

    /// Spectrum of the real sequences `x` (real part) and `y` (imaginary part)
    /// packed into one complex FFT of length `len`.
    fn packed_spectrum(
        &mut self,
        fwd: &Arc<dyn Fft<f64>>,
        len: usize,
        x: &[f64],
        y: &[f64],
    ) -> Vec<Complex<f64>> {
        let mut buf = vec![Complex::new(0.0, 0.0); len];
        for (b, &v) in buf.iter_mut().zip(x) {
            b.re = v;
        }
        for (b, &v) in buf.iter_mut().zip(y) {
            b.im = v;
        }
        fwd.process_with_scratch(&mut buf, &mut self.scratch);
        buf
    }

    /// Linear convolutions `a1 * b1` and `a2 * b2` of real sequences with two
    /// forward FFTs and one inverse (or one forward and one inverse when
    /// squaring), using the real/imaginary packing trick.
    ///
    /// Each sequence's largest entry (the "spike": e.g. the mass `(1 − q)^k`
    /// of rounds in which the client was never sampled) is convolved exactly
    /// and only the remainder goes through the FFT, so round-off scales with
    /// the remainder's magnitude instead of the spike's.
    pub(crate) fn convolve_pair(
        &mut self,
        a1: &[f64],
        b1: &[f64],
        a2: &[f64],
        b2: &[f64],
        squaring: bool,
    ) -> (Vec<f64>, Vec<f64>) {
        let n1 = a1.len() + b1.len() - 1;
        let n2 = a2.len() + b2.len() - 1;
        let len = fft_size(n1.max(n2));
        let (fwd, inv) = self.plans(len);
        let (sa1, ra1) = split_spike(a1);
        let (sa2, ra2) = split_spike(a2);
        let za = self.packed_spectrum(&fwd, len, &ra1, &ra2);
        let (sb1, sb2, zb) = if squaring {
            (sa1, sa2, None)
        } else {
            let (sb1, rb1) = split_spike(b1);
            let (sb2, rb2) = split_spike(b2);
            (sb1, sb2, Some(self.packed_spectrum(&fwd, len, &rb1, &rb2)))
        };
        let zb = zb.as_ref().unwrap_or(&za);
        let half = Complex::new(0.5, 0.0);
        let minus_half_i = Complex::new(0.0, -0.5);
        let mut out = vec![Complex::new(0.0, 0.0); len];
        for k in 0..len {
            let nk = (len - k) % len;
            // X1 = (Z[k] + conj Z[−k]) / 2, X2 = (Z[k] − conj Z[−k]) / (2i)
            let (za_k, za_nk) = (za[k], za[nk].conj());
            let (zb_k, zb_nk) = (zb[k], zb[nk].conj());
            let a1k = (za_k + za_nk) * half;
            let a2k = (za_k - za_nk) * minus_half_i;
            let b1k = (zb_k + zb_nk) * half;
            let b2k = (zb_k - zb_nk) * minus_half_i;
            out[k] = a1k * b1k + Complex::new(0.0, 1.0) * (a2k * b2k);
        }
        inv.process_with_scratch(&mut out, &mut self.scratch);
        let scale = 1.0 / len as f64;
        let mut r1: Vec<f64> = out[..n1].iter().map(|c| c.re * scale).collect();
        let mut r2: Vec<f64> = out[..n2].iter().map(|c| c.im * scale).collect();
        add_spike_terms(&mut r1, sa1, &ra1, sb1, b1, squaring);
        add_spike_terms(&mut r2, sa2, &ra2, sb2, b2, squaring);
        (r1, r2)
    }
}

/// Splits off the largest entry: `((index, value), rest with it zeroed)`.
fn split_spike(x: &[f64]) -> ((usize, f64), Vec<f64>) {
    let (mut idx, mut val) = (0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        if v > val {
            idx = i;
            val = v;
        }
    }
    let mut rest = x.to_vec();
    if let Some(r) = rest.get_mut(idx) {
        *r = 0.0;
    }
    ((idx, val), rest)
}

/// Adds the exact spike terms of `a * b` with `a = sa·e_i + ra` and
/// `b = sb·e_j + rb` (`rb = b` with its spike zeroed): `sa·sb` at `i + j`,
/// `sa·rb` shifted by `i`, `sb·ra` shifted by `j`.
fn add_spike_terms(
    out: &mut [f64],
    (ia, sa): (usize, f64),
    ra: &[f64],
    (ib, sb): (usize, f64),
    b: &[f64],
    squaring: bool,
) {
    let rb_owned;
    let rb: &[f64] = if squaring {
        ra
    } else {
        let mut v = b.to_vec();
        if let Some(x) = v.get_mut(ib) {
            *x = 0.0;
        }
        rb_owned = v;
        &rb_owned
    };
    if let Some(o) = out.get_mut(ia + ib) {
        *o += sa * sb;
    }
    if sa != 0.0 {
        for (o, &v) in out[ia..].iter_mut().zip(rb) {
            *o += sa * v;
        }
    }
    if sb != 0.0 {
        for (o, &v) in out[ib..].iter_mut().zip(ra) {
            *o += sb * v;
        }
    }
}

/// Composition of two PLDs (convolution of the finite parts; the `+∞` masses
/// combine as `1 − (1 − a)(1 − b)`), for two independent pairs at once.
pub(crate) fn compose_pair(
    conv: &mut Convolver,
    x: (&Pmf, &Pmf),
    y: (&Pmf, &Pmf),
    squaring: bool,
    tau: f64,
) -> Result<(Pmf, Pmf), String> {
    let (p1, p2) = conv.convolve_pair(&x.0.probs, &y.0.probs, &x.1.probs, &y.1.probs, squaring);
    let combine = |a: &Pmf, b: &Pmf, probs: Vec<f64>| {
        let mut r = Pmf {
            offset: a.offset + b.offset,
            probs,
            inf_mass: 1.0 - (1.0 - a.inf_mass) * (1.0 - b.inf_mass),
            roundoff: if squaring {
                a.roundoff
            } else {
                a.roundoff + b.roundoff
            },
        };
        r.truncate(tau);
        r
    };
    let (mut a, mut b) = (combine(x.0, y.0, p1), combine(x.1, y.1, p2));
    a.settle()?;
    b.settle()?;
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut r = vec![0.0; a.len() + b.len() - 1];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                r[i + j] += x * y;
            }
        }
        r
    }

    #[test]
    fn packed_fft_convolution_matches_naive() {
        let a1 = [0.1, 0.2, 0.3, 0.4];
        let b1 = [0.5, 0.25, 0.25];
        let a2 = [0.7, 0.3];
        let b2 = [0.2, 0.2, 0.2, 0.2, 0.2];
        let mut c = Convolver::new();
        let (r1, r2) = c.convolve_pair(&a1, &b1, &a2, &b2, false);
        for (x, y) in r1.iter().zip(naive(&a1, &b1)) {
            assert!((x - y).abs() < 1e-15);
        }
        for (x, y) in r2.iter().zip(naive(&a2, &b2)) {
            assert!((x - y).abs() < 1e-15);
        }
        let (s1, s2) = c.convolve_pair(&a1, &a1, &a2, &a2, true);
        for (x, y) in s1.iter().zip(naive(&a1, &a1)) {
            assert!((x - y).abs() < 1e-15);
        }
        for (x, y) in s2.iter().zip(naive(&a2, &a2)) {
            assert!((x - y).abs() < 1e-15);
        }
    }

    #[test]
    fn fft_sizes_are_smooth_and_large_enough() {
        for n in [1, 2, 5, 17, 1000, 65_537, 100_000] {
            let s = fft_size(n);
            assert!(s >= n);
            let mut m = s;
            while m.is_multiple_of(2) {
                m /= 2;
            }
            while m.is_multiple_of(3) {
                m /= 3;
            }
            assert_eq!(m, 1, "{s}");
        }
    }

    #[test]
    fn truncation_is_pessimistic() {
        let mut p = Pmf {
            offset: -2,
            probs: vec![1e-20, 1e-18, 0.5, 0.5 - 2e-18, 1e-18],
            inf_mass: 0.0,
            roundoff: 0.0,
        };
        let before_eps: Vec<f64> = [0.0, 0.1, 0.5]
            .iter()
            .map(|&e| p.delta_for_epsilon(0.1, e))
            .collect();
        p.truncate(1e-15);
        assert_eq!(p.offset, 0);
        assert_eq!(p.probs.len(), 2);
        assert!(p.inf_mass > 0.0);
        for (&e, b) in [0.0, 0.1, 0.5].iter().zip(before_eps) {
            assert!(p.delta_for_epsilon(0.1, e) >= b - 1e-30);
        }
    }

    #[test]
    fn epsilon_inverts_delta() {
        let p = Pmf {
            offset: -3,
            probs: vec![0.1, 0.2, 0.3, 0.2, 0.1, 0.05, 0.05 - 1e-6],
            inf_mass: 1e-6,
            roundoff: 0.0,
        };
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
    }
}
