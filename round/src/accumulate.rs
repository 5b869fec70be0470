//! Accumulation: the running `f64` sum of one round attempt.
//!
//! [`RoundSum::add`] re-clips every update to the round's `C` (the server
//! never trusts a client's clipping). It takes a `fedsec_privacy::Measured`
//! update: validation (NaN/Inf) and the norm are computed before the caller
//! takes any lock around the sum, so a lock covers one pass of
//! `sum[i] += scale·v[i]`. A rejected update leaves the sum untouched.
//! Memory is O(model), independent of the number of updates.

use fedsec_privacy::{ClipError, Measured};

/// What adding one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Added {
    /// L2 norm as received.
    pub norm: f64,
    /// Whether the coordinator had to clip it.
    pub clipped: bool,
    /// The adaptive-clipping bit counted for it: the client's claim that its
    /// update was within C, and false whenever the coordinator had to clip.
    pub within_clip: bool,
}

/// Why an update could not be added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AddError {
    /// NaN or infinity at the given position (caught by `Measured::new`
    /// before the update gets here; kept so the mapping is total).
    #[error("update value {index} is NaN or infinite")]
    NonFinite {
        /// Position of the first offending value.
        index: usize,
    },
    /// Wrong length.
    #[error("update has {actual} values, the model has {expected}")]
    Dimension {
        /// Model dimension.
        expected: usize,
        /// Received.
        actual: usize,
    },
    /// The clip norm is unusable (a bug: it is validated at job creation).
    #[error("invalid clip norm {0}")]
    ClipNorm(f64),
}

/// The running sum of one round attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundSum {
    sum: Vec<f64>,
    accepted: u64,
    clipped: u64,
    within_clip: u64,
}

impl RoundSum {
    /// An empty sum of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        Self {
            sum: vec![0.0; dim],
            accepted: 0,
            clipped: 0,
            within_clip: 0,
        }
    }

    /// Re-clips a validated, measured update to `clip_norm` and adds it in
    /// one pass. On error the sum is unchanged.
    pub fn add(
        &mut self,
        update: &Measured<'_>,
        clip_norm: f64,
        claims_within_clip: bool,
    ) -> Result<Added, AddError> {
        let outcome = update
            .clip_into(clip_norm, &mut self.sum)
            .map_err(|e| match e {
                ClipError::LengthMismatch { expected, actual } => {
                    AddError::Dimension { expected, actual }
                }
                ClipError::InvalidClipNorm(c) => AddError::ClipNorm(c),
                ClipError::NonFinite { index } => AddError::NonFinite { index },
            })?;
        let within = claims_within_clip && !outcome.clipped;
        self.accepted += 1;
        self.clipped += u64::from(outcome.clipped);
        self.within_clip += u64::from(within);
        Ok(Added {
            norm: outcome.norm,
            clipped: outcome.clipped,
            within_clip: within,
        })
    }

    /// Updates added.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Updates the coordinator had to clip.
    pub fn clipped(&self) -> u64 {
        self.clipped
    }

    /// Updates counted as within the clip norm (adaptive clipping's count).
    pub fn within_clip(&self) -> u64 {
        self.within_clip
    }

    /// Fraction of added updates that were clipped (0 when none were added).
    pub fn clipped_fraction(&self) -> f64 {
        if self.accepted == 0 {
            0.0
        } else {
            self.clipped as f64 / self.accepted as f64
        }
    }

    /// The sum, consuming the accumulator.
    pub fn into_sum(self) -> Vec<f64> {
        self.sum
    }

    /// The sum so far.
    pub fn sum(&self) -> &[f64] {
        &self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_reclipped_and_wrong_sizes_leave_the_sum_alone() {
        let m = |v: &'static [f32]| Measured::new(v).unwrap();
        let mut s = RoundSum::new(2);
        let a = s.add(&m(&[3.0, 4.0]), 1.0, true).unwrap();
        assert!(a.clipped && !a.within_clip);
        assert!((a.norm - 5.0).abs() < 1e-12);
        let b = s.add(&m(&[0.1, 0.0]), 1.0, true).unwrap();
        assert!(!b.clipped && b.within_clip);
        let before = s.sum().to_vec();
        assert_eq!(
            s.add(&m(&[1.0]), 1.0, true),
            Err(AddError::Dimension {
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(s.sum(), &before[..]);
        assert_eq!((s.accepted(), s.clipped(), s.within_clip()), (2, 1, 1));
        let norm = (s.sum()[0] - 0.1f32 as f64).hypot(s.sum()[1]);
        assert!(norm <= 1.0 && norm > 1.0 - 1e-9, "{norm}");
        assert_eq!(s.clipped_fraction(), 0.5);
    }
}
