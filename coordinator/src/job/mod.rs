//! A job at run time and the task that drives its rounds.
//!
//! [`JobRuntime`] holds what serving needs without touching the database:
//! the published model (with receipt), the open round, the state and the
//! privacy history. The driver ([`driver`]) is the per-job loop implementing
//! ARCHITECTURE.md "One round" around the synchronous round core
//! (`fedsec_round`): it adds async, locks, the store and the wire.
//!
//! - [`driver`]: the loop and its step (plan, select, collect, close,
//!   release, commit, publish);
//! - [`open`]: selecting a planned round's cohort and opening the attempt;
//! - [`noise`]: the attempt's noise, drawn while the round collects updates;
//! - [`resolve`]: the job's parameters when it starts;
//! - [`audit`]: the canary audit of a finishing job;
//! - [`population`]: the registered tenants against the declared population;
//! - [`screen`]: the update screen (config, histories, reference direction).
//!
//! Admin actions that change a job (pause, rollback) take the job's commit
//! lock, so they never interleave with a round's close, release and commit.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use fedsec_privacy::{EmpiricalAudit, GaussianNoise, RoundCharge};
use fedsec_proto::tensor::TensorDigest;
use fedsec_proto::v1;
use tokio::sync::Notify;

use crate::accounting::{Receipt, audit_to_proto, noise_source};
use crate::canary::{CanarySet, CanaryStatistics};
use crate::config::JobSpec;
use crate::error::Error;
use crate::round::OpenRound;
use crate::store::{JobRecord, JobState, LedgerRecord, ModelVersionRecord, Resolution};

pub(crate) mod audit;
pub(crate) mod driver;
pub(crate) mod noise;
mod open;
pub(crate) mod population;
pub(crate) mod resolve;
pub(crate) mod screen;
pub(crate) mod weather;

pub(crate) use driver::{create, start};

/// A published model version held in memory.
#[derive(Debug, Clone)]
pub(crate) struct Published {
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
}

impl Published {
    /// From a stored version.
    pub(crate) fn from_record(r: ModelVersionRecord) -> Result<Self, Error> {
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
        })
    }

    /// The weights as f32.
    pub(crate) fn weights(&self) -> Vec<f32> {
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
pub(crate) struct JobStatus {
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
pub(crate) struct JobRuntime {
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
    /// The source's grid inflation at the model's dimension, computed once
    /// (reading it never waits for a draw holding the source).
    inflation: f64,
    /// Which attempts drew noise and what became of it (tests only).
    #[cfg(test)]
    pub noise_probe: Arc<noise::NoiseProbe>,
    /// Canaries of an audited job.
    pub canaries: Option<CanarySet>,
    audit: Mutex<Option<EmpiricalAudit>>,
    /// The per-canary statistics the audit was computed from (in memory
    /// only; recomputed from the store after a restart).
    audit_statistics: Mutex<Option<Arc<CanaryStatistics>>>,
    /// Whether the registered tenant count is currently outside the
    /// declared population's drift band (warned once per crossing).
    drifted: std::sync::atomic::AtomicBool,
    /// Tenants with an active identity when the last round opened.
    registered_tenants: std::sync::atomic::AtomicU64,
    /// The transient store fault holding the job, if any ([`weather`]).
    pub weather: weather::Weather,
    /// The update screen ([`screen`]).
    pub screen: screen::JobScreen,
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
    pub(crate) fn new(record: &JobRecord, current: Published, ledger: &[LedgerRecord]) -> Self {
        let charges: Vec<RoundCharge> = ledger.iter().filter_map(|e| e.charge).collect();
        let (epsilon_pld, epsilon_rdp) = ledger
            .last()
            .map_or((0.0, 0.0), |e| (e.epsilon_pld, e.epsilon_rdp));
        let source = noise_source(record.spec.noise_source);
        let dim = record.spec.model.num_params();
        let inflation = source.sensitivity_inflation(dim);
        Self {
            dim,
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
            noise: Arc::new(Mutex::new(source)),
            inflation,
            #[cfg(test)]
            noise_probe: Arc::default(),
            canaries: CanarySet::of_job(&record.spec),
            audit: Mutex::new(None),
            audit_statistics: Mutex::new(None),
            drifted: std::sync::atomic::AtomicBool::new(false),
            registered_tenants: std::sync::atomic::AtomicU64::new(0),
            weather: weather::Weather::default(),
            screen: screen::JobScreen::new(&record.spec),
        }
    }

    /// The job's empirical audit, once computed.
    pub(crate) fn audit(&self) -> Option<EmpiricalAudit> {
        *lock(&self.audit)
    }

    pub(crate) fn set_audit(&self, audit: EmpiricalAudit) {
        *lock(&self.audit) = Some(audit);
    }

    /// The canary statistics of this process's audit of the job, if it ran here.
    pub(crate) fn audit_statistics(&self) -> Option<Arc<CanaryStatistics>> {
        lock(&self.audit_statistics).clone()
    }

    pub(crate) fn set_audit_statistics(&self, stats: CanaryStatistics) {
        *lock(&self.audit_statistics) = Some(Arc::new(stats));
    }

    /// The job id.
    pub(crate) fn id(&self) -> &str {
        &self.spec.id
    }

    /// A snapshot of the status.
    pub(crate) fn status(&self) -> JobStatus {
        lock(&self.status).clone()
    }

    /// Current state.
    pub(crate) fn state(&self) -> JobState {
        lock(&self.status).state
    }

    pub(crate) fn set_state(&self, state: JobState, reason: &str) {
        let mut s = lock(&self.status);
        s.state = state;
        s.reason = reason.to_owned();
    }

    /// The published model.
    pub(crate) fn current(&self) -> Arc<Published> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn publish(&self, p: Published) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(p);
    }

    /// The open round, if any.
    pub(crate) fn open_round(&self) -> Option<Arc<OpenRound>> {
        self.round.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_round(&self, r: Option<Arc<OpenRound>>) {
        *self.round.write().unwrap_or_else(|p| p.into_inner()) = r;
    }

    /// Whether noise is added at all.
    pub(crate) fn noise_enabled(&self) -> bool {
        !self.spec.disable_noise
    }

    /// The job as the Admin API's message.
    pub(crate) fn to_proto(&self) -> v1::Job {
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

    /// The noise source's grid inflation of the sensitivity at the model's
    /// dimension (0 for a job without noise): the round core adds the `f64`
    /// sum's rounding bound to it.
    pub(crate) fn source_inflation(&self) -> f64 {
        if self.noise_enabled() {
            self.inflation
        } else {
            0.0
        }
    }

    /// Records a committed round in the status.
    pub(crate) fn record_round(&self, charge: RoundCharge, epsilon_pld: f64, epsilon_rdp: f64) {
        let mut s = lock(&self.status);
        s.rounds_completed = charge.round;
        s.charges.push(charge);
        s.epsilon_pld = epsilon_pld;
        s.epsilon_rdp = epsilon_rdp;
    }

    /// At most `max` committed charges from round `first` (1-based) on, and
    /// the number of rounds committed: one page of `GetRoundHistory`
    /// (copies only the page, never the whole history).
    pub(crate) fn charges_page(&self, first: u64, max: usize) -> (Vec<RoundCharge>, u64) {
        let s = lock(&self.status);
        let from = usize::try_from(first.saturating_sub(1)).unwrap_or(usize::MAX);
        let page = s.charges.iter().skip(from).take(max).copied().collect();
        (page, s.charges.len() as u64)
    }

    /// Rounds committed, ε (PLD) spent and the charge history.
    pub(crate) fn history(&self) -> (u64, f64, Vec<RoundCharge>) {
        let s = lock(&self.status);
        (s.rounds_completed, s.epsilon_pld, s.charges.clone())
    }
}

#[cfg(test)]
mod noise_tests;
#[cfg(test)]
mod tests;
