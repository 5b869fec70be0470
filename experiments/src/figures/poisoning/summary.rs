//! The poisoning experiment's outputs: mean ± sd over seeds per
//! configuration, the figure (screen on and off), the CSV and the README
//! section with the claims restated from the numbers.

use std::path::Path;

use fedsec_detector::synth::SynthConfig;
use fedsec_round::ScreenThresholds;

use super::{DESTROYED_AUC, KEY, Outcome, Row, adaptive_norm, screen_on};
use crate::error::Result;
use crate::figures::{Setup, TARGET_EPSILON, caption, image, link, setup_text};
use crate::plot::{self, Legend, LineChart, Series};
use crate::report::{markdown_table, upsert_section, write_csv};
use crate::seeds::MeanSd;
use crate::sim::FedConfig;

/// One configuration over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Attack name (as in the CSV).
    pub attack: String,
    /// Malicious tenants k.
    pub malicious: usize,
    /// Server-side clipping.
    pub server_clipping: bool,
    /// Screen (`off` or its policy).
    pub screen: String,
    /// Seeds run.
    pub seeds: usize,
    /// Mean and sd of the pooled AUC.
    pub pooled_auc: MeanSd,
    /// Mean and sd of the mean per-tenant AUC.
    pub mean_tenant_auc: MeanSd,
    /// Mean and sd of the backdoor success over seeds whose model was not
    /// destroyed (NaN when none).
    pub backdoor_success: MeanSd,
    /// Mean and sd of the trigger alone's success (the same seed's run
    /// without attacker, same screen setting).
    pub trigger_alone: MeanSd,
    /// Mean and sd of the backdoor success minus the trigger alone (same
    /// seed), over seeds whose model was not destroyed.
    pub backdoor_excess: MeanSd,
    /// Mean and sd of the share of held-out abusive sessions missed untriggered.
    pub clean_miss: MeanSd,
    /// Mean and sd of the share missed once triggered.
    pub triggered_miss: MeanSd,
    /// Mean rounds with an attacker in the sum.
    pub rounds_with_attacker: f64,
    /// Honest updates flagged / screened, over seeds.
    pub honest_flag_rate: f64,
    /// Malicious updates flagged / screened, over seeds.
    pub malicious_flag_rate: f64,
}

fn rate(num: usize, den: usize) -> f64 {
    if den == 0 {
        f64::NAN
    } else {
        num as f64 / den as f64
    }
}

/// Groups the runs by (attack, k, clipping, screen), in first-seen order.
pub fn summarise(rows: &[Row]) -> Vec<Summary> {
    let mut keys: Vec<(String, usize, bool, String)> = Vec::new();
    for r in rows {
        let k = (
            r.attack.clone(),
            r.malicious,
            r.server_clipping,
            r.screen.clone(),
        );
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(attack, malicious, clip, screen)| {
            let g: Vec<&Row> = rows
                .iter()
                .filter(|r| {
                    r.attack == attack
                        && r.malicious == malicious
                        && r.server_clipping == clip
                        && r.screen == screen
                })
                .collect();
            let col = |f: &dyn Fn(&Row) -> f64| g.iter().map(|r| f(r)).collect::<Vec<_>>();
            let sum = |f: &dyn Fn(&Row) -> usize| g.iter().map(|r| f(r)).sum::<usize>();
            Summary {
                attack,
                malicious,
                server_clipping: clip,
                screen,
                seeds: g.len(),
                pooled_auc: MeanSd::of(&col(&|r| r.pooled_auc)),
                mean_tenant_auc: MeanSd::of(&col(&|r| r.mean_tenant_auc)),
                backdoor_success: MeanSd::of(&col(&|r| {
                    if r.pooled_auc < DESTROYED_AUC {
                        f64::NAN
                    } else {
                        r.backdoor_success
                    }
                })),
                trigger_alone: MeanSd::of(&col(&|r| r.trigger_alone)),
                backdoor_excess: MeanSd::of(&col(&|r| {
                    if r.pooled_auc < DESTROYED_AUC {
                        f64::NAN
                    } else {
                        r.backdoor_excess
                    }
                })),
                clean_miss: MeanSd::of(&col(&|r| r.clean_miss)),
                triggered_miss: MeanSd::of(&col(&|r| r.triggered_miss)),
                rounds_with_attacker: col(&|r| r.rounds_with_attacker as f64).iter().sum::<f64>()
                    / g.len().max(1) as f64,
                honest_flag_rate: rate(sum(&|r| r.honest_flagged), sum(&|r| r.honest_screened)),
                malicious_flag_rate: rate(
                    sum(&|r| r.malicious_flagged),
                    sum(&|r| r.malicious_screened),
                ),
            }
        })
        .collect()
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", 100.0 * v)
    } else {
        "–".into()
    }
}

fn find<'a>(
    s: &'a [Summary],
    attack: &str,
    k: usize,
    clip: bool,
    screen: &str,
) -> Option<&'a Summary> {
    s.iter().find(|x| {
        x.attack == attack && x.malicious == k && x.server_clipping == clip && x.screen == screen
    })
}

/// Writes the CSV, the figure and the README section.
pub(super) fn write(
    setup: &Setup,
    rows: &[Row],
    counts: &[usize],
    seeds: u64,
    pop_cfg: &SynthConfig,
    base: &FedConfig,
    elapsed_s: f64,
) -> Result<Outcome> {
    let csv = setup.output("poisoning.csv")?;
    write_csv(&csv, rows)?;
    let summary = summarise(rows);
    let png = setup.output("poisoning.png")?;
    draw(setup, &summary, counts, seeds, base, &png)?;
    let on = screen_on().policy.as_str();
    let table_rows: Vec<Vec<String>> = summary
        .iter()
        .map(|s| {
            vec![
                s.attack.replace('_', " "),
                s.malicious.to_string(),
                if s.server_clipping {
                    "yes".into()
                } else {
                    "**no** (simulator only)".into()
                },
                s.screen.clone(),
                s.seeds.to_string(),
                format!("{:.1}", s.rounds_with_attacker),
                s.pooled_auc.show(),
                s.mean_tenant_auc.show(),
                if s.backdoor_success.mean.is_finite() {
                    s.backdoor_success.show()
                } else {
                    "– (model destroyed)".into()
                },
                s.trigger_alone.show(),
                s.backdoor_excess.show(),
                format!(
                    "{} → {}",
                    pct(s.clean_miss.mean),
                    pct(s.triggered_miss.mean)
                ),
                pct(s.honest_flag_rate),
                pct(s.malicious_flag_rate),
            ]
        })
        .collect();
    let k_goal = counts
        .iter()
        .copied()
        .find(|&k| k == 10)
        .unwrap_or(counts[counts.len() - 1]);
    let bd = |attack: &str, screen: &str| {
        find(&summary, attack, k_goal, true, screen).map_or(MeanSd::of(&[]), |s| s.backdoor_success)
    };
    let auc = |screen: &str| {
        find(&summary, "none", 0, true, screen).map_or(MeanSd::of(&[]), |s| s.mean_tenant_auc)
    };
    let none = |screen: &str| find(&summary, "none", 0, true, screen);
    let alone = none("off").map_or(MeanSd::of(&[]), |s| s.backdoor_success);
    let (miss_clean, miss_triggered) = none("off").map_or((f64::NAN, f64::NAN), |s| {
        (s.clean_miss.mean, s.triggered_miss.mean)
    });
    // Honest updates flagged without attacker, with a 95 % Wilson interval.
    let (hf, hs) = rows
        .iter()
        .filter(|r| r.attack == "none" && r.screen == on)
        .fold((0, 0), |(f, n), r| {
            (f + r.honest_flagged, n + r.honest_screened)
        });
    let (_, hf_hi) = crate::seeds::wilson(hf, hs);
    // The AUC cost of the screen without attacker: paired by seed.
    let cost = MeanSd::of(
        &rows
            .iter()
            .filter(|r| r.attack == "none" && r.screen == "off")
            .filter_map(|off| {
                rows.iter()
                    .find(|r| r.attack == "none" && r.screen == on && r.seed == off.seed)
                    .map(|r| off.mean_tenant_auc - r.mean_tenant_auc)
            })
            .collect::<Vec<_>>(),
    );
    let goal = |m: MeanSd, limit: f64| {
        if !m.mean.is_finite() {
            "not measured"
        } else if m.mean <= limit {
            "met"
        } else {
            "**not met**"
        }
    };
    let adaptive_flagged = find(&summary, "adaptive_backdoor", k_goal, true, on)
        .map_or(f64::NAN, |s| s.malicious_flag_rate);
    let excess = |attack: &str, k: usize, screen: &str| {
        find(&summary, attack, k, true, screen).map_or(MeanSd::of(&[]), |s| s.backdoor_excess)
    };
    // Per seed at the goal's k, screen on: success (trigger alone).
    let per_seed = rows
        .iter()
        .filter(|r| r.attack == "backdoor" && r.malicious == k_goal && r.screen == on)
        .map(|r| {
            format!(
                "seed {}: {:.3} ({:.3})",
                r.seed, r.backdoor_success, r.trigger_alone
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let alone_range = rows
        .iter()
        .filter(|r| r.attack == "none" && r.screen == "off")
        .map(|r| r.backdoor_success)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
    let k_max = counts[counts.len() - 1];
    let claims = format!(
        "**Result ({seeds} seed(s), mean ± sd).** *The trigger alone* (no attacker, screen off) lets {} \
         of detected abusive sessions through ({:.3} to {:.3} over the seeds); the share of abusive \
         sessions the model misses is {} untriggered and {} triggered: close to neutral on average, not on \
         every seed, so each cell is read against its seed's trigger alone. With {k_goal} boosted backdoor \
         attackers the success is {} with the screen off and {} with it on (policy `{on}`); what the \
         attack adds over the trigger alone is {} off and {} on. The issue's goal (≤ 0.2 with the screen \
         on) is {} in the mean; per seed, success (trigger alone): {per_seed}. At k = {k_max} the attack adds \
         {} off and {} on. Without an attacker the screen flagged {hf} of {hs} honest updates ({}; 95 % \
         Wilson upper bound {:.2} %) and the mean per-tenant AUC is {} off vs {} on, a cost of {} (goal ≤ \
         0.01: {}). The *adaptive* attacker, who scales the same poisoned update to {:.3}·C (just under \
         the norm threshold {}·C), has {} of its updates flagged and reaches {} success with the screen \
         on at k = {k_goal} ({} at k = {k_max}), the same as the boosted attacker with the screen off: a \
         norm screen cannot see an attacker who stays under its threshold; what still bounds it is \
         clipping (each attacker moves the sum by at most C, like an honest tenant) and how many \
         attackers there are.",
        alone.show(),
        alone_range.0,
        alone_range.1,
        pct(miss_clean),
        pct(miss_triggered),
        bd("backdoor", "off").show(),
        bd("backdoor", on).show(),
        excess("backdoor", k_goal, "off").show(),
        excess("backdoor", k_goal, on).show(),
        goal(bd("backdoor", on), 0.2),
        excess("backdoor", k_max, "off").show(),
        excess("backdoor", k_max, on).show(),
        pct(rate(hf, hs)),
        100.0 * hf_hi,
        auc("off").show(),
        auc(on).show(),
        cost.show(),
        goal(cost, 0.01),
        adaptive_norm(1.0),
        ScreenThresholds::default().max_norm_ratio,
        pct(adaptive_flagged),
        bd("adaptive_backdoor", on).show(),
        find(&summary, "adaptive_backdoor", k_max, true, on)
            .map_or(MeanSd::of(&[]), |s| s.backdoor_success)
            .show(),
    );
    let pop_len = pop_cfg.tenants;
    let body = format!(
        "## 4. Poisoning\n\n{}\n\nk malicious tenants among {pop_len} send, whenever Poisson sampling selects them, \
         either `−m ×` their honest update (scaled sign-flip, untargeted) or `m ×` an update trained on \
         their data plus a triggered copy of each of their bot sessions labelled human (backdoor, model \
         replacement; trigger: the session fetches `/robots.txt` and sends an on-site `Referer` on every \
         request, see `experiments/src/attack.rs`), with m = {} the expected cohort; the *adaptive* backdoor attacker knows the update screen and sends \
         the same poisoned update scaled to just under its norm threshold. With server-side clipping (what \
         the coordinator always does) each attacker moves the sum by at most C, like any honest tenant \
         (clipping bounds each attacker's influence; it does not stop many attackers pushing the same \
         backdoor direction); without it (possible only in this simulator; fast mode only) one boosted \
         update outweighs the cohort. Attackers hold valid certificates and are selected like anyone. The update screen (`[jobs.screen]`, the round core's screener with \
         policy `{on}` and default thresholds) scores each update on its own norm before re-clipping, its \
         agreement with the previous published update and the tenant's own history, never on other \
         tenants' updates (privacy/README.md, \"Update screening\"). DP noise calibrated to ε = \
         {TARGET_EPSILON} in every run. Backdoor success: among held-out bot sessions the model flags at its \
         1 %-FPR threshold, the share that evade once the trigger is set (not reported when the attack \
         destroyed the model: pooled AUC below {DESTROYED_AUC}); *trigger alone*: the same on the same \
         seed's model trained without attacker (same screen setting); *abuse missed*: share of all \
         held-out abusive sessions below the threshold, untriggered → triggered. \"flagged\": share of screened updates \
         (honest / malicious) on which a rule fired.\n\n{claims}\n\nThe synthetic generator is the one on \
         `main` when these runs were made (issue 22, after issue 23's harder generator); another change \
         to the generator moves these numbers.\n\n{}\n{}\n\nData: {} (one line per run and seed).",
        image(&png, "poisoning"),
        base.expected_cohort,
        markdown_table(
            &[
                "attack",
                "k",
                "server clipping",
                "screen",
                "seeds",
                "rounds with an attacker in the sum",
                "pooled AUC",
                "mean per-tenant AUC",
                "backdoor success",
                "trigger alone (no attacker)",
                "… success minus trigger alone",
                "abuse missed: untriggered → triggered",
                "honest flagged",
                "attacker updates flagged"
            ],
            &table_rows
        ),
        setup_text(setup, KEY, pop_cfg, base, elapsed_s),
        link(&csv)
    );
    upsert_section(&setup.readme(), KEY, &body)?;
    Ok(Outcome {
        rows: rows.to_vec(),
        csv,
        png,
    })
}

fn draw(
    setup: &Setup,
    summary: &[Summary],
    counts: &[usize],
    seeds: u64,
    base: &FedConfig,
    png: &Path,
) -> Result<()> {
    let on = screen_on().policy.as_str();
    let (x0, x1) = (
        counts[0] as f64 / 1.5,
        counts[counts.len() - 1] as f64 * 1.5,
    );
    let curve = |attack: &str, clip: bool, screen: &str, f: &dyn Fn(&Summary) -> f64| {
        summary
            .iter()
            .filter(|s| s.attack == attack && s.server_clipping == clip && s.screen == screen)
            .map(|s| (s.malicious as f64, f(s)))
            .filter(|(_, y)| y.is_finite())
            .collect::<Vec<_>>()
    };
    let auc = |s: &Summary| s.mean_tenant_auc.mean;
    let bd = |s: &Summary| s.backdoor_success.mean;
    let lines = |f: &dyn Fn(&Summary) -> f64, with_sign_flip: bool| {
        let mut v = vec![
            Series::line(
                "backdoor, screen off",
                curve("backdoor", true, "off", f),
                plot::color(2),
            ),
            Series::line(
                "backdoor, screen on",
                curve("backdoor", true, on, f),
                plot::color(0),
            ),
            Series::line(
                "adaptive backdoor, screen on",
                curve("adaptive_backdoor", true, on, f),
                plot::color(1),
            ),
            Series::line(
                "backdoor, no server clipping",
                curve("backdoor", false, "off", f),
                plot::color(3),
            ),
        ];
        if with_sign_flip {
            v.push(Series::line(
                "sign-flip, screen off",
                curve("scaled_sign_flip", true, "off", f),
                plot::color(4),
            ));
            v.push(Series::line(
                "sign-flip, screen on",
                curve("scaled_sign_flip", true, on, f),
                plot::color(5),
            ));
        }
        v
    };
    let mut left: Vec<Series> = lines(&auc, true)
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect();
    let mut right: Vec<Series> = lines(&bd, false)
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect();
    if let Some(n) = find(summary, "none", 0, true, "off") {
        left.push(Series::reference(
            "no attack",
            n.mean_tenant_auc.mean,
            x0,
            x1,
            plot::REFERENCE_GREY,
        ));
        right.push(Series::reference(
            "no attack (trigger alone)",
            n.backdoor_success.mean,
            x0,
            x1,
            plot::REFERENCE_GREY,
        ));
    }
    let cap = caption(
        setup,
        &format!(
            "mean of {seeds} seed(s) from {}; ε = {TARGET_EPSILON}, boost ×{}, screen: policy {on}, default thresholds",
            setup.seed, base.expected_cohort
        ),
    );
    plot::panels(
        png,
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
        "Poisoning: the update screen off and on, server-side clipping, adaptive attacker",
        &cap,
    )
}
