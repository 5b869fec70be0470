//! The one-command demo, on the real path: synthetic request logs for every
//! tenant written to disk, a development CA, a temporary data directory with
//! the embedded SQLite store, a real [`Coordinator`] and one real
//! [`Participant`] per tenant over loopback mutual TLS in one process, and a
//! DP-FedAvg job with opendp's exact Gaussian noise (the production-safe
//! default) calibrated to a target ε.
//!
//! While the job runs, every published model version is exported through
//! the admin API and scored on the tenants' held-out sessions (the last 30 %
//! of each tenant's time window, which no participant reads). The
//! centralised non-private and local-only baselines are trained in-process
//! on exactly the sessions the participants read. [`report`] writes
//! `report.md` and its figures.
//!
//! Each participant keeps its own ledger on the participation basis (the
//! client's default: it does not trust the coordinator's sampling rate, so
//! every round it contributes to counts as an unamplified Gaussian). At the
//! defaults a tenant joins about q·T = 10 of the 50 rounds, which costs it
//! ε ≈ 7 on that basis although the job's (amplified) guarantee is ε = 3, and
//! the busiest tenants join ~20. So the demo's tenants set their own cap to
//! [`DemoConfig::tenant_cap`], the participation ε of taking part in *every*
//! round (plus two abandoned attempts): no tenant ever skips, and the cap still bounds what each could
//! lose to a coordinator that ignored q. (With the old cap ε + 1 every
//! tenant would stop after two or three contributions.)
//!
//! Model size: client-level DP needs the noise on the averaged update,
//! ‖N(0, (z·C)² I_d)‖ / m ≈ z·C·√d / m, to stay below C. With the defaults
//! (m = 60, z ≈ 2.5 for ε = 3 over 50 rounds) that allows √d < 24; the demo
//! trains an MLP 51 → 8 → 1 with d = 425 parameters (noise ≈ 0.86·C).
//!
//! Tenants whose training window holds fewer sessions than their own
//! guard's floors allow an update to be computed from
//! ([`DemoConfig::serves`]: `privacy.min_examples_per_update`, 32 by
//! default) run no participant: they would be selected, skip every task, and
//! hold each such round open until its deadline (a skip is a silent dropout
//! to the coordinator). The job's population is the tenants that do run
//! one; every tenant is still evaluated.
//!
//! An operator can walk the README's incident runbook on the running demo:
//! the coordinator's admin endpoint and the development PKI's admin
//! identity are written to `<work>/admin.env` ([`AdminAccess`]) and
//! reported through [`DemoHooks::on_admin`]; [`DemoHooks::hold`] keeps the
//! coordinator serving after the job (`demo --keep-running`) for the
//! post-mortem. A rollback during the job is followed: the model the
//! report scores is the one the coordinator serves last.

mod access;
mod config;
pub mod data;
pub mod report;

pub use access::{AdminAccess, ENV_FILE};
pub use config::{ABANDONED_ATTEMPT_SLACK, DemoConfig};

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fedsec_client::{
    DataOptions, DataSource, Event, LabelledLog, Participant, PrivacyPolicy, SharedEnrichment,
    Timing,
};
use fedsec_coordinator::Coordinator;
use fedsec_proto::v1;
use serde::Serialize;
use tokio::sync::watch;

use crate::baselines;
use crate::data::Population;
use crate::error::{Error, Result};
use crate::eval;
use crate::figures::{self, Scores};
use config::DEMO_MIN_EXAMPLES;

/// Job id of the demo's job.
pub const JOB_ID: &str = "demo";

/// One committed round as the demo saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRow {
    /// Round.
    pub round: u64,
    /// Model version published.
    pub version: u64,
    /// Accepted updates.
    pub participants: u32,
    /// Share of accepted updates the coordinator re-clipped.
    pub clipped_fraction: f64,
    /// ε after the round (PLD, the receipt's number).
    pub epsilon_pld: f64,
    /// ε after the round (RDP, recorded too).
    pub epsilon_rdp: f64,
    /// Pooled held-out AUC of the published model.
    pub pooled_auc: f64,
    /// Mean per-tenant held-out AUC of the published model.
    pub mean_tenant_auc: f64,
    /// Seconds since the job was created.
    pub elapsed_s: f64,
}

/// What participants reported, summed.
#[derive(Debug, Default)]
pub struct EventCounts {
    /// Updates accepted by the coordinator.
    pub submitted: AtomicU64,
    /// Tasks skipped (policy, cap, data).
    pub skipped: AtomicU64,
    /// Uploads refused.
    pub rejected: AtomicU64,
    /// Failed calls retried.
    pub retries: AtomicU64,
    /// A few distinct retry and skip messages, for the report.
    pub samples: std::sync::Mutex<Vec<String>>,
}

impl EventCounts {
    fn sample(&self, msg: String) {
        if let Ok(mut v) = self.samples.lock()
            && v.len() < 5
            && !v.contains(&msg)
        {
            v.push(msg);
        }
    }
}

/// The outcome of a demo run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoOutcome {
    /// Settings.
    pub config: DemoConfig,
    /// Resolved noise multiplier z.
    pub noise_multiplier: f64,
    /// Resolved sampling rate q.
    pub sampling_rate: f64,
    /// Model parameters d.
    pub parameters: usize,
    /// z·√d / m: the noise on the averaged update relative to C.
    pub noise_to_clip: f64,
    /// One row per committed round.
    pub rounds: Vec<RoundRow>,
    /// Final state of the job.
    pub job_state: String,
    /// Federated model after the last round.
    pub federated: Scores,
    /// Centralised non-private baseline.
    pub central: Scores,
    /// Local-only baseline.
    pub local: Scores,
    /// ε spent (PLD) at δ.
    pub epsilon: f64,
    /// Per-archetype flag rates of the federated model (1 % FPR threshold).
    pub recall_federated: Vec<eval::ArchetypeRecall>,
    /// Per-archetype flag rates of the centralised model.
    pub recall_central: Vec<eval::ArchetypeRecall>,
    /// Training sessions over all tenants (what the participants read).
    pub train_sessions: usize,
    /// Tenants that ran a participant (the job's population); the others
    /// had fewer training sessions than their own floors allow.
    pub participating: usize,
    /// Held-out sessions over all tenants.
    pub holdout_sessions: usize,
    /// Log lines written.
    pub log_lines: usize,
    /// Bytes of logs and labels written.
    pub log_bytes: u64,
    /// Updates the participants reported accepted.
    pub submitted: u64,
    /// Tasks the participants skipped.
    pub skipped: u64,
    /// The ε cap each tenant's own guard enforced ([`DemoConfig::tenant_cap`]).
    pub tenant_cap: f64,
    /// Calls the participants retried.
    pub retries: u64,
    /// Uploads the coordinator refused.
    pub rejected: u64,
    /// Examples of retry, skip and rejection messages.
    pub event_samples: Vec<String>,
    /// Seconds: data, baselines, federated job, total.
    pub timings: [f64; 4],
    /// `report.md`.
    pub report: PathBuf,
}

fn job_state_name(state: i32) -> String {
    v1::JobState::try_from(state)
        .map(|s| s.as_str_name().trim_start_matches("JOB_STATE_").to_string())
        .unwrap_or_else(|_| format!("state {state}"))
}

/// What a caller of [`run_with`] hears and controls while the demo runs.
#[derive(Default)]
pub struct DemoHooks {
    /// Called once the coordinator serves and `admin.env` is written
    /// (before the participants register and the job starts).
    pub on_admin: Option<OnAdmin>,
    /// Called with the outcome once the job has ended and the report is
    /// written; the future it returns is awaited before the participants and
    /// the coordinator stop, which keeps serving the admin API meanwhile
    /// (`demo --keep-running` prints the summary and waits for Ctrl-C).
    pub hold: Option<Hold>,
}

/// See [`DemoHooks::on_admin`].
pub type OnAdmin = Box<dyn FnOnce(&AdminAccess) + Send>;

/// See [`DemoHooks::hold`].
pub type Hold = Box<dyn FnOnce(&DemoOutcome) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs the demo (see the module docs). Progress goes to stderr; nothing is
/// printed to stdout (the binary prints the summary).
pub async fn run(cfg: DemoConfig) -> Result<DemoOutcome> {
    run_with(cfg, DemoHooks::default()).await
}

/// [`run`], with the admin access reported and an optional hold after the
/// job (see [`DemoHooks`]).
pub async fn run_with(cfg: DemoConfig, hooks: DemoHooks) -> Result<DemoOutcome> {
    if cfg.tenants < 2 {
        return Err(Error::Config("the demo needs at least 2 tenants".into()));
    }
    if cfg.rounds == 0 {
        return Err(Error::Config("rounds must be at least 1".into()));
    }
    let t_start = Instant::now();
    let tmp;
    let work = match &cfg.work_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::Builder::new()
                .prefix("fedsec-demo-")
                .tempdir()
                .map_err(|e| Error::io(std::env::temp_dir(), e))?;
            tmp.path().to_owned()
        }
    };

    // 1. Logs on disk and the evaluation sets.
    let synth = cfg.synth();
    let pb = crate::progress::bar(cfg.tenants as u64, "synthetic logs", cfg.quiet);
    pb.set_message(format!(
        "{} tenants → {}",
        cfg.tenants,
        work.join("logs").display()
    ));
    let tenants = {
        let synth = synth.clone();
        let dir = work.join("logs");
        let threads = cfg.threads;
        let pb2 = pb.clone();
        tokio::task::spawn_blocking(move || data::write_all(&synth, &dir, threads, &|| pb2.inc(1)))
            .await
            .map_err(|e| Error::Config(format!("data task: {e}")))??
    };
    pb.finish_and_clear();
    let log_lines = tenants.iter().map(|t| t.lines).sum();
    let log_bytes = tenants.iter().map(|t| t.bytes).sum();
    let pop = Population {
        config: synth.clone(),
        holdout_fraction: 1.0 - data::TRAIN_WINDOW,
        tenants: tenants.iter().map(|t| t.data.clone()).collect(),
    };
    let holdout = pop.pooled_holdout();
    let t_data = t_start.elapsed().as_secs_f64();

    // 2. Baselines on exactly the sessions the participants read.
    let t1 = Instant::now();
    let pb = crate::progress::spinner("baselines", cfg.quiet);
    pb.set_message("centralised non-private and local-only");
    let (pop, holdout, central, local) = {
        let bc = figures::Setup {
            mode: figures::Mode::Full,
            seed: cfg.seed,
            out: cfg.out.clone(),
            threads: cfg.threads,
            quiet: cfg.quiet,
        }
        .baseline_config();
        tokio::task::spawn_blocking(move || -> Result<_> {
            let c = baselines::central(&pop, &holdout, &bc)?;
            let l = baselines::local_only(&pop, &holdout, &bc)?;
            Ok((pop, holdout, c, l))
        })
        .await
        .map_err(|e| Error::Config(format!("baseline task: {e}")))??
    };
    pb.finish_and_clear();
    let t_baselines = t1.elapsed().as_secs_f64();

    // 3. PKI, coordinator, participants.
    let t2 = Instant::now();
    let (pki, mut ccfg) = crate::loopback::dev_coordinator(&work, cfg.tenants)?;
    ccfg.poll_interval_ms = 300;
    let running = Coordinator::start(ccfg).await?;
    let endpoint = running.endpoint();
    let admin = running.admin();
    let access = AdminAccess::new(endpoint.clone(), &pki, JOB_ID, &work);
    access.write_env()?;
    if let Some(f) = hooks.on_admin {
        f(&access);
    }

    let serving: Vec<bool> = tenants
        .iter()
        .map(|t| cfg.serves(t.data.train.len()))
        .collect();
    let participating = serving.iter().filter(|s| **s).count();
    if participating < 2 {
        return Err(Error::Config(format!(
            "only {participating} tenant(s) have enough training sessions to take part"
        )));
    }
    let tenant_cap = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || cfg.tenant_cap(participating))
            .await
            .map_err(|e| Error::Config(format!("cap task: {e}")))??
    };
    let counts = Arc::new(EventCounts::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::with_capacity(cfg.tenants);
    for (i, (t, entry)) in tenants.iter().zip(&pki.clients).enumerate() {
        if !serving[i] {
            continue;
        }
        let participant = Participant::builder()
            .endpoint(endpoint.clone())
            .tls_files(pki.client_files(entry))
            .release_public_key(running.release_public_key())
            .data(DataSource::Files(vec![LabelledLog {
                log: t.log.clone(),
                labels: Some(t.labels.clone()),
            }]))
            .data_options(DataOptions {
                // Evaluation uses the later time window; train on all read sessions.
                holdout_fraction: 0.0,
                min_examples: DEMO_MIN_EXAMPLES,
                rescan_interval: Duration::from_secs(3600),
                // The synthetic Internet's AS plan and crawler ranges, loaded once.
                network: Some(SharedEnrichment(
                    fedsec_detector::synth::netplan::enrichment(),
                )),
                ..DataOptions::default()
            })
            .policy(PrivacyPolicy::new(tenant_cap, cfg.delta))
            .state_dir(work.join("clients").join(&entry.client_id))
            .seed(cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64))
            .job(JOB_ID)
            .timing(Timing {
                max_poll: Duration::from_secs(2),
                model_refresh: Duration::from_secs(120),
                ..Timing::default()
            })
            .build()
            .map_err(Error::client)?;
        let mut events = participant.subscribe();
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Submitted { .. }) => {
                        c.submitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Skipped { reason, .. }) => {
                        c.skipped.fetch_add(1, Ordering::Relaxed);
                        c.sample(format!("skipped: {reason}"));
                    }
                    Ok(Event::SubmitRejected { message, .. }) => {
                        c.rejected.fetch_add(1, Ordering::Relaxed);
                        c.sample(format!("rejected: {message}"));
                    }
                    Ok(Event::Retrying {
                        operation, error, ..
                    }) => {
                        c.retries.fetch_add(1, Ordering::Relaxed);
                        c.sample(format!("retried {operation}: {error}"));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
        });
        let mut stop = stop_rx.clone();
        handles.push(tokio::spawn(participant.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    let pb = crate::progress::bar(participating as u64, "registering", cfg.quiet);
    pb.set_message(format!("participants over mTLS → {endpoint}"));
    let deadline = Instant::now() + Duration::from_secs(120 + cfg.tenants as u64);
    loop {
        let n = admin.clients().await?.len();
        pb.set_position(n as u64);
        if n >= participating {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Registration {
                registered: n,
                expected: participating,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pb.finish_and_clear();

    // 4. The job, monitored round by round.
    let spec = cfg.job(participating);
    let model = spec.model.clone();
    let job = admin.create_job(spec).await?;
    let t_job = Instant::now();
    let pb = crate::progress::bar(cfg.rounds, "DP-FedAvg", cfg.quiet);
    pb.set_message(format!(
        "job {} started, calibrating z for ε = {}",
        job.job_id, cfg.epsilon
    ));
    let mut rows: Vec<RoundRow> = Vec::new();
    let mut last_weights = model.init_weights(cfg.seed);
    let mut seen_seq = 0u64;
    let timeout = Duration::from_secs(600 + 180 * cfg.rounds);
    let final_job = loop {
        let job = admin.job(JOB_ID)?;
        let ledger = admin.ledger(JOB_ID).await?;
        let since = seen_seq;
        for e in ledger.iter().filter(|e| e.seq > since) {
            seen_seq = e.seq;
            if e.kind == v1::LedgerEntryKind::Rollback as i32 {
                // An operator rolled back (the runbook): that version is
                // what the coordinator serves now.
                let bytes = admin.export(JOB_ID, e.model_version).await?;
                last_weights = fedsec_coordinator::export::from_safetensors(&model, &bytes)
                    .map_err(|e| Error::Config(format!("exported model: {e}")))?
                    .0;
                continue;
            }
            if e.kind != v1::LedgerEntryKind::Round as i32 {
                continue;
            }
            let bytes = admin.export(JOB_ID, e.model_version).await?;
            let (weights, _) = fedsec_coordinator::export::from_safetensors(&model, &bytes)
                .map_err(|e| Error::Config(format!("exported model: {e}")))?;
            let (s, _) = Scores::of_weights(&model, &weights, &holdout, pop.len())?;
            last_weights = weights;
            let round = e.charge.as_ref().map_or(rows.len() as u64 + 1, |c| c.round);
            rows.push(RoundRow {
                round,
                version: e.model_version,
                participants: e.participants,
                clipped_fraction: e.clipped_fraction,
                epsilon_pld: e.epsilon_pld,
                epsilon_rdp: e.epsilon_rdp,
                pooled_auc: s.pooled_auc,
                mean_tenant_auc: s.mean_tenant_auc,
                elapsed_s: t_job.elapsed().as_secs_f64(),
            });
            pb.set_position(round);
            pb.set_message(format!(
                "round {round}: {} participants, held-out AUC {:.3} (pooled {:.3}), ε {:.2} of {}",
                e.participants, s.mean_tenant_auc, s.pooled_auc, e.epsilon_pld, cfg.epsilon
            ));
        }
        let state = v1::JobState::try_from(job.state).unwrap_or_default();
        let terminal = matches!(
            state,
            v1::JobState::Completed | v1::JobState::BudgetExhausted | v1::JobState::Failed
        );
        if terminal && job.rounds_completed == rows.len() as u64 {
            break job;
        }
        if t_job.elapsed() > timeout {
            return Err(Error::Config(format!(
                "the job did not finish within {timeout:?} ({} rounds)",
                rows.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    pb.finish_and_clear();
    let t_fed = t2.elapsed().as_secs_f64();

    // 5. Final scores and the report.
    let (federated, _) = Scores::of_weights(&model, &last_weights, &holdout, pop.len())?;
    let fed_scores = eval::score(&model, &last_weights, holdout.data.features())?;
    let outcome = DemoOutcome {
        noise_multiplier: final_job.noise_multiplier,
        sampling_rate: final_job.sampling_rate,
        parameters: model.num_params(),
        noise_to_clip: final_job.noise_multiplier * (model.num_params() as f64).sqrt()
            / final_job.expected_cohort.max(1.0),
        job_state: job_state_name(final_job.state),
        federated,
        central: Scores::of_baseline(&central),
        local: Scores::of_baseline(&local),
        epsilon: rows.last().map_or(0.0, |r| r.epsilon_pld),
        recall_federated: eval::archetype_recall(&fed_scores, &holdout),
        recall_central: eval::archetype_recall(&central.scores, &holdout),
        train_sessions: pop.tenants.iter().map(|t| t.train.len()).sum(),
        participating,
        holdout_sessions: holdout.len(),
        log_lines,
        log_bytes,
        submitted: counts.submitted.load(Ordering::Relaxed),
        skipped: counts.skipped.load(Ordering::Relaxed),
        tenant_cap,
        retries: counts.retries.load(Ordering::Relaxed),
        rejected: counts.rejected.load(Ordering::Relaxed),
        event_samples: counts.samples.lock().map(|v| v.clone()).unwrap_or_default(),
        timings: [t_data, t_baselines, t_fed, t_start.elapsed().as_secs_f64()],
        report: cfg.out.join("report.md"),
        rounds: rows,
        config: cfg,
    };
    report::write(&outcome, &holdout)?;

    // 6. Hold (the coordinator still serves the admin API), then stop everything.
    if let Some(hold) = hooks.hold {
        hold(&outcome).await;
    }
    let _ = stop_tx.send(true);
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(30), h).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("participant ended with an error: {e}"),
            Ok(Err(e)) => tracing::warn!("participant task: {e}"),
            Err(_) => tracing::warn!("participant did not stop within 30 s"),
        }
    }
    running.shutdown().await?;
    Ok(outcome)
}

#[cfg(test)]
mod tests;
