//! gRPC update upload over loopback mutual TLS, in MB/s: one client streams
//! one update (`SubmitUpdate`: header, 1 MiB chunks of little-endian f32,
//! SHA-256 trailer) into an embedded coordinator, which decodes, checks the
//! digest, validates and re-clips it into the round sum. One iteration is one
//! upload; waiting for the task and the round's commit is not timed.
//!
//! Client and server share this process (and its 2 cores): the number is a
//! lower bound for a client on another machine.
//!
//! ```sh
//! cargo bench -p fedsec-benches --bench upload
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use fedsec_benches::{BenchCoordinator, BenchNoise, submit};

const DIMS: [usize; 2] = [100_000, 1_000_000];

/// One upload of the next round's task, timed.
async fn one(b: &mut BenchCoordinator) -> Duration {
    let tasks = b.next_tasks().await;
    let task = tasks.into_iter().next().unwrap();
    let round = task.round;
    let t0 = Instant::now();
    submit(b.clients[0].clone(), &task, &b.chunks, &b.sha, b.dim, 0).await;
    let e = t0.elapsed();
    b.committed(round).await;
    e
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut summary = Vec::new();
    let mut g = c.benchmark_group("upload");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(10));
    for dim in DIMS {
        let mut bench = rt.block_on(BenchCoordinator::start(1, dim, BenchNoise::Simulation));
        g.throughput(Throughput::Bytes(4 * dim as u64));
        let mut total = (Duration::ZERO, 0u64);
        g.bench_with_input(BenchmarkId::new("mtls_one_client", dim), &dim, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    timed += rt.block_on(one(&mut bench));
                }
                total.0 += timed;
                total.1 += iters;
                timed
            })
        });
        let per = total.0.as_secs_f64() / total.1.max(1) as f64;
        summary.push(format!(
            "upload d = {dim:>9} ({:>5.1} MB) over loopback mTLS: {:>7.1} MB/s ({:.1} ms per upload)",
            4.0 * dim as f64 / 1e6,
            4.0 * dim as f64 / per / 1e6,
            per * 1e3
        ));
        rt.block_on(bench.shutdown());
    }
    g.finish();
    c.final_summary();
    println!();
    for s in summary {
        println!("{s}");
    }
}
