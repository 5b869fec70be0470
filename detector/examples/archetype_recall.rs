//! Calibration report of the synthetic generator: trains the MLP centrally
//! on 20 generated tenants and prints held-out ROC-AUC, PR-AUC, recall at
//! 1 % FPR and the per-archetype table.
//!
//! ```sh
//! cargo run --release --example archetype_recall -p fedsec-detector -- [--seed S] [--format clf|json|mixed] [--tenants K] [--alpha A]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use fedsec_detector::dataset::Dataset;
use fedsec_detector::dataset::TrafficClass;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::metrics;
use fedsec_detector::model::Scorer;
use fedsec_detector::synth::{self, Archetype, SynthConfig};
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

fn main() {
    let cfg = SynthConfig {
        tenants: arg("--tenants", 20),
        seed: arg("--seed", 1),
        alpha: arg("--alpha", 1.0),
        format: arg("--format", synth::SynthFormat::Clf),
        ..SynthConfig::default()
    };
    let t0 = Instant::now();
    let mut all = Dataset::new(NUM_FEATURES);
    let mut lines = 0usize;
    for i in 0..cfg.tenants {
        let t = synth::generate_tenant(&cfg, i).unwrap();
        let ls = t.labelled_sessions().unwrap();
        assert!(ls.report.is_exact(), "tenant {i}: {:?}", ls.report);
        lines += t.summary.lines;
        all.extend_from(&ls.dataset).unwrap();
    }
    let gen_s = t0.elapsed().as_secs_f64();
    let (train, hold) = all.split(0.3, cfg.seed);
    let spec = ModelSpec::mlp(NUM_FEATURES as u32, [32, 16]);
    let tc = TrainConfig {
        epochs: 12,
        batch_size: 128,
        learning_rate: 0.003,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        class_weighting: true,
        max_steps: 0,
    };
    let w0 = spec.init_weights(cfg.seed);
    let t1 = Instant::now();
    let out = train_local(&spec, &w0, &train, &tc, cfg.seed).unwrap();
    let train_s = t1.elapsed().as_secs_f64();
    let w: Vec<f32> = w0.iter().zip(&out.delta).map(|(a, d)| a + d).collect();
    let scores = Scorer::new(&spec, &w)
        .unwrap()
        .probabilities(hold.features())
        .unwrap();
    let labels: Vec<bool> = (0..hold.len()).map(|i| hold.is_bot(i)).collect();
    let sm = metrics::summary(&scores, &labels).unwrap();
    let classes: Vec<TrafficClass> = hold
        .tags()
        .iter()
        .map(|&t| Archetype::from_id(t).map_or(TrafficClass::Human, Archetype::class))
        .collect();
    let cr = metrics::class_report(&scores, &classes).unwrap();
    // Threshold at 1 % FPR on the holdout negatives (humans and good bots).
    let mut human_scores: Vec<f32> = (0..hold.len())
        .filter(|&i| !labels[i])
        .map(|i| scores[i])
        .collect();
    human_scores.sort_by(|a, b| b.total_cmp(a));
    let t1pct = human_scores[(human_scores.len() as f64 * 0.01).floor() as usize];
    println!(
        "config: tenants={} seed={} alpha={} format={:?}; {} sessions ({} lines) generated and joined in {gen_s:.1} s",
        cfg.tenants,
        cfg.seed,
        cfg.alpha,
        cfg.format,
        all.len(),
        lines
    );
    println!(
        "model: {spec}, {} train / {} holdout sessions, {} steps in {train_s:.1} s, loss {:.4} -> {:.4}",
        train.len(),
        hold.len(),
        out.steps,
        out.loss_before,
        out.loss_after
    );
    println!(
        "holdout: ROC-AUC {:.4}  PR-AUC {:.4}  recall@1%FPR {:.4}  (threshold 0.5: recall {:.3}, FPR {:.3})",
        sm.roc_auc,
        sm.pr_auc,
        sm.recall_at_1pct_fpr,
        sm.at_half.recall(),
        sm.at_half.fpr()
    );
    println!(
        "classes at 1% human FPR: abuse recall {:.3}, good bots flagged {:.3}; AUC abuse vs human {:.4}, abuse vs good bot {:.4}",
        cr.abuse_recall, cr.good_bot_flag_rate, cr.abuse_vs_human_auc, cr.abuse_vs_good_bot_auc
    );
    println!();
    println!(
        "| archetype | class | holdout sessions | flagged at 0.5 | flagged at 1% FPR threshold | mean score |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for a in Archetype::ALL {
        let idx: Vec<usize> = (0..hold.len())
            .filter(|&i| hold.tags()[i] == a.id())
            .collect();
        if idx.is_empty() {
            continue;
        }
        let n = idx.len() as f64;
        let half = idx.iter().filter(|&&i| scores[i] >= 0.5).count() as f64 / n;
        let strict = idx.iter().filter(|&&i| scores[i] > t1pct).count() as f64 / n;
        let mean = idx.iter().map(|&i| f64::from(scores[i])).sum::<f64>() / n;
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} |",
            a.name(),
            a.class().name(),
            idx.len(),
            half,
            strict,
            mean
        );
    }
}
