//! [`Participant`] and its builder: the configuration, and the async loop
//! that registers, polls, downloads, guards, trains, records and submits.
//!
//! The loop never panics on network or data errors: calls that fail are
//! retried with backoff (events say so), tasks that cannot be served are
//! skipped with a reason. It stops with an error only when it cannot keep a
//! durable ledger (or the ledger belongs to another identity) — contributing
//! without a record would break the tenant's guard. CPU work (training,
//! accounting, file reading, ledger fsyncs) runs in `spawn_blocking`, so the
//! host's runtime is never blocked, and `shutdown` is observed at every wait.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::metrics::roc_auc;
use fedsec_detector::model::score;
use fedsec_detector::train::{TrainConfig, evaluate_loss, train_local};
use fedsec_proto::model::ModelSpec;
use fedsec_proto::tls::{ClientTls, TlsFiles, TlsPem};
use fedsec_proto::v1::{self, get_task_response};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};

use crate::data::{DataOptions, DataPipeline, DataSource, LabelledLog, LocalStore, LogTail};
use crate::error::{BuildError, ConnectionError, Disposition, Error, RpcError};
use crate::events::{Event, HoldoutReport, TaskRef, TrainReport};
use crate::guard::{self, Assessment, PlannedRound, SkipReason};
use crate::handle::{GlobalModel, ParticipantHandle, Shared};
use crate::ledger::{EntryStatus, HistoryRound, JobHistory, Ledger, LedgerEntry, LedgerIdentity};
use crate::policy::{PrivacyPolicy, TrainingLimits};
use crate::retry::{Backoff, poll_delay};
use crate::rpc::{DownloadError, Downloaded, Rpc, update_messages};
use crate::state::StateDir;

/// Longest time to the deadline a task may announce (24 h, the coordinator's
/// own maximum round deadline).
const MAX_ROUND_MS: u64 = 86_400_000;

/// Timing of the protocol loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Longest wait for one call (a whole upload or download). Default 60 s.
    pub rpc_timeout: Duration,
    /// Shortest wait between polls, whatever the coordinator says. Default 10 ms.
    pub min_poll: Duration,
    /// Longest wait between polls. Default 60 s.
    pub max_poll: Duration,
    /// First backoff after a failure. Default 200 ms.
    pub backoff_initial: Duration,
    /// Longest backoff. Default 30 s.
    pub backoff_max: Duration,
    /// How often to look for a newer global model while not selected. Default 30 s.
    pub model_refresh: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            rpc_timeout: Duration::from_secs(60),
            min_poll: Duration::from_millis(10),
            max_poll: Duration::from_secs(60),
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            model_refresh: Duration::from_secs(30),
        }
    }
}

/// How [`Participant::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The shutdown future completed.
    Shutdown,
    /// The job the participant is bound to finished.
    JobFinished {
        /// Job.
        job_id: String,
        /// Final state.
        state: String,
        /// Last published version.
        final_version: u64,
    },
}

/// What `Register` told the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Tenant id from the certificate.
    pub tenant_id: String,
    /// Client id from the certificate.
    pub client_id: String,
    /// Suggested poll interval.
    pub poll_interval: Duration,
}

enum TlsSetting {
    Ready(ClientTls),
    Files(TlsFiles),
    Pem(TlsPem),
}

/// Builds a [`Participant`]; every `build` error names the field.
///
/// ```no_run
/// use fedsec_client::{DataSource, Participant, PrivacyPolicy};
/// use fedsec_proto::tls::TlsFiles;
/// # fn demo() -> Result<(), fedsec_client::BuildError> {
/// let participant = Participant::builder()
///     .endpoint("https://coordinator.example:7443")
///     .tls_files(TlsFiles {
///         ca: "pki/ca.pem".into(),
///         cert: "pki/clients/client-0001.pem".into(),
///         key: "pki/clients/client-0001.key".into(),
///     })
///     .data(DataSource::watch_dir("/var/log/shop"))
///     .policy(PrivacyPolicy::new(8.0, 1e-6))
///     .state_dir("/var/lib/fedsec-client")
///     .job("bots")
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct ParticipantBuilder {
    endpoint: Option<String>,
    tls: Option<TlsSetting>,
    data: Option<DataSource>,
    data_options: DataOptions,
    policy: Option<PrivacyPolicy>,
    training: TrainingLimits,
    state_dir: Option<PathBuf>,
    seed: u64,
    job_id: Option<String>,
    timing: Timing,
}

impl std::fmt::Debug for ParticipantBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParticipantBuilder")
            .field("endpoint", &self.endpoint)
            .field("data", &self.data)
            .field("policy", &self.policy)
            .field("state_dir", &self.state_dir)
            .field("job_id", &self.job_id)
            .finish_non_exhaustive()
    }
}

impl ParticipantBuilder {
    fn new() -> Self {
        Self {
            endpoint: None,
            tls: None,
            data: None,
            data_options: DataOptions::default(),
            policy: None,
            training: TrainingLimits::default(),
            state_dir: None,
            seed: 0,
            job_id: None,
            timing: Timing::default(),
        }
    }

    /// The coordinator, `https://host:port`. Required.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The client's TLS identity and the platform CA. Required (this or
    /// [`tls_files`](Self::tls_files) / [`tls_pem`](Self::tls_pem)).
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(TlsSetting::Ready(tls));
        self
    }

    /// The TLS identity from PEM files (read by `build`).
    pub fn tls_files(mut self, files: TlsFiles) -> Self {
        self.tls = Some(TlsSetting::Files(files));
        self
    }

    /// The TLS identity from PEM bytes.
    pub fn tls_pem(mut self, pem: TlsPem) -> Self {
        self.tls = Some(TlsSetting::Pem(pem));
        self
    }

    /// Where labelled sessions come from. Required.
    pub fn data(mut self, source: DataSource) -> Self {
        self.data = Some(source);
        self
    }

    /// How local data is read and kept (defaults: see [`DataOptions`]).
    pub fn data_options(mut self, options: DataOptions) -> Self {
        self.data_options = options;
        self
    }

    /// The tenant's privacy policy. Required.
    pub fn policy(mut self, policy: PrivacyPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Limits on local training. Default: none beyond the task's.
    pub fn training_limits(mut self, limits: TrainingLimits) -> Self {
        self.training = limits;
        self
    }

    /// Directory of the ledger, the lock and the cached model. Required.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Seed of the holdout split and local training shuffles. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Serve only this job (and return from `run` when it finishes).
    /// Default: any running job. Amplified accounting needs a bound job.
    pub fn job(mut self, job_id: impl Into<String>) -> Self {
        self.job_id = Some(job_id.into());
        self
    }

    /// Protocol timing (defaults: see [`Timing`]).
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Validates everything, takes the state directory's lock and opens the
    /// ledger. Does not connect (see [`Participant::register`]) and needs no
    /// tokio runtime.
    pub fn build(self) -> Result<Participant, BuildError> {
        let endpoint = self.endpoint.ok_or(BuildError::Missing {
            field: "endpoint",
            hint: "the coordinator's https://host:port",
        })?;
        let tls =
            match self.tls.ok_or(BuildError::Missing {
                field: "tls",
                hint: "the client certificate, its key and the platform CA",
            })? {
                TlsSetting::Ready(t) => t,
                TlsSetting::Files(f) => ClientTls::from_files(&f)
                    .map_err(|e| BuildError::invalid("tls", e.to_string()))?,
                TlsSetting::Pem(p) => ClientTls::from_pem(&p)
                    .map_err(|e| BuildError::invalid("tls", e.to_string()))?,
            };
        let rpc = Rpc::new(tls.clone(), &endpoint, self.timing.rpc_timeout)
            .map_err(|e| BuildError::invalid("endpoint", e.to_string()))?;
        let data = self.data.ok_or(BuildError::Missing {
            field: "data",
            hint: "log files, a directory to watch, or DataSource::Host",
        })?;
        match &data {
            DataSource::Files(files) if files.is_empty() => {
                return Err(BuildError::invalid("data.files", "the list is empty"));
            }
            DataSource::WatchDir {
                dir, log_suffix, ..
            } => {
                if !dir.is_dir() {
                    return Err(BuildError::invalid(
                        "data.watch_dir",
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                if log_suffix.is_empty() {
                    return Err(BuildError::invalid("data.log_suffix", "must not be empty"));
                }
            }
            _ => {}
        }
        let o = &self.data_options;
        if !(0.0..=0.9).contains(&o.holdout_fraction) {
            return Err(BuildError::invalid(
                "data.holdout_fraction",
                format!("must be in [0, 0.9] (got {})", o.holdout_fraction),
            ));
        }
        if o.max_examples == 0 {
            return Err(BuildError::invalid(
                "data.max_examples",
                "must be at least 1",
            ));
        }
        if o.min_examples == 0 {
            return Err(BuildError::invalid(
                "data.min_examples",
                "must be at least 1",
            ));
        }
        let pipeline = Arc::new(o.pipeline()?);
        let policy = self.policy.ok_or(BuildError::Missing {
            field: "privacy",
            hint: "the tenant's privacy policy, at least its ε cap",
        })?;
        policy.validate()?;
        self.training.validate()?;
        if let Some(j) = &self.job_id
            && !fedsec_proto::tls::is_valid_id(j)
        {
            return Err(BuildError::invalid(
                "job",
                format!("{j:?} is not a valid job id"),
            ));
        }
        let t = &self.timing;
        if t.rpc_timeout.is_zero() || t.backoff_initial.is_zero() || t.model_refresh.is_zero() {
            return Err(BuildError::invalid(
                "timing",
                "rpc_timeout, backoff_initial and model_refresh must be > 0",
            ));
        }
        let state_dir = self.state_dir.ok_or(BuildError::Missing {
            field: "state_dir",
            hint: "a directory for the tenant's ledger (keep it; deleting it forgets spent privacy)",
        })?;
        let state = StateDir::open(&state_dir)?;
        let ledger = Ledger::open(&state.ledger_path())?;
        let shared = Arc::new(Shared {
            events: broadcast::channel(1024).0,
            model: RwLock::new(None),
            store: Mutex::new(LocalStore::new(
                o.holdout_fraction,
                o.max_examples,
                self.seed,
            )),
        });
        if let Some(m) = state.load_model().and_then(GlobalModel::from_model_file) {
            shared.set_model(Arc::new(m));
        }
        let tails = match &data {
            DataSource::Files(files) => files
                .iter()
                .map(|f| LogTail::new(f.clone(), &self.data_options, &pipeline))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Participant {
            config: Arc::new(Config {
                data,
                data_options: self.data_options,
                pipeline,
                policy,
                training: self.training,
                seed: self.seed,
                job_id: self.job_id,
                timing: self.timing.clone(),
            }),
            rpc,
            tls,
            shared,
            state,
            ledger: Some(ledger),
            tails: Some(tails),
        })
    }
}

#[derive(Debug)]
struct Config {
    data: DataSource,
    data_options: DataOptions,
    pipeline: Arc<DataPipeline>,
    policy: PrivacyPolicy,
    training: TrainingLimits,
    seed: u64,
    job_id: Option<String>,
    timing: Timing,
}

/// A federated participant embedded in a tenant's service.
///
/// Build it with [`Participant::builder`], keep a [`ParticipantHandle`]
/// (events, scoring), and spawn [`run`](Self::run) on the host's runtime.
#[derive(Debug)]
pub struct Participant {
    config: Arc<Config>,
    rpc: Rpc,
    tls: ClientTls,
    shared: Arc<Shared>,
    state: StateDir,
    // Moved in and out of blocking tasks; `None` only while one runs.
    ledger: Option<Ledger>,
    tails: Option<Vec<LogTail>>,
}

fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs `f` unless `stop` turns true first.
async fn or_stop<F: Future>(stop: &watch::Receiver<bool>, f: F) -> Option<F::Output> {
    let mut stop = stop.clone();
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        r = f => Some(r),
        _ = stop.wait_for(|s| *s) => None,
    }
}

fn training_seed(seed: u64, task: &TaskRef) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(task.job_id.as_bytes());
    h.update(task.round.to_le_bytes());
    h.update(task.attempt.to_le_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

fn history_of(receipt: &fedsec_privacy::PrivacyReceipt) -> Vec<HistoryRound> {
    receipt
        .rounds
        .iter()
        .map(|c| HistoryRound {
            round: c.round,
            sampling_rate: c.sampling_rate,
            noise_multiplier: c.mechanism().noise_multiplier,
            committed_unix_ms: c.committed_unix_ms,
        })
        .collect()
}

/// Result of local training, ready to upload.
struct Trained {
    report: TrainReport,
    update: Vec<f32>,
    within_clip: bool,
}

impl Participant {
    /// A builder with every default.
    pub fn builder() -> ParticipantBuilder {
        ParticipantBuilder::new()
    }

    /// A handle for the host: events, the latest model, scoring, data.
    pub fn handle(&self) -> ParticipantHandle {
        ParticipantHandle {
            shared: self.shared.clone(),
        }
    }

    /// A new receiver of events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The ledger file's path.
    pub fn ledger_path(&self) -> PathBuf {
        self.state.ledger_path()
    }

    fn emit(&self, e: Event) {
        match &e {
            Event::Skipped { task, reason } => {
                tracing::warn!(%task, %reason, "round skipped");
            }
            Event::Retrying {
                operation,
                error,
                failures,
                delay_ms,
            } => {
                tracing::warn!(
                    operation,
                    error,
                    failures,
                    delay_ms,
                    "call failed; retrying"
                );
            }
            Event::SubmitRejected { task, message } => {
                tracing::warn!(%task, message, "update refused by the coordinator");
            }
            Event::Warning { message } => tracing::warn!(message),
            other => tracing::info!(event = ?other),
        }
        let _ = self.shared.events.send(e);
    }

    /// Calls `Register` once: checks the connection, the certificates and
    /// the identity (bound to the ledger on first use). Errors carry a clear
    /// message for TLS problems.
    pub async fn register(&mut self) -> Result<Registration, Error> {
        let r = match self.rpc.register().await {
            Ok(r) => r,
            Err(mut e) => {
                let ambiguous = matches!(
                    e.connection,
                    Some(ConnectionError::Transport { .. })
                        | Some(ConnectionError::ClientCertificateRefused { .. })
                );
                if ambiguous
                    && let Some(c) = crate::probe::diagnose(
                        &self.tls,
                        self.rpc.endpoint(),
                        self.config.timing.rpc_timeout,
                    )
                    .await
                {
                    e.message = c.to_string();
                    e.connection = Some(c);
                }
                return Err(e.into());
            }
        };
        let identity = LedgerIdentity {
            tenant_id: r.tenant_id.clone(),
            client_id: r.client_id.clone(),
        };
        let ledger = self.take_ledger()?;
        let (ledger, res) = tokio::task::spawn_blocking(move || {
            let mut ledger = ledger;
            let res = ledger.bind_identity(identity);
            (ledger, res)
        })
        .await
        .map_err(|e| Error::Internal(format!("ledger task: {e}")))?;
        self.ledger = Some(ledger);
        res?;
        self.emit(Event::Registered {
            tenant_id: r.tenant_id.clone(),
            client_id: r.client_id.clone(),
        });
        Ok(Registration {
            tenant_id: r.tenant_id,
            client_id: r.client_id,
            poll_interval: Duration::from_millis(r.poll_interval_ms),
        })
    }

    fn take_ledger(&mut self) -> Result<Ledger, Error> {
        self.ledger
            .take()
            .ok_or_else(|| Error::Internal("the ledger is in use".into()))
    }

    /// Runs `change` on the ledger in a blocking task (it fsyncs).
    async fn with_ledger<T: Send + 'static>(
        &mut self,
        change: impl FnOnce(&mut Ledger) -> Result<T, crate::ledger::LedgerError> + Send + 'static,
    ) -> Result<T, Error> {
        let mut ledger = self.take_ledger()?;
        let (ledger, res) = tokio::task::spawn_blocking(move || {
            let res = change(&mut ledger);
            (ledger, res)
        })
        .await
        .map_err(|e| Error::Internal(format!("ledger task: {e}")))?;
        self.ledger = Some(ledger);
        Ok(res?)
    }

    fn ledger_file(&self) -> Result<&crate::ledger::LedgerFile, Error> {
        self.ledger
            .as_ref()
            .map(Ledger::file)
            .ok_or_else(|| Error::Internal("the ledger is in use".into()))
    }

    /// The participant's loop, until `shutdown` completes or the bound job
    /// finishes. Spawn it on the host's runtime:
    /// `tokio::spawn(participant.run(shutdown))`.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<RunOutcome, Error> {
        let (tx, stop) = watch::channel(false);
        let watcher = tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let result = Runner::new(&mut self, stop).run().await;
        watcher.abort();
        result
    }
}

/// Loop state.
struct Runner<'a> {
    p: &'a mut Participant,
    stop: watch::Receiver<bool>,
    rng: ChaCha8Rng,
    backoff: Backoff,
    registered: bool,
    poll_interval: Duration,
    /// Tasks already dealt with (submitted, skipped, refused).
    handled: HashSet<(String, u64, u32)>,
    last_scan: Option<Instant>,
    last_model_check: Option<Instant>,
    last_job: Option<String>,
}

/// Control flow out of a step.
enum Flow {
    Continue,
    Stop(RunOutcome),
}

fn continue_if(go_on: bool) -> Flow {
    if go_on {
        Flow::Continue
    } else {
        Flow::Stop(RunOutcome::Shutdown)
    }
}

impl<'a> Runner<'a> {
    fn new(p: &'a mut Participant, stop: watch::Receiver<bool>) -> Self {
        let t = p.config.timing.clone();
        let poll_interval = Duration::from_secs(2);
        let last_job = p.config.job_id.clone();
        Self {
            p,
            stop,
            rng: ChaCha8Rng::seed_from_u64(rand::rng().random()),
            backoff: Backoff::new(t.backoff_initial, t.backoff_max),
            registered: false,
            poll_interval,
            handled: HashSet::new(),
            last_scan: None,
            last_model_check: None,
            last_job,
        }
    }

    fn cfg(&self) -> Arc<Config> {
        self.p.config.clone()
    }

    /// Sleeps unless stopped; returns false when stopped.
    async fn pause(&self, d: Duration) -> bool {
        or_stop(&self.stop, tokio::time::sleep(d)).await.is_some()
    }

    async fn failed(&mut self, e: &RpcError) -> bool {
        let delay = self.backoff.fail_at_least(&mut self.rng, e.retry_after);
        self.p.emit(Event::Retrying {
            operation: e.operation,
            error: e.message.clone(),
            failures: self.backoff.failures(),
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        });
        if e.connection.is_some() {
            // A new connection may be a new coordinator process.
            self.registered = false;
        }
        self.pause(delay).await
    }

    async fn run(mut self) -> Result<RunOutcome, Error> {
        loop {
            if *self.stop.borrow() {
                return Ok(RunOutcome::Shutdown);
            }
            self.refresh_data(false).await?;
            if !self.registered {
                match or_stop(&self.stop, self.p.register()).await {
                    None => return Ok(RunOutcome::Shutdown),
                    Some(Ok(r)) => {
                        self.registered = true;
                        self.backoff.reset();
                        if !r.poll_interval.is_zero() {
                            self.poll_interval = r.poll_interval;
                        }
                    }
                    Some(Err(Error::Rpc(e))) => {
                        if !self.failed(&e).await {
                            return Ok(RunOutcome::Shutdown);
                        }
                        continue;
                    }
                    Some(Err(other)) => return Err(other),
                }
            }
            match self.step().await? {
                Flow::Continue => {}
                Flow::Stop(outcome) => return Ok(outcome),
            }
        }
    }

    async fn poll_pause(&mut self, retry_after: Duration) -> bool {
        let t = &self.p.config.timing;
        let d = poll_delay(
            retry_after,
            self.poll_interval,
            t.min_poll,
            t.max_poll,
            &mut self.rng,
        );
        self.pause(d).await
    }

    async fn step(&mut self) -> Result<Flow, Error> {
        let job = self.p.config.job_id.clone().unwrap_or_default();
        let outcome = match or_stop(&self.stop, self.p.rpc.get_task(&job)).await {
            None => return Ok(Flow::Stop(RunOutcome::Shutdown)),
            Some(r) => r,
        };
        let outcome = match outcome {
            Ok(o) => {
                self.backoff.reset();
                o
            }
            Err(e) => {
                if e.disposition() == Disposition::Reregister {
                    self.registered = false;
                }
                let go_on = self.failed(&e).await;
                return Ok(if go_on {
                    Flow::Continue
                } else {
                    Flow::Stop(RunOutcome::Shutdown)
                });
            }
        };
        match outcome {
            get_task_response::Outcome::Task(task) => {
                let key = (task.job_id.clone(), task.round, task.attempt);
                if self.handled.contains(&key) {
                    self.maybe_refresh_model().await?;
                    let retry = self.poll_interval;
                    let go_on = self.poll_pause(retry).await;
                    return Ok(continue_if(go_on));
                }
                self.last_job = Some(task.job_id.clone());
                if self.handled.len() > 4096 {
                    self.handled.clear();
                }
                self.handled.insert(key);
                self.serve(task).await?;
                Ok(Flow::Continue)
            }
            get_task_response::Outcome::Retry(r) => {
                self.maybe_refresh_model().await?;
                let go_on = self
                    .poll_pause(Duration::from_millis(r.retry_after_ms))
                    .await;
                Ok(continue_if(go_on))
            }
            get_task_response::Outcome::Finished(f) => {
                // Only asked-for jobs finish; fetch the final model first.
                self.last_model_check = None;
                self.maybe_refresh_model().await?;
                self.p.emit(Event::JobFinished {
                    job_id: f.job_id.clone(),
                    state: f.state.clone(),
                    final_version: f.final_version,
                });
                Ok(Flow::Stop(RunOutcome::JobFinished {
                    job_id: f.job_id,
                    state: f.state,
                    final_version: f.final_version,
                }))
            }
        }
    }

    /// Re-reads local log files when due (or now, when `force`).
    async fn refresh_data(&mut self, force: bool) -> Result<(), Error> {
        let cfg = self.cfg();
        if matches!(cfg.data, DataSource::Host) {
            return Ok(());
        }
        let due = self
            .last_scan
            .is_none_or(|t| t.elapsed() >= cfg.data_options.rescan_interval);
        if !force && !due {
            return Ok(());
        }
        self.last_scan = Some(Instant::now());
        let mut tails = self
            .p
            .tails
            .take()
            .ok_or_else(|| Error::Internal("log tails in use".into()))?;
        let cfg2 = cfg.clone();
        let (tails, rows, problems) = tokio::task::spawn_blocking(move || {
            let mut problems = Vec::new();
            if let DataSource::WatchDir {
                dir,
                log_suffix,
                labels_suffix,
            } = &cfg2.data
            {
                match std::fs::read_dir(dir) {
                    Ok(entries) => {
                        let mut found: Vec<PathBuf> = entries
                            .filter_map(Result::ok)
                            .map(|e| e.path())
                            .filter(|p| {
                                p.file_name()
                                    .and_then(|n| n.to_str())
                                    .is_some_and(|n| n.ends_with(log_suffix.as_str()))
                            })
                            .collect();
                        found.sort();
                        for log in found {
                            if tails.iter().any(|t| t.files().log == log) {
                                continue;
                            }
                            let name = log.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                            let stem = &name[..name.len() - log_suffix.len()];
                            let labels = log.with_file_name(format!("{stem}{labels_suffix}"));
                            tails.push(LogTail::new(
                                LabelledLog { log, labels },
                                &cfg2.data_options,
                                &cfg2.pipeline,
                            ));
                        }
                    }
                    Err(e) => problems.push(format!("cannot list {}: {e}", dir.display())),
                }
            }
            let now = now_unix_ms();
            let mut rows = Vec::new();
            for t in &mut tails {
                match t.poll(now) {
                    Ok(r) => rows.extend(r),
                    Err(e) => {
                        problems.push(format!("cannot read {}: {e}", t.files().log.display()))
                    }
                }
            }
            (tails, rows, problems)
        })
        .await
        .map_err(|e| Error::Internal(format!("data task: {e}")))?;
        self.p.tails = Some(tails);
        for message in problems {
            self.p.emit(Event::Warning { message });
        }
        if !rows.is_empty() {
            let (added, train, holdout) = {
                let mut store = self.p.shared.store();
                let added = rows
                    .iter()
                    .filter(|(x, bot)| store.push(x, *bot).is_ok())
                    .count();
                (added, store.train_len(), store.holdout_len())
            };
            self.p.emit(Event::DataLoaded {
                added,
                train,
                holdout,
            });
        }
        Ok(())
    }

    /// Installs a verified model for scoring (and the state directory) if it
    /// is newer than the one held, and keeps its receipt's round history.
    async fn install(&mut self, d: &Downloaded) -> Result<(), Error> {
        let current = self.p.shared.model();
        let newer = current
            .as_ref()
            .is_none_or(|m| m.job_id != d.job_id || m.version < d.version);
        if newer {
            let m = Arc::new(GlobalModel {
                job_id: d.job_id.clone(),
                version: d.version,
                round: d.round,
                spec: d.spec.clone(),
                weights: d.weights.clone(),
                epsilon: d.receipt.as_ref().map(|r| r.epsilon_pld),
            });
            self.p.shared.set_model(m.clone());
            match m.to_model_file() {
                Ok(file) => {
                    let state_path = self.p.state.path().to_owned();
                    let saved = tokio::task::spawn_blocking(move || {
                        let path = state_path.join(crate::state::MODEL_FILE);
                        file.to_bytes().map_err(|e| e.to_string()).and_then(|b| {
                            crate::state::write_atomic(&path, &b)
                                .map_err(|e| format!("cannot write {}: {e}", path.display()))
                        })
                    })
                    .await
                    .map_err(|e| Error::Internal(format!("model task: {e}")))?;
                    if let Err(message) = saved {
                        self.p.emit(Event::Warning { message });
                    }
                }
                Err(e) => self.p.emit(Event::Warning {
                    message: format!("cannot cache the model: {e}"),
                }),
            }
            self.p.emit(Event::ModelUpdated {
                job_id: d.job_id.clone(),
                version: d.version,
                round: d.round,
                epsilon: m.epsilon,
            });
        }
        if let Some(r) = &d.receipt {
            let job = d.job_id.clone();
            let history = JobHistory {
                version: d.version,
                rounds: history_of(r),
            };
            self.p
                .with_ledger(move |l| l.set_history(&job, history))
                .await?;
        }
        Ok(())
    }

    /// While idle: look for a newer model of the job last served.
    async fn maybe_refresh_model(&mut self) -> Result<(), Error> {
        let Some(job) = self.last_job.clone() else {
            return Ok(());
        };
        let every = self.p.config.timing.model_refresh;
        if self.last_model_check.is_some_and(|t| t.elapsed() < every) {
            return Ok(());
        }
        self.last_model_check = Some(Instant::now());
        let have = self
            .p
            .shared
            .model()
            .filter(|m| m.job_id == job)
            .map(|m| m.version);
        let got = or_stop(&self.stop, self.p.rpc.download_model(&job, 0, None, have)).await;
        match got {
            None | Some(Ok(None)) => {}
            Some(Ok(Some(d))) => self.install(&d).await?,
            Some(Err(DownloadError::Rejected(m))) => self.p.emit(Event::Warning {
                message: format!("refused the current model of job {job:?}: {m}"),
            }),
            Some(Err(DownloadError::Rpc(e))) => {
                tracing::debug!(error = %e, "model refresh failed; will try again");
            }
        }
        Ok(())
    }

    fn skip(&self, task: &TaskRef, reason: SkipReason) {
        self.p.emit(Event::Skipped {
            task: task.clone(),
            reason,
        });
    }

    /// Downloads the task's base model, retrying transient failures until
    /// the deadline.
    async fn fetch_model(
        &mut self,
        task: &TaskRef,
        spec: &ModelSpec,
        deadline: Instant,
    ) -> Result<Option<Downloaded>, SkipReason> {
        let mut backoff = Backoff::new(
            self.p.config.timing.backoff_initial,
            self.p.config.timing.backoff_max,
        );
        loop {
            let got = or_stop(
                &self.stop,
                self.p
                    .rpc
                    .download_model(&task.job_id, task.base_version, Some(spec), None),
            )
            .await;
            match got {
                None => return Ok(None),
                Some(Ok(Some(d))) => return Ok(Some(d)),
                Some(Ok(None)) => {
                    return Err(SkipReason::ModelRejected("empty download".into()));
                }
                Some(Err(DownloadError::Rejected(m))) => return Err(SkipReason::ModelRejected(m)),
                Some(Err(DownloadError::Rpc(e))) => {
                    if e.disposition() == Disposition::Definitive {
                        return Err(SkipReason::ModelRejected(e.message));
                    }
                    let delay = backoff.fail_at_least(&mut self.rng, e.retry_after);
                    if Instant::now() + delay >= deadline {
                        return Err(SkipReason::DeadlinePassed);
                    }
                    self.p.emit(Event::Retrying {
                        operation: e.operation,
                        error: e.message.clone(),
                        failures: backoff.failures(),
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    });
                    if !self.pause(delay).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Serves one task: checks, download, guard, training, record, upload.
    async fn serve(&mut self, task: v1::Task) -> Result<(), Error> {
        let received = Instant::now();
        // The coordinator's number, bounded: a round never stays open a day.
        let remaining = Duration::from_millis(task.remaining_ms.min(MAX_ROUND_MS));
        let deadline = received.checked_add(remaining).unwrap_or(received);
        let tref = TaskRef {
            job_id: task.job_id.clone(),
            round: task.round,
            attempt: task.attempt,
            base_version: task.base_version,
        };
        self.p.emit(Event::TaskReceived {
            task: tref.clone(),
            sampling_rate: task.sampling_rate,
            noise_multiplier: task.noise_multiplier,
            clip_norm: task.clip_norm,
        });
        let cfg = self.cfg();
        let planned = PlannedRound {
            job_id: task.job_id.clone(),
            round: task.round,
            attempt: task.attempt,
            sampling_rate: task.sampling_rate,
            noise_multiplier: task.noise_multiplier,
            clip_norm: task.clip_norm,
            delta: task.delta,
            noise_enabled: task.noise_enabled,
        };
        // 1. The policy's floors and ceilings, and a task we can serve.
        if let Err(reason) = guard::check_task(&cfg.policy, &planned) {
            self.skip(&tref, reason);
            return Ok(());
        }
        let prepared = match prepare_task(&task, &cfg) {
            Ok(p) => p,
            Err(reason) => {
                self.skip(&tref, reason);
                return Ok(());
            }
        };
        // 2. The base model, verified (and kept for scoring even if this
        //    round cannot be served).
        let model = match self.fetch_model(&tref, &prepared.spec, deadline).await {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(reason) => {
                self.skip(&tref, reason);
                return Ok(());
            }
        };
        if model.version != task.base_version {
            self.skip(
                &tref,
                SkipReason::ModelRejected(format!(
                    "asked for version {}, got {}",
                    task.base_version, model.version
                )),
            );
            return Ok(());
        }
        self.install(&model).await?;
        if let Some(problem) = &model.receipt_problem
            && task.noise_enabled
        {
            self.p.emit(Event::Warning {
                message: format!("job {}: {problem}", task.job_id),
            });
        }
        // 3. Local data.
        self.refresh_data(true).await?;
        let (train, holdout) = self.p.shared.store().snapshot();
        if train.len() < cfg.data_options.min_examples {
            self.skip(
                &tref,
                SkipReason::NotEnoughData {
                    have: train.len(),
                    need: cfg.data_options.min_examples,
                },
            );
            return Ok(());
        }
        // The tenant's floors on what one update may be computed from.
        let examples = cfg
            .training
            .max_examples_per_round
            .map_or(train.len(), |k| k.min(train.len()));
        let train_cfg = match guard::check_training(&cfg.policy, prepared.train.clone(), examples) {
            Ok(c) => c,
            Err(reason) => {
                self.skip(&tref, reason);
                return Ok(());
            }
        };
        // 4. The guard.
        let bound = cfg.job_id.as_deref() == Some(task.job_id.as_str());
        let history = model
            .receipt
            .as_ref()
            .filter(|_| bound && cfg.policy.trust_coordinator_sampling)
            .map(history_of);
        let assessment = {
            let policy = cfg.policy.clone();
            let file = self.p.ledger_file()?.clone();
            let planned = planned.clone();
            or_stop(
                &self.stop,
                tokio::task::spawn_blocking(move || {
                    guard::decide(&policy, &file, &planned, history.as_deref())
                }),
            )
            .await
        };
        let assessment: Assessment = match assessment {
            None => return Ok(()),
            Some(Err(e)) => return Err(Error::Internal(format!("guard task: {e}"))),
            Some(Ok(Err(reason))) => {
                self.skip(&tref, reason);
                return Ok(());
            }
            Some(Ok(Ok(a))) => a,
        };
        if bound
            && cfg.policy.trust_coordinator_sampling
            && let Some(why) = &assessment.amplified_unavailable
        {
            self.p.emit(Event::Warning {
                message: format!(
                    "job {}: amplified accounting unavailable ({why}); counting this client's \
                     rounds unamplified",
                    task.job_id
                ),
            });
        }
        // 5. Local training, off the async threads.
        let trained = {
            let spec = prepared.spec.clone();
            let weights = model.weights.clone();
            let seed = training_seed(cfg.seed, &tref);
            let max_examples = cfg.training.max_examples_per_round;
            let (clip, noise) = (task.clip_norm, prepared.noise_stddev);
            or_stop(
                &self.stop,
                tokio::task::spawn_blocking(move || {
                    train_and_prepare(
                        &spec,
                        &weights,
                        train,
                        &holdout,
                        &train_cfg,
                        seed,
                        max_examples,
                        clip,
                        noise,
                    )
                }),
            )
            .await
        };
        let trained = match trained {
            None => return Ok(()),
            Some(Err(e)) => return Err(Error::Internal(format!("training task: {e}"))),
            Some(Ok(Err(reason))) => {
                self.skip(&tref, reason);
                return Ok(());
            }
            Some(Ok(Ok(t))) => t,
        };
        self.p.emit(Event::Trained {
            task: tref.clone(),
            report: trained.report.clone(),
        });
        if Instant::now() >= deadline {
            self.skip(&tref, SkipReason::DeadlinePassed);
            return Ok(());
        }
        // 6. Record in the tenant's ledger, durably, before anything is sent:
        // a new entry (one more step for the guard) unless this exact update
        // was recorded for this round attempt before (a resend after a
        // restart; the same bytes reveal nothing new). A task served again
        // with another base version or other data is a new contribution.
        let update_sha256 = hex::encode(fedsec_proto::tensor::digest(&trained.update));
        let existing = self
            .p
            .ledger_file()?
            .find_identical(
                &task.job_id,
                task.round,
                task.attempt,
                task.base_version,
                &update_sha256,
            )
            .cloned();
        let nonce_hex = match existing {
            Some(e) => e.nonce,
            None => {
                let nonce: [u8; 16] = rand::rng().random();
                let entry = LedgerEntry {
                    job_id: task.job_id.clone(),
                    round: task.round,
                    attempt: task.attempt,
                    base_version: task.base_version,
                    sampling_rate: task.sampling_rate,
                    noise_multiplier: task.noise_multiplier,
                    clip_norm: task.clip_norm,
                    delta: task.delta,
                    noise_enabled: task.noise_enabled,
                    client_noise_stddev: prepared.noise_stddev,
                    recorded_unix_ms: now_unix_ms(),
                    nonce: hex::encode(nonce),
                    update_sha256,
                    status: EntryStatus::Recorded,
                    detail: String::new(),
                    epsilon_after: Some(assessment.epsilon).filter(|e| e.is_finite()),
                    basis: assessment.basis.as_str().into(),
                };
                self.p.with_ledger(move |l| l.record(entry)).await?;
                hex::encode(nonce)
            }
        };
        self.p.emit(Event::Recorded {
            task: tref.clone(),
            epsilon: assessment.epsilon,
            basis: assessment.basis,
        });
        let nonce = hex::decode(&nonce_hex).unwrap_or_else(|_| nonce_hex.clone().into_bytes());
        // 7. Upload, retrying transient failures with the same nonce.
        let messages = update_messages(&task, &nonce, &trained.update, trained.within_clip);
        self.submit(&tref, &nonce_hex, &messages, deadline).await
    }

    async fn submit(
        &mut self,
        tref: &TaskRef,
        nonce_hex: &str,
        messages: &[v1::SubmitUpdateRequest],
        deadline: Instant,
    ) -> Result<(), Error> {
        let mut backoff = Backoff::new(
            self.p.config.timing.backoff_initial,
            self.p.config.timing.backoff_max,
        );
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let got = match or_stop(&self.stop, self.p.rpc.submit(messages)).await {
                None => return Ok(()),
                Some(r) => r,
            };
            let e = match got {
                Ok(resp) => {
                    let (job, round, attempt) = (tref.job_id.clone(), tref.round, tref.attempt);
                    let nonce = nonce_hex.to_owned();
                    self.p
                        .with_ledger(move |l| {
                            l.set_status(&job, round, attempt, &nonce, EntryStatus::Accepted, "")
                        })
                        .await?;
                    self.p.emit(Event::Submitted {
                        task: tref.clone(),
                        newly_accepted: resp.newly_accepted,
                        attempts,
                    });
                    return Ok(());
                }
                Err(e) => e,
            };
            match e.disposition() {
                Disposition::Definitive => {
                    let (job, round, attempt) = (tref.job_id.clone(), tref.round, tref.attempt);
                    let (nonce, detail) = (nonce_hex.to_owned(), e.message.clone());
                    self.p
                        .with_ledger(move |l| {
                            l.set_status(
                                &job,
                                round,
                                attempt,
                                &nonce,
                                EntryStatus::Rejected,
                                &detail,
                            )
                        })
                        .await?;
                    self.p.emit(Event::SubmitRejected {
                        task: tref.clone(),
                        message: e.message,
                    });
                    return Ok(());
                }
                Disposition::Reregister => {
                    if let Some(Err(Error::Ledger(l))) =
                        or_stop(&self.stop, self.p.register()).await
                    {
                        return Err(Error::Ledger(l));
                    }
                }
                Disposition::Transient => {}
            }
            let delay = backoff.fail_at_least(&mut self.rng, e.retry_after);
            if Instant::now() + delay >= deadline {
                let (job, round, attempt) = (tref.job_id.clone(), tref.round, tref.attempt);
                let nonce = nonce_hex.to_owned();
                let detail = format!("deadline passed while retrying: {}", e.message);
                self.p
                    .with_ledger(move |l| {
                        l.set_status(&job, round, attempt, &nonce, EntryStatus::Recorded, &detail)
                    })
                    .await?;
                self.skip(tref, SkipReason::DeadlinePassed);
                return Ok(());
            }
            self.p.emit(Event::Retrying {
                operation: e.operation,
                error: e.message.clone(),
                failures: backoff.failures(),
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            });
            if e.connection.is_some() {
                self.registered = false;
            }
            if !self.pause(delay).await {
                return Ok(());
            }
        }
    }
}

/// What a task asks, parsed and checked against what the client can do.
struct PreparedTask {
    spec: ModelSpec,
    train: TrainConfig,
    noise_stddev: f64,
}

fn prepare_task(task: &v1::Task, cfg: &Config) -> Result<PreparedTask, SkipReason> {
    let invalid = |m: String| SkipReason::InvalidTask(m);
    let spec = task
        .model_spec
        .as_ref()
        .ok_or_else(|| invalid("the task has no model spec".into()))
        .and_then(|s| ModelSpec::from_proto(s).map_err(|e| invalid(format!("model spec: {e}"))))?;
    if spec.input_dim as usize != NUM_FEATURES {
        return Err(invalid(format!(
            "the job's model takes {} inputs; this client's sessions have {NUM_FEATURES} features",
            spec.input_dim
        )));
    }
    let train = task
        .training
        .as_ref()
        .ok_or_else(|| invalid("the task has no training configuration".into()))
        .and_then(|t| {
            TrainConfig::try_from(t).map_err(|e| invalid(format!("training config: {e}")))
        })?;
    let train = cfg.training.apply(train);
    let noise_stddev = match &task.client_noise {
        Some(n) if n.mode == v1::NoiseMode::Client as i32 => {
            if !(n.stddev > 0.0 && n.stddev.is_finite()) {
                return Err(invalid(format!(
                    "client noise mode with stddev {}",
                    n.stddev
                )));
            }
            n.stddev
        }
        Some(n)
            if n.mode == v1::NoiseMode::Central as i32
                || n.mode == v1::NoiseMode::Unspecified as i32 =>
        {
            0.0
        }
        None => 0.0,
        Some(n) => return Err(invalid(format!("unknown noise mode {}", n.mode))),
    };
    Ok(PreparedTask {
        spec,
        train,
        noise_stddev,
    })
}

fn auc(spec: &ModelSpec, weights: &[f32], data: &Dataset) -> Option<f64> {
    let scores = score(spec, weights, data.features()).ok()?;
    let labels: Vec<bool> = (0..data.len()).map(|i| data.is_bot(i)).collect();
    roc_auc(&scores, &labels).ok()
}

#[allow(clippy::too_many_arguments)]
fn train_and_prepare(
    spec: &ModelSpec,
    global: &[f32],
    train: Dataset,
    holdout: &Dataset,
    config: &TrainConfig,
    seed: u64,
    max_examples: Option<usize>,
    clip_norm: f64,
    noise_stddev: f64,
) -> Result<Trained, SkipReason> {
    let train = match max_examples {
        Some(k) if train.len() > k => {
            let mut idx: Vec<usize> = (0..train.len()).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7361_6d70_6c65);
            rand::seq::SliceRandom::shuffle(idx.as_mut_slice(), &mut rng);
            idx.truncate(k);
            idx.sort_unstable();
            train.subset(&idx)
        }
        _ => train,
    };
    let out = train_local(spec, global, &train, config, seed)
        .map_err(|e| SkipReason::TrainingFailed(e.to_string()))?;
    let holdout_report = if holdout.is_empty() {
        None
    } else {
        let local = fedsec_detector::train::apply_delta(global, &out.delta);
        let loss = |w: &[f32]| evaluate_loss(spec, w, holdout, false);
        match (loss(global), loss(&local)) {
            (Ok(loss_global), Ok(loss_local)) => Some(HoldoutReport {
                examples: holdout.len(),
                loss_global,
                loss_local,
                auc_global: auc(spec, global, holdout),
                auc_local: auc(spec, &local, holdout),
            }),
            _ => None,
        }
    };
    let mut update = out.delta;
    let p = crate::update::prepare(&mut update, clip_norm, noise_stddev)
        .map_err(|e| SkipReason::TrainingFailed(e.to_string()))?;
    Ok(Trained {
        report: TrainReport {
            examples: train.len(),
            steps: out.steps,
            loss_before: out.loss_before,
            loss_after: out.loss_after,
            holdout: holdout_report,
            update_norm: p.norm,
            clipped: !p.within_clip,
            client_noise_stddev: p.noise_stddev,
        },
        update,
        within_clip: p.within_clip,
    })
}
