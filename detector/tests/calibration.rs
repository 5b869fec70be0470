//! Calibration of the synthetic tenants (the acceptance check of the
//! generator): a centrally trained MLP on 20 default tenants reaches a
//! held-out ROC-AUC in [0.85, 0.98]; simple bots are nearly always caught
//! while advanced bots stay hard; and a model trained on all tenants beats a
//! model trained on the smallest tenant alone (what federation is for).
//! `cargo run --release --example archetype_recall -p fedsec-detector` prints
//! the full table.
#![allow(clippy::unwrap_used)]

use fedsec_detector::dataset::Dataset;
use fedsec_detector::dataset::TrafficClass;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::metrics;
use fedsec_detector::model::Scorer;
use fedsec_detector::synth::{self, Archetype, SynthConfig};
use fedsec_detector::train::{Optimizer, TrainConfig, apply_delta, train_local};
use fedsec_model::ModelSpec;

fn fit(data: &Dataset, epochs: u32, max_steps: u32) -> (ModelSpec, Vec<f32>, f64, f64) {
    let spec = ModelSpec::mlp(NUM_FEATURES as u32, [32, 16]);
    let tc = TrainConfig {
        epochs,
        batch_size: 128,
        learning_rate: 0.003,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        class_weighting: true,
        max_steps,
    };
    let w0 = spec.init_weights(1);
    let out = train_local(&spec, &w0, data, &tc, 1).unwrap();
    (
        spec,
        apply_delta(&w0, &out.delta),
        out.loss_before,
        out.loss_after,
    )
}

fn scores(spec: &ModelSpec, w: &[f32], data: &Dataset) -> (Vec<f32>, Vec<bool>) {
    let s = Scorer::new(spec, w)
        .unwrap()
        .probabilities(data.features())
        .unwrap();
    (s, (0..data.len()).map(|i| data.is_bot(i)).collect())
}

#[test]
fn central_mlp_on_20_tenants_lands_in_the_calibrated_band() {
    let cfg = SynthConfig::default();
    assert_eq!(cfg.tenants, 20);
    let mut trains = Vec::new();
    let mut holds = Vec::new();
    let (mut all_train, mut all_hold) = (Dataset::new(NUM_FEATURES), Dataset::new(NUM_FEATURES));
    for i in 0..cfg.tenants {
        let ls = synth::generate_tenant(&cfg, i)
            .unwrap()
            .labelled_sessions()
            .unwrap();
        assert!(ls.report.is_exact(), "tenant {i}: {:?}", ls.report);
        let (tr, ho) = ls.dataset.split(0.3, cfg.seed);
        all_train.extend_from(&tr).unwrap();
        all_hold.extend_from(&ho).unwrap();
        trains.push(tr);
        holds.push(ho);
    }
    let (spec, w, before, after) = fit(&all_train, 12, 0);
    assert!(after < 0.5 * before, "loss {before} -> {after}");
    let (s, y) = scores(&spec, &w, &all_hold);
    let auc = metrics::roc_auc(&s, &y).unwrap();
    println!("held-out ROC-AUC {auc:.4} on {} sessions", y.len());
    // The issue-23 band (0.85–0.93) is on the experiments' smaller model's
    // mean per-tenant AUC (tests/generator_bands.rs); this larger MLP on 20
    // large tenants, pooled, measured 0.972 on the issue-23 generator.
    assert!(
        (0.85..=0.98).contains(&auc),
        "held-out ROC-AUC {auc} outside [0.85, 0.98]"
    );

    // Simple bots nearly always caught, advanced ones hard (at threshold 0.5).
    let recall = |a: Archetype| {
        let idx: Vec<usize> = (0..all_hold.len())
            .filter(|&i| all_hold.tags()[i] == a.id())
            .collect();
        idx.iter().filter(|&&i| s[i] >= 0.5).count() as f64 / idx.len().max(1) as f64
    };
    for a in [
        Archetype::SimpleScraper,
        Archetype::BruteForcer,
        Archetype::VulnScanner,
    ] {
        assert!(recall(a) > 0.97, "{a}: {}", recall(a));
    }
    // Good bots are not abuse: the score leaves them alone.
    for a in [Archetype::BenignCrawler, Archetype::UptimeMonitor] {
        assert!(recall(a) < 0.05, "{a} flagged as abuse: {}", recall(a));
    }
    let classes: Vec<TrafficClass> = all_hold
        .tags()
        .iter()
        .map(|&t| Archetype::from_id(t).map_or(TrafficClass::Human, Archetype::class))
        .collect();
    let report = metrics::class_report(&s, &classes).unwrap();
    println!("{report:?}");
    assert!(report.good_bot_flag_rate < 0.05, "{report:?}");
    assert!(report.abuse_vs_good_bot_auc > 0.9, "{report:?}");
    assert!(
        recall(Archetype::AdvancedScraper) < 0.8,
        "advanced: {}",
        recall(Archetype::AdvancedScraper)
    );

    // Pooling beats the smallest tenant alone, on that tenant's own holdout.
    let small = (0..cfg.tenants).min_by_key(|&i| trains[i].len()).unwrap();
    let (spec_s, w_s, _, _) = fit(&trains[small], 400, 3_000);
    let (s_small, y_small) = scores(&spec_s, &w_s, &holds[small]);
    let (s_all, _) = scores(&spec, &w, &holds[small]);
    let alone = metrics::roc_auc(&s_small, &y_small).unwrap();
    let pooled = metrics::roc_auc(&s_all, &y_small).unwrap();
    println!("smallest tenant {small}: alone {alone:.4}, all tenants {pooled:.4}");
    assert!(pooled > alone, "pooled {pooled} <= alone {alone}");
}
