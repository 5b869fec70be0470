//! Gaussian noise sources: the trait the coordinator adds central noise
//! through (now, [`GaussianNoise::add_noise`], or drawn ahead,
//! [`GaussianNoise::draw`] → [`DrawnNoise`]), and its three implementations.
//!
//! - [`DiscreteGaussianNoise`] (the default, production-safe, ~150× faster
//!   than opendp): fedsec's own exact discrete Gaussian on a `2^k` grid
//!   ([`discrete`]), integer arithmetic only, ChaCha20 keyed from the
//!   operating system, filled on all cores; also gives the noise as integers
//!   in grid units ([`NoiseBuffer`], [`NoisePlan`]).
//! - [`OpenDpGaussian`] (production-safe, selectable, and the cross-check of
//!   the discrete sampler in tests): opendp's exact discrete Gaussian on the
//!   same grid, randomness from OpenSSL's `RAND_priv_bytes`. Floating-point
//!   safe: no Mironov-style attack on the low-order bits of floating-point
//!   samples.
//! - [`SimulationGaussian`]: `rand_distr`'s normal sampler on a seeded ChaCha
//!   stream, ~100× faster, reproducible, and **not safe for production** (its
//!   floating-point samples leak through their low-order bits, and a seeded
//!   stream is predictable). The coordinator refuses it unless told so
//!   explicitly (see [`NoiseKind::is_production_safe`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod discrete;
mod discrete_source;
mod drawn;
mod opendp;
mod simulation;

pub use self::discrete_source::{
    CHUNK_LEN, DiscreteGaussianNoise, GRID_EXPONENTS, NoiseBuffer, NoisePlan, SMOOTHING_VARIANCE,
};
pub use self::drawn::DrawnNoise;
pub use self::opendp::{DEFAULT_GRID_EXPONENT, OpenDpGaussian};
pub use self::simulation::SimulationGaussian;

/// Which noise source produced (or will produce) a round's noise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseKind {
    /// opendp's exact discrete Gaussian with OpenSSL randomness (the
    /// cross-check; ~150× slower than [`NoiseKind::Discrete`]).
    #[serde(rename = "opendp")]
    OpenDp,
    /// fedsec's exact discrete Gaussian with ChaCha20 keyed from the OS
    /// (default).
    #[default]
    Discrete,
    /// Seeded floating-point normal sampler for simulations only.
    Simulation,
}

impl NoiseKind {
    /// Whether this source may be used to publish models to real tenants.
    pub fn is_production_safe(&self) -> bool {
        matches!(self, NoiseKind::OpenDp | NoiseKind::Discrete)
    }

    /// The configuration / wire name: `"opendp"`, `"discrete"` or `"simulation"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NoiseKind::OpenDp => "opendp",
            NoiseKind::Discrete => "discrete",
            NoiseKind::Simulation => "simulation",
        }
    }
}

impl fmt::Display for NoiseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NoiseKind {
    type Err = NoiseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "opendp" => Ok(NoiseKind::OpenDp),
            "discrete" => Ok(NoiseKind::Discrete),
            "simulation" => Ok(NoiseKind::Simulation),
            other => Err(NoiseError::UnknownKind(other.to_string())),
        }
    }
}

/// Why noise could not be added.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NoiseError {
    /// The standard deviation is not a finite number > 0.
    #[error("noise standard deviation {0} must be a finite number > 0")]
    InvalidStddev(f64),
    /// The value at `index` is NaN or ±∞ (noise is never added to those).
    #[error("value {index} is NaN or infinite")]
    NonFinite {
        /// Position of the first offending value.
        index: usize,
    },
    /// The grid exponent is outside what the source supports (opendp:
    /// `[−1074, 64]`; the discrete source: `[−64, 16]`).
    #[error("grid exponent {0} is outside the range this noise source supports")]
    InvalidGridExponent(i32),
    /// The standard deviation is too small or too large for the discrete
    /// source on its grid (`σ/2^k` must lie in `[2^−8, 2^56]`).
    #[error(
        "noise standard deviation {stddev} is outside what the discrete sampler supports on the \
         grid 2^{grid_exponent} (σ/2^k must lie in [2^-8, 2^56])"
    )]
    StddevOutOfRange {
        /// The standard deviation asked for.
        stddev: f64,
        /// The source's grid exponent.
        grid_exponent: i32,
    },
    /// The value at `index` is too large for the noise grid (`|v|/2^k ≥ 2^62`).
    #[error("value {index} is too large for the noise grid")]
    GridOverflow {
        /// Position of the first offending value.
        index: usize,
    },
    /// A noise buffer was applied to a vector of another length.
    #[error("noise buffer holds {expected} values, the vector has {got}")]
    LengthMismatch {
        /// Length of the noise buffer.
        expected: usize,
        /// Length of the vector.
        got: usize,
    },
    /// The operating system's random number generator failed.
    #[error("operating-system randomness unavailable: {0}")]
    Entropy(String),
    /// The discrete sampler could not be set up or a worker failed.
    #[error("discrete sampler: {0}")]
    Sampler(String),
    /// opendp refused to build or run the mechanism.
    #[error("opendp {variant}: {message}")]
    OpenDp {
        /// opendp's error variant (e.g. `MakeMeasurement`, `FailedFunction`).
        variant: String,
        /// opendp's message.
        message: String,
    },
    /// An unknown noise source name in configuration.
    #[error("unknown noise source {0:?} (expected \"opendp\", \"discrete\" or \"simulation\")")]
    UnknownKind(String),
}

/// A source of i.i.d. Gaussian noise added to a vector in place.
pub trait GaussianNoise: Send {
    /// Which implementation this is.
    fn kind(&self) -> NoiseKind;
    /// Extra L2 sensitivity caused by rounding the output to the sampler's
    /// grid, for `dim` coordinates (0 if none). The accounted sensitivity of a
    /// round is `C + sensitivity_inflation(dim)`.
    fn sensitivity_inflation(&self, dim: usize) -> f64;
    /// Adds i.i.d. `N(0, stddev²)` to every coordinate, in place.
    fn add_noise(&mut self, values: &mut [f64], stddev: f64) -> Result<(), NoiseError>;
    /// Draws the noise of `dim` coordinates now, to be added later with
    /// [`DrawnNoise::add_to`]: the same mechanism as [`Self::add_noise`]
    /// (the noise does not depend on the values), so a round can draw it
    /// while it collects updates. Every call is a fresh, independent draw.
    fn draw(&mut self, stddev: f64, dim: usize) -> Result<DrawnNoise, NoiseError>;
}

pub(crate) fn check_inputs(values: &[f64], stddev: f64) -> Result<(), NoiseError> {
    if !(stddev.is_finite() && stddev > 0.0) {
        return Err(NoiseError::InvalidStddev(stddev));
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(NoiseError::NonFinite { index });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for k in [
            NoiseKind::OpenDp,
            NoiseKind::Discrete,
            NoiseKind::Simulation,
        ] {
            assert_eq!(k.to_string().parse::<NoiseKind>(), Ok(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{k}\""));
            assert_eq!(serde_json::from_str::<NoiseKind>(&json).unwrap(), k);
        }
        assert!(NoiseKind::OpenDp.is_production_safe());
        assert!(NoiseKind::Discrete.is_production_safe());
        assert!(!NoiseKind::Simulation.is_production_safe());
        assert_eq!(NoiseKind::default(), NoiseKind::Discrete);
        assert!("gaussian".parse::<NoiseKind>().is_err());
    }
}
