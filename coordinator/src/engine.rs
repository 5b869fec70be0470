//! Shared coordinator state: the store, the metrics, the sampler, the client
//! registry and the running jobs, plus the operations the gRPC services and
//! the embedding API share (job creation, state changes, audit events).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use fedsec_proto::tensor::{digest, le_bytes};
use fedsec_proto::tls::ClientIdentity;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounting::Receipt;
use crate::aggregate::DecodePool;
use crate::config::{DangerousConfig, JobSpec};
use crate::error::{Error, RejectReason};
use crate::job::{JobRuntime, Published};
use crate::listener::Connections;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::registry::ClientRegistry;
use crate::selection::Sampler;
use crate::shares::Shares;
use crate::store::{
    ClientRecord, JobRecord, JobState, ModelVersionRecord, NewAuditEvent, Store, StoreError,
    StoreResult, VersionInfo,
};

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Settings the services need at run time.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) admins: HashSet<String>,
    pub(crate) poll_interval: Duration,
    pub(crate) upload_message_timeout: Duration,
    pub(crate) rate_limit_audit_window: Duration,
    pub(crate) download_timeout: Duration,
    pub(crate) init_weights_dir: Option<std::path::PathBuf>,
    pub(crate) max_init_weights_bytes: u64,
    /// `limits.max_tenants`: tenants that may register; sizes the
    /// receipts' sum-rounding bound.
    pub(crate) max_tenants: u64,
    pub(crate) audit_retention: AuditRetention,
    /// How much of the record of who took part is kept.
    pub(crate) contribution_retention: AuditRetention,
    pub(crate) dangerous: DangerousConfig,
}

/// How much of the audit log (or of the contributions record) is kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuditRetention {
    pub(crate) max_rows: u64,
    pub(crate) max_age: Duration,
}

/// A release signature and what it is anchored at, as served.
#[derive(Debug, Clone)]
pub(crate) struct Seal {
    /// Ed25519 signature of the release statement.
    pub(crate) signature: Vec<u8>,
    /// Id of the signing key.
    pub(crate) key_id: String,
    /// Hash of the audit row the release is anchored at. Its sequence
    /// number is not served: the gaps between versions' numbers would count
    /// each round's audit rows, refused uploads among them.
    pub(crate) audit_head: [u8; 32],
}

/// The coordinator's shared state.
pub(crate) struct Engine {
    pub(crate) release_key: Arc<fedsec_proto::release::ReleaseKey>,
    pub(crate) release_key_id: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) sampler: Arc<dyn Sampler>,
    pub(crate) pool: DecodePool,
    pub(crate) clients: ClientRegistry,
    pub(crate) settings: Settings,
    pub(crate) limits: RateLimits,
    pub(crate) shares: Arc<Shares>,
    pub(crate) connections: Arc<Connections>,
    /// The alert sink (`[alerts]`; inert without it).
    pub(crate) alerts: crate::alerts::AlertSink,
    jobs: RwLock<BTreeMap<String, Arc<JobRuntime>>>,
    shutdown: watch::Sender<bool>,
    killed: Arc<AtomicBool>,
    drivers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// What an [`Engine`] is built from, besides its store and metrics.
pub(crate) struct EngineParts {
    pub(crate) release_key: Arc<fedsec_proto::release::ReleaseKey>,
    pub(crate) sampler: Arc<dyn Sampler>,
    pub(crate) pool: DecodePool,
    pub(crate) settings: Settings,
    pub(crate) limits: RateLimits,
    pub(crate) shares: Arc<Shares>,
    pub(crate) connections: Arc<Connections>,
}

impl Engine {
    pub(crate) fn new(store: Arc<dyn Store>, metrics: Arc<Metrics>, parts: EngineParts) -> Self {
        let EngineParts {
            release_key,
            sampler,
            pool,
            settings,
            limits,
            shares,
            connections,
        } = parts;
        Self {
            release_key_id: release_key.public().key_id(),
            release_key,
            store,
            metrics,
            sampler,
            pool,
            clients: ClientRegistry::default(),
            settings,
            limits,
            shares,
            connections,
            alerts: crate::alerts::AlertSink::off(),
            jobs: RwLock::new(BTreeMap::new()),
            shutdown: watch::channel(false).0,
            killed: Arc::new(AtomicBool::new(false)),
            drivers: Mutex::new(Vec::new()),
        }
    }

    /// The engine with its alert sink.
    pub(crate) fn with_alerts(mut self, alerts: crate::alerts::AlertSink) -> Self {
        self.alerts = alerts;
        self
    }

    /// Runs a store operation on a blocking thread.
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> StoreResult<T> + Send + 'static,
    ) -> Result<T, Error> {
        let store = self.store.clone();
        let killed = self.killed.clone();
        tokio::task::spawn_blocking(move || {
            // After a simulated crash nothing more may reach the database.
            if killed.load(Ordering::SeqCst) {
                return Err(Error::ShuttingDown);
            }
            f(&*store).map_err(Error::from)
        })
        .await
        .map_err(Error::task("store"))?
    }

    /// A receiver that turns `true` when the coordinator shuts down.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Starts the graceful shutdown of drivers and servers.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Simulated crash: refuse every further call, stop every driver now.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.shutdown.send_replace(true);
        for h in self.take_drivers() {
            h.abort();
        }
    }

    /// Fails calls after [`Self::kill`] or during shutdown.
    pub(crate) fn check_alive(&self) -> Result<(), Error> {
        if self.killed.load(Ordering::SeqCst) || *self.shutdown.borrow() {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    pub(crate) fn take_drivers(&self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut *self.drivers.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The job with this id.
    pub(crate) fn job(&self, job_id: &str) -> Option<Arc<JobRuntime>> {
        self.jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(job_id)
            .cloned()
    }

    /// All jobs, newest first.
    pub(crate) fn jobs(&self) -> Vec<Arc<JobRuntime>> {
        let mut v: Vec<_> = self
            .jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            b.created_unix_ms
                .cmp(&a.created_unix_ms)
                .then_with(|| a.id().cmp(b.id()))
        });
        v
    }

    /// Wakes every job's driver (e.g. a client registered).
    pub(crate) fn wake_all(&self) {
        for j in self.jobs() {
            j.wake.notify_one();
        }
    }

    /// Registers a job runtime (its driver is started by
    /// `crate::job::start`, so the engine does not depend on the driver).
    pub(crate) fn insert_job(&self, job: Arc<JobRuntime>) {
        self.jobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.id().to_owned(), job);
    }

    /// Keeps a driver's handle so shutdown can wait for it.
    pub(crate) fn track_driver(&self, handle: JoinHandle<()>) {
        self.drivers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Appends an audit event to the tamper-evident log. A failed write is
    /// an error ([`Error::AuditLog`], `UNAVAILABLE` to a caller): the
    /// operation it records must be refused or held, not carried out
    /// unrecorded. Events a caller causes go through [`Self::audit_by`]
    /// (the row budget); a job driver's go through
    /// `crate::job::weather::audit` (the job is held until the row lands).
    pub(crate) async fn audit(
        &self,
        kind: &str,
        job_id: &str,
        client_id: &str,
        detail: String,
    ) -> Result<(), Error> {
        let event = NewAuditEvent {
            unix_ms: now_unix_ms(),
            kind: kind.to_owned(),
            job_id: job_id.to_owned(),
            client_id: client_id.to_owned(),
            detail: crate::fields::audit_detail(detail),
        };
        match self.db(move |s| s.append_audit(&event)).await {
            Ok(_) => Ok(()),
            Err(Error::Store(source)) => {
                tracing::error!(error = %source, kind, "cannot write an audit event");
                Err(Error::AuditLog {
                    kind: kind.to_owned(),
                    source,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Signs what `GetModel` and the export serve of `published` (version
    /// of `job_id`, architecture `spec`): the release statement anchored at
    /// the audit row of the version's latest release.
    pub(crate) async fn seal(
        &self,
        job_id: &str,
        spec: &fedsec_model::ModelSpec,
        published: &Published,
    ) -> Result<Seal, Error> {
        let (id, version) = (job_id.to_owned(), published.version);
        let anchor = self
            .db(move |s| s.release_anchor(&id, version))
            .await?
            .ok_or(Error::Internal(
                "a served model version has no release anchor",
            ))?;
        let statement = fedsec_proto::release::ReleaseStatement::new(
            job_id,
            published.version,
            published.round,
            spec,
            published.sha256,
            &published.receipt.json,
            anchor.hash,
        );
        Ok(Seal {
            signature: self.release_key.sign(&statement).to_vec(),
            key_id: self.release_key_id.clone(),
            audit_head: anchor.hash,
        })
    }

    /// Registers (or refreshes) a client.
    pub(crate) async fn register_client(
        &self,
        id: &ClientIdentity,
        software: &str,
    ) -> Result<ClientRecord, Error> {
        self.check_alive()?;
        self.clients.check_can_register(id)?;
        // A new tenant is admitted only below `limits.max_tenants`, checked
        // and stored under the admission lock (concurrent new tenants cannot
        // pass the cap together). The cap is what the receipts' sum-rounding
        // bound is sized from, so it must hold.
        let _admission = if self.clients.has_tenant(&id.tenant_id) {
            None
        } else {
            let guard = self.clients.admission.lock().await;
            let max = self.settings.max_tenants;
            if !self.clients.has_tenant(&id.tenant_id) && self.clients.tenant_count() as u64 >= max
            {
                return Err(Error::rejected(
                    RejectReason::TenantCapacity,
                    format!(
                        "tenant {:?} cannot register: this coordinator admits at most \
                         limits.max_tenants = {max} tenants and has admitted as many",
                        id.tenant_id
                    ),
                ));
            }
            Some(guard)
        };
        let new = self.clients.status(&id.client_id).is_none();
        let (ident, sw) = (id.clone(), software.to_owned());
        let record = self
            .db(move |s| s.upsert_client(&ident, &sw, now_unix_ms()))
            .await
            .map_err(|e| match e {
                Error::Store(StoreError::Conflict(m)) => {
                    Error::rejected(RejectReason::TenantMismatch, m)
                }
                other => other,
            })?;
        if new {
            // Recorded before the client is admitted in memory: if the row
            // cannot be written the registration is refused, and the retry
            // is new again (so the row is written then).
            self.audit(
                "client_registered",
                "",
                &id.client_id,
                format!("tenant {}, software {software:?}", id.tenant_id),
            )
            .await?;
        }
        // Never the status: an admin action may have changed it since the
        // store returned this record.
        self.clients.registered(&record);
        self.metrics.set_registered_clients(self.clients.len());
        if new {
            tracing::info!(client = %id.client_id, tenant = %id.tenant_id, software, "client registered");
            self.wake_all();
        }
        Ok(record)
    }

    /// Creates a job from a validated definition and registers it; its
    /// driver is started by `crate::job::create`.
    pub(crate) async fn create_job(
        self: &Arc<Self>,
        mut spec: JobSpec,
    ) -> Result<Arc<JobRuntime>, Error> {
        self.check_alive()?;
        if spec.id.is_empty() {
            let mut b = [0u8; 6];
            rand::fill(&mut b[..]);
            spec.id = format!("job-{}", hex::encode(b));
        }
        spec.fill_defaults();
        spec.validate("config", &self.settings.dangerous)?;
        if self.job(&spec.id).is_some() {
            return Err(Error::AlreadyExists(format!(
                "job {:?} already exists",
                spec.id
            )));
        }
        let weights = match &spec.init_weights_path {
            Some(path) => {
                let Some(dir) = self.settings.init_weights_dir.clone() else {
                    return Err(crate::config::ConfigError::invalid(
                        "config.init_weights_path",
                        "this coordinator reads no initial-weight files (init_weights_dir is not set)",
                    )
                    .into());
                };
                let (model, path) = (spec.model.clone(), path.clone());
                let max = self.settings.max_init_weights_bytes;
                tokio::task::spawn_blocking(move || {
                    crate::export::read_initial_weights(&model, &dir, &path, max)
                })
                .await
                .map_err(Error::task("weights"))?
                .map_err(|e| {
                    Error::Config(crate::config::ConfigError::invalid(
                        "config.init_weights_path",
                        e.to_string(),
                    ))
                })?
            }
            None => spec.model.init_weights(spec.init_seed),
        };
        check_accountant_feasible(&spec).await?;
        let now = now_unix_ms();
        let receipt = Receipt::compute(Vec::new(), spec.delta, !spec.disable_noise)?;
        let record = JobRecord {
            spec: spec.clone(),
            state: JobState::Running,
            state_reason: String::new(),
            created_unix_ms: now,
            resolution: None,
            rounds_completed: 0,
            current_version: 0,
            clip_norm: spec.clipping.clip_norm,
        };
        let initial = ModelVersionRecord {
            info: VersionInfo {
                version: 0,
                round: 0,
                sha256: digest(&weights),
                created_unix_ms: now,
                epsilon_pld: 0.0,
            },
            weights: le_bytes(&weights).to_vec(),
            momentum: None,
            clip_norm: spec.clipping.clip_norm,
            receipt_json: receipt.json.clone(),
        };
        // Recorded first: a job whose creation cannot be audited is not
        // created (its version 0 release row is written with it).
        self.audit(
            "job_created",
            &spec.id,
            "",
            serde_json::to_string(&spec).unwrap_or_default(),
        )
        .await?;
        {
            let (record, initial) = (record.clone(), initial.clone());
            self.db(move |s| s.insert_job(&record, &initial))
                .await
                .map_err(|e| match e {
                    Error::Store(StoreError::Conflict(m)) => Error::AlreadyExists(m),
                    other => other,
                })?;
        }
        let job = Arc::new(JobRuntime::new(
            &record,
            Published::from_record(initial)?,
            &[],
        ));
        tracing::info!(job = %spec.id, model = %spec.model, params = job.dim, rounds = spec.rounds, "job created");
        Ok(job)
    }

    /// Moves a job to a final state (store, memory, audit, log).
    pub(crate) async fn finish_job(
        &self,
        job: &JobRuntime,
        state: JobState,
        reason: &str,
    ) -> Result<(), Error> {
        let (id, r) = (job.id().to_owned(), reason.to_owned());
        // The store first, memory only after it (issue 16: a store fault
        // must never leave memory finished while the store says RUNNING).
        self.db(move |s| s.set_job_state(&id, state, &r)).await?;
        job.set_state(state, reason);
        tracing::info!(
            job = job.id(),
            state = state.as_str(),
            "job finished: {reason}"
        );
        crate::alerts::job_finished(&self.alerts, job.id(), state, reason);
        crate::job::weather::audit(
            self,
            job,
            &format!("job_{}", state.as_str().to_lowercase()),
            reason.to_owned(),
        )
        .await?;
        Ok(())
    }

    /// Flushes clients' last-seen times to the store.
    pub(crate) async fn flush_last_seen(&self) {
        let dirty = self.clients.take_dirty();
        if dirty.is_empty() {
            return;
        }
        if let Err(e) = self.db(move |s| s.touch_clients(&dirty)).await {
            tracing::warn!(error = %e, "cannot record clients' last-seen times");
        }
    }
}

/// Refuses, at creation, a job whose final round the accountant cannot
/// bound (so a running job does not discover it after publishing): with a
/// fixed q and z, ε after `rounds` rounds at `delta` must be computable;
/// with a target ε, the calibration for it must succeed at the q given (a
/// job with `expected_cohort` learns q only at start; its calibration then
/// pauses the job with the reason if it fails).
async fn check_accountant_feasible(spec: &JobSpec) -> Result<(), Error> {
    use crate::config::{ConfigError, NoiseLevel, Sampling};
    if spec.disable_noise {
        return Ok(());
    }
    let Sampling::Rate(q) = spec.sampling() else {
        return Ok(());
    };
    let (rounds, delta, level) = (spec.rounds, spec.delta, spec.noise_level());
    let checked = tokio::task::spawn_blocking(move || -> Result<(), String> {
        use fedsec_privacy::accounting::{Accountant, Mechanism, PldAccountant};
        match level {
            NoiseLevel::Multiplier(z) => PldAccountant
                .epsilon(
                    &[(
                        Mechanism {
                            sampling_rate: q,
                            noise_multiplier: z,
                        },
                        rounds,
                    )],
                    delta,
                )
                .map(|_| ())
                .map_err(|e| e.to_string()),
            NoiseLevel::TargetEpsilon(eps) => crate::accounting::calibrate(q, rounds, delta, eps)
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    })
    .await
    .map_err(Error::task("accounting"))?;
    checked.map_err(|e| {
        Error::Config(ConfigError::invalid(
            "config.delta",
            format!("the accountant cannot bound ε of the job's final round {rounds} at δ = {delta}: {e}"),
        ))
    })
}
