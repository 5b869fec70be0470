//! Coordinator ingest throughput.
//!
//! - `aggregate/reclip_add/{d}`: the in-memory baseline — re-clip one update
//!   and add it into the f64 round sum (what every accepted upload costs the
//!   coordinator beyond decoding).
//! - `ingest/mtls_100_clients/{d}`: the whole path — 100 clients, each on its
//!   own mutual-TLS connection, upload one update of `d` values concurrently
//!   into one open round of an embedded coordinator (SubmitUpdate streaming,
//!   chunk decoding, SHA-256, validation, re-clipping, accumulation). One
//!   iteration is one round's 100 uploads; the round's release and commit are
//!   not timed.
//!
//! Clients and server share this process and its 2 cores, so the numbers
//! are a lower bound for a coordinator with clients elsewhere. Run with
//! `cargo bench -p fedsec-benches --bench coordinator`; a summary with
//! updates/s, GB/s and the ratio to the in-memory baseline is printed at the end.

#![allow(clippy::unwrap_used, missing_docs)]

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use fedsec_benches::bench_config;
use fedsec_coordinator::{Coordinator, JobSpec, RunningCoordinator};
use fedsec_model::ModelSpec;
use fedsec_privacy::Measured;
use fedsec_proto::devca::LoopbackPki;
use fedsec_proto::tensor::{digest, encode_chunks};
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::{GetTaskRequest, RegisterRequest, Task, get_task_response};
use fedsec_round::accumulate::RoundSum;
use rand::{RngExt, SeedableRng};
use tonic::transport::Channel;

const CLIENTS: usize = 100;
const DIMS: [usize; 2] = [10_000, 1_000_000];

fn update(dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let scale = 2.0 / (dim as f32).sqrt();
    (0..dim).map(|_| rng.random_range(-scale..scale)).collect()
}

struct Bench {
    _dir: tempfile::TempDir,
    running: RunningCoordinator,
    clients: Vec<CoordinatorClient<Channel>>,
    chunks: Arc<Vec<Bytes>>,
    sha: Arc<Vec<u8>>,
    dim: usize,
    last_round: u64,
}

async fn setup(dim: usize) -> Bench {
    let pki = LoopbackPki::generate("bench CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = bench_config(dir.path());
    let running = Coordinator::start_with_tls(config, pki.server_tls().clone())
        .await
        .unwrap();
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        // One tenant per client: the privacy unit (one update per tenant and round).
        let ctls = pki
            .client_tls(&format!("t{i:03}"), &format!("c{i:03}"))
            .unwrap();
        let mut c = CoordinatorClient::new(ctls.channel(&running.endpoint()).unwrap());
        c.register(RegisterRequest::default()).await.unwrap();
        clients.push(c);
    }
    let mut spec = JobSpec::new(
        "bench",
        ModelSpec::logistic(dim as u32 - 1),
        1.0,
        CLIENTS as u64,
    );
    spec.rounds = 1_000_000;
    spec.min_clients = CLIENTS as u32;
    spec.round_deadline_ms = 3_600_000;
    spec.noise_source = fedsec_privacy::NoiseKind::Simulation;
    spec.clipping.clip_norm = 1.0;
    // The updates have norm ~1.15 > C so that the re-clip scales them; the
    // update screen (default policy: exclude) would refuse them. Log keeps
    // the screen's measuring in the timed path and every update in the sum.
    spec.screen.policy = fedsec_coordinator::config::ScreenPolicyKind::Log;
    running.admin().create_job(spec).await.unwrap();
    let u = update(dim, 7);
    Bench {
        _dir: dir,
        running,
        clients,
        chunks: Arc::new(encode_chunks(&u).collect()),
        sha: Arc::new(digest(&u).to_vec()),
        dim,
        last_round: 0,
    }
}

async fn wait_task(mut c: CoordinatorClient<Channel>, after: u64) -> Task {
    loop {
        let r = c
            .get_task(GetTaskRequest {
                job_id: "bench".into(),
            })
            .await
            .unwrap()
            .into_inner();
        if let Some(get_task_response::Outcome::Task(t)) = r.outcome
            && t.round > after
        {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One round: wait until every client has its task (untimed), then time the
/// 100 concurrent uploads.
async fn round(b: &mut Bench) -> Duration {
    let waits: Vec<_> = b
        .clients
        .iter()
        .map(|c| tokio::spawn(wait_task(c.clone(), b.last_round)))
        .collect();
    let mut tasks = Vec::with_capacity(CLIENTS);
    for w in waits {
        tasks.push(w.await.unwrap());
    }
    b.last_round = tasks[0].round;
    let t0 = Instant::now();
    let uploads: Vec<_> = b
        .clients
        .iter()
        .zip(tasks)
        .enumerate()
        .map(|(i, (c, t))| {
            let c = c.clone();
            let (chunks, sha, dim) = (b.chunks.clone(), b.sha.clone(), b.dim);
            tokio::spawn(async move {
                fedsec_benches::submit(c, &t, &chunks, &sha, dim, i).await;
            })
        })
        .collect();
    for u in uploads {
        u.await.unwrap();
    }
    t0.elapsed()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary: RefCell<Vec<String>> = RefCell::new(Vec::new());

    let mut g = c.benchmark_group("aggregate");
    let mut baseline = Vec::new();
    for dim in DIMS {
        let u = update(dim, 1);
        let mut sum = RoundSum::new(dim);
        g.throughput(Throughput::Bytes(4 * dim as u64));
        let mut total = (Duration::ZERO, 0u64);
        g.bench_with_input(BenchmarkId::new("reclip_add", dim), &dim, |b, _| {
            b.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    let m = Measured::new(std::hint::black_box(&u)).unwrap();
                    sum.add(&m, 1.0, true).unwrap();
                }
                let e = t0.elapsed();
                total.0 += e;
                total.1 += iters;
                e
            });
        });
        let per = total.0.as_secs_f64() / total.1.max(1) as f64;
        baseline.push(per);
    }
    g.finish();

    let mut g = c.benchmark_group("ingest");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    for (k, dim) in DIMS.into_iter().enumerate() {
        let mut bench = rt.block_on(setup(dim));
        g.throughput(Throughput::Bytes((CLIENTS * 4 * dim) as u64));
        g.measurement_time(if dim >= 1_000_000 {
            Duration::from_secs(30)
        } else {
            Duration::from_secs(5)
        });
        g.warm_up_time(Duration::from_secs(1));
        let mut total = (Duration::ZERO, 0u64);
        g.bench_with_input(BenchmarkId::new("mtls_100_clients", dim), &dim, |b, _| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    timed += rt.block_on(round(&mut bench));
                }
                total.0 += timed;
                total.1 += iters;
                timed
            });
        });
        let per_round = total.0.as_secs_f64() / total.1.max(1) as f64;
        let updates = CLIENTS as f64 / per_round;
        let gbs = updates * 4.0 * dim as f64 / 1e9;
        let base_gbs = 4.0 * dim as f64 / baseline[k] / 1e9;
        summary.borrow_mut().push(format!(
            "ingest d = {dim:>9}, {CLIENTS} clients over mTLS: {updates:>8.1} updates/s, {gbs:.3} GB/s \
             (in-memory re-clip + add baseline {base_gbs:.2} GB/s, ratio {:.3})",
            gbs / base_gbs
        ));
        let Bench { running, .. } = bench;
        rt.block_on(running.shutdown()).unwrap();
    }
    g.finish();
    eprintln!();
    for line in summary.borrow().iter() {
        eprintln!("{line}");
    }
}

criterion_group!(coordinator, benches);
criterion_main!(coordinator);
