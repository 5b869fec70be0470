//! Experiment 7, weak labels: a federation where 0 %, 10 % or 100 % of the
//! tenants have ground-truth labels and the rest only the default weak
//! labeller's silver labels (`fedsec_detector::weak`), at ε = 3, against the
//! rules alone and a per-tenant local anomaly score (robust z, the day-one
//! score's local half; the per-tenant IsolationForest baseline is
//! `experiments/scripts/iforest_baseline.py` on the exported features).
//!
//! Methods closing the gap to full labels: federated **self-training**
//! ([`self_train`]: tenants without ground truth pseudo-label their
//! abstained sessions with the global model each round), and the model's
//! score **plus the rules' own score** at scoring time
//! (`fedsec_detector::weak::combine`). The ceiling of any federated variant
//! on silver labels: a centrally trained, non-private model on the pooled
//! silver labels (`central_silver`).
//!
//! Every tenant's sessions are split three ways: a holdout (30 %, ground
//! truth, evaluation only), a validation part (25 % of the rest, ground
//! truth, used only for the experiment's choices: the weight of abstained
//! sessions and the self-training setting, on the first seed; the day-one
//! blend weight β and the rules weight γ, per seed) and the training part
//! (the only rows any model trains on). Several seeds; mean ± standard
//! deviation over seeds.

mod data;
mod report;
pub mod self_train;

pub use data::{RULE_NAMES, VALIDATION_FRACTION, WeakPopulation, WeakRow, WeakTenant};
pub use report::{Summary, summarise};

use std::path::{Path, PathBuf};
use std::time::Instant;

use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::metrics;
use fedsec_detector::weak::anomaly::{RobustProfile, blend};
use fedsec_detector::weak::combine::{Percentiles, rules_first, tie_break, with_rules};
use fedsec_detector::weak::{SelfTraining, SilverPolicy};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{HOLDOUT_FRACTION, Setup, TARGET_EPSILON, run_fed, setup_text};
use crate::baselines;
use crate::data::HoldoutSet;
use crate::error::Result;
use crate::eval;
use crate::report::{f3, upsert_section, write_csv};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "weak-labels";
/// Shares of tenants with ground-truth labels.
pub const GT_SHARES: [f64; 3] = [0.0, 0.1, 1.0];
/// Candidate weights of abstained sessions (as negatives; 0 = left out).
pub const ABSTAINED_WEIGHTS: [f64; 3] = [0.0, 0.1, 0.3];
/// Candidate blend weights β of the local anomaly percentile in the day-one score.
pub const BETAS: [f32; 5] = [0.0, 0.1, 0.2, 0.3, 0.5];
/// Candidate weights γ of the rules' score added to the model's log-odds
/// (100: in effect the rules first, the model breaking their ties).
pub const GAMMAS: [f32; 8] = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 16.0, 100.0];
/// Candidate self-training settings (share, margin, weight), chosen on the
/// first seed's validation rows with no ground truth anywhere.
pub const SELF_TRAINING_GRID: [(f64, f64, f64); 3] =
    [(0.3, 0.2, 0.5), (0.6, 0.2, 0.5), (0.6, 0.1, 1.0)];
/// Candidate tie-break weights τ of [`rules_first`]: below 0.5 (the rules'
/// smallest default weight step) the order is strictly rules first; at 100
/// it is the tie-break first, the rules only breaking its ties (what a
/// tenant with a good model should choose).
pub const TAUS: [f32; 6] = [0.1, 0.25, 0.45, 1.0, 2.0, 100.0];
/// Candidate shares β of the anomaly percentile in the rules-first tie-break
/// (the rest is the global model's percentile).
pub const TIE_BETAS: [f32; 5] = [0.0, 0.25, 0.5, 0.75, 1.0];
/// Self-training starts after this share of the job's rounds.
pub const WARMUP_SHARE: f64 = 0.2;
/// FPR of the reported recall.
pub const RECALL_FPR: f64 = 0.01;

/// Options beyond the common ones.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Seeds: `setup.seed`, `setup.seed + 1`, ... (at least 1).
    pub seeds: u64,
    /// Write `features-seed<N>.csv` here for the IsolationForest script
    /// (and `weak-seed<N>.csv` for `weak_methods.py`).
    pub export_features: Option<PathBuf>,
}

/// One line of the CSV: one seed, one method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Seed.
    pub seed: u64,
    /// Method.
    pub method: String,
    /// Share of tenants with ground truth (NaN: the method uses no labels).
    pub gt_share: f64,
    /// Mean per-tenant held-out ROC-AUC (ground truth).
    pub mean_tenant_auc: f64,
    /// Recall at 1 % FPR over the pooled holdout.
    pub recall_at_1pct_fpr: f64,
    /// Tenants whose holdout has both classes.
    pub tenants_with_auc: usize,
    /// Share of them where this method's AUC is above the rules' alone.
    pub share_beating_rules: f64,
    /// Smallest (method − rules) AUC difference over tenants.
    pub worst_gain_over_rules: f64,
    /// ε spent (federated methods), else 0.
    pub epsilon: f64,
    /// The setting chosen on validation, else NaN: the abstained weight
    /// (`federated`), β (`federated_plus_anomaly`), γ (`*_plus_rules`), the
    /// self-training share (`self_training`).
    pub chosen: f64,
}

/// What the experiment wrote.
pub type Outcome = super::Outcome<Row>;

struct Eval {
    per_tenant: Vec<Option<f64>>,
    mean: f64,
    n: usize,
    recall: f64,
}

fn evaluate(scores: &[f32], set: &HoldoutSet, tenants: usize) -> Eval {
    let per_tenant = eval::per_tenant_auc(scores, set, tenants);
    let (mean, n) = eval::mean_defined(&per_tenant);
    Eval {
        per_tenant,
        mean,
        n,
        recall: metrics::recall_at_fpr(scores, &set.labels, RECALL_FPR).unwrap_or(f64::NAN),
    }
}

fn versus_rules(e: &Eval, rules: &Eval) -> (f64, f64) {
    let diffs: Vec<f64> = e
        .per_tenant
        .iter()
        .zip(&rules.per_tenant)
        .filter_map(|(a, b)| Some((*a)? - (*b)?))
        .collect();
    if diffs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let beat = diffs.iter().filter(|&&d| d > 0.0).count();
    (
        beat as f64 / diffs.len() as f64,
        diffs.iter().copied().fold(f64::INFINITY, f64::min),
    )
}

/// Per-tenant local anomaly percentiles of `rows` (holdout or validation),
/// each tenant's profile fitted on its own training features only.
fn anomaly_percentiles(pop: &WeakPopulation, pick: impl Fn(&WeakTenant) -> &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    for t in &pop.tenants {
        let rows = pick(t);
        match RobustProfile::fit(t.data.train.features(), NUM_FEATURES) {
            Some(p) => out.extend(p.scores(rows).into_iter().map(|s| p.percentile(s))),
            None => out.extend(std::iter::repeat_n(0.5, rows.len() / NUM_FEATURES)),
        }
    }
    out
}

fn with_truth(n: usize, share: f64, seed: u64) -> Vec<bool> {
    let k = (share * n as f64).round() as usize;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x6774_7275_7468));
    let mut out = vec![false; n];
    for &i in order.iter().take(k) {
        out[i] = true;
    }
    out
}

/// The self-training candidates of [`SELF_TRAINING_GRID`] for a job of `rounds`.
pub fn self_training_candidates(rounds: u64) -> Vec<SelfTraining> {
    SELF_TRAINING_GRID
        .iter()
        .map(|&(share, margin, weight)| SelfTraining {
            enabled: true,
            share,
            margin,
            weight,
            warmup_rounds: (WARMUP_SHARE * rounds as f64).round() as u64,
        })
        .collect()
}

fn plus_rules(p: &[f32], rules: &[f64], gamma: f32) -> Vec<f32> {
    p.iter()
        .zip(rules)
        .map(|(&p, &s)| with_rules(p, s, gamma))
        .collect()
}

/// γ of [`GAMMAS`] with the best mean per-tenant validation AUC.
fn choose_gamma(p_val: &[f32], rules_val: &[f64], validation: &HoldoutSet, n: usize) -> f32 {
    let mut best = (f64::NEG_INFINITY, 0.0f32);
    for g in GAMMAS {
        let m = evaluate(&plus_rules(p_val, rules_val, g), validation, n).mean;
        if m > best.0 {
            best = (m, g);
        }
    }
    best.1
}

/// Per-tenant percentiles of the model's scores of `rows` (holdout or
/// validation) among the scores of the tenant's own training sessions.
fn model_percentiles(
    pop: &WeakPopulation,
    spec: &fedsec_model::ModelSpec,
    weights: &[f32],
    pick: impl Fn(&WeakTenant) -> &[f32],
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for t in &pop.tenants {
        let reference = eval::score(spec, weights, t.data.train.features())?;
        let p = Percentiles::new(&reference);
        out.extend(p.all(&eval::score(spec, weights, pick(t))?));
    }
    Ok(out)
}

fn rules_first_scores(
    rules: &[f64],
    model: &[f32],
    anomaly: &[f32],
    tau: f32,
    beta: f32,
) -> Vec<f32> {
    rules
        .iter()
        .zip(model.iter().zip(anomaly))
        .map(|(&r, (&m, &a))| rules_first(r, tie_break(m, a, beta), tau))
        .collect()
}

/// (τ, β) of [`TAUS`] × `betas` with the best mean per-tenant validation AUC.
fn choose_rules_first(
    rules_val: &[f64],
    model_val: &[f32],
    anomaly_val: &[f32],
    betas: &[f32],
    validation: &HoldoutSet,
    n: usize,
) -> (f32, f32) {
    let mut best = (f64::NEG_INFINITY, TAUS[0], betas[0]);
    for tau in TAUS {
        for &beta in betas {
            let s = rules_first_scores(rules_val, model_val, anomaly_val, tau, beta);
            let m = evaluate(&s, validation, n).mean;
            if m > best.0 {
                best = (m, tau, beta);
            }
        }
    }
    (best.1, best.2)
}

fn st_text(c: &SelfTraining) -> String {
    format!(
        "share {}, margin {}, weight {}, warm-up {} rounds",
        c.share, c.margin, c.weight, c.warmup_rounds
    )
}

/// Generates each seed's population and writes only its data to `dir`
/// (`features-seed<N>.csv`, `weak-seed<N>.csv`), for the Python scripts;
/// returns the files written.
pub fn export(setup: &Setup, seeds: u64, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for seed in (0..seeds.max(1)).map(|k| setup.seed + k) {
        let s = Setup {
            seed,
            ..setup.clone()
        };
        let wp = WeakPopulation::generate(&s.population_config(), HOLDOUT_FRACTION, s.threads)?;
        for (name, weak) in [("features", false), ("weak", true)] {
            let path = dir.join(format!("{name}-seed{seed}.csv"));
            if weak {
                wp.export_weak(&path)?;
            } else {
                wp.export_features(&path)?;
            }
            out.push(path);
        }
    }
    Ok(out)
}

/// Runs the experiment and writes its CSV, PNG and README section.
pub fn run(setup: &Setup, opts: &Options) -> Result<Outcome> {
    let t0 = Instant::now();
    let mut rows = Vec::new();
    let mut abstained_weight: Option<f64> = None;
    let mut self_training: Option<SelfTraining> = None;
    let mut notes: Vec<String> = Vec::new();
    let seeds: Vec<u64> = (0..opts.seeds.max(1)).map(|k| setup.seed + k).collect();
    let mut last_fed = None;
    let mut pop_cfg = setup.population_config();
    for &seed in &seeds {
        let s = Setup {
            seed,
            ..setup.clone()
        };
        pop_cfg = s.population_config();
        let pb = crate::progress::spinner("weak labels", s.quiet);
        pb.set_message(format!(
            "generating {} tenants (seed {seed})",
            pop_cfg.tenants
        ));
        let wp = WeakPopulation::generate(&pop_cfg, HOLDOUT_FRACTION, s.threads)?;
        pb.finish_and_clear();
        if let Some(dir) = &opts.export_features {
            wp.export_features(&dir.join(format!("features-seed{seed}.csv")))?;
            wp.export_weak(&dir.join(format!("weak-seed{seed}.csv")))?;
        }
        let n = wp.len();
        let holdout = wp.holdout();
        let validation = wp.validation();
        let rules_hold: Vec<f64> = wp
            .tenants
            .iter()
            .flat_map(|t| t.holdout_weak.iter().map(|w| w.score))
            .collect();
        let rules_val: Vec<f64> = wp
            .tenants
            .iter()
            .flat_map(|t| t.validation_weak.iter().map(|w| w.score))
            .collect();
        let rules_scores: Vec<f32> = rules_hold.iter().map(|&s| s as f32).collect();
        let rules = evaluate(&rules_scores, &holdout, n);
        let mut push = |method: &str, share: f64, e: &Eval, epsilon: f64, chosen: f64| {
            let (beat, worst) = versus_rules(e, &rules);
            rows.push(Row {
                seed,
                method: method.into(),
                gt_share: share,
                mean_tenant_auc: e.mean,
                recall_at_1pct_fpr: e.recall,
                tenants_with_auc: e.n,
                share_beating_rules: beat,
                worst_gain_over_rules: worst,
                epsilon,
                chosen,
            });
        };
        push("rules_alone", f64::NAN, &rules, 0.0, f64::NAN);
        let anomaly_holdout = anomaly_percentiles(&wp, |t| t.data.holdout.features());
        let anomaly_val = anomaly_percentiles(&wp, |t| t.validation.features());
        push(
            "local_anomaly",
            f64::NAN,
            &evaluate(&anomaly_holdout, &holdout, n),
            0.0,
            f64::NAN,
        );
        // Rules first, ties by the local anomaly percentile alone (no model,
        // no federation): τ chosen on validation.
        {
            let (tau, _) = choose_rules_first(
                &rules_val,
                &anomaly_val,
                &anomaly_val,
                &[1.0],
                &validation,
                n,
            );
            let e = evaluate(
                &rules_first_scores(&rules_hold, &anomaly_holdout, &anomaly_holdout, tau, 1.0),
                &holdout,
                n,
            );
            push("rules_first_anomaly", f64::NAN, &e, 0.0, f64::from(tau));
            notes.push(format!(
                "rules first, anomaly tie-break (seed {seed}): τ = {tau}"
            ));
        }
        let fed_cfg = s.fed_config(n, Noise::TargetEpsilon(TARGET_EPSILON));
        let none = with_truth(n, 0.0, seed);
        // The abstained weight: chosen once, on the first seed's validation
        // rows, with no ground truth anywhere.
        let chosen_w = match abstained_weight {
            Some(w) => w,
            None => {
                let mut best = (f64::NEG_INFINITY, ABSTAINED_WEIGHTS[0]);
                let mut seen = Vec::new();
                for w in ABSTAINED_WEIGHTS {
                    let policy = SilverPolicy {
                        abstained_weight: w,
                        ..SilverPolicy::default()
                    };
                    let pop = wp.scenario(&pop_cfg, HOLDOUT_FRACTION, &none, &policy);
                    let label = format!("choosing abstained weight {w} (seed {seed})");
                    let (run, _, _) = run_fed(&s, &pop, &validation, &fed_cfg, None, &label)?;
                    let v = eval::score(&fed_cfg.model, &run.weights, validation.data.features())?;
                    let m = evaluate(&v, &validation, n).mean;
                    seen.push(format!("{w}: {}", f3(m)));
                    if m > best.0 {
                        best = (m, w);
                    }
                }
                notes.push(format!(
                    "validation AUC by abstained weight (seed {seed}, no ground truth): {}; chosen {}",
                    seen.join(", "),
                    best.1
                ));
                abstained_weight = Some(best.1);
                best.1
            }
        };
        let policy = SilverPolicy {
            abstained_weight: chosen_w,
            ..SilverPolicy::default()
        };
        // The self-training setting: chosen once, on the first seed's
        // validation rows, with no ground truth anywhere.
        let st = match self_training {
            Some(c) => c,
            None => {
                let pop = wp.scenario(&pop_cfg, HOLDOUT_FRACTION, &none, &policy);
                let mut best: Option<(f64, SelfTraining)> = None;
                let mut seen = Vec::new();
                for c in self_training_candidates(fed_cfg.rounds) {
                    let plan =
                        self_train::Plan::new(&wp, &none, policy.clone(), c, fed_cfg.model.clone());
                    let label = format!("choosing self-training (seed {seed})");
                    let run = self_train::run_fed(&s, &pop, &validation, &fed_cfg, &plan, &label)?;
                    let v = eval::score(&fed_cfg.model, &run.weights, validation.data.features())?;
                    let m = evaluate(&v, &validation, n).mean;
                    seen.push(format!("{}: {}", st_text(&c), f3(m)));
                    if best.is_none_or(|(b, _)| m > b) {
                        best = Some((m, c));
                    }
                }
                let c = best.map_or_else(SelfTraining::default, |b| b.1);
                notes.push(format!(
                    "validation AUC by self-training setting (seed {seed}, no ground truth): {}; chosen {}",
                    seen.join("; "),
                    st_text(&c)
                ));
                self_training = Some(c);
                c
            }
        };
        for share in GT_SHARES {
            let truth = with_truth(n, share, seed);
            let pop = wp.scenario(&pop_cfg, HOLDOUT_FRACTION, &truth, &policy);
            let label = format!("{:.0} % ground truth (seed {seed})", share * 100.0);
            let (run, _, _) = run_fed(&s, &pop, &holdout, &fed_cfg, None, &label)?;
            let eps = run.final_epsilon();
            let p_hold = eval::score(&fed_cfg.model, &run.weights, holdout.data.features())?;
            let p_val = eval::score(&fed_cfg.model, &run.weights, validation.data.features())?;
            push(
                "federated",
                share,
                &evaluate(&p_hold, &holdout, n),
                eps,
                chosen_w,
            );
            if share == 0.0 {
                // Day one: the federated silver model blended with the local
                // anomaly percentile; β chosen on validation.
                let mut best = (f64::NEG_INFINITY, 0.0f32);
                for beta in BETAS {
                    let b: Vec<f32> = p_val
                        .iter()
                        .zip(&anomaly_val)
                        .map(|(&p, &a)| blend(p, a, beta))
                        .collect();
                    let m = evaluate(&b, &validation, n).mean;
                    if m > best.0 {
                        best = (m, beta);
                    }
                }
                let b: Vec<f32> = p_hold
                    .iter()
                    .zip(&anomaly_holdout)
                    .map(|(&p, &a)| blend(p, a, best.1))
                    .collect();
                push(
                    "federated_plus_anomaly",
                    share,
                    &evaluate(&b, &holdout, n),
                    eps,
                    f64::from(best.1),
                );
                // The ceiling of any federated variant on silver labels: one
                // central, non-private model on the pooled silver labels.
                let central = baselines::central(&pop, &holdout, &s.baseline_config())?;
                push(
                    "central_silver",
                    share,
                    &evaluate(&central.scores, &holdout, n),
                    0.0,
                    f64::NAN,
                );
            }
            if share == 0.0 || share == 1.0 {
                let g = choose_gamma(&p_val, &rules_val, &validation, n);
                let e = evaluate(&plus_rules(&p_hold, &rules_hold, g), &holdout, n);
                push("federated_plus_rules", share, &e, eps, f64::from(g));
                // Rules first, ties by the global model's and the local
                // anomaly score's percentiles; τ and β chosen on validation.
                let m_hold = model_percentiles(&wp, &fed_cfg.model, &run.weights, |t| {
                    t.data.holdout.features()
                })?;
                let m_val = model_percentiles(&wp, &fed_cfg.model, &run.weights, |t| {
                    t.validation.features()
                })?;
                let (tau, beta) = choose_rules_first(
                    &rules_val,
                    &m_val,
                    &anomaly_val,
                    &TIE_BETAS,
                    &validation,
                    n,
                );
                let e = evaluate(
                    &rules_first_scores(&rules_hold, &m_hold, &anomaly_holdout, tau, beta),
                    &holdout,
                    n,
                );
                push("federated_rules_first", share, &e, eps, f64::from(beta));
                notes.push(format!(
                    "rules first, model + anomaly tie-break ({:.0} % ground truth, seed {seed}): τ = {tau}, β = {beta}",
                    share * 100.0
                ));
            }
            if share < 1.0 {
                let plan =
                    self_train::Plan::new(&wp, &truth, policy.clone(), st, fed_cfg.model.clone());
                let label = format!(
                    "self-training, {:.0} % ground truth (seed {seed})",
                    share * 100.0
                );
                let run = self_train::run_fed(&s, &pop, &holdout, &fed_cfg, &plan, &label)?;
                let p_hold = eval::score(&fed_cfg.model, &run.weights, holdout.data.features())?;
                let p_val = eval::score(&fed_cfg.model, &run.weights, validation.data.features())?;
                let eps = run.final_epsilon();
                push(
                    "self_training",
                    share,
                    &evaluate(&p_hold, &holdout, n),
                    eps,
                    st.share,
                );
                let g = choose_gamma(&p_val, &rules_val, &validation, n);
                let e = evaluate(&plus_rules(&p_hold, &rules_hold, g), &holdout, n);
                push("self_training_plus_rules", share, &e, eps, f64::from(g));
            }
            last_fed = Some(fed_cfg.clone());
        }
    }
    let csv = setup.output("weak_labels.csv")?;
    write_csv(&csv, &rows)?;
    let summary = summarise(&rows);
    let png = setup.output("weak_labels.png")?;
    report::draw(setup, &summary, &png, seeds.len())?;
    let fed = last_fed
        .unwrap_or_else(|| setup.fed_config(pop_cfg.tenants, Noise::TargetEpsilon(TARGET_EPSILON)));
    let body = report::section(
        &summary,
        &rows,
        &seeds,
        &notes,
        &png,
        &csv,
        setup_text(setup, KEY, &pop_cfg, &fed, t0.elapsed().as_secs_f64()),
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
