//! Experiment 3, scale: 10 → 1,000 tenants at a fixed ε. One population of
//! the largest size is generated; the job over N tenants uses its first N
//! (tenants are generated independently, so tenant i is the same in every
//! prefix). The sampling rate q is fixed, so z (calibrated to the target ε)
//! is the same for every N while the expected cohort m = q·N grows: the noise
//! on the mean, z·C·√d / m, falls as 1/N. Over several seeds (mean ± sd).

use std::time::Instant;

use fedsec_detector::synth::SynthConfig;
use serde::Serialize;

use super::{
    Baselines, Mode, Scores, Setup, TARGET_EPSILON, caption, image, link, run_fed, seeds_text,
    setup_text,
};
use crate::baselines;
use crate::data::Population;
use crate::error::Result;
use crate::eval;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{eps, markdown_table, upsert_section, write_csv};
use crate::seeds::{group_by, over};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "scale";

/// Tenant counts of the full mode.
pub const TENANTS_FULL: [usize; 5] = [10, 30, 100, 300, 1000];
/// Tenant counts of the fast mode.
pub const TENANTS_FAST: [usize; 3] = [6, 12, 24];

/// One line of the CSV (one N, one method, one seed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Seed of the run.
    pub seed: u64,
    /// Tenants N.
    pub tenants: usize,
    /// Method.
    pub method: String,
    /// Expected cohort m (federated only).
    pub expected_cohort: f64,
    /// z (federated DP only).
    pub noise_multiplier: f64,
    /// Norm of the noise on the mean relative to C: z·√d / m.
    pub noise_to_clip: f64,
    /// ε after the last round.
    pub epsilon: f64,
    /// Pooled held-out ROC-AUC.
    pub pooled_auc: f64,
    /// Mean per-tenant held-out ROC-AUC.
    pub mean_tenant_auc: f64,
    /// Tenants in that mean.
    pub tenants_with_auc: usize,
    /// Recall of abuse at 1 % FPR (pooled holdout).
    pub recall_at_1pct_fpr: f64,
    /// Precision at that operating point.
    pub precision_at_1pct_fpr: f64,
}

/// What the experiment wrote.
pub type Outcome = super::Outcome<Row>;

/// Runs the experiment over [`Setup::seeds`] and writes its CSV, PNG and
/// README section.
pub fn run(setup: &Setup) -> Result<Outcome> {
    run_seeds(setup, &setup.seeds())
}

/// One seed: every N.
fn one_seed(setup: &Setup, rows: &mut Vec<Row>) -> Result<(SynthConfig, crate::sim::FedConfig)> {
    let sizes: &[usize] = match setup.mode {
        Mode::Fast => &TENANTS_FAST,
        Mode::Full => &TENANTS_FULL,
    };
    let max = sizes.iter().copied().max().unwrap_or(1);
    let pop_cfg = SynthConfig {
        tenants: max,
        ..setup.population_config()
    };
    let all = setup.population(&pop_cfg)?;
    // Local-only does not depend on N: train every tenant once.
    let all_holdout = all.pooled_holdout();
    let local = baselines::local_only(&all, &all_holdout, &setup.baseline_config())?;
    let d = super::model().num_params() as f64;
    let mut last_fed = setup.fed_config(max, Noise::Off);
    for &n in sizes {
        let pop = Population {
            config: SynthConfig {
                tenants: n,
                ..pop_cfg.clone()
            },
            holdout_fraction: all.holdout_fraction,
            tenants: all.tenants[..n].to_vec(),
        };
        let holdout = pop.pooled_holdout();
        let base = Baselines {
            central: baselines::central(&pop, &holdout, &setup.baseline_config())?,
            local: baselines::Baseline {
                pooled_auc: eval::auc(&local.scores[..holdout.len()], &holdout.labels)
                    .unwrap_or(f64::NAN),
                tenant_auc: local.tenant_auc[..n].to_vec(),
                operating: eval::OperatingPoint::at_report_fpr(
                    &local.scores[..holdout.len()],
                    &holdout.labels,
                ),
                scores: local.scores[..holdout.len()].to_vec(),
            },
        };
        let dp = setup.fed_config(n, Noise::TargetEpsilon(TARGET_EPSILON));
        let (run, s, _) = run_fed(
            setup,
            &pop,
            &holdout,
            &dp,
            None,
            &format!("seed {}, N = {n}", setup.seed),
        )?;
        let m = dp.expected_cohort;
        let mut push = |method: &str, m: f64, z: f64, epsilon: f64, s: Scores| {
            rows.push(Row {
                seed: setup.seed,
                tenants: n,
                method: method.into(),
                expected_cohort: m,
                noise_multiplier: z,
                noise_to_clip: if z > 0.0 { z * d.sqrt() / m } else { 0.0 },
                epsilon,
                pooled_auc: s.pooled_auc,
                mean_tenant_auc: s.mean_tenant_auc,
                tenants_with_auc: s.tenants_with_auc,
                recall_at_1pct_fpr: s.recall_at_1pct_fpr,
                precision_at_1pct_fpr: s.precision_at_1pct_fpr,
            })
        };
        push(
            "federated_dp",
            m,
            run.noise_multiplier,
            run.final_epsilon(),
            s,
        );
        push(
            "central_non_private",
            0.0,
            0.0,
            f64::INFINITY,
            Scores::of_baseline(&base.central),
        );
        push(
            "local_only",
            0.0,
            0.0,
            0.0,
            Scores::of_baseline(&base.local),
        );
        last_fed = dp;
    }
    Ok((pop_cfg, last_fed))
}

/// Runs the experiment over `seeds` (mean ± sd over them).
pub fn run_seeds(setup: &Setup, seeds: &[u64]) -> Result<Outcome> {
    let t0 = Instant::now();
    let sizes: &[usize] = match setup.mode {
        Mode::Fast => &TENANTS_FAST,
        Mode::Full => &TENANTS_FULL,
    };
    let max = sizes.iter().copied().max().unwrap_or(1);
    let mut rows = Vec::new();
    let mut last = None;
    for &seed in seeds {
        last = Some(one_seed(&setup.with_seed(seed), &mut rows)?);
    }
    let (pop_cfg, last_fed) =
        last.unwrap_or_else(|| (setup.population_config(), setup.fed_config(max, Noise::Off)));
    let csv = setup.output("scale.csv")?;
    write_csv(&csv, &rows)?;
    let groups = group_by(&rows, |r| (r.tenants, r.method.clone()));
    let methods = [
        (
            "federated_dp",
            format!("federated DP (ε = {TARGET_EPSILON})"),
            plot::color(0),
            false,
        ),
        (
            "central_non_private",
            "centralised, non-private".to_string(),
            plot::REFERENCE_GREY,
            true,
        ),
        ("local_only", "local-only".to_string(), plot::color(3), true),
    ];
    let mut series: Vec<Series> = Vec::new();
    for (m, label, c, dashed) in &methods {
        let of: Vec<&((usize, String), Vec<&Row>)> = groups
            .iter()
            .filter(|((_, gm), _)| gm.as_str() == *m)
            .collect();
        let mut s = Series::line(
            format!("{label}, mean"),
            of.iter()
                .map(|((n, _), g)| (*n as f64, over(g, |r| r.mean_tenant_auc).mean))
                .collect(),
            *c,
        );
        s.dashed = *dashed;
        if *m == "federated_dp" {
            s = s.with_point_labels(
                of.iter()
                    .map(|(_, g)| format!("noise {:.1}·C", over(g, |r| r.noise_to_clip).mean))
                    .collect(),
            );
            let mut each = Series::line(
                format!("{label}, each seed"),
                rows.iter()
                    .filter(|r| r.method == *m)
                    .map(|r| (r.tenants as f64, r.mean_tenant_auc))
                    .collect(),
                *c,
            );
            each.line = false;
            series.push(s);
            series.push(each);
        } else {
            series.push(s);
        }
    }
    let png = setup.output("scale.png")?;
    let q = last_fed.expected_cohort / max as f64;
    plot::line_chart(
        &png,
        (820, 540),
        &LineChart {
            title: format!("Scale: held-out AUC against number of tenants (ε = {TARGET_EPSILON})"),
            caption: caption(
                setup,
                &format!("q = {q:.2}, m = q·N, {} rounds", last_fed.rounds),
            ),
            x_label: "tenants N (log scale)".into(),
            y_label: "mean per-tenant held-out ROC-AUC".into(),
            x_log: true,
            x_range: Some((sizes[0] as f64 / 1.4, max as f64 * 1.4)),
            y_range: None,
            series,
            legend: Legend::LowerRight,
        },
    )?;
    let table_rows: Vec<Vec<String>> = groups
        .iter()
        .map(|((n, method), g)| {
            let r = g[0];
            vec![
                n.to_string(),
                method.replace('_', " "),
                if r.expected_cohort > 0.0 {
                    format!("{}", r.expected_cohort)
                } else {
                    "–".into()
                },
                if r.noise_multiplier > 0.0 {
                    format!("{:.3}", r.noise_multiplier)
                } else {
                    "–".into()
                },
                if r.noise_to_clip > 0.0 {
                    format!("{:.2}", r.noise_to_clip)
                } else {
                    "–".into()
                },
                if method == "local_only" {
                    "0".into()
                } else {
                    eps(over(g, |r| r.epsilon).mean)
                },
                over(g, |r| r.mean_tenant_auc).show(),
                over(g, |r| r.pooled_auc).show(),
                over(g, |r| r.recall_at_1pct_fpr).show(),
                over(g, |r| r.precision_at_1pct_fpr).show(),
            ]
        })
        .collect();
    let body = format!(
        "## 3. Scale\n\n{}\n\nThe same job over the first N tenants of one population, at a fixed sampling \
         rate q and ε = {TARGET_EPSILON}: z is the same for every N, the expected cohort m = q·N grows, so \
         the norm of the noise on the averaged update, z·C·√d / m (column \"noise / C\"), shrinks as 1/N. \
         Client-level DP needs it below C; with few tenants it is far above and the model cannot learn.\n\n{}\n{}\n\n{}\n\nData: {} (one row per seed).",
        image(&png, "held-out AUC against tenants"),
        markdown_table(
            &[
                "N",
                "method",
                "m",
                "z",
                "noise / C",
                "ε",
                "mean per-tenant AUC",
                "pooled AUC",
                "recall at 1 % FPR",
                "precision there",
            ],
            &table_rows
        ),
        seeds_text(seeds),
        setup_text(setup, KEY, &pop_cfg, &last_fed, t0.elapsed().as_secs_f64()),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
