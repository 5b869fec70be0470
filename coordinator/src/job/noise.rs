//! The round's noise, off the critical path.
//!
//! The noise of a round does not depend on the data: as soon as an attempt
//! is open (its plan, so its stddev, is known) [`start`] draws the noise of
//! the whole model on a blocking thread — the discrete source fills on all
//! cores — while the round collects updates. At close the driver waits for
//! the draw ([`PendingNoise::wait`], usually already done) and hands it to
//! [`fedsec_round::release`], which consumes it.
//!
//! The drawn noise lives only in memory, owned by its attempt: never
//! logged (its `Debug` form shows no value), never persisted. An attempt that
//! is not released (paused, rolled back, shut down; a crash loses it with
//! the process) drops its [`PendingNoise`]; the draw's result is then
//! dropped when the draw finishes and its values are zeroized. The next
//! attempt draws afresh: noise is never reused across attempts.

use std::sync::Arc;
#[cfg(test)]
use std::sync::{Mutex, Weak};

use fedsec_round::{NoisePlan, PlannedRound, RoundNoise};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::store::Resolution;

use super::{JobRuntime, lock};

/// An attempt's noise being drawn (or drawn), not yet added.
pub(crate) struct PendingNoise {
    job_id: String,
    round: u64,
    attempt: u32,
    plan: NoisePlan,
    handle: JoinHandle<Result<AttemptNoise, Error>>,
    #[cfg(test)]
    probe: Arc<NoiseProbe>,
}

impl std::fmt::Debug for PendingNoise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingNoise")
            .field("round", &self.round)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// The drawn noise of one attempt.
struct AttemptNoise {
    noise: RoundNoise,
    /// Alive while the attempt holds its noise (see [`NoiseProbe`]).
    #[cfg(test)]
    _held: Arc<()>,
}

/// Starts drawing the noise of attempt `attempt` of `planned` on a blocking
/// thread; `None` for a job without noise.
pub(crate) fn start(
    job: &Arc<JobRuntime>,
    planned: &PlannedRound,
    res: &Resolution,
    attempt: u32,
) -> Option<PendingNoise> {
    let count_stddev = job.spec.clipping.adaptive.then_some(res.count_stddev);
    let request = planned.noise_request(job.dim, count_stddev)?;
    let round = planned.charge.round;
    let job_id = job.id().to_owned();
    let source = Arc::clone(&job.noise);
    #[cfg(test)]
    let held = job.noise_probe.drawing(round, attempt);
    let id = job_id.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let noise = RoundNoise::draw(&mut **lock(&source), request)?;
        tracing::debug!(job = %id, round, attempt, dim = request.dim, ms = started.elapsed().as_millis() as u64, "round noise drawn");
        Ok(AttemptNoise {
            noise,
            #[cfg(test)]
            _held: held,
        })
    });
    Some(PendingNoise {
        job_id,
        round,
        attempt,
        plan: request.plan,
        handle,
        #[cfg(test)]
        probe: Arc::clone(&job.noise_probe),
    })
}

impl PendingNoise {
    /// The drawn noise and the plan it was drawn for, waiting for the draw
    /// if it is not finished.
    pub(crate) async fn wait(self) -> Result<(RoundNoise, NoisePlan), Error> {
        let started = std::time::Instant::now();
        let drawn = self.handle.await.map_err(Error::task("drawing noise"))??;
        tracing::debug!(job = %self.job_id, round = self.round, attempt = self.attempt, waited_ms = started.elapsed().as_millis() as u64, "round noise ready at close");
        #[cfg(test)]
        self.probe.consumed(self.round, self.attempt);
        Ok((drawn.noise, self.plan))
    }
}

/// Test instrumentation: which attempts drew noise, whether each still
/// holds it, and which were consumed by a release.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct NoiseProbe {
    draws: Mutex<Vec<ProbeEntry>>,
}

/// One draw seen by the [`NoiseProbe`].
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct ProbeEntry {
    /// Round and attempt it was drawn for.
    pub round: u64,
    pub attempt: u32,
    /// Dead once the attempt no longer holds the noise.
    pub held: Weak<()>,
    /// Whether a release consumed it.
    pub consumed: bool,
}

#[cfg(test)]
impl NoiseProbe {
    fn drawing(&self, round: u64, attempt: u32) -> Arc<()> {
        let held = Arc::new(());
        lock(&self.draws).push(ProbeEntry {
            round,
            attempt,
            held: Arc::downgrade(&held),
            consumed: false,
        });
        held
    }

    fn consumed(&self, round: u64, attempt: u32) {
        for e in lock(&self.draws).iter_mut() {
            if (e.round, e.attempt) == (round, attempt) {
                e.consumed = true;
            }
        }
    }

    /// Every draw so far, in order.
    pub(crate) fn draws(&self) -> Vec<ProbeEntry> {
        lock(&self.draws).clone()
    }
}
