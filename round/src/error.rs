//! Why a step of the round core failed.

use fedsec_privacy::{AdaptiveError, CalibrationError, NoiseError, ReceiptError};

/// Why a step of the round core failed. Every variant keeps its source.
///
/// [`RoundError::is_accounting`] tells the failures of the privacy
/// accountant (a job's ε cannot be bounded: nothing may be released) from
/// the rest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    /// The noise multiplier for the target ε could not be calibrated.
    #[error("cannot calibrate the noise multiplier")]
    Calibration(#[source] CalibrationError),
    /// The accountant could not state ε for the round history.
    #[error("cannot compute the privacy receipt")]
    Receipt(#[source] ReceiptError),
    /// The adaptive-clipping settings leave no noise for the update.
    #[error("adaptive clipping with count_stddev {count_stddev}")]
    Adaptive {
        /// The count noise stddev σ_b.
        count_stddev: f64,
        /// Why it does not fit the total noise multiplier.
        #[source]
        source: AdaptiveError,
    },
    /// The noise source refused to noise the sum or the clip count.
    #[error("adding noise to the {what}")]
    Noise {
        /// `"sum"` or `"clip count"`.
        what: &'static str,
        /// The noise source's error.
        #[source]
        source: NoiseError,
    },
    /// The pre-drawn noise was drawn for another plan, dimension or
    /// clip-count setting than the release asks for (nothing is released).
    #[error("noise drawn for {drawn:?} cannot be added to a release of {asked:?}")]
    NoiseMismatch {
        /// What the noise was drawn for.
        drawn: Box<crate::noise::NoiseRequest>,
        /// What the release needs.
        asked: Box<crate::noise::NoiseRequest>,
    },
    /// The sum does not have the model's dimension.
    #[error("sum of {sum} values for a model of {model}")]
    Dimension {
        /// Length of the sum.
        sum: usize,
        /// Length of the model.
        model: usize,
    },
    /// The fixed denominator is not a finite number > 0.
    #[error("invalid expected cohort {0}")]
    ExpectedCohort(f64),
    /// The released model has a NaN or infinite value.
    #[error("the new model has a non-finite value at {index} (server learning rate too large?)")]
    NonFiniteModel {
        /// Position of the first offending value.
        index: usize,
    },
    /// Adaptive clipping needs the noised clip count, so noise.
    #[error("adaptive clipping without noise")]
    AdaptiveWithoutNoise,
    /// More updates were accepted than the plan's bound on summands.
    #[error(
        "{accepted} updates accepted, more than the {max_summands} the sum-rounding bound covers"
    )]
    TooManySummands {
        /// Updates in the sum.
        accepted: u64,
        /// The plan's bound.
        max_summands: u64,
    },
}

impl RoundError {
    /// Whether this is a failure of the privacy accountant (calibration,
    /// receipt or adaptive-clipping split): a job's ε cannot be bounded, so
    /// nothing may be released until the cause is fixed.
    pub fn is_accounting(&self) -> bool {
        matches!(
            self,
            Self::Calibration(_) | Self::Receipt(_) | Self::Adaptive { .. }
        )
    }
}
