//! The protocol loop: register, poll, refresh the data and the model, and
//! hand each task to [`serve`](super::serve).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedsec_model::ModelSpec;
use fedsec_proto::v1::get_task_response;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

use crate::data::{DataSource, LabelledLog, LogTail};
use crate::error::{Disposition, Error, RpcError};
use crate::events::{Event, TaskRef};
use crate::guard::SkipReason;
use crate::handle::GlobalModel;
use crate::ledger::JobHistory;
use crate::retry::{Backoff, poll_delay};
use crate::rpc::{DownloadError, Downloaded};
use crate::task::TaskTerms;

use super::{
    Config, Flow, Participant, RunOutcome, Runner, continue_if, history_of, now_unix_ms, or_stop,
};

impl<'a> Runner<'a> {
    pub(super) fn new(p: &'a mut Participant, stop: watch::Receiver<bool>) -> Self {
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

    pub(super) fn cfg(&self) -> Arc<Config> {
        self.p.config.clone()
    }

    /// Sleeps unless stopped; returns false when stopped.
    pub(super) async fn pause(&self, d: Duration) -> bool {
        or_stop(&self.stop, tokio::time::sleep(d)).await.is_some()
    }

    pub(super) async fn failed(&mut self, e: &RpcError) -> bool {
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

    pub(super) async fn run(mut self) -> Result<RunOutcome, Error> {
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

    pub(super) async fn poll_pause(&mut self, retry_after: Duration) -> bool {
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

    pub(super) async fn step(&mut self) -> Result<Flow, Error> {
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
                let received = Instant::now();
                let tref = TaskRef::from(&task);
                let key = (tref.job_id.clone(), tref.round, tref.attempt);
                if self.handled.contains(&key) {
                    self.maybe_refresh_model().await?;
                    let retry = self.poll_interval;
                    let go_on = self.poll_pause(retry).await;
                    return Ok(continue_if(go_on));
                }
                self.last_job = Some(tref.job_id.clone());
                if self.handled.len() > 4096 {
                    self.handled.clear();
                }
                self.handled.insert(key);
                self.p.emit(Event::TaskReceived {
                    task: tref.clone(),
                    sampling_rate: task.sampling_rate,
                    noise_multiplier: task.noise_multiplier,
                    clip_norm: task.clip_norm,
                });
                // The task's terms are parsed and validated here, once; from
                // here on the participant carries only `TaskTerms`.
                match TaskTerms::from_proto(&task) {
                    Ok(terms) => self.serve(terms, received).await?,
                    Err(reason) => self.skip(&tref, reason),
                }
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
    pub(super) async fn refresh_data(&mut self, force: bool) -> Result<(), Error> {
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
            .ok_or_else(|| Error::Internal("log tails in use"))?;
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
                                LabelledLog {
                                    log,
                                    labels: Some(labels),
                                },
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
            let mut relabels = Vec::new();
            for t in &mut tails {
                match t.poll(now) {
                    Ok(r) => {
                        rows.extend(r.rows);
                        relabels.extend(r.relabels);
                    }
                    Err(e) => {
                        problems.push(format!("cannot read {}: {e}", t.files().log.display()))
                    }
                }
            }
            (tails, (rows, relabels), problems)
        })
        .await
        .map_err(Error::task("data"))?;
        self.p.tails = Some(tails);
        for message in problems {
            self.p.emit(Event::Warning { message });
        }
        let (rows, relabels) = rows;
        if !rows.is_empty() || !relabels.is_empty() {
            let (added, train, holdout) = {
                let mut store = self.p.shared.store();
                let added = rows
                    .iter()
                    .filter(|r| {
                        if r.unlabelled {
                            store.push_unlabelled(&r.x, r.weight, r.key).is_ok()
                        } else {
                            store.push_weighted(&r.x, r.bot, r.weight, r.key).is_ok()
                        }
                    })
                    .count();
                for (key, bot) in relabels {
                    // Ground truth replaces a silver label (a row already
                    // evicted from the bounded store is simply gone).
                    store.relabel(key, bot);
                }
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
    pub(super) async fn install(&mut self, d: &Downloaded) -> Result<(), Error> {
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
                    .map_err(Error::task("model"))?;
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
    pub(super) async fn maybe_refresh_model(&mut self) -> Result<(), Error> {
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

    pub(super) fn skip(&self, task: &TaskRef, reason: SkipReason) {
        self.p.emit(Event::Skipped {
            task: task.clone(),
            reason,
        });
    }

    /// Downloads the task's base model, retrying transient failures until
    /// the deadline.
    pub(super) async fn fetch_model(
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
}
