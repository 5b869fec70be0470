//! End-to-end runs of the detector subcommands of the `fedsec-client`
//! binary: `synth`, `sessions` and `score`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use fedsec_detector::features::{FEATURE_NAMES, NUM_FEATURES};
use fedsec_detector::model::ModelFile;
use fedsec_detector::synth::read_labels;
use fedsec_detector::train::{Optimizer, TrainConfig, apply_delta, train_local};
use fedsec_model::ModelSpec;

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedsec-client"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = client(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn synth(dir: &Path, format: &str) -> serde_json::Value {
    let out = ok(&[
        "synth",
        "--tenants",
        "2",
        "--out",
        dir.to_str().unwrap(),
        "--seed",
        "9",
        "--format",
        format,
        "--median-sessions",
        "250",
        "--days",
        "1",
    ]);
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn synth_then_sessions_reproduces_the_labelled_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let summary = synth(dir.path(), "json");
    assert_eq!(summary["tenants"], 2);
    for name in [
        "tenant-000.log",
        "tenant-000.labels.jsonl",
        "tenant-001.log",
        "manifest.json",
        "asn.tsv",
        "crawler-ranges/googlebot.json",
    ] {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    // Same seed, same files.
    let again = tempfile::tempdir().unwrap();
    synth(again.path(), "json");
    assert_eq!(
        std::fs::read(dir.path().join("tenant-001.log")).unwrap(),
        std::fs::read(again.path().join("tenant-001.log")).unwrap()
    );

    // Append hostile lines: they are counted, reported, and skipped.
    let log = dir.path().join("tenant-000.log");
    let mut text = std::fs::read(&log).unwrap();
    text.extend_from_slice(b"{\"ts\": truncated\n\xff\xfe not utf8\n1.2.3.4 - - [99/Foo/2024:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"\n");
    std::fs::write(&log, &text).unwrap();
    let csv_path = dir.path().join("features.csv");
    let out = ok(&[
        "sessions",
        "--logs",
        log.to_str().unwrap(),
        "--out",
        csv_path.to_str().unwrap(),
    ]);
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let labels = read_labels(
        std::fs::read(dir.path().join("tenant-000.labels.jsonl"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(stats["malformed"], 3);
    // Counted by reason and by client (a line's client when it got that far).
    let by_reason = &stats["malformed_by_reason"];
    assert_eq!(
        (
            by_reason["json"].as_u64(),
            by_reason["invalid_utf8"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(by_reason["bad_field:time"].as_u64(), Some(1));
    let top: Vec<(String, u64)> =
        serde_json::from_value(stats["malformed_top_clients"].clone()).unwrap();
    assert_eq!(top, vec![("-".to_string(), 2), ("1.2.3.4".to_string(), 1)]);
    assert_eq!(stats["sessions"].as_u64().unwrap() as usize, labels.len());
    assert_eq!(
        stats["lines"].as_u64().unwrap() as usize,
        text.iter().filter(|&&b| b == b'\n').count()
    );

    let mut rdr = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header.len(), 3 + NUM_FEATURES);
    assert_eq!(&header[3..], &FEATURE_NAMES.map(String::from)[..]);
    let mut rows = 0;
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let key = &rec[0];
        let label = labels
            .get(key)
            .unwrap_or_else(|| panic!("no label for {key}"));
        assert_eq!(rec[2].parse::<usize>().unwrap(), label.requests);
        for v in rec.iter().skip(3) {
            assert!(v.parse::<f32>().unwrap().is_finite());
        }
        rows += 1;
    }
    assert_eq!(rows, labels.len());
}

#[test]
fn score_prints_the_most_bot_like_sessions_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), "clf");
    // A quick logistic model trained through the library on tenant 0.
    let labels = read_labels(
        std::fs::read(dir.path().join("tenant-000.labels.jsonl"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let log = std::fs::File::open(dir.path().join("tenant-000.log")).unwrap();
    let ls = fedsec_detector::synth::join_labels(
        std::io::BufReader::new(log),
        Default::default(),
        Default::default(),
        &labels,
    )
    .unwrap();
    let spec = ModelSpec::logistic(NUM_FEATURES as u32);
    let w0 = spec.init_weights(1);
    let cfg = TrainConfig {
        epochs: 30,
        batch_size: 32,
        learning_rate: 0.05,
        optimizer: Optimizer::Adam,
        ..TrainConfig::default()
    };
    let out = train_local(&spec, &w0, &ls.dataset, &cfg, 1).unwrap();
    let model = dir.path().join("model.safetensors");
    ModelFile::new(spec, apply_delta(&w0, &out.delta), "test")
        .unwrap()
        .save(&model)
        .unwrap();

    // A real Googlebot (in the published ranges) and a fake one (outside).
    let log1 = dir.path().join("tenant-001.log");
    let mut text = std::fs::read_to_string(&log1).unwrap();
    for (ip, path) in [("66.249.66.7", "/a"), ("203.0.113.66", "/b")] {
        for k in 0..3 {
            text.push_str(&format!(
                "{ip} - - [04/Mar/2024:12:00:0{k} +0000] \"GET {path}{k} HTTP/1.1\" 200 900 \"-\" \"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)\"\n"
            ));
        }
    }
    std::fs::write(&log1, text).unwrap();
    let asn = dir.path().join("asn.tsv");
    let google = dir.path().join("crawler-ranges/googlebot.json");
    let json = ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--logs",
        log1.to_str().unwrap(),
        "--asn-db",
        asn.to_str().unwrap(),
        "--crawler-ranges",
        google.to_str().unwrap(),
        "--top",
        "4",
        "--json",
    ]);
    let all: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (reports, good): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r["list"] == "abuse");
    assert_eq!(reports.len(), 4);
    // Good bots are listed apart; the verified crawler is one, never abuse;
    // the fake Googlebot is not a good bot.
    assert!(good.iter().all(|g| g["list"] == "good_bots"), "{good:?}");
    let verified: Vec<&str> = good
        .iter()
        .filter(|g| g["good_bot"] == "verified_crawler")
        .map(|g| g["ip"].as_str().unwrap())
        .collect();
    assert!(verified.contains(&"66.249.66.7"), "{good:?}");
    assert!(good.iter().all(|g| g["ip"] != "203.0.113.66"), "{good:?}");
    assert!(reports.iter().all(|r| r["ip"] != "66.249.66.7"));
    let probs: Vec<f64> = reports
        .iter()
        .map(|r| r["probability"].as_f64().unwrap())
        .collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?}");
    assert!(probs[0] > 0.9, "{probs:?}");
    for r in &reports {
        let reasons = r["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty() && reasons.len() <= 3, "{r}");
        assert!(
            reasons
                .iter()
                .all(|x| !x["text"].as_str().unwrap().is_empty())
        );
    }
    let text = ok(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--logs",
        log1.to_str().unwrap(),
        "--top",
        "2",
    ]);
    assert!(text.starts_with("#1 "), "{text}");
    assert!(text.contains("      1. "), "{text}");
    assert!(text.contains("Good bots (not abuse):"), "{text}");

    // Clear errors for a missing model and a model of the wrong width.
    let missing = client(&[
        "score",
        "--model",
        "/nonexistent/m",
        "--logs",
        log1.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("model file"));
    let narrow = dir.path().join("narrow.safetensors");
    let spec3 = ModelSpec::logistic(3);
    ModelFile::new(spec3.clone(), spec3.init_weights(0), "")
        .unwrap()
        .save(&narrow)
        .unwrap();
    let wrong = client(&[
        "score",
        "--model",
        narrow.to_str().unwrap(),
        "--logs",
        log1.to_str().unwrap(),
    ]);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("takes 3 features"));
}
