//! Encryption at rest: sealing and opening one model version (d = 1M,
//! 4 MB) with the coordinator's ChaCha20-Poly1305 record format, against a
//! plain copy of the same bytes measured in the same run.
//!
//! `cargo bench -p fedsec-benches --bench storage`; a summary with GB/s and
//! the ratio to the copy is printed at the end.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fedsec_coordinator::store::seal::{Aad, AtRestKey};

const BYTES: usize = 4_000_000;

fn median_secs(mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..15)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn benches(c: &mut Criterion) {
    let key = AtRestKey::from_bytes(&[7; 32]);
    let aad = Aad {
        field: "model_versions.weights",
        job_id: "bench",
        number: 1,
    };
    let model = vec![0x5au8; BYTES];
    let sealed = key.seal(&aad, &model);

    let mut g = c.benchmark_group("at_rest");
    g.throughput(Throughput::Bytes(BYTES as u64));
    g.bench_function(BenchmarkId::new("copy", BYTES), |b| {
        b.iter(|| std::hint::black_box(model.clone()))
    });
    g.bench_function(BenchmarkId::new("seal", BYTES), |b| {
        b.iter(|| key.seal(&aad, std::hint::black_box(&model)))
    });
    g.bench_function(BenchmarkId::new("open", BYTES), |b| {
        b.iter(|| key.open(&aad, std::hint::black_box(&sealed)).unwrap())
    });
    g.finish();

    let copy = median_secs(|| drop(std::hint::black_box(model.clone())));
    let seal = median_secs(|| drop(key.seal(&aad, std::hint::black_box(&model))));
    let open = median_secs(|| drop(key.open(&aad, std::hint::black_box(&sealed)).unwrap()));
    println!("\n== at-rest encryption summary (4 MB model, median of 15) ==");
    for (name, s) in [("plain copy", copy), ("seal", seal), ("open", open)] {
        println!(
            "{name:>10}: {:>7.2} ms  {:>6.2} GB/s  {:>6.1}x the copy",
            s * 1e3,
            BYTES as f64 / s / 1e9,
            s / copy
        );
    }
}

criterion_group!(group, benches);
criterion_main!(group);
