//! The scripted coordinator: a test implementation of `fedsec.v1.Coordinator`
//! behind real mutual TLS, and the fixtures that run a participant against it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Recorder, builder, state_dir};
use fedsec_client::ledger::{Ledger, LedgerFile};
use fedsec_client::wire::TrainConfigWire;
use fedsec_client::{DataSource, PrivacyPolicy, RunOutcome};
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::train::TrainConfig;
use fedsec_model::ModelSpec;
use fedsec_proto::devca::LoopbackPki;
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::tensor::{TensorDecoder, digest, encode_chunks};
use fedsec_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use fedsec_proto::v1::{
    self, GetModelRequest, GetModelResponse, GetTaskRequest, GetTaskResponse, RegisterRequest,
    RegisterResponse, SubmitUpdateRequest, SubmitUpdateResponse, get_model_response,
    get_task_response, submit_update_request,
};
use rand::{RngExt, SeedableRng};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

pub const JOB: &str = "scripted";
pub const CLIP: f64 = 0.05;

/// One upload as the scripted coordinator saw it.
#[derive(Debug, Clone)]
pub struct Upload {
    pub nonce: Vec<u8>,
    pub within_clip: bool,
    pub values: Vec<f32>,
    /// The client's ledger as it was on disk when the upload arrived.
    pub ledger_at_upload: Option<LedgerFile>,
}

#[derive(Default)]
pub struct Script {
    pub spec: Option<ModelSpec>,
    pub weights: Vec<f32>,
    /// Announce this digest instead of the true one.
    pub tampered_digest: Option<Vec<u8>>,
    /// Announce this spec in the model header instead of the task's.
    pub served_spec: Option<ModelSpec>,
    /// End the job after the first download.
    pub finish_after_download: bool,
    /// Ask for client-side noise with this stddev (0: central mode).
    pub client_noise_stddev: f64,
    /// Answers to successive uploads (then: accept).
    pub upload_answers: VecDeque<Status>,
    /// Base version of the task and the served model.
    pub base_version: u64,
    /// The task's training instead of the default below.
    pub training: Option<TrainConfig>,
    /// After the first accepted upload, serve the same (job, round, attempt)
    /// again trained on these weights as version `base_version + 1`,
    /// instead of finishing.
    pub serve_again: Option<Vec<f32>>,
    pub uploads: Vec<Upload>,
    pub model_downloads: usize,
    pub finished: bool,
    pub ledger_path: Option<std::path::PathBuf>,
    /// How the served release is tampered with after it was signed (with
    /// the tests' release key, [`crate::support::release_key`]).
    pub release_tamper: Option<Tamper>,
}

/// A change to a signed release, made after signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// One weight changed, the header's digest recomputed to match it.
    Weights,
    /// A receipt attached that the signature does not cover.
    Receipt,
    /// The header's round changed.
    HeaderRound,
    /// One byte of the signature flipped.
    Signature,
    /// Signed by another key.
    WrongKey,
    /// No signature.
    Unsigned,
    /// One byte of the anchored audit head flipped.
    AuditHead,
}

#[derive(Clone)]
pub struct Scripted(pub Arc<Mutex<Script>>);

pub fn task(
    spec: &ModelSpec,
    client_noise_stddev: f64,
    base_version: u64,
    training: Option<&TrainConfig>,
) -> v1::Task {
    v1::Task {
        job_id: JOB.into(),
        round: 1,
        attempt: 1,
        base_version,
        model_spec: Some(spec.to_proto()),
        training: Some(
            training
                .cloned()
                .unwrap_or(TrainConfig {
                    epochs: 2,
                    batch_size: 16,
                    learning_rate: 0.5,
                    ..TrainConfig::default()
                })
                .to_proto(),
        ),
        clip_norm: CLIP,
        client_noise: Some(if client_noise_stddev > 0.0 {
            v1::ClientNoise {
                mode: v1::NoiseMode::Client as i32,
                stddev: client_noise_stddev,
            }
        } else {
            v1::ClientNoise {
                mode: v1::NoiseMode::Central as i32,
                stddev: 0.0,
            }
        }),
        deadline_unix_ms: 0,
        remaining_ms: 20_000,
        sampling_rate: 0.5,
        noise_multiplier: 1.0,
        delta: 1e-5,
        noise_enabled: true,
    }
}

type ModelStream = tokio_stream::Iter<std::vec::IntoIter<Result<GetModelResponse, Status>>>;

#[tonic::async_trait]
impl Coordinator for Scripted {
    async fn register(
        &self,
        _: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        Ok(Response::new(RegisterResponse {
            client_id: "client-s".into(),
            tenant_id: "tenant-s".into(),
            server_time_unix_ms: 0,
            poll_interval_ms: 20,
        }))
    }

    async fn get_task(
        &self,
        _: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        let s = self.0.lock().unwrap();
        let outcome = if s.finished {
            get_task_response::Outcome::Finished(v1::JobFinished {
                job_id: JOB.into(),
                state: "COMPLETED".into(),
                final_version: 0,
            })
        } else {
            get_task_response::Outcome::Task(task(
                s.spec.as_ref().unwrap(),
                s.client_noise_stddev,
                s.base_version,
                s.training.as_ref(),
            ))
        };
        Ok(Response::new(GetTaskResponse {
            outcome: Some(outcome),
        }))
    }

    type GetModelStream = ModelStream;

    async fn get_model(
        &self,
        _: Request<GetModelRequest>,
    ) -> Result<Response<Self::GetModelStream>, Status> {
        let mut s = self.0.lock().unwrap();
        s.model_downloads += 1;
        let spec = s.served_spec.clone().or_else(|| s.spec.clone()).unwrap();
        let sha = s
            .tampered_digest
            .clone()
            .unwrap_or_else(|| digest(&s.weights).to_vec());
        let statement = fedsec_proto::release::ReleaseStatement::new(
            JOB,
            s.base_version,
            0,
            &spec,
            digest(&s.weights),
            "",
            [7; 32],
        );
        let mut header = v1::ModelHeader {
            job_id: JOB.into(),
            version: s.base_version,
            model_spec: Some(spec.to_proto()),
            num_params: s.weights.len() as u64,
            sha256: sha,
            receipt: None,
            round: 0,
            release_signature: crate::support::release_key().sign(&statement).to_vec(),
            signing_key_id: String::new(),
            audit_head: vec![7; 32],
        };
        let mut weights = s.weights.clone();
        match s.release_tamper {
            None => {}
            Some(Tamper::Weights) => {
                weights[1] += 0.25;
                header.sha256 = digest(&weights).to_vec();
            }
            Some(Tamper::Receipt) => {
                header.receipt = Some(v1::PrivacyReceipt {
                    json: "{}".into(),
                    ..Default::default()
                });
            }
            Some(Tamper::HeaderRound) => header.round = 5,
            Some(Tamper::Signature) => header.release_signature[17] ^= 1,
            Some(Tamper::WrongKey) => {
                header.release_signature = fedsec_proto::release::ReleaseKey::from_seed([9; 32])
                    .sign(&statement)
                    .to_vec();
            }
            Some(Tamper::Unsigned) => header.release_signature.clear(),
            Some(Tamper::AuditHead) => header.audit_head[0] ^= 1,
        }
        if s.release_tamper.is_some() {
            // Whatever the client does, the job ends after this download.
            s.finished = true;
        }
        let mut out = vec![Ok(GetModelResponse {
            part: Some(get_model_response::Part::Header(header)),
        })];
        out.extend(encode_chunks(&weights).map(|data| {
            Ok(GetModelResponse {
                part: Some(get_model_response::Part::Chunk(v1::TensorChunk { data })),
            })
        }));
        if s.tampered_digest.is_some() || s.finish_after_download {
            // Whatever the client does, the job ends after this download.
            s.finished = true;
        }
        Ok(Response::new(tokio_stream::iter(out)))
    }

    async fn get_round_history(
        &self,
        _: Request<v1::GetRoundHistoryRequest>,
    ) -> Result<Response<v1::GetRoundHistoryResponse>, Status> {
        // Its receipts (none) reference no history.
        Err(Status::unimplemented("no round history in this script"))
    }

    async fn submit_update(
        &self,
        request: Request<Streaming<SubmitUpdateRequest>>,
    ) -> Result<Response<SubmitUpdateResponse>, Status> {
        let mut stream = request.into_inner();
        let Some(SubmitUpdateRequest {
            part: Some(submit_update_request::Part::Header(h)),
        }) = stream.message().await?
        else {
            return Err(Status::invalid_argument("no header"));
        };
        let ledger_at_upload = {
            let path = self.0.lock().unwrap().ledger_path.clone().unwrap();
            Ledger::read(&path).ok()
        };
        let mut values = vec![0f32; h.num_params as usize];
        let mut dec = TensorDecoder::new(&mut values);
        loop {
            match stream.message().await?.and_then(|m| m.part) {
                Some(submit_update_request::Part::Chunk(c)) => dec
                    .push(&c.data)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
                Some(submit_update_request::Part::Trailer(t)) => {
                    dec.finish(&t.sha256)
                        .map_err(|e| Status::data_loss(e.to_string()))?;
                    break;
                }
                _ => return Err(Status::invalid_argument("bad upload")),
            }
        }
        let mut s = self.0.lock().unwrap();
        s.uploads.push(Upload {
            nonce: h.nonce.clone(),
            within_clip: h.within_clip,
            values,
            ledger_at_upload,
        });
        if let Some(status) = s.upload_answers.pop_front() {
            if !matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::ResourceExhausted
            ) {
                s.finished = true;
            }
            return Err(status);
        }
        if let Some(w) = s.serve_again.take() {
            s.weights = w;
            s.base_version += 1;
        } else {
            s.finished = true;
        }
        Ok(Response::new(SubmitUpdateResponse {
            newly_accepted: true,
            round: 1,
        }))
    }
}

pub struct Fixture {
    pub script: Arc<Mutex<Script>>,
    pub recorder: Recorder,
    pub outcome: RunOutcome,
    pub ledger: LedgerFile,
    pub model: Option<Arc<fedsec_client::GlobalModel>>,
    pub _dir: tempfile::TempDir,
}

/// The scripted coordinator on a loopback port with mutual TLS.
pub struct Served {
    pub pki: Arc<LoopbackPki>,
    pub endpoint: String,
    pub script: Arc<Mutex<Script>>,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

pub async fn serve(script: Script, state: &std::path::Path) -> Served {
    let pki = crate::support::pki();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let script = Arc::new(Mutex::new(Script {
        ledger_path: Some(state.join(fedsec_client::ledger::LEDGER_FILE)),
        ..script
    }));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(CoordinatorServer::new(Scripted(script.clone())))
        .serve_with_incoming_shutdown(pki.server_tls().incoming(listener), async {
            let _ = stopped.await;
        });
    Served {
        pki,
        endpoint,
        script,
        stop,
        task: tokio::spawn(server),
    }
}

impl Served {
    /// A participant with 80 labelled rows handed in by the host.
    pub fn participant(&self, state: &std::path::Path) -> fedsec_client::Participant {
        let p = builder(
            &self.endpoint,
            self.pki.client_tls("tenant-s", "client-s").unwrap(),
            DataSource::Host,
            PrivacyPolicy::new(100.0, 1e-5),
            state,
            9,
        )
        .job(JOB)
        .build()
        .unwrap();
        let handle = p.handle();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for i in 0..80 {
            let bot = i % 3 == 0;
            let row: Vec<f32> = (0..NUM_FEATURES)
                .map(|_| rng.random_range(-1.0f32..1.0) + if bot { 0.8 } else { -0.3 })
                .collect();
            handle.add_labelled_features(&row, bot).unwrap();
        }
        p
    }

    pub async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Runs one participant against the scripted coordinator until the job ends.
pub async fn run_against(script: Script) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path(), "s");
    let served = serve(script, &state).await;
    let p = served.participant(&state);
    let handle = p.handle();
    let recorder = Recorder::start(p.subscribe());
    let ledger_path = p.ledger_path();
    let outcome = tokio::time::timeout(Duration::from_secs(60), p.run(std::future::pending()))
        .await
        .unwrap()
        .unwrap();
    let script = served.script.clone();
    served.stop().await;
    recorder.settled().await;
    Fixture {
        script,
        recorder,
        outcome,
        ledger: Ledger::read(&ledger_path).unwrap(),
        model: handle.model(),
        _dir: dir,
    }
}

pub fn honest() -> Script {
    let spec = ModelSpec::logistic(NUM_FEATURES as u32);
    Script {
        weights: spec.init_weights(5),
        spec: Some(spec),
        ..Script::default()
    }
}
