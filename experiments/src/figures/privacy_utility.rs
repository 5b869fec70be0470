//! Experiment 1, privacy–utility: the same job (rounds, cohort, C, local
//! training) at several noise multipliers z; held-out AUC against the ε each
//! z costs, with the centralised non-private, local-only and noise-free
//! federated references.

use std::time::Instant;

use serde::Serialize;

use fedsec_detector::synth::SynthConfig;

use super::{
    Scores, Setup, caption, choose_local_training, image, link, run_fed, seeds_text, setup_text,
};
use crate::baselines::{self, BaselineConfig};
use crate::error::Result;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{eps, markdown_table, upsert_section, write_csv};
use crate::seeds::{group_by, over};
use crate::sim::{FedConfig, Noise};

/// README section key and subcommand.
pub const KEY: &str = "privacy-utility";

/// Noise multipliers of the full mode.
pub const Z_FULL: [f64; 7] = [0.5, 0.7, 1.0, 1.5, 2.5, 4.0, 8.0];
/// Noise multipliers of the fast mode.
pub const Z_FAST: [f64; 3] = [0.7, 2.0, 8.0];

/// One line of the CSV (one method at one z, one seed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Seed of the run.
    pub seed: u64,
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
    /// Recall of abuse at 1 % FPR (pooled holdout).
    pub recall_at_1pct_fpr: f64,
    /// Precision at that operating point.
    pub precision_at_1pct_fpr: f64,
}

/// What the experiment wrote.
pub type Outcome = super::Outcome<Row>;

/// Local-only training chosen on validation for one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalChoice {
    /// Seed.
    pub seed: u64,
    /// Chosen (epochs, learning rate).
    pub chosen: (u32, f64),
    /// Every candidate's mean per-tenant validation AUC.
    pub candidates: Vec<((u32, f64), f64)>,
}

/// One seed's rows (and its validation choice).
fn one_seed(setup: &Setup) -> Result<(Vec<Row>, LocalChoice, SynthConfig, FedConfig)> {
    let pop_cfg = setup.population_config();
    let pop = setup.population(&pop_cfg)?;
    let holdout = pop.pooled_holdout();
    // Local-only's training is a choice made from data: on validation rows.
    let (local_train, scored) = choose_local_training(setup, &pop)?;
    let choice = LocalChoice {
        seed: setup.seed,
        chosen: (local_train.epochs, local_train.learning_rate),
        candidates: scored
            .iter()
            .map(|(c, a)| ((c.epochs, c.learning_rate), *a))
            .collect(),
    };
    let bcfg = BaselineConfig {
        local: local_train,
        ..setup.baseline_config()
    };
    let central = baselines::central(&pop, &holdout, &bcfg)?;
    let local = baselines::local_only(&pop, &holdout, &bcfg)?;
    let zs: &[f64] = match setup.mode {
        super::Mode::Fast => &Z_FAST,
        super::Mode::Full => &Z_FULL,
    };
    let template = setup.fed_config(pop.len(), Noise::Off);
    let mut rows = Vec::new();
    let mut push = |method: &str, z: f64, epsilon: f64, s: Scores| {
        rows.push(Row {
            seed: setup.seed,
            method: method.into(),
            noise_multiplier: z,
            epsilon,
            delta: template.delta,
            rounds: template.rounds,
            expected_cohort: template.expected_cohort,
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
        Scores::of_baseline(&central),
    );
    push("local_only", 0.0, 0.0, Scores::of_baseline(&local));
    let (_, s, _) = run_fed(setup, &pop, &holdout, &template, None, "no noise")?;
    push("federated_no_noise", 0.0, f64::INFINITY, s);
    for &z in zs {
        let cfg = setup.fed_config(pop.len(), Noise::Multiplier(z));
        let (run, s, _) = run_fed(
            setup,
            &pop,
            &holdout,
            &cfg,
            None,
            &format!("seed {}, z = {z}", setup.seed),
        )?;
        push("federated_dp", z, run.final_epsilon(), s);
    }
    Ok((rows, choice, pop_cfg, template))
}

/// Runs the experiment over [`Setup::seeds`] and writes its CSV, PNG and
/// README section.
pub fn run(setup: &Setup) -> Result<Outcome> {
    run_seeds(setup, &setup.seeds())
}

/// Runs the experiment over `seeds` (mean ± sd over them).
pub fn run_seeds(setup: &Setup, seeds: &[u64]) -> Result<Outcome> {
    let t0 = Instant::now();
    let mut rows = Vec::new();
    let mut choices = Vec::new();
    let mut last = None;
    for &seed in seeds {
        let (r, c, pop_cfg, template) = one_seed(&setup.with_seed(seed))?;
        rows.extend(r);
        choices.push(c);
        last = Some((pop_cfg, template));
    }
    let (pop_cfg, template) =
        last.unwrap_or_else(|| (setup.population_config(), setup.fed_config(0, Noise::Off)));
    let csv = setup.output("privacy_utility.csv")?;
    write_csv(&csv, &rows)?;

    // One group per (method, z), in run order; mean ± sd over seeds.
    let groups = group_by(&rows, |r| (r.method.clone(), r.noise_multiplier.to_bits()));
    let find = |m: &str| groups.iter().find(|(k, _)| k.0 == m).map(|(_, g)| g);
    let dp: Vec<&(_, Vec<&Row>)> = groups
        .iter()
        .filter(|(k, _)| k.0 == "federated_dp")
        .collect();
    let dp_points: Vec<(f64, f64, f64)> = dp
        .iter()
        .map(|(k, g)| {
            (
                over(g, |r| r.epsilon).mean,
                over(g, |r| r.mean_tenant_auc).mean,
                f64::from_bits(k.1),
            )
        })
        .collect();
    let (x0, x1) = dp_points.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| {
        (a.min(p.0), b.max(p.0))
    });
    let (x0, x1) = (x0 / 1.6, x1 * 1.6);
    let mut series = vec![
        Series::line(
            "federated DP-FedAvg (mean over seeds)",
            dp_points.iter().map(|p| (p.0, p.1)).collect(),
            plot::color(0),
        )
        .with_point_labels(dp_points.iter().map(|p| format!("z={}", p.2)).collect()),
    ];
    let mut each = Series::line(
        "federated DP-FedAvg, each seed",
        rows.iter()
            .filter(|r| r.method == "federated_dp")
            .map(|r| (r.epsilon, r.mean_tenant_auc))
            .collect(),
        plot::color(0),
    );
    each.line = false;
    series.push(each);
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
        if let Some(g) = find(m) {
            series.push(Series::reference(
                label,
                over(g, |r| r.mean_tenant_auc).mean,
                x0,
                x1,
                c,
            ));
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
                    "{} tenants, {} rounds, m = {}, {} seeds",
                    pop_cfg.tenants,
                    template.rounds,
                    template.expected_cohort,
                    seeds.len()
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

    let table_rows: Vec<Vec<String>> = groups
        .iter()
        .map(|((method, zb), g)| {
            let z = f64::from_bits(*zb);
            vec![
                method.replace('_', " "),
                if z > 0.0 {
                    format!("{z}")
                } else {
                    "–".into()
                },
                if method == "local_only" {
                    "0 (nothing shared)".into()
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
    let choice_text = choices
        .iter()
        .map(|c| {
            format!(
                "seed {}: {} epochs at lr {} ({})",
                c.seed,
                c.chosen.0,
                c.chosen.1,
                c.candidates
                    .iter()
                    .map(|((e, lr), a)| format!("{e}/{lr}: {a:.3}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    let body = format!(
        "## 1. Privacy–utility\n\n{}\n\nThe same DP-FedAvg job at several noise multipliers z: each point is \
         the final global model's held-out ROC-AUC (mean over tenants of the AUC on the tenant's own \
         held-out sessions) against the ε that z costs after all rounds (PLD accountant); the line joins \
         the means over seeds, the dots are the seeds. The dashed lines are the centralised non-private \
         model, each tenant training alone (local-only), and federated training without noise.\n\n{}\n\
         {}\n\n\
         Pooled AUC ranks all tenants' held-out sessions together; for local-only it mixes one model per \
         tenant, each calibrated differently, so it is not comparable and the mean per-tenant AUC is the \
         headline metric.\n\n\
         Local-only's training (epochs, Adam learning rate) is chosen per seed on a validation split of \
         each tenant's training rows ({:.0} % of them; the holdout is never looked at), by mean \
         per-tenant validation AUC: {}. Every other setting is fixed in the code, not chosen on these \
         data.\n\n{}\n\nData: {} (one row per seed).",
        image(&png, "held-out AUC against epsilon"),
        markdown_table(
            &[
                "method",
                "z",
                "ε",
                "mean per-tenant AUC",
                "pooled AUC",
                "recall at 1 % FPR",
                "precision there",
            ],
            &table_rows
        ),
        seeds_text(seeds),
        super::VALIDATION_FRACTION * 100.0,
        choice_text,
        setup_text(setup, KEY, &pop_cfg, &template, t0.elapsed().as_secs_f64()),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
