//! The exact parameter of the sampled distribution.
//!
//! The sampler draws from the discrete Gaussian written in base 2,
//! `P(z) ∝ 2^(−z²/T)` on `ℤ`, which is `N_ℤ(0, σ′²)` with `σ′² = T/(2 ln 2)`.
//! `T` is a binary floating-point number `t·2^e` with a 63-bit mantissa `t`,
//! chosen as the smallest such number with `T ≥ 2·L·(σ² + v)`, where
//! `L = 0xb17217f7d1cf79ac / 2^64 > ln 2` ([`LN2_UPPER`]) and `v` an extra
//! variance (the smoothing term of the noise source). Every rounding is
//! upward, so `σ′² ≥ σ² + v`, and `σ′² ≤ (σ² + v)(1 + 2^−60)`.
//!
//! Only integers are used: `σ` enters through its exact binary decomposition.

use super::DiscreteError;

/// `ceil(ln 2 · 2^64)`: `L = LN2_UPPER / 2^64` exceeds `ln 2` by less than
/// `2^−64` (checked by `ln2_upper_bound_is_tight_and_above`).
pub(crate) const LN2_UPPER: u64 = 0xb172_17f7_d1cf_79ac;

/// Smallest `σ` (in grid units) the sampler accepts.
pub const MIN_SIGMA: f64 = 1.0 / 256.0;
/// Largest `σ` (in grid units) the sampler accepts: `2^56`, so that every
/// output and every intermediate value fits the fixed-width integers.
pub const MAX_SIGMA: f64 = 72_057_594_037_927_936.0;
/// Largest extra variance accepted.
pub(crate) const MAX_EXTRA_VARIANCE: u64 = 1 << 20;

/// `T = t·2^e`, `2^62 ≤ t < 2^63`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scale {
    pub(crate) t: u64,
    pub(crate) e: i32,
}

/// A non-negative number `m·2^x` (exact, or an upper bound of what it stands for).
type Up = (u128, i32);

fn bits(m: u128) -> i32 {
    (128 - m.leading_zeros()) as i32
}

/// `m·2^(x − y)` as a multiple of `2^y`, rounded up.
fn at_exponent((m, x): Up, y: i32) -> u128 {
    if m == 0 {
        0
    } else if x >= y {
        let k = (x - y) as u32;
        debug_assert!(bits(m) + k as i32 <= 127, "left shift would overflow");
        m << k
    } else {
        let k = (y - x) as u32;
        if k >= 128 {
            u128::from(m != 0)
        } else {
            (m >> k) + u128::from(m & ((1u128 << k) - 1) != 0)
        }
    }
}

/// `a + b`, rounded up, with at most 126 significant bits.
fn add_up(a: Up, b: Up) -> Up {
    let top = [a, b]
        .iter()
        .filter(|(m, _)| *m != 0)
        .map(|&(m, x)| x + bits(m))
        .max();
    let Some(top) = top else {
        return (0, 0);
    };
    let y = top - 125;
    (at_exponent(a, y) + at_exponent(b, y), y)
}

/// `m·2^x` with exactly `n` significant bits (`n ≤ 127`), rounded up.
fn normalize_up((m, x): Up, n: i32) -> Up {
    debug_assert!(m != 0);
    let y = x + bits(m) - n;
    let r = at_exponent((m, x), y);
    if bits(r) > n {
        // the rounding carried into a new bit: r = 2^n exactly
        (r >> 1, y + 1)
    } else {
        (r, y)
    }
}

impl Scale {
    /// The scale for `N_ℤ(0, σ′²)` with `σ′² ≥ sigma² + extra_variance`
    /// (both in grid units), `sigma ∈ [MIN_SIGMA, MAX_SIGMA]`.
    pub(crate) fn new(sigma: f64, extra_variance: u64) -> Result<Self, DiscreteError> {
        if !(sigma.is_finite() && (MIN_SIGMA..=MAX_SIGMA).contains(&sigma)) {
            return Err(DiscreteError::SigmaOutOfRange(sigma));
        }
        if extra_variance > MAX_EXTRA_VARIANCE {
            return Err(DiscreteError::SigmaOutOfRange(sigma));
        }
        // sigma = m·2^q exactly (a normal f64 in this range).
        let raw = sigma.to_bits();
        let exp = ((raw >> 52) & 0x7ff) as i32;
        let m = u128::from((raw & ((1u64 << 52) - 1)) | (1u64 << 52));
        let q = exp - 1075;
        let var = add_up((m * m, 2 * q), (u128::from(extra_variance), 0));
        let (mv, xv) = normalize_up(var, 64);
        // T ≥ 2·(LN2_UPPER/2^64)·var = mv·LN2_UPPER·2^(xv − 63)
        let p = mv * u128::from(LN2_UPPER);
        let (t, e) = normalize_up((p, xv - 63), 63);
        Ok(Self { t: t as u64, e })
    }

    /// `T` as an `f64` (rounded; for reports and tests, never for sampling).
    pub(crate) fn t_f64(&self) -> f64 {
        self.t as f64 * 2f64.powi(self.e)
    }

    /// `σ′ = √(T / (2 ln 2))` as an `f64` (rounded; for reports and tests).
    pub(crate) fn sigma_f64(&self) -> f64 {
        (self.t_f64() / (2.0 * std::f64::consts::LN_2)).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// floor(ln 2 · 2^k) for k ≤ 120 from ln 2 = Σ_{j≥1} 1/(j·2^j), with every
    /// term floored at 2^−124 and the tail after 120 terms bounded by 2^−120.
    fn ln2_floor_bits(k: u32) -> (u128, u128) {
        let scale = 124u32;
        let mut lo: u128 = 0;
        for j in 1..=120u32 {
            lo += (1u128 << (scale - j)) / u128::from(j);
        }
        // each floor lost < 1 unit; the tail Σ_{j>120} 1/(j 2^j) < 2^−120/121
        let hi = lo + 120 + (1u128 << (scale - 120));
        (lo >> (scale - k), hi >> (scale - k))
    }

    #[test]
    fn ln2_upper_bound_is_tight_and_above() {
        let (lo, hi) = ln2_floor_bits(64);
        // floor(ln2·2^64) is pinned down and LN2_UPPER is one more.
        assert_eq!(lo, hi);
        assert_eq!(lo + 1, u128::from(LN2_UPPER));
        assert!((LN2_UPPER as f64 / 2f64.powi(64) - std::f64::consts::LN_2).abs() < 1e-15);
    }

    #[test]
    fn scale_bounds_the_variance_from_above_and_tightly() {
        for &(sigma, extra) in &[
            (1.0, 0u64),
            (1.5, 0),
            (0.3, 0),
            (MIN_SIGMA, 0),
            (MIN_SIGMA, 64),
            (3.0, 64),
            (1099511627776.0, 64), // 2^40
            (1234.5678e9, 64),
            (MAX_SIGMA, 0),
            (MAX_SIGMA, 64),
        ] {
            let s = Scale::new(sigma, extra).unwrap();
            assert!(s.t >= 1 << 62 && s.t < 1 << 63, "{s:?}");
            // σ′²/(σ² + v) − 1 in [0, 2^−60], checked in f64 with slack for
            // the f64 evaluation itself (~1e-15).
            let ratio = s.sigma_f64().powi(2) / (sigma * sigma + extra as f64);
            assert!((ratio - 1.0).abs() < 1e-14, "σ = {sigma}: ratio {ratio}");
        }
    }

    #[test]
    fn scale_is_an_upper_bound_exactly() {
        // Exact check for σ = 3, v = 64: T ≥ 2·L·73 with L = LN2_UPPER/2^64,
        // i.e. t·2^e·2^63 ≥ 73·LN2_UPPER, and one ulp less would fail.
        let s = Scale::new(3.0, 64).unwrap();
        let need = 73u128 * u128::from(LN2_UPPER); // times 2^−63
        let have = |t: u64| -> bool {
            // t·2^(e + 63) ≥ need
            let sh = s.e + 63;
            assert!(sh >= 0);
            (u128::from(t) << sh) >= need
        };
        assert!(have(s.t));
        assert!(!have(s.t - 1));
    }

    #[test]
    fn out_of_range_sigmas_are_refused() {
        for bad in [
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            MIN_SIGMA / 2.0,
            MAX_SIGMA * 2.0,
        ] {
            assert!(matches!(
                Scale::new(bad, 0),
                Err(DiscreteError::SigmaOutOfRange(_))
            ));
        }
        assert!(Scale::new(1.0, MAX_EXTRA_VARIANCE + 1).is_err());
    }
}
