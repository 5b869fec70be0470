//! Nothing unsafe comes back, nothing stale is served (issue 14):
//! - a stored job that the current `[dangerous]` settings forbid is paused at
//!   start with the reason, and resume refuses it;
//! - after a rollback the served receipt states the full spend (the
//!   ledger's), also after a restart.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_privacy::NoiseKind;
use fedsec_proto::v1;
use support::{Harness, TestClient, job};

const T: Duration = Duration::from_secs(20);

async fn round(clients: &mut [TestClient], job_id: &str, value: f32) {
    for c in clients.iter_mut() {
        let t = c.wait_task(job_id, T).await;
        c.submit(&t, &[value; 4], b"n").await.unwrap();
    }
}

#[tokio::test]
async fn a_stored_job_the_configuration_now_forbids_stays_paused() {
    let mut h = Harness::start().await;
    let mut spec = job("sim", 4, 0.5);
    spec.noise_source = NoiseKind::Simulation;
    h.running().admin().create_job(spec).await.unwrap();
    h.shutdown().await;

    // Restart without [dangerous]: the job is paused with the reason.
    h.reopen(|c| c.dangerous = None).await;
    let admin = h.running().admin();
    let j = admin.job("sim").unwrap();
    assert_eq!(j.state, v1::JobState::Paused as i32, "{j:?}");
    assert!(j.state_reason.contains("forbids"), "{}", j.state_reason);
    let e = admin.resume_job("sim").await.unwrap_err();
    assert!(e.to_string().contains("forbids"), "{e}");
    h.shutdown().await;

    // With the flag back, it stays paused until an admin resumes it.
    h.reopen(|_| {}).await;
    let admin = h.running().admin();
    assert_eq!(admin.job("sim").unwrap().state, v1::JobState::Paused as i32);
    let j = admin.resume_job("sim").await.unwrap();
    assert_eq!(j.state, v1::JobState::Running as i32);
    h.shutdown().await;
}

#[tokio::test]
async fn after_a_rollback_the_served_receipt_states_the_full_spend() {
    let mut h = Harness::start().await;
    let mut spec = job("rb", 4, 1.0);
    spec.noise_source = NoiseKind::Simulation;
    spec.rounds = 5;
    spec.population = Some(2);
    let admin = h.running().admin();
    // Registered before the job starts: rounds open at once, and the first
    // one's cohort is drawn from the tenants registered then.
    let mut clients = h.clients(2).await;
    admin.create_job(spec).await.unwrap();
    round(&mut clients, "rb", 0.1).await;
    round(&mut clients, "rb", 0.2).await;
    admin
        .wait_for_job("rb", T, |j| j.rounds_completed == 2)
        .await
        .unwrap();
    admin.pause_job("rb").await.unwrap();
    let spent = admin.job("rb").unwrap().epsilon_pld;
    admin.rollback("rb", 1, "bad model").await.unwrap();

    let check = |r: &v1::PrivacyReceipt| {
        assert_eq!(r.rounds.len(), 2, "{r:?}");
        assert!(
            (r.epsilon_pld - spent).abs() <= 1e-9 * spent,
            "{} vs {spent}",
            r.epsilon_pld
        );
    };
    let (header, _) = clients[0].get_model("rb", 0).await;
    assert_eq!(header.version, 1);
    check(header.receipt.as_ref().unwrap());
    // Also after a restart.
    h.shutdown().await;
    h.reopen(|_| {}).await;
    let c = h.client("c000").await;
    let mut c = c;
    let (header, _) = c.get_model("rb", 0).await;
    assert_eq!(header.version, 1);
    check(header.receipt.as_ref().unwrap());
    h.shutdown().await;
}

/// A job whose final round the accountant cannot bound is refused at
/// creation, naming the key; one that learns q only at start (expected
/// cohort) and then cannot be calibrated is paused with the reason, not
/// failed (it failed before).
#[tokio::test]
async fn accountant_feasibility_is_checked_at_creation_and_never_fails_a_running_job() {
    let mut h = Harness::start().await;
    let admin = h.running().admin();
    let mut spec = job("tiny-delta", 4, 0.5);
    spec.delta = 1e-16;
    let e = admin.create_job(spec).await.unwrap_err();
    assert!(e.to_string().contains("delta"), "{e}");
    // So loose that even the smallest noise multiplier meets it: calibration fails.
    let mut spec = job("too-loose", 4, 0.5);
    spec.target_epsilon = Some(1e12);
    spec.noise_multiplier = None;
    let e = admin.create_job(spec).await.unwrap_err();
    assert!(e.to_string().contains("config.delta"), "{e}");

    let mut spec = job("cohort", 4, 0.5);
    spec.sampling_rate = None;
    spec.expected_cohort = Some(1);
    spec.target_epsilon = Some(1e12);
    spec.noise_multiplier = None;
    admin.create_job(spec).await.unwrap();
    let _clients = h.clients(2).await;
    let j = admin
        .wait_for_job("cohort", T, |j| j.state != v1::JobState::Running as i32)
        .await
        .unwrap();
    assert_eq!(j.state, v1::JobState::Paused as i32, "{j:?}");
    assert!(j.state_reason.contains("accountant"), "{}", j.state_reason);
    h.shutdown().await;
}
