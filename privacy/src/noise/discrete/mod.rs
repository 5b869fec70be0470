//! fedsec's exact discrete Gaussian sampler: integer output, fixed-width
//! integer arithmetic, ChaCha20 randomness, tens of millions of values per
//! second per core.
//!
//! # The distribution
//!
//! [`DiscreteGaussian`] draws from the discrete Gaussian on `ℤ`,
//! `P(z) = 2^(−z²/T) / Σ_y 2^(−y²/T)`, i.e. `N_ℤ(0, σ′²)` with
//! `σ′² = T/(2 ln 2)`. `T = t·2^e` (63-bit `t`) is the smallest such number
//! with `T ≥ 2·L·σ²` for a rational `L > ln 2`, so `σ ≤ σ′ ≤ σ(1 + 2^−60)`
//! ([`scale`]). The output is conditioned on `|z| ≤ cap` (`cap ≥` the point
//! where `x(z) = z²/T ≥ 1024`), which excludes less than `2^−960` of the mass.
//!
//! # Why base 2
//!
//! Writing the weights as powers of two makes a *dyadic* envelope possible:
//! blocks of `2^s` integers (`2^s ≈ σ/64`) with envelope `2^−⌊x⌋`, chosen by
//! an alias table with integer weights ([`table`]). What remains are
//! acceptances `2^−y` for rational `y`, sampled exactly by the
//! Canonne–Kamath–Steinke Bernoulli-exponential construction with
//! `Bernoulli(ln 2)` as a factory ([`sampler`]). No step evaluates a
//! transcendental function, in floating point or otherwise: every decision is
//! a comparison of random bits with an integer or a rational, exactly.
//!
//! # Cost
//!
//! About 1.27 trials per value at large σ (1.38 at σ ≈ 3). A trial draws
//! the block, the first 8 bits of the two uniforms it compares (alias and
//! coarse step) in one go, then — if the block is accepted — the `s` raw
//! low-order bits, the fine step's 8 bits and the sign in one go: ~80 random
//! bits (1.2 ChaCha20 words) per value at σ = 2^40. See the crate README for
//! measured rates and what bounds them.

mod bits;
mod sampler;
pub mod scale;
mod table;

use std::fmt;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use thiserror::Error;

use self::bits::Bits;
use self::scale::Scale;
use self::table::{Layout, Table};

/// Why a sampler could not be built or seeded.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DiscreteError {
    /// `σ` (in grid units) is not within the supported range.
    #[error(
        "discrete Gaussian scale {0} (grid units) is outside [{min}, {max}]",
        min = scale::MIN_SIGMA,
        max = scale::MAX_SIGMA
    )]
    SigmaOutOfRange(f64),
    /// The sampler's tables cannot be laid out for these parameters.
    #[error("discrete Gaussian tables: {0}")]
    Layout(String),
    /// The operating system's random number generator failed.
    #[error("operating-system randomness unavailable: {0}")]
    Entropy(String),
}

/// A ChaCha20 stream of random bits for the samplers.
///
/// [`SamplerRng::from_os`] is the production constructor. A seeded stream is
/// predictable to whoever knows the seed: tests and reproducible
/// experiments only.
pub struct SamplerRng {
    bits: Bits<ChaCha20Rng>,
}

impl fmt::Debug for SamplerRng {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // never print key material or buffered bits
        f.debug_struct("SamplerRng").finish_non_exhaustive()
    }
}

impl SamplerRng {
    /// A stream keyed from the operating system (`getrandom`).
    pub fn from_os() -> Result<Self, DiscreteError> {
        let rng = ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng)
            .map_err(|e| DiscreteError::Entropy(e.to_string()))?;
        Ok(Self::from_chacha(rng))
    }

    /// A stream determined by `seed` (tests and experiments only).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_chacha(ChaCha20Rng::from_seed(seed))
    }

    /// A stream determined by `seed` (tests and experiments only).
    pub fn seed_from_u64(seed: u64) -> Self {
        Self::from_chacha(ChaCha20Rng::seed_from_u64(seed))
    }

    pub(crate) fn from_chacha(rng: ChaCha20Rng) -> Self {
        Self {
            bits: Bits::new(rng),
        }
    }

    /// Counters of the work done so far.
    pub fn stats(&self) -> SamplerStats {
        SamplerStats {
            words: self.bits.words(),
            trials: self.bits.trials,
            tail_trials: self.bits.tail_trials,
        }
    }

    /// Overwrites the key, the ChaCha20 state and the buffered bits (best
    /// effort: `rand_chacha` offers no zeroizing drop, so the state is
    /// replaced in place by a stream with an all-zero key).
    pub fn wipe(&mut self) {
        *self.bits.source_mut() = ChaCha20Rng::from_seed([0; 32]);
        self.bits.clear();
    }
}

/// Work counters of a [`SamplerRng`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SamplerStats {
    /// 64-bit ChaCha20 words consumed.
    pub words: u64,
    /// Rejection-sampling trials started.
    pub trials: u64,
    /// Trials that went to the tail envelope.
    pub tail_trials: u64,
}

/// The exact discrete Gaussian `N_ℤ(0, σ′²)`, `σ ≤ σ′ ≤ σ(1 + 2^−60)`.
#[derive(Debug, Clone)]
pub struct DiscreteGaussian {
    table: Table,
}

impl DiscreteGaussian {
    /// The sampler for `σ` (in output units, i.e. grid steps),
    /// `σ ∈ [MIN_SIGMA, MAX_SIGMA]` ([`scale`]).
    pub fn new(sigma: f64) -> Result<Self, DiscreteError> {
        Self::with_extra_variance(sigma, 0)
    }

    /// The sampler for variance `σ² + extra_variance` (at least).
    pub(crate) fn with_extra_variance(sigma: f64, extra: u64) -> Result<Self, DiscreteError> {
        Ok(Self {
            table: Table::new(Scale::new(sigma, extra)?, Layout::default())?,
        })
    }

    /// The sampler with a given layout (tests: every layout must give the
    /// same distribution).
    #[cfg(test)]
    pub(crate) fn with_layout(
        sigma: f64,
        block_bits: Option<u32>,
        tail_exponent: u64,
    ) -> Result<Self, DiscreteError> {
        let layout = Layout {
            block_bits,
            tail_exponent,
        };
        Ok(Self {
            table: Table::new(Scale::new(sigma, 0)?, layout)?,
        })
    }

    /// `σ′` as an `f64` (rounded; the exact parameter is [`Self::base2_scale`]).
    pub fn sigma(&self) -> f64 {
        self.table.scale.sigma_f64()
    }

    /// The exact parameter `T = t·2^e` as `(t, e)`: `P(z) ∝ 2^(−z²/T)`.
    pub fn base2_scale(&self) -> (u64, i32) {
        (self.table.scale.t, self.table.scale.e)
    }

    /// Largest magnitude this sampler outputs (the output is conditioned on
    /// `|z| ≤ cap`; the excluded mass is below `2^−960`).
    pub fn cap(&self) -> u64 {
        self.table.tail.cap
    }

    /// One value.
    #[inline]
    pub fn sample(&self, rng: &mut SamplerRng) -> i64 {
        self.table.sample(&mut rng.bits)
    }

    /// Fills `out` with independent values.
    pub fn fill(&self, rng: &mut SamplerRng, out: &mut [i64]) {
        for v in out {
            *v = self.table.sample(&mut rng.bits);
        }
    }
}

#[cfg(test)]
mod tests;
