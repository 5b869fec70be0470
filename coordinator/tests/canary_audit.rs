//! Canary audits on the real server over mutual TLS: a job with
//! `audit.canaries` inserts synthetic clients through the same keyed Poisson
//! selection as real ones, and when it ends stores an empirical ε̂ and lower
//! bounds with the job, attaches them to the final receipt and serves them
//! in the Admin API — also after a restart.
//!
//! Without noise (the dangerous flag) the audit must have power: a large ε̂
//! and a lower bound well above 0. With noise calibrated to ε, every lower
//! bound must stay at or below the accountant's ε.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_coordinator::JobSpec;
use fedsec_coordinator::canary::{AUDIT_CONFIDENCE, CanaryStatistics, pooled_estimate};
use fedsec_coordinator::config::AuditSpec;
use fedsec_privacy::{NoiseKind, PrivacyReceipt};
use fedsec_proto::v1::{self, JobRef, get_task_response};
use support::{Harness, TestClient, job};

const T: Duration = Duration::from_secs(60);
const DIM: u32 = 1000;
const CANARIES: u32 = 50;

/// Every client polls and, when selected, uploads a small fixed update of
/// its own (norm 0.32 < C) until the job finishes.
fn run_clients(clients: Vec<TestClient>, job_id: &'static str) -> Vec<tokio::task::JoinHandle<()>> {
    clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                let update: Vec<f32> = (0..DIM as usize)
                    .map(|j| if (j + i) % 3 == 0 { 0.01 } else { -0.01 })
                    .collect();
                let until = tokio::time::Instant::now() + T;
                while tokio::time::Instant::now() < until {
                    match c.get_task(job_id).await {
                        Ok(get_task_response::Outcome::Task(t)) => {
                            let nonce = format!("{}-{}", t.round, t.attempt);
                            let _ = c.submit(&t, &update, nonce.as_bytes()).await;
                        }
                        Ok(get_task_response::Outcome::Finished(_)) => return,
                        // No round open yet, or throttled: poll again.
                        Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            })
        })
        .collect()
}

fn audited_job(id: &str) -> JobSpec {
    let mut spec = job(id, DIM, 0.5);
    spec.rounds = 8;
    spec.min_clients = 1;
    spec.population = Some(4);
    spec.noise_source = NoiseKind::Simulation;
    spec.audit = Some(AuditSpec {
        canaries: CANARIES,
        seed: 11,
    });
    spec
}

/// The per-canary statistics the coordinator serves for job `id` (it has some).
async fn canary_statistics(h: &Harness, id: &str) -> CanaryStatistics {
    h.running()
        .admin()
        .canary_statistics(id)
        .await
        .unwrap()
        .unwrap()
}

/// The privacy receipt of job `id`'s latest model, as client c000 downloads it.
async fn final_receipt(h: &Harness, id: &str) -> v1::PrivacyReceipt {
    let mut c = h.client("c000").await;
    let (header, _) = c.get_model(id, 0).await;
    header.receipt.unwrap()
}

async fn run_job(h: &Harness, spec: JobSpec, id: &'static str) -> v1::Job {
    let clients = h.clients(4).await;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let handles = run_clients(clients, id);
    let done = admin
        .wait_for_job(id, T, |j| j.audit.is_some())
        .await
        .unwrap();
    for hd in handles {
        hd.await.unwrap();
    }
    // The audit is stored before the job is marked finished.
    admin
        .wait_for_job(id, T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    assert_eq!(done.rounds_completed, 8);
    // Canaries count in nothing: participants are real clients only.
    for e in admin.ledger(id).await.unwrap() {
        assert!(e.participants <= 4, "{e:?}");
    }
    admin.job(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_noise_the_audit_finds_a_large_epsilon_and_survives_a_restart() {
    let mut h = Harness::start().await;
    let mut spec = audited_job("open");
    spec.disable_noise = true;
    spec.noise_multiplier = None;
    let job = run_job(&h, spec, "open").await;
    let a = job.audit.unwrap();
    eprintln!("no noise: {a:?}");
    assert_eq!((a.canaries, a.unseen_canaries), (CANARIES, CANARIES));
    assert_eq!((a.confidence, a.delta), (0.95, 1e-5));
    // Every inserted canary's direction stands out of the published models.
    assert!(a.epsilon_one_shot_final > 10.0, "{a:?}");
    assert!(a.epsilon_one_shot_all_iterates > 10.0, "{a:?}");
    // 100 canaries, all guessed right: the one-run bound at 95 % is ≈ 2.9.
    assert!(a.epsilon_lower_bound > 2.0, "{a:?}");
    assert_eq!(
        a.epsilon_lower_bound,
        a.epsilon_one_run_final.max(a.epsilon_one_run_all_iterates)
    );

    // The final receipt carries it, on the wire and in its JSON.
    let receipt = final_receipt(&h, "open").await;
    assert_eq!(receipt.empirical_audit.as_ref(), Some(&a));
    assert!(
        receipt.json.contains("\"empirical_audit\":{"),
        "{}",
        receipt.json
    );

    // The Admin API over mTLS serves it too.
    let mut admin = h.admin_grpc("admin");
    let over_grpc = admin
        .get_job(JobRef {
            job_id: "open".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(over_grpc.audit.as_ref(), Some(&a));

    // The per-canary statistics it was computed from (for pooling over
    // jobs) give back exactly this audit.
    let kept = canary_statistics(&h, "open").await;
    assert_eq!(
        (kept.inserted, kept.rounds, kept.dim),
        (CANARIES, 8, DIM as usize)
    );
    let pooled = pooled_estimate(std::slice::from_ref(&kept), 1e-5, AUDIT_CONFIDENCE).unwrap();
    assert_eq!(pooled.epsilon_lower_bound, a.epsilon_lower_bound);
    assert_eq!(pooled.epsilon_one_shot_final, a.epsilon_one_shot_final);
    assert_eq!(
        pooled.epsilon_clopper_pearson_all_iterates,
        a.epsilon_clopper_pearson_all_iterates
    );

    // Restart: the stored result is served again, and not recomputed.
    h.shutdown().await;
    h.reopen(|_| {}).await;
    let again = h.running().admin().job("open").unwrap();
    assert_eq!(again.audit.as_ref(), Some(&a));
    // The statistics are recomputed from the published versions, identically.
    assert_eq!(canary_statistics(&h, "open").await, kept);
    assert_eq!(
        final_receipt(&h, "open").await.empirical_audit.as_ref(),
        Some(&a)
    );
    let events = h
        .running()
        .admin()
        .audit_events(Some("open"), 100)
        .await
        .unwrap();
    assert_eq!(
        events.iter().filter(|e| e.kind == "canary_audit").count(),
        1,
        "computed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_calibrated_noise_every_lower_bound_stays_below_the_accountant() {
    let h = Harness::start().await;
    let mut spec = audited_job("noisy");
    spec.noise_multiplier = None;
    spec.target_epsilon = Some(2.0);
    let job = run_job(&h, spec, "noisy").await;
    let a = job.audit.unwrap();
    let eps = job.epsilon_pld;
    eprintln!("accountant ε = {eps}, z = {}: {a:?}", job.noise_multiplier);
    assert!(eps > 1.5 && eps <= 2.0 + 1e-9, "{eps}");
    for (name, lb) in [
        ("one-run final", a.epsilon_one_run_final),
        ("one-run all iterates", a.epsilon_one_run_all_iterates),
        ("Clopper-Pearson final", a.epsilon_clopper_pearson_final),
        (
            "Clopper-Pearson all iterates",
            a.epsilon_clopper_pearson_all_iterates,
        ),
        ("lower bound", a.epsilon_lower_bound),
    ] {
        assert!(
            lb.is_finite() && lb <= eps,
            "{name} = {lb} > accountant ε = {eps}: {a:?}"
        );
    }
    assert!(a.epsilon_one_shot_final.is_finite(), "{a:?}");
    assert!(a.epsilon_one_shot_all_iterates.is_finite(), "{a:?}");

    // The receipt with the audit still verifies: the audit changes no ε.
    let json = final_receipt(&h, "noisy").await.json;
    let receipt: PrivacyReceipt = serde_json::from_str(&json).unwrap();
    receipt.verify().unwrap();
    assert_eq!(
        receipt.empirical_audit.unwrap().epsilon_lower_bound,
        a.epsilon_lower_bound
    );
}

#[tokio::test]
async fn a_single_canary_is_refused() {
    let h = Harness::start().await;
    let mut spec = audited_job("one");
    spec.audit = Some(AuditSpec {
        canaries: 1,
        seed: 0,
    });
    let err = h.running().admin().create_job(spec).await.unwrap_err();
    assert!(err.to_string().contains("audit.canaries"), "{err}");
}
