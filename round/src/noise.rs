//! The noise of one round attempt, drawn before the round closes.
//!
//! Nothing in the noise depends on the data: once a round attempt is planned
//! (its stddev is known) the caller draws it with [`RoundNoise::draw`] —
//! the coordinator on a blocking thread while the round collects updates,
//! the simulator just before [`release`](crate::release) — and hands it to
//! [`release`](crate::release), which consumes it. The seam is the same for
//! every caller and noise source: a secure aggregation plugs in here too.
//!
//! A [`RoundNoise`] is used at most once: no `Clone`, and
//! [`release`](crate::release) takes it by value. An attempt that is not
//! released (abandoned, paused, restarted) drops it, and its values are
//! zeroized ([`fedsec_privacy::DrawnNoise`]); it is never reused for another
//! attempt. Its `Debug` form shows no value.
//!
//! What is drawn is what [`release`](crate::release) adds today's way: on the
//! sum, `N(0, (z_Δ·sensitivity)²)` per coordinate (sensitivity = C′, the
//! clip norm plus the source's grid inflation plus the sum's rounding bound,
//! as planned); with adaptive clipping, one value for the centred clip count
//! with `σ_b' = σ_b · (½ + infl(1)) / ½`.

use fedsec_privacy::adaptive::COUNT_SENSITIVITY;
use fedsec_privacy::{DrawnNoise, GaussianNoise};

use crate::error::RoundError;
use crate::release::NoisePlan;

/// What to draw for one round attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseRequest {
    /// The planned noise on the sum ([`crate::PlannedRound::noise_plan`]).
    pub plan: NoisePlan,
    /// The model dimension.
    pub dim: usize,
    /// Adaptive clipping's count stddev σ_b (before the grid inflation), or
    /// `None` for a fixed clip norm.
    pub count_stddev: Option<f64>,
}

/// The stddev of the clip count's noise: σ_b scaled so that σ/Δ stays the
/// accounted 2σ_b although the grid rounding inflates Δ = ½ by `infl(1)`.
pub fn count_noise_stddev(count_stddev: f64, inflation_one: f64) -> f64 {
    count_stddev * (COUNT_SENSITIVITY + inflation_one) / COUNT_SENSITIVITY
}

/// The noise of one round attempt: consumed once by
/// [`release`](crate::release), zeroized when dropped unused.
pub struct RoundNoise {
    request: NoiseRequest,
    sum: DrawnNoise,
    count: Option<DrawnNoise>,
}

impl std::fmt::Debug for RoundNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoundNoise")
            .field("request", &self.request)
            .field("sum", &self.sum)
            .field("count", &self.count)
            .finish()
    }
}

impl RoundNoise {
    /// Draws the noise of one attempt from `source` (the sum's first, then
    /// the clip count's: the order `release` used to draw them in, so a
    /// seeded source gives the same model as before).
    pub fn draw(source: &mut dyn GaussianNoise, request: NoiseRequest) -> Result<Self, RoundError> {
        let sum = source
            .draw(request.plan.update_stddev, request.dim)
            .map_err(|source| RoundError::Noise {
                what: "sum",
                source,
            })?;
        let count = match request.count_stddev {
            Some(sigma_b) => {
                let stddev = count_noise_stddev(sigma_b, source.sensitivity_inflation(1));
                Some(source.draw(stddev, 1).map_err(|source| RoundError::Noise {
                    what: "clip count",
                    source,
                })?)
            }
            None => None,
        };
        Ok(Self {
            request,
            sum,
            count,
        })
    }

    /// What it was drawn for.
    pub fn request(&self) -> NoiseRequest {
        self.request
    }

    /// Checks it was drawn for this release, and splits it.
    pub(crate) fn take(
        self,
        plan: NoisePlan,
        dim: usize,
        count_stddev: Option<f64>,
    ) -> Result<(DrawnNoise, Option<DrawnNoise>), RoundError> {
        let asked = NoiseRequest {
            plan,
            dim,
            count_stddev,
        };
        let same = self.request.plan.update_stddev.to_bits() == plan.update_stddev.to_bits()
            && self.request.dim == dim
            && self.request.count_stddev.map(f64::to_bits) == count_stddev.map(f64::to_bits)
            && self.sum.len() == dim
            && self.count.is_some() == count_stddev.is_some();
        if !same {
            return Err(RoundError::NoiseMismatch {
                drawn: Box::new(self.request),
                asked: Box::new(asked),
            });
        }
        Ok((self.sum, self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsec_privacy::{DiscreteGaussianNoise, SimulationGaussian};

    fn request(dim: usize, count: Option<f64>) -> NoiseRequest {
        NoiseRequest {
            plan: NoisePlan { update_stddev: 2.0 },
            dim,
            count_stddev: count,
        }
    }

    #[test]
    fn a_draw_holds_the_requested_noise_and_prints_none_of_it() {
        let mut src = DiscreteGaussianNoise::seeded(4);
        let n = RoundNoise::draw(&mut src, request(10, Some(0.5))).unwrap();
        assert_eq!(n.request(), request(10, Some(0.5)));
        assert_eq!(n.sum.len(), 10);
        let count = n.count.as_ref().unwrap();
        assert_eq!(count.len(), 1);
        // σ_b' = σ_b · (½ + 2^−40)/½
        assert_eq!(count.stddev(), 0.5 * (0.5 + 2f64.powi(-40)) / 0.5);
        let shown = format!("{n:?}");
        assert!(!shown.contains('['), "{shown}");
    }

    #[test]
    fn noise_drawn_for_another_plan_is_refused() {
        let mut src = SimulationGaussian::seeded(1);
        let plan = NoisePlan { update_stddev: 2.0 };
        let draw = |src: &mut SimulationGaussian, r| RoundNoise::draw(src, r).unwrap();
        assert!(draw(&mut src, request(3, None)).take(plan, 3, None).is_ok());
        for (r, dim, count) in [
            (request(3, None), 4, None),
            (request(3, None), 3, Some(0.1)),
            (request(3, Some(0.1)), 3, None),
            (request(3, Some(0.1)), 3, Some(0.2)),
        ] {
            let e = draw(&mut src, r).take(plan, dim, count).unwrap_err();
            assert!(matches!(e, RoundError::NoiseMismatch { .. }), "{e}");
        }
        let other = NoisePlan { update_stddev: 2.5 };
        assert!(
            draw(&mut src, request(3, None))
                .take(other, 3, None)
                .is_err()
        );
    }

    #[test]
    fn an_invalid_stddev_is_a_noise_error() {
        let mut src = DiscreteGaussianNoise::seeded(4);
        let mut r = request(3, None);
        r.plan.update_stddev = f64::NAN;
        assert!(matches!(
            RoundNoise::draw(&mut src, r),
            Err(RoundError::Noise { what: "sum", .. })
        ));
    }
}
