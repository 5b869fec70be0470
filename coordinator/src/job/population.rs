//! The registered tenants against a job's declared population: a metric, a
//! warning when they drift apart, a note when they are back.

use crate::engine::Engine;

use super::JobRuntime;

/// Relative drift of the registered tenant count from the declared
/// population: `(registered − population) / population`.
pub(crate) fn population_drift(population: u64, registered_tenants: u64) -> f64 {
    (registered_tenants as f64 - population as f64) / (population.max(1) as f64)
}

/// Compares the registered tenants with the declared population before each
/// round: the metric always, a warning (log and audit event) when the drift
/// first exceeds the job's `population_drift`, and a note when it is back
/// within it. Privacy does not depend on this (q is each tenant's inclusion
/// probability whatever the count); the fixed denominator q × population
/// only matches the expected number of reports when the population is right.
pub(crate) async fn check_population(engine: &Engine, job: &JobRuntime, registered_tenants: u64) {
    use std::sync::atomic::Ordering;
    let Some(population) = job.spec.population else {
        return;
    };
    job.registered_tenants
        .store(registered_tenants, Ordering::Relaxed);
    let drift = population_drift(population, registered_tenants);
    engine.metrics.set_population(job.id(), population, drift);
    let outside = drift.abs() > job.spec.population_drift;
    if job.drifted.swap(outside, Ordering::SeqCst) == outside {
        return;
    }
    if outside {
        engine.metrics.population_drift_warning(job.id());
        let detail = format!(
            "{registered_tenants} tenant(s) registered, the job is sized for population = \
             {population} (drift {:+.1}% > ±{:.1}%): the fixed denominator q × population no \
             longer matches the expected number of reports, so each released update is scaled \
             by about {:.2}; privacy is unaffected",
            drift * 100.0,
            job.spec.population_drift * 100.0,
            registered_tenants as f64 / population as f64,
        );
        tracing::warn!(
            job = job.id(),
            population,
            registered_tenants,
            drift,
            "registered tenants drift from the declared population: {detail}"
        );
        if let Err(e) = super::weather::audit(engine, job, "population_drift", detail).await {
            tracing::error!(job = job.id(), error = %e, "cannot record the population drift");
        }
    } else {
        tracing::info!(
            job = job.id(),
            population,
            registered_tenants,
            drift,
            "registered tenants are back within the declared population's drift band"
        );
    }
}
