//! Crash safety: drop the coordinator mid-round (no shutdown), reopen the
//! same data directory, and the job continues from its last committed
//! version with a gap-free ledger whose ε is exactly the committed rounds'.
//! Also: a graceful shutdown abandons the open round and charges nothing;
//! FedAvgM momentum survives a restart bit for bit.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_coordinator::store::AttemptState;
use fedsec_privacy::{NoiseKind, PrivacyReceipt};
use fedsec_proto::v1::{self, LedgerEntryKind};
use support::{Harness, TestClient, job};
use tonic::Code;

const T: Duration = Duration::from_secs(20);

async fn round(clients: &mut [TestClient], job_id: &str, value: f32) -> v1::Task {
    let mut last = None;
    for c in clients.iter_mut() {
        let t = c.wait_task(job_id, T).await;
        c.submit(&t, &[value; 4], b"n").await.unwrap();
        last = Some(t);
    }
    last.unwrap()
}

#[tokio::test]
async fn crash_mid_round_resumes_with_a_gap_free_ledger() {
    crash_mid_round(false).await;
}

#[tokio::test]
async fn crash_mid_round_resumes_with_a_gap_free_ledger_encrypted_at_rest() {
    crash_mid_round(true).await;
}

fn tweak(encrypted: bool) -> impl Fn(&mut fedsec_coordinator::CoordinatorConfig) {
    move |c| {
        if encrypted {
            support::encrypt_at_rest(c);
        }
    }
}

async fn crash_mid_round(encrypted: bool) {
    let mut h = Harness::start_with(tweak(encrypted)).await;
    let mut clients = h.clients(3).await;
    let mut spec = job("crash", 4, 1.0);
    spec.rounds = 3;
    spec.min_clients = 3;
    spec.population = Some(3);
    spec.round_deadline_ms = 20_000;
    spec.noise_source = NoiseKind::Simulation;
    spec.noise_multiplier = Some(1.5);
    h.running().admin().create_job(spec).await.unwrap();

    round(&mut clients, "crash", 0.1).await;
    let admin = h.running().admin();
    admin
        .wait_for_job("crash", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let (v1_header, w1) = clients[0].get_model("crash", 0).await;

    // Round 2 opens; one client's update is accepted; then the process "dies".
    let t2 = clients[0].wait_task("crash", T).await;
    assert_eq!((t2.round, t2.attempt), (2, 1));
    assert!(
        clients[0]
            .submit(&t2, &[0.2; 4], b"n")
            .await
            .unwrap()
            .newly_accepted
    );
    h.crash();

    // The old server is gone: calls fail.
    assert!(clients[1].get_task("crash").await.is_err());

    h.reopen(tweak(encrypted)).await;
    let admin = h.running().admin();
    let job = admin.job("crash").unwrap();
    assert_eq!(job.rounds_completed, 1, "the open round was not committed");
    assert_eq!(job.current_version, 1);
    let ledger = admin.ledger("crash").await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(job.epsilon_pld, ledger[0].epsilon_pld);
    let attempts = h.running().store().attempts("crash").unwrap();
    let r2a1 = attempts
        .iter()
        .find(|a| a.round == 2 && a.attempt == 1)
        .unwrap();
    assert_eq!(r2a1.state, AttemptState::Abandoned);
    assert!(r2a1.note.contains("stopped"), "{}", r2a1.note);

    // Clients reconnect to the new server (new port, same data).
    let ep = h.endpoint();
    let mut clients: Vec<TestClient> = (0..3)
        .map(|i| {
            TestClient::connect(
                &h.pki,
                &support::tenant_of(&format!("c{i:03}")),
                &format!("c{i:03}"),
                &ep,
            )
        })
        .collect();
    let (header, w) = clients[0].get_model("crash", 0).await;
    assert_eq!(header.version, 1);
    assert_eq!(header.sha256, v1_header.sha256);
    assert_eq!(w, w1, "resumed from the last committed version");
    // The crashed attempt's task is stale; a new attempt with a fresh cohort opens.
    let e = clients[0].submit(&t2, &[0.2; 4], b"n").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let t = round(&mut clients, "crash", 0.2).await;
    assert_eq!((t.round, t.attempt), (2, 2));
    round(&mut clients, "crash", 0.3).await;
    let done = admin
        .wait_for_job("crash", T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    assert_eq!(done.rounds_completed, 3);

    // Ledger: seq 1..3, rounds 1..3, no gap, no duplicate; round 2 committed by attempt 2.
    let ledger = admin.ledger("crash").await.unwrap();
    let seqs: Vec<u64> = ledger.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    let rounds: Vec<u64> = ledger.iter().map(|e| e.charge.unwrap().round).collect();
    assert_eq!(rounds, vec![1, 2, 3]);
    assert_eq!(ledger[1].attempt, 2);
    assert!(
        ledger
            .iter()
            .all(|e| e.kind == LedgerEntryKind::Round as i32)
    );
    // Privacy charged = exactly the committed rounds.
    let (_, _) = clients[0].get_model("crash", 0).await;
    let charges: Vec<_> = ledger
        .iter()
        .map(|e| {
            let c = e.charge.unwrap();
            fedsec_privacy::RoundCharge {
                round: c.round,
                sampling_rate: c.sampling_rate,
                noise_multiplier: c.noise_multiplier,
                clip_norm: c.clip_norm,
                sensitivity: c.sensitivity,
                count_stddev: c.count_stddev,
                expected_cohort: c.expected_cohort,
                committed_unix_ms: c.committed_unix_ms,
            }
        })
        .collect();
    let recomputed = PrivacyReceipt::compute(charges, 1e-5).unwrap();
    assert_eq!(done.epsilon_pld, recomputed.epsilon_pld);
    assert_eq!(done.epsilon_rdp, recomputed.epsilon_rdp);
    let (header, _) = clients[0].get_model("crash", 0).await;
    let receipt: PrivacyReceipt = serde_json::from_str(&header.receipt.unwrap().json).unwrap();
    receipt.verify().unwrap();
    assert_eq!(receipt.rounds.len(), 3);
    // Versions: 0..3, each with its ledger entry.
    let models = admin.models("crash").await.unwrap();
    assert_eq!(
        models.iter().map(|m| m.version).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    for (e, m) in ledger.iter().zip(&models[1..]) {
        assert_eq!(e.model_version, m.version);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn momentum_survives_a_restart_exactly() {
    let mut h = Harness::start().await;
    let mut clients = h.clients(2).await;
    let mut spec = job("mom", 4, 1.0);
    spec.rounds = 2;
    spec.min_clients = 2;
    spec.population = Some(2);
    spec.disable_noise = true;
    spec.server_optimizer.learning_rate = 0.5;
    spec.server_optimizer.momentum = 0.9;
    h.running().admin().create_job(spec).await.unwrap();
    let (_, w0) = clients[0].get_model("mom", 0).await;
    round(&mut clients, "mom", 0.4).await;
    h.running()
        .admin()
        .wait_for_job("mom", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    h.shutdown().await;
    h.reopen(|_| {}).await;
    let ep = h.endpoint();
    let mut clients: Vec<TestClient> = (0..2)
        .map(|i| {
            TestClient::connect(
                &h.pki,
                &support::tenant_of(&format!("c{i:03}")),
                &format!("c{i:03}"),
                &ep,
            )
        })
        .collect();
    round(&mut clients, "mom", 0.2).await;
    h.running()
        .admin()
        .wait_for_job("mom", T, |j| j.rounds_completed == 2)
        .await
        .unwrap();
    let (_, w2) = clients[0].get_model("mom", 0).await;
    for i in 0..4 {
        // m1 = mean1; w1 = w0 + η m1; m2 = β m1 + mean2; w2 = w1 + η m2.
        let m1 = (0.4f32 * 2.0) as f64 / 2.0;
        let w1 = (f64::from(w0[i]) + 0.5 * m1) as f32;
        let m2 = (0.9 * m1 + 0.2 * 2.0 / 2.0) as f32;
        let expected = (f64::from(w1) + 0.5 * f64::from(m2)) as f32;
        assert!(
            (w2[i] - expected).abs() < 1e-6,
            "{i}: {} vs {expected}",
            w2[i]
        );
    }
    h.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_abandons_the_open_round_and_charges_nothing() {
    let mut h = Harness::start().await;
    let mut clients = h.clients(2).await;
    let mut spec = job("stop", 4, 1.0);
    spec.min_clients = 2;
    spec.population = Some(2);
    spec.round_deadline_ms = 20_000;
    spec.noise_source = NoiseKind::Simulation;
    h.running().admin().create_job(spec).await.unwrap();
    let t = clients[0].wait_task("stop", T).await;
    clients[0].submit(&t, &[0.1; 4], b"n").await.unwrap();
    h.shutdown().await;
    // A second coordinator cannot take the directory while one runs; after
    // the shutdown it can.
    h.reopen(|_| {}).await;
    let second = fedsec_coordinator::Coordinator::start_with_tls(
        support::test_config(h.dir.path()),
        h.pki.server_tls().clone(),
    )
    .await;
    assert!(second.unwrap_err().to_string().contains("in use"));
    let admin = h.running().admin();
    let job = admin.job("stop").unwrap();
    assert_eq!((job.rounds_completed, job.epsilon_pld), (0, 0.0));
    assert!(admin.ledger("stop").await.unwrap().is_empty());
    let attempts = h.running().store().attempts("stop").unwrap();
    assert_eq!(attempts[0].state, AttemptState::Abandoned);
    assert!(
        attempts[0].note.contains("shutting down"),
        "{}",
        attempts[0].note
    );
    let audit = admin.audit_events(Some("stop"), 100).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "round_abandoned"));
    h.shutdown().await;
}
