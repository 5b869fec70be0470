//! The per-job driver: a loop calling [`step`] and handling its error. One
//! step runs one round attempt around the round core (`fedsec_round`), which
//! makes every decision; the driver adds async, locks, the store and the wire:
//!
//! 1. **plan** — [`fedsec_round::plan`]: the charge and ε after this round;
//!    past the budget the job ends `BUDGET_EXHAUSTED` (past `rounds`,
//!    `COMPLETED`);
//! 2. **select** — Poisson sampling by keyed hash over the *tenants* with
//!    an active client identity (the privacy unit is the tenant), with a
//!    fresh attempt number per attempt;
//! 3. **collect** until the deadline or until every selected tenant
//!    reported (the open round's [`fedsec_round::RoundSum`] re-clips and
//!    accumulates each upload);
//! 4. **close** — the round is released whatever its realised cohort (0 or
//!    1 reports included): the noisy sum over the fixed denominator is
//!    private at any count, so no release decision looks at a count. Only a
//!    data-independent interruption (pause, rollback, shutdown; a crash
//!    leaves the attempt open) abandons the attempt: nothing released,
//!    nothing charged, the next attempt gets a fresh cohort;
//! 5. **release** — [`fedsec_round::release`]: the noise drawn while the
//!    round collected ([`super::noise`]), fixed denominator, server
//!    optimiser, on a blocking thread;
//! 6. **commit** the ledger entry ([`fedsec_round::PlannedRound::charge`])
//!    and the model version in ONE transaction;
//! 7. **publish** in memory — only after the commit.

use std::sync::Arc;
use std::time::Duration;

use fedsec_privacy::AdaptiveClipState;
use fedsec_proto::tensor::{digest, le_bytes};
use fedsec_round::{AdaptivePlan, Plan, PlanInput, Release, ServerOpt, release};
use tokio::sync::watch;

use crate::accounting::Receipt;
use crate::canary::CanaryDraw;
use crate::config::JobSpec;
use crate::engine::{Engine, now_unix_ms};
use crate::error::Error;
use crate::round::OpenRound;
use crate::store::{
    AttemptClose, JobState, LedgerKind, LedgerRecord, ModelVersionRecord, RoundCommit, VersionInfo,
};

use super::audit::run_audit;
use super::noise;
use super::open::open_attempt;
use super::population::check_population;
use super::resolve::{resolve, resolved};
use super::{JobRuntime, Published, weather};

/// Registers a job runtime with the engine and starts its driver (unless
/// the job is finished).
pub(crate) fn start(engine: &Arc<Engine>, job: Arc<JobRuntime>) {
    engine.insert_job(job.clone());
    if job.state().is_finished() {
        return;
    }
    engine.track_driver(tokio::spawn(drive(engine.clone(), job)));
}

/// Creates a job ([`Engine::create_job`]) and starts its driver.
pub(crate) async fn create(engine: &Arc<Engine>, spec: JobSpec) -> Result<Arc<JobRuntime>, Error> {
    let job = engine.create_job(spec).await?;
    start(engine, job.clone());
    Ok(job)
}

/// What the driver does next.
pub(crate) enum Flow {
    /// Start the next attempt now.
    Continue,
    /// Wait for a wake-up or this long.
    Wait(Duration),
    /// The job is finished.
    Stop,
}

/// Why an open round closed.
#[derive(Debug, PartialEq, Eq)]
enum CloseCause {
    Deadline,
    AllReported,
    Interrupted(String),
    Shutdown,
}

/// Drives one job until it finishes or the coordinator shuts down.
pub(crate) async fn drive(engine: Arc<Engine>, job: Arc<JobRuntime>) {
    let mut shutdown = engine.shutdown_signal();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let flow = match job.state() {
            JobState::Running => step(&engine, &job, &mut shutdown).await,
            JobState::Paused => Ok(Flow::Wait(Duration::from_secs(3600))),
            _ => return,
        };
        if flow.is_ok() {
            weather::cleared(&engine, &job).await;
        }
        match flow {
            Ok(Flow::Continue) => {}
            // Issue 16: a transient store fault pauses the job, never fails
            // it; the step re-runs after the backoff (see `weather`).
            Err(e) if e.is_transient() => {
                if !weather::wait_out(&engine, &job, "round step", &e).await {
                    return;
                }
                if let Err(e) = weather::recover(&engine, &job).await {
                    tracing::debug!(job = job.id(), error = %e, "recovery after a store fault failed; retrying");
                }
            }
            Ok(Flow::Wait(d)) => {
                tokio::select! {
                    () = job.wake.notified() => {}
                    () = tokio::time::sleep(d) => {}
                    _ = shutdown.changed() => return,
                }
            }
            Ok(Flow::Stop) | Err(Error::ShuttingDown) => return,
            Err(e) => {
                tracing::error!(job = job.id(), error = %e, "job failed");
                if let Err(w) = engine
                    .finish_job(&job, JobState::Failed, &e.to_string())
                    .await
                {
                    tracing::error!(job = job.id(), error = %w, "cannot record the job's failure; it stays RUNNING in the store and is retried on the next start");
                }
                return;
            }
        }
    }
}

/// One round attempt (see the module documentation).
async fn step(
    engine: &Arc<Engine>,
    job: &Arc<JobRuntime>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Flow, Error> {
    let res = match resolve(engine, job).await {
        Ok(res) => res,
        Err(e) if e.is_accounting() => return pause_on_accountant_error(engine, job, e).await,
        Err(e) => return Err(e),
    };
    let (rounds_completed, spent_pld, history) = job.history();
    let round = rounds_completed + 1;

    // 1. Plan. The cohort is drawn from this snapshot of the selectable
    // tenants (those with an active identity); each sends at most one
    // update. The sum's rounding, which the sensitivity carries, is bounded
    // for the public, enforced `limits.max_tenants` plus the job's inserted
    // canaries, never for a count of tenants: the receipt states C′, and a
    // C′ sized from who registered would reveal how many did.
    let current = job.current();
    let clip_norm = current.clip_norm;
    let selectable = engine.clients.selectable_tenants();
    let max_summands = engine
        .settings
        .max_tenants
        .saturating_add(job.canaries.map_or(0, |c| u64::from(c.inserted)));
    let delta = job.spec.delta;
    let input = PlanInput {
        round,
        rounds: job.spec.rounds,
        history,
        resolved: resolved(&res),
        clip_norm,
        source_inflation: job.source_inflation(),
        max_summands,
        delta,
        noise_enabled: job.noise_enabled(),
        budget: job.spec.budget(),
    };
    let decision = tokio::task::spawn_blocking(move || fedsec_round::plan(input))
        .await
        .map_err(Error::task("accounting"))?;
    let planned = match decision.map_err(Error::from) {
        Ok(Plan::Release(planned)) => *planned,
        Ok(Plan::Completed) => {
            run_audit(engine, job).await?;
            let reason = format!("ran all {} rounds", job.spec.rounds);
            engine.finish_job(job, JobState::Completed, &reason).await?;
            return Ok(Flow::Stop);
        }
        Ok(Plan::BudgetExhausted {
            round,
            epsilon,
            budget,
        }) => {
            let reason = format!(
                "round {round} would bring ε to {epsilon:.4} > budget {budget} (δ = {delta}); {spent_pld:.4} spent"
            );
            run_audit(engine, job).await?;
            engine
                .finish_job(job, JobState::BudgetExhausted, &reason)
                .await?;
            return Ok(Flow::Stop);
        }
        Err(e) if e.is_accounting() => return pause_on_accountant_error(engine, job, e).await,
        Err(e) => return Err(e),
    };

    // 2. Select and open; the attempt's noise is drawn from now on, while
    // the round collects (it does not depend on the data).
    check_population(engine, job, selectable.len() as u64).await;
    let open = open_attempt(engine, job, &res, &planned, &current, selectable).await?;
    let pending_noise = noise::start(job, &planned, &res, open.attempt);
    let job_id = job.id().to_owned();

    // 3. Collect.
    let started = std::time::Instant::now();
    let cause = loop {
        tokio::select! {
            () = tokio::time::sleep_until(open.deadline) => break CloseCause::Deadline,
            () = open.all_reported.notified(), if !job.spec.close_at_deadline => {
                if open.all_in() { break CloseCause::AllReported; }
            }
            () = job.wake.notified() => {
                if let Some(why) = interrupted(job, &open) { break CloseCause::Interrupted(why); }
            }
            _ = shutdown.changed() => break CloseCause::Shutdown,
        }
    };

    // 4. Close (under the commit lock: no pause or rollback in between).
    let guard = job.commit_lock.lock().await;
    let closed = open.close();
    job.set_round(None);
    let Some(closed) = closed else {
        return Err(Error::Internal("round closed twice"));
    };
    let attempt = open.attempt;
    let accepted = closed.sum.accepted();
    let interruption = match &cause {
        CloseCause::Interrupted(why) => Some(why.clone()),
        CloseCause::Shutdown => Some("coordinator shutting down".to_owned()),
        _ => interrupted(job, &open),
    };
    if let Some(why) = interruption {
        let abandoned = Abandoned {
            round,
            attempt,
            accepted,
            rejected: closed.rejected,
            note: why,
            contributions: closed.contributions,
        };
        // Not released: the attempt's noise is discarded (zeroized when its
        // draw finishes), never reused by another attempt.
        drop(pending_noise);
        abandon(engine, job, &abandoned).await?;
        drop(guard);
        return if cause == CloseCause::Shutdown {
            Err(Error::ShuttingDown)
        } else {
            Ok(Flow::Continue)
        };
    }
    // 5. Release, whatever the number of reports: the decision above
    // depends only on data-independent facts.
    planned.check_summands(accepted)?;
    let clipped_fraction = closed.sum.clipped_fraction();
    let within_clip = closed.sum.within_clip();
    let sum = closed.sum.into_sum();
    let weights = current.weights();
    let momentum = current.momentum.clone();
    let spec = job.spec.clone();
    // The noise drawn during the round (waits if the draw is not done).
    let drawn = match pending_noise {
        Some(pending) => Some(pending.wait().await?),
        None => None,
    };
    let (canaries, sampler, canary_job) = (job.canaries, engine.sampler.clone(), job_id.clone());
    let (released, canaries_added, reference) = tokio::task::spawn_blocking(move || {
        // Audited jobs: canaries join the clipped sum before noise, like clients.
        let mut sum = sum;
        let mut canaries_added = 0;
        if let Some(set) = canaries {
            canaries_added = set
                .insert(
                    &CanaryDraw {
                        sampler: &*sampler,
                        job_id: &canary_job,
                        round,
                        attempt,
                        q: res.sampling_rate,
                        clip_norm,
                    },
                    &mut sum,
                    &mut Vec::new(),
                )
                .map_err(|source| Error::Clip {
                    what: "a canary update",
                    source,
                })?;
        }
        let adaptive = spec.clipping.adaptive.then_some(AdaptivePlan {
            state: AdaptiveClipState {
                clip_norm,
                target_quantile: spec.clipping.target_quantile,
                learning_rate: spec.clipping.learning_rate,
                count_stddev: res.count_stddev,
            },
            within_clip,
            reports: accepted,
        });
        let released = release(
            sum,
            Release {
                weights: &weights,
                momentum: momentum.as_deref(),
                noise: drawn,
                adaptive,
                clip_norm,
                expected_cohort: res.expected_cohort,
                opt: ServerOpt {
                    learning_rate: spec.server_optimizer.learning_rate,
                    momentum: spec.server_optimizer.momentum,
                },
            },
        )?;
        // The update screen's public reference for the next round: this
        // release minus the version it trained on.
        let reference = fedsec_round::screen::Reference::between(&weights, &released.weights);
        Ok::<_, Error>((released, canaries_added, reference))
    })
    .await
    .map_err(Error::task("release"))??;

    // 6. Charge, then publish: one transaction.
    let now = now_unix_ms();
    let charged = planned.charge(now);
    let charge = charged.charge;
    let receipt = Receipt::from_statement(charged.statement)?;
    let (epsilon_pld, epsilon_rdp) = (receipt.epsilon_pld, receipt.epsilon_rdp);
    let bytes = le_bytes(&released.weights);
    let sha256 = digest(&released.weights);
    let momentum_bytes = released.momentum.as_deref().map(|m| le_bytes(m).to_vec());
    let commit = RoundCommit {
        job_id: job_id.clone(),
        round,
        attempt,
        ledger: LedgerRecord {
            seq: 0,
            kind: LedgerKind::Round,
            charge: Some(charge),
            attempt,
            epsilon_pld: receipt.epsilon_pld,
            epsilon_rdp: receipt.epsilon_rdp,
            delta,
            model_version: 0,
            participants: accepted,
            rejected: closed.rejected,
            clipped_fraction,
            note: if closed.excluded > 0 {
                format!(
                    "update screen: {} update(s) excluded (counted in rejected)",
                    closed.excluded
                )
            } else {
                String::new()
            },
            committed_unix_ms: now,
        },
        version: ModelVersionRecord {
            info: VersionInfo {
                version: 0,
                round,
                sha256,
                created_unix_ms: now,
                epsilon_pld: receipt.epsilon_pld,
            },
            weights: bytes.to_vec(),
            momentum: momentum_bytes,
            clip_norm: released.next_clip_norm,
            receipt_json: receipt.json.clone(),
        },
        participants: closed.participants,
        rejected: closed.rejected,
        contributions: closed.contributions,
    };
    // Retried in place on a transient fault (the release exists only in
    // memory); a retry first looks for an earlier try that landed.
    let commit = Arc::new(commit);
    let (seq, version) = weather::persist(engine, job, "round commit", move |s, tries| {
        if tries > 0
            && let Some(found) = weather::committed(s, &commit.job_id, round, attempt)?
        {
            return Ok(found);
        }
        s.commit_round(&commit)
    })
    .await?;

    // 7. Publish.
    job.publish(Published {
        version,
        round,
        sha256,
        bytes,
        momentum: released.momentum,
        clip_norm: released.next_clip_norm,
        receipt,
    });
    job.screen.set_reference(reference);
    job.record_round(charge, epsilon_pld, epsilon_rdp);
    drop(guard);
    engine.alerts.budget_after_round(
        &job_id,
        round,
        job.spec.budget(),
        (spent_pld, epsilon_pld),
        delta,
    );
    engine.metrics.round_committed(
        &job_id,
        started.elapsed().as_secs_f64(),
        accepted,
        clipped_fraction,
        epsilon_pld,
        epsilon_rdp,
    );
    tracing::info!(
        job = %job_id,
        round,
        attempt,
        version,
        ledger_seq = seq,
        participants = accepted,
        rejected = closed.rejected,
        screened_out = closed.excluded,
        clipped_fraction = format_args!("{clipped_fraction:.3}"),
        epsilon = format_args!("{:.4}", epsilon_pld),
        epsilon_rdp = format_args!("{:.4}", epsilon_rdp),
        delta,
        next_clip_norm = released.next_clip_norm,
        canaries = canaries_added,
        "round committed: {accepted} participant(s), {} rejected, {:.0}% clipped, ε so far {:.4} (δ = {delta})",
        closed.rejected,
        clipped_fraction * 100.0,
        epsilon_pld,
    );
    Ok(Flow::Continue)
}

/// A running job never fails on an accountant error: nothing is released
/// (no round is open yet), the job is paused with the reason, and an admin
/// may resume it once the cause is fixed.
async fn pause_on_accountant_error(
    engine: &Arc<Engine>,
    job: &Arc<JobRuntime>,
    e: Error,
) -> Result<Flow, Error> {
    let reason =
        format!("paused: the accountant could not bound this job's ε ({e}); nothing was released");
    {
        let (id, r) = (job.id().to_owned(), reason.clone());
        engine
            .db(move |s| s.set_job_state(&id, JobState::Paused, &r))
            .await?;
    }
    job.set_state(JobState::Paused, &reason);
    tracing::error!(job = job.id(), "{reason}");
    crate::alerts::job_paused(&engine.alerts, job.id(), &reason, false);
    weather::audit(engine, job, "job_paused", reason).await?;
    Ok(Flow::Continue)
}

/// Why an open round must be abandoned now, if it must.
fn interrupted(job: &JobRuntime, open: &OpenRound) -> Option<String> {
    match job.state() {
        JobState::Running => {}
        JobState::Paused => return Some("job paused".into()),
        other => return Some(format!("job {}", other.as_str())),
    }
    (job.current().version != open.base_version)
        .then(|| "model rolled back during the round".into())
}

/// A round attempt closed without a release.
struct Abandoned {
    round: u64,
    attempt: u32,
    accepted: u64,
    rejected: u64,
    note: String,
    /// Who took part (recorded without a version: nothing was published).
    contributions: Vec<crate::store::Contribution>,
}

/// Records an abandoned attempt: nothing released, nothing charged.
async fn abandon(engine: &Arc<Engine>, job: &JobRuntime, a: &Abandoned) -> Result<(), Error> {
    let job_id = job.id().to_owned();
    let Abandoned {
        round,
        attempt,
        accepted,
        rejected,
        ref note,
        ref contributions,
    } = *a;
    let close = AttemptClose {
        accepted,
        rejected,
        note: note.clone(),
        closed_unix_ms: now_unix_ms(),
        contributions: contributions.clone(),
    };
    {
        // Retried in place on a transient fault (issue 16).
        let id = job_id.clone();
        weather::persist(engine, job, "abandoning an attempt", move |s, _| {
            s.abandon_attempt(&id, round, attempt, &close)
        })
        .await?;
    }
    engine.metrics.round_abandoned(&job_id);
    tracing::info!(job = %job_id, round, attempt, accepted, rejected, "round abandoned, nothing released or charged: {note}");
    weather::audit(
        engine,
        job,
        "round_abandoned",
        format!("round {round} attempt {attempt}: {note}"),
    )
    .await?;
    Ok(())
}
