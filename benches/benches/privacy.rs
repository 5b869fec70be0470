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
//! - `noise/discrete_*`: fedsec's exact discrete Gaussian: integer values on
//!   one thread (`discrete_i64_1t`, σ = 2^40 grid units, the production
//!   regime at σ = 1 on the 2^−40 grid), and the `GaussianNoise` source on
//!   `f64` vectors on one thread and on all threads.
//!
//! Run with `cargo bench -p fedsec-benches --bench privacy`; a summary against
//! the goals is printed at the end. `cargo bench -p fedsec-benches --bench
//! privacy -- noise` runs the noise benchmarks and the summary only.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fedsec_privacy::accounting::{Accountant, Mechanism, PldAccountant, RdpAccountant};
use fedsec_privacy::calibrate::calibrate_noise_multiplier;
use fedsec_privacy::clip::{clip_and_accumulate, clip_in_place, l2_norm};
use fedsec_privacy::noise::discrete::{DiscreteGaussian, SamplerRng};
use fedsec_privacy::noise::{
    DiscreteGaussianNoise, GaussianNoise, OpenDpGaussian, SimulationGaussian,
};
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

/// σ = 2^40 grid units: the production regime (σ = 1 on the 2^−40 grid).
const GRID_SIGMA: f64 = 1_099_511_627_776.0;

fn bench_noise(c: &mut Criterion) {
    let mut g = c.benchmark_group("noise");
    let d = 1_000_000;
    let mut v = vec![0.0f64; d];
    let mut sim = SimulationGaussian::seeded(7);
    g.throughput(Throughput::Elements(d as u64));
    g.bench_function(BenchmarkId::new("simulation", d), |b| {
        b.iter(|| sim.add_noise(&mut v, 1.0).unwrap())
    });
    let dg = DiscreteGaussian::new(GRID_SIGMA).unwrap();
    let mut rng = SamplerRng::from_os().unwrap();
    let mut z = vec![0i64; d];
    g.bench_function(BenchmarkId::new("discrete_i64_1t", d), |b| {
        b.iter(|| dg.fill(&mut rng, &mut z))
    });
    let mut one = DiscreteGaussianNoise::new().unwrap().with_threads(1);
    g.bench_function(BenchmarkId::new("discrete_f64_1t", d), |b| {
        b.iter(|| one.add_noise(&mut v, 1.0).unwrap())
    });
    let mut all = DiscreteGaussianNoise::new().unwrap();
    g.bench_function(BenchmarkId::new("discrete_f64_all_threads", d), |b| {
        b.iter(|| all.add_noise(&mut v, 1.0).unwrap())
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

/// CPU time of the calling thread, from `/proc/thread-self/schedstat`
/// (Linux; updated at scheduling events, so only intervals of ≥ 0.1 s are
/// meaningful). `None` elsewhere.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Wall and CPU time of `f`, on this thread.
fn timed(mut f: impl FnMut()) -> (Duration, Option<Duration>) {
    let c0 = thread_cpu();
    let t0 = Instant::now();
    f();
    let wall = t0.elapsed();
    let cpu = c0.and_then(|c0| Some(thread_cpu()?.saturating_sub(c0)));
    (wall, cpu)
}

/// The noise half of the summary: every sampler in the same run, wall time
/// and this thread's CPU time (the machine is shared: CPU time is the
/// per-core rate, wall time what a caller waits), and what bounds the
/// discrete sampler (random words, trials, ChaCha20's own cost).
fn noise_summary() {
    const N: usize = 1 << 24;
    let dg = DiscreteGaussian::new(GRID_SIGMA).unwrap();
    let mut rng = SamplerRng::from_os().unwrap();
    let mut z = vec![0i64; 1 << 16];
    dg.fill(&mut rng, &mut z); // warm-up
    let before = rng.stats();
    let (w_dg, c_dg) = timed(|| {
        for _ in 0..N / z.len() {
            dg.fill(&mut rng, &mut z);
        }
    });
    let st = rng.stats();
    let words = (st.words - before.words) as f64 / N as f64;
    let trials = (st.trials - before.trials) as f64 / N as f64;
    // ChaCha20 alone: the same number of 64-bit words, same run.
    let mut chacha = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(1);
    let n_words = (words * N as f64) as usize;
    let mut sink = 0u64;
    let (w_cc, c_cc) = timed(|| {
        for _ in 0..n_words {
            sink ^= rand::Rng::next_u64(&mut chacha);
        }
    });
    std::hint::black_box(sink);
    let mut y = vec![0.0f64; N / 4];
    let mut sim = SimulationGaussian::seeded(1);
    let (w_sim, c_sim) = timed(|| sim.add_noise(&mut y, 1.0).unwrap());
    let mut one = DiscreteGaussianNoise::new().unwrap().with_threads(1);
    let (w_f1, c_f1) = timed(|| one.add_noise(&mut y, 1.0).unwrap());
    let mut all = DiscreteGaussianNoise::new().unwrap();
    let (w_fa, _) = timed(|| all.add_noise(&mut y, 1.0).unwrap());
    let mut x = vec![0.0f64; 1 << 16];
    let (w_odp, _) = timed(|| OpenDpGaussian::new().add_noise(&mut x, 1.0).unwrap());

    let rate = |n: usize, t: Duration| n as f64 / t.as_secs_f64() / 1e6;
    let cpu_rate = |n: usize, t: Option<Duration>| {
        t.filter(|t| !t.is_zero())
            .map_or("n/a".to_string(), |t| format!("{:.1}", rate(n, t)))
    };
    let (dg_wall, odp_wall) = (rate(N, w_dg), rate(x.len(), w_odp));
    println!("\nnoise, same run (M samples/s: wall | this thread's CPU time)");
    println!(
        "  discrete, i64, 1 thread:       {:>7.1} | {:>6}   (goal ≥ 20 per core)",
        dg_wall,
        cpu_rate(N, c_dg)
    );
    println!(
        "  discrete, f64 source, 1 thread: {:>6.1} | {:>6}",
        rate(y.len(), w_f1),
        cpu_rate(y.len(), c_f1)
    );
    println!(
        "  discrete, f64 source, all threads: {:>6.1} (wall)",
        rate(y.len(), w_fa)
    );
    println!(
        "  simulation (not production):  {:>7.1} | {:>6}",
        rate(y.len(), w_sim),
        cpu_rate(y.len(), c_sim)
    );
    println!("  opendp k = −40, all threads:   {odp_wall:>7.3} (wall)");
    println!(
        "  ratio discrete (1 thread) / opendp (all threads): {:.0}×",
        dg_wall / odp_wall
    );
    let ns = |t: Option<Duration>, n: f64| t.map_or(f64::NAN, |t| t.as_nanos() as f64 / n);
    let per_sample = ns(c_dg, N as f64);
    let per_word = ns(c_cc, n_words as f64);
    println!(
        "  discrete: {words:.3} ChaCha20 words ({:.0} bits) and {trials:.3} trials per sample \
         (acceptance {:.3}); CPU {per_sample:.1} ns per sample, of which ChaCha20 {:.1} ns \
         ({per_word:.2} ns per word; wall {:.1} ns); ≈ {:.0} cycles per sample at 2.1 GHz",
        words * 64.0,
        1.0 / trials,
        per_word * words,
        w_cc.as_nanos() as f64 / n_words as f64,
        per_sample * 2.1
    );
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
    noise_summary();
}

criterion_group!(privacy, bench_accounting, bench_clip, bench_noise, summary);
criterion_main!(privacy);
