//! The simulation noise source: `rand_distr`'s standard normal (ziggurat) on
//! a seeded ChaCha12 stream.
//!
//! Fast (~10⁸ values/s) and reproducible, which is what experiments and
//! tests need, and **not safe for production**: textbook floating-point
//! Gaussian samples leak information through their low-order bits (Mironov
//! 2012), and a seeded stream is predictable to whoever knows the seed.

use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use rand_distr::{Distribution, StandardNormal};

use zeroize::Zeroizing;

use super::{DrawnNoise, GaussianNoise, NoiseError, NoiseKind, check_inputs};

/// Seeded floating-point Gaussian noise. NOT for production.
#[derive(Debug, Clone)]
pub struct SimulationGaussian {
    rng: ChaCha12Rng,
}

impl SimulationGaussian {
    /// A source whose whole output stream is determined by `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self {
            rng: ChaCha12Rng::seed_from_u64(seed),
        }
    }
}

impl GaussianNoise for SimulationGaussian {
    fn kind(&self) -> NoiseKind {
        NoiseKind::Simulation
    }

    fn sensitivity_inflation(&self, _dim: usize) -> f64 {
        0.0
    }

    fn add_noise(&mut self, values: &mut [f64], stddev: f64) -> Result<(), NoiseError> {
        check_inputs(values, stddev)?;
        for v in values.iter_mut() {
            let n: f64 = StandardNormal.sample(&mut self.rng);
            *v += stddev * n;
        }
        Ok(())
    }

    /// The normals `stddev·n` in the order [`Self::add_noise`] would add
    /// them (the same seed gives the same result either way).
    fn draw(&mut self, stddev: f64, dim: usize) -> Result<DrawnNoise, NoiseError> {
        check_inputs(&[], stddev)?;
        let mut values = Zeroizing::new(Vec::with_capacity(dim));
        for _ in 0..dim {
            let n: f64 = StandardNormal.sample(&mut self.rng);
            values.push(stddev * n);
        }
        Ok(DrawnNoise::additive(stddev, values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_noise_different_seed_different_noise() {
        let mut a = vec![0.0; 64];
        let mut b = vec![0.0; 64];
        let mut c = vec![0.0; 64];
        SimulationGaussian::seeded(7)
            .add_noise(&mut a, 1.0)
            .unwrap();
        SimulationGaussian::seeded(7)
            .add_noise(&mut b, 1.0)
            .unwrap();
        SimulationGaussian::seeded(8)
            .add_noise(&mut c, 1.0)
            .unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            SimulationGaussian::seeded(1).sensitivity_inflation(1000),
            0.0
        );
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let mut s = SimulationGaussian::seeded(1);
        assert_eq!(
            s.add_noise(&mut [1.0], -1.0),
            Err(NoiseError::InvalidStddev(-1.0))
        );
        assert_eq!(
            s.add_noise(&mut [f64::INFINITY], 1.0),
            Err(NoiseError::NonFinite { index: 0 })
        );
    }
}
