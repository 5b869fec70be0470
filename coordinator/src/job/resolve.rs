//! A job's round parameters, fixed when it starts: the store and the audit
//! log around the round core's [`fedsec_round::resolve`].

use std::sync::Arc;

use fedsec_round::{JobParams, resolve as resolve_params};

use crate::engine::{Engine, now_unix_ms};
use crate::error::Error;
use crate::store::Resolution;

use super::{JobRuntime, lock};

/// Fixes q, the expected cohort and the noise multipliers when the job
/// starts: from the job's declared parameters only (q and the public
/// `population`), never from who has registered, so the job starts at once.
/// Re-checks `min_clients` against the expected cohort (jobs stored by an
/// older coordinator were never checked); a job without a population that
/// never started cannot be run and fails with a clear reason.
pub(crate) async fn resolve(
    engine: &Arc<Engine>,
    job: &Arc<JobRuntime>,
) -> Result<Resolution, Error> {
    if let Some(r) = lock(&job.status).resolution {
        return Ok(r);
    }
    let spec = &job.spec;
    let n = engine.clients.selectable_tenants().len() as u64;
    let Some((q, cohort)) = spec.cohort() else {
        return Err(Error::FailedPrecondition(format!(
            "job {:?} has no declared population (it was created by an older coordinator and \
             never started); create it again with `population` set",
            job.id()
        )));
    };
    if cohort < f64::from(spec.min_clients) {
        return Err(Error::FailedPrecondition(format!(
            "the expected cohort q × population = {cohort} is below min_clients = {}",
            spec.min_clients
        )));
    }
    let params = JobParams {
        sampling_rate: q,
        expected_cohort: cohort,
        rounds: spec.rounds,
        delta: spec.delta,
        noise: (!spec.disable_noise).then(|| spec.noise_level()),
        adaptive_count_stddev: spec.clipping.adaptive.then_some(spec.clipping.count_stddev),
    };
    // Calibrating to a target ε runs the PLD accountant: off the runtime.
    let resolved = tokio::task::spawn_blocking(move || resolve_params(&params))
        .await
        .map_err(Error::task("calibration"))??;
    let (z, z_delta, count_stddev) = (
        resolved.noise_multiplier,
        resolved.update_noise_multiplier,
        resolved.count_stddev,
    );
    let res = Resolution {
        sampling_rate: q,
        expected_cohort: cohort,
        registered_at_start: n,
        noise_multiplier: z,
        update_noise_multiplier: z_delta,
        count_stddev,
        started_unix_ms: now_unix_ms(),
    };
    {
        let id = job.id().to_owned();
        engine.db(move |s| s.set_job_resolution(&id, &res)).await?;
    }
    lock(&job.status).resolution = Some(res);
    tracing::info!(
        job = job.id(),
        population = spec.population,
        registered_tenants = n,
        sampling_rate = q,
        expected_cohort = cohort,
        noise_multiplier = z,
        update_noise_multiplier = z_delta,
        count_stddev,
        "job started"
    );
    super::weather::audit(
        engine,
        job,
        "job_started",
            format!(
                "q = {q}, expected cohort = {cohort} (declared population {}, {n} tenant(s) registered), z = {z}, z_update = {z_delta}, count stddev = {count_stddev}",
                spec.population.unwrap_or(0)
            ),
        )
        .await?;
    Ok(res)
}

/// The round core's view of a stored resolution.
pub(crate) fn resolved(res: &Resolution) -> fedsec_round::Resolved {
    fedsec_round::Resolved {
        sampling_rate: res.sampling_rate,
        expected_cohort: res.expected_cohort,
        noise_multiplier: res.noise_multiplier,
        update_noise_multiplier: res.update_noise_multiplier,
        count_stddev: res.count_stddev,
    }
}
