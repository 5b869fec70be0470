//! Experiment 4, poisoning: k malicious tenants (drawn at random, then
//! selected by Poisson sampling like everyone else) send either a scaled
//! sign-flipped update or a boosted backdoor update, both boosted by the
//! expected cohort m (model replacement). The server re-clips every update
//! to C (the coordinator always does) or, in this simulator only, adds the
//! raw updates. Noise is calibrated to the target ε in every run.
//!
//! Reported: main-task held-out AUC, and the backdoor's success — among
//! held-out bot sessions the model flags at its 1 %-FPR threshold, the share
//! it no longer flags once the trigger ([`crate::attack::trigger`]) is set.

use std::time::Instant;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use super::{Mode, Setup, TARGET_EPSILON, caption, image, link, run_fed, setup_text};
use crate::attack::{Adversary, Attack, backdoor_success};
use crate::error::Result;
use crate::eval;
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{f3, markdown_table, upsert_section, write_csv};
use crate::sim::Noise;

/// README section key and subcommand.
pub const KEY: &str = "poisoning";

/// Below this pooled AUC the attack destroyed the model (chance is 0.5):
/// its backdoor success is not reported (a constant model "lets through"
/// any share of triggered bots; there is no main task left to hide in).
pub const DESTROYED_AUC: f64 = 0.55;

/// Malicious tenant counts of the full mode.
pub const MALICIOUS_FULL: [usize; 4] = [1, 3, 10, 30];
/// Malicious tenant counts of the fast mode.
pub const MALICIOUS_FAST: [usize; 2] = [1, 3];

/// One line of the CSV.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `none`, `scaled_sign_flip` or `backdoor`.
    pub attack: String,
    /// Malicious tenants k.
    pub malicious: usize,
    /// Server-side re-clipping to C.
    pub server_clipping: bool,
    /// Boost factor of the malicious updates.
    pub boost: f64,
    /// Rounds in which at least one malicious tenant's update was accumulated.
    pub rounds_with_attacker: usize,
    /// Rounds in which some selected tenant's local training diverged on a
    /// wrecked global model (it then reports nothing).
    pub rounds_diverged: usize,
    /// ε after the last round.
    pub epsilon: f64,
    /// Pooled held-out ROC-AUC.
    pub pooled_auc: f64,
    /// Mean per-tenant held-out ROC-AUC.
    pub mean_tenant_auc: f64,
    /// Backdoor success (share of detected held-out bots that evade once triggered).
    pub backdoor_success: f64,
}

/// What the experiment wrote.
pub type Outcome = super::Outcome<Row>;

/// Runs the experiment and writes its CSV, PNG and README section.
pub fn run(setup: &Setup) -> Result<Outcome> {
    let t0 = Instant::now();
    let pop_cfg = setup.population_config();
    let pop = setup.population(&pop_cfg)?;
    let holdout = pop.pooled_holdout();
    let counts: &[usize] = match setup.mode {
        Mode::Fast => &MALICIOUS_FAST,
        Mode::Full => &MALICIOUS_FULL,
    };
    // The malicious tenants: a seeded random order; k attackers are its first k.
    let mut order: Vec<usize> = (0..pop.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(setup.seed ^ 0x6576_696c));
    let base = setup.fed_config(pop.len(), Noise::TargetEpsilon(TARGET_EPSILON));
    let boost = base.expected_cohort;
    let mut rows = Vec::new();
    let mut runs: Vec<(String, usize, bool, Option<Adversary>)> =
        vec![("none".into(), 0, true, None)];
    for attack in [
        Attack::ScaledSignFlip { factor: boost },
        Attack::Backdoor { boost },
    ] {
        for clip in [true, false] {
            for &k in counts {
                let adv = Adversary {
                    malicious: order[..k.min(order.len())].to_vec(),
                    attack,
                };
                let name = match attack {
                    Attack::ScaledSignFlip { .. } => "scaled_sign_flip",
                    Attack::Backdoor { .. } => "backdoor",
                };
                runs.push((name.into(), k, clip, Some(adv)));
            }
        }
    }
    for (name, k, clip, adv) in &runs {
        let cfg = crate::sim::FedConfig {
            server_clipping: *clip,
            ..base.clone()
        };
        let label = format!(
            "{name}, k = {k}, {}",
            if *clip {
                "server clipping"
            } else {
                "no server clipping"
            }
        );
        let (run, s, _) = run_fed(setup, &pop, &holdout, &cfg, adv.as_ref(), &label)?;
        let clean = eval::score(&cfg.model, &run.weights, holdout.data.features())?;
        let threshold = eval::threshold_at_fpr(&clean, &holdout.labels, eval::REPORT_FPR);
        let success = backdoor_success(&holdout.data, &clean, threshold, |x| {
            eval::score(&cfg.model, &run.weights, x).ok()
        })
        .unwrap_or(f64::NAN);
        rows.push(Row {
            attack: name.clone(),
            malicious: *k,
            server_clipping: *clip,
            boost: if adv.is_some() { boost } else { 0.0 },
            rounds_with_attacker: run.records.iter().filter(|r| r.malicious > 0).count(),
            rounds_diverged: run.records.iter().filter(|r| r.diverged > 0).count(),
            epsilon: run.final_epsilon(),
            pooled_auc: s.pooled_auc,
            mean_tenant_auc: s.mean_tenant_auc,
            backdoor_success: success,
        });
    }
    let csv = setup.output("poisoning.csv")?;
    write_csv(&csv, &rows)?;

    let none = rows.iter().find(|r| r.attack == "none").cloned();
    let (x0, x1) = (
        counts[0] as f64 / 1.5,
        counts[counts.len() - 1] as f64 * 1.5,
    );
    let curve = |attack: &str, clip: bool, f: &dyn Fn(&Row) -> f64| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.attack == attack && r.server_clipping == clip)
            .map(|r| (r.malicious as f64, f(r)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let auc = |r: &Row| r.mean_tenant_auc;
    let bd = |r: &Row| {
        if r.pooled_auc < DESTROYED_AUC {
            f64::NAN
        } else {
            r.backdoor_success
        }
    };
    let mut left = vec![
        Series::line(
            "sign-flip, server clips",
            curve("scaled_sign_flip", true, &auc),
            plot::color(0),
        ),
        Series::line(
            "sign-flip, no clipping",
            curve("scaled_sign_flip", false, &auc),
            plot::color(1),
        ),
        Series::line(
            "backdoor, server clips",
            curve("backdoor", true, &auc),
            plot::color(2),
        ),
        Series::line(
            "backdoor, no clipping",
            curve("backdoor", false, &auc),
            plot::color(3),
        ),
    ];
    let mut right = vec![
        Series::line(
            "backdoor, server clips",
            curve("backdoor", true, &bd),
            plot::color(2),
        ),
        Series::line(
            "backdoor, no clipping",
            curve("backdoor", false, &bd),
            plot::color(3),
        ),
    ];
    if let Some(n) = &none {
        left.push(Series::reference(
            "no attack",
            n.mean_tenant_auc,
            x0,
            x1,
            plot::REFERENCE_GREY,
        ));
        right.push(Series::reference(
            "no attack (trigger alone)",
            n.backdoor_success,
            x0,
            x1,
            plot::REFERENCE_GREY,
        ));
    }
    let png = setup.output("poisoning.png")?;
    let cap = caption(
        setup,
        &format!(
            "{} tenants, ε = {TARGET_EPSILON}, boost ×{boost}",
            pop.len()
        ),
    );
    plot::panels(
        &png,
        (1280, 580),
        &[
            LineChart {
                title: "Main task under attack".into(),
                caption: String::new(),
                x_label: "malicious tenants k (log scale)".into(),
                y_label: "mean per-tenant held-out ROC-AUC".into(),
                x_log: true,
                x_range: Some((x0, x1)),
                y_range: Some((0.0, 1.0)),
                series: left,
                legend: Legend::LowerLeft,
            },
            LineChart {
                title: "Backdoor success".into(),
                caption:
                    "share of detected held-out bots that evade once triggered (1 % FPR threshold)"
                        .into(),
                x_label: "malicious tenants k (log scale)".into(),
                y_label: "attack success".into(),
                x_log: true,
                x_range: Some((x0, x1)),
                y_range: Some((0.0, 1.0)),
                series: right,
                legend: Legend::UpperLeft,
            },
        ],
        "Poisoning: scaled sign-flip and backdoor attackers, server-side clipping on and off",
        &cap,
    )?;
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.attack.replace('_', " "),
                r.malicious.to_string(),
                if r.server_clipping {
                    "yes".into()
                } else {
                    "**no** (simulator only)".into()
                },
                r.rounds_with_attacker.to_string(),
                r.rounds_diverged.to_string(),
                f3(r.pooled_auc),
                f3(r.mean_tenant_auc),
                if r.pooled_auc < DESTROYED_AUC {
                    "– (model destroyed)".into()
                } else {
                    f3(r.backdoor_success)
                },
            ]
        })
        .collect();
    let body = format!(
        "## 4. Poisoning\n\n{}\n\nk malicious tenants among {} send, whenever Poisson sampling selects them, \
         either `−m ×` their honest update (scaled sign-flip, untargeted) or `m ×` an update trained on \
         their data plus a triggered copy of each of their bot sessions labelled human (backdoor, model \
         replacement; trigger: `HEAD` share 80 %, `304` share 80 %, current-browser user agent), with \
         m = {boost} the expected cohort. With server-side clipping (what the coordinator always does) each \
         attacker moves the sum by at most C, like any honest tenant (so clipping bounds each attacker's \
         influence; it does not stop many attackers pushing the same backdoor direction); without it (possible only in this \
         simulator) one boosted update outweighs the cohort; once the global model is wrecked, tenants' \
         local training diverges and they report nothing (column \"rounds with diverged training\"). \
         DP noise calibrated to ε = {TARGET_EPSILON} in \
         every run. Backdoor success: among held-out bot sessions the model flags at its 1 %-FPR \
         threshold, the share that evade once the trigger is set (not reported when the attack \
         destroyed the model: pooled AUC below {DESTROYED_AUC}).\n\n{}\n{}\n\nData: {}.",
        image(&png, "poisoning"),
        pop.len(),
        markdown_table(
            &[
                "attack",
                "k",
                "server clipping",
                "rounds with an attacker",
                "rounds with diverged training",
                "pooled AUC",
                "mean per-tenant AUC",
                "backdoor success"
            ],
            &table_rows
        ),
        setup_text(setup, KEY, &pop_cfg, &base, t0.elapsed().as_secs_f64()),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome { rows, csv, png })
}
