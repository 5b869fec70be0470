//! The Admin service over mTLS (who may call it, jobs, clients, ledger,
//! models, rollback, export), Prometheus `/metrics`, gRPC health and
//! reflection.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_coordinator::export::from_safetensors;
use fedsec_model::ModelSpec;
use fedsec_privacy::PrivacyReceipt;
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::v1::{
    self, ClientActionRequest, CreateJobRequest, ExportModelRequest, JobRef,
    ListAuditEventsRequest, ListClientsRequest, ListJobsRequest, RollbackModelRequest,
    get_task_response,
};
use support::{Harness, TestClient, job};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const T: Duration = Duration::from_secs(20);

async fn run_round(clients: &mut [TestClient], job_id: &str, v: f32) {
    for c in clients.iter_mut() {
        let t = c.wait_task(job_id, T).await;
        c.submit(&t, &[v; 4], b"n").await.unwrap();
    }
}

#[tokio::test]
async fn admin_service_end_to_end() {
    let h = Harness::start().await;
    let mut clients = h.clients(2).await;
    let mut admin = h.admin_grpc("admin");

    // Only listed admins.
    let mut intruder = h.admin_grpc("mallory");
    assert_eq!(
        intruder
            .list_jobs(ListJobsRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let mut as_client = v1::admin_client::AdminClient::new(
        h.pki
            .client_tls(&support::tenant_of("c000"), "c000")
            .unwrap()
            .channel(&h.endpoint())
            .unwrap(),
    );
    assert_eq!(
        as_client
            .list_jobs(ListJobsRequest {})
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // Create over the wire: zero fields take defaults; bad ones name the key.
    let bad = v1::JobConfig {
        job_id: "adm".into(),
        model_spec: Some(ModelSpec::logistic(3).to_proto()),
        sampling: Some(v1::job_config::Sampling::SamplingRate(1.0)),
        clipping: Some(v1::ClippingConfig {
            clip_norm: -1.0,
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = admin
        .create_job(CreateJobRequest {
            config: Some(bad.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("config.clipping.clip_norm"),
        "{}",
        e.message()
    );
    let sim = v1::JobConfig {
        noise_source: "simulation".into(),
        clipping: None,
        rounds: 5,
        min_clients: 2,
        population: 4,
        round_deadline_ms: 10_000,
        noise: Some(v1::job_config::Noise::NoiseMultiplier(1.0)),
        ..bad
    };
    let created = admin
        .create_job(CreateJobRequest {
            config: Some(sim.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.job_id, "adm");
    assert_eq!(created.state, v1::JobState::Running as i32);
    let cfg = created.config.unwrap();
    assert_eq!(cfg.delta, 1e-5);
    assert_eq!(cfg.clipping.unwrap().clip_norm, 1.0);
    assert_eq!(
        admin
            .create_job(CreateJobRequest { config: Some(sim) })
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );

    // Two rounds.
    run_round(&mut clients, "adm", 0.1).await;
    h.running()
        .admin()
        .wait_for_job("adm", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    run_round(&mut clients, "adm", 0.2).await;
    let j2 = h
        .running()
        .admin()
        .wait_for_job("adm", T, |j| j.rounds_completed == 2)
        .await
        .unwrap();
    let eps2 = j2.epsilon_pld;

    // Pause: GetTask says retry; resume.
    let paused = admin
        .pause_job(JobRef {
            job_id: "adm".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.state, v1::JobState::Paused as i32);
    match clients[0].get_task("adm").await.unwrap() {
        get_task_response::Outcome::Retry(r) => assert_eq!(r.reason, "job paused"),
        other => panic!("{other:?}"),
    }
    admin
        .resume_job(JobRef {
            job_id: "adm".into(),
        })
        .await
        .unwrap();

    // Clients: last seen, rounds participated.
    let listed = admin
        .list_clients(ListClientsRequest {})
        .await
        .unwrap()
        .into_inner()
        .clients;
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|c| c.rounds_participated == 2 && c.last_seen_unix_ms > 0)
    );
    assert_eq!(listed[0].software, "fedsec-coordinator-tests");

    // Models and rollback: ε spent stays spent, the ledger says so.
    let models = admin
        .list_models(JobRef {
            job_id: "adm".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(models.len(), 3);
    assert!(models[2].current);
    let rolled = admin
        .rollback_model(RollbackModelRequest {
            job_id: "adm".into(),
            version: 1,
            reason: "bad round".into(),
            before_client_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rolled.current_version, 1);
    assert_eq!(rolled.epsilon_pld, eps2, "spent stays spent");
    let ledger = admin
        .list_ledger(JobRef {
            job_id: "adm".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let last = ledger.last().unwrap();
    assert_eq!(last.kind, v1::LedgerEntryKind::Rollback as i32);
    assert_eq!((last.seq, last.model_version), (3, 1));
    assert_eq!(last.epsilon_pld, eps2);
    assert!(last.note.contains("bad round"));
    let (header, _) = clients[0].get_model("adm", 0).await;
    assert_eq!(header.version, 1);
    // The next round trains on version 1 and publishes version 3 with every
    // charged round in its receipt.
    let t = clients[0].wait_task("adm", T).await;
    assert_eq!((t.round, t.base_version), (3, 1));
    clients[0].submit(&t, &[0.3; 4], b"n").await.unwrap();
    let t = clients[1].wait_task("adm", T).await;
    clients[1].submit(&t, &[0.3; 4], b"n").await.unwrap();
    let j3 = h
        .running()
        .admin()
        .wait_for_job("adm", T, |j| j.rounds_completed == 3)
        .await
        .unwrap();
    assert_eq!(j3.current_version, 3);
    assert!(j3.epsilon_pld > eps2);

    // Export: safetensors with the spec and the receipt.
    let mut stream = admin
        .export_model(ExportModelRequest {
            job_id: "adm".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut file = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        file.extend_from_slice(&c.data);
    }
    let (weights, meta) = from_safetensors(&ModelSpec::logistic(3), &file).unwrap();
    let (_, served) = clients[0].get_model("adm", 0).await;
    assert_eq!(weights, served);
    assert_eq!(meta["version"], "3");
    let receipt: PrivacyReceipt = serde_json::from_str(&meta["privacy_receipt"]).unwrap();
    receipt.verify().unwrap();
    assert_eq!(receipt.rounds.len(), 3);
    assert!(
        !meta["privacy_receipt"].contains("participants"),
        "no realised counts in receipts"
    );

    // Quarantine: refused and never selected; release.
    admin
        .quarantine_client(ClientActionRequest {
            client_id: "c001".into(),
            reason: "suspicious".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        clients[1].get_task("adm").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let q = admin
        .release_client(ClientActionRequest {
            client_id: "c001".into(),
            reason: "ok".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.status, v1::ClientStatus::Active as i32);
    assert_eq!(
        admin
            .quarantine_client(ClientActionRequest {
                client_id: "nobody".into(),
                reason: String::new(),
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    // Audit trail.
    let events = admin
        .list_audit_events(ListAuditEventsRequest {
            limit: 0,
            job_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for k in [
        "job_created",
        "job_paused",
        "job_resumed",
        "model_rolled_back",
        "client_quarantined",
        "client_released",
        "client_registered",
    ] {
        assert!(kinds.contains(&k), "missing {k} in {kinds:?}");
    }
    assert!(events.windows(2).all(|w| w[0].id > w[1].id), "newest first");
}

#[tokio::test]
async fn metrics_health_and_reflection() {
    let h = Harness::start().await;
    let mut clients = h.clients(2).await;
    let mut spec = job("obs", 4, 1.0);
    spec.rounds = 1;
    spec.min_clients = 2;
    spec.population = Some(2);
    spec.noise_source = fedsec_privacy::NoiseKind::Simulation;
    h.running().admin().create_job(spec).await.unwrap();
    run_round(&mut clients, "obs", 0.1).await;
    h.running()
        .admin()
        .wait_for_job("obs", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let t = v1::Task {
        job_id: "obs".into(),
        round: 9,
        ..Default::default()
    };
    let _ = clients[0].submit(&t, &[0.0; 4], b"x").await.unwrap_err();

    // Prometheus text over plain HTTP on its own address.
    let addr = h.running().metrics_addr().unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for needle in [
        "fedsec_rounds_total{job=\"obs\",outcome=\"committed\"} 1",
        "fedsec_round_participants{job=\"obs\"} 2",
        "fedsec_round_duration_seconds_count{job=\"obs\"} 1",
        "fedsec_epsilon_spent{job=\"obs\",accountant=\"pld\"}",
        "fedsec_rejections_total{reason=\"stale_round\"} 1",
        "fedsec_updates_accepted_total{job=\"obs\"} 2",
        "fedsec_received_bytes_total 32",
        "fedsec_registered_clients 2",
        "fedsec_round_clipped_fraction{job=\"obs\"} 0",
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }

    // gRPC health.
    let channel = h
        .pki
        .client_tls(&support::tenant_of("c000"), "c000")
        .unwrap()
        .channel(&h.endpoint())
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "fedsec.v1.Coordinator".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Server reflection lists the fedsec services.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = resp.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "fedsec.v1.Coordinator",
        "fedsec.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} not in {names:?}");
    }
}
