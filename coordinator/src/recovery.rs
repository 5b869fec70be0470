//! Start-up recovery: attempts a previous run left open are abandoned (their
//! rounds restart as new attempts with fresh cohorts), registered clients
//! are reloaded, and every job resumes from its last committed version and
//! ledger — re-checked against the `[dangerous]` settings in force, with its
//! receipt restated after a rollback. Called once by
//! [`Coordinator::start`](crate::Coordinator::start) before the server
//! accepts calls.

use std::sync::Arc;

use crate::engine::Engine;
use crate::error::Error;
use crate::job::{JobRuntime, Published};

/// Crash recovery and resumption: attempts left open are abandoned (their
/// rounds restart as new attempts with fresh cohorts), then every job is
/// loaded from its last committed version and ledger.
pub(crate) async fn recover(engine: &Arc<Engine>) -> Result<(), Error> {
    let open = engine
        .db(|s| {
            s.abandon_open_attempts(
                "coordinator stopped before the attempt closed; nothing released or charged",
                crate::engine::now_unix_ms(),
            )
        })
        .await?;
    for a in &open {
        tracing::warn!(job = %a.job_id, round = a.round, attempt = a.attempt, "round attempt left open by a previous run: abandoned, nothing charged; the round restarts with a new attempt");
        engine.metrics.round_abandoned(&a.job_id);
        engine
            .audit(
                "round_abandoned",
                &a.job_id,
                "",
                format!(
                    "round {} attempt {}: left open by a previous run",
                    a.round, a.attempt
                ),
            )
            .await?;
    }
    for c in engine.db(|s| s.clients()).await? {
        engine.clients.load(&c);
    }
    for h in engine.db(|s| s.contained_tenants()).await? {
        engine.clients.set_contained(&h.tenant_id, true);
    }
    // The receipts' sum-rounding bound assumes at most `limits.max_tenants`
    // tenants: a store holding more cannot be served under this limit.
    let (tenants, max) = (
        engine.clients.tenant_count() as u64,
        engine.settings.max_tenants,
    );
    if tenants > max {
        return Err(crate::config::ConfigError::invalid(
            "limits.max_tenants",
            format!(
                "the store holds {tenants} registered tenants, more than limits.max_tenants = \
                 {max}; raise the limit (the receipts' sum-rounding bound grows with it)"
            ),
        )
        .into());
    }
    for record in engine.db(|s| s.jobs()).await? {
        let id = record.id().to_owned();
        let version = record.current_version;
        let (current, ledger) = {
            let id = id.clone();
            engine
                .db(move |s| Ok((s.version(&id, version)?, s.ledger(&id)?)))
                .await?
        };
        let current = current.ok_or_else(|| Error::MissingVersion {
            job: id.clone(),
            version,
        })?;
        let runtime = Arc::new(JobRuntime::new(
            &record,
            Published::from_record(current)?,
            &ledger,
        ));
        let audit = {
            let id = id.clone();
            engine.db(move |s| s.empirical_audit(&id)).await?
        };
        if let Some((json, _)) = audit {
            let audit = serde_json::from_str(&json).map_err(|source| Error::StoredAudit {
                job: id.clone(),
                source,
            })?;
            runtime.set_audit(audit);
        }
        forbid_if_dangerous(engine, &runtime).await?;
        restate_after_rollback(&runtime, &ledger)?;
        let status = runtime.status();
        engine
            .metrics
            .set_epsilon(&id, status.epsilon_pld, status.epsilon_rdp);
        tracing::info!(job = %id, state = record.state.as_str(), rounds_completed = record.rounds_completed, version, epsilon = status.epsilon_pld, "job resumed from its last committed version");
        crate::job::start(engine, runtime);
    }
    Ok(())
}

/// Re-checks a stored, unfinished job against the `[dangerous]` settings in
/// force: a job they forbid (simulation or disabled noise without its flag)
/// is paused, in the store and in memory, with the reason; `resume` refuses
/// it while the settings forbid it.
async fn forbid_if_dangerous(engine: &Arc<Engine>, job: &Arc<JobRuntime>) -> Result<(), Error> {
    if job.state().is_finished() {
        return Ok(());
    }
    let Some(why) = job.spec.dangerous_violation(&engine.settings.dangerous) else {
        return Ok(());
    };
    let reason = format!("paused at start: the current configuration forbids this job: {why}");
    {
        let (id, r) = (job.id().to_owned(), reason.clone());
        engine
            .db(move |s| s.set_job_state(&id, crate::store::JobState::Paused, &r))
            .await?;
    }
    job.set_state(crate::store::JobState::Paused, &reason);
    tracing::warn!(job = job.id(), "{reason}");
    engine.audit("job_paused", job.id(), "", reason).await?;
    Ok(())
}

/// After a rollback the current version's stored receipt states the spend
/// when it was first published; what is served must state everything the
/// ledger has charged since. Recomputes the receipt over the full history
/// when the ledger holds more rounds than the current version's receipt.
fn restate_after_rollback(
    job: &Arc<JobRuntime>,
    ledger: &[crate::store::LedgerRecord],
) -> Result<(), Error> {
    let current = job.current();
    let charges: Vec<_> = ledger.iter().filter_map(|e| e.charge).collect();
    if current.receipt.history_rounds() >= charges.len() as u64 {
        return Ok(());
    }
    let receipt =
        crate::accounting::Receipt::compute(charges, job.spec.delta, job.noise_enabled())?
            .with_optional_audit(current.receipt.empirical_audit())?;
    job.publish(Published {
        receipt,
        ..(*current).clone()
    });
    Ok(())
}
