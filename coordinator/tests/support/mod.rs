//! Shared support of the coordinator's integration tests: a development PKI,
//! a coordinator on a loopback port with real mutual TLS, and in-test
//! clients built on the generated gRPC client and `fedsec_proto::tensor`.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use fedsec_coordinator::config::DangerousConfig;
use fedsec_coordinator::{Coordinator, CoordinatorConfig, JobSpec, RunningCoordinator};
use fedsec_model::ModelSpec;
use fedsec_proto::devca::LoopbackPki;
use fedsec_proto::tensor::{digest, encode_chunks};
use fedsec_proto::v1::admin_client::AdminClient;
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::{
    GetModelRequest, GetTaskRequest, ModelHeader, RegisterRequest, SubmitUpdateRequest,
    SubmitUpdateResponse, Task, TensorChunk, UpdateHeader, UpdateTrailer, get_model_response,
    get_task_response, submit_update_request,
};
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The tenant of a test client: each test client is its own tenant (the
/// privacy unit), unless a test connects several identities of one tenant
/// with [`TestClient::connect`].
pub fn tenant_of(client_id: &str) -> String {
    format!("tenant-{client_id}")
}

/// A fresh loopback PKI (CA, server TLS for localhost) for one test.
pub fn pki() -> Arc<LoopbackPki> {
    Arc::new(LoopbackPki::generate("fedsec test CA").unwrap())
}

/// The configuration tests start from: loopback, port 0, metrics on port 0,
/// fast polling, admin "admin", and the dangerous flags tests need.
pub fn test_config(data_dir: &std::path::Path) -> CoordinatorConfig {
    let mut c = CoordinatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        admins: vec!["admin".into()],
        poll_interval_ms: 20,
        dangerous: Some(DangerousConfig {
            allow_simulation_noise: true,
            allow_disabled_noise: true,
        }),
        ..Default::default()
    };
    c.metrics.listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// A logistic-regression job over `dim - 1` features (so `dim` parameters),
/// sized for a population of 10 tenants.
pub fn job(id: &str, dim: u32, q: f64) -> JobSpec {
    let mut j = JobSpec::new(id, ModelSpec::logistic(dim - 1), q, 10);
    j.rounds = 3;
    j.min_clients = 1;
    j.round_deadline_ms = 5_000;
    j.fill_defaults();
    j
}

/// A coordinator under test with its PKI and data directory.
pub struct Harness {
    pub pki: Arc<LoopbackPki>,
    pub dir: Arc<tempfile::TempDir>,
    pub running: Option<RunningCoordinator>,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut CoordinatorConfig)) -> Self {
        let pki = pki();
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let running = Coordinator::start_with_tls(config, pki.server_tls().clone())
            .await
            .unwrap();
        Self {
            pki,
            dir,
            running: Some(running),
        }
    }

    /// Starts on a SQLite store wrapped in a fault injector, returned beside
    /// the harness so a test can make chosen store calls fail.
    pub async fn start_injected() -> (
        Self,
        Arc<
            fedsec_coordinator::store::fault::Injected<
                fedsec_coordinator::store::sqlite::SqliteStore,
            >,
        >,
    ) {
        use fedsec_coordinator::store::Store;
        use fedsec_coordinator::store::fault::Injected;
        use fedsec_coordinator::store::sqlite::SqliteStore;
        let pki = pki();
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let store = Arc::new(Injected::new(SqliteStore::open(dir.path()).unwrap()));
        let running = Coordinator::start_with_store(
            test_config(dir.path()),
            pki.server_tls().clone(),
            store.clone() as Arc<dyn Store>,
        )
        .await
        .unwrap();
        let harness = Self {
            pki,
            dir,
            running: Some(running),
        };
        (harness, store)
    }

    /// Starts again on the same data directory and PKI (after a crash or a shutdown).
    pub async fn reopen(&mut self, tweak: impl FnOnce(&mut CoordinatorConfig)) {
        assert!(
            self.running.is_none(),
            "stop or crash the coordinator first"
        );
        let mut config = test_config(self.dir.path());
        tweak(&mut config);
        self.running = Some(
            Coordinator::start_with_tls(config, self.pki.server_tls().clone())
                .await
                .unwrap(),
        );
    }

    pub fn running(&self) -> &RunningCoordinator {
        self.running.as_ref().unwrap()
    }

    /// Drops the coordinator without shutting it down (a crash).
    pub fn crash(&mut self) {
        drop(self.running.take());
    }

    pub async fn shutdown(&mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }

    pub fn endpoint(&self) -> String {
        self.running().endpoint()
    }

    /// A client that is its own tenant ([`tenant_of`]).
    pub async fn client(&self, client_id: &str) -> TestClient {
        TestClient::connect(
            &self.pki,
            &tenant_of(client_id),
            client_id,
            &self.endpoint(),
        )
    }

    /// `n` registered clients named `c000`, `c001`, ...
    pub async fn clients(&self, n: usize) -> Vec<TestClient> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let mut c = self.client(&format!("c{i:03}")).await;
            c.register().await.unwrap();
            out.push(c);
        }
        out
    }

    pub fn admin_grpc(&self, name: &str) -> AdminClient<Channel> {
        AdminClient::new(
            self.pki
                .admin_tls(name)
                .unwrap()
                .channel(&self.endpoint())
                .unwrap(),
        )
    }
}

/// A test client speaking the real protocol.
pub struct TestClient {
    pub id: String,
    pub grpc: CoordinatorClient<Channel>,
}

impl TestClient {
    pub fn connect(pki: &LoopbackPki, tenant: &str, client_id: &str, endpoint: &str) -> Self {
        let channel = pki
            .client_tls(tenant, client_id)
            .unwrap()
            .channel(endpoint)
            .unwrap();
        Self {
            id: client_id.into(),
            grpc: CoordinatorClient::new(channel),
        }
    }

    pub async fn register(&mut self) -> Result<(), Status> {
        self.grpc
            .register(RegisterRequest {
                software: "fedsec-coordinator-tests".into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn get_task(&mut self, job_id: &str) -> Result<get_task_response::Outcome, Status> {
        let r = self
            .grpc
            .get_task(GetTaskRequest {
                job_id: job_id.into(),
            })
            .await?
            .into_inner();
        Ok(r.outcome.unwrap())
    }

    /// Polls until a task arrives (panics after `timeout`).
    pub async fn wait_task(&mut self, job_id: &str, timeout: Duration) -> Task {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            match self.get_task(job_id).await.unwrap() {
                get_task_response::Outcome::Task(t) => return t,
                other => {
                    assert!(
                        tokio::time::Instant::now() < until,
                        "{}: no task within {timeout:?}, last answer {other:?}",
                        self.id
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Polls until a task for a round other than `after` (round, attempt) arrives.
    pub async fn wait_task_after(
        &mut self,
        job_id: &str,
        after: (u64, u32),
        timeout: Duration,
    ) -> Task {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let t = self.wait_task(job_id, timeout).await;
            if (t.round, t.attempt) != after {
                return t;
            }
            assert!(tokio::time::Instant::now() < until, "no new task");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Uploads `update` for `task` with `nonce` the well-formed way.
    pub async fn submit(
        &mut self,
        task: &Task,
        update: &[f32],
        nonce: &[u8],
    ) -> Result<SubmitUpdateResponse, Status> {
        self.submit_raw(update_messages(task, update, nonce)).await
    }

    /// Uploads exactly these messages.
    pub async fn submit_raw(
        &mut self,
        messages: Vec<SubmitUpdateRequest>,
    ) -> Result<SubmitUpdateResponse, Status> {
        self.grpc
            .submit_update(Request::new(tokio_stream::iter(messages)))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Downloads a model version (0: current) and checks its digest.
    pub async fn get_model(&mut self, job_id: &str, version: u64) -> (ModelHeader, Vec<f32>) {
        let mut stream = self
            .grpc
            .get_model(GetModelRequest {
                job_id: job_id.into(),
                version,
            })
            .await
            .unwrap()
            .into_inner();
        let mut header = None;
        let mut values = Vec::new();
        while let Some(m) = stream.message().await.unwrap() {
            match m.part.unwrap() {
                get_model_response::Part::Header(h) => header = Some(h),
                get_model_response::Part::Chunk(c) => {
                    for b in c.data.chunks_exact(4) {
                        values.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    }
                }
            }
        }
        let header = header.unwrap();
        assert_eq!(header.num_params as usize, values.len());
        assert_eq!(header.sha256, digest(&values).to_vec());
        (header, values)
    }
}

pub fn header_msg(task: &Task, num_params: u64, nonce: &[u8]) -> SubmitUpdateRequest {
    SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Header(UpdateHeader {
            job_id: task.job_id.clone(),
            round: task.round,
            attempt: task.attempt,
            base_version: task.base_version,
            nonce: nonce.to_vec(),
            num_params,
            within_clip: true,
        })),
    }
}

pub fn chunk_msg(data: bytes::Bytes) -> SubmitUpdateRequest {
    SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Chunk(TensorChunk { data })),
    }
}

pub fn trailer_msg(sha256: Vec<u8>) -> SubmitUpdateRequest {
    SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Trailer(UpdateTrailer {
            sha256,
        })),
    }
}

/// Header, chunks and trailer of a well-formed upload.
pub fn update_messages(task: &Task, update: &[f32], nonce: &[u8]) -> Vec<SubmitUpdateRequest> {
    let mut m = vec![header_msg(task, update.len() as u64, nonce)];
    m.extend(encode_chunks(update).map(chunk_msg));
    m.push(trailer_msg(digest(update).to_vec()));
    m
}

/// L2 norm in f64.
pub fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

/// File name of the at-rest key [`encrypt_at_rest`] creates in the data directory.
pub const AT_REST_KEY: &str = "at-rest.key";

/// Config tweak: seal the store with a key file in the data directory
/// (generated on first use, mode 0600).
pub fn encrypt_at_rest(c: &mut CoordinatorConfig) {
    let key = c.data_dir.join(AT_REST_KEY);
    if !key.exists() {
        fedsec_coordinator::store::seal::AtRestKey::generate_file(&key, false).unwrap();
    }
    c.storage.encryption_key_file = Some(key);
}

/// A channel for `tenant/client_id` with the HTTP/2 defaults (64 KiB
/// windows) instead of `ClientTls::channel`'s large ones: what a minimal
/// attacker uses, and what keeps data the server pushes from piling up in
/// the test process.
pub fn small_window_channel(
    pki: &LoopbackPki,
    tenant: &str,
    client_id: &str,
    endpoint: &str,
) -> Channel {
    let tls = pki.client_tls(tenant, client_id).unwrap();
    raw_channel(tls.rustls_config(), endpoint)
}

/// A channel over `config` (TLS 1.3 with a client certificate) with the
/// HTTP/2 default windows.
pub fn raw_channel(config: Arc<rustls::ClientConfig>, endpoint: &str) -> Channel {
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let connector = tokio_rustls::TlsConnector::from(config);
    let connect = tower::service_fn(move |_: http::Uri| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("http://localhost:{port}"))
        .unwrap()
        .connect_with_connector_lazy(connect)
}

/// Resident set size of this process, in bytes (from `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// TCP sockets the server side holds (accepted, with a file descriptor)
/// on local `port` from peer address `peer_ip` (from `/proc/net/tcp`: a
/// connection still in the kernel's accept queue has inode 0).
pub fn accepted_sockets(port: u16, peer_ip: std::net::Ipv4Addr) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let peer_hex = format!("{:08X}", u32::from_le_bytes(peer_ip.octets()));
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (local, remote, state, inode) = (f[1], f[2], f[3], f[9]);
            // 01 = ESTABLISHED
            local.ends_with(&format!(":{port:04X}"))
                && remote.starts_with(&peer_hex)
                && state == "01"
                && inode != "0"
        })
        .count()
}

/// One round: every client waits for its task after `after` (round,
/// attempt), submits a small fixed update and the last task's (round,
/// attempt) is returned.
pub async fn play_round(
    clients: &mut [TestClient],
    job_id: &str,
    after: (u64, u32),
    timeout: Duration,
) -> (u64, u32) {
    let mut at = after;
    for c in clients.iter_mut() {
        let t = c.wait_task_after(job_id, after, timeout).await;
        c.submit(&t, &[0.01, -0.02, 0.03, 0.0], b"n").await.unwrap();
        at = (t.round, t.attempt);
    }
    at
}
