//! The generator's calibration bands (issue 23), on seeds 1, 2 and 3:
//!
//! - at least 15 % of human sessions run a browser more than a year out of
//!   date (`ua_stale_browser`);
//! - the centralised non-private model of the experiments (MLP 51 → 8 → 1,
//!   Adam, the settings of `fedsec-experiments`' centralised baseline) on a
//!   40-tenant population of the experiments' full-mode sizes reaches a mean
//!   per-tenant held-out ROC-AUC in [0.85, 0.93];
//! - its recall at 1 % false-positive rate (threshold from the held-out
//!   humans and good bots) on advanced scrapers and on click fraud is in
//!   [0.2, 0.8]: hard, not hopeless (the threshold is set by people who
//!   fail a login and give up, which is printed: the negatives at or above
//!   it, and with `BANDS_DEBUG=1` their standardised features);
//! - no single feature separates an abusive archetype from people with
//!   ROC-AUC above 0.97, except where the real world does too
//!   ([`SINGLE_SIGNAL_ARCHETYPES`], each with its source);
//! - the bot agents are not drawn only from the list the `ua_known_bot`
//!   feature classifies with.
//!
//! `cargo nextest run -p fedsec-detector --test generator_bands
//! --no-capture` prints every number the bands are checked on.
#![allow(clippy::unwrap_used)]

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::{FEATURE_NAMES, NUM_FEATURES, idx};
use fedsec_detector::metrics;
use fedsec_detector::model::Scorer;
use fedsec_detector::synth::{self, Archetype, SynthConfig};
use fedsec_detector::train::{Optimizer, TrainConfig, apply_delta, train_local};
use fedsec_model::ModelSpec;

/// Abusive archetypes that one feature separates from people in the real
/// world too (the band does not apply to them), and why (OWASP Automated
/// Threats to Web Applications handbook,
/// <https://owasp.org/www-project-automated-threats-to-web-applications/>,
/// which lists each threat's symptoms):
///
/// - brute force (OAT-007, credential cracking): "a high number of failed
///   login attempts" (the handbook's symptom), here against one account —
///   the best single feature is the share of POSTs;
/// - card testing (OAT-001, carding): payment attempts after payment
///   attempts, most declined;
/// - vulnerability scanning (OAT-014): requests for paths that do not exist
///   (4xx-heavy sessions);
/// - scalping (OAT-005): the same product requested over and over until it
///   can be bought (a low share of distinct paths);
/// - simple scrapers (OAT-011, scraping): enumerating ids and pages hits
///   items that do not exist (404s) and loads no assets (Tan & Kumar 2002,
///   "Discovery of web robot sessions based on their navigational
///   patterns").
///
/// Credential stuffing is *not* exempt: a low-and-slow stuffer's session is
/// one or two failed logins, as a person's with a typo can be (measured
/// 0.94–0.95 for its best feature).
const SINGLE_SIGNAL_ARCHETYPES: [Archetype; 5] = [
    Archetype::BruteForcer,
    Archetype::CardTester,
    Archetype::VulnScanner,
    Archetype::Scalper,
    Archetype::SimpleScraper,
];

const SEEDS: [u64; 3] = [1, 2, 3];
const HOLDOUT_FRACTION: f64 = 0.3;
const REPORT_FPR: f64 = 0.01;

/// The experiments' full-mode population, 40 tenants instead of 300.
fn population(seed: u64) -> SynthConfig {
    SynthConfig {
        tenants: 40,
        seed,
        median_sessions: 160.0,
        sessions_sigma: 0.6,
        min_sessions: 60,
        max_sessions: 2000,
        days: 2,
        ..SynthConfig::default()
    }
}

/// The experiments' per-tenant split seed (`fedsec-experiments` `data.rs`).
fn split_seed(seed: u64, index: usize) -> u64 {
    seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index as u64 + 1))
}

/// What one seed measured.
#[derive(Debug)]
struct SeedBands {
    seed: u64,
    human_stale_share: f64,
    mean_tenant_auc: f64,
    recall_advanced: f64,
    recall_click_fraud: f64,
    /// Held-out sessions the two recalls are over (advanced, click fraud).
    recall_over: (usize, usize),
    /// Per abusive archetype: the feature separating it best from people
    /// and its ROC-AUC (max(AUC, 1 − AUC)).
    best_single: Vec<(Archetype, &'static str, f64)>,
    /// Share of good-bot sessions whose agent the vendored list knows.
    good_bot_listed_share: f64,
}

fn column(data: &Dataset, j: usize) -> impl Iterator<Item = f32> + '_ {
    data.features().chunks(NUM_FEATURES).map(move |r| r[j])
}

fn measure(seed: u64) -> SeedBands {
    let cfg = population(seed);
    let mut train = Dataset::new(NUM_FEATURES);
    let mut all = Dataset::new(NUM_FEATURES);
    let mut holds = Vec::new();
    for i in 0..cfg.tenants {
        let ls = synth::generate_tenant(&cfg, i)
            .unwrap()
            .labelled_sessions()
            .unwrap();
        assert!(ls.report.is_exact(), "seed {seed} tenant {i}");
        let (tr, ho) = ls.dataset.split(HOLDOUT_FRACTION, split_seed(seed, i));
        train.extend_from(&tr).unwrap();
        all.extend_from(&ls.dataset).unwrap();
        holds.push(ho);
    }
    let tag_is = |t: u32, a: &[Archetype]| Archetype::from_id(t).is_some_and(|x| a.contains(&x));

    // Stale agents among people.
    let humans: Vec<usize> = (0..all.len())
        .filter(|&i| tag_is(all.tags()[i], &Archetype::HUMANS))
        .collect();
    let stale = column(&all, idx::UA_STALE_BROWSER).collect::<Vec<_>>();
    let human_stale_share =
        humans.iter().filter(|&&i| stale[i] > 0.5).count() as f64 / humans.len() as f64;

    // Good bots whose agent is in the vendored list.
    let known = column(&all, idx::UA_KNOWN_BOT).collect::<Vec<_>>();
    let good: Vec<usize> = (0..all.len())
        .filter(|&i| tag_is(all.tags()[i], &Archetype::GOOD_BOTS))
        .collect();
    let good_bot_listed_share =
        good.iter().filter(|&&i| known[i] > 0.5).count() as f64 / good.len().max(1) as f64;

    // The experiments' centralised baseline.
    let spec = ModelSpec::mlp(NUM_FEATURES as u32, [8]);
    let tc = TrainConfig {
        epochs: 10,
        batch_size: 128,
        learning_rate: 0.003,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        class_weighting: true,
        max_steps: 0,
    };
    let w0 = spec.init_weights(seed);
    let out = train_local(&spec, &w0, &train, &tc, seed).unwrap();
    let w = apply_delta(&w0, &out.delta);
    let scorer = Scorer::new(&spec, &w).unwrap();
    let mut aucs = Vec::new();
    let (mut pooled_s, mut pooled_tags) = (Vec::new(), Vec::new());
    for ho in &holds {
        let s = scorer.probabilities(ho.features()).unwrap();
        let y: Vec<bool> = (0..ho.len()).map(|i| ho.is_bot(i)).collect();
        if let Ok(a) = metrics::roc_auc(&s, &y) {
            aucs.push(a);
        }
        pooled_s.extend(s);
        pooled_tags.extend_from_slice(ho.tags());
    }
    let mean_tenant_auc = aucs.iter().sum::<f64>() / aucs.len() as f64;
    // Threshold flagging 1 % of the held-out negatives (people and good
    // bots), as the experiments' archetype recall.
    let mut neg: Vec<f32> = pooled_s
        .iter()
        .zip(&pooled_tags)
        .filter(|(_, t)| !Archetype::from_id(**t).is_some_and(|a| a.class().is_abuse()))
        .map(|(s, _)| *s)
        .collect();
    neg.sort_by(|a, b| b.total_cmp(a));
    let t = neg[((neg.len() as f64 * REPORT_FPR).floor() as usize).min(neg.len() - 1)];
    // Which negatives sit above the threshold (what sets it).
    let mut above: std::collections::BTreeMap<String, usize> = Default::default();
    for (s, tag) in pooled_s.iter().zip(&pooled_tags) {
        let a = Archetype::from_id(*tag);
        if *s >= t && !a.is_some_and(|a| a.class().is_abuse()) {
            *above
                .entry(a.map_or("?".into(), |a| a.to_string()))
                .or_default() += 1;
        }
    }
    println!("seed {seed}: threshold {t:.4}, negatives at or above it {above:?}");
    if std::env::var_os("BANDS_DEBUG").is_some() {
        let feats: Vec<f32> = holds.iter().flat_map(|h| h.features().to_vec()).collect();
        let mut top: Vec<usize> = (0..pooled_s.len())
            .filter(|&i| {
                pooled_s[i] >= t
                    && !Archetype::from_id(pooled_tags[i]).is_some_and(|a| a.class().is_abuse())
            })
            .collect();
        top.truncate(8);
        for i in top {
            let r = &feats[i * NUM_FEATURES..(i + 1) * NUM_FEATURES];
            let shown: Vec<String> = FEATURE_NAMES
                .iter()
                .zip(r)
                .filter(|(_, v)| v.abs() > 0.8)
                .map(|(n, v)| format!("{n}={v:.1}"))
                .collect();
            println!("  top negative p={:.3}: {}", pooled_s[i], shown.join(" "));
        }
    }
    let recall = |a: Archetype| {
        let of: Vec<f32> = pooled_s
            .iter()
            .zip(&pooled_tags)
            .filter(|(_, tag)| **tag == a.id())
            .map(|(s, _)| *s)
            .collect();
        (
            of.iter().filter(|&&s| s > t).count() as f64 / of.len().max(1) as f64,
            of.len(),
        )
    };
    let (recall_advanced, n_advanced) = recall(Archetype::AdvancedScraper);
    let (recall_click_fraud, n_click) = recall(Archetype::ClickFraud);

    // Best single feature per abusive archetype against people.
    let mut best_single = Vec::new();
    for a in Archetype::BOTS.iter().filter(|a| a.class().is_abuse()) {
        let rows: Vec<usize> = (0..all.len())
            .filter(|&i| all.tags()[i] == a.id() || humans.binary_search(&i).is_ok())
            .collect();
        let y: Vec<bool> = rows.iter().map(|&i| all.tags()[i] == a.id()).collect();
        let mut best = ("", 0.5);
        for (j, name) in FEATURE_NAMES.iter().enumerate() {
            let x: Vec<f32> = rows
                .iter()
                .map(|&i| {
                    let v = all.row(i)[j];
                    if v.is_nan() { f32::MIN } else { v }
                })
                .collect();
            if let Ok(auc) = metrics::roc_auc(&x, &y) {
                let sep = auc.max(1.0 - auc);
                if sep > best.1 {
                    best = (name, sep);
                }
            }
        }
        best_single.push((*a, best.0, best.1));
    }
    SeedBands {
        seed,
        human_stale_share,
        mean_tenant_auc,
        recall_advanced,
        recall_click_fraud,
        recall_over: (n_advanced, n_click),
        best_single,
        good_bot_listed_share,
    }
}

fn measure_all() -> Vec<SeedBands> {
    let results: Vec<SeedBands> = std::thread::scope(|s| {
        let hs: Vec<_> = SEEDS
            .iter()
            .map(|&seed| s.spawn(move || measure(seed)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        println!(
            "seed {}: human stale-UA share {:.3}, central mean per-tenant AUC {:.4}, \
             recall at 1 % FPR advanced scrapers {:.3} (of {}), click fraud {:.3} (of {}), \
             good bots with a listed agent {:.3}",
            r.seed,
            r.human_stale_share,
            r.mean_tenant_auc,
            r.recall_advanced,
            r.recall_over.0,
            r.recall_click_fraud,
            r.recall_over.1,
            r.good_bot_listed_share
        );
        for (a, f, auc) in &r.best_single {
            println!("  {a}: best single feature {f} (AUC {auc:.4})");
        }
    }
    results
}

/// The bands the generator meets on seeds 1–3 (asserted in CI).
#[test]
fn generator_bands_hold_on_three_seeds() {
    let mut failures = Vec::new();
    for r in &measure_all() {
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("seed {}: {what}", r.seed));
            }
        };
        check(
            r.human_stale_share >= 0.15,
            format!("human stale-UA share {:.3} < 0.15", r.human_stale_share),
        );
        check(
            (0.85..=0.93).contains(&r.mean_tenant_auc),
            format!(
                "mean per-tenant AUC {:.4} outside [0.85, 0.93]",
                r.mean_tenant_auc
            ),
        );
        check(
            r.good_bot_listed_share < 0.95 && r.good_bot_listed_share > 0.3,
            format!(
                "good bots with a listed agent {:.3}: the generator draws (almost) only from \
                 the classifier's list",
                r.good_bot_listed_share
            ),
        );
        for (what, v) in [
            ("advanced-scraper", r.recall_advanced),
            ("click-fraud", r.recall_click_fraud),
        ] {
            check(
                (0.2..=0.8).contains(&v),
                format!("{what} recall at 1 % FPR {v:.3} outside [0.2, 0.8]"),
            );
        }
        for (a, f, auc) in &r.best_single {
            if !SINGLE_SIGNAL_ARCHETYPES.contains(a) {
                check(
                    *auc <= 0.97,
                    format!("{a} separated from people by {f} alone (AUC {auc:.4} > 0.97)"),
                );
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
