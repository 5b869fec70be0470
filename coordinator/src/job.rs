//! A job at run time and the task that drives its rounds.
//!
//! [`JobRuntime`] holds what serving needs without touching the database:
//! the published model (with receipt), the open round, the state and the
//! privacy history. [`drive`] is the per-job loop implementing
//! ARCHITECTURE.md "One round":
//!
//! 1. **plan** — ε after this round by the accountants; past the budget the
//!    job ends `BUDGET_EXHAUSTED` (past `rounds`, `COMPLETED`);
//! 2. **select** — Poisson sampling by keyed hash over the *tenants* with
//!    an active client identity (the privacy unit is the tenant), with a
//!    fresh attempt number per attempt;
//! 3. **collect** until the deadline or until every selected tenant reported;
//! 4. **close** — the round is released whatever its realised cohort (0 or
//!    1 reports included): the noisy sum over the fixed denominator is
//!    private at any count, so no release decision looks at a count. Only a
//!    data-independent interruption (pause, rollback, shutdown; a crash
//!    leaves the attempt open) abandons the attempt: nothing released,
//!    nothing charged, the next attempt gets a fresh cohort;
//! 5. **release** — noise, fixed denominator, server optimiser ([`crate::release`]);
//! 6. **commit** the ledger entry and the model version in ONE transaction;
//! 7. **publish** in memory — only after the commit.
//!
//! Admin actions that change a job (pause, rollback) take the job's commit
//! lock, so they never interleave with steps 4–7.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use fedsec_privacy::{
    AdaptiveClipState, EmpiricalAudit, GaussianNoise, RoundCharge, accumulation_inflation,
};
use fedsec_proto::tensor::{TensorDigest, digest, le_bytes};
use fedsec_proto::v1;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::accounting::{Receipt, audit_to_proto, noise_source};
use crate::canary::CanarySet;
use crate::config::JobSpec;
use crate::engine::{Engine, now_unix_ms};
use crate::error::Error;
use crate::release::{AdaptivePlan, NoisePlan, ServerOpt, release};
use crate::round::OpenRound;
use crate::store::{
    AttemptClose, AttemptRecord, AttemptState, JobRecord, JobState, LedgerKind, LedgerRecord,
    ModelVersionRecord, Resolution, RoundCommit, VersionInfo,
};

pub mod weather;

/// A published model version held in memory.
#[derive(Debug, Clone)]
pub struct Published {
    /// Version number.
    pub version: u64,
    /// Round after which it was published (0: initial).
    pub round: u64,
    /// SHA-256 of [`Self::bytes`].
    pub sha256: TensorDigest,
    /// Little-endian f32 weights.
    pub bytes: Bytes,
    /// FedAvgM momentum after this version.
    pub momentum: Option<Vec<f32>>,
    /// Clip norm for the round after this version.
    pub clip_norm: f64,
    /// Its privacy receipt.
    pub receipt: Receipt,
    /// Publication time.
    pub created_unix_ms: i64,
}

impl Published {
    /// From a stored version.
    pub fn from_record(r: ModelVersionRecord) -> Result<Self, Error> {
        let receipt = Receipt::from_json(&r.receipt_json)?;
        let momentum = r.momentum.as_deref().map(f32s_from_le);
        Ok(Self {
            version: r.info.version,
            round: r.info.round,
            sha256: r.info.sha256,
            bytes: Bytes::from(r.weights),
            momentum,
            clip_norm: r.clip_norm,
            receipt,
            created_unix_ms: r.info.created_unix_ms,
        })
    }

    /// The weights as f32.
    pub fn weights(&self) -> Vec<f32> {
        f32s_from_le(&self.bytes)
    }
}

pub(crate) fn f32s_from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Mutable status of a job.
#[derive(Debug, Clone)]
pub struct JobStatus {
    /// State.
    pub state: JobState,
    /// Why.
    pub reason: String,
    /// Start-time parameters.
    pub resolution: Option<Resolution>,
    /// Rounds committed.
    pub rounds_completed: u64,
    /// Every committed round's charge, in order.
    pub charges: Vec<RoundCharge>,
    /// ε (PLD) spent.
    pub epsilon_pld: f64,
    /// ε (RDP) spent.
    pub epsilon_rdp: f64,
}

/// A job at run time.
pub struct JobRuntime {
    /// Definition.
    pub spec: JobSpec,
    /// Model dimension.
    pub dim: usize,
    /// Creation time.
    pub created_unix_ms: i64,
    status: Mutex<JobStatus>,
    model: RwLock<Arc<Published>>,
    round: RwLock<Option<Arc<OpenRound>>>,
    /// Wakes the driver (pause, resume, rollback, new clients, shutdown).
    pub wake: Notify,
    /// Signalled (one stored permit) each time the driver opens a round
    /// attempt; lets an in-process observer react without polling.
    pub opened: Notify,
    /// Serialises round commits with pause and rollback.
    pub commit_lock: tokio::sync::Mutex<()>,
    noise: Arc<Mutex<Box<dyn GaussianNoise>>>,
    /// Canaries of an audited job.
    pub canaries: Option<CanarySet>,
    audit: Mutex<Option<EmpiricalAudit>>,
    /// Whether the registered tenant count is currently outside the
    /// declared population's drift band (warned once per crossing).
    drifted: std::sync::atomic::AtomicBool,
    /// Tenants with an active identity when the last round opened.
    registered_tenants: std::sync::atomic::AtomicU64,
    /// The transient store fault holding the job, if any ([`weather`]).
    pub weather: weather::Weather,
}

impl std::fmt::Debug for JobRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRuntime")
            .field("id", &self.spec.id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl JobRuntime {
    /// Builds the runtime of a stored job.
    pub fn new(record: &JobRecord, current: Published, ledger: &[LedgerRecord]) -> Self {
        let charges: Vec<RoundCharge> = ledger.iter().filter_map(|e| e.charge).collect();
        let (epsilon_pld, epsilon_rdp) = ledger
            .last()
            .map_or((0.0, 0.0), |e| (e.epsilon_pld, e.epsilon_rdp));
        Self {
            dim: record.spec.model.num_params(),
            spec: record.spec.clone(),
            created_unix_ms: record.created_unix_ms,
            status: Mutex::new(JobStatus {
                state: record.state,
                reason: record.state_reason.clone(),
                resolution: record.resolution,
                rounds_completed: record.rounds_completed,
                charges,
                epsilon_pld,
                epsilon_rdp,
            }),
            model: RwLock::new(Arc::new(current)),
            round: RwLock::new(None),
            wake: Notify::new(),
            opened: Notify::new(),
            commit_lock: tokio::sync::Mutex::new(()),
            noise: Arc::new(Mutex::new(noise_source(record.spec.noise_source))),
            canaries: CanarySet::of_job(&record.spec),
            audit: Mutex::new(None),
            drifted: std::sync::atomic::AtomicBool::new(false),
            registered_tenants: std::sync::atomic::AtomicU64::new(0),
            weather: weather::Weather::default(),
        }
    }

    /// The job's empirical audit, once computed.
    pub fn audit(&self) -> Option<EmpiricalAudit> {
        *lock(&self.audit)
    }

    pub(crate) fn set_audit(&self, audit: EmpiricalAudit) {
        *lock(&self.audit) = Some(audit);
    }

    /// The job id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// A snapshot of the status.
    pub fn status(&self) -> JobStatus {
        lock(&self.status).clone()
    }

    /// Current state.
    pub fn state(&self) -> JobState {
        lock(&self.status).state
    }

    pub(crate) fn set_state(&self, state: JobState, reason: &str) {
        let mut s = lock(&self.status);
        s.state = state;
        s.reason = reason.to_owned();
    }

    /// The published model.
    pub fn current(&self) -> Arc<Published> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn publish(&self, p: Published) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
    }

    /// The open round, if any.
    pub fn open_round(&self) -> Option<Arc<OpenRound>> {
        self.round.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_round(&self, r: Option<Arc<OpenRound>>) {
        *self.round.write().unwrap_or_else(|p| p.into_inner()) = r;
    }

    /// Whether noise is added at all.
    pub fn noise_enabled(&self) -> bool {
        !self.spec.disable_noise
    }

    /// The job as the Admin API's message.
    pub fn to_proto(&self) -> v1::Job {
        let s = self.status();
        let current = self.current();
        // A fault holds only a running job: a job that has finished is held
        // by nothing, even in the instant before the fault record is cleared.
        let fault = self
            .weather
            .fault()
            .filter(|_| s.state == JobState::Running);
        let state = match s.state {
            // Held by a transient store fault (issue 16): shown, never stored.
            JobState::Running if fault.is_some() => v1::JobState::Stalled,
            JobState::Running => v1::JobState::Running,
            JobState::Paused => v1::JobState::Paused,
            JobState::Completed => v1::JobState::Completed,
            JobState::BudgetExhausted => v1::JobState::BudgetExhausted,
            JobState::Failed => v1::JobState::Failed,
        };
        let res = s.resolution;
        v1::Job {
            job_id: self.spec.id.clone(),
            config: Some(self.spec.to_proto()),
            state: state as i32,
            state_reason: s.reason,
            rounds_completed: s.rounds_completed,
            current_version: current.version,
            sampling_rate: res.map_or(0.0, |r| r.sampling_rate),
            expected_cohort: res.map_or(0.0, |r| r.expected_cohort),
            noise_multiplier: res.map_or(0.0, |r| r.noise_multiplier),
            epsilon_pld: s.epsilon_pld,
            epsilon_rdp: s.epsilon_rdp,
            created_unix_ms: self.created_unix_ms,
            audit: self.audit().as_ref().map(audit_to_proto),
            clip_norm: current.clip_norm,
            registered_tenants: self
                .registered_tenants
                .load(std::sync::atomic::Ordering::Relaxed),
            store_fault: fault.as_ref().map(weather::StoreFault::to_proto),
        }
    }

    /// The round's charge before it opens. The accounted sensitivity is
    /// `C` plus the noise source's grid inflation plus the rounding of the
    /// `f64` sum of at most `max_summands` contributions
    /// ([`accumulation_inflation`]).
    fn planned_charge(
        &self,
        round: u64,
        res: &Resolution,
        clip_norm: f64,
        max_summands: u64,
    ) -> RoundCharge {
        let inflation = if self.noise_enabled() {
            lock(&self.noise).sensitivity_inflation(self.dim)
                + accumulation_inflation(clip_norm, max_summands)
        } else {
            0.0
        };
        RoundCharge {
            round,
            sampling_rate: res.sampling_rate,
            noise_multiplier: res.update_noise_multiplier,
            clip_norm,
            sensitivity: clip_norm + inflation,
            count_stddev: res.count_stddev,
            expected_cohort: res.expected_cohort,
            committed_unix_ms: 0,
        }
    }
}

/// What the driver does next.
enum Flow {
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

async fn step(
    engine: &Arc<Engine>,
    job: &Arc<JobRuntime>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Flow, Error> {
    let res = match resolve(engine, job).await {
        Ok(res) => res,
        Err(e @ Error::Privacy(_)) => return pause_on_accountant_error(engine, job, e).await,
        Err(e) => return Err(e),
    };
    // One copy of the charge history per round (it becomes the planned one).
    let (rounds_completed, spent_pld, mut history) = {
        let s = lock(&job.status);
        (s.rounds_completed, s.epsilon_pld, s.charges.clone())
    };
    let round = rounds_completed + 1;
    if rounds_completed >= job.spec.rounds {
        run_audit(engine, job).await?;
        let reason = format!("ran all {} rounds", job.spec.rounds);
        engine.finish_job(job, JobState::Completed, &reason).await?;
        return Ok(Flow::Stop);
    }

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
    let planned = job.planned_charge(round, &res, clip_norm, max_summands);
    history.push(planned);
    let (delta, noise_on) = (job.spec.delta, job.noise_enabled());
    let receipt = match tokio::task::spawn_blocking(move || Receipt::plan(history, delta, noise_on))
        .await
        .map_err(|e| Error::Internal(format!("accounting task: {e}")))?
    {
        Ok(r) => r,
        Err(e @ Error::Privacy(_)) => return pause_on_accountant_error(engine, job, e).await,
        Err(e) => return Err(e),
    };
    if let Some(budget) = job.spec.budget()
        && receipt.epsilon_pld > budget
    {
        let reason = format!(
            "round {round} would bring ε to {:.4} > budget {budget} (δ = {delta}); {:.4} spent",
            receipt.epsilon_pld, spent_pld
        );
        run_audit(engine, job).await?;
        engine
            .finish_job(job, JobState::BudgetExhausted, &reason)
            .await?;
        return Ok(Flow::Stop);
    }

    // 2. Select: each tenant of the plan-time snapshot independently with
    // probability q, keyed on the tenant id (all of a tenant's identities
    // are one unit).
    let job_id = job.id().to_owned();
    check_population(engine, job, selectable.len() as u64).await;
    let attempt = {
        let id = job_id.clone();
        engine.db(move |s| s.next_attempt(&id, round)).await?
    };
    let selected: HashSet<String> = selectable
        .into_iter()
        .filter(|t| {
            engine
                .sampler
                .selected(&job_id, round, attempt, t, res.sampling_rate)
        })
        .collect();
    let deadline_ms = job.spec.round_deadline_ms;
    let opened = now_unix_ms();
    let deadline_unix_ms = opened + i64::try_from(deadline_ms).unwrap_or(i64::MAX / 2);
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);
    let record = AttemptRecord {
        job_id: job_id.clone(),
        round,
        attempt,
        state: AttemptState::Open,
        base_version: current.version,
        opened_unix_ms: opened,
        deadline_unix_ms,
        closed_unix_ms: None,
        selected: selected.len() as u64,
        accepted: 0,
        rejected: 0,
        note: String::new(),
    };
    engine.db(move |s| s.open_attempt(&record)).await?;
    // The store took a write: a fault holding the job is over (issue 16).
    weather::cleared(engine, job).await;
    if !job.noise_enabled() {
        tracing::warn!(job = %job_id, round, "DANGEROUS: this job publishes WITHOUT noise; its models carry no privacy guarantee");
    } else if !job.spec.noise_source.is_production_safe() {
        tracing::warn!(job = %job_id, round, source = %job.spec.noise_source, "DANGEROUS: this job uses a noise source that is not floating-point safe");
    }
    let task = v1::Task {
        job_id: job_id.clone(),
        round,
        attempt,
        base_version: current.version,
        model_spec: Some(job.spec.model.to_proto()),
        training: Some(job.spec.training_proto()),
        clip_norm,
        client_noise: Some(v1::ClientNoise {
            mode: v1::NoiseMode::Central as i32,
            stddev: 0.0,
        }),
        deadline_unix_ms,
        remaining_ms: 0,
        sampling_rate: res.sampling_rate,
        noise_multiplier: if job.noise_enabled() {
            planned.mechanism().noise_multiplier
        } else {
            0.0
        },
        delta,
        noise_enabled: job.noise_enabled(),
    };
    let open = Arc::new(OpenRound::new(
        job_id.clone(),
        round,
        attempt,
        current.version,
        clip_norm,
        job.dim,
        deadline,
        deadline_unix_ms,
        opened,
        selected,
        task,
    ));
    job.set_round(Some(open.clone()));
    job.opened.notify_one();
    tracing::info!(job = %job_id, round, attempt, selected = open.selected.len(), deadline_ms, base_version = current.version, "round opened");

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
        return Err(Error::Internal("round closed twice".into()));
    };
    let accepted = closed.sum.accepted();
    let interruption = match &cause {
        CloseCause::Interrupted(why) => Some(why.clone()),
        CloseCause::Shutdown => Some("coordinator shutting down".to_owned()),
        _ => interrupted(job, &open),
    };
    if let Some(why) = interruption {
        abandon(engine, job, round, attempt, accepted, closed.rejected, &why).await?;
        drop(guard);
        return if cause == CloseCause::Shutdown {
            Err(Error::ShuttingDown)
        } else {
            Ok(Flow::Continue)
        };
    }
    // 5. Release, whatever the number of reports: the decision above
    // depends only on data-independent facts.
    if accepted > max_summands {
        return Err(Error::Internal(format!(
            "{accepted} updates accepted, more than the {max_summands} the sum-rounding bound covers"
        )));
    }
    let clipped_fraction = closed.sum.clipped_fraction();
    let within_clip = closed.sum.within_clip();
    let sum = closed.sum.into_sum();
    let weights = current.weights();
    let momentum = current.momentum.clone();
    let noise = job.noise.clone();
    let noise_on = job.noise_enabled();
    let spec = job.spec.clone();
    let update_stddev = res.update_noise_multiplier * planned.sensitivity;
    let (canaries, sampler, canary_job) = (job.canaries, engine.sampler.clone(), job_id.clone());
    let (released, canaries_added) = tokio::task::spawn_blocking(move || {
        // Audited jobs: canaries join the clipped sum before noise, like clients.
        let mut sum = sum;
        let mut canaries_added = 0;
        if let Some(set) = canaries {
            canaries_added = set
                .insert(
                    &*sampler,
                    &canary_job,
                    round,
                    attempt,
                    res.sampling_rate,
                    clip_norm,
                    &mut sum,
                    &mut Vec::new(),
                )
                .map_err(|e| Error::Internal(format!("canary update: {e}")))?;
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
        let mut source = lock(&noise);
        let noise = noise_on.then(|| {
            (
                &mut **source as &mut dyn GaussianNoise,
                NoisePlan { update_stddev },
            )
        });
        release(
            sum,
            &weights,
            momentum.as_deref(),
            noise,
            adaptive,
            clip_norm,
            res.expected_cohort,
            ServerOpt {
                learning_rate: spec.server_optimizer.learning_rate,
                momentum: spec.server_optimizer.momentum,
            },
        )
        .map(|r| (r, canaries_added))
    })
    .await
    .map_err(|e| Error::Internal(format!("release task: {e}")))??;

    // 6. Charge, then publish: one transaction.
    let now = now_unix_ms();
    let charge = RoundCharge {
        committed_unix_ms: now,
        ..planned
    };
    let receipt = receipt.with_last_round(charge)?;
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
            note: String::new(),
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
        created_unix_ms: now,
    });
    {
        let mut s = lock(&job.status);
        s.rounds_completed = round;
        s.charges.push(charge);
        s.epsilon_pld = epsilon_pld;
        s.epsilon_rdp = epsilon_rdp;
    }
    drop(guard);
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

/// Computes, stores and publishes the canary audit of a job that is about
/// to finish (once: a stored result is kept). The result is written with
/// the current version's receipt in one transaction, before the job is
/// marked finished, so a crash in between recomputes it on restart (it is a
/// pure function of the published versions and the seed). A failure other
/// than a shutdown is logged and the job finishes without an audit.
async fn run_audit(engine: &Arc<Engine>, job: &Arc<JobRuntime>) -> Result<(), Error> {
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
            .map_err(|e| Error::Privacy(format!("canary audit: {e}")))
    }) {
        Ok(a) => a,
        Err(Error::ShuttingDown) => return Err(Error::ShuttingDown),
        // A transient store fault: the driver retries the step (issue 16).
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            tracing::error!(job = %id, error = %e, "canary audit failed; the job finishes without one");
            engine
                .audit("canary_audit_failed", &id, "", e.to_string())
                .await;
            return Ok(());
        }
    };
    let current = job.current();
    let receipt = current.receipt.with_audit(audit)?;
    let audit_json =
        serde_json::to_string(&audit).map_err(|e| Error::Internal(format!("audit JSON: {e}")))?;
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
    engine
        .audit(
            "canary_audit",
            &id,
            "",
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
        .await;
    Ok(())
}

/// The canary statistics of a job from its published versions, reading one
/// version at a time: each committed round's delta (its version minus the
/// version it was trained on, following rollbacks in the ledger) and the
/// final delta (current version minus version 0).
fn audit_statistics(
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

/// Relative drift of the registered tenant count from the declared
/// population: `(registered − population) / population`.
pub fn population_drift(population: u64, registered_tenants: u64) -> f64 {
    (registered_tenants as f64 - population as f64) / (population.max(1) as f64)
}

/// Compares the registered tenants with the declared population before each
/// round: the metric always, a warning (log and audit event) when the drift
/// first exceeds the job's `population_drift`, and a note when it is back
/// within it. Privacy does not depend on this (q is each tenant's inclusion
/// probability whatever the count); the fixed denominator q × population
/// only matches the expected number of reports when the population is right.
async fn check_population(engine: &Engine, job: &JobRuntime, registered_tenants: u64) {
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
        engine.audit("population_drift", job.id(), "", detail).await;
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
    engine.audit("job_paused", job.id(), "", reason).await;
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

#[allow(clippy::too_many_arguments)]
async fn abandon(
    engine: &Arc<Engine>,
    job: &JobRuntime,
    round: u64,
    attempt: u32,
    accepted: u64,
    rejected: u64,
    note: &str,
) -> Result<(), Error> {
    let job_id = job.id().to_owned();
    let close = AttemptClose {
        accepted,
        rejected,
        note: note.to_owned(),
        closed_unix_ms: now_unix_ms(),
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
    engine
        .audit(
            "round_abandoned",
            &job_id,
            "",
            format!("round {round} attempt {attempt}: {note}"),
        )
        .await;
    Ok(())
}

/// Fixes q, the expected cohort and the noise multipliers when the job
/// starts: from the job's declared parameters only (q and the public
/// `population`), never from who has registered, so the job starts at once.
/// Re-checks `min_clients` against the expected cohort (jobs stored by an
/// older coordinator were never checked); a job without a population that
/// never started cannot be run and fails with a clear reason.
async fn resolve(engine: &Arc<Engine>, job: &Arc<JobRuntime>) -> Result<Resolution, Error> {
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
    let count_stddev = if spec.clipping.adaptive {
        if spec.clipping.count_stddev > 0.0 {
            spec.clipping.count_stddev
        } else {
            cohort / 20.0
        }
    } else {
        0.0
    };
    let z = if spec.disable_noise {
        0.0
    } else {
        match spec.noise_level() {
            crate::config::NoiseLevel::Multiplier(z) => z,
            crate::config::NoiseLevel::TargetEpsilon(eps) => {
                let (rounds, delta) = (spec.rounds, spec.delta);
                tokio::task::spawn_blocking(move || {
                    crate::accounting::calibrate(q, rounds, delta, eps)
                })
                .await
                .map_err(|e| Error::Internal(format!("calibration task: {e}")))??
            }
        }
    };
    let z_delta = if spec.clipping.adaptive {
        fedsec_privacy::update_noise_multiplier(z, count_stddev).map_err(|e| {
            Error::Privacy(format!(
                "adaptive clipping with count_stddev {count_stddev}: {e}"
            ))
        })?
    } else {
        z
    };
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
    engine
        .audit(
            "job_started",
            job.id(),
            "",
            format!(
                "q = {q}, expected cohort = {cohort} (declared population {}, {n} tenant(s) registered), z = {z}, z_update = {z_delta}, count stddev = {count_stddev}",
                spec.population.unwrap_or(0)
            ),
        )
        .await;
    Ok(res)
}

#[cfg(test)]
mod tests;
