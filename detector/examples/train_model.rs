//! Trains a model centrally on a directory written by `fedsec-client synth`
//! (every `tenant-NNN.log` joined with its labels) and saves it as a model
//! file for `fedsec-client score`.
//!
//! ```sh
//! cargo run --release --example train_model -p fedsec-detector -- --data DIR --out model.safetensors [--kind mlp|logistic] [--epochs E] [--seed S]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::logs::{LogFormat, ReaderConfig};
use fedsec_detector::metrics;
use fedsec_detector::model::{ModelFile, Scorer};
use fedsec_detector::network::{CrawlerRangesFile, Enrichment};
use fedsec_detector::session::SessionConfig;
use fedsec_detector::synth::{join_labels_with, read_labels, tenant_file_names};
use fedsec_detector::train::{Optimizer, TrainConfig, apply_delta, train_local};
use fedsec_model::ModelSpec;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn main() {
    let data = PathBuf::from(arg("--data").expect("--data DIR"));
    let out = PathBuf::from(arg("--out").expect("--out FILE"));
    let seed: u64 = arg("--seed").and_then(|s| s.parse().ok()).unwrap_or(1);
    let epochs: u32 = arg("--epochs").and_then(|s| s.parse().ok()).unwrap_or(12);
    let spec = match arg("--kind").as_deref() {
        Some("logistic") => ModelSpec::logistic(NUM_FEATURES as u32),
        _ => ModelSpec::mlp(NUM_FEATURES as u32, [32, 16]),
    };
    // The directory's network files, as a tenant would configure them.
    let asn_db = data.join(fedsec_detector::synth::ASN_DB_FILE);
    let crawlers: Vec<CrawlerRangesFile> = ["googlebot.json", "bingbot.json"]
        .iter()
        .map(|f| data.join("crawler-ranges").join(f))
        .filter(|f| f.exists())
        .map(|file| CrawlerRangesFile {
            file,
            user_agent: None,
        })
        .collect();
    let enrichment = std::sync::Arc::new(
        Enrichment::load(asn_db.exists().then_some(asn_db.as_path()), &crawlers).unwrap(),
    );
    let mut all = Dataset::new(NUM_FEATURES);
    for i in 0.. {
        let (log, labels) = tenant_file_names(i);
        let (log, labels) = (data.join(log), data.join(labels));
        if !log.exists() {
            break;
        }
        let labels = read_labels(std::io::BufReader::new(
            std::fs::File::open(labels).unwrap(),
        ))
        .unwrap();
        let file = std::io::BufReader::new(std::fs::File::open(&log).unwrap());
        let ls = join_labels_with(
            file,
            ReaderConfig::with_format(LogFormat::Auto),
            SessionConfig::default(),
            enrichment.clone(),
            &labels,
        )
        .unwrap();
        all.extend_from(&ls.dataset).unwrap();
    }
    assert!(
        !all.is_empty(),
        "no tenant-NNN.log files in {}",
        data.display()
    );
    let (train, hold) = all.split(0.2, seed);
    let tc = TrainConfig {
        epochs,
        batch_size: 128,
        learning_rate: 0.003,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        class_weighting: true,
        max_steps: 0,
    };
    let w0 = spec.init_weights(seed);
    let outcome = train_local(&spec, &w0, &train, &tc, seed).unwrap();
    let w = apply_delta(&w0, &outcome.delta);
    let s = Scorer::new(&spec, &w)
        .unwrap()
        .probabilities(hold.features())
        .unwrap();
    let y: Vec<bool> = (0..hold.len()).map(|i| hold.is_bot(i)).collect();
    let auc = metrics::roc_auc(&s, &y).unwrap();
    let note = format!(
        "trained centrally on {} ({} sessions), holdout ROC-AUC {auc:.4}",
        data.display(),
        train.len()
    );
    ModelFile::new(spec.clone(), w, note.clone())
        .unwrap()
        .save(&out)
        .unwrap();
    println!("{spec}: {note}; saved {}", out.display());
}
