//! FFT convolution of pairs of real sequences, with an a-priori bound on its
//! floating-point error.
//!
//! Two independent convolutions (the remove and add directions) share each
//! FFT by real/imaginary packing. While a sequence is spiky (e.g. the mass
//! of rounds in which the client was not sampled), its few largest entries
//! are convolved directly and only the flat remainder goes through the FFT
//! (see [`split_band`]).
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
//! direct band terms add `(|A| + |B| + 2)u` relative error per output entry. The unit test
//! `error_bound_holds_with_room` checks the bound against an exact
//! (compensated) convolution.

use std::borrow::Cow;
use std::sync::Arc;

use rustfft::Fft;
use rustfft::num_complex::Complex;

/// Unit roundoff of `f64`.
pub(crate) const U: f64 = f64::EPSILON / 2.0;
/// Per-stage error constant `η` of the transforms (see the module docs).
const ETA: f64 = 8.0 * U;
/// Safety factor applied to the a-priori bound.
const ERROR_SAFETY: f64 = 2.0;

/// Smallest `2^k` or `3·2^k` that is `≥ n`: lengths rustfft transforms
/// fast, few enough (two per octave, < 50 % padding) that the lengths of
/// one call repeat across calls and their plans stay cached (module
/// `plans`; every `2^a 3^b` length would pad less but needs ~10 plans of
/// 10⁵–10⁶ points per call, each costing more than its transforms).
pub(crate) fn fft_size(n: usize) -> usize {
    let p2 = n.max(1).next_power_of_two();
    let p3 = 3 * (p2 / 4);
    if p3 >= n && p3 > 0 { p3 } else { p2 }
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

/// Buffers reused across the convolutions of one accounting call (the FFT
/// plans are shared by all calls, module `plans`).
pub(crate) struct Convolver {
    scratch: Vec<Complex<f64>>,
    /// Spectrum of the first operands, then the product spectrum.
    za: Vec<Complex<f64>>,
    /// Spectrum of the second operands (unused when squaring).
    zb: Vec<Complex<f64>>,
}

impl Convolver {
    pub(crate) fn new() -> Self {
        Self {
            scratch: Vec::new(),
            za: Vec::new(),
            zb: Vec::new(),
        }
    }

    fn plans(&mut self, len: usize) -> (Arc<dyn Fft<f64>>, Arc<dyn Fft<f64>>) {
        let (f, i) = super::plans::get(len);
        let need = f.get_inplace_scratch_len().max(i.get_inplace_scratch_len());
        if self.scratch.len() < need {
            self.scratch.resize(need, Complex::new(0.0, 0.0));
        }
        (f, i)
    }

    /// Linear convolutions `a1 * b1` and `a2 * b2` with two forward FFTs and
    /// one inverse (one forward when squaring, `b = a`), the largest entries
    /// convolved directly where that pays (see [`split_band`]); with a bound
    /// on each result's L1 error (module docs).
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
        let (sa1, sa2) = (split_band(a1), split_band(a2));
        let (ka1, ka2) = (unit_scale(sa1.l2), unit_scale(sa2.l2));
        packed_spectrum(
            &fwd,
            &mut self.za,
            &mut self.scratch,
            len,
            (&sa1.rest, ka1),
            (&sa2.rest, ka2),
        );
        let (sb1, sb2) = if squaring {
            (None, None)
        } else {
            (Some(split_band(b1)), Some(split_band(b2)))
        };
        let (sb1, sb2) = (sb1.as_ref().unwrap_or(&sa1), sb2.as_ref().unwrap_or(&sa2));
        let (kb1, kb2) = (unit_scale(sb1.l2), unit_scale(sb2.l2));
        if !squaring {
            packed_spectrum(
                &fwd,
                &mut self.zb,
                &mut self.scratch,
                len,
                (&sb1.rest, kb1),
                (&sb2.rest, kb2),
            );
        }
        let zb: &[Complex<f64>] = if squaring { &self.za } else { &self.zb };
        let (kx1, kx2) = product_scales(&self.za, zb, len);
        if squaring {
            product_spectrum_in_place(&mut self.za, None, len, kx1, kx2);
        } else {
            product_spectrum_in_place(&mut self.za, Some(&self.zb), len, kx1, kx2);
        }
        inv.process_with_scratch(&mut self.za[..len], &mut self.scratch);
        let inv_len = 1.0 / len as f64;
        let (u1, u2) = (inv_len / (ka1 * kb1 * kx1), inv_len / (ka2 * kb2 * kx2));
        let mut r1: Vec<f64> = self.za[..n1].iter().map(|c| c.re * u1).collect();
        let mut r2: Vec<f64> = self.za[..n2].iter().map(|c| c.im * u2).collect();

        // The bound, from the norms of the sequences that went through the FFT.
        let stages = (len as f64).log2().ceil();
        let k = ERROR_SAFETY * 2.0 * std::f64::consts::SQRT_2 * (3.0 * stages * ETA + 4.0 * U);
        let bound = |sa: &Split, sb: &Split, b: &[f64], n: usize| {
            let fft_l2 = k * (sa.l2 * sb.l1).max(sa.l1 * sb.l2);
            // Each output entry is the FFT value plus at most |A| + |B|
            // direct products, summed in sequence: relative error
            // (|A| + |B| + 2)u of the sum of their magnitudes.
            let terms = (sa.band.0.len() + sb.band.0.len()) as f64;
            let direct = sa.band.l1() * l1(b) + sb.band.l1() * sa.l1;
            (n as f64).sqrt() * fft_l2 * (1.0 + 4.0 * U)
                + (terms + 2.0) * U * (direct + sa.l1 * sb.l1)
        };
        let first_error = bound(&sa1, sb1, b1, n1);
        let second_error = bound(&sa2, sb2, b2, n2);

        add_band_terms(&mut r1, &sa1, &sb1.band, b1);
        add_band_terms(&mut r2, &sa2, &sb2.band, b2);
        PairResult {
            first: r1,
            second: r2,
            first_error,
            second_error,
        }
    }
}

/// Spectrum of the real sequences `x` (real part) and `y` (imaginary part),
/// each scaled by its power of two, packed into one complex FFT of length
/// `len` computed into `buf`.
fn packed_spectrum(
    fwd: &Arc<dyn Fft<f64>>,
    buf: &mut Vec<Complex<f64>>,
    scratch: &mut [Complex<f64>],
    len: usize,
    (x, kx): (&[f64], f64),
    (y, ky): (&[f64], f64),
) {
    buf.clear();
    buf.resize(len, Complex::new(0.0, 0.0));
    for (b, &v) in buf.iter_mut().zip(x) {
        b.re = v * kx;
    }
    for (b, &v) in buf.iter_mut().zip(y) {
        b.im = v * ky;
    }
    fwd.process_with_scratch(buf, scratch);
}

/// The spectra `X1·Y1` and `X2·Y2` at `k` of the two real convolutions
/// packed in `za` (and `zb`): `X1 = (Z[k] + conj Z[−k])/2`,
/// `X2 = (Z[k] − conj Z[−k])/(2i)`. At `−k` they are the complex
/// conjugates, bit for bit (conjugation and the exact scalings commute with
/// every rounding), so each pair `(k, −k)` is computed once.
#[inline]
fn products(
    za: (Complex<f64>, Complex<f64>),
    zb: (Complex<f64>, Complex<f64>),
) -> (Complex<f64>, Complex<f64>) {
    let half = Complex::new(0.5, 0.0);
    let minus_half_i = Complex::new(0.0, -0.5);
    let (za_k, za_nk) = (za.0, za.1.conj());
    let (zb_k, zb_nk) = (zb.0, zb.1.conj());
    (
        ((za_k + za_nk) * half) * ((zb_k + zb_nk) * half),
        ((za_k - za_nk) * minus_half_i) * ((zb_k - zb_nk) * minus_half_i),
    )
}

/// Powers of two that bring each product spectrum to unit L2 norm.
fn product_scales(za: &[Complex<f64>], zb: &[Complex<f64>], len: usize) -> (f64, f64) {
    let (mut s1, mut s2) = (0.0, 0.0);
    for k in 0..len {
        let nk = (len - k) % len;
        let (p1, p2) = products((za[k], za[nk]), (zb[k], zb[nk]));
        s1 += p1.norm_sqr();
        s2 += p2.norm_sqr();
    }
    (unit_scale(s1.sqrt()), unit_scale(s2.sqrt()))
}

/// Overwrites `za` with `kx1·X1Y1 + i·kx2·X2Y2` (squaring when `zb` is
/// `None`), pair by pair.
fn product_spectrum_in_place(
    za: &mut [Complex<f64>],
    zb: Option<&[Complex<f64>]>,
    len: usize,
    kx1: f64,
    kx2: f64,
) {
    let i = Complex::new(0.0, 1.0);
    for k in 0..=len / 2 {
        let nk = (len - k) % len;
        let (a_k, a_nk) = (za[k], za[nk]);
        let (b_k, b_nk) = zb.map_or((a_k, a_nk), |zb| (zb[k], zb[nk]));
        let (p1, p2) = products((a_k, a_nk), (b_k, b_nk));
        za[k] = p1 * kx1 + i * (p2 * kx2);
        if nk != k {
            za[nk] = p1.conj() * kx1 + i * (p2.conj() * kx2);
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

/// Most entries convolved directly instead of by FFT: the largest ones of a
/// sequence (a spike and its neighbours), so the FFT sees a flat remainder
/// whose L2 norm, which its error scales with, is small.
const BAND: usize = 128;

/// A band is used only if it cuts the L2 norm the FFT sees by at least this
/// factor (a spiky sequence).
const BAND_MIN_GAIN: f64 = 1.25;

/// The largest entries of a sequence, `(index, value)`.
#[derive(Clone)]
struct Band(Vec<(usize, f64)>);

impl Band {
    fn l1(&self) -> f64 {
        self.0.iter().map(|(_, v)| v.abs()).sum()
    }
}

/// A sequence split into a band of entries convolved directly and the rest
/// (the band zeroed) that goes through the FFT, with the rest's norms.
struct Split<'a> {
    band: Band,
    rest: Cow<'a, [f64]>,
    l1: f64,
    l2: f64,
}

/// Splits off the entries convolved directly: the [`BAND`] largest, if
/// they cut the L2 norm of the rest by at least [`BAND_MIN_GAIN`], else none.
///
/// A direct band costs `O(BAND·n)`. It pays while a distribution is spiky
/// (early in a composition a few entries hold most of the norm, and the
/// FFT's error, which scales with the norm, is carried into every later
/// step); once the distribution has spread, [`BAND`] entries hold a
/// negligible share of the norm, and the band cost more than the FFTs
/// themselves (22 % of all time at `T = 10³`, `δ = 1e-15`).
fn split_band(x: &[f64]) -> Split<'_> {
    let none = || Split {
        band: Band(Vec::new()),
        rest: Cow::Borrowed(x),
        l1: l1(x),
        l2: l2(x),
    };
    let sum_sq: f64 = x.iter().map(|v| v * v).sum();
    let max = x.iter().copied().fold(0.0f64, f64::max);
    let gain_sq = BAND_MIN_GAIN * BAND_MIN_GAIN;
    let k = BAND.min(x.len());
    // Even k entries of the largest size hold too little of the norm.
    if k == 0
        || sum_sq.is_nan()
        || sum_sq <= 0.0
        || (k as f64) * max * max < sum_sq * (1.0 - 1.0 / gain_sq)
    {
        return none();
    }
    let mut idx: Vec<usize> = (0..x.len()).collect();
    if k < x.len() {
        idx.select_nth_unstable_by(k, |&i, &j| x[j].total_cmp(&x[i]));
    }
    idx.truncate(k);
    idx.retain(|&i| x[i] > 0.0);
    let mut rest = x.to_vec();
    for &i in &idx {
        rest[i] = 0.0;
    }
    // Summed directly, not as sum_sq minus the band (no cancellation).
    let rest_l2 = l2(&rest);
    if rest_l2 * rest_l2 * gain_sq > sum_sq {
        return none();
    }
    let band = idx.iter().map(|&i| (i, x[i])).collect();
    Split {
        band: Band(band),
        l1: l1(&rest),
        l2: rest_l2,
        rest: Cow::Owned(rest),
    }
}

/// Adds the direct terms of `a * b` with `a = A + ra` and `b = B + rb` (bands
/// `A`, `B`; `rb = b` with its band zeroed): `A * b` and `ra * B`.
fn add_band_terms(out: &mut [f64], sa: &Split, bb: &Band, b: &[f64]) {
    for &(i, v) in &sa.band.0 {
        for (o, &w) in out[i..].iter_mut().zip(b) {
            *o += v * w;
        }
    }
    for &(j, w) in &bb.0 {
        for (o, &v) in out[j..].iter_mut().zip(sa.rest.iter()) {
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
    fn a_band_is_split_off_only_while_it_pays() {
        // A spike holding most of the norm: the band takes it and the rest's
        // norm drops by far more than BAND_MIN_GAIN.
        let spiky = seq(3001, 5, true);
        let s = split_band(&spiky);
        assert!(!s.band.0.is_empty() && s.band.0.len() <= BAND);
        assert!(s.l2 * 10.0 < l2(&spiky), "{} vs {}", s.l2, l2(&spiky));
        assert_eq!(s.rest.iter().filter(|v| **v == 0.0).count(), s.band.0.len());
        // A spread-out sequence: 128 entries hold too little of the norm.
        let flat = seq(3001, 6, false);
        let f = split_band(&flat);
        assert!(f.band.0.is_empty());
        assert!(matches!(f.rest, Cow::Borrowed(_)));
        assert_eq!(f.l2, l2(&flat));
    }

    #[test]
    fn fft_sizes_are_smooth_and_large_enough() {
        for n in [1, 2, 5, 17, 1000, 65_537, 100_000] {
            let s = fft_size(n);
            assert!(s >= n);
            // Less than half of padding (two lengths per octave).
            assert!(2 * s < 3 * n.max(2), "{n}: {s}");
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
