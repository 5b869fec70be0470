//! fedsec-privacy speed.
//!
//! - `epsilon_10k/{rdp,pld}`: ε after 10,000 rounds of the Abadi et al.
//!   setting (q = 0.01, z = 4, δ = 1e-5), from scratch (no caching). Goals
//!   from the privacy issue: RDP < 1 ms, PLD < 100 ms (dp_accounting: ~80 ms
//!   and ~1.2 s).
//! - `epsilon_100k/pld`, `epsilon_heterogeneous/pld`: 100,000 rounds, and a
//!   1,000-round history with 3 distinct mechanisms.
//! - `calibrate/{rdp,pld}`: noise multiplier for ε = 1 over those 10,000 rounds.
//! - `pld_smallest_delta/{1e3,1e4,1e5,1e6}`: PLD ε at δ = 1e-15 (the smallest
//!   δ the accountant answers for) after T rounds of q = 0.01, z = 1; goals
//!   ≤ 0.5 s for T ≤ 10⁵ and ≤ 2 s for T = 10⁶ (privacy issue 14).
//! - `clip/{l2_norm,clip_and_accumulate,clip_in_place}/{d}`: clipping
//!   throughput in bytes of `f32` input per second.
//! - `noise/{simulation,opendp}`: Gaussian samples per second (opendp at its
//!   default grid `k = −40` and at opendp's own default `k = −1074`).
//!
//! Run with `cargo bench -p fedsec-benches --bench privacy`; a summary against
//! the goals is printed at the end.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fedsec_privacy::accounting::{Accountant, Mechanism, PldAccountant, RdpAccountant};
use fedsec_privacy::calibrate::calibrate_noise_multiplier;
use fedsec_privacy::clip::{clip_and_accumulate, clip_in_place, l2_norm};
use fedsec_privacy::noise::{GaussianNoise, OpenDpGaussian, SimulationGaussian};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ABADI: Mechanism = Mechanism {
    sampling_rate: 0.01,
    noise_multiplier: 4.0,
};

fn bench_accounting(c: &mut Criterion) {
    let mut g = c.benchmark_group("epsilon_10k");
    g.sample_size(20);
    g.bench_function("rdp", |b| {
        b.iter(|| RdpAccountant.epsilon(&[(ABADI, 10_000)], 1e-5).unwrap())
    });
    g.bench_function("pld", |b| {
        b.iter(|| PldAccountant.epsilon(&[(ABADI, 10_000)], 1e-5).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("epsilon_100k");
    g.sample_size(10);
    g.bench_function("pld", |b| {
        b.iter(|| PldAccountant.epsilon(&[(ABADI, 100_000)], 1e-5).unwrap())
    });
    g.finish();

    let history = [
        (ABADI, 500),
        (
            Mechanism {
                sampling_rate: 0.02,
                noise_multiplier: 3.0,
            },
            300,
        ),
        (
            Mechanism {
                sampling_rate: 0.01,
                noise_multiplier: 2.5,
            },
            200,
        ),
    ];
    let mut g = c.benchmark_group("epsilon_heterogeneous");
    g.sample_size(10);
    g.bench_function("pld", |b| {
        b.iter(|| PldAccountant.epsilon(&history, 1e-5).unwrap())
    });
    g.bench_function("rdp", |b| {
        b.iter(|| RdpAccountant.epsilon(&history, 1e-5).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("pld_smallest_delta");
    g.sample_size(10);
    let m = Mechanism {
        sampling_rate: 0.01,
        noise_multiplier: 1.0,
    };
    for t in [1_000u64, 10_000, 100_000, 1_000_000] {
        g.bench_function(BenchmarkId::from_parameter(t), |b| {
            b.iter(|| PldAccountant.epsilon(&[(m, t)], 1e-15).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("calibrate");
    g.sample_size(10);
    g.bench_function("rdp", |b| {
        b.iter(|| calibrate_noise_multiplier(&RdpAccountant, 0.01, 10_000, 1e-5, 1.0).unwrap())
    });
    g.bench_function("pld", |b| {
        b.iter(|| calibrate_noise_multiplier(&PldAccountant, 0.01, 10_000, 1e-5, 1.0).unwrap())
    });
    g.finish();
}

fn random_update(d: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn bench_clip(c: &mut Criterion) {
    let mut g = c.benchmark_group("clip");
    for d in [100_000usize, 10_000_000] {
        let v = random_update(d, 1);
        let mut acc = vec![0.0f64; d];
        g.throughput(Throughput::Bytes(4 * d as u64));
        g.bench_with_input(BenchmarkId::new("l2_norm", d), &v, |b, v| {
            b.iter(|| l2_norm(v).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("clip_and_accumulate", d), &v, |b, v| {
            b.iter(|| clip_and_accumulate(v, 1.0, &mut acc).unwrap())
        });
        let mut w = v.clone();
        g.bench_function(BenchmarkId::new("clip_in_place", d), |b| {
            b.iter(|| {
                w.copy_from_slice(&v);
                clip_in_place(&mut w, 1.0).unwrap()
            })
        });
    }
    g.finish();
}

fn bench_noise(c: &mut Criterion) {
    let mut g = c.benchmark_group("noise");
    let d = 1_000_000;
    let mut v = vec![0.0f64; d];
    let mut sim = SimulationGaussian::seeded(7);
    g.throughput(Throughput::Elements(d as u64));
    g.bench_function(BenchmarkId::new("simulation", d), |b| {
        b.iter(|| sim.add_noise(&mut v, 1.0).unwrap())
    });
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let d = 1 << 16;
    let mut v = vec![0.0f64; d];
    g.throughput(Throughput::Elements(d as u64));
    let mut odp = OpenDpGaussian::new();
    g.bench_function(BenchmarkId::new("opendp_k-40", d), |b| {
        b.iter(|| odp.add_noise(&mut v, 1.0).unwrap())
    });
    let d = 1 << 13;
    let mut v = vec![0.0f64; d];
    g.throughput(Throughput::Elements(d as u64));
    let mut odp = OpenDpGaussian::with_grid_exponent(-1074).unwrap();
    g.bench_function(BenchmarkId::new("opendp_k-1074", d), |b| {
        b.iter(|| odp.add_noise(&mut v, 1.0).unwrap())
    });
    g.finish();
}

/// Median wall time of `f` over `n` runs.
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[n / 2]
}

fn summary(_: &mut Criterion) {
    let rdp = median(51, || {
        RdpAccountant.epsilon(&[(ABADI, 10_000)], 1e-5).unwrap();
    });
    let pld = median(11, || {
        PldAccountant.epsilon(&[(ABADI, 10_000)], 1e-5).unwrap();
    });
    let m = Mechanism {
        sampling_rate: 0.01,
        noise_multiplier: 1.0,
    };
    let small: Vec<(u64, Duration)> = [100_000u64, 1_000_000]
        .into_iter()
        .map(|t| {
            (
                t,
                median(3, || {
                    PldAccountant.epsilon(&[(m, t)], 1e-15).unwrap();
                }),
            )
        })
        .collect();
    let v = random_update(10_000_000, 3);
    let mut acc = vec![0.0f64; v.len()];
    let clip = median(11, || {
        clip_and_accumulate(&v, 1.0, &mut acc).unwrap();
    });
    let mut x = vec![0.0f64; 1 << 16];
    let odp = median(3, || OpenDpGaussian::new().add_noise(&mut x, 1.0).unwrap());
    let mut y = vec![0.0f64; 10_000_000];
    let mut s = SimulationGaussian::seeded(1);
    let sim = median(3, || s.add_noise(&mut y, 1.0).unwrap());
    println!("\nfedsec-privacy summary (median wall time, this machine, this run)");
    println!(
        "  ε after 10,000 rounds, RDP: {:>9.3} ms  (goal < 1 ms; dp_accounting ~80 ms → {:.0}× faster)",
        rdp.as_secs_f64() * 1e3,
        0.080 / rdp.as_secs_f64()
    );
    println!(
        "  ε after 10,000 rounds, PLD: {:>9.3} ms  (goal < 100 ms; dp_accounting ~1.2 s → {:.0}× faster)",
        pld.as_secs_f64() * 1e3,
        1.2 / pld.as_secs_f64()
    );
    for (t, d) in &small {
        let goal = if *t <= 100_000 { 0.5 } else { 2.0 };
        println!(
            "  PLD ε at δ = 1e-15 after {t} rounds (q = 0.01, z = 1): {:>7.3} s  (goal ≤ {goal} s)",
            d.as_secs_f64()
        );
    }
    println!(
        "  clip_and_accumulate, 10^7 f32: {:>6.2} GB/s",
        4e7 / clip.as_secs_f64() / 1e9
    );
    println!(
        "  noise, opendp k = −40: {:>8.3} M samples/s; simulation: {:.1} M samples/s",
        (1 << 16) as f64 / odp.as_secs_f64() / 1e6,
        1e7 / sim.as_secs_f64() / 1e6
    );
}

criterion_group!(privacy, bench_accounting, bench_clip, bench_noise, summary);
criterion_main!(privacy);
