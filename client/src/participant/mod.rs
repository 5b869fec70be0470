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
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedsec_proto::tls::ClientTls;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};

use crate::data::{DataOptions, DataPipeline, DataSource, LogTail};
use crate::error::{ConnectionError, Error};
use crate::events::{Event, TaskRef, TrainReport};
use crate::handle::{ParticipantHandle, Shared};
use crate::ledger::{HistoryRound, Ledger, LedgerIdentity};
use crate::policy::{PrivacyPolicy, TrainingLimits};
use crate::retry::Backoff;
use crate::rpc::Rpc;
use crate::state::StateDir;

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
        .map_err(Error::task("ledger"))?;
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
            .ok_or_else(|| Error::Internal("the ledger is in use"))
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
        .map_err(Error::task("ledger"))?;
        self.ledger = Some(ledger);
        Ok(res?)
    }

    fn ledger_file(&self) -> Result<&crate::ledger::LedgerFile, Error> {
        self.ledger
            .as_ref()
            .map(Ledger::file)
            .ok_or_else(|| Error::Internal("the ledger is in use"))
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

mod builder;
mod runner;
mod serve;
mod training;

pub use builder::ParticipantBuilder;
