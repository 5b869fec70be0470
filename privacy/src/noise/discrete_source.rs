//! The fast production noise source: fedsec's exact discrete Gaussian
//! ([`super::discrete`]) on the `2^k` grid, ChaCha20 keyed from the
//! operating system, filled on all cores.
//!
//! # What is added
//!
//! Like [`super::OpenDpGaussian`]: every value is rounded to the nearest
//! multiple of `2^k` (ties to even, exactly), an integer `Z` is added, and
//! the result is converted back to `f64` (a post-processing of the integer).
//! `Z ~ N_ℤ(0, σ_s²)` in grid units with `σ_s² ≥ (σ/2^k)² + 64`: the 64
//! (eight grid steps of standard deviation, `≈ 7e−12` at the default grid) is
//! a smoothing term that makes the mechanism a post-processing of the
//! continuous Gaussian mechanism with standard deviation `σ/2^k`, up to a
//! factor `1 ± 10^−540` per value (privacy/README.md, "The fast discrete
//! sampler"). The accounted sensitivity is `C + √d·2^k`, as for opendp.
//!
//! # Randomness and memory
//!
//! One master ChaCha20 stream is keyed from the operating system
//! ([`DiscreteGaussianNoise::new`], [`DiscreteGaussianNoise::reseed_from_os`]).
//! Each noise vector draws a fresh 256-bit key from it ([`NoisePlan`]);
//! chunk `c` of [`CHUNK_LEN`] values uses ChaCha20 with that key and stream
//! (nonce) `c`, so the vector is the same whatever the number of threads,
//! and a worker pool may fill chunks in any order. Keys are zeroized when a
//! plan is dropped, ChaCha20 states are overwritten after each chunk, and a
//! [`NoiseBuffer`] zeroizes its values when dropped.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::Rng;
use zeroize::{Zeroize, Zeroizing};

use super::discrete::{DiscreteError, DiscreteGaussian, SamplerRng, scale};
use super::{DrawnNoise, GaussianNoise, NoiseError, NoiseKind, check_inputs};

/// Values per independently keyed chunk (the unit of parallel work).
pub const CHUNK_LEN: usize = 1 << 16;

/// Extra variance, in grid units², added for the smoothing argument.
pub const SMOOTHING_VARIANCE: u64 = 64;

/// Grid exponents accepted.
pub const GRID_EXPONENTS: std::ops::RangeInclusive<i32> = -64..=16;

/// Largest grid value (in grid steps) a noised coordinate may have.
const MAX_GRID_VALUE: f64 = 4_611_686_018_427_387_904.0; // 2^62

fn from_discrete(e: DiscreteError) -> NoiseError {
    match e {
        DiscreteError::Entropy(m) => NoiseError::Entropy(m),
        other => NoiseError::Sampler(other.to_string()),
    }
}

/// Exact, floating-point-safe, fast Gaussian noise (config name `discrete`).
///
/// [`Default`] gives the production source keyed from the operating system
/// at its first use (so that construction cannot fail; an entropy failure is
/// then [`NoiseError::Entropy`] from [`GaussianNoise::add_noise`]).
pub struct DiscreteGaussianNoise {
    /// `None` until keyed from the operating system on first use.
    master: Option<ChaCha20Rng>,
    k: i32,
    threads: usize,
    cache: Option<(u64, Arc<DiscreteGaussian>)>,
}

impl std::fmt::Debug for DiscreteGaussianNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiscreteGaussianNoise")
            .field("grid_exponent", &self.k)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl Drop for DiscreteGaussianNoise {
    fn drop(&mut self) {
        if let Some(m) = self.master.as_mut() {
            *m = ChaCha20Rng::from_seed([0; 32]);
        }
    }
}

impl Default for DiscreteGaussianNoise {
    fn default() -> Self {
        Self {
            master: None,
            k: super::DEFAULT_GRID_EXPONENT,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cache: None,
        }
    }
}

fn os_rng() -> Result<ChaCha20Rng, NoiseError> {
    ChaCha20Rng::try_from_rng(&mut rand::rngs::SysRng)
        .map_err(|e| NoiseError::Entropy(e.to_string()))
}

impl DiscreteGaussianNoise {
    /// The production source: keyed from the operating system, grid
    /// `2^−40`, all available cores.
    pub fn new() -> Result<Self, NoiseError> {
        Self::with_grid_exponent(super::DEFAULT_GRID_EXPONENT)
    }

    /// Keyed from the operating system, on the grid `2^k ℤ`, `k ∈ [−64, 16]`.
    pub fn with_grid_exponent(k: i32) -> Result<Self, NoiseError> {
        if !GRID_EXPONENTS.contains(&k) {
            return Err(NoiseError::InvalidGridExponent(k));
        }
        let mut s = Self::default();
        s.master = Some(os_rng()?);
        s.k = k;
        Ok(s)
    }

    /// A source whose whole output is determined by `seed`, on the default
    /// grid: for tests and reproducible experiments. A seeded stream is
    /// predictable to whoever knows the seed; production uses [`Self::new`].
    pub fn seeded(seed: u64) -> Self {
        let mut s = Self::default();
        s.master = Some(ChaCha20Rng::seed_from_u64(seed));
        s
    }

    /// The same source filling on at most `threads` threads (≥ 1).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Replaces the master key with a fresh one from the operating system.
    pub fn reseed_from_os(&mut self) -> Result<(), NoiseError> {
        if let Some(old) = self.master.as_mut() {
            *old = ChaCha20Rng::from_seed([0; 32]);
        }
        self.master = Some(os_rng()?);
        Ok(())
    }

    /// The grid exponent `k`.
    pub fn grid_exponent(&self) -> i32 {
        self.k
    }

    /// The sampler for standard deviation `stddev` (real units), cached.
    fn sampler(&mut self, stddev: f64) -> Result<Arc<DiscreteGaussian>, NoiseError> {
        if !(stddev.is_finite() && stddev > 0.0) {
            return Err(NoiseError::InvalidStddev(stddev));
        }
        if let Some((bits, s)) = &self.cache
            && *bits == stddev.to_bits()
        {
            return Ok(Arc::clone(s));
        }
        // σ/2^k, exact in f64 (a power-of-two scaling) within the checked range.
        let grid_sigma = stddev * 2f64.powi(-self.k);
        if !(scale::MIN_SIGMA..=scale::MAX_SIGMA).contains(&grid_sigma) {
            return Err(NoiseError::StddevOutOfRange {
                stddev,
                grid_exponent: self.k,
            });
        }
        let s = Arc::new(
            DiscreteGaussian::with_extra_variance(grid_sigma, SMOOTHING_VARIANCE)
                .map_err(from_discrete)?,
        );
        self.cache = Some((stddev.to_bits(), Arc::clone(&s)));
        Ok(s)
    }

    /// A fresh key and the distribution for one noise vector of standard
    /// deviation `stddev` (real units).
    pub fn plan(&mut self, stddev: f64) -> Result<NoisePlan, NoiseError> {
        let sampler = self.sampler(stddev)?;
        let master = match &mut self.master {
            Some(m) => m,
            empty => empty.insert(os_rng()?),
        };
        let mut key = Zeroizing::new([0u8; 32]);
        master.fill_bytes(key.as_mut());
        Ok(NoisePlan {
            key,
            sampler,
            k: self.k,
            threads: self.threads,
        })
    }

    /// `dim` values of integer noise in grid units, drawn now (on all
    /// threads) to be added later with [`NoiseBuffer::add_to`].
    pub fn draw(&mut self, stddev: f64, dim: usize) -> Result<NoiseBuffer, NoiseError> {
        let plan = self.plan(stddev)?;
        let mut values = Zeroizing::new(vec![0i64; dim]);
        plan.fill(&mut values)?;
        Ok(NoiseBuffer { values, k: self.k })
    }
}

/// One noise vector to be: a fresh key and the distribution. Chunk `c`
/// (values `c·CHUNK_LEN ..`) is a deterministic function of the key and `c`.
pub struct NoisePlan {
    key: Zeroizing<[u8; 32]>,
    sampler: Arc<DiscreteGaussian>,
    k: i32,
    threads: usize,
}

impl std::fmt::Debug for NoisePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoisePlan")
            .field("grid_exponent", &self.k)
            .field("sigma_grid", &self.sampler.sigma())
            .finish_non_exhaustive()
    }
}

impl NoisePlan {
    /// The integer sampler (grid units).
    pub fn sampler(&self) -> &DiscreteGaussian {
        &self.sampler
    }

    /// The random stream of chunk `c`.
    pub fn chunk_rng(&self, c: u64) -> SamplerRng {
        let mut rng = ChaCha20Rng::from_seed(*self.key);
        rng.set_stream(c);
        SamplerRng::from_chacha(rng)
    }

    /// Fills chunk `c` (`out.len() ≤ CHUNK_LEN`) with noise in grid units.
    pub fn fill_chunk(&self, c: u64, out: &mut [i64]) {
        debug_assert!(out.len() <= CHUNK_LEN);
        let mut rng = self.chunk_rng(c);
        self.sampler.fill(&mut rng, out);
        rng.wipe();
    }

    /// Fills `out` (any length) with noise in grid units, on the plan's
    /// threads. Fails only if a worker thread panicked (then `out` must be
    /// discarded).
    pub fn fill(&self, out: &mut [i64]) -> Result<(), NoiseError> {
        self.for_chunks(out, |c, part| {
            self.fill_chunk(c, part);
            Ok(())
        })
    }

    /// Rounds every value to the grid and adds this plan's noise, on the
    /// plan's threads. Every value is checked before any is changed.
    pub fn add_to(&self, values: &mut [f64]) -> Result<(), NoiseError> {
        let k = self.k;
        check_grid(values, k)?;
        self.for_chunks(values, |c, part| {
            let mut rng = self.chunk_rng(c);
            let grid = Grid::new(k);
            for v in part.iter_mut() {
                let z = self.sampler.sample(&mut rng);
                *v = grid.noised(*v, z);
            }
            rng.wipe();
            Ok(())
        })
    }

    /// Runs `f(chunk index, chunk)` over `data` cut into [`CHUNK_LEN`]
    /// chunks, spread over at most `threads` scoped threads.
    fn for_chunks<T: Send>(
        &self,
        data: &mut [T],
        f: impl Fn(u64, &mut [T]) -> Result<(), NoiseError> + Sync,
    ) -> Result<(), NoiseError> {
        let chunks = data.len().div_ceil(CHUNK_LEN);
        let threads = self.threads.min(chunks).max(1);
        if threads == 1 {
            for (c, part) in data.chunks_mut(CHUNK_LEN).enumerate() {
                f(c as u64, part)?;
            }
            return Ok(());
        }
        let per_thread = chunks.div_ceil(threads);
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = data
                .chunks_mut(per_thread * CHUNK_LEN)
                .enumerate()
                .map(|(t, part)| {
                    s.spawn(move || {
                        for (j, chunk) in part.chunks_mut(CHUNK_LEN).enumerate() {
                            f((t * per_thread + j) as u64, chunk)?;
                        }
                        Ok::<(), NoiseError>(())
                    })
                })
                .collect();
            let mut result = Ok(());
            for h in handles {
                let r = h.join().unwrap_or_else(|_| {
                    Err(NoiseError::Sampler("noise worker thread panicked".into()))
                });
                if result.is_ok() {
                    result = r;
                }
            }
            result
        })
    }
}

/// Checks that every value is finite and its grid value fits.
fn check_grid(values: &[f64], k: i32) -> Result<(), NoiseError> {
    let inv = 2f64.powi(-k);
    for (index, v) in values.iter().enumerate() {
        if !v.is_finite() {
            return Err(NoiseError::NonFinite { index });
        }
        if (v * inv).round_ties_even().abs() >= MAX_GRID_VALUE {
            return Err(NoiseError::GridOverflow { index });
        }
    }
    Ok(())
}

/// The grid `2^k ℤ`: its step and inverse step (exact powers of two).
#[derive(Debug, Clone, Copy)]
struct Grid {
    step: f64,
    inv: f64,
}

impl Grid {
    fn new(k: i32) -> Self {
        Self {
            step: 2f64.powi(k),
            inv: 2f64.powi(-k),
        }
    }

    /// `(round(v/2^k) + z)·2^k`: `v` checked by [`check_grid`], `|z| ≤ 2^62`.
    #[inline]
    fn noised(&self, v: f64, z: i64) -> f64 {
        let g = (v * self.inv).round_ties_even() as i64;
        // |g| < 2^62 and |z| ≤ 2^62: no overflow.
        ((g + z) as f64) * self.step
    }
}

/// Integer noise in grid units, drawn ahead of its use; zeroized when dropped.
pub struct NoiseBuffer {
    values: Zeroizing<Vec<i64>>,
    k: i32,
}

impl std::fmt::Debug for NoiseBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the noise
        f.debug_struct("NoiseBuffer")
            .field("len", &self.values.len())
            .field("grid_exponent", &self.k)
            .finish_non_exhaustive()
    }
}

impl NoiseBuffer {
    /// The noise, in grid units.
    pub fn as_slice(&self) -> &[i64] {
        &self.values
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the buffer holds no values.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The grid exponent `k`: the noise of value `i` is `as_slice()[i]·2^k`.
    pub fn grid_exponent(&self) -> i32 {
        self.k
    }

    /// A buffer of integer noise on the grid `2^k` (`k` in [`GRID_EXPONENTS`],
    /// every `|value| ≤ 2^62`), drawn by another exact sampler (opendp).
    pub(crate) fn from_grid_values(values: Zeroizing<Vec<i64>>, k: i32) -> Self {
        debug_assert!(GRID_EXPONENTS.contains(&k));
        Self { values, k }
    }

    /// Overwrites the noise with zeros in place (what dropping does).
    #[cfg(test)]
    pub(crate) fn wipe(&mut self) {
        self.values.zeroize();
    }

    /// Rounds every value to the grid and adds the noise; the buffer is
    /// zeroized afterwards (also on error, when nothing was changed).
    pub fn add_to(mut self, values: &mut [f64]) -> Result<(), NoiseError> {
        if values.len() != self.values.len() {
            return Err(NoiseError::LengthMismatch {
                expected: self.values.len(),
                got: values.len(),
            });
        }
        check_grid(values, self.k)?;
        let grid = Grid::new(self.k);
        for (v, z) in values.iter_mut().zip(self.values.iter()) {
            *v = grid.noised(*v, *z);
        }
        self.values.zeroize();
        Ok(())
    }
}

impl GaussianNoise for DiscreteGaussianNoise {
    fn kind(&self) -> NoiseKind {
        NoiseKind::Discrete
    }

    fn sensitivity_inflation(&self, dim: usize) -> f64 {
        (dim as f64).sqrt() * 2f64.powi(self.k)
    }

    /// Replaces every value by `(round_k(value) + Z)·2^k`, `Z` the exact
    /// discrete Gaussian of [`NoisePlan`], on all threads. Every value is
    /// checked first: on error nothing is changed.
    fn add_noise(&mut self, values: &mut [f64], stddev: f64) -> Result<(), NoiseError> {
        check_inputs(values, stddev)?;
        self.plan(stddev)?.add_to(values)
    }

    /// [`DiscreteGaussianNoise::draw`] on all threads: a fresh key per call.
    fn draw(&mut self, stddev: f64, dim: usize) -> Result<DrawnNoise, NoiseError> {
        let buffer = DiscreteGaussianNoise::draw(self, stddev, dim)?;
        Ok(DrawnNoise::grid(NoiseKind::Discrete, stddev, buffer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_rounding_is_exact_with_ties_to_even() {
        // k = −3: grid 1/8. 1/16 is a tie between 0 and 1/8 → 0 (even);
        // 3/16 between 1/8 and 1/4 → 1/4 (even multiple).
        let g = Grid::new(-3);
        assert_eq!(g.noised(1.0 / 16.0, 0), 0.0);
        assert_eq!(g.noised(3.0 / 16.0, 0), 0.25);
        assert_eq!(g.noised(-3.0 / 16.0, 0), -0.25);
        assert_eq!(g.noised(0.3, 5), 0.25 + 5.0 / 8.0);
        let fine = Grid::new(-40);
        assert_eq!(fine.noised(1e-300, -1), -(2f64.powi(-40)));
        // the largest accepted grid value, plus the largest noise, stays exact-ish and finite
        let v = (MAX_GRID_VALUE - 1024.0) * 2f64.powi(-40);
        assert!(check_grid(&[v], -40).is_ok());
        assert!(fine.noised(v, 1 << 62).is_finite());
        assert_eq!(
            check_grid(&[0.0, -v * 2.0], -40),
            Err(NoiseError::GridOverflow { index: 1 })
        );
    }
}
