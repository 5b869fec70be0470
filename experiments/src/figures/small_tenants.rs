//! Experiment 5, small tenants: a population with a wide spread of tenant
//! sizes; each tenant's held-out AUC under the federated model (DP, target ε)
//! against its own local-only model, grouped by the tenant's number of
//! sessions. Small tenants have too little data to learn alone. Over several
//! seeds, each bucket's tenants pooled, with bootstrap and Wilson intervals.

use std::time::Instant;

use fedsec_detector::synth::SynthConfig;
use serde::Serialize;

use super::{
    Baselines, Mode, Setup, TARGET_EPSILON, caption, image, link, run_fed, seeds_text, setup_text,
};
use crate::error::Result;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{f3, markdown_table, upsert_section, write_csv};
use crate::seeds::{MeanSd, bootstrap_mean, wilson};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "small-tenants";

/// Upper bounds (exclusive) of the size buckets of the full mode, in sessions.
pub const BUCKETS_FULL: [usize; 5] = [60, 120, 250, 500, usize::MAX];
/// Upper bounds of the size buckets of the fast mode.
pub const BUCKETS_FAST: [usize; 3] = [40, 80, usize::MAX];

/// One line of the CSV (one bucket, one method, one seed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Seed of the run.
    pub seed: u64,
    /// The bucket's lower bound (sessions, inclusive).
    pub bucket_from: usize,
    /// The bucket's upper bound (exclusive; 0 for none).
    pub bucket_to: usize,
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

/// One tenant's held-out AUC under one method, with its local-only AUC.
#[derive(Debug, Clone, Copy)]
struct TenantAuc {
    bucket: usize,
    method: usize,
    auc: f64,
    beats_local: bool,
}

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

/// Methods compared, in table order.
const METHODS: [&str; 3] = ["federated_dp", "local_only", "central_non_private"];

/// Runs the experiment over [`Setup::seeds`] and writes its CSV, PNG and
/// README section.
pub fn run(setup: &Setup) -> Result<Outcome> {
    run_seeds(setup, &setup.seeds())
}

/// One seed: its rows and every tenant's AUC per method.
fn one_seed(
    setup: &Setup,
    buckets: &[usize],
    rows: &mut Vec<Row>,
    units: &mut Vec<TenantAuc>,
) -> Result<(SynthConfig, crate::sim::FedConfig)> {
    let pop_cfg = population_config(setup);
    let pop = setup.population(&pop_cfg)?;
    let holdout = pop.pooled_holdout();
    let base = Baselines::train(setup, &pop, &holdout)?;
    let dp = setup.fed_config(pop.len(), Noise::TargetEpsilon(TARGET_EPSILON));
    let (_, _, fed_auc) = run_fed(
        setup,
        &pop,
        &holdout,
        &dp,
        None,
        &format!("small tenants, seed {}", setup.seed),
    )?;
    let methods: [&[Option<f64>]; 3] = [&fed_auc, &base.local.tenant_auc, &base.central.tenant_auc];
    let mut lo = 0usize;
    for (bi, &hi) in buckets.iter().enumerate() {
        let members: Vec<usize> = (0..pop.len())
            .filter(|&i| (lo..hi).contains(&pop.tenants[i].sessions()))
            .collect();
        if !members.is_empty() {
            let sizes: Vec<usize> = members.iter().map(|&i| pop.tenants[i].sessions()).collect();
            for (mi, auc) in methods.iter().enumerate() {
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
                for &i in &defined {
                    units.push(TenantAuc {
                        bucket: bi,
                        method: mi,
                        auc: auc[i].unwrap_or(f64::NAN),
                        beats_local: auc[i] > base.local.tenant_auc[i],
                    });
                }
                rows.push(Row {
                    seed: setup.seed,
                    bucket_from: lo,
                    bucket_to: if hi == usize::MAX { 0 } else { hi },
                    min_sessions: sizes.iter().copied().min().unwrap_or(0),
                    max_sessions: sizes.iter().copied().max().unwrap_or(0),
                    tenants: members.len(),
                    tenants_with_auc: defined.len(),
                    method: METHODS[mi].into(),
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
    Ok((pop_cfg, dp))
}

/// The label of bucket `bi`: `20–59`, `500+`.
fn bucket_label(buckets: &[usize], bi: usize) -> String {
    let lo = if bi == 0 { 0 } else { buckets[bi - 1] };
    match buckets.get(bi) {
        Some(&hi) if hi != usize::MAX => format!("{lo}–{}", hi - 1),
        _ => format!("{lo}+"),
    }
}

/// Runs the experiment over `seeds`: per bucket, the tenants of every seed
/// pooled, with a bootstrap interval of the mean AUC and a Wilson interval
/// of the share beating local-only (small buckets hold a few dozen tenants).
pub fn run_seeds(setup: &Setup, seeds: &[u64]) -> Result<Outcome> {
    let t0 = Instant::now();
    let buckets: &[usize] = match setup.mode {
        Mode::Fast => &BUCKETS_FAST,
        Mode::Full => &BUCKETS_FULL,
    };
    let mut rows = Vec::new();
    let mut units = Vec::new();
    let mut last = None;
    for &seed in seeds {
        last = Some(one_seed(
            &setup.with_seed(seed),
            buckets,
            &mut rows,
            &mut units,
        )?);
    }
    let (pop_cfg, dp) =
        last.unwrap_or_else(|| (population_config(setup), setup.fed_config(0, Noise::Off)));
    let csv = setup.output("small_tenants.csv")?;
    write_csv(&csv, &rows)?;

    struct Cell {
        bucket: usize,
        method: usize,
        n: usize,
        mean: f64,
        ci: (f64, f64),
        per_seed: MeanSd,
        beat: usize,
    }
    let mut cells = Vec::new();
    for bi in 0..buckets.len() {
        for (mi, method) in METHODS.iter().enumerate() {
            let of: Vec<&TenantAuc> = units
                .iter()
                .filter(|u| u.bucket == bi && u.method == mi)
                .collect();
            if of.is_empty() {
                continue;
            }
            let vals: Vec<f64> = of.iter().map(|u| u.auc).collect();
            let per_seed: Vec<f64> = rows
                .iter()
                .filter(|r| {
                    r.method == *method
                        && r.bucket_from == if bi == 0 { 0 } else { buckets[bi - 1] }
                })
                .map(|r| r.mean_tenant_auc)
                .collect();
            cells.push(Cell {
                bucket: bi,
                method: mi,
                n: of.len(),
                mean: MeanSd::of(&vals).mean,
                ci: bootstrap_mean(&vals, 2_000, setup.seed ^ (bi * 8 + mi) as u64),
                per_seed: MeanSd::of(&per_seed),
                beat: of.iter().filter(|u| u.beats_local).count(),
            });
        }
    }
    // x = geometric middle of the bucket's bounds (the open bucket: 1.5 × its floor).
    let mid = |bi: usize| {
        let lo = if bi == 0 {
            10.0
        } else {
            buckets[bi - 1] as f64
        };
        let hi = match buckets.get(bi) {
            Some(&h) if h != usize::MAX => h as f64,
            _ => lo * 2.25,
        };
        (lo * hi).sqrt()
    };
    let styles = [
        (
            format!("federated DP (ε = {TARGET_EPSILON})"),
            plot::color(0),
            false,
        ),
        ("local-only".to_string(), plot::color(3), false),
        (
            "centralised, non-private".to_string(),
            plot::REFERENCE_GREY,
            true,
        ),
    ];
    let mut series: Vec<Series> = Vec::new();
    for (mi, (label, c, dashed)) in styles.iter().enumerate() {
        let of: Vec<&Cell> = cells.iter().filter(|x| x.method == mi).collect();
        let mut s = Series::line(
            label.clone(),
            of.iter().map(|x| (mid(x.bucket), x.mean)).collect(),
            *c,
        );
        s.dashed = *dashed;
        if mi == 0 {
            s = s.with_point_labels(of.iter().map(|x| format!("{} tenants", x.n)).collect());
            // The bootstrap interval's ends, as unconnected marks.
            let mut lo = Series::line(
                "federated DP, 95 % bootstrap interval",
                of.iter()
                    .flat_map(|x| [(mid(x.bucket), x.ci.0), (mid(x.bucket), x.ci.1)])
                    .collect(),
                *c,
            );
            lo.line = false;
            series.push(s);
            series.push(lo);
        } else {
            series.push(s);
        }
    }
    let (xmin, xmax) = (mid(0), mid(buckets.len() - 1));
    let png = setup.output("small_tenants.png")?;
    plot::line_chart(
        &png,
        (820, 540),
        &LineChart {
            title: "Small tenants: own held-out AUC by tenant size".into(),
            caption: caption(
                setup,
                &format!(
                    "{} tenants × {} seeds, {} rounds, m = {}",
                    pop_cfg.tenants,
                    seeds.len(),
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
    let table_rows: Vec<Vec<String>> = cells
        .iter()
        .map(|x| {
            let (wl, wh) = wilson(x.beat, x.n);
            vec![
                bucket_label(buckets, x.bucket),
                x.n.to_string(),
                METHODS[x.method].replace('_', " "),
                format!("{} [{}, {}]", f3(x.mean), f3(x.ci.0), f3(x.ci.1)),
                x.per_seed.show(),
                if x.method == 1 {
                    "–".into()
                } else {
                    format!(
                        "{:.0} % [{:.0}, {:.0}]",
                        100.0 * x.beat as f64 / x.n.max(1) as f64,
                        100.0 * wl,
                        100.0 * wh
                    )
                },
            ]
        })
        .collect();
    let body = format!(
        "## 5. Small tenants\n\n{}\n\nTenant sizes spread wide (log-normal σ = {}, down to {} sessions, \
         {}% held out). Each tenant is scored on its own held-out sessions by the federated model \
         (DP, ε = {TARGET_EPSILON}), by its own local-only model and by the centralised non-private \
         model; tenants are grouped by size. Only tenants whose holdout has both bots and humans count. \
         The tenants of all seeds are pooled per bucket: the mean AUC carries a 95 % percentile-bootstrap \
         interval over those tenants (2,000 resamples), the share beating local-only a 95 % Wilson \
         interval; the per-seed column is the mean ± sd over seeds of the bucket's mean. A small \
         tenant's own AUC rests on a handful of held-out sessions, so single tenants are noisy; the \
         intervals say how far the bucket means can be trusted.\n\n{}\n{}\n\n{}\n\nData: {} (one row per seed).",
        image(&png, "AUC by tenant size"),
        pop_cfg.sessions_sigma,
        pop_cfg.min_sessions,
        (super::HOLDOUT_FRACTION * 100.0).round(),
        markdown_table(
            &[
                "sessions",
                "tenants (all seeds)",
                "method",
                "mean AUC [95 % bootstrap]",
                "per seed (mean ± sd)",
                "tenants where it beats local-only [95 % Wilson]"
            ],
            &table_rows
        ),
        seeds_text(seeds),
        setup_text(setup, KEY, &pop_cfg, &dp, t0.elapsed().as_secs_f64()),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
