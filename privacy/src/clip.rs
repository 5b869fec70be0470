//! L2 clipping of `f32` update vectors, with `f64` accumulation.
//!
//! This module owns the one property every privacy claim rests on: the L2
//! norm of a clipped update is at most the clip norm `C`. A vector containing
//! NaN or ±∞ is an error (never silently zeroed). The loops themselves live
//! in `kernels` (vectorised, AVX2 + FMA when the CPU has them).
//!
//! # Rounding bound
//!
//! The squared norm is summed in `f64` (the squares of `f32` values are
//! exact in `f64`) into independent partial sums of at most `⌈n/8⌉` terms,
//! combined with at most 8 further additions (see `kernels`), so for `n`
//! elements the computed norm `ñ` satisfies `|ñ − ‖v‖| ≤ γ_n ‖v‖` with
//! `γ_n = (⌈n/8⌉ + 8) · 2⁻⁵³` (standard recursive-summation bound, halved by
//! the square root, plus the square root's own rounding).
//!
//! When `ñ > C` the vector is multiplied by `s = (C/ñ)(1 − m)`:
//! - [`clip_and_accumulate`] (and [`Measured::clip_into`]) keeps the products
//!   in `f64` and uses `m = 2γ_n + 2⁻⁵⁰`, so the contribution added to the
//!   accumulator has norm `≤ C` exactly; the `f64` rounding of the
//!   accumulator itself (the sum across clients) is carried by
//!   [`accumulation_inflation`] in the accounted sensitivity;
//! - [`clip_in_place`] rounds each product back to `f32` (relative error
//!   `≤ 2⁻²⁴`) and uses `m = 2γ_n + 2⁻²³`, so the clipped `f32` vector has norm
//!   `≤ C` and `≥ C(1 − 2⁻²² − 4γ_n)`.
//!
//! (Subnormal `f32` results carry an absolute rounding error of at most 2⁻¹⁵⁰
//! per element, irrelevant for any clip norm above 1e-30.)
//!
//! A vector counts as inside the ball only when its computed norm *proves*
//! it: `ñ ≤ C(1 − γ_n − 2u)` ([`within_threshold`]); such vectors are left
//! bit-for-bit untouched. A computed norm of `C` or just below is no proof
//! (`d = 2²⁰`, `v[0] = 1`, `v[8j] = 2⁻²⁷`: computed 1.0, true `1 + 9e-13`), so
//! those vectors are scaled by `s < 1` like any other outside the threshold.
//!
//! # Measuring apart from adding
//!
//! [`Measured`] splits [`clip_and_accumulate`] in two: validating and
//! measuring an update reads it once and touches nothing shared, so the
//! coordinator does it before it takes the round's lock; adding is then one
//! pass under the lock. A `Measured` borrows the values it measured, so they
//! cannot change between the two steps.

use thiserror::Error;

use crate::kernels;

/// Why a vector could not be measured or clipped.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ClipError {
    /// The element at `index` is NaN or ±∞.
    #[error("element {index} is NaN or infinite")]
    NonFinite {
        /// Position of the first offending element.
        index: usize,
    },
    /// The clip norm is not a finite number > 0.
    #[error("clip norm {0} must be a finite number > 0")]
    InvalidClipNorm(f64),
    /// The accumulator and the vector have different lengths.
    #[error("length mismatch: expected {expected} elements, got {actual}")]
    LengthMismatch {
        /// Length of the accumulator.
        expected: usize,
        /// Length of the vector.
        actual: usize,
    },
}

/// What clipping did to one vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipOutcome {
    /// L2 norm of the vector before clipping (computed in `f64`).
    pub norm: f64,
    /// Factor the vector was multiplied by (1 if it was inside the ball).
    pub scale: f64,
    /// Whether the vector was scaled down.
    pub clipped: bool,
}

const U: f64 = f64::EPSILON / 2.0; // 2^-53

/// Relative error bound `γ_n` of [`l2_norm`] for `n` elements (see module docs).
pub fn norm_rounding_bound(n: usize) -> f64 {
    ((n.div_ceil(8) + 8) as f64) * U
}

fn first_non_finite(v: &[f32]) -> usize {
    v.iter().position(|x| !x.is_finite()).unwrap_or(v.len())
}

/// Sum of the squares of `v`, accumulated in `f64` by the same vectorised
/// kernel as [`l2_norm`] (AVX2 + FMA where the CPU has it, detected at run
/// time), with the same rounding bound ([`norm_rounding_bound`]).
///
/// Not finite exactly when an element is NaN or ±∞ (no finite input
/// overflows). For statistics that are no privacy mechanism (the update
/// screen's per-layer norms); the re-clip goes through [`Measured`].
pub fn sum_of_squares(v: &[f32]) -> f64 {
    kernels::sum_squares(v)
}

/// L2 norm of `v`, accumulated in `f64`; NaN or ±∞ anywhere is an error.
///
/// One pass over the data: the sum of squares is finite exactly when every
/// element is finite (the largest `f32` squared is ~1.2e77), so the position
/// of a bad element is only searched for on the error path.
pub fn l2_norm(v: &[f32]) -> Result<f64, ClipError> {
    let s = kernels::sum_squares(v);
    if s.is_finite() {
        Ok(s.sqrt())
    } else {
        Err(ClipError::NonFinite {
            index: first_non_finite(v),
        })
    }
}

fn check_clip_norm(clip_norm: f64) -> Result<(), ClipError> {
    if clip_norm.is_finite() && clip_norm > 0.0 {
        Ok(())
    } else {
        Err(ClipError::InvalidClipNorm(clip_norm))
    }
}

/// Scale factor that maps a vector of computed norm `norm` (over `n`
/// elements) to norm `≤ clip_norm` with the given extra relative margin.
fn clip_scale(clip_norm: f64, norm: f64, n: usize, margin: f64) -> f64 {
    (clip_norm / norm) * (1.0 - (2.0 * norm_rounding_bound(n) + margin))
}

/// Largest computed norm (over `n` elements) that *proves* the true norm is
/// `≤ clip_norm`: `C·(1 − γ_n − 2u)`. Since `|ñ − ‖v‖| ≤ γ_n‖v‖`, `ñ ≤ C(1 − γ_n)`
/// implies `‖v‖ ≤ C`; the extra `2u` covers the rounding of the product
/// (`1 − γ_n − 2u` itself is exact). A computed norm in `(threshold, C]` is
/// *not* proof of being inside: such vectors are scaled like any other.
pub fn within_threshold(clip_norm: f64, n: usize) -> f64 {
    clip_norm * (1.0 - norm_rounding_bound(n) - 2.0 * U)
}

/// Extra L2 sensitivity, on top of `clip_norm`, from rounding the `f64` sum
/// of at most `max_summands` contributions of norm `≤ clip_norm` each (the
/// coordinator's running sum: one `acc[i] += x_i` per contribution, in any
/// order, starting from zero).
///
/// Per coordinate, recursive summation of `n` terms satisfies
/// `|ŝ − s| ≤ γ_n Σ|x_ij|` with `γ_n = n·u/(1 − n·u)` (Higham, *Accuracy and
/// Stability*, §4.2; it holds for a fused multiply-add too, one rounding of
/// the exact addend). In L2 over coordinates, by Minkowski's inequality,
/// `‖ŝ − s‖ ≤ γ_n Σ_i ‖x_i‖ ≤ n·γ_n·C`. Two neighbouring cohorts, each of at
/// most `n` contributions, have exact sums at most `C` apart, so their
/// computed sums are at most `C + 2n·γ_n·C` apart: this returns
/// `2n·γ_n·C`, rounded up. The relative size is `≈ 2n²·2⁻⁵³`: 2.2e-10 for
/// `n = 10³`, 2.2e-6 for `10⁵`, 2.2e-4 for `10⁶`. Infinite (no bound) once
/// `n·u ≥ 1/64`, i.e. beyond `2⁴⁷` contributions.
pub fn accumulation_inflation(clip_norm: f64, max_summands: u64) -> f64 {
    if max_summands <= 1 {
        // Zero or one contribution: adding to the zero accumulator is exact.
        return 0.0;
    }
    let n = max_summands as f64; // exact below 2⁵³, rounded up by the margin below above it
    let nu = n * U;
    if nu >= 1.0 / 64.0 {
        return f64::INFINITY;
    }
    let gamma = nu / (1.0 - nu);
    // Five roundings of at most `u` each (`1 − nu`, `/`, and three `·`):
    // the factor `(1 + 8u)` covers them.
    2.0 * n * gamma * clip_norm * (1.0 + 8.0 * U)
}

/// Clips `v` in place to L2 norm at most `clip_norm` and returns the pre-clip
/// norm. Vectors whose computed norm proves them inside the ball
/// ([`within_threshold`]) are not modified. On error `v` is left untouched.
pub fn clip_in_place(v: &mut [f32], clip_norm: f64) -> Result<f64, ClipError> {
    check_clip_norm(clip_norm)?;
    let norm = l2_norm(v)?;
    if norm > within_threshold(clip_norm, v.len()) {
        let s = clip_scale(clip_norm, norm, v.len(), f64::from(f32::EPSILON));
        for x in v.iter_mut() {
            *x = (f64::from(*x) * s) as f32;
        }
    }
    Ok(norm)
}

/// A validated update and its norm: the first half of
/// [`clip_and_accumulate`], done once, outside any lock.
#[derive(Debug, Clone, Copy)]
pub struct Measured<'a> {
    values: &'a [f32],
    norm: f64,
}

impl<'a> Measured<'a> {
    /// Validates `values` (NaN or ±∞ anywhere is an error) and computes their
    /// L2 norm in one pass.
    pub fn new(values: &'a [f32]) -> Result<Self, ClipError> {
        Ok(Self {
            values,
            norm: l2_norm(values)?,
        })
    }

    /// L2 norm of the values as received (computed in `f64`).
    pub fn norm(&self) -> f64 {
        self.norm
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds the values, clipped to L2 norm `≤ clip_norm`, to `acc` in one
    /// pass (`acc[i] += scale·v[i]` in `f64`). On error `acc` is untouched.
    pub fn clip_into(&self, clip_norm: f64, acc: &mut [f64]) -> Result<ClipOutcome, ClipError> {
        check_clip_norm(clip_norm)?;
        if acc.len() != self.values.len() {
            return Err(ClipError::LengthMismatch {
                expected: acc.len(),
                actual: self.values.len(),
            });
        }
        let (scale, clipped) = if self.norm > within_threshold(clip_norm, self.values.len()) {
            (
                clip_scale(clip_norm, self.norm, self.values.len(), 4.0 * U),
                true,
            )
        } else {
            (1.0, false)
        };
        kernels::add_scaled(acc, self.values, scale);
        Ok(ClipOutcome {
            norm: self.norm,
            scale,
            clipped,
        })
    }
}

/// Validates `v`, computes its norm, and adds it clipped to `clip_norm` to
/// `acc`: [`Measured::new`] then [`Measured::clip_into`] — a read-only norm
/// pass, then one pass of `acc[i] += scale·v[i]` in `f64`. On any error
/// `acc` is untouched.
pub fn clip_and_accumulate(
    v: &[f32],
    clip_norm: f64,
    acc: &mut [f64],
) -> Result<ClipOutcome, ClipError> {
    check_clip_norm(clip_norm)?;
    if acc.len() != v.len() {
        return Err(ClipError::LengthMismatch {
            expected: acc.len(),
            actual: v.len(),
        });
    }
    Measured::new(v)?.clip_into(clip_norm, acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Neighbouring cohorts whose computed `f64` sums are more than `C`
    /// apart: `C = 1`; cohort A adds 2¹⁶ halves (exactly 2¹⁵), then 2¹⁵
    /// contributions of 2⁻³⁸ = ½ ulp(2¹⁵), each lost to round-half-even;
    /// cohort B is A plus one client of `1 − 2⁻²⁴`, arriving with the small
    /// ones first, which then add up exactly. Every contribution is left
    /// untouched by the clipping; the sums differ by `1 + 2⁻²⁴ > C`, within
    /// `C + accumulation_inflation(C, n)`.
    #[test]
    fn the_f64_sum_across_clients_is_covered_by_the_accumulation_inflation() {
        let c = 1.0;
        let half = [0.5f32];
        let small = [2f32.powi(-38)];
        let x = [1.0f32 - 2f32.powi(-24)];
        let add = |acc: &mut [f64], v: &[f32]| {
            let out = clip_and_accumulate(v, c, acc).unwrap();
            assert!(!out.clipped, "{v:?} must be inside the ball as sent");
        };
        let mut a = [0.0f64];
        for _ in 0..1 << 16 {
            add(&mut a, &half);
        }
        for _ in 0..1 << 15 {
            add(&mut a, &small);
        }
        let mut b = [0.0f64];
        for _ in 0..1 << 15 {
            add(&mut b, &small);
        }
        for _ in 0..1 << 16 {
            add(&mut b, &half);
        }
        add(&mut b, &x);
        let n = (1u64 << 16) + (1 << 15) + 1;
        let apart = (b[0] - a[0]).abs();
        assert_eq!(apart, 1.0 + 2f64.powi(-24));
        assert!(apart > c, "the computed sums are more than C apart");
        let bound = c + accumulation_inflation(c, n);
        assert!(apart <= bound, "{apart} > {bound}");
    }

    #[test]
    fn accumulation_inflation_values() {
        assert_eq!(accumulation_inflation(1.0, 0), 0.0);
        assert_eq!(accumulation_inflation(1.0, 1), 0.0);
        let r = accumulation_inflation(1.0, 1000);
        assert!((2.0 * 1000.0 * 1000.0 * U..2.3e-10).contains(&r), "{r}");
        assert!((accumulation_inflation(3.0, 1000) / r - 3.0).abs() < 1e-12);
        let m = accumulation_inflation(1.0, 1_000_000);
        assert!((2.2e-4..2.3e-4).contains(&m), "{m}");
        assert_eq!(accumulation_inflation(1.0, 1 << 47), f64::INFINITY);
        assert_eq!(accumulation_inflation(1.0, u64::MAX), f64::INFINITY);
    }

    #[test]
    fn norm_of_simple_vectors() {
        assert_eq!(l2_norm(&[]).ok(), Some(0.0));
        assert_eq!(l2_norm(&[3.0, 4.0]).ok(), Some(5.0));
        let v = vec![1.0f32; 17];
        assert!((l2_norm(&v).unwrap() - 17f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn non_finite_elements_are_errors_with_their_index() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = vec![0.5f32; 20];
            v[13] = bad;
            assert_eq!(l2_norm(&v), Err(ClipError::NonFinite { index: 13 }));
            let before = v.clone();
            assert!(clip_in_place(&mut v, 1.0).is_err());
            assert_eq!(
                before.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
            let mut acc = vec![1.0f64; 20];
            assert_eq!(
                clip_and_accumulate(&v, 1.0, &mut acc),
                Err(ClipError::NonFinite { index: 13 })
            );
            assert!(acc.iter().all(|&a| a == 1.0), "acc touched on error");
        }
    }

    #[test]
    fn largest_finite_values_do_not_overflow_the_norm() {
        let v = vec![f32::MAX; 1000];
        let n = l2_norm(&v).unwrap();
        assert!((n / (f64::from(f32::MAX) * 1000f64.sqrt()) - 1.0).abs() < 1e-12);
        let mut w = v.clone();
        clip_in_place(&mut w, 1.0).unwrap();
        assert!(l2_norm(&w).unwrap() <= 1.0);
    }

    #[test]
    fn invalid_clip_norms_are_rejected() {
        for c in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                clip_and_accumulate(&[1.0], c, &mut [0.0]),
                Err(ClipError::InvalidClipNorm(_))
            ));
            assert!(matches!(
                clip_in_place(&mut [1.0], c),
                Err(ClipError::InvalidClipNorm(_))
            ));
        }
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let mut acc = vec![0.0; 3];
        assert_eq!(
            clip_and_accumulate(&[1.0, 2.0], 1.0, &mut acc),
            Err(ClipError::LengthMismatch {
                expected: 3,
                actual: 2
            })
        );
    }

    /// The example: a computed norm of exactly C is not proof of
    /// being inside. Before the threshold this vector was added unscaled.
    /// The issue puts `v[8j] = 2⁻²⁷` over the whole vector, which computes to
    /// 1.0 with the portable 8-lane kernel; the AVX2 kernel sums each quarter
    /// in its own stream, where the small squares add up exactly, so here
    /// they fill the first quarter only: every kernel adds each of them into
    /// `v[0]`'s lane, where `1 + 2⁻⁵⁴` rounds to 1.
    #[test]
    fn a_computed_norm_of_c_is_not_proof_of_being_inside() {
        let d = 1 << 20;
        let mut v = vec![0.0f32; d];
        v[0] = 1.0;
        for j in 1..d / 32 {
            v[8 * j] = 2f32.powi(-27);
        }
        // True ‖v‖² = 1 + (2¹⁵ − 1)·2⁻⁵⁴ > 1, exactly.
        let computed = l2_norm(&v).unwrap();
        assert_eq!(computed, 1.0);
        let mut acc = vec![0.0f64; d];
        let out = clip_and_accumulate(&v, 1.0, &mut acc).unwrap();
        assert!(out.clipped && out.scale < 1.0, "{out:?}");
        // Exact squared norm of the contribution (the squares of scale·2⁻²⁷ and
        // scale are sums of few exact terms here): ≤ 1.
        let s = out.scale;
        let tail = (d / 32 - 1) as f64 * (s * 2f64.powi(-27)).powi(2);
        assert!(acc[0] == s && s * s + tail <= 1.0, "{s}");
        let mut w = v.clone();
        clip_in_place(&mut w, 1.0).unwrap();
        assert!(w[0] < 1.0, "clip_in_place left it untouched");
    }

    #[test]
    fn accumulate_clips_and_sums() {
        let mut acc = vec![0.0f64; 2];
        let o = clip_and_accumulate(&[3.0, 4.0], 1.0, &mut acc).unwrap();
        assert!(o.clipped && o.norm == 5.0);
        assert!((acc[0] - 0.6).abs() < 1e-12 && (acc[1] - 0.8).abs() < 1e-12);
        assert!((acc[0] * acc[0] + acc[1] * acc[1]).sqrt() <= 1.0);
        let o = clip_and_accumulate(&[0.5, 0.0], 1.0, &mut acc).unwrap();
        assert!(!o.clipped && o.scale == 1.0);
        assert!((acc[0] - 1.1).abs() < 1e-12);
    }
}
