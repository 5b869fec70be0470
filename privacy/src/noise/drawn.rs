//! Noise drawn ahead of its use ([`GaussianNoise::draw`]).
//!
//! The noise of a round does not depend on the data, so it can be drawn
//! while the round collects updates and added when it closes. A
//! [`DrawnNoise`] is the noise of one vector, held until then:
//!
//! - it is consumed by [`DrawnNoise::add_to`] (it cannot be applied twice:
//!   no `Clone`, `add_to` takes it by value) and zeroized right after;
//! - dropped unused (an abandoned round attempt), its values are zeroized
//!   ([`zeroize::Zeroizing`]);
//! - its `Debug` form shows its length and kind, never a value.
//!
//! Adding drawn noise is the same mechanism as [`GaussianNoise::add_noise`]:
//! for the grid sources (`opendp`, `discrete`) every value is rounded to the
//! nearest multiple of `2^k` and an integer `Z` (the drawn discrete Gaussian,
//! in grid units) is added; for the simulation source the drawn
//! floating-point normals are added.

use zeroize::{Zeroize, Zeroizing};

use super::{NoiseBuffer, NoiseError, NoiseKind};

/// The values of one drawn noise vector.
enum Values {
    /// Integer noise in grid units (`opendp`, `discrete`).
    Grid(NoiseBuffer),
    /// Floating-point noise added as is (`simulation`).
    Additive(Zeroizing<Vec<f64>>),
}

/// One vector of noise drawn ahead of its use; zeroized after use or when
/// dropped. See the [module documentation](self).
pub struct DrawnNoise {
    values: Values,
    kind: NoiseKind,
    stddev: f64,
}

impl std::fmt::Debug for DrawnNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never print the noise
        f.debug_struct("DrawnNoise")
            .field("kind", &self.kind)
            .field("len", &self.len())
            .field("stddev", &self.stddev)
            .finish_non_exhaustive()
    }
}

impl DrawnNoise {
    /// Integer noise in grid units from a grid source.
    pub(crate) fn grid(kind: NoiseKind, stddev: f64, buffer: NoiseBuffer) -> Self {
        Self {
            values: Values::Grid(buffer),
            kind,
            stddev,
        }
    }

    /// Floating-point noise from the simulation source.
    pub(crate) fn additive(stddev: f64, values: Zeroizing<Vec<f64>>) -> Self {
        Self {
            values: Values::Additive(values),
            kind: NoiseKind::Simulation,
            stddev,
        }
    }

    /// The source that drew it.
    pub fn kind(&self) -> NoiseKind {
        self.kind
    }

    /// The standard deviation it was drawn for (real units).
    pub fn stddev(&self) -> f64 {
        self.stddev
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.values {
            Values::Grid(b) => b.len(),
            Values::Additive(v) => v.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the noise to `values` (for a grid source, after rounding every
    /// value to the grid); the noise is zeroized afterwards, also on error.
    /// Every value is checked first: on error nothing is changed.
    pub fn add_to(self, values: &mut [f64]) -> Result<(), NoiseError> {
        match self.values {
            Values::Grid(buffer) => buffer.add_to(values),
            Values::Additive(mut noise) => {
                if noise.len() != values.len() {
                    return Err(NoiseError::LengthMismatch {
                        expected: noise.len(),
                        got: values.len(),
                    });
                }
                if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                    return Err(NoiseError::NonFinite { index });
                }
                for (v, n) in values.iter_mut().zip(noise.iter()) {
                    *v += n;
                }
                noise.zeroize();
                Ok(())
            }
        }
    }

    /// Overwrites the noise with zeros in place (what dropping does).
    #[cfg(test)]
    pub(crate) fn wipe(&mut self) {
        match &mut self.values {
            Values::Grid(b) => b.wipe(),
            Values::Additive(v) => v.zeroize(),
        }
    }

    /// The values as `f64` (grid noise scaled by `2^k`), for tests.
    #[cfg(test)]
    pub(crate) fn to_f64(&self) -> Vec<f64> {
        match &self.values {
            Values::Grid(b) => {
                let step = 2f64.powi(b.grid_exponent());
                b.as_slice().iter().map(|&z| z as f64 * step).collect()
            }
            Values::Additive(v) => v.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::{DiscreteGaussianNoise, GaussianNoise, OpenDpGaussian, SimulationGaussian};

    fn sources() -> Vec<Box<dyn GaussianNoise>> {
        vec![
            Box::new(DiscreteGaussianNoise::seeded(5)),
            Box::new(OpenDpGaussian::new()),
            Box::new(SimulationGaussian::seeded(5)),
        ]
    }

    #[test]
    fn two_draws_of_one_source_differ_and_each_has_the_stddev() {
        for mut src in sources() {
            let a = src.draw(2.0, 10_000).unwrap();
            let b = src.draw(2.0, 10_000).unwrap();
            assert_eq!((a.len(), a.stddev(), a.kind()), (10_000, 2.0, src.kind()));
            let (va, vb) = (a.to_f64(), b.to_f64());
            let same = va.iter().zip(&vb).filter(|(x, y)| x == y).count();
            // P(equal) per coordinate is ~1e-13 for the grid sources at σ = 2
            assert!(same < 10, "{}: {same} equal coordinates", src.kind());
            let var = va.iter().map(|x| x * x).sum::<f64>() / va.len() as f64;
            assert!((var.sqrt() - 2.0).abs() < 0.06, "{}: {}", src.kind(), var);
        }
    }

    #[test]
    fn adding_drawn_noise_is_the_mechanism_of_add_noise() {
        // Simulation: the same seed gives the same values both ways, bit for bit.
        let mut now = vec![0.25; 1000];
        SimulationGaussian::seeded(9)
            .add_noise(&mut now, 1.5)
            .unwrap();
        let mut later = vec![0.25; 1000];
        SimulationGaussian::seeded(9)
            .draw(1.5, 1000)
            .unwrap()
            .add_to(&mut later)
            .unwrap();
        assert_eq!(now, later);
        // The grid sources round to the grid first: 0.3 → round_k(0.3) + Z·2^k.
        for mut src in [
            Box::new(DiscreteGaussianNoise::seeded(1)) as Box<dyn GaussianNoise>,
            Box::new(OpenDpGaussian::new()),
        ] {
            let d = src.draw(1.0, 100).unwrap();
            let noise = d.to_f64();
            let mut v = vec![0.3; 100];
            d.add_to(&mut v).unwrap();
            let step = 2f64.powi(-40);
            let base = (0.3 / step).round_ties_even() * step;
            for (x, n) in v.iter().zip(&noise) {
                assert_eq!(*x, base + n);
                assert_eq!((x / step).fract(), 0.0);
            }
        }
    }

    #[test]
    fn wiping_zeroes_every_value_and_errors_change_nothing() {
        for mut src in sources() {
            let mut d = src.draw(1.0, 5000).unwrap();
            assert!(d.to_f64().iter().any(|&x| x != 0.0));
            d.wipe();
            assert!(d.to_f64().iter().all(|&x| x == 0.0), "{}", src.kind());
            let d = src.draw(1.0, 3).unwrap();
            let mut v = vec![1.0, f64::NAN, 2.0];
            assert_eq!(d.add_to(&mut v), Err(NoiseError::NonFinite { index: 1 }));
            assert_eq!(v[0], 1.0);
            let d = src.draw(1.0, 3).unwrap();
            assert!(matches!(
                d.add_to(&mut [0.0; 4]),
                Err(NoiseError::LengthMismatch {
                    expected: 3,
                    got: 4
                })
            ));
        }
    }

    #[test]
    fn debug_never_shows_a_value() {
        let d = DiscreteGaussianNoise::seeded(2).draw(3.0, 4).unwrap();
        let shown = format!("{d:?}");
        assert!(shown.contains("len: 4") && !shown.contains('['), "{shown}");
    }
}
