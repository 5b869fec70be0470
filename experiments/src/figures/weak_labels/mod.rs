//! Experiment 7, weak labels: a federation where 0 %, 10 % or 100 % of the
//! tenants have ground-truth labels and the rest only the default weak
//! labeller's silver labels (`fedsec_detector::weak`), at ε = 3, against the
//! rules alone and a per-tenant local anomaly score (robust z, the day-one
//! score's local half; the per-tenant IsolationForest baseline is
//! `experiments/scripts/iforest_baseline.py` on the exported features).
//!
//! Every tenant's sessions are split three ways: a holdout (30 %, ground
//! truth, evaluation only), a validation part (25 % of the rest, ground
//! truth, used only for the experiment's two choices: the weight of
//! abstained sessions, on the first seed, and the day-one blend weight β,
//! per seed) and the training part (the only rows any model trains on).
//! Several seeds; mean ± standard deviation over seeds.

mod data;

pub use data::{VALIDATION_FRACTION, WeakPopulation, WeakRow, WeakTenant};

use std::path::PathBuf;
use std::time::Instant;

use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::metrics;
use fedsec_detector::weak::SilverPolicy;
use fedsec_detector::weak::anomaly::{RobustProfile, blend};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{HOLDOUT_FRACTION, Setup, TARGET_EPSILON, caption, image, link, run_fed, setup_text};
use crate::data::HoldoutSet;
use crate::error::Result;
use crate::eval;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{f3, markdown_table, upsert_section, write_csv};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "weak-labels";
/// Shares of tenants with ground-truth labels.
pub const GT_SHARES: [f64; 3] = [0.0, 0.1, 1.0];
/// Candidate weights of abstained sessions (as negatives; 0 = left out).
pub const ABSTAINED_WEIGHTS: [f64; 3] = [0.0, 0.1, 0.3];
/// Candidate blend weights β of the local anomaly percentile in the day-one score.
pub const BETAS: [f32; 5] = [0.0, 0.1, 0.2, 0.3, 0.5];
/// FPR of the reported recall.
pub const RECALL_FPR: f64 = 0.01;

/// Options beyond the common ones.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Seeds: `setup.seed`, `setup.seed + 1`, ... (at least 1).
    pub seeds: u64,
    /// Write `features-seed<N>.csv` here for the IsolationForest script.
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
    /// The setting chosen on validation (abstained weight, or β), else NaN.
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

/// Runs the experiment and writes its CSV, PNG and README section.
pub fn run(setup: &Setup, opts: &Options) -> Result<Outcome> {
    let t0 = Instant::now();
    let mut rows = Vec::new();
    let mut abstained_weight: Option<f64> = None;
    let mut selection_note = String::new();
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
        }
        let n = wp.len();
        let holdout = wp.holdout();
        let validation = wp.validation();
        let rules_scores: Vec<f32> = wp
            .tenants
            .iter()
            .flat_map(|t| t.holdout_weak.iter().map(|w| w.score as f32))
            .collect();
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
        let fed_cfg = s.fed_config(n, Noise::TargetEpsilon(TARGET_EPSILON));
        // The abstained weight: chosen once, on the first seed's validation
        // rows, with no ground truth anywhere.
        let chosen_w = match abstained_weight {
            Some(w) => w,
            None => {
                let none = with_truth(n, 0.0, seed);
                let mut best = (f64::NEG_INFINITY, ABSTAINED_WEIGHTS[0]);
                let mut notes = Vec::new();
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
                    notes.push(format!("{w}: {}", f3(m)));
                    if m > best.0 {
                        best = (m, w);
                    }
                }
                selection_note = format!(
                    "validation AUC by abstained weight (seed {seed}, no ground truth): {}; chosen {}",
                    notes.join(", "),
                    best.1
                );
                abstained_weight = Some(best.1);
                best.1
            }
        };
        let policy = SilverPolicy {
            abstained_weight: chosen_w,
            ..SilverPolicy::default()
        };
        for share in GT_SHARES {
            let truth = with_truth(n, share, seed);
            let pop = wp.scenario(&pop_cfg, HOLDOUT_FRACTION, &truth, &policy);
            let label = format!("{:.0} % ground truth (seed {seed})", share * 100.0);
            let (run, _, _) = run_fed(&s, &pop, &holdout, &fed_cfg, None, &label)?;
            let eps = run.final_epsilon();
            let p_hold = eval::score(&fed_cfg.model, &run.weights, holdout.data.features())?;
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
                let p_val = eval::score(&fed_cfg.model, &run.weights, validation.data.features())?;
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
            }
            last_fed = Some(fed_cfg.clone());
        }
    }
    let csv = setup.output("weak_labels.csv")?;
    write_csv(&csv, &rows)?;
    let summary = summarise(&rows);
    let png = setup.output("weak_labels.png")?;
    draw(setup, &summary, &png, seeds.len())?;
    let fed = last_fed
        .unwrap_or_else(|| setup.fed_config(pop_cfg.tenants, Noise::TargetEpsilon(TARGET_EPSILON)));
    let body = section(
        &summary,
        &rows,
        &seeds,
        &selection_note,
        &png,
        &csv,
        setup_text(setup, KEY, &pop_cfg, &fed, t0.elapsed().as_secs_f64()),
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}

/// Mean ± standard deviation over seeds of one (method, share).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Method.
    pub method: String,
    /// Share with ground truth (NaN: no labels used).
    pub gt_share: f64,
    /// Mean over seeds of the mean per-tenant AUC.
    pub auc_mean: f64,
    /// Standard deviation over seeds.
    pub auc_sd: f64,
    /// Mean recall at 1 % FPR.
    pub recall_mean: f64,
    /// Its standard deviation.
    pub recall_sd: f64,
    /// Smallest share of tenants beating the rules over seeds.
    pub min_share_beating_rules: f64,
    /// Seeds.
    pub seeds: usize,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

fn same_share(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

/// Groups rows by (method, share).
pub fn summarise(rows: &[Row]) -> Vec<Summary> {
    let mut keys: Vec<(String, f64)> = Vec::new();
    for r in rows {
        if !keys
            .iter()
            .any(|(m, s)| *m == r.method && same_share(*s, r.gt_share))
        {
            keys.push((r.method.clone(), r.gt_share));
        }
    }
    keys.into_iter()
        .map(|(method, share)| {
            let of: Vec<&Row> = rows
                .iter()
                .filter(|r| r.method == method && same_share(r.gt_share, share))
                .collect();
            let aucs: Vec<f64> = of.iter().map(|r| r.mean_tenant_auc).collect();
            let recalls: Vec<f64> = of.iter().map(|r| r.recall_at_1pct_fpr).collect();
            let (auc_mean, auc_sd) = mean_sd(&aucs);
            let (recall_mean, recall_sd) = mean_sd(&recalls);
            Summary {
                method,
                gt_share: share,
                auc_mean,
                auc_sd,
                recall_mean,
                recall_sd,
                min_share_beating_rules: of
                    .iter()
                    .map(|r| r.share_beating_rules)
                    .fold(f64::INFINITY, f64::min),
                seeds: of.len(),
            }
        })
        .collect()
}

fn find<'a>(s: &'a [Summary], method: &str, share: f64) -> Option<&'a Summary> {
    s.iter()
        .find(|x| x.method == method && same_share(x.gt_share, share))
}

fn draw(setup: &Setup, summary: &[Summary], png: &std::path::Path, seeds: usize) -> Result<()> {
    // x: the three scenarios at positions 0, 1, 2.
    let fed: Vec<(f64, f64)> = GT_SHARES
        .iter()
        .enumerate()
        .filter_map(|(i, &sh)| find(summary, "federated", sh).map(|s| (i as f64, s.auc_mean)))
        .collect();
    let labels: Vec<String> = GT_SHARES
        .iter()
        .filter_map(|&sh| find(summary, "federated", sh))
        .map(|s| format!("{} ± {}", f3(s.auc_mean), f3(s.auc_sd)))
        .collect();
    let mut series = vec![
        Series::line(
            "federated DP, silver labels where no ground truth",
            fed,
            plot::color(0),
        )
        .with_point_labels(labels),
    ];
    if let Some(b) = find(summary, "federated_plus_anomaly", 0.0) {
        let mut s = Series::line(
            format!(
                "day one: federated + local anomaly ({} ± {})",
                f3(b.auc_mean),
                f3(b.auc_sd)
            ),
            vec![(0.0, b.auc_mean)],
            plot::color(2),
        );
        s.line = false;
        series.push(s);
    }
    for (m, label, c) in [
        ("rules_alone", "rules alone (each tenant)", plot::color(3)),
        (
            "local_anomaly",
            "local anomaly score (robust z)",
            plot::color(4),
        ),
    ] {
        if let Some(r) = find(summary, m, f64::NAN) {
            series.push(Series::reference(
                format!("{label}: {}", f3(r.auc_mean)),
                r.auc_mean,
                -0.1,
                2.1,
                c,
            ));
        }
    }
    plot::line_chart(
        png,
        (860, 540),
        &LineChart {
            title: "Weak labels: per-tenant held-out AUC by share of tenants with ground truth"
                .into(),
            caption: caption(
                setup,
                &format!("ε = {TARGET_EPSILON}, {seeds} seeds, mean ± sd"),
            ),
            x_label: "tenants with ground-truth labels: 0 = none, 1 = 10 %, 2 = all".into(),
            y_label: "mean per-tenant held-out ROC-AUC (ground truth)".into(),
            x_log: false,
            x_range: Some((-0.2, 2.2)),
            y_range: None,
            series,
            legend: Legend::LowerRight,
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn section(
    summary: &[Summary],
    rows: &[Row],
    seeds: &[u64],
    selection_note: &str,
    png: &std::path::Path,
    csv: &std::path::Path,
    setup_text: String,
) -> String {
    let pm = |m: f64, sd: f64| format!("{} ± {}", f3(m), f3(sd));
    let table: Vec<Vec<String>> = summary
        .iter()
        .map(|s| {
            vec![
                s.method.replace('_', " "),
                if s.gt_share.is_nan() {
                    "– (no labels)".into()
                } else {
                    format!("{:.0} %", 100.0 * s.gt_share)
                },
                pm(s.auc_mean, s.auc_sd),
                pm(s.recall_mean, s.recall_sd),
                if s.method == "rules_alone" {
                    "–".into()
                } else {
                    format!("{:.0} %", 100.0 * s.min_share_beating_rules)
                },
            ]
        })
        .collect();
    let full = find(summary, "federated", 1.0).map_or(f64::NAN, |s| s.auc_mean);
    let none = find(summary, "federated", 0.0).map_or(f64::NAN, |s| s.auc_mean);
    let day1 = find(summary, "federated_plus_anomaly", 0.0).map_or(f64::NAN, |s| s.auc_mean);
    let worst: Vec<String> = rows
        .iter()
        .filter(|r| r.method == "federated" && r.gt_share == 0.0)
        .map(|r| {
            format!(
                "seed {}: {:.0} % of tenants above their rules, worst difference {}",
                r.seed,
                100.0 * r.share_beating_rules,
                f3(r.worst_gain_over_rules)
            )
        })
        .collect();
    let betas: Vec<String> = rows
        .iter()
        .filter(|r| r.method == "federated_plus_anomaly")
        .map(|r| format!("seed {}: β = {:.1}", r.seed, r.chosen))
        .collect();
    format!(
        "## 7. Weak labels: tenants with logs and no labels\n\n{}\n\n\
         Each tenant's sessions: {:.0} % held out (ground truth, evaluation only), {:.0} % of the rest \
         for validation (ground truth, used only for the choices below), the remainder for training. \
         Tenants with ground truth train on it; the others on the default weak labeller's silver \
         labels (`[labels.rules]` defaults, no imported outcomes), weighted by confidence, \
         abstentions as negatives at the chosen weight. DP-FedAvg at ε = {TARGET_EPSILON}. \
         Recall is at {:.0} % FPR over the pooled holdout. Seeds {:?}; mean ± sd over seeds.\n\n{}\n\n\
         **Goal** (issue 20): with no ground truth anywhere, mean per-tenant AUC ≥ 97 % of the \
         full-label federated AUC: {} / {} = {:.1} % (federated on silver labels alone), {:.1} % \
         with the day-one blend. Every tenant better than its own rules alone: {}.\n\n\
         Choices made on validation: {}; day-one blend {}.\n\n\
         The per-tenant IsolationForest baseline (scikit-learn, not in CI) is \
         `experiments/scripts/iforest_baseline.py`, run by `experiments/scripts/weak_labels.sh full` \
         on the same features (see `weak_labels_iforest.md` when present).\n\n{}\n\nData: {}.",
        image(png, "weak labels"),
        HOLDOUT_FRACTION * 100.0,
        VALIDATION_FRACTION * 100.0,
        RECALL_FPR * 100.0,
        seeds,
        markdown_table(
            &[
                "method",
                "tenants with ground truth",
                "mean per-tenant AUC",
                "recall at 1 % FPR",
                "tenants above their rules (worst seed)"
            ],
            &table
        ),
        f3(none),
        f3(full),
        100.0 * none / full,
        100.0 * day1 / full,
        worst.join("; "),
        selection_note,
        betas.join(", "),
        setup_text,
        link(csv)
    )
}
