//! Experiment 2, non-IID data: the generator's Dirichlet concentration α of
//! each tenant's bot mix (0.1: one or two bot archetypes per tenant; 10: every
//! tenant near its kind's prior). For each α: a new population (same seed),
//! the baselines, DP-FedAvg at the target ε and without noise.

use std::time::Instant;

use fedsec_detector::synth::SynthConfig;
use serde::Serialize;

use super::{
    Baselines, Mode, Scores, Setup, TARGET_EPSILON, caption, image, link, run_fed, setup_text,
};
use crate::error::Result;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{eps, f3, markdown_table, upsert_section, write_csv};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "non-iid";

/// α values of the full mode.
pub const ALPHAS_FULL: [f64; 4] = [0.1, 0.5, 1.0, 10.0];
/// α values of the fast mode.
pub const ALPHAS_FAST: [f64; 2] = [0.1, 10.0];

/// One line of the CSV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Dirichlet concentration.
    pub alpha: f64,
    /// Method.
    pub method: String,
    /// z (0 when not applicable).
    pub noise_multiplier: f64,
    /// ε after the last round (∞ without noise, 0 for local-only).
    pub epsilon: f64,
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
    let alphas: &[f64] = match setup.mode {
        Mode::Fast => &ALPHAS_FAST,
        Mode::Full => &ALPHAS_FULL,
    };
    let mut rows = Vec::new();
    let mut last_cfg: Option<(SynthConfig, crate::sim::FedConfig)> = None;
    for &alpha in alphas {
        let pop_cfg = SynthConfig {
            alpha,
            ..setup.population_config()
        };
        let pop = setup.population(&pop_cfg)?;
        let holdout = pop.pooled_holdout();
        let base = Baselines::train(setup, &pop, &holdout)?;
        let mut push = |method: &str, z: f64, epsilon: f64, s: Scores| {
            rows.push(Row {
                alpha,
                method: method.into(),
                noise_multiplier: z,
                epsilon,
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
        let off = setup.fed_config(pop.len(), Noise::Off);
        let (_, s, _) = run_fed(
            setup,
            &pop,
            &holdout,
            &off,
            None,
            &format!("α = {alpha}, no noise"),
        )?;
        push("federated_no_noise", 0.0, f64::INFINITY, s);
        let dp = setup.fed_config(pop.len(), Noise::TargetEpsilon(TARGET_EPSILON));
        let (run, s, _) = run_fed(
            setup,
            &pop,
            &holdout,
            &dp,
            None,
            &format!("α = {alpha}, ε = {TARGET_EPSILON}"),
        )?;
        push("federated_dp", run.noise_multiplier, run.final_epsilon(), s);
        last_cfg = Some((pop_cfg, dp));
    }
    let csv = setup.output("non_iid.csv")?;
    write_csv(&csv, &rows)?;

    let methods = [
        (
            "federated_dp",
            format!("federated DP (ε = {TARGET_EPSILON})"),
            plot::color(0),
            false,
        ),
        (
            "federated_no_noise",
            "federated, no noise".to_string(),
            plot::color(2),
            true,
        ),
        (
            "central_non_private",
            "centralised, non-private".to_string(),
            plot::REFERENCE_GREY,
            true,
        ),
        ("local_only", "local-only".to_string(), plot::color(3), true),
    ];
    let series: Vec<Series> = methods
        .iter()
        .map(|(m, label, c, dashed)| {
            let mut s = Series::line(
                label.clone(),
                rows.iter()
                    .filter(|r| r.method == *m)
                    .map(|r| (r.alpha, r.mean_tenant_auc))
                    .collect(),
                *c,
            );
            s.dashed = *dashed;
            s
        })
        .collect();
    let png = setup.output("non_iid.png")?;
    let (pop_cfg, dp) =
        last_cfg.unwrap_or_else(|| (setup.population_config(), setup.fed_config(0, Noise::Off)));
    plot::line_chart(
        &png,
        (820, 540),
        &LineChart {
            title: "Non-IID tenants: held-out AUC against Dirichlet α".into(),
            caption: caption(
                setup,
                &format!(
                    "{} tenants, {} rounds, m = {}",
                    pop_cfg.tenants, dp.rounds, dp.expected_cohort
                ),
            ),
            x_label: "Dirichlet α of each tenant's bot mix (log scale; small = very non-IID)"
                .into(),
            y_label: "mean per-tenant held-out ROC-AUC".into(),
            x_log: true,
            x_range: Some((alphas[0] / 1.5, alphas[alphas.len() - 1] * 1.5)),
            y_range: None,
            series,
            legend: Legend::LowerRight,
        },
    )?;
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{}", r.alpha),
                r.method.replace('_', " "),
                if r.method == "local_only" {
                    "0".into()
                } else {
                    eps(r.epsilon)
                },
                f3(r.pooled_auc),
                f3(r.mean_tenant_auc),
            ]
        })
        .collect();
    let body = format!(
        "## 2. Non-IID tenants\n\n{}\n\nEach tenant's bot mix is drawn from Dirichlet(α · prior of its \
         kind): α = 0.1 gives tenants dominated by one or two bot archetypes, α = 10 tenants close to \
         their kind's prior. For each α a new population is generated (same seed) and every method is \
         trained on it; DP-FedAvg's z is calibrated to ε = {TARGET_EPSILON} after all rounds.\n\n{}\n{}\n\nData: {}.",
        image(&png, "held-out AUC against alpha"),
        markdown_table(
            &["α", "method", "ε", "pooled AUC", "mean per-tenant AUC"],
            &table_rows
        ),
        setup_text(setup, KEY, &pop_cfg, &dp, t0.elapsed().as_secs_f64()),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
