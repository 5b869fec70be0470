//! Rounds end to end over loopback mTLS: the exact mean with a fixed
//! denominator, server-side re-clipping, rounds released and charged
//! whatever their realised cohort (dropouts and empty rounds included), the
//! default (discrete) noise with a verifiable receipt, and the budget stop.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_privacy::{GaussianNoise, PrivacyReceipt, RoundCharge};
use fedsec_proto::v1::{self, get_task_response};
use support::{Harness, job, norm};

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn published_update_is_the_exact_mean_of_reclipped_updates_over_the_fixed_cohort() {
    let h = Harness::start().await;
    let mut clients = h.clients(4).await;
    let mut spec = job("exact", 4, 1.0);
    spec.population = Some(4);
    spec.disable_noise = true;
    spec.min_clients = 3;
    spec.rounds = 1;
    spec.round_deadline_ms = 1500;
    spec.clipping.clip_norm = 1.0;
    // This test is about re-clipping: the update screen (default policy
    // `exclude`) would leave the 10·C update out; `log` keeps it.
    spec.screen.policy = fedsec_coordinator::config::ScreenPolicyKind::Log;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();

    let updates: [[f32; 4]; 3] = [
        [0.3, -0.4, 0.0, 0.0],  // norm 0.5: inside the ball
        [6.0, 8.0, 0.0, 0.0],   // norm 10 = 10·C: must be re-clipped to norm 1
        [0.0, 0.0, 0.25, -0.1], // inside
    ];
    assert!((norm(&updates[1]) - 10.0).abs() < 1e-9);
    let (_, w0) = clients[0].get_model("exact", 0).await;
    let mut task = None;
    for (c, u) in clients.iter_mut().zip(&updates) {
        let t = c.wait_task("exact", T).await;
        assert!(!t.noise_enabled);
        assert_eq!((t.round, t.attempt, t.base_version), (1, 1, 0));
        assert_eq!(t.sampling_rate, 1.0);
        assert_eq!(t.clip_norm, 1.0);
        // The client "forgot" to clip: the coordinator must not trust it.
        let r = c.submit(&t, u, b"nonce").await.unwrap();
        assert!(r.newly_accepted);
        task = Some(t);
    }
    // The fourth client is selected but never reports; the round closes at
    // its deadline with 3 of the expected 4.
    assert!(matches!(
        clients[3].get_task("exact").await.unwrap(),
        get_task_response::Outcome::Task(_)
    ));
    let done = admin
        .wait_for_job("exact", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    assert_eq!(
        done.expected_cohort, 4.0,
        "q × population with the declared population 4"
    );
    assert_eq!(done.registered_tenants, 4);

    let (header, w1) = clients[0].get_model("exact", 0).await;
    assert_eq!((header.version, header.round), (1, 1));
    let clipped_big: Vec<f64> = updates[1].iter().map(|&x| f64::from(x) / 10.0).collect();
    for i in 0..4 {
        let sum = f64::from(updates[0][i]) + clipped_big[i] + f64::from(updates[2][i]);
        // Fixed denominator: 4 (expected cohort), not 3 (reports).
        let expected = (f64::from(w0[i]) + sum / 4.0) as f32;
        assert!(
            (w1[i] - expected).abs() <= 1e-6 * expected.abs().max(1.0),
            "coordinate {i}: published {} expected {expected}",
            w1[i]
        );
    }
    let receipt = header.receipt.unwrap();
    assert!(receipt.epsilon_pld.is_infinite(), "no noise, no guarantee");
    assert!(receipt.mechanism.starts_with("NONE"));

    let ledger = admin.ledger("exact").await.unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].participants, 3);
    assert!((ledger[0].clipped_fraction - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(ledger[0].charge.unwrap().expected_cohort, 4.0);
    // Job finished: GetTask says so.
    let done = admin
        .wait_for_job("exact", T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    assert_eq!(done.current_version, 1);
    match clients[1].get_task("exact").await.unwrap() {
        get_task_response::Outcome::Finished(f) => {
            assert_eq!((f.state.as_str(), f.final_version), ("COMPLETED", 1));
        }
        other => panic!("expected finished, got {other:?}"),
    }
    let _ = task;
}

#[tokio::test]
async fn rounds_are_released_and_charged_whatever_their_realised_cohort() {
    // Default noise source (discrete): a real, verifiable receipt. Both
    // tenants are selected every round (q = 1); min_clients = 2 is the
    // smallest *expected* cohort, never a release condition.
    let h = Harness::start().await;
    let mut clients = h.clients(2).await;
    let mut spec = job("minc", 4, 1.0);
    spec.population = Some(2);
    spec.min_clients = 2;
    spec.rounds = 2;
    spec.round_deadline_ms = 400;
    spec.noise_multiplier = Some(2.0);
    assert_eq!(spec.noise_source, fedsec_privacy::NoiseKind::Discrete);
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();

    // Round 1: one of the two selected tenants reports, the other drops
    // out. The round is released at its deadline and charged (an older
    // coordinator abandoned it and redrew the cohort: a size-conditioned
    // sample the accountant does not describe).
    let t1 = clients[0].wait_task("minc", T).await;
    assert!(t1.noise_enabled);
    assert_eq!(t1.noise_multiplier, 2.0);
    assert_eq!(t1.delta, 1e-5);
    assert_eq!((t1.round, t1.attempt), (1, 1));
    clients[0].submit(&t1, &[0.1; 4], b"a").await.unwrap();
    let after_one = admin
        .wait_for_job("minc", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    assert_eq!(after_one.current_version, 1);
    assert!(after_one.epsilon_pld > 0.0, "the released round is charged");
    // Round 2: nobody reports; it is released (noise only) and charged too.
    let job = admin
        .wait_for_job("minc", T, |j| j.rounds_completed == 2)
        .await
        .unwrap();
    assert!(job.epsilon_pld > after_one.epsilon_pld);
    let ledger = admin.ledger("minc").await.unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(
        ledger
            .iter()
            .map(|e| (e.seq, e.attempt, e.participants))
            .collect::<Vec<_>>(),
        vec![(1, 1, 1), (2, 1, 0)],
        "attempt numbers move only on data-independent interruptions"
    );
    let attempts = h.running().store().attempts("minc").unwrap();
    assert_eq!(attempts.len(), 2, "no abandoned attempt: {attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| a.state == fedsec_coordinator::store::AttemptState::Committed)
    );
    assert_eq!(attempts[0].accepted, 1);
    assert_eq!(attempts[1].accepted, 0);
    assert_eq!(
        h.running()
            .metrics()
            .encode()
            .matches("outcome=\"abandoned\"")
            .count(),
        0
    );

    // The published receipt is the privacy crate's and verifies; it states
    // the tenant as the unit.
    let (header, w) = clients[0].get_model("minc", 0).await;
    let receipt = header.receipt.unwrap();
    let parsed: PrivacyReceipt = serde_json::from_str(&receipt.json).unwrap();
    parsed.verify().unwrap();
    assert!(
        parsed.neighbouring.contains("one tenant"),
        "{}",
        parsed.neighbouring
    );
    assert_eq!(parsed.rounds.len(), 2);
    assert!(receipt.epsilon_pld > 0.0 && receipt.epsilon_pld.is_finite());
    assert_eq!(receipt.epsilon_pld, ledger[1].epsilon_pld);
    // C plus the grid inflation plus the rounding of the f64 sum over at
    // most limits.max_tenants (default 10⁶) contributions, one update per
    // tenant (issue 14, point 4; issue 13: never the registered count).
    let grid = fedsec_privacy::DiscreteGaussianNoise::default().sensitivity_inflation(4);
    let sum_rounding = fedsec_privacy::accumulation_inflation(1.0, 1_000_000);
    assert!(sum_rounding > 0.0);
    for charge in &parsed.rounds {
        assert_eq!(charge.noise_multiplier, 2.0);
        assert_eq!(charge.sensitivity, 1.0 + (grid + sum_rounding));
        assert_eq!(charge.expected_cohort, 2.0, "q × declared population");
    }
    assert!(w.iter().all(|x| x.is_finite()));
}

#[tokio::test]
async fn a_job_stops_at_its_budget_and_get_task_says_finished() {
    let h = Harness::start().await;
    let mut clients = h.clients(2).await;
    // ε after 2 and 3 rounds at q = 1, z = 4 (δ = 1e-5), by the privacy crate.
    let charge = |round| RoundCharge {
        round,
        sampling_rate: 1.0,
        noise_multiplier: 4.0,
        clip_norm: 1.0,
        sensitivity: 1.0,
        count_stddev: 0.0,
        expected_cohort: 2.0,
        committed_unix_ms: 0,
    };
    let eps = |t: u64| {
        PrivacyReceipt::compute((1..=t).map(charge).collect(), 1e-5)
            .unwrap()
            .epsilon_pld
    };
    let (e2, e3) = (eps(2), eps(3));
    assert!(e2 < e3);
    let budget = (e2 + e3) / 2.0;
    let mut spec = job("budget", 4, 1.0);
    spec.rounds = 10;
    spec.min_clients = 2;
    spec.population = Some(2);
    spec.noise_multiplier = Some(4.0);
    spec.epsilon_budget = Some(budget);
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();

    for _ in 0..2 {
        for c in &mut clients {
            let t = c.wait_task("budget", T).await;
            c.submit(&t, &[0.01; 4], b"x").await.unwrap();
        }
        let done = admin.job("budget").unwrap().rounds_completed;
        admin
            .wait_for_job("budget", T, |j| j.rounds_completed > done)
            .await
            .unwrap();
    }
    let job = admin
        .wait_for_job("budget", T, |j| {
            j.state == v1::JobState::BudgetExhausted as i32
        })
        .await
        .unwrap();
    assert_eq!(job.rounds_completed, 2);
    assert!(job.epsilon_pld <= budget, "{} > {budget}", job.epsilon_pld);
    assert!((job.epsilon_pld - e2).abs() < 1e-9 * e2);
    assert!(job.state_reason.contains("budget"), "{}", job.state_reason);
    match clients[0].get_task("budget").await.unwrap() {
        get_task_response::Outcome::Finished(f) => {
            assert_eq!(f.state, "BUDGET_EXHAUSTED");
            assert_eq!(f.final_version, 2);
            assert_eq!(f.job_id, "budget");
        }
        other => panic!("expected finished, got {other:?}"),
    }
    // Nothing more is released.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(admin.models("budget").await.unwrap().len(), 3);
}

#[tokio::test]
async fn target_epsilon_calibrates_z_and_expected_cohort_fixes_q() {
    let h = Harness::start().await;
    let _clients = h.clients(4).await;
    let mut spec = job("calib", 4, 1.0);
    spec.population = Some(4);
    spec.sampling_rate = None;
    spec.expected_cohort = Some(2);
    spec.noise_multiplier = None;
    spec.target_epsilon = Some(3.0);
    spec.rounds = 20;
    spec.noise_source = fedsec_privacy::NoiseKind::Simulation;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let job = admin
        .wait_for_job("calib", T, |j| j.noise_multiplier > 0.0)
        .await
        .unwrap();
    assert_eq!(job.sampling_rate, 0.5, "q = 2 / population 4");
    assert_eq!(job.expected_cohort, 2.0);
    let z = job.noise_multiplier;
    let charge = |round| RoundCharge {
        round,
        sampling_rate: 0.5,
        noise_multiplier: z,
        clip_norm: 1.0,
        sensitivity: 1.0,
        count_stddev: 0.0,
        expected_cohort: 2.0,
        committed_unix_ms: 0,
    };
    let eps = PrivacyReceipt::compute((1..=20).map(charge).collect(), 1e-5)
        .unwrap()
        .epsilon_pld;
    assert!(
        eps <= 3.0 && eps > 2.7,
        "calibrated z = {z} gives ε = {eps}"
    );
}

/// Issue 16: the round history a receipt references is served page by page
/// (`GetRoundHistory`), equals the ledger's charges, and hashes to the
/// receipt's digest; bad requests get clear statuses.
#[tokio::test]
async fn the_round_history_is_served_in_pages_matching_the_ledger_and_the_receipt() {
    let h = Harness::start().await;
    let mut clients = h.clients(1).await;
    let mut spec = job("hist", 4, 1.0);
    spec.population = Some(1);
    spec.min_clients = 1;
    spec.rounds = 3;
    // Released at the deadline with nobody reporting: three quick rounds.
    spec.round_deadline_ms = 300;
    spec.noise_source = fedsec_privacy::NoiseKind::Simulation;
    spec.noise_multiplier = Some(2.0);
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    admin
        .wait_for_job("hist", T, |j| j.rounds_completed == 3)
        .await
        .unwrap();
    let ledger: Vec<v1::RoundCharge> = admin
        .ledger("hist")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| e.charge)
        .collect();
    assert_eq!(ledger.len(), 3);
    let c = &mut clients[0].grpc;
    let page = |first_round: u64, max_rounds: u32| v1::GetRoundHistoryRequest {
        job_id: "hist".into(),
        first_round,
        max_rounds,
    };
    let all = c.get_round_history(page(1, 0)).await.unwrap().into_inner();
    assert_eq!(
        (all.rounds.clone(), all.rounds_committed),
        (ledger.clone(), 3)
    );
    let one = c.get_round_history(page(2, 1)).await.unwrap().into_inner();
    assert_eq!(one.rounds, ledger[1..2].to_vec());
    let past = c.get_round_history(page(99, 5)).await.unwrap().into_inner();
    assert_eq!((past.rounds.len(), past.rounds_committed), (0, 3));

    // The digest the receipt states is the chain over exactly these charges.
    let (header, _) = clients[0].get_model("hist", 0).await;
    let receipt = header.receipt.unwrap();
    let charges: Vec<RoundCharge> = all
        .rounds
        .iter()
        .map(|c| RoundCharge {
            round: c.round,
            sampling_rate: c.sampling_rate,
            noise_multiplier: c.noise_multiplier,
            clip_norm: c.clip_norm,
            sensitivity: c.sensitivity,
            count_stddev: c.count_stddev,
            expected_cohort: c.expected_cohort,
            committed_unix_ms: c.committed_unix_ms,
        })
        .collect();
    let chain = fedsec_privacy::HistoryChain::of(&charges).unwrap();
    assert_eq!(receipt.history_rounds, 3);
    assert_eq!(receipt.history_sha256, chain.digest().to_vec());
    assert_eq!(receipt.rounds, all.rounds, "3 rounds are also inline");

    let c = &mut clients[0].grpc;
    let zero = c.get_round_history(page(0, 1)).await.unwrap_err();
    assert_eq!(zero.code(), tonic::Code::InvalidArgument, "{zero:?}");
    assert!(zero.message().contains("first_round"), "{zero:?}");
    let mut unknown = page(1, 1);
    unknown.job_id = "nope".into();
    let unknown = c.get_round_history(unknown).await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let mut bad = page(1, 1);
    bad.job_id = "x".repeat(65);
    let bad = c.get_round_history(bad).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
}
