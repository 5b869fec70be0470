//! Experiment 6, the empirical privacy audit: the coordinator's canary
//! mode against the accountant.
//!
//! One embedded [`Coordinator`] (dev CA, SQLite data directory, gRPC over
//! loopback mutual TLS) runs one audited job per noise level: noise
//! calibrated by the coordinator to ε ∈ {1, 2, 4, 8} at δ = 1e-6 (opendp's
//! exact Gaussian, the production source), and once with noise disabled
//! through the `[dangerous]` flag. Real gRPC clients (`fedsec_client::rpc`)
//! register with their own certificates, poll, and submit a synthetic
//! update when selected — a seeded random direction with a norm between
//! 0.5·C and 1.5·C, so some are re-clipped. They do not train: the audit
//! measures the coordinator's mechanism (selection, re-clipping, noise,
//! fixed denominator, release), which is what the accountant's proof is
//! about. The coordinator inserts the canaries, computes ε̂ and the lower
//! bounds when the job ends and serves them in `Job.audit`.
//!
//! Checked (the subcommand fails otherwise): every lower bound is at most
//! the accountant's ε — a violation is a bug to find, not a result — and the
//! run without noise reports a large ε (the audit has power).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fedsec_client::TaskRef;
use fedsec_client::rpc::{Rpc, update_messages};
use fedsec_coordinator::config::{AuditSpec, DangerousConfig, ScreenPolicyKind};
use fedsec_coordinator::{Coordinator, JobSpec};
use fedsec_model::ModelSpec;
use fedsec_privacy::NoiseKind;
use fedsec_proto::tls::ClientTls;
use fedsec_proto::v1::{self, get_task_response};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha12Rng;
use serde::Serialize;

use super::{DELTA, Mode, Setup, image, link};
use crate::error::{Error, Result};
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{eps, markdown_table, upsert_section, write_csv};

/// Section key and subcommand.
pub const KEY: &str = "audit";

/// Target ε of the calibrated runs.
pub const EPSILONS: [f64; 4] = [1.0, 2.0, 4.0, 8.0];

/// Clip norm C of the audited jobs.
const CLIP: f64 = 1.0;

/// Size of the audit in a mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Registered clients N.
    pub clients: usize,
    /// Poisson rate q (real clients and canaries).
    pub sampling_rate: f64,
    /// Rounds per job.
    pub rounds: u64,
    /// Inserted canaries k (as many unseen).
    pub canaries: u32,
    /// The model (only its dimension matters to the audit).
    pub model: ModelSpec,
    /// Lower bound the no-noise run must reach to show the audit's power.
    pub min_no_noise_bound: f64,
}

impl Params {
    /// The parameters of `mode`.
    pub fn of(mode: Mode) -> Self {
        match mode {
            Mode::Fast => Self {
                clients: 8,
                sampling_rate: 0.5,
                rounds: 6,
                canaries: 50,
                model: ModelSpec::logistic(999),
                min_no_noise_bound: 1.5,
            },
            Mode::Full => Self {
                clients: 100,
                sampling_rate: 0.2,
                rounds: 50,
                canaries: 500,
                model: ModelSpec::mlp(38, [256]),
                min_no_noise_bound: 3.0,
            },
        }
    }
}

/// One audited job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `eps_1`, …, `no_noise`.
    pub run: String,
    /// Target ε (∞ without noise).
    pub target_epsilon: f64,
    /// ε the accountant charged after the job (PLD; ∞ without noise).
    pub accountant_epsilon: f64,
    /// Noise multiplier z (0 without noise).
    pub noise_multiplier: f64,
    /// Rounds committed.
    pub rounds: u64,
    /// Model dimension d.
    pub dim: usize,
    /// Inserted canaries.
    pub canaries: u32,
    /// Unseen canaries.
    pub unseen_canaries: u32,
    /// Andrew et al. ε̂ from the final model.
    pub epsilon_one_shot_final: f64,
    /// Andrew et al. ε̂ from all iterates.
    pub epsilon_one_shot_all_iterates: f64,
    /// Lower bound at 95 % (max of the one-run bounds).
    pub epsilon_lower_bound: f64,
    /// One-run bound, final model.
    pub epsilon_one_run_final: f64,
    /// One-run bound, all iterates.
    pub epsilon_one_run_all_iterates: f64,
    /// Clopper–Pearson bound, final model (heuristic in one run).
    pub epsilon_clopper_pearson_final: f64,
    /// Clopper–Pearson bound, all iterates.
    pub epsilon_clopper_pearson_all_iterates: f64,
    /// Wall-clock seconds of the job.
    pub seconds: f64,
}

impl Row {
    fn lower_bounds(&self) -> [(&'static str, f64); 5] {
        [
            ("one-run (final model)", self.epsilon_one_run_final),
            ("one-run (all iterates)", self.epsilon_one_run_all_iterates),
            (
                "Clopper–Pearson (final model)",
                self.epsilon_clopper_pearson_final,
            ),
            (
                "Clopper–Pearson (all iterates)",
                self.epsilon_clopper_pearson_all_iterates,
            ),
            ("lower bound", self.epsilon_lower_bound),
        ]
    }
}

/// What the experiment wrote.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// One row per job (calibrated runs, then the no-noise run).
    pub rows: Vec<Row>,
    /// The CSV.
    pub csv: PathBuf,
    /// The figure.
    pub png: PathBuf,
    /// Parameters used.
    pub params: Params,
}

/// The checks: every lower bound ≤ the accountant's ε; without noise a
/// large ε̂ (above every calibrated ε) and a lower bound of at least
/// `params.min_no_noise_bound`. Returns the failures.
pub fn check(rows: &[Row], params: &Params) -> Vec<String> {
    let mut failures = Vec::new();
    let largest = EPSILONS.iter().copied().fold(0.0, f64::max);
    for r in rows {
        if r.noise_multiplier > 0.0 {
            for (name, lb) in r.lower_bounds() {
                if lb.is_nan() || lb > r.accountant_epsilon * (1.0 + 1e-9) {
                    failures.push(format!(
                        "{}: {name} ε ≥ {lb:.4} exceeds the accountant's ε = {:.4} — a privacy bug",
                        r.run, r.accountant_epsilon
                    ));
                }
            }
        } else {
            let est = r
                .epsilon_one_shot_final
                .max(r.epsilon_one_shot_all_iterates);
            if est.is_nan() || est <= largest {
                failures.push(format!(
                    "{}: ε̂ = {est:.3} is not above {largest}: the audit has no power",
                    r.run
                ));
            }
            if r.epsilon_lower_bound.is_nan() || r.epsilon_lower_bound < params.min_no_noise_bound {
                failures.push(format!(
                    "{}: lower bound {:.3} below {}: the audit has no power",
                    r.run, r.epsilon_lower_bound, params.min_no_noise_bound
                ));
            }
        }
    }
    if rows.iter().filter(|r| r.noise_multiplier == 0.0).count() != 1 {
        failures.push("expected exactly one run without noise".into());
    }
    failures
}

/// A client's synthetic update for one round attempt: a seeded random
/// direction with norm uniform in [0.5·C, 1.5·C].
fn synthetic_update(seed: u64, client: usize, task: &v1::Task, dim: usize) -> Vec<f32> {
    let mut rng = ChaCha12Rng::seed_from_u64(
        seed ^ (client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ task.round.wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ u64::from(task.attempt).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7),
    );
    let mut u: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = u.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let target = CLIP * rng.random_range(0.5..1.5);
    let scale = (target / norm.max(1e-12)) as f32;
    for x in &mut u {
        *x *= scale;
    }
    u
}

/// Polls `job_id` until it finishes, submitting a synthetic update when selected.
async fn client_loop(
    rpc: Rpc,
    job_id: String,
    client: usize,
    seed: u64,
    dim: usize,
    until: Instant,
) {
    while Instant::now() < until {
        let wait = match rpc.get_task(&job_id).await {
            Ok(get_task_response::Outcome::Task(t)) => {
                let update = synthetic_update(seed, client, &t, dim);
                let nonce = format!("{}-{}", t.round, t.attempt);
                let within = update.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() <= CLIP;
                let msgs = update_messages(&TaskRef::from(&t), nonce.as_bytes(), &update, within);
                if let Err(e) = rpc.submit(&msgs[..]).await {
                    tracing::debug!(client, error = %e, "audit client: upload refused");
                }
                continue;
            }
            Ok(get_task_response::Outcome::Retry(r)) => r.retry_after_ms.clamp(10, 500),
            Ok(get_task_response::Outcome::Finished(_)) => return,
            Err(_) => 100,
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

fn job_spec(id: &str, p: &Params, seed: u64, target: Option<f64>) -> JobSpec {
    // One tenant per client (the dev PKI's default): the population is N.
    let mut job = JobSpec::new(id, p.model.clone(), p.sampling_rate, p.clients as u64);
    job.init_seed = seed;
    job.rounds = p.rounds;
    job.min_clients = 1;
    job.round_deadline_ms = 60_000;
    job.delta = DELTA;
    job.clipping.clip_norm = CLIP;
    job.noise_source = NoiseKind::OpenDp;
    // The audit's synthetic updates (0.5–1.5·C) test the re-clipping and the
    // noise, the mechanism the DP claim rests on: screened updates stay in
    // the sum (the default `exclude` would leave out the ones above 1.01·C
    // and audit a different mechanism).
    job.screen.policy = ScreenPolicyKind::Log;
    match target {
        Some(e) => {
            job.noise_multiplier = None;
            job.target_epsilon = Some(e);
        }
        None => {
            job.noise_multiplier = None;
            job.disable_noise = true;
        }
    }
    job.audit = Some(AuditSpec {
        canaries: p.canaries,
        seed: seed.wrapping_add(1000),
    });
    job
}

async fn run_jobs(setup: &Setup, p: &Params) -> Result<Vec<Row>> {
    let work = tempfile::Builder::new()
        .prefix("fedsec-audit-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let (pki, mut ccfg) = crate::loopback::dev_coordinator(work.path(), p.clients)?;
    ccfg.poll_interval_ms = 50;
    ccfg.dangerous = Some(DangerousConfig {
        allow_disabled_noise: true,
        allow_simulation_noise: false,
    });
    let running = Coordinator::start(ccfg).await?;
    let endpoint = running.endpoint();
    let admin = running.admin();
    let mut rpcs = Vec::with_capacity(p.clients);
    for entry in &pki.clients {
        let tls = ClientTls::from_files(&pki.client_files(entry)).map_err(Error::client)?;
        let rpc = Rpc::new(tls, &endpoint, Duration::from_secs(30))
            .map_err(Error::client)?
            .with_release_key(running.release_public_key());
        rpc.register().await.map_err(Error::client)?;
        rpcs.push(rpc);
    }
    let dim = p.model.num_params();
    let runs: Vec<(String, Option<f64>)> = EPSILONS
        .iter()
        .map(|&e| (format!("eps_{e}"), Some(e)))
        .chain(std::iter::once(("no_noise".to_string(), None)))
        .collect();
    let pb = crate::progress::bar(runs.len() as u64, "audit", setup.quiet);
    let mut rows = Vec::with_capacity(runs.len());
    for (run, target) in runs {
        pb.set_message(format!(
            "{run}: {} rounds, {} canaries, d = {dim}",
            p.rounds, p.canaries
        ));
        let t0 = Instant::now();
        let id = format!("audit-{}", run.replace(['_', '.'], "-"));
        admin
            .create_job(job_spec(&id, p, setup.seed, target))
            .await?;
        let until = Instant::now() + Duration::from_secs(600 + 30 * p.rounds);
        let handles: Vec<_> = rpcs
            .iter()
            .enumerate()
            .map(|(i, rpc)| {
                tokio::spawn(client_loop(
                    rpc.clone(),
                    id.clone(),
                    i,
                    setup.seed,
                    dim,
                    until,
                ))
            })
            .collect();
        let job = admin
            .wait_for_job(&id, until - Instant::now(), |j| {
                j.audit.is_some()
                    || j.state == v1::JobState::Failed as i32
                    || j.state == v1::JobState::BudgetExhausted as i32
                        && j.rounds_completed < p.rounds
            })
            .await?;
        for h in handles {
            let _ = h.await;
        }
        let Some(a) = job.audit else {
            return Err(Error::Config(format!(
                "job {id} ended without an audit: state {}, {} rounds, {}",
                job.state, job.rounds_completed, job.state_reason
            )));
        };
        rows.push(Row {
            run,
            target_epsilon: target.unwrap_or(f64::INFINITY),
            accountant_epsilon: job.epsilon_pld,
            noise_multiplier: job.noise_multiplier,
            rounds: job.rounds_completed,
            dim,
            canaries: a.canaries,
            unseen_canaries: a.unseen_canaries,
            epsilon_one_shot_final: a.epsilon_one_shot_final,
            epsilon_one_shot_all_iterates: a.epsilon_one_shot_all_iterates,
            epsilon_lower_bound: a.epsilon_lower_bound,
            epsilon_one_run_final: a.epsilon_one_run_final,
            epsilon_one_run_all_iterates: a.epsilon_one_run_all_iterates,
            epsilon_clopper_pearson_final: a.epsilon_clopper_pearson_final,
            epsilon_clopper_pearson_all_iterates: a.epsilon_clopper_pearson_all_iterates,
            seconds: t0.elapsed().as_secs_f64(),
        });
        pb.inc(1);
    }
    pb.finish_and_clear();
    running.shutdown().await?;
    Ok(rows)
}

fn est(v: f64) -> String {
    if v.is_finite() && v > 1e3 {
        "> 1000".into()
    } else {
        eps(v)
    }
}

/// Runs the experiment: CSV, PNG, README section; then the checks (an
/// error naming every failed check if any).
pub fn run(setup: &Setup) -> Result<Outcome> {
    let t0 = Instant::now();
    let params = Params::of(setup.mode);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(setup.threads.max(2))
        .enable_all()
        .build()
        .map_err(|e| Error::Config(format!("tokio runtime: {e}")))?;
    let rows = rt.block_on(run_jobs(setup, &params))?;
    drop(rt);

    let csv = setup.output("audit.csv")?;
    write_csv(&csv, &rows)?;
    let png = setup.output("audit.png")?;
    let noisy: Vec<&Row> = rows.iter().filter(|r| r.noise_multiplier > 0.0).collect();
    let open = rows.iter().find(|r| r.noise_multiplier == 0.0);
    let pts = |f: fn(&Row) -> f64| -> Vec<(f64, f64)> {
        noisy.iter().map(|r| (r.accountant_epsilon, f(r))).collect()
    };
    let (x0, x1) = (0.8, 10.0);
    let mut series = vec![
        Series::line(
            "accountant ε (proven upper bound)",
            vec![(x0, x0), (x1, x1)],
            plot::REFERENCE_GREY,
        )
        .no_markers(),
        Series::line(
            "estimated ε, one-shot, final model (Andrew et al.)",
            pts(|r| r.epsilon_one_shot_final),
            plot::color(0),
        ),
        Series::line(
            "estimated ε, one-shot, all iterates",
            pts(|r| r.epsilon_one_shot_all_iterates),
            plot::color(1),
        ),
        Series::line(
            "lower bound, 95 % (one-run, Steinke et al.)",
            pts(|r| r.epsilon_lower_bound),
            plot::color(2),
        ),
        Series::line(
            "Clopper–Pearson, all iterates (heuristic)",
            pts(|r| r.epsilon_clopper_pearson_all_iterates),
            plot::color(3),
        ),
    ];
    series[0].dashed = true;
    if let Some(o) = open {
        series.push(Series::reference(
            format!(
                "no noise: lower bound {:.2}, estimated ε {}",
                o.epsilon_lower_bound,
                est(o
                    .epsilon_one_shot_final
                    .max(o.epsilon_one_shot_all_iterates))
            ),
            o.epsilon_lower_bound,
            x0,
            x1,
            plot::color(4),
        ));
    }
    let dim = params.model.num_params();
    plot::line_chart(
        &png,
        (900, 620),
        &LineChart {
            title: "Empirical privacy audit: canaries in the real coordinator".into(),
            caption: format!(
                "{} clients, q = {}, {} rounds, d = {dim}, {} canaries + {} unseen, C = {CLIP}, δ = {DELTA:e}, \
                 opendp noise; {} mode, seed {}",
                params.clients,
                params.sampling_rate,
                params.rounds,
                params.canaries,
                params.canaries,
                setup.mode.name(),
                setup.seed
            ),
            x_label: format!(
                "accountant ε after {} rounds (PLD, log scale)",
                params.rounds
            ),
            y_label: "ε (estimate or lower bound)".into(),
            x_log: true,
            x_range: Some((x0, x1)),
            y_range: Some((0.0, x1)),
            series,
            legend: Legend::UpperLeft,
        },
    )?;

    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                if r.noise_multiplier > 0.0 {
                    eps(r.target_epsilon)
                } else {
                    "none (no noise)".into()
                },
                if r.noise_multiplier > 0.0 {
                    format!("{:.3}", r.noise_multiplier)
                } else {
                    "0".into()
                },
                eps(r.accountant_epsilon),
                est(r.epsilon_one_shot_final),
                est(r.epsilon_one_shot_all_iterates),
                format!("{:.2}", r.epsilon_one_run_final),
                format!("{:.2}", r.epsilon_one_run_all_iterates),
                format!("{:.2}", r.epsilon_clopper_pearson_final),
                format!("{:.2}", r.epsilon_clopper_pearson_all_iterates),
                format!("**{:.2}**", r.epsilon_lower_bound),
            ]
        })
        .collect();
    let failures = check(&rows, &params);
    let verdict = if failures.is_empty() {
        "Checked: every lower bound ≤ the accountant's ε, and the run without noise reports a \
         large ε (the audit has power)."
            .to_string()
    } else {
        format!("**CHECK FAILED**: {}", failures.join("; "))
    };
    let body = format!(
        "## 6. Empirical privacy audit\n\n{}\n\n\
         The coordinator's canary mode (`audit.canaries`): {k} canary clients, each always sending a \
         fixed random unit direction × C, are selected by the same keyed Poisson sampler as real clients \
         (rate q) and added to the clipped sum before noise; {k} more directions are drawn but never \
         inserted. When the job ends the coordinator computes, from the published models, Andrew et al.'s \
         one-shot ε̂ (2024) and lower bounds valid with 95 % confidence (Steinke, Nasr & Jagielski 2023, \
         one run), for the final model and for all iterates, and stores them with the job. Noise is \
         calibrated by the coordinator to each target ε (PLD accountant). ε̂ is an estimate for this \
         attack and may lie on either side of ε; the lower bounds must not exceed it. The opendp noise \
         is not seeded, so the numbers vary between runs (full-mode runs before and after issue 19 differed \
         by up to 5.2 in ε̂ of all iterates at ε = 8, and by up to 0.55 in a lower bound).\n\n{}\n\
         {verdict}\n\n\
         Setup: one embedded coordinator (SQLite, gRPC over loopback mutual TLS, opendp's exact Gaussian \
         noise), {n} registered clients speaking the real protocol, each submitting a seeded synthetic \
         update (random direction, norm 0.5–1.5 C) when selected — they do not train, so the model learns \
         nothing; the audit measures the mechanism. q = {q}, {t} rounds, model {model} (d = {dim}), C = \
         {CLIP}, δ = {DELTA:e}, FedAvg. Mode `{mode}`, {secs:.0} s on this machine.\n\n\
         Reproduce: `{cmd}` (or `experiments/scripts/audit.sh {mode}`).\n\nData: {csv}.",
        image(
            &png,
            "empirical epsilon and lower bounds against the accountant's epsilon"
        ),
        markdown_table(
            &[
                "target ε",
                "z",
                "accountant ε",
                "ε̂ final",
                "ε̂ all iterates",
                "one-run final",
                "one-run all iterates",
                "CP final",
                "CP all iterates",
                "lower bound (95 %)",
            ],
            &table_rows
        ),
        k = params.canaries,
        n = params.clients,
        q = params.sampling_rate,
        t = params.rounds,
        model = params.model,
        mode = setup.mode.name(),
        secs = t0.elapsed().as_secs_f64(),
        cmd = setup.command(KEY),
        csv = link(&csv),
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    if !failures.is_empty() {
        return Err(Error::AuditCheck(failures));
    }
    Ok(Outcome {
        rows,
        csv,
        png,
        params,
    })
}
