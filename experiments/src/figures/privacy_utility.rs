//! Experiment 1, privacy–utility: the same job (rounds, cohort, C, local
//! training) at several noise multipliers z; held-out AUC against the ε each
//! z costs, with the centralised non-private, local-only and noise-free
//! federated references.

use std::time::Instant;

use serde::Serialize;

use super::{Baselines, Scores, Setup, caption, image, link, run_fed, setup_text};
use crate::error::Result;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{eps, f3, markdown_table, upsert_section, write_csv};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "privacy-utility";

/// Noise multipliers of the full mode.
pub const Z_FULL: [f64; 7] = [0.5, 0.7, 1.0, 1.5, 2.5, 4.0, 8.0];
/// Noise multipliers of the fast mode.
pub const Z_FAST: [f64; 3] = [0.7, 2.0, 8.0];

/// One line of the CSV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `federated_dp`, `federated_no_noise`, `central_non_private` or `local_only`.
    pub method: String,
    /// z (0: no noise or not federated).
    pub noise_multiplier: f64,
    /// ε after the last round at δ (∞ without noise, 0 for local-only).
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Rounds.
    pub rounds: u64,
    /// Expected cohort m.
    pub expected_cohort: f64,
    /// Pooled held-out ROC-AUC.
    pub pooled_auc: f64,
    /// Mean per-tenant held-out ROC-AUC.
    pub mean_tenant_auc: f64,
    /// Tenants in that mean.
    pub tenants_with_auc: usize,
}

/// What the experiment wrote.
pub type Outcome = super::Outcome<Row>;

/// Runs the experiment and writes its CSV, PNG and README section.
pub fn run(setup: &Setup) -> Result<Outcome> {
    let t0 = Instant::now();
    let pop_cfg = setup.population_config();
    let pop = setup.population(&pop_cfg)?;
    let holdout = pop.pooled_holdout();
    let base = Baselines::train(setup, &pop, &holdout)?;
    let zs: &[f64] = match setup.mode {
        super::Mode::Fast => &Z_FAST,
        super::Mode::Full => &Z_FULL,
    };
    let template = setup.fed_config(pop.len(), Noise::Off);
    let mut rows = Vec::new();
    let mut push = |method: &str, z: f64, epsilon: f64, s: Scores| {
        rows.push(Row {
            method: method.into(),
            noise_multiplier: z,
            epsilon,
            delta: template.delta,
            rounds: template.rounds,
            expected_cohort: template.expected_cohort,
            pooled_auc: s.pooled_auc,
            mean_tenant_auc: s.mean_tenant_auc,
            tenants_with_auc: s.tenants_with_auc,
        })
    };
    push(
        "central_non_private",
        0.0,
        f64::INFINITY,
        Scores::of_baseline(&base.central),
    );
    push("local_only", 0.0, 0.0, Scores::of_baseline(&base.local));
    let (_, s, _) = run_fed(setup, &pop, &holdout, &template, None, "no noise")?;
    push("federated_no_noise", 0.0, f64::INFINITY, s);
    for &z in zs {
        let cfg = setup.fed_config(pop.len(), Noise::Multiplier(z));
        let (run, s, _) = run_fed(setup, &pop, &holdout, &cfg, None, &format!("z = {z}"))?;
        push("federated_dp", z, run.final_epsilon(), s);
    }
    let csv = setup.output("privacy_utility.csv")?;
    write_csv(&csv, &rows)?;

    let find = |m: &str| rows.iter().find(|r| r.method == m);
    let dp: Vec<&Row> = rows.iter().filter(|r| r.method == "federated_dp").collect();
    let (x0, x1) = dp.iter().fold((f64::INFINITY, 0.0f64), |(a, b), r| {
        (a.min(r.epsilon), b.max(r.epsilon))
    });
    let (x0, x1) = (x0 / 1.6, x1 * 1.6);
    let mut series = vec![
        Series::line(
            "federated DP-FedAvg",
            dp.iter().map(|r| (r.epsilon, r.mean_tenant_auc)).collect(),
            plot::color(0),
        )
        .with_point_labels(
            dp.iter()
                .map(|r| format!("z={}", r.noise_multiplier))
                .collect(),
        ),
    ];
    let refs = [
        (
            "federated_no_noise",
            "federated, no noise (ε = ∞)",
            plot::color(2),
        ),
        (
            "central_non_private",
            "centralised, non-private",
            plot::REFERENCE_GREY,
        ),
        (
            "local_only",
            "local-only (each tenant alone)",
            plot::color(3),
        ),
    ];
    for (m, label, c) in refs {
        if let Some(r) = find(m) {
            series.push(Series::reference(label, r.mean_tenant_auc, x0, x1, c));
        }
    }
    let png = setup.output("privacy_utility.png")?;
    plot::line_chart(
        &png,
        (820, 540),
        &LineChart {
            title: "Privacy–utility: held-out AUC against ε".into(),
            caption: caption(
                setup,
                &format!(
                    "{} tenants, {} rounds, m = {}",
                    pop.len(),
                    template.rounds,
                    template.expected_cohort
                ),
            ),
            x_label: format!(
                "ε after {} rounds (δ = {:e}, log scale)",
                template.rounds, template.delta
            ),
            y_label: "mean per-tenant held-out ROC-AUC".into(),
            x_log: true,
            x_range: Some((x0, x1)),
            y_range: None,
            series,
            legend: Legend::LowerRight,
        },
    )?;

    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.method.replace('_', " "),
                if r.noise_multiplier > 0.0 {
                    format!("{}", r.noise_multiplier)
                } else {
                    "–".into()
                },
                if r.method == "local_only" {
                    "0 (nothing shared)".into()
                } else {
                    eps(r.epsilon)
                },
                f3(r.pooled_auc),
                f3(r.mean_tenant_auc),
            ]
        })
        .collect();
    let body = format!(
        "## 1. Privacy–utility\n\n{}\n\nThe same DP-FedAvg job at several noise multipliers z: each point is \
         the final global model's held-out ROC-AUC (mean over tenants of the AUC on the tenant's own \
         held-out sessions) against the ε that z costs after all rounds (PLD accountant). The dashed \
         lines are the centralised non-private model, each tenant training alone (local-only), and \
         federated training without noise.\n\n{}\n\
         Pooled AUC ranks all tenants' held-out sessions together; for local-only it mixes one model per \
         tenant, each calibrated differently, so it is not comparable and the mean per-tenant AUC is the \
         headline metric.\n\n{}\n\nData: {}.",
        image(&png, "held-out AUC against epsilon"),
        markdown_table(
            &["method", "z", "ε", "pooled AUC", "mean per-tenant AUC"],
            &table_rows
        ),
        setup_text(setup, KEY, &pop_cfg, &template, t0.elapsed().as_secs_f64()),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
