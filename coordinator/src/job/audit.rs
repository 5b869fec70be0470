//! The canary audit of a finishing job: statistics from its published
//! versions, the estimate, and its receipt.

use std::sync::Arc;

use crate::canary::CanarySet;
use crate::engine::{Engine, now_unix_ms};
use crate::error::Error;
use crate::store::LedgerKind;

use super::{JobRuntime, Published, f32s_from_le};

/// Computes, stores and publishes the canary audit of a job that is about
/// to finish (once: a stored result is kept). The result is written with
/// the current version's receipt in one transaction, before the job is
/// marked finished, so a crash in between recomputes it on restart (it is a
/// pure function of the published versions and the seed). A failure other
/// than a shutdown is logged and the job finishes without an audit.
pub(crate) async fn run_audit(engine: &Arc<Engine>, job: &Arc<JobRuntime>) -> Result<(), Error> {
    let Some(set) = job.canaries else {
        return Ok(());
    };
    if job.audit().is_some() {
        return Ok(());
    }
    let _guard = job.commit_lock.lock().await;
    let (id, dim, delta) = (job.id().to_owned(), job.dim, job.spec.delta);
    let started = std::time::Instant::now();
    let computed = {
        let id = id.clone();
        engine
            .db(move |s| audit_statistics(s, &id, &set, dim))
            .await
    };
    let audit = match computed.and_then(|stats| {
        crate::canary::estimate(&set, &stats, delta, crate::canary::AUDIT_CONFIDENCE)
            .map(|a| (a, stats))
            .map_err(Error::Audit)
    }) {
        Ok((a, stats)) => {
            // Kept for `AdminApi::canary_statistics` (pooling over jobs):
            // recomputing is as costly as the audit itself.
            job.set_audit_statistics(stats);
            a
        }
        Err(Error::ShuttingDown) => return Err(Error::ShuttingDown),
        // A transient store fault: the driver retries the step (issue 16).
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            tracing::error!(job = %id, error = %e, "canary audit failed; the job finishes without one");
            super::weather::audit(engine, job, "canary_audit_failed", e.to_string()).await?;
            return Ok(());
        }
    };
    let current = job.current();
    let receipt = current.receipt.with_audit(audit)?;
    let audit_json = serde_json::to_string(&audit).map_err(Error::json("audit JSON"))?;
    {
        let (id, version, receipt_json) = (id.clone(), current.version, receipt.json.clone());
        engine
            .db(move |s| {
                s.record_empirical_audit(&id, version, &audit_json, &receipt_json, now_unix_ms())
            })
            .await?;
    }
    job.publish(Published {
        receipt,
        ..(*current).clone()
    });
    job.set_audit(audit);
    tracing::info!(
        job = %id,
        canaries = set.inserted,
        unseen = set.unseen,
        epsilon_one_shot_final = audit.epsilon_one_shot_final,
        epsilon_one_shot_all_iterates = audit.epsilon_one_shot_all_iterates,
        epsilon_lower_bound = audit.epsilon_lower_bound,
        seconds = started.elapsed().as_secs_f64(),
        "canary audit: empirical ε̂ {:.3} (final model), {:.3} (all iterates); ε ≥ {:.3} with confidence {}",
        audit.epsilon_one_shot_final,
        audit.epsilon_one_shot_all_iterates,
        audit.epsilon_lower_bound,
        audit.confidence,
    );
    super::weather::audit(
        engine,
        job,
        "canary_audit",
            format!(
                "{} canaries, {} unseen: one-shot ε̂ final {:.4}, all iterates {:.4}; lower bound {:.4} at confidence {} (δ = {delta})",
                set.inserted,
                set.unseen,
                audit.epsilon_one_shot_final,
                audit.epsilon_one_shot_all_iterates,
                audit.epsilon_lower_bound,
                audit.confidence
            ),
        )
        .await?;
    Ok(())
}

/// The canary statistics of a job from its published versions, reading one
/// version at a time: each committed round's delta (its version minus the
/// version it was trained on, following rollbacks in the ledger) and the
/// final delta (current version minus version 0).
pub(crate) fn audit_statistics(
    store: &dyn crate::store::Store,
    job_id: &str,
    set: &CanarySet,
    dim: usize,
) -> crate::store::StoreResult<crate::canary::CanaryStatistics> {
    use crate::store::StoreError;
    let load = |version: u64| -> crate::store::StoreResult<Vec<f32>> {
        let v = store.version(job_id, version)?.ok_or_else(|| {
            StoreError::Corrupt(format!("job {job_id:?}: version {version} is missing"))
        })?;
        let w = f32s_from_le(&v.weights);
        if w.len() != dim {
            return Err(StoreError::Corrupt(format!(
                "job {job_id:?}: version {version} has {} values, the model {dim}",
                w.len()
            )));
        }
        Ok(w)
    };
    let mut stats = crate::canary::CanaryStatistics::new(set, dim);
    let mut buf = Vec::with_capacity(dim);
    let initial = load(0)?;
    let mut base = initial.clone();
    let mut delta = vec![0.0f32; dim];
    for entry in store.ledger(job_id)? {
        let next = load(entry.model_version)?;
        if entry.kind == LedgerKind::Round {
            for ((d, n), b) in delta.iter_mut().zip(&next).zip(&base) {
                *d = n - b;
            }
            stats.observe_round(set, &delta, &mut buf);
        }
        base = next;
    }
    for ((d, n), b) in delta.iter_mut().zip(&base).zip(&initial) {
        *d = n - b;
    }
    stats.observe_final(set, &delta, &mut buf);
    Ok(stats)
}
