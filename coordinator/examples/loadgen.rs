//! Load generator for a running coordinator: N clients from a development
//! PKI (`fedsec-coordinator certs init`), each on its own mTLS connection,
//! register, then every round all selected clients upload one update
//! concurrently. Used by `benches/scripts/coordinator_rss.sh`.
//!
//! ```sh
//! cargo run --release -p fedsec-coordinator --example loadgen -- \
//!     --pki pki --endpoint https://localhost:7443 --job rss --clients 100 --rounds 3
//! ```
//!
//! All clients send the same update (the chunks are shared), so the load
//! generator's own memory stays small whatever N is.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fedsec_proto::devca::DevPkiManifest;
use fedsec_proto::tensor::{digest, encode_chunks};
use fedsec_proto::tls::ClientTls;
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::{
    GetTaskRequest, RegisterRequest, SubmitUpdateRequest, TensorChunk, UpdateHeader, UpdateTrailer,
    get_task_response, submit_update_request,
};
use rand::{RngExt, SeedableRng};

#[derive(Debug, Parser)]
struct Args {
    /// PKI directory written by `certs init`.
    #[arg(long)]
    pki: PathBuf,
    /// Coordinator endpoint.
    #[arg(long)]
    endpoint: String,
    /// Job id.
    #[arg(long)]
    job: String,
    /// Clients to use (the first N of the PKI).
    #[arg(long)]
    clients: usize,
    /// Rounds to take part in.
    #[arg(long, default_value_t = 3)]
    rounds: u64,
}

/// One update shared by every client: chunks, digest, dimension.
type Payload = (Vec<bytes::Bytes>, Vec<u8>, usize);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    fedsec_proto::tls::install_default_crypto_provider();
    let manifest = DevPkiManifest::load(&args.pki)?;
    assert!(
        manifest.clients.len() >= args.clients,
        "not enough client certificates"
    );
    let mut clients = Vec::with_capacity(args.clients);
    for entry in manifest.clients.iter().take(args.clients) {
        let tls = ClientTls::from_files(&manifest.client_files(entry))?;
        let mut c =
            CoordinatorClient::new(tls.channel(&args.endpoint)?).max_decoding_message_size(8 << 20);
        c.register(RegisterRequest {
            software: "loadgen".into(),
        })
        .await?;
        clients.push(c);
    }
    eprintln!("loadgen: {} clients registered", clients.len());
    let mut shared: Option<Arc<Payload>> = None;
    let started = Instant::now();
    let mut last_round = 0;
    while last_round < args.rounds {
        // Every client polls for its task of the next round.
        let mut handles = Vec::with_capacity(clients.len());
        for (i, c) in clients.iter().enumerate() {
            let mut c = c.clone();
            let job = args.job.clone();
            handles.push(tokio::spawn(async move {
                let until = Instant::now() + Duration::from_secs(600);
                loop {
                    let r = c
                        .get_task(GetTaskRequest {
                            job_id: job.clone(),
                        })
                        .await
                        .map(|r| r.into_inner().outcome);
                    match r {
                        Ok(Some(get_task_response::Outcome::Task(t))) if t.round > last_round => {
                            return Some((i, t));
                        }
                        Ok(Some(get_task_response::Outcome::Finished(_))) => return None,
                        _ => {}
                    }
                    if Instant::now() > until {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
        let mut tasks = Vec::new();
        for h in handles {
            if let Some(t) = h.await? {
                tasks.push(t);
            }
        }
        if tasks.is_empty() {
            break;
        }
        let round = tasks[0].1.round;
        let dim = tasks[0]
            .1
            .model_spec
            .as_ref()
            .map(|s| {
                <fedsec_model::ModelSpec as fedsec_proto::model::ModelSpecWire>::from_proto(s)
                    .unwrap()
                    .num_params()
            })
            .unwrap();
        let payload = match &shared {
            Some(p) if p.2 == dim => p.clone(),
            _ => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
                let scale = 0.5 / (dim as f32).sqrt();
                let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-scale..scale)).collect();
                let p = Arc::new((encode_chunks(&v).collect(), digest(&v).to_vec(), dim));
                shared = Some(p.clone());
                p
            }
        };
        let t0 = Instant::now();
        let mut uploads = Vec::with_capacity(tasks.len());
        for (i, task) in tasks {
            let mut c = clients[i].clone();
            let payload = payload.clone();
            uploads.push(tokio::spawn(async move {
                let mut msgs = Vec::with_capacity(payload.0.len() + 2);
                msgs.push(SubmitUpdateRequest {
                    part: Some(submit_update_request::Part::Header(UpdateHeader {
                        job_id: task.job_id.clone(),
                        round: task.round,
                        attempt: task.attempt,
                        base_version: task.base_version,
                        nonce: format!("{i}-{}", task.round).into_bytes(),
                        num_params: payload.2 as u64,
                        within_clip: true,
                    })),
                });
                for chunk in &payload.0 {
                    msgs.push(SubmitUpdateRequest {
                        part: Some(submit_update_request::Part::Chunk(TensorChunk {
                            data: chunk.clone(),
                        })),
                    });
                }
                msgs.push(SubmitUpdateRequest {
                    part: Some(submit_update_request::Part::Trailer(UpdateTrailer {
                        sha256: payload.1.clone(),
                    })),
                });
                c.submit_update(tokio_stream::iter(msgs)).await
            }));
        }
        let n = uploads.len();
        let mut failed = 0;
        for u in uploads {
            if u.await?.is_err() {
                failed += 1;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let bytes = (n * dim * 4) as f64;
        eprintln!(
            "loadgen: round {round}: {n} uploads ({failed} failed) of {dim} values in {secs:.2} s: {:.1} updates/s, {:.3} GB/s",
            n as f64 / secs,
            bytes / secs / 1e9
        );
        last_round = round;
    }
    eprintln!("loadgen: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
