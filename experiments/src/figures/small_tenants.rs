//! Experiment 5, small tenants: a population with a wide spread of tenant
//! sizes; each tenant's held-out AUC under the federated model (DP, target ε)
//! against its own local-only model, grouped by the tenant's number of
//! sessions. Small tenants have too little data to learn alone.

use std::time::Instant;

use fedsec_detector::synth::SynthConfig;
use serde::Serialize;

use super::{Baselines, Mode, Setup, TARGET_EPSILON, caption, image, link, run_fed, setup_text};
use crate::error::Result;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{f3, markdown_table, upsert_section, write_csv};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "small-tenants";

/// Upper bounds (exclusive) of the size buckets of the full mode, in sessions.
pub const BUCKETS_FULL: [usize; 5] = [60, 120, 250, 500, usize::MAX];
/// Upper bounds of the size buckets of the fast mode.
pub const BUCKETS_FAST: [usize; 3] = [40, 80, usize::MAX];

/// One line of the CSV (one bucket, one method).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Smallest tenant size in the bucket (sessions, train + holdout).
    pub min_sessions: usize,
    /// Largest tenant size in the bucket.
    pub max_sessions: usize,
    /// Tenants in the bucket.
    pub tenants: usize,
    /// Of them, tenants whose holdout has both classes.
    pub tenants_with_auc: usize,
    /// Method.
    pub method: String,
    /// Mean held-out AUC over those tenants.
    pub mean_tenant_auc: f64,
    /// Share of those tenants where this method beats local-only.
    pub share_beating_local: f64,
}

/// What the experiment wrote.
pub type Outcome = super::Outcome<Row>;

/// The population of this experiment: sizes spread wider, down to a few dozen sessions.
pub fn population_config(setup: &Setup) -> SynthConfig {
    let base = setup.population_config();
    match setup.mode {
        Mode::Fast => SynthConfig {
            sessions_sigma: 0.8,
            min_sessions: 15,
            ..base
        },
        Mode::Full => SynthConfig {
            sessions_sigma: 1.0,
            min_sessions: 20,
            max_sessions: 3000,
            ..base
        },
    }
}

/// Runs the experiment and writes its CSV, PNG and README section.
pub fn run(setup: &Setup) -> Result<Outcome> {
    let t0 = Instant::now();
    let pop_cfg = population_config(setup);
    let pop = setup.population(&pop_cfg)?;
    let holdout = pop.pooled_holdout();
    let base = Baselines::train(setup, &pop, &holdout)?;
    let dp = setup.fed_config(pop.len(), Noise::TargetEpsilon(TARGET_EPSILON));
    let (_, _, fed_auc) = run_fed(setup, &pop, &holdout, &dp, None, "small tenants")?;
    let buckets: &[usize] = match setup.mode {
        Mode::Fast => &BUCKETS_FAST,
        Mode::Full => &BUCKETS_FULL,
    };
    let methods: [(&str, &[Option<f64>]); 3] = [
        ("federated_dp", &fed_auc),
        ("local_only", &base.local.tenant_auc),
        ("central_non_private", &base.central.tenant_auc),
    ];
    let mut rows = Vec::new();
    let mut lo = 0usize;
    for &hi in buckets {
        let members: Vec<usize> = (0..pop.len())
            .filter(|&i| (lo..hi).contains(&pop.tenants[i].sessions()))
            .collect();
        if !members.is_empty() {
            let sizes: Vec<usize> = members.iter().map(|&i| pop.tenants[i].sessions()).collect();
            for (name, auc) in methods {
                let defined: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&i| auc[i].is_some() && base.local.tenant_auc[i].is_some())
                    .collect();
                let vals: Vec<f64> = defined.iter().filter_map(|&i| auc[i]).collect();
                let beat = defined
                    .iter()
                    .filter(|&&i| auc[i] > base.local.tenant_auc[i])
                    .count();
                rows.push(Row {
                    min_sessions: sizes.iter().copied().min().unwrap_or(0),
                    max_sessions: sizes.iter().copied().max().unwrap_or(0),
                    tenants: members.len(),
                    tenants_with_auc: defined.len(),
                    method: name.into(),
                    mean_tenant_auc: if vals.is_empty() {
                        f64::NAN
                    } else {
                        vals.iter().sum::<f64>() / vals.len() as f64
                    },
                    share_beating_local: if defined.is_empty() {
                        f64::NAN
                    } else {
                        beat as f64 / defined.len() as f64
                    },
                });
            }
        }
        lo = hi;
    }
    let csv = setup.output("small_tenants.csv")?;
    write_csv(&csv, &rows)?;
    // x = geometric middle of the bucket's sizes.
    let mid = |r: &Row| ((r.min_sessions.max(1) as f64) * (r.max_sessions.max(1) as f64)).sqrt();
    let styles = [
        (
            "federated_dp",
            format!("federated DP (ε = {TARGET_EPSILON})"),
            plot::color(0),
            false,
        ),
        (
            "local_only",
            "local-only".to_string(),
            plot::color(3),
            false,
        ),
        (
            "central_non_private",
            "centralised, non-private".to_string(),
            plot::REFERENCE_GREY,
            true,
        ),
    ];
    let series: Vec<Series> = styles
        .iter()
        .map(|(m, label, c, dashed)| {
            let of: Vec<&Row> = rows.iter().filter(|r| r.method == *m).collect();
            let mut s = Series::line(
                label.clone(),
                of.iter().map(|r| (mid(r), r.mean_tenant_auc)).collect(),
                *c,
            );
            s.dashed = *dashed;
            if *m == "federated_dp" {
                s = s.with_point_labels(
                    of.iter()
                        .map(|r| format!("{} tenants", r.tenants_with_auc))
                        .collect(),
                );
            }
            s
        })
        .collect();
    let (xmin, xmax) = rows.iter().fold((f64::INFINITY, 0.0f64), |(a, b), r| {
        (a.min(mid(r)), b.max(mid(r)))
    });
    let png = setup.output("small_tenants.png")?;
    plot::line_chart(
        &png,
        (820, 540),
        &LineChart {
            title: "Small tenants: own held-out AUC by tenant size".into(),
            caption: caption(
                setup,
                &format!(
                    "{} tenants, {} rounds, m = {}",
                    pop.len(),
                    dp.rounds,
                    dp.expected_cohort
                ),
            ),
            x_label: "tenant size: sessions (train + holdout), bucket middle, log scale".into(),
            y_label: "mean held-out ROC-AUC of the bucket's tenants".into(),
            x_log: true,
            x_range: Some((xmin / 1.5, xmax * 1.5)),
            y_range: None,
            series,
            legend: Legend::LowerRight,
        },
    )?;
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{}–{}", r.min_sessions, r.max_sessions),
                r.tenants_with_auc.to_string(),
                r.method.replace('_', " "),
                f3(r.mean_tenant_auc),
                if r.method == "local_only" {
                    "–".into()
                } else {
                    format!("{:.0} %", 100.0 * r.share_beating_local)
                },
            ]
        })
        .collect();
    let body = format!(
        "## 5. Small tenants\n\n{}\n\nTenant sizes spread wide (log-normal σ = {}, down to {} sessions, \
         {}% held out). Each tenant is scored on its own held-out sessions by the federated model \
         (DP, ε = {TARGET_EPSILON}), by its own local-only model and by the centralised non-private \
         model; tenants are grouped by size. Only tenants whose holdout has both bots and humans count.\n\n{}\n{}\n\nData: {}.",
        image(&png, "AUC by tenant size"),
        pop_cfg.sessions_sigma,
        pop_cfg.min_sessions,
        (super::HOLDOUT_FRACTION * 100.0).round(),
        markdown_table(
            &[
                "sessions",
                "tenants",
                "method",
                "mean AUC",
                "tenants where it beats local-only"
            ],
            &table_rows
        ),
        setup_text(setup, KEY, &pop_cfg, &dp, t0.elapsed().as_secs_f64()),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
