//! Shared support for fedsec's benchmarks: deterministic test vectors,
//! process memory readings, simple repeated timing for the ratio summaries
//! the benches print, and an embedded coordinator with in-process clients on
//! their own mutual-TLS connections (the upload and round benches).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedsec_coordinator::config::DangerousConfig;
use fedsec_coordinator::{Coordinator, CoordinatorConfig, JobSpec, RunningCoordinator};
use fedsec_model::ModelSpec;
use fedsec_privacy::NoiseKind;
use fedsec_proto::devca::LoopbackPki;
use fedsec_proto::tensor::{digest, encode_chunks};
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::{
    GetTaskRequest, RegisterRequest, SubmitUpdateRequest, Task, TensorChunk, UpdateHeader,
    UpdateTrailer, get_task_response, submit_update_request,
};
use rand::{RngExt, SeedableRng};
use tonic::transport::Channel;

/// A seeded vector of `dim` values uniform in ±`2/√dim` (L2 norm ≈ 1.15, so
/// it is clipped at C = 1).
pub fn update(dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let scale = 2.0 / (dim as f32).sqrt();
    (0..dim).map(|_| rng.random_range(-scale..scale)).collect()
}

/// A field of `/proc/self/status` in kB (`VmRSS`, `VmHWM`), if readable.
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Median wall time of `reps` runs of `f` (after one warm-up run).
pub fn median_time(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut t: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

/// The plain memory-bandwidth loop the aggregation is compared with: the
/// same streams as the accumulate pass (read `f32`, read-modify-write `f64`),
/// no validation, no norm, no scaling.
pub fn plain_accumulate(acc: &mut [f64], v: &[f32]) {
    plain_loop(acc, v);
}

/// [`plain_accumulate`] compiled for the best instruction set the CPU has
/// (AVX2 + FMA through `pulp`'s runtime dispatch, the one the clipping
/// kernels use), so the comparison never favours the kernels by giving them
/// wider vectors than the baseline.
pub fn plain_accumulate_dispatched(acc: &mut [f64], v: &[f32]) {
    pulp::Arch::new().dispatch(
        #[inline(always)]
        || plain_loop(acc, v),
    );
}

#[inline(always)]
fn plain_loop(acc: &mut [f64], v: &[f32]) {
    for (a, &x) in acc.iter_mut().zip(v) {
        *a += f64::from(x);
    }
}

/// The configuration every embedded bench coordinator starts from: loopback
/// port 0, fast polling, simulation noise allowed, no metrics listener, and
/// no per-identity rate limits (the benches measure throughput: one identity
/// uploads far faster than any real client may).
pub fn bench_config(data_dir: &std::path::Path) -> CoordinatorConfig {
    let mut config = CoordinatorConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_owned(),
        poll_interval_ms: 20,
        dangerous: Some(DangerousConfig {
            allow_simulation_noise: true,
            allow_disabled_noise: false,
        }),
        ..Default::default()
    };
    config.metrics.enabled = false;
    config.rate_limits.enabled = false;
    // Every bench client connects from 127.0.0.1.
    config.limits.max_pending_handshakes_per_address = config.limits.max_pending_handshakes;
    config
}

/// Job id used by [`BenchCoordinator`].
pub const JOB: &str = "bench";

/// An embedded coordinator with `n` registered in-process clients, each on
/// its own mutual-TLS connection, and one job over a model of `dim`
/// parameters in which every client is selected every round (q = 1).
pub struct BenchCoordinator {
    _dir: tempfile::TempDir,
    /// The coordinator.
    pub running: RunningCoordinator,
    /// One gRPC client per identity.
    pub clients: Vec<CoordinatorClient<Channel>>,
    /// The update every client sends, as 1 MiB chunks.
    pub chunks: Arc<Vec<Bytes>>,
    /// Its SHA-256.
    pub sha: Arc<Vec<u8>>,
    /// Parameters.
    pub dim: usize,
    /// Last round whose tasks were handed out.
    pub last_round: u64,
}

/// Noise the bench job uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchNoise {
    /// opendp's exact Gaussian (production default).
    OpenDp,
    /// The seeded simulation sampler (allowed through `[dangerous]`).
    Simulation,
}

impl BenchCoordinator {
    /// Starts the coordinator, registers `n` clients, creates the job.
    pub async fn start(n: usize, dim: usize, noise: BenchNoise) -> Self {
        let pki = LoopbackPki::generate("bench CA").expect("dev PKI");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = bench_config(dir.path());
        config.limits.upload_message_timeout_ms = 600_000;
        let running = Coordinator::start_with_tls(config, pki.server_tls().clone())
            .await
            .expect("coordinator");
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            // One tenant per client: the privacy unit (one update per tenant and round).
            let ctls = pki
                .client_tls(&format!("t{i:04}"), &format!("c{i:04}"))
                .expect("client TLS");
            let mut c = CoordinatorClient::new(ctls.channel(&running.endpoint()).expect("channel"))
                .max_decoding_message_size(64 << 20);
            c.register(RegisterRequest::default())
                .await
                .expect("register");
            clients.push(c);
        }
        let mut spec = JobSpec::new(JOB, ModelSpec::logistic(dim as u32 - 1), 1.0, n as u64);
        spec.rounds = 1_000_000;
        spec.min_clients = n as u32;
        spec.round_deadline_ms = 3_600_000;
        spec.noise_source = match noise {
            BenchNoise::OpenDp => NoiseKind::OpenDp,
            BenchNoise::Simulation => NoiseKind::Simulation,
        };
        spec.noise_multiplier = Some(1.0);
        spec.clipping.clip_norm = 1.0;
        // The updates have norm ~1.15 > C (they exercise the re-clip); the
        // update screen's default policy (exclude) would refuse them.
        spec.screen.policy = fedsec_coordinator::config::ScreenPolicyKind::Log;
        running.admin().create_job(spec).await.expect("job");
        let u = update(dim, 7);
        Self {
            _dir: dir,
            running,
            clients,
            chunks: Arc::new(encode_chunks(&u).collect()),
            sha: Arc::new(digest(&u).to_vec()),
            dim,
            last_round: 0,
        }
    }

    /// Waits until every client has its task for the next round.
    pub async fn next_tasks(&mut self) -> Vec<Task> {
        let waits: Vec<_> = self
            .clients
            .iter()
            .map(|c| tokio::spawn(wait_task(c.clone(), self.last_round)))
            .collect();
        let mut tasks = Vec::with_capacity(waits.len());
        for w in waits {
            tasks.push(w.await.expect("task"));
        }
        self.last_round = tasks.first().map_or(self.last_round, |t| t.round);
        tasks
    }

    /// Every client uploads the update for its task, concurrently.
    pub async fn upload_all(&self, tasks: Vec<Task>) {
        let uploads: Vec<_> = self
            .clients
            .iter()
            .zip(tasks)
            .enumerate()
            .map(|(i, (c, t))| {
                let (c, chunks, sha, dim) =
                    (c.clone(), self.chunks.clone(), self.sha.clone(), self.dim);
                tokio::spawn(async move { submit(c, &t, &chunks, &sha, dim, i).await })
            })
            .collect();
        for u in uploads {
            u.await.expect("upload task");
        }
    }

    /// Waits until the job has committed `round`.
    pub async fn committed(&self, round: u64) {
        let admin = self.running.admin();
        loop {
            let job = admin.job(JOB).expect("job");
            if job.rounds_completed >= round {
                return;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }

    /// Stops the coordinator.
    pub async fn shutdown(self) {
        self.running.shutdown().await.expect("shutdown");
    }
}

/// Polls `GetTask` until a task of a round after `after` arrives.
pub async fn wait_task(mut c: CoordinatorClient<Channel>, after: u64) -> Task {
    loop {
        let r = c
            .get_task(GetTaskRequest { job_id: JOB.into() })
            .await
            .expect("GetTask")
            .into_inner();
        if let Some(get_task_response::Outcome::Task(t)) = r.outcome
            && t.round > after
        {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Streams one update (header, 1 MiB chunks, trailer) for `task`.
pub async fn submit(
    mut c: CoordinatorClient<Channel>,
    task: &Task,
    chunks: &[Bytes],
    sha: &[u8],
    dim: usize,
    nonce: usize,
) {
    let mut m = Vec::with_capacity(chunks.len() + 2);
    m.push(SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Header(UpdateHeader {
            job_id: task.job_id.clone(),
            round: task.round,
            attempt: task.attempt,
            base_version: task.base_version,
            nonce: format!("{nonce}").into_bytes(),
            num_params: dim as u64,
            within_clip: true,
        })),
    });
    m.extend(chunks.iter().map(|data| SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Chunk(TensorChunk {
            data: data.clone(),
        })),
    }));
    m.push(SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Trailer(UpdateTrailer {
            sha256: sha.to_vec(),
        })),
    });
    c.submit_update(tokio_stream::iter(m))
        .await
        .expect("SubmitUpdate");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let u = update(1000, 1);
        assert_eq!(u, update(1000, 1));
        let norm: f64 = u.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!(norm > 1.0 && norm < 1.3, "{norm}");
        let mut acc = vec![1.0; 3];
        plain_accumulate(&mut acc, &[1.0, 2.0, 3.0]);
        assert_eq!(acc, vec![2.0, 3.0, 4.0]);
        assert!(proc_status_kb("VmHWM").is_some_and(|kb| kb > 0));
        assert!(proc_status_kb("NoSuchField").is_none());
    }
}
