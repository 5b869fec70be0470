//! Clip-and-accumulate throughput against a plain memory-bandwidth loop.
//!
//! - `aggregation/plain_accumulate/{d}`: `acc[i] += v[i] as f64` — the same
//!   memory streams as the accumulate pass, nothing else (the baseline), as
//!   compiled for the baseline x86-64 target;
//! - `aggregation/plain_accumulate_avx2/{d}`: the same loop under the same
//!   runtime AVX2 dispatch the kernels use (the stricter baseline);
//! - `aggregation/clip_and_accumulate/{d}`: `fedsec_privacy::clip_and_accumulate`
//!   (what the coordinator runs for every accepted upload): a validating f64
//!   norm pass, then the scaled f64 accumulation. The test vector has norm
//!   ≈ 1.15 > C = 1, so the scaling path runs;
//! - `aggregation/clip_into/{d}`: the second half alone
//!   (`Measured::clip_into`), the only part the coordinator runs while it
//!   holds the round's lock.
//!
//! d = 100,000 fits in cache; d = 16,777,216 (64 MiB of f32, 128 MiB of f64)
//! does not, so it measures memory bandwidth. Throughput is in bytes of the
//! update (4·d). After criterion, a summary measured in the same run (median
//! of repeated passes, the loops alternated) prints the throughputs and the
//! ratio clip-and-accumulate / the faster of the two plain loops (goal ≥ 0.7):
//!
//! ```sh
//! cargo bench -p fedsec-benches --bench aggregation
//! benches/scripts/aggregation_ratio.sh     # the summary only
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use fedsec_benches::{median_time, plain_accumulate, plain_accumulate_dispatched, update};
use fedsec_privacy::{Measured, clip_and_accumulate, l2_norm};

const DIMS: [usize; 2] = [100_000, 1 << 24];
const CLIP: f64 = 1.0;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("aggregation");
    for dim in DIMS {
        let v = update(dim, 1);
        let mut acc = vec![0.0f64; dim];
        g.throughput(Throughput::Bytes(4 * dim as u64));
        if dim > 1_000_000 {
            g.sample_size(20);
        }
        g.bench_with_input(BenchmarkId::new("plain_accumulate", dim), &dim, |b, _| {
            b.iter(|| plain_accumulate(black_box(&mut acc), black_box(&v)))
        });
        g.bench_with_input(
            BenchmarkId::new("plain_accumulate_avx2", dim),
            &dim,
            |b, _| b.iter(|| plain_accumulate_dispatched(black_box(&mut acc), black_box(&v))),
        );
        g.bench_with_input(
            BenchmarkId::new("clip_and_accumulate", dim),
            &dim,
            |b, _| {
                b.iter(|| clip_and_accumulate(black_box(&v), CLIP, black_box(&mut acc)).unwrap())
            },
        );
        let measured = Measured::new(&v).unwrap();
        g.bench_with_input(BenchmarkId::new("clip_into", dim), &dim, |b, _| {
            b.iter(|| measured.clip_into(CLIP, black_box(&mut acc)).unwrap())
        });
    }
    g.finish();
}

/// Medians of `reps` passes of each loop, taken in interleaved rounds so a
/// change in the machine's load shifts all of them alike.
fn interleaved(reps: usize, loops: &mut [&mut dyn FnMut()]) -> Vec<Duration> {
    let rounds = 5;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); loops.len()];
    for _ in 0..rounds {
        for (t, f) in times.iter_mut().zip(loops.iter_mut()) {
            t.push(median_time(reps.div_ceil(rounds), &mut **f));
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            t[t.len() / 2]
        })
        .collect()
}

fn summary() {
    println!();
    println!("aggregation summary (median of repeated passes, same run):");
    for dim in DIMS {
        let v = update(dim, 1);
        let mut acc = vec![0.0f64; dim];
        let mut acc2 = vec![0.0f64; dim];
        let mut acc3 = vec![0.0f64; dim];
        let mut acc4 = vec![0.0f64; dim];
        let reps = if dim > 1_000_000 { 31 } else { 2001 };
        let measured = Measured::new(&v).unwrap();
        let t = interleaved(
            reps,
            &mut [
                &mut || plain_accumulate(black_box(&mut acc), black_box(&v)),
                &mut || plain_accumulate_dispatched(black_box(&mut acc2), black_box(&v)),
                &mut || {
                    clip_and_accumulate(black_box(&v), CLIP, black_box(&mut acc3)).unwrap();
                },
                &mut || {
                    measured.clip_into(CLIP, black_box(&mut acc4)).unwrap();
                },
                &mut || {
                    black_box(l2_norm(black_box(&v)).unwrap());
                },
            ],
        );
        let (plain, plain_avx, clip, clip_into, norm) = (t[0], t[1], t[2], t[3], t[4]);
        let baseline = plain.min(plain_avx);
        let gbs = |t: Duration| 4.0 * dim as f64 / t.as_secs_f64() / 1e9;
        let ratio = |t: Duration| baseline.as_secs_f64() / t.as_secs_f64();
        println!(
            "d = {dim:>9}: plain loop {:>6.2} GB/s, under AVX2 dispatch {:>6.2} GB/s \
             ({:>5.1} GB/s of memory traffic for the faster)",
            gbs(plain),
            gbs(plain_avx),
            gbs(baseline) * 5.0,
        );
        println!(
            "             clip_and_accumulate {:>6.2} GB/s  ratio {:.2} (goal >= 0.7; \
             {:.2} against the plain loop as compiled)",
            gbs(clip),
            ratio(clip),
            plain.as_secs_f64() / clip.as_secs_f64(),
        );
        println!(
            "             of which the norm pass alone {:>6.2} GB/s; \
             clip_into alone (under the round lock) {:>6.2} GB/s  ratio {:.2}",
            gbs(norm),
            gbs(clip_into),
            ratio(clip_into),
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    // `cargo bench` passes --bench; `cargo test --benches` does not: skip the
    // summary there.
    if std::env::args().any(|a| a == "--bench") {
        summary();
    }
}
