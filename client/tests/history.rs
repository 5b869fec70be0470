//! Receipts that reference their round history (issue 16, bounded growth),
//! against a coordinator the test controls (a `fedsec.v1.Coordinator`
//! behind real mutual TLS): the client fetches the history page by page,
//! checks it against the receipt's digest and verifies the receipt; an
//! attacker that serves a tampered page, too many rounds, a short history or
//! a reference to an absurd number of rounds gets its receipt refused with a
//! clear reason; the next version's check fetches only the new rounds.

#![allow(clippy::unwrap_used, unreachable_pub, missing_docs)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedsec_client::rpc::Rpc;
use fedsec_model::ModelSpec;
use fedsec_privacy::{HistoryChain, PrivacyReceipt, ReceiptSummary, RoundCharge};
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::tensor::{digest, encode_chunks};
use fedsec_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use fedsec_proto::v1::{
    self, GetModelRequest, GetModelResponse, GetRoundHistoryRequest, GetRoundHistoryResponse,
    GetTaskRequest, GetTaskResponse, RegisterRequest, RegisterResponse, SubmitUpdateRequest,
    SubmitUpdateResponse, get_model_response,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

const JOB: &str = "long";

/// How the coordinator under test lies.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lie {
    None,
    /// Round 1500 served with a larger noise multiplier (a smaller ε).
    TamperedPage,
    /// Every page holds twice what was asked for.
    OversizedPages,
    /// The history stops 10 rounds short of the receipt.
    ShortHistory,
    /// The receipt references 10^9 rounds.
    HugeReference,
    /// Honest, but every other page call is rate limited (retry after 20 ms).
    RateLimited,
}

struct State {
    /// The job's whole history; the receipt covers the first `covered` rounds.
    history: Vec<RoundCharge>,
    covered: usize,
    lie: Lie,
    /// Rounds served by GetRoundHistory so far.
    rounds_served: usize,
    pages: usize,
    /// Page calls seen by [`Lie::RateLimited`].
    limited: usize,
}

impl State {
    /// A coordinator whose job has `rounds` rounds, `covered` of them in the
    /// receipt, telling `lie`; nothing served yet.
    fn new(rounds: u64, covered: usize, lie: Lie) -> Self {
        Self {
            history: history(rounds),
            covered,
            lie,
            rounds_served: 0,
            pages: 0,
            limited: 0,
        }
    }
}

#[derive(Clone)]
struct Hostile(Arc<Mutex<State>>);

fn charge(round: u64) -> RoundCharge {
    RoundCharge {
        round,
        sampling_rate: 0.01,
        noise_multiplier: 1.2,
        clip_norm: 1.0,
        sensitivity: 1.0 + 1e-9,
        count_stddev: 0.0,
        expected_cohort: 100.0,
        committed_unix_ms: 1_700_000_000_000 + round as i64,
    }
}

fn wire(c: &RoundCharge) -> v1::RoundCharge {
    v1::RoundCharge {
        round: c.round,
        sampling_rate: c.sampling_rate,
        noise_multiplier: c.noise_multiplier,
        clip_norm: c.clip_norm,
        sensitivity: c.sensitivity,
        count_stddev: c.count_stddev,
        expected_cohort: c.expected_cohort,
        committed_unix_ms: c.committed_unix_ms,
    }
}

/// The receipt a coordinator publishes for `history`: summary JSON only.
fn receipt(history: &[RoundCharge], lie: Lie) -> v1::PrivacyReceipt {
    let full = PrivacyReceipt::compute(history.to_vec(), 1e-5).unwrap();
    let mut summary = ReceiptSummary::of(&full).unwrap();
    if lie == Lie::HugeReference {
        summary.history.as_mut().unwrap().rounds = 1_000_000_000;
    }
    let chain = HistoryChain::of(history).unwrap();
    v1::PrivacyReceipt {
        mechanism: full.mechanism,
        neighbouring: full.neighbouring,
        delta: full.delta,
        epsilon_pld: full.epsilon_pld,
        epsilon_rdp: full.epsilon_rdp,
        rounds: Vec::new(),
        accountant_versions: full.accountant_versions,
        empirical_audit: None,
        json: serde_json::to_string(&summary).unwrap(),
        history_rounds: history.len() as u64,
        history_sha256: chain.digest().to_vec(),
    }
}

const WEIGHTS: [f32; 4] = [0.1, -0.2, 0.3, 0.0];

fn spec() -> ModelSpec {
    ModelSpec::logistic(3)
}

#[tonic::async_trait]
impl Coordinator for Hostile {
    async fn register(
        &self,
        _: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn get_task(
        &self,
        _: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    type GetModelStream = tokio_stream::Iter<std::vec::IntoIter<Result<GetModelResponse, Status>>>;

    async fn get_model(
        &self,
        _: Request<GetModelRequest>,
    ) -> Result<Response<Self::GetModelStream>, Status> {
        let s = self.0.lock().unwrap();
        // Signed with the tests' release key: this coordinator's lies are
        // in the history it serves, which the receipt names by digest.
        let receipt = receipt(&s.history[..s.covered], s.lie);
        let statement = fedsec_proto::release::ReleaseStatement::new(
            JOB,
            s.covered as u64,
            s.covered as u64,
            &spec(),
            digest(&WEIGHTS),
            &receipt.json,
            [7; 32],
        );
        let mut out = vec![Ok(GetModelResponse {
            part: Some(get_model_response::Part::Header(v1::ModelHeader {
                job_id: JOB.into(),
                version: s.covered as u64,
                model_spec: Some(spec().to_proto()),
                num_params: WEIGHTS.len() as u64,
                sha256: digest(&WEIGHTS).to_vec(),
                receipt: Some(receipt),
                round: s.covered as u64,
                release_signature: support::release_key().sign(&statement).to_vec(),
                signing_key_id: String::new(),
                audit_head: vec![7; 32],
            })),
        })];
        out.extend(encode_chunks(&WEIGHTS).map(|data| {
            Ok(GetModelResponse {
                part: Some(get_model_response::Part::Chunk(v1::TensorChunk { data })),
            })
        }));
        Ok(Response::new(tokio_stream::iter(out)))
    }

    async fn get_round_history(
        &self,
        request: Request<GetRoundHistoryRequest>,
    ) -> Result<Response<GetRoundHistoryResponse>, Status> {
        let r = request.into_inner();
        let mut s = self.0.lock().unwrap();
        if s.lie == Lie::RateLimited {
            s.limited += 1;
            if s.limited % 2 == 1 {
                let mut status = Status::resource_exhausted("rate_limited: GetModel");
                status
                    .metadata_mut()
                    .insert("retry-after-ms", "20".parse().unwrap());
                return Err(status);
            }
        }
        let mut want = r.max_rounds as usize;
        if s.lie == Lie::OversizedPages {
            want *= 2;
        }
        let end = match s.lie {
            Lie::ShortHistory => s.covered - 10,
            _ => s.history.len(),
        };
        let first = r.first_round as usize;
        let mut page: Vec<RoundCharge> = s
            .history
            .iter()
            .take(end)
            .skip(first - 1)
            .take(want)
            .copied()
            .collect();
        if s.lie == Lie::TamperedPage {
            for c in &mut page {
                if c.round == 1500 {
                    c.noise_multiplier = 40.0;
                }
            }
        }
        s.rounds_served += page.len();
        s.pages += 1;
        Ok(Response::new(GetRoundHistoryResponse {
            rounds: page.iter().map(wire).collect(),
            rounds_committed: s.history.len() as u64,
        }))
    }

    async fn submit_update(
        &self,
        _: Request<Streaming<SubmitUpdateRequest>>,
    ) -> Result<Response<SubmitUpdateResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

/// The coordinator under test on a loopback port, and a client connection.
async fn serve(state: State) -> (Arc<Mutex<State>>, Rpc, tokio::sync::oneshot::Sender<()>) {
    let pki = support::pki();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let state = Arc::new(Mutex::new(state));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(CoordinatorServer::new(Hostile(state.clone())))
        .serve_with_incoming_shutdown(pki.server_tls().incoming(listener), async {
            let _ = stopped.await;
        });
    tokio::spawn(server);
    let rpc = Rpc::new(
        pki.client_tls("tenant-h", "client-h").unwrap(),
        &endpoint,
        Duration::from_secs(30),
    )
    .unwrap()
    .with_release_key(support::release_key().public());
    (state, rpc, stop)
}

fn history(n: u64) -> Vec<RoundCharge> {
    (1..=n).map(charge).collect()
}

#[tokio::test]
async fn a_referenced_history_is_fetched_checked_and_verified_then_extended() {
    // 40,000 rounds: three pages of at most 16,384.
    let (state, rpc, stop) = serve(State::new(40_010, 40_000, Lie::None)).await;
    let d = rpc
        .download_model(JOB, 0, None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.receipt_problem, None);
    let r = d.receipt.unwrap();
    assert_eq!(r.rounds.len(), 40_000);
    assert_eq!(r.rounds, history(40_000));
    r.verify().unwrap();
    {
        let s = state.lock().unwrap();
        assert_eq!((s.pages, s.rounds_served), (3, 40_000));
    }
    // The next version covers 10 more rounds: only those are fetched.
    state.lock().unwrap().covered = 40_010;
    let d = rpc
        .download_model(JOB, 0, None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.receipt.unwrap().rounds.len(), 40_010);
    {
        let s = state.lock().unwrap();
        assert_eq!((s.pages, s.rounds_served), (4, 40_010));
    }
    let _ = stop.send(());
}

#[tokio::test]
async fn a_coordinator_serving_a_history_that_does_not_match_is_refused() {
    for (lie, expect) in [
        (Lie::TamperedPage, "does not match the receipt's digest"),
        (Lie::OversizedPages, "the coordinator sent"),
        (Lie::ShortHistory, "ends at round 2990"),
        (Lie::HugeReference, "more than this client accepts"),
    ] {
        let (state, rpc, stop) = serve(State::new(6_000, 3_000, lie)).await;
        let d = rpc
            .download_model(JOB, 0, None, None)
            .await
            .unwrap()
            .unwrap();
        assert!(d.receipt.is_none(), "{lie:?}: a refused history verified");
        let problem = d.receipt_problem.unwrap();
        assert!(
            problem.contains("round history is refused") && problem.contains(expect),
            "{lie:?}: {problem}"
        );
        if lie == Lie::HugeReference {
            assert_eq!(state.lock().unwrap().pages, 0, "nothing fetched for it");
        }
        let _ = stop.send(());
    }
}

#[tokio::test]
async fn a_tampered_page_is_refused_even_after_a_verified_prefix() {
    // A verified history of 1,000 rounds is cached; the next receipt's
    // history is served with a changed round inside the new part.
    let (state, rpc, stop) = serve(State::new(3_000, 1_000, Lie::None)).await;
    let d = rpc
        .download_model(JOB, 0, None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(d.receipt.is_some());
    {
        let mut s = state.lock().unwrap();
        s.covered = 3_000;
        s.lie = Lie::TamperedPage;
    }
    let d = rpc
        .download_model(JOB, 0, None, None)
        .await
        .unwrap()
        .unwrap();
    assert!(d.receipt.is_none());
    assert!(
        d.receipt_problem
            .as_deref()
            .unwrap()
            .contains("does not match the receipt's digest")
    );
    let _ = stop.send(());
}

#[tokio::test]
async fn rate_limited_pages_are_waited_out_not_restarted() {
    let (state, rpc, stop) = serve(State::new(40_000, 40_000, Lie::RateLimited)).await;
    let d = rpc
        .download_model(JOB, 0, None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.receipt_problem, None);
    assert_eq!(d.receipt.unwrap().rounds.len(), 40_000);
    let s = state.lock().unwrap();
    // Three pages served, three refusals waited out, nothing fetched twice.
    assert_eq!((s.pages, s.limited, s.rounds_served), (3, 6, 40_000));
    drop(s);
    let _ = stop.send(());
}
