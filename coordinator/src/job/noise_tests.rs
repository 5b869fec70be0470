//! The round's noise is drawn per attempt while the round collects, and an
//! attempt that is not released discards its noise: the real driver, the
//! default (production, `discrete`) noise source, in process.

use std::time::Duration;

use fedsec_model::ModelSpec;

use super::tests::{engine, identity};
use crate::admin::AdminApi;
use crate::config::JobSpec;
use crate::round::Claim;
use crate::store::{AttemptState, JobState};
use fedsec_privacy::NoiseKind;

/// Waits (≤ 20 s) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !f() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_attempt_drops_its_noise_and_the_next_attempt_draws_its_own() {
    let engine = engine(b"fedsec noise-per-attempt test key");
    for i in 0..3 {
        engine.register_client(&identity(i), "test").await.unwrap();
    }
    let mut spec = JobSpec::new("noisy", ModelSpec::logistic(2000), 1.0, 3);
    spec.rounds = 1;
    spec.noise_multiplier = Some(1.0);
    spec.round_deadline_ms = 60_000;
    assert_eq!(spec.noise_source, NoiseKind::Discrete, "the default source");
    let job = super::create(&engine, spec).await.unwrap();
    let probe = job.noise_probe.clone();

    // Attempt 1 opens and draws its noise while it collects (nobody reports).
    until("attempt 1 opened", || job.open_round().is_some()).await;
    until("attempt 1's noise drawn", || {
        probe
            .draws()
            .first()
            .is_some_and(|e| e.round == 1 && e.attempt == 1)
    })
    .await;

    // Pausing abandons it: nothing released, its noise dropped unused.
    let admin = AdminApi::new(engine.clone(), "test-admin");
    admin.pause_job("noisy").await.unwrap();
    until("attempt 1's noise dropped", || {
        probe.draws()[0].held.upgrade().is_none()
    })
    .await;
    assert!(!probe.draws()[0].consumed);

    // Resumed: attempt 2 draws afresh; every selected tenant reports, so it
    // closes at once and releases with its own noise.
    admin.resume_job("noisy").await.unwrap();
    until("attempt 2 opened", || {
        job.open_round().is_some_and(|o| o.attempt == 2)
    })
    .await;
    let open = job.open_round().unwrap();
    let zero = vec![0.0f32; job.dim];
    for tenant in &open.selected {
        let client = format!("c{}", &tenant[1..]);
        if let Ok(Claim::Fresh(g)) = open.claim(tenant, &client, b"nonce") {
            open.accept(g, &zero, true).unwrap();
        }
    }
    until("job completed", || job.state().is_finished()).await;
    assert_eq!(job.state(), JobState::Completed, "{}", job.status().reason);

    let draws = probe.draws();
    let seen: Vec<_> = draws
        .iter()
        .map(|e| (e.round, e.attempt, e.consumed, e.held.upgrade().is_some()))
        .collect();
    assert_eq!(
        seen,
        vec![(1, 1, false, false), (1, 2, true, false)],
        "one draw per attempt; only the released attempt's was consumed; none is held"
    );
    let store = engine.store.clone();
    let (ledger, attempts) = tokio::task::spawn_blocking(move || {
        (
            store.ledger("noisy").unwrap(),
            store.attempts("noisy").unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].attempt, 2);
    let states: Vec<_> = attempts.iter().map(|a| (a.attempt, a.state)).collect();
    assert_eq!(
        states,
        vec![(1, AttemptState::Abandoned), (2, AttemptState::Committed)]
    );
    // The released model carries noise (σ = z·C′ ≈ 1 on a zero sum over 3):
    // it moved away from the initial weights.
    let init = ModelSpec::logistic(2000).init_weights(0);
    let w = job.current().weights();
    assert!(w.iter().zip(&init).filter(|(a, b)| a != b).count() > job.dim / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_create_job_takes_discrete_noise_without_a_flag_and_refuses_simulation() {
    // The engine's [dangerous] allows disabled noise only, not simulation noise.
    let engine = engine(b"fedsec noise-default admin test key");
    let admin = AdminApi::new(engine.clone(), "test-admin");
    let config = |id: &str, source: &str| fedsec_proto::v1::JobConfig {
        job_id: id.into(),
        model_spec: Some(fedsec_proto::model::ModelSpecWire::to_proto(
            &ModelSpec::logistic(3),
        )),
        sampling: Some(fedsec_proto::v1::job_config::Sampling::SamplingRate(0.5)),
        population: 4,
        min_clients: 2,
        rounds: 1,
        noise: Some(fedsec_proto::v1::job_config::Noise::NoiseMultiplier(1.0)),
        noise_source: source.into(),
        ..Default::default()
    };
    for (id, source, expect) in [("d", "discrete", "discrete"), ("e", "", "discrete")] {
        let job = admin.create_job_proto(&config(id, source)).await.unwrap();
        assert_eq!(job.config.unwrap().noise_source, expect, "{source:?}");
    }
    let e = admin
        .create_job_proto(&config("s", "simulation"))
        .await
        .unwrap_err();
    let status = tonic::Status::from(e);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert!(status.message().contains("noise_source"), "{status}");
    assert!(
        status.message().contains("allow_simulation_noise"),
        "{status}"
    );
}
