//! Clip-and-accumulate throughput against a plain memory-bandwidth loop.
//!
//! - `aggregation/plain_accumulate/{d}`: `acc[i] += v[i] as f64` — the same
//!   memory streams as the accumulate pass, nothing else (the baseline);
//! - `aggregation/clip_and_accumulate/{d}`: `fedsec_privacy::clip_and_accumulate`
//!   (what the coordinator's `RoundSum::add` runs for every accepted upload):
//!   a validating f64 norm pass, then the scaled f64 accumulation. The test
//!   vector has norm ≈ 1.15 > C = 1, so the scaling path runs.
//!
//! d = 100,000 fits in cache; d = 16,777,216 (64 MiB of f32, 128 MiB of f64)
//! does not, so it measures memory bandwidth. Throughput is in bytes of the
//! update (4·d). After criterion, a summary measured in the same run (median
//! of repeated passes) prints both throughputs and the ratio
//! clip-and-accumulate / plain loop (goal ≥ 0.7):
//!
//! ```sh
//! cargo bench -p fedsec-benches --bench aggregation
//! benches/scripts/aggregation_ratio.sh     # the summary only
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use fedsec_benches::{median_time, plain_accumulate, update};
use fedsec_privacy::{clip_and_accumulate, l2_norm};

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
            BenchmarkId::new("clip_and_accumulate", dim),
            &dim,
            |b, _| {
                b.iter(|| clip_and_accumulate(black_box(&v), CLIP, black_box(&mut acc)).unwrap())
            },
        );
    }
    g.finish();
}

/// Both loops on the same buffers, alternated, median of `reps` passes each.
fn summary() {
    println!();
    println!("aggregation summary (median of repeated passes, same run):");
    for dim in DIMS {
        let v = update(dim, 1);
        let mut acc = vec![0.0f64; dim];
        let reps = if dim > 1_000_000 { 31 } else { 2001 };
        let plain = median_time(reps, || {
            plain_accumulate(black_box(&mut acc), black_box(&v))
        });
        let clip = median_time(reps, || {
            clip_and_accumulate(black_box(&v), CLIP, black_box(&mut acc)).unwrap();
        });
        let norm = median_time(reps, || {
            black_box(l2_norm(black_box(&v)).unwrap());
        });
        let gbs = |t: std::time::Duration| 4.0 * dim as f64 / t.as_secs_f64() / 1e9;
        println!(
            "d = {dim:>9}: plain loop {:>6.2} GB/s ({:>6.1} GB/s of memory traffic), \
             clip_and_accumulate {:>6.2} GB/s  ratio {:.2} (goal >= 0.7); \
             of which the norm pass alone {:>6.2} GB/s",
            gbs(plain),
            gbs(plain) * 5.0,
            gbs(clip),
            plain.as_secs_f64() / clip.as_secs_f64(),
            gbs(norm)
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
