//! Detector throughput.
//!
//! - `lines_to_features/{clf,json}/bytes_baseline`: splitting the text into
//!   lines and touching every byte (the floor any reader pays);
//! - `lines_to_features/{clf,json}/parse`: `LogReader` parsing every line;
//! - `lines_to_features/{clf,json}/features`: the whole path a client runs —
//!   parse, sessionize, and compute the feature vector of every session.
//!   Goal: ≥ 500 000 lines/s on one core.
//! - `train/{logistic,mlp_38_32_16}`: `train_local`, one epoch, batch 128,
//!   Adam, on 20 000 sessions (throughput in samples).
//! - `score/mlp_38_32_16`: probabilities of 20 000 sessions.
//!
//! The input is one synthetic e-commerce tenant (about 8 000 sessions)
//! generated in memory. Run with
//! `cargo bench -p fedsec-benches --bench detector`; a summary with lines/s,
//! samples/s and the ratio to the byte-scanning baseline is printed at the end.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::{self, NUM_FEATURES};
use fedsec_detector::logs::{LineEvent, LogFormat, LogReader, ReaderConfig};
use fedsec_detector::model::Scorer;
use fedsec_detector::session::{SessionConfig, Sessionizer, sessionize};
use fedsec_detector::synth::{self, SynthConfig, SynthFormat};
use fedsec_detector::train::{Optimizer, TrainConfig, train_local};
use fedsec_model::ModelSpec;

struct Input {
    text: Vec<u8>,
    lines: u64,
    dataset: Dataset,
}

fn tenant(format: SynthFormat) -> Input {
    let cfg = SynthConfig {
        tenants: 1,
        seed: 42,
        format,
        median_sessions: 8_000.0,
        sessions_sigma: 0.0,
        min_sessions: 8_000,
        max_sessions: 8_000,
        ..SynthConfig::default()
    };
    let t = synth::generate_tenant(&cfg, 0).unwrap();
    let dataset = t.labelled_sessions().unwrap().dataset;
    Input {
        lines: t.summary.lines as u64,
        text: t.log,
        dataset,
    }
}

fn inputs() -> &'static [Input; 2] {
    static I: OnceLock<[Input; 2]> = OnceLock::new();
    I.get_or_init(|| [tenant(SynthFormat::Clf), tenant(SynthFormat::Json)])
}

fn training_data() -> &'static Dataset {
    static D: OnceLock<Dataset> = OnceLock::new();
    D.get_or_init(|| {
        let mut d = Dataset::new(NUM_FEATURES);
        let [a, b] = inputs();
        d.extend_from(&a.dataset).unwrap();
        d.extend_from(&b.dataset).unwrap();
        let idx: Vec<usize> = (0..20_000).map(|i| i % d.len()).collect();
        d.subset(&idx)
    })
}

fn bytes_baseline(text: &[u8]) -> u64 {
    let mut acc = 0u64;
    for line in text.split(|&b| b == b'\n') {
        acc = acc.wrapping_add(line.iter().map(|&b| u64::from(b)).sum::<u64>());
    }
    acc
}

fn parse_only(text: &[u8], format: LogFormat) -> u64 {
    let mut reader = LogReader::new(text, ReaderConfig::with_format(format));
    let mut n = 0u64;
    while let Some(ev) = reader.next_event().unwrap() {
        if let LineEvent::Record(r) = ev {
            n = n.wrapping_add(r.ts_ms as u64);
        }
    }
    n
}

fn lines_to_features(text: &[u8], format: LogFormat) -> f32 {
    let mut reader = LogReader::new(text, ReaderConfig::with_format(format));
    let mut sessionizer = Sessionizer::new(SessionConfig::default());
    let mut acc = 0f32;
    sessionize(
        &mut reader,
        &mut sessionizer,
        |s| acc += features::feature_vector(&s)[0],
        |_| {},
    )
    .unwrap();
    acc
}

fn train_cfg() -> TrainConfig {
    TrainConfig {
        epochs: 1,
        batch_size: 128,
        learning_rate: 0.003,
        optimizer: Optimizer::Adam,
        momentum: 0.0,
        class_weighting: true,
        max_steps: 0,
    }
}

fn mlp() -> ModelSpec {
    ModelSpec::mlp(NUM_FEATURES as u32, [32, 16])
}

fn bench_lines(c: &mut Criterion) {
    let mut g = c.benchmark_group("lines_to_features");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for (name, input, format) in [
        ("clf", &inputs()[0], LogFormat::Clf),
        ("json", &inputs()[1], LogFormat::Json),
    ] {
        g.throughput(Throughput::Elements(input.lines));
        g.bench_function(format!("{name}/bytes_baseline"), |b| {
            b.iter(|| black_box(bytes_baseline(&input.text)))
        });
        g.bench_function(format!("{name}/parse"), |b| {
            b.iter(|| black_box(parse_only(&input.text, format)))
        });
        g.bench_function(format!("{name}/features"), |b| {
            b.iter(|| black_box(lines_to_features(&input.text, format)))
        });
    }
    g.finish();
}

fn bench_train(c: &mut Criterion) {
    let data = training_data();
    let mut g = c.benchmark_group("train");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(data.len() as u64));
    for (name, spec) in [
        ("logistic", ModelSpec::logistic(NUM_FEATURES as u32)),
        ("mlp_38_32_16", mlp()),
    ] {
        let w0 = spec.init_weights(1);
        g.bench_function(name, |b| {
            b.iter(|| black_box(train_local(&spec, &w0, data, &train_cfg(), 1).unwrap()))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("score");
    g.sample_size(10);
    g.throughput(Throughput::Elements(data.len() as u64));
    let spec = mlp();
    let scorer = Scorer::new(&spec, &spec.init_weights(1)).unwrap();
    g.bench_function("mlp_38_32_16", |b| {
        b.iter(|| black_box(scorer.probabilities(data.features()).unwrap()))
    });
    g.finish();
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn summary(_c: &mut Criterion) {
    println!("\n== detector summary (best of 5, one thread) ==");
    for (name, input, format) in [
        ("clf", &inputs()[0], LogFormat::Clf),
        ("json", &inputs()[1], LogFormat::Json),
    ] {
        let base = best_of(5, || bytes_baseline(&input.text));
        let parse = best_of(5, || parse_only(&input.text, format));
        let full = best_of(5, || lines_to_features(&input.text, format));
        let rate = |s: f64| input.lines as f64 / s;
        println!(
            "{name:>4}: {} lines ({:.1} MB) | bytes baseline {:.2} M lines/s | parse {:.2} M lines/s | lines->features {:.2} M lines/s ({:.1}x the baseline's time) | goal 0.5 M lines/s: {}",
            input.lines,
            input.text.len() as f64 / 1e6,
            rate(base) / 1e6,
            rate(parse) / 1e6,
            rate(full) / 1e6,
            full / base,
            if rate(full) >= 5e5 { "met" } else { "NOT met" }
        );
    }
    let data = training_data();
    for (name, spec) in [
        ("logistic", ModelSpec::logistic(NUM_FEATURES as u32)),
        ("mlp 38-32-16", mlp()),
    ] {
        let w0 = spec.init_weights(1);
        let s = best_of(3, || {
            train_local(&spec, &w0, data, &train_cfg(), 1).unwrap()
        });
        println!(
            "train {name}: {:.0} samples/s (Adam, batch 128, {} samples per epoch)",
            data.len() as f64 / s,
            data.len()
        );
    }
}

criterion_group!(benches, bench_lines, bench_train, summary);
criterion_main!(benches);
