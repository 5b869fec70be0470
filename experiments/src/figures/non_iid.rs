//! Experiment 2, non-IID data: the generator's Dirichlet concentration α of
//! each tenant's bot mix (0.1: one or two bot archetypes per tenant; 10: every
//! tenant near its kind's prior). For each α and seed: a new population, the
//! baselines, DP-FedAvg at the target ε and without noise; mean ± sd over
//! seeds and the paired per-seed gap between DP-FedAvg and local-only.

use std::time::Instant;

use fedsec_detector::synth::SynthConfig;
use serde::Serialize;

use super::{
    Baselines, Mode, Scores, Setup, TARGET_EPSILON, caption, image, link, run_fed, seeds_text,
    setup_text,
};
use crate::error::Result;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{eps, markdown_table, upsert_section, write_csv};
use crate::seeds::{MeanSd, group_by, over};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "non-iid";

/// α values of the full mode.
pub const ALPHAS_FULL: [f64; 4] = [0.1, 0.5, 1.0, 10.0];
/// α values of the fast mode.
pub const ALPHAS_FAST: [f64; 2] = [0.1, 10.0];

/// One line of the CSV (one α, one method, one seed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Seed of the run.
    pub seed: u64,
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

/// One seed, every α.
fn one_seed(
    setup: &Setup,
    alphas: &[f64],
    rows: &mut Vec<Row>,
) -> Result<Option<(SynthConfig, crate::sim::FedConfig)>> {
    let mut last_cfg = None;
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
                seed: setup.seed,
                alpha,
                method: method.into(),
                noise_multiplier: z,
                epsilon,
                pooled_auc: s.pooled_auc,
                mean_tenant_auc: s.mean_tenant_auc,
                tenants_with_auc: s.tenants_with_auc,
                recall_at_1pct_fpr: s.recall_at_1pct_fpr,
                precision_at_1pct_fpr: s.precision_at_1pct_fpr,
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
            &format!("seed {}, α = {alpha}, no noise", setup.seed),
        )?;
        push("federated_no_noise", 0.0, f64::INFINITY, s);
        let dp = setup.fed_config(pop.len(), Noise::TargetEpsilon(TARGET_EPSILON));
        let (run, s, _) = run_fed(
            setup,
            &pop,
            &holdout,
            &dp,
            None,
            &format!("seed {}, α = {alpha}, ε = {TARGET_EPSILON}", setup.seed),
        )?;
        push("federated_dp", run.noise_multiplier, run.final_epsilon(), s);
        last_cfg = Some((pop_cfg, dp));
    }
    Ok(last_cfg)
}

/// Federated DP minus local-only, per seed (paired: same population).
pub fn dp_minus_local(rows: &[Row], alpha: f64) -> Vec<f64> {
    let of = |m: &str, seed: u64| {
        rows.iter()
            .find(|r| r.method == m && r.seed == seed && r.alpha == alpha)
            .map(|r| r.mean_tenant_auc)
    };
    let mut seeds: Vec<u64> = rows.iter().map(|r| r.seed).collect();
    seeds.dedup();
    seeds
        .iter()
        .filter_map(|&s| Some(of("federated_dp", s)? - of("local_only", s)?))
        .collect()
}

/// Runs the experiment over `seeds` (mean ± sd over them).
pub fn run_seeds(setup: &Setup, seeds: &[u64]) -> Result<Outcome> {
    let t0 = Instant::now();
    let alphas: &[f64] = match setup.mode {
        Mode::Fast => &ALPHAS_FAST,
        Mode::Full => &ALPHAS_FULL,
    };
    let mut rows = Vec::new();
    let mut last_cfg = None;
    for &seed in seeds {
        last_cfg = one_seed(&setup.with_seed(seed), alphas, &mut rows)?.or(last_cfg);
    }
    let csv = setup.output("non_iid.csv")?;
    write_csv(&csv, &rows)?;
    let groups = group_by(&rows, |r| (r.alpha.to_bits(), r.method.clone()));

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
    let mut series: Vec<Series> = Vec::new();
    for (m, label, c, dashed) in &methods {
        let mut s = Series::line(
            format!("{label}, mean"),
            groups
                .iter()
                .filter(|((_, gm), _)| gm.as_str() == *m)
                .map(|((a, _), g)| (f64::from_bits(*a), over(g, |r| r.mean_tenant_auc).mean))
                .collect(),
            *c,
        );
        s.dashed = *dashed;
        series.push(s);
        if *m == "federated_dp" || *m == "local_only" {
            let mut each = Series::line(
                format!("{label}, each seed"),
                rows.iter()
                    .filter(|r| r.method == *m)
                    .map(|r| (r.alpha, r.mean_tenant_auc))
                    .collect(),
                *c,
            );
            each.line = false;
            series.push(each);
        }
    }
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
                    "{} tenants, {} rounds, m = {}, {} seeds",
                    pop_cfg.tenants,
                    dp.rounds,
                    dp.expected_cohort,
                    seeds.len()
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
    let table_rows: Vec<Vec<String>> = groups
        .iter()
        .map(|((a, method), g)| {
            let alpha = f64::from_bits(*a);
            vec![
                format!("{alpha}"),
                method.replace('_', " "),
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
    let gap_rows: Vec<Vec<String>> = alphas
        .iter()
        .map(|&alpha| {
            let d = dp_minus_local(&rows, alpha);
            vec![
                format!("{alpha}"),
                MeanSd::of(&d).show(),
                d.iter()
                    .map(|x| format!("{x:+.3}"))
                    .collect::<Vec<_>>()
                    .join(" / "),
                format!("{} of {}", d.iter().filter(|x| **x > 0.0).count(), d.len()),
            ]
        })
        .collect();
    let body = format!(
        "## 2. Non-IID tenants\n\n{}\n\nEach tenant's bot mix is drawn from Dirichlet(α · prior of its \
         kind): α = 0.1 gives tenants dominated by one or two bot archetypes, α = 10 tenants close to \
         their kind's prior. For each α and seed a new population is generated and every method is \
         trained on it; DP-FedAvg's z is calibrated to ε = {TARGET_EPSILON} after all rounds.\n\n{}\n{}\n\n\
         Federated DP minus local-only (mean per-tenant AUC, paired on each seed's population):\n\n{}\n{}\n\nData: {} (one row per seed).",
        image(&png, "held-out AUC against alpha"),
        markdown_table(
            &[
                "α",
                "method",
                "ε",
                "mean per-tenant AUC",
                "pooled AUC",
                "recall at 1 % FPR",
                "precision there",
            ],
            &table_rows
        ),
        seeds_text(seeds),
        markdown_table(
            &[
                "α",
                "DP − local-only",
                "per seed",
                "seeds where DP is ahead"
            ],
            &gap_rows
        ),
        setup_text(setup, KEY, &pop_cfg, &dp, t0.elapsed().as_secs_f64()),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
