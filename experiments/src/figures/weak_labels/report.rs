//! The weak-labels experiment's summary (mean ± sd over seeds), figure and
//! README section.

use super::{GT_SHARES, RECALL_FPR, Row, VALIDATION_FRACTION};
use crate::error::Result;
use crate::figures::{HOLDOUT_FRACTION, Setup, TARGET_EPSILON, caption, image, link};
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{f3, markdown_table};

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

pub(super) fn find<'a>(s: &'a [Summary], method: &str, share: f64) -> Option<&'a Summary> {
    s.iter()
        .find(|x| x.method == method && same_share(x.gt_share, share))
}

/// Points (x = scenario index) and labels of one federated method's line.
fn line_of(summary: &[Summary], method: &str) -> (Vec<(f64, f64)>, Vec<String>) {
    let mut pts = Vec::new();
    let mut labels = Vec::new();
    for (i, &sh) in GT_SHARES.iter().enumerate() {
        if let Some(s) = find(summary, method, sh) {
            pts.push((i as f64, s.auc_mean));
            labels.push(format!("{} ± {}", f3(s.auc_mean), f3(s.auc_sd)));
        }
    }
    (pts, labels)
}

/// Draws the figure.
pub(super) fn draw(
    setup: &Setup,
    summary: &[Summary],
    png: &std::path::Path,
    seeds: usize,
) -> Result<()> {
    // x: the three scenarios at positions 0, 1, 2.
    let mut series = Vec::new();
    for (k, (m, name)) in [
        (
            "federated",
            "federated DP, silver labels where no ground truth",
        ),
        (
            "self_training",
            "federated self-training (pseudo-labels from the global model)",
        ),
        (
            "self_training_plus_rules",
            "self-training + the rules' score at scoring time",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let (pts, labels) = line_of(summary, m);
        if pts.is_empty() {
            continue;
        }
        let s = Series::line(name, pts, plot::color(k));
        series.push(if k == 0 {
            s.with_point_labels(labels)
        } else {
            s
        });
    }
    for (m, name, c) in [
        (
            "federated_plus_anomaly",
            "day one: federated + local anomaly",
            plot::color(5),
        ),
        (
            "federated_plus_rules",
            "federated + the rules' score",
            plot::color(6),
        ),
        (
            "federated_rules_first",
            "rules first, ties by federated model + local anomaly",
            plot::color(8),
        ),
    ] {
        let pts: Vec<(f64, f64)> = GT_SHARES
            .iter()
            .enumerate()
            .filter_map(|(i, &sh)| find(summary, m, sh).map(|s| (i as f64, s.auc_mean)))
            .collect();
        if !pts.is_empty() {
            let mut s = Series::line(name, pts, c);
            s.line = false;
            series.push(s);
        }
    }
    for (m, share, label, c) in [
        (
            "rules_alone",
            f64::NAN,
            "rules alone (each tenant)",
            plot::color(3),
        ),
        (
            "local_anomaly",
            f64::NAN,
            "local anomaly score (robust z)",
            plot::color(4),
        ),
        (
            "rules_first_anomaly",
            f64::NAN,
            "rules first, ties by local anomaly (no model)",
            plot::color(9),
        ),
        (
            "central_silver",
            0.0,
            "ceiling: central non-private model on silver labels",
            plot::color(7),
        ),
    ] {
        if let Some(r) = find(summary, m, share) {
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
        (900, 600),
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

/// Methods that use no ground truth anywhere, in the order of the goal's text.
const NO_TRUTH: [&str; 6] = [
    "federated",
    "federated_plus_anomaly",
    "federated_plus_rules",
    "federated_rules_first",
    "self_training",
    "self_training_plus_rules",
];

fn beats_rules(rows: &[Row], method: &str) -> String {
    beats_rules_at(rows, method, 0.0)
}

/// [`beats_rules`] of a method that uses no labels (share NaN).
fn beats_rules_nan(rows: &[Row], method: &str) -> String {
    beats_rules_at(rows, method, f64::NAN)
}

fn beats_rules_at(rows: &[Row], method: &str, share: f64) -> String {
    let per_seed: Vec<String> = rows
        .iter()
        .filter(|r| r.method == method && same_share(r.gt_share, share))
        .map(|r| {
            format!(
                "seed {}: {:.0} % (worst difference {})",
                r.seed,
                100.0 * r.share_beating_rules,
                f3(r.worst_gain_over_rules)
            )
        })
        .collect();
    per_seed.join(", ")
}

fn chosen(rows: &[Row], method: &str, share: f64, name: &str) -> String {
    let v: Vec<String> = rows
        .iter()
        .filter(|r| r.method == method && r.gt_share == share)
        .map(|r| format!("seed {}: {name} = {:.2}", r.seed, r.chosen))
        .collect();
    v.join(", ")
}

/// The README section.
#[allow(clippy::too_many_arguments)]
pub(super) fn section(
    summary: &[Summary],
    rows: &[Row],
    seeds: &[u64],
    notes: &[String],
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
    let auc = |m: &str, sh: f64| find(summary, m, sh).map_or(f64::NAN, |s| s.auc_mean);
    let full = auc("federated", 1.0);
    let ceiling = auc("central_silver", 0.0);
    let ratios: Vec<String> = NO_TRUTH
        .iter()
        .map(|m| {
            let a = auc(m, 0.0);
            format!(
                "{} {} = {:.1} %",
                m.replace('_', " "),
                f3(a),
                100.0 * a / full
            )
        })
        .collect();
    format!(
        "## 7. Weak labels: tenants with logs and no labels\n\n{}\n\n\
         Each tenant's sessions: {:.0} % held out (ground truth, evaluation only), {:.0} % of the rest \
         for validation (ground truth, used only for the choices below), the remainder for training. \
         Tenants with ground truth train on it; the others on the default weak labeller's silver \
         labels (`[labels.rules]` defaults, no imported outcomes), weighted by confidence, \
         abstentions as negatives at the chosen weight. **Self-training**: each round after the \
         warm-up, a selected tenant without ground truth scores its abstained sessions with the \
         global model it downloaded and trains on the confident tails of each predicted class as \
         down-weighted pseudo-labels (`[labels.self_training]`). **Plus rules**: the tenant ranks \
         its sessions by the model's log-odds plus γ times the rules' vote sum, γ chosen on \
         validation. **Rules first** (`fedsec_detector::weak::combine::rules_first`): the rules' \
         vote sum plus τ times a tie-break in [0, 1], the mix (1 − β)·model percentile + \
         β·anomaly percentile (percentiles among the tenant's own training sessions); τ and β \
         chosen on validation; with τ < 0.5 the rules' order is kept and the model and the \
         anomaly score order only the sessions the rules tie on. `rules first anomaly` is the \
         same with β = 1: no model and no federation at all. **Central silver**: one non-private model trained centrally on every tenant's \
         silver labels pooled: the ceiling of any federated variant trained on the same labels. \
         DP-FedAvg at ε = {TARGET_EPSILON}. Recall is at {:.0} % FPR over the pooled holdout. \
         Seeds {:?}; mean ± sd over seeds.\n\n{}\n\n\
         **Goal** (issue 20): with no ground truth anywhere, mean per-tenant AUC ≥ 97 % of the \
         full-label federated AUC ({}): {}. Central non-private model on silver labels: {} \
         ({:.1} % of full labels). Every tenant better than its own rules alone, rules first \
         (federated model + anomaly): {}; rules first, anomaly only: {}; self-training plus \
         rules: {}; federated on silver labels: {}.\n\n\
         Choices made on validation: {}; day-one blend {}; rules weight (self-training plus \
         rules, no ground truth) {}.\n\n\
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
        f3(full),
        ratios.join("; "),
        f3(ceiling),
        100.0 * ceiling / full,
        beats_rules(rows, "federated_rules_first"),
        beats_rules_nan(rows, "rules_first_anomaly"),
        beats_rules(rows, "self_training_plus_rules"),
        beats_rules(rows, "federated"),
        notes.join("; "),
        chosen(rows, "federated_plus_anomaly", 0.0, "β"),
        chosen(rows, "self_training_plus_rules", 0.0, "γ"),
        setup_text,
        link(csv)
    )
}
