//! The participant against a scripted coordinator (a test implementation of
//! `fedsec.v1.Coordinator` behind real mutual TLS): the simplest honest way
//! to serve a model whose digest does not match, and to fail uploads on
//! purpose. Checks: a tampered model is rejected and nothing is trained or
//! sent; transient upload failures are retried with the same nonce; a
//! definitive refusal is not retried; the ledger entry exists before the
//! first upload byte; the uploaded update is clipped and its digest right.

#![allow(clippy::unwrap_used, unreachable_pub, missing_docs)]

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedsec_client::ledger::{EntryStatus, Ledger, LedgerFile};
use fedsec_client::wire::TrainConfigWire;
use fedsec_client::{DataSource, Event, PrivacyPolicy, RunOutcome, SkipReason};
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
use support::{Recorder, builder, state_dir};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

const JOB: &str = "scripted";
const CLIP: f64 = 0.05;

/// One upload as the scripted coordinator saw it.
#[derive(Debug, Clone)]
struct Upload {
    nonce: Vec<u8>,
    within_clip: bool,
    values: Vec<f32>,
    /// The client's ledger as it was on disk when the upload arrived.
    ledger_at_upload: Option<LedgerFile>,
}

#[derive(Default)]
struct Script {
    spec: Option<ModelSpec>,
    weights: Vec<f32>,
    /// Announce this digest instead of the true one.
    tampered_digest: Option<Vec<u8>>,
    /// Announce this spec in the model header instead of the task's.
    served_spec: Option<ModelSpec>,
    /// End the job after the first download.
    finish_after_download: bool,
    /// Ask for client-side noise with this stddev (0: central mode).
    client_noise_stddev: f64,
    /// Answers to successive uploads (then: accept).
    upload_answers: VecDeque<Status>,
    /// Base version of the task and the served model.
    base_version: u64,
    /// The task's training instead of the default below.
    training: Option<TrainConfig>,
    /// After the first accepted upload, serve the same (job, round, attempt)
    /// again trained on these weights as version `base_version + 1`,
    /// instead of finishing.
    serve_again: Option<Vec<f32>>,
    uploads: Vec<Upload>,
    model_downloads: usize,
    finished: bool,
    ledger_path: Option<std::path::PathBuf>,
}

#[derive(Clone)]
struct Scripted(Arc<Mutex<Script>>);

fn task(
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
        let mut out = vec![Ok(GetModelResponse {
            part: Some(get_model_response::Part::Header(v1::ModelHeader {
                job_id: JOB.into(),
                version: s.base_version,
                model_spec: Some(spec.to_proto()),
                num_params: s.weights.len() as u64,
                sha256: sha,
                receipt: None,
                round: 0,
            })),
        })];
        out.extend(encode_chunks(&s.weights).map(|data| {
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

struct Fixture {
    script: Arc<Mutex<Script>>,
    recorder: Recorder,
    outcome: RunOutcome,
    ledger: LedgerFile,
    model: Option<Arc<fedsec_client::GlobalModel>>,
    _dir: tempfile::TempDir,
}

/// The scripted coordinator on a loopback port with mutual TLS.
struct Served {
    pki: Arc<LoopbackPki>,
    endpoint: String,
    script: Arc<Mutex<Script>>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn serve(script: Script, state: &std::path::Path) -> Served {
    let pki = support::pki();
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
    fn participant(&self, state: &std::path::Path) -> fedsec_client::Participant {
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

    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

/// Runs one participant against the scripted coordinator until the job ends.
async fn run_against(script: Script) -> Fixture {
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

fn honest() -> Script {
    let spec = ModelSpec::logistic(NUM_FEATURES as u32);
    Script {
        weights: spec.init_weights(5),
        spec: Some(spec),
        ..Script::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_whose_digest_does_not_match_is_rejected() {
    let mut script = honest();
    let mut other = script.weights.clone();
    other[3] += 1e-3;
    script.tampered_digest = Some(digest(&other).to_vec());
    let f = run_against(script).await;
    assert!(matches!(f.outcome, RunOutcome::JobFinished { .. }));
    let reasons: Vec<SkipReason> = f
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Skipped { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    match &reasons[0] {
        SkipReason::ModelRejected(m) => assert!(m.contains("digest does not match"), "{m}"),
        other => panic!("{other:?}"),
    }
    let s = f.script.lock().unwrap();
    assert!(s.uploads.is_empty(), "nothing was sent");
    assert!(f.ledger.entries.is_empty(), "nothing was recorded");
    assert_eq!(
        f.recorder.count(|e| matches!(e, Event::Trained { .. })),
        0,
        "nothing was trained"
    );
    assert!(
        f.model.is_none(),
        "the tampered model is not used for scoring"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_of_another_architecture_is_rejected() {
    let mut script = honest();
    // The task trains logistic(38); the download is an MLP (correct digest).
    let mlp = ModelSpec::mlp(NUM_FEATURES as u32, [4]);
    script.weights = mlp.init_weights(1);
    script.served_spec = Some(mlp);
    script.finish_after_download = true;
    let f = run_against(script).await;
    let rejected = f.recorder.events().into_iter().find_map(|e| match e {
        Event::Skipped {
            reason: SkipReason::ModelRejected(m),
            ..
        } => Some(m),
        _ => None,
    });
    let m = rejected.unwrap();
    assert!(m.contains("but the task trains"), "{m}");
    assert!(f.script.lock().unwrap().uploads.is_empty());
    assert!(f.ledger.entries.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_upload_failures_are_retried_with_the_same_nonce() {
    let mut script = honest();
    script.upload_answers = VecDeque::from([
        Status::unavailable("coordinator restarting"),
        Status::unavailable("coordinator restarting"),
    ]);
    let f = run_against(script).await;
    assert!(matches!(f.outcome, RunOutcome::JobFinished { .. }));
    let s = f.script.lock().unwrap();
    assert_eq!(s.uploads.len(), 3);
    let nonce = &s.uploads[0].nonce;
    assert_eq!(nonce.len(), 16);
    assert!(s.uploads.iter().all(|u| &u.nonce == nonce), "same nonce");
    assert!(
        s.uploads.iter().all(|u| u.values == s.uploads[0].values),
        "same update"
    );
    // One download for the task (retries do not download again), one look
    // for a final model when the job finished; the update is clipped to C,
    // honestly flagged.
    assert_eq!(s.model_downloads, 2);
    let u = &s.uploads[0];
    let norm = fedsec_privacy::l2_norm(&u.values).unwrap();
    assert!(norm <= CLIP, "{norm}");
    let trained = f
        .recorder
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::Trained { report, .. } => Some(report),
            _ => None,
        })
        .unwrap();
    assert_eq!(u.within_clip, trained.update_norm <= CLIP);
    assert!(
        trained.clipped,
        "lr 0.5 for 2 epochs moves more than C = {CLIP}"
    );
    // Recorded before the first byte went out, with that nonce.
    let before = u.ledger_at_upload.as_ref().unwrap();
    assert_eq!(before.entries.len(), 1);
    assert_eq!(before.entries[0].status, EntryStatus::Recorded);
    assert_eq!(before.entries[0].nonce, hex::encode(nonce));
    // Accepted afterwards; retries were reported.
    assert_eq!(f.ledger.entries.len(), 1);
    assert_eq!(f.ledger.entries[0].status, EntryStatus::Accepted);
    let submitted = f.recorder.events().into_iter().find_map(|e| match e {
        Event::Submitted { attempts, .. } => Some(attempts),
        _ => None,
    });
    assert_eq!(submitted, Some(3));
    assert_eq!(
        f.recorder.count(|e| matches!(
            e,
            Event::Retrying {
                operation: "SubmitUpdate",
                ..
            }
        )),
        2
    );
    // The model used for scoring is the verified one.
    assert_eq!(f.model.unwrap().weights, s.weights);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_upload_waits_as_long_as_the_coordinator_asks() {
    let limited = |ms: &'static str| {
        let mut s = Status::resource_exhausted("rate_limited: SubmitUpdate");
        s.metadata_mut()
            .insert(fedsec_proto::RETRY_AFTER_MS_METADATA, ms.parse().unwrap());
        s
    };
    let mut script = honest();
    // The test timing backs off 15–30 ms after a first failure, at most 300 ms.
    script.upload_answers = VecDeque::from([limited("250"), limited("3600000")]);
    let f = run_against(script).await;
    assert!(matches!(f.outcome, RunOutcome::JobFinished { .. }));
    assert_eq!(f.script.lock().unwrap().uploads.len(), 3);
    let delays: Vec<u64> = f
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Retrying {
                operation: "SubmitUpdate",
                delay_ms,
                ..
            } => Some(delay_ms),
            _ => None,
        })
        .collect();
    // The hint when it is longer than the backoff; capped at backoff_max.
    assert_eq!(delays, vec![250, 300]);
    assert_eq!(f.ledger.entries[0].status, EntryStatus::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definitive_refusal_is_not_retried_and_still_counts() {
    let mut script = honest();
    script.upload_answers = VecDeque::from([Status::permission_denied(
        "client \"client-s\" was not selected for round 1 attempt 1",
    )]);
    let f = run_against(script).await;
    let s = f.script.lock().unwrap();
    assert_eq!(s.uploads.len(), 1, "not retried");
    let rejected = f.recorder.events().into_iter().find_map(|e| match e {
        Event::SubmitRejected { message, .. } => Some(message),
        _ => None,
    });
    assert!(rejected.unwrap().contains("not selected"));
    assert_eq!(f.ledger.entries.len(), 1);
    assert_eq!(f.ledger.entries[0].status, EntryStatus::Rejected);
    assert!(f.ledger.entries[0].detail.contains("not selected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_after_recording_neither_loses_nor_doubles_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path(), "crash");
    let mut script = honest();
    // The first upload fails, so the first process is mid-retry when it dies.
    script.upload_answers = VecDeque::from([Status::unavailable("busy")]);
    let served = serve(script, &state).await;

    let p = served.participant(&state);
    let mut rx = p.subscribe();
    let run = tokio::spawn(p.run(std::future::pending()));
    support::wait_for(&mut rx, "the ledger entry", |e| {
        matches!(e, Event::Recorded { .. })
    })
    .await;
    // The process "dies" right after recording (no shutdown, no cleanup).
    run.abort();
    let _ = run.await;
    let after_crash = Ledger::read(&state.join(fedsec_client::ledger::LEDGER_FILE)).unwrap();
    assert_eq!(after_crash.entries.len(), 1, "recorded before the upload");

    // A new process on the same state directory serves the same task again.
    let p = served.participant(&state);
    let rec = Recorder::start(p.subscribe());
    let outcome = tokio::time::timeout(Duration::from_secs(60), p.run(std::future::pending()))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, RunOutcome::JobFinished { .. }));
    rec.settled().await;
    let ledger = Ledger::read(&state.join(fedsec_client::ledger::LEDGER_FILE)).unwrap();
    assert_eq!(ledger.entries.len(), 1, "not recorded twice");
    assert_eq!(ledger.entries[0].status, EntryStatus::Accepted);
    assert_eq!(ledger.entries[0].nonce, after_crash.entries[0].nonce);
    {
        let s = served.script.lock().unwrap();
        assert!(!s.uploads.is_empty());
        let nonce = hex::encode(&s.uploads[0].nonce);
        assert!(
            s.uploads.iter().all(|u| hex::encode(&u.nonce) == nonce),
            "both processes used the recorded nonce"
        );
        assert_eq!(nonce, ledger.entries[0].nonce);
    }
    assert_eq!(rec.count(|e| matches!(e, Event::Submitted { .. })), 1);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_noise_mode_adds_the_tasks_noise_after_clipping() {
    let mut script = honest();
    script.client_noise_stddev = 0.5;
    let f = run_against(script).await;
    let s = f.script.lock().unwrap();
    assert_eq!(s.uploads.len(), 1);
    // Clipped to C = 0.05, then N(0, 0.5²) per coordinate over 52 values:
    // the norm is about 0.5·√52 ≈ 3.6, far above C.
    let norm = fedsec_privacy::l2_norm(&s.uploads[0].values).unwrap();
    assert!(norm > 1.5 && norm < 5.0, "{norm}");
    let trained = f
        .recorder
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::Trained { report, .. } => Some(report),
            _ => None,
        })
        .unwrap();
    assert_eq!(trained.client_noise_stddev, 0.5);
    assert_eq!(f.ledger.entries[0].client_noise_stddev, 0.5);
    assert_eq!(f.ledger.entries[0].status, EntryStatus::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_served_again_with_another_base_version_is_a_new_ledger_charge() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path(), "again");
    let mut script = honest();
    let spec = script.spec.clone().unwrap();
    script.serve_again = Some(spec.init_weights(77));
    let served = serve(script, &state).await;

    // First process: trains and uploads round 1 attempt 1 once; the same
    // task served again (now on version 1) is not trained again in-process.
    let p = served.participant(&state);
    let mut rx = p.subscribe();
    let rec = Recorder::start(p.subscribe());
    let run = tokio::spawn(p.run(std::future::pending()));
    support::wait_for(&mut rx, "the first upload", |e| {
        matches!(e, Event::Submitted { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.count(|e| matches!(e, Event::Trained { .. })), 1);
    run.abort();
    let _ = run.await;
    let first = Ledger::read(&state.join(fedsec_client::ledger::LEDGER_FILE)).unwrap();
    assert_eq!(first.entries.len(), 1);

    // Restarted, it is served (job, round 1, attempt 1) on version 1: that
    // is another contribution, so it is recorded — and charged — again.
    let p = served.participant(&state);
    let rec = Recorder::start(p.subscribe());
    let outcome = tokio::time::timeout(Duration::from_secs(60), p.run(std::future::pending()))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, RunOutcome::JobFinished { .. }));
    rec.settled().await;
    let ledger = Ledger::read(&state.join(fedsec_client::ledger::LEDGER_FILE)).unwrap();
    assert_eq!(ledger.entries.len(), 2, "{:?}", ledger.entries);
    let (a, b) = (&ledger.entries[0], &ledger.entries[1]);
    assert_eq!((a.round, a.attempt, b.round, b.attempt), (1, 1, 1, 1));
    assert_eq!((a.base_version, b.base_version), (0, 1));
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.update_sha256, b.update_sha256);
    assert!(
        ledger
            .entries
            .iter()
            .all(|e| e.status == EntryStatus::Accepted)
    );
    // The second entry's ε is two unamplified Gaussian steps (z = 1).
    use fedsec_privacy::{Accountant, Mechanism, PldAccountant};
    let two = PldAccountant
        .epsilon(
            &[(
                Mechanism {
                    sampling_rate: 1.0,
                    noise_multiplier: 1.0,
                },
                2,
            )],
            1e-5,
        )
        .unwrap();
    assert_eq!(b.epsilon_after, Some(two));
    {
        let s = served.script.lock().unwrap();
        assert_eq!(s.uploads.len(), 2);
        assert_ne!(s.uploads[0].nonce, s.uploads[1].nonce);
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_would_expose_a_few_sessions_is_refused_before_training() {
    // batch_size 1 and one step: the update would be one session's gradient.
    let mut script = honest();
    script.training = Some(TrainConfig {
        epochs: 1,
        batch_size: 1,
        learning_rate: 0.5,
        max_steps: 1,
        ..TrainConfig::default()
    });
    script.finish_after_download = true;
    let f = run_against(script).await;
    let reason = f
        .recorder
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::Skipped { reason, .. } => Some(reason),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        reason,
        SkipReason::BatchSizeBelowFloor {
            batch_size: 1,
            floor: 16
        }
    );
    assert_eq!(f.recorder.count(|e| matches!(e, Event::Trained { .. })), 0);
    assert!(f.script.lock().unwrap().uploads.is_empty());
    assert!(f.ledger.entries.is_empty());
}
