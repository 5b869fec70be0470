//! Round latency of the coordinator with 10, 100 and 1,000 clients at
//! d = 100,000: from the moment every selected client holds its task, the
//! concurrent uploads (each client on its own mutual-TLS connection), the
//! round's close, the noise, the privacy accounting and the commit of the
//! ledger entry and model version, until the new version is current.
//!
//! `round/simulation/{n}` uses the simulation noise source (allowed here
//! through `[dangerous]`) to time the coordinator's own work;
//! `round/opendp/{n}` the production opendp source, whose exact sampling of
//! d = 100,000 coordinates is part of every round.
//!
//! Clients and coordinator share this process: the peak RSS printed at the
//! end includes the clients. The coordinator's own peak RSS, in a process of
//! its own, comes from `benches/scripts/round_rss.sh`.
//!
//! ```sh
//! cargo bench -p fedsec-benches --bench round
//! ```

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use fedsec_benches::{BenchCoordinator, BenchNoise, proc_status_kb};

const DIM: usize = 100_000;
const CLIENTS: [usize; 3] = [10, 100, 1000];

async fn one_round(b: &mut BenchCoordinator) -> Duration {
    let tasks = b.next_tasks().await;
    let round = b.last_round;
    let t0 = Instant::now();
    b.upload_all(tasks).await;
    b.committed(round).await;
    t0.elapsed()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut summary = Vec::new();
    let mut g = c.benchmark_group("round");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    let cases = CLIENTS
        .iter()
        .map(|&n| ("simulation", BenchNoise::Simulation, n))
        .chain(
            [10, 100]
                .into_iter()
                .map(|n| ("opendp", BenchNoise::OpenDp, n)),
        );
    for (name, noise, n) in cases {
        let mut bench = rt.block_on(BenchCoordinator::start(n, DIM, noise));
        g.measurement_time(Duration::from_secs(if n >= 1000 { 40 } else { 10 }));
        let mut total = (Duration::ZERO, 0u64);
        g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    timed += rt.block_on(one_round(&mut bench));
                }
                total.0 += timed;
                total.1 += iters;
                timed
            })
        });
        let per = total.0.as_secs_f64() / total.1.max(1) as f64;
        summary.push(format!(
            "round d = {DIM}, {n:>4} clients, {name:>10} noise: {:>8.1} ms per round \
             ({:>6.1} MB/s of updates; process peak RSS so far {:.0} MB, clients included)",
            per * 1e3,
            (n * 4 * DIM) as f64 / per / 1e6,
            proc_status_kb("VmHWM").unwrap_or(0) as f64 / 1024.0
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
