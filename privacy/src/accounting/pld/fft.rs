//! FFT convolution of pairs of real sequences, with an a-priori bound on its
//! floating-point error.
//!
//! Two independent convolutions (the remove and add directions) share each
//! FFT by real/imaginary packing. Each sequence's largest entry (the
//! "spike", e.g. the mass of rounds in which the client was not sampled) is
//! convolved exactly and only the remainder goes through the FFT.
//!
//! # Error bound
//!
//! For a length-`N` transform with `L = ⌈log₂ N⌉` stages, the computed DFT
//! satisfies `‖Ŷ − Y‖₂ ≤ L·η·‖Y‖₂` with `η = μ + γ₄(√2 + μ)`, `μ` the error
//! of the twiddle factors (Higham, *Accuracy and Stability of Numerical
//! Algorithms*, 2nd ed., Thm. 24.2; rustfft's twiddles are correctly
//! rounded sines and cosines, `μ ≤ 2u`, so `η ≤ 8u` with `u = 2⁻⁵³`).
//! Propagating the errors of the two forward transforms, the pointwise
//! product (`‖Ŷ_a‖_∞ ≤ ‖a‖₁`) and the inverse transform gives for the
//! cyclic convolution `c = a ⊛ b`:
//! `‖ĉ − c‖₂ ≤ (3Lη + 4u)·max(‖a‖₂‖b‖₁, ‖a‖₁‖b‖₂)`, and
//! `‖ĉ − c‖₁ ≤ √n·‖ĉ − c‖₂` over the `n` output entries. Packing two real
//! sequences into one complex one, each scaled to unit norm first, makes the
//! error of each at most `2√2` times what it would be alone (see
//! [`Convolver::convolve_pair`]). [`ERROR_SAFETY`] multiplies the result (for the
//! algorithms rustfft picks for `2^a·3^b` lengths, whose stage count is at
//! most `L` and whose butterflies are no less accurate than radix-2). The
//! exact spike terms add `3u` relative error each. The unit test
//! `error_bound_holds_with_room` checks the bound against an exact
//! (compensated) convolution.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Unit roundoff of `f64`.
pub(crate) const U: f64 = f64::EPSILON / 2.0;
/// Per-stage error constant `η` of the transforms (see the module docs).
const ETA: f64 = 8.0 * U;
/// Safety factor applied to the a-priori bound.
const ERROR_SAFETY: f64 = 2.0;

/// Smallest `2^a 3^b ≥ n` (sizes rustfft handles fastest).
pub(crate) fn fft_size(n: usize) -> usize {
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

fn l1(x: &[f64]) -> f64 {
    x.iter().map(|v| v.abs()).sum()
}

fn l2(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// Two linear convolutions and a bound on the L1 error of each.
pub(crate) struct PairResult {
    /// `a1 * b1`.
    pub(crate) first: Vec<f64>,
    /// `a2 * b2`.
    pub(crate) second: Vec<f64>,
    /// Bound on `‖computed − exact‖₁` of `first`.
    pub(crate) first_error: f64,
    /// Bound on `‖computed − exact‖₁` of `second`.
    pub(crate) second_error: f64,
}

/// FFT plans and buffers reused across the convolutions of one accounting call.
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

    /// Linear convolutions `a1 * b1` and `a2 * b2` with two forward FFTs and
    /// one inverse (one forward when squaring, `b = a`), spikes convolved
    /// exactly; with a bound on each result's L1 error (module docs).
    ///
    /// The two directions share each transform, packed as real and
    /// imaginary parts; each packed sequence (and each product spectrum
    /// before the inverse) is first scaled by a power of two (exact) to unit
    /// L2 norm, so the error of one is relative to its own size and not to
    /// the other's (the bound then carries a factor `2√2`).
    pub(crate) fn convolve_pair(
        &mut self,
        a1: &[f64],
        b1: &[f64],
        a2: &[f64],
        b2: &[f64],
        squaring: bool,
    ) -> PairResult {
        let n1 = a1.len() + b1.len() - 1;
        let n2 = a2.len() + b2.len() - 1;
        let len = fft_size(n1.max(n2));
        let (fwd, inv) = self.plans(len);
        let (sa1, ra1) = split_band(a1);
        let (sa2, ra2) = split_band(a2);
        let (ka1, ka2) = (unit_scale(l2(&ra1)), unit_scale(l2(&ra2)));
        let za = self.packed_spectrum(&fwd, len, &scaled(&ra1, ka1), &scaled(&ra2, ka2));
        let (sb1, sb2, zb, rb, (kb1, kb2)) = if squaring {
            (sa1.clone(), sa2.clone(), None, None, (ka1, ka2))
        } else {
            let (sb1, rb1) = split_band(b1);
            let (sb2, rb2) = split_band(b2);
            let k = (unit_scale(l2(&rb1)), unit_scale(l2(&rb2)));
            let z = self.packed_spectrum(&fwd, len, &scaled(&rb1, k.0), &scaled(&rb2, k.1));
            (sb1, sb2, Some(z), Some((rb1, rb2)), k)
        };
        let zb = zb.as_ref().unwrap_or(&za);
        let half = Complex::new(0.5, 0.0);
        let minus_half_i = Complex::new(0.0, -0.5);
        let mut x1 = vec![Complex::new(0.0, 0.0); len];
        let mut x2 = vec![Complex::new(0.0, 0.0); len];
        for k in 0..len {
            let nk = (len - k) % len;
            // X1 = (Z[k] + conj Z[−k]) / 2, X2 = (Z[k] − conj Z[−k]) / (2i)
            let (za_k, za_nk) = (za[k], za[nk].conj());
            let (zb_k, zb_nk) = (zb[k], zb[nk].conj());
            x1[k] = ((za_k + za_nk) * half) * ((zb_k + zb_nk) * half);
            x2[k] = ((za_k - za_nk) * minus_half_i) * ((zb_k - zb_nk) * minus_half_i);
        }
        let norm = |x: &[Complex<f64>]| x.iter().map(|c| c.norm_sqr()).sum::<f64>().sqrt();
        let (kx1, kx2) = (unit_scale(norm(&x1)), unit_scale(norm(&x2)));
        let mut out: Vec<Complex<f64>> = x1
            .iter()
            .zip(&x2)
            .map(|(p, q)| p * kx1 + Complex::new(0.0, 1.0) * (q * kx2))
            .collect();
        inv.process_with_scratch(&mut out, &mut self.scratch);
        let inv_len = 1.0 / len as f64;
        let (u1, u2) = (inv_len / (ka1 * kb1 * kx1), inv_len / (ka2 * kb2 * kx2));
        let mut r1: Vec<f64> = out[..n1].iter().map(|c| c.re * u1).collect();
        let mut r2: Vec<f64> = out[..n2].iter().map(|c| c.im * u2).collect();

        // The bound, from the norms of the sequences that went through the FFT.
        let (rb1, rb2): (&[f64], &[f64]) = match &rb {
            Some((x, y)) => (x, y),
            None => (&ra1, &ra2),
        };
        let stages = (len as f64).log2().ceil();
        let k = ERROR_SAFETY * 2.0 * std::f64::consts::SQRT_2 * (3.0 * stages * ETA + 4.0 * U);
        // Each output entry receives at most 2·BAND direct products on top of
        // the FFT value: relative error (2·BAND + 2)u of what is added.
        let bound = |ra: &[f64], rb: &[f64], n: usize, sa: &Band, sb: &Band, b: &[f64]| {
            let fft_l2 = k * (l2(ra) * l1(rb)).max(l1(ra) * l2(rb));
            let direct = sa.l1() * l1(b) + sb.l1() * l1(ra);
            (n as f64).sqrt() * fft_l2 * (1.0 + 4.0 * U)
                + (2.0 * BAND as f64 + 2.0) * U * (direct + l1(ra) * l1(rb))
        };
        let first_error = bound(&ra1, rb1, n1, &sa1, &sb1, b1);
        let second_error = bound(&ra2, rb2, n2, &sa2, &sb2, b2);

        add_band_terms(&mut r1, &sa1, &ra1, &sb1, b1, squaring);
        add_band_terms(&mut r2, &sa2, &ra2, &sb2, b2, squaring);
        PairResult {
            first: r1,
            second: r2,
            first_error,
            second_error,
        }
    }
}

/// The power of two that brings a norm into `[1, 2)` (1 for 0 or non-finite).
fn unit_scale(norm: f64) -> f64 {
    if norm > 0.0 && norm.is_finite() {
        2f64.powi(-(norm.log2().floor() as i32))
    } else {
        1.0
    }
}

fn scaled(x: &[f64], k: f64) -> Vec<f64> {
    x.iter().map(|v| v * k).collect()
}

/// Entries convolved directly instead of by FFT: the largest ones of each
/// sequence (a spike and its neighbours), so the FFT sees a flat remainder
/// whose L2 norm, which its error scales with, is small.
const BAND: usize = 128;

/// The largest entries of a sequence, `(index, value)`.
#[derive(Clone)]
struct Band(Vec<(usize, f64)>);

impl Band {
    fn l1(&self) -> f64 {
        self.0.iter().map(|(_, v)| v.abs()).sum()
    }
}

/// Splits off the [`BAND`] largest entries: `(band, rest with them zeroed)`.
fn split_band(x: &[f64]) -> (Band, Vec<f64>) {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    let k = BAND.min(x.len());
    if k < x.len() {
        idx.select_nth_unstable_by(k, |&i, &j| x[j].total_cmp(&x[i]));
    }
    idx.truncate(k);
    let mut rest = x.to_vec();
    let band = idx
        .into_iter()
        .filter(|&i| x[i] > 0.0)
        .map(|i| {
            rest[i] = 0.0;
            (i, x[i])
        })
        .collect();
    (Band(band), rest)
}

/// Adds the direct terms of `a * b` with `a = A + ra` and `b = B + rb` (bands
/// `A`, `B`; `rb = b` with its band zeroed): `A * b` and `ra * B`.
fn add_band_terms(out: &mut [f64], ba: &Band, ra: &[f64], bb: &Band, b: &[f64], squaring: bool) {
    for &(i, v) in &ba.0 {
        for (o, &w) in out[i..].iter_mut().zip(b) {
            *o += v * w;
        }
    }
    let bb = if squaring { ba } else { bb };
    for &(j, w) in &bb.0 {
        for (o, &v) in out[j..].iter_mut().zip(ra) {
            *o += w * v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact-ish convolution: each output as a compensated (TwoSum) sum.
    fn exact(a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut s = vec![0.0f64; a.len() + b.len() - 1];
        let mut c = vec![0.0f64; s.len()];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                let p = x * y;
                let pe = x.mul_add(*y, -p);
                let t = s[i + j] + p;
                let bb = t - s[i + j];
                let e = (s[i + j] - (t - bb)) + (p - bb);
                s[i + j] = t;
                c[i + j] += e + pe;
            }
        }
        s.iter().zip(&c).map(|(a, b)| a + b).collect()
    }

    fn seq(n: usize, seed: u64, spiky: bool) -> Vec<f64> {
        let mut z = seed;
        let mut v: Vec<f64> = (0..n)
            .map(|i| {
                z = z
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let u = (z >> 11) as f64 / (1u64 << 53) as f64;
                let x = (i as f64 - n as f64 / 2.0) / (n as f64 / 8.0);
                (-x * x / 2.0).exp() * (0.5 + u)
            })
            .collect();
        if spiky {
            v[n / 3] += 1e4 * v.iter().sum::<f64>();
        }
        let s: f64 = v.iter().sum();
        v.iter_mut().for_each(|x| *x /= s);
        v
    }

    #[test]
    fn packed_fft_convolution_matches_naive() {
        let a1 = [0.1, 0.2, 0.3, 0.4];
        let b1 = [0.5, 0.25, 0.25];
        let a2 = [0.7, 0.3];
        let b2 = [0.2, 0.2, 0.2, 0.2, 0.2];
        let mut c = Convolver::new();
        let r = c.convolve_pair(&a1, &b1, &a2, &b2, false);
        for (x, y) in r.first.iter().zip(exact(&a1, &b1)) {
            assert!((x - y).abs() < 1e-15);
        }
        for (x, y) in r.second.iter().zip(exact(&a2, &b2)) {
            assert!((x - y).abs() < 1e-15);
        }
        let s = c.convolve_pair(&a1, &a1, &a2, &a2, true);
        for (x, y) in s.first.iter().zip(exact(&a1, &a1)) {
            assert!((x - y).abs() < 1e-15);
        }
        for (x, y) in s.second.iter().zip(exact(&a2, &a2)) {
            assert!((x - y).abs() < 1e-15);
        }
    }

    #[test]
    fn error_bound_holds_with_room() {
        let mut c = Convolver::new();
        for (n, spiky) in [
            (7, false),
            (300, false),
            (1000, true),
            (2500, false),
            (3001, true),
        ] {
            let (a1, a2) = (seq(n, 1, spiky), seq(n / 2 + 1, 2, false));
            let (b1, b2) = (seq(n + 5, 3, false), seq(n, 4, spiky));
            for squaring in [false, true] {
                let (b1, b2) = if squaring {
                    (a1.clone(), a2.clone())
                } else {
                    (b1.clone(), b2.clone())
                };
                let r = c.convolve_pair(&a1, &b1, &a2, &b2, squaring);
                let e1: f64 = r
                    .first
                    .iter()
                    .zip(exact(&a1, &b1))
                    .map(|(x, y)| (x - y).abs())
                    .sum();
                let e2: f64 = r
                    .second
                    .iter()
                    .zip(exact(&a2, &b2))
                    .map(|(x, y)| (x - y).abs())
                    .sum();
                assert!(e1 <= r.first_error, "n={n}: {e1} > {}", r.first_error);
                assert!(e2 <= r.second_error, "n={n}: {e2} > {}", r.second_error);
                // The bound is not vacuous: within a few hundred of the observed
                // error (and far below 1e-10 of the unit mass).
                assert!(r.first_error < 1e-11 && r.second_error < 1e-11, "n={n}");
            }
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
}
