//! The vectorised loops behind [`crate::clip`]: the sum of squares of `f32`
//! values in `f64`, and `acc[i] += s·v[i]` into an `f64` accumulator.
//!
//! On x86-64 with AVX2 and FMA (detected at run time; the dispatch and the
//! intrinsics come from `pulp`, so this crate stays free of `unsafe`) the sum
//! of squares runs as four interleaved streams over the four quarters of the
//! vector, eight 4-wide `f64` partial sums in all: the four streams keep
//! enough loads in flight to read at DRAM speed, and the eight independent
//! FMA chains hide the FMA latency when the vector is in cache
//! (`benches/benches/aggregation.rs` measures both regimes). Elsewhere the
//! portable loops are written so LLVM vectorises them for the baseline target.
//!
//! # Summation depth (for the rounding bound in [`crate::clip`])
//!
//! Every path sums the squares (exact in `f64`: a square of an `f32` has at
//! most 48 significant bits) into partial sums of at most `⌈n/8⌉` terms each,
//! then combines the partial sums with at most 8 further additions on the way
//! from any term to the result, so every computed sum of squares is the exact
//! sum with each term carried through at most `⌈n/8⌉ + 8` roundings. FMA
//! rounds once where a multiply and an add would round twice, so it only
//! tightens this.

/// Sum of the squares of `v` in `f64`; non-finite exactly when an element is
/// NaN or ±∞ (the largest finite square is ~1.2e77, so no finite input
/// overflows below 2⁹⁰⁰ elements).
pub(crate) fn sum_squares(v: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return x86::sum_squares(simd, v);
    }
    portable::sum_squares(v)
}

/// `acc[i] += s · v[i]` in `f64` (`s = 1` is a plain add). The slices have
/// equal lengths (checked by the caller).
pub(crate) fn add_scaled(acc: &mut [f64], v: &[f32], s: f64) {
    debug_assert_eq!(acc.len(), v.len());
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return x86::add_scaled(simd, acc, v, s);
    }
    portable::add_scaled(acc, v, s);
}

/// Loops for any target, shaped for LLVM's auto-vectoriser.
pub(crate) mod portable {
    const LANES: usize = 8;

    /// Eight independent lanes, a pairwise reduction (depth `⌈n/8⌉ + 3`).
    #[inline(always)]
    pub(crate) fn sum_squares(v: &[f32]) -> f64 {
        let mut acc = [0.0f64; LANES];
        let (blocks, tail) = v.as_chunks::<LANES>();
        for b in blocks {
            for (a, &x) in acc.iter_mut().zip(b) {
                let x = f64::from(x);
                *a += x * x;
            }
        }
        for (a, &x) in acc.iter_mut().zip(tail) {
            let x = f64::from(x);
            *a += x * x;
        }
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
    }

    /// `acc[i] += s·v[i]`, or a plain add when `s == 1` (bit-identical:
    /// `1·x == x`, but the multiply costs time in cache).
    #[inline(always)]
    pub(crate) fn add_scaled(acc: &mut [f64], v: &[f32], s: f64) {
        if s == 1.0 {
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += f64::from(x);
            }
        } else {
            for (a, &x) in acc.iter_mut().zip(v) {
                *a += s * f64::from(x);
            }
        }
    }
}

/// AVX2 + FMA versions, entered through `pulp`'s safe runtime dispatch.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use pulp::x86::V3;
    use pulp::{cast, f64x4};

    /// Interleaved streams over the quarters of the vector.
    const STREAMS: usize = 4;
    /// Elements each stream consumes per step (two 4-wide partial sums).
    const STEP: usize = 8;

    #[inline(always)]
    fn square_into(simd: V3, q: &[f32; 4], acc: f64x4) -> f64x4 {
        let x = simd.convert_f32x4_to_f64x4(cast(*q));
        simd.mul_add_f64x4(x, x, acc)
    }

    #[inline(always)]
    fn lanes(v: f64x4) -> [f64; 4] {
        cast(v)
    }

    /// Depth: each of the 32 `f64` lanes sums `seg/8 ≤ ⌈n/32⌉` squares; the
    /// lanes are combined pairwise (depth 5), the portable tail sum
    /// (< 4·8 + 4 elements, depth ≤ 8) is added last (depth + 1).
    pub(crate) fn sum_squares(simd: V3, v: &[f32]) -> f64 {
        simd.vectorize(
            #[inline(always)]
            || {
                let seg = v.len() / STREAMS / STEP * STEP;
                let (body, tail) = v.split_at(seg * STREAMS);
                let (q0, rest) = body.split_at(seg);
                let (q1, rest) = rest.split_at(seg);
                let (q2, q3) = rest.split_at(seg);
                let zero = simd.splat_f64x4(0.0);
                let mut acc = [zero; 2 * STREAMS];
                let blocks = q0
                    .as_chunks::<STEP>()
                    .0
                    .iter()
                    .zip(q1.as_chunks::<STEP>().0)
                    .zip(q2.as_chunks::<STEP>().0)
                    .zip(q3.as_chunks::<STEP>().0);
                for (((b0, b1), b2), b3) in blocks {
                    for (k, b) in [b0, b1, b2, b3].into_iter().enumerate() {
                        let (quads, _) = b.as_chunks::<4>();
                        acc[2 * k] = square_into(simd, &quads[0], acc[2 * k]);
                        acc[2 * k + 1] = square_into(simd, &quads[1], acc[2 * k + 1]);
                    }
                }
                // 8 vectors -> 1 (depth 3), 4 lanes -> 1 (depth 2).
                let mut l: [[f64; 4]; 8] = acc.map(lanes);
                for width in [4, 2, 1] {
                    for i in 0..width {
                        let hi = l[i + width];
                        for (a, b) in l[i].iter_mut().zip(hi) {
                            *a += b;
                        }
                    }
                }
                let [a, b, c, d] = l[0];
                ((a + c) + (b + d)) + super::portable::sum_squares(tail)
            },
        )
    }

    /// `acc[i] += s·v[i]` with one FMA per element (plain add when `s == 1`).
    pub(crate) fn add_scaled(simd: V3, acc: &mut [f64], v: &[f32], s: f64) {
        simd.vectorize(
            #[inline(always)]
            || {
                if s == 1.0 {
                    super::portable::add_scaled(acc, v, 1.0);
                    return;
                }
                let sv = simd.splat_f64x4(s);
                let (a4, a_tail) = acc.as_chunks_mut::<4>();
                let (v4, v_tail) = v.as_chunks::<4>();
                for (a, q) in a4.iter_mut().zip(v4) {
                    let x = simd.convert_f32x4_to_f64x4(cast(*q));
                    *a = cast(simd.mul_add_f64x4(sv, x, cast(*a)));
                }
                for (a, &x) in a_tail.iter_mut().zip(v_tail) {
                    *a = s.mul_add(f64::from(x), *a);
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sum of squares with compensated (TwoSum) summation: the reference.
    fn reference(v: &[f32]) -> f64 {
        let (mut s, mut c) = (0.0f64, 0.0f64);
        for &x in v {
            let y = f64::from(x) * f64::from(x);
            let t = s + y;
            let e = if s.abs() >= y.abs() {
                (s - t) + y
            } else {
                (y - t) + s
            };
            s = t;
            c += e;
        }
        s + c
    }

    fn vector(n: usize, seed: u64) -> Vec<f32> {
        // splitmix64 -> values over many magnitudes, both signs
        let mut z = seed;
        (0..n)
            .map(|_| {
                z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut x = z;
                x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                x ^= x >> 31;
                let m = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                m * 2f32.powi(((x >> 8) % 24) as i32 - 12)
            })
            .collect()
    }

    fn sizes() -> Vec<usize> {
        let mut n: Vec<usize> = (0..80).collect();
        n.extend([255, 256, 257, 1000, 4099, 65_536 + 13, 300_007, 1 << 20]);
        n
    }

    #[test]
    fn every_path_is_within_the_documented_depth() {
        for n in sizes() {
            let v = vector(n, n as u64);
            let exact = reference(&v);
            let depth = (n.div_ceil(8) + 8) as f64;
            let bound = depth * f64::EPSILON / 2.0 * 1.01 * exact;
            let mut paths = vec![("portable", portable::sum_squares(&v))];
            #[cfg(target_arch = "x86_64")]
            if let Some(simd) = pulp::x86::V3::try_new() {
                paths.push(("avx2", x86::sum_squares(simd, &v)));
            }
            for (name, got) in paths {
                assert!(
                    (got - exact).abs() <= bound,
                    "{name}, n = {n}: {got} vs {exact} (bound {bound})"
                );
            }
        }
    }

    #[test]
    fn every_element_counts_and_bad_ones_poison_the_sum() {
        for n in sizes().into_iter().filter(|&n| n > 0 && n < 5000) {
            for i in [0, n / 3, n / 2, n - 1] {
                let mut v = vec![0.0f32; n];
                v[i] = 3.0;
                assert_eq!(sum_squares(&v), 9.0, "n = {n}, i = {i}");
                v[i] = f32::NAN;
                assert!(sum_squares(&v).is_nan(), "n = {n}, i = {i}");
                v[i] = f32::NEG_INFINITY;
                assert!(sum_squares(&v).is_infinite(), "n = {n}, i = {i}");
            }
        }
    }

    #[test]
    fn scaled_adds_agree_across_paths() {
        for n in sizes().into_iter().filter(|&n| n < 5000) {
            let v = vector(n, 7 + n as u64);
            let base: Vec<f64> = vector(n, 99).into_iter().map(f64::from).collect();
            for s in [1.0, 0.37] {
                let mut want = base.clone();
                portable::add_scaled(&mut want, &v, s);
                let mut got = base.clone();
                add_scaled(&mut got, &v, s);
                for ((w, g), (b, &x)) in want.iter().zip(&got).zip(base.iter().zip(&v)) {
                    // FMA rounds once, the portable loop twice.
                    let tol = f64::EPSILON * (b.abs() + (s * f64::from(x)).abs());
                    assert!((w - g).abs() <= tol, "n = {n}, s = {s}: {w} vs {g}");
                }
            }
        }
    }
}
