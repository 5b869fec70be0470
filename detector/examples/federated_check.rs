//! Federated-relevant properties of the synthetic tenants:
//!
//! 1. non-IID across tenant kinds: an MLP trained on one kind's tenants,
//!    scored on every kind (ROC-AUC matrix);
//! 2. pooling helps small tenants: the smallest tenant's own model versus the
//!    model trained on all tenants, both scored on that tenant's holdout and
//!    on the pooled holdout.
//!
//! ```sh
//! cargo run --release --example federated_check -p fedsec-detector -- [--seed S] [--format clf|json|mixed]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::metrics;
use fedsec_detector::model::Scorer;
use fedsec_detector::synth::{self, SynthConfig, TenantKind};
use fedsec_detector::train::{Optimizer, TrainConfig, train_local};
use fedsec_model::ModelSpec;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn train(data: &Dataset, seed: u64) -> (ModelSpec, Vec<f32>) {
    let spec = ModelSpec::mlp(NUM_FEATURES as u32, [32, 16]);
    // Same number of optimiser steps' worth of epochs regardless of size.
    let epochs = ((30_000.0 / data.len() as f64).ceil() as u32).clamp(12, 400);
    let tc = TrainConfig {
        epochs,
        batch_size: 128,
        learning_rate: 0.003,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        class_weighting: true,
        max_steps: 3_000,
    };
    let w0 = spec.init_weights(seed);
    let out = train_local(&spec, &w0, data, &tc, seed).unwrap();
    let w = w0.iter().zip(&out.delta).map(|(a, d)| a + d).collect();
    (spec, w)
}

fn auc(spec: &ModelSpec, w: &[f32], data: &Dataset) -> f64 {
    let s = Scorer::new(spec, w)
        .unwrap()
        .probabilities(data.features())
        .unwrap();
    let y: Vec<bool> = (0..data.len()).map(|i| data.is_bot(i)).collect();
    metrics::roc_auc(&s, &y).unwrap_or(f64::NAN)
}

fn main() {
    let cfg = SynthConfig {
        tenants: 20,
        seed: arg("--seed", 1),
        format: arg("--format", synth::SynthFormat::Clf),
        ..SynthConfig::default()
    };
    let mut trains = Vec::new();
    let mut holds = Vec::new();
    for i in 0..cfg.tenants {
        let t = synth::generate_tenant(&cfg, i).unwrap();
        let (tr, ho) = t.labelled_sessions().unwrap().dataset.split(0.3, cfg.seed);
        trains.push(tr);
        holds.push(ho);
    }
    let pool = |idx: &[usize], parts: &[Dataset]| {
        let mut d = Dataset::new(NUM_FEATURES);
        for &i in idx {
            d.extend_from(&parts[i]).unwrap();
        }
        d
    };
    let all: Vec<usize> = (0..cfg.tenants).collect();
    let (all_train, all_hold) = (pool(&all, &trains), pool(&all, &holds));

    println!("## Non-IID: train on one tenant kind, ROC-AUC on each kind's holdout\n");
    println!("| trained on \\ scored on | ecommerce | bank | saas | api |");
    println!("|---|---:|---:|---:|---:|");
    let kind_idx = |k: usize| -> Vec<usize> { (0..cfg.tenants).filter(|i| i % 4 == k).collect() };
    for (k, kind) in TenantKind::ALL.iter().enumerate() {
        let (spec, w) = train(&pool(&kind_idx(k), &trains), cfg.seed);
        let row: Vec<String> = (0..4)
            .map(|j| format!("{:.3}", auc(&spec, &w, &pool(&kind_idx(j), &holds))))
            .collect();
        println!("| {} | {} |", kind.name(), row.join(" | "));
    }

    let smallest = (0..cfg.tenants)
        .min_by_key(|&i| trains[i].len() + holds[i].len())
        .unwrap();
    let p = synth::tenant_profile(&cfg, smallest);
    let (spec, w_small) = train(&trains[smallest], cfg.seed);
    let (_, w_all) = train(&all_train, cfg.seed);
    println!(
        "\n## Pooling helps a small tenant\n\nsmallest tenant: {} ({}, {} sessions, bot share {:.2})\n",
        p.name,
        p.kind.name(),
        trains[smallest].len() + holds[smallest].len(),
        p.bot_share
    );
    println!("| model | AUC on the small tenant's holdout | AUC on the pooled holdout |");
    println!("|---|---:|---:|");
    println!(
        "| trained on the small tenant alone | {:.4} | {:.4} |",
        auc(&spec, &w_small, &holds[smallest]),
        auc(&spec, &w_small, &all_hold)
    );
    println!(
        "| trained on all 20 tenants | {:.4} | {:.4} |",
        auc(&spec, &w_all, &holds[smallest]),
        auc(&spec, &w_all, &all_hold)
    );
}
