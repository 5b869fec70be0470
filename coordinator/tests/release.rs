//! What the privacy guarantee assumes, checked over loopback mTLS with real
//! gRPC clients:
//!
//! - released rounds are the Poisson sample the accountant assumes: a fixed
//!   tenant's inclusion rate in released rounds is q (N = 20, q = 0.25,
//!   `min_clients` = 5, 200 rounds; an older coordinator, which abandoned
//!   attempts below `min_clients` and redrew the cohort, gave 1.26·q), and
//!   tasks carry no count (every round is attempt 1 of base version r − 1);
//! - the privacy unit is the tenant: two certificates of one tenant are one
//!   selection and one accepted submission per round;
//! - the denominator is the declared population, whatever registers, and a
//!   drift from it is warned about.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_privacy::audit::clopper_pearson_upper;
use fedsec_proto::v1::{self, get_task_response};
use support::{Harness, TestClient, job};
use tonic::Code;

const T: Duration = Duration::from_secs(20);

/// Whether `q` is inside the two-sided 99 % Clopper–Pearson interval of `k`
/// successes in `n` trials, with the interval.
fn in_99_interval(k: u64, n: u64, q: f64) -> (bool, f64, f64) {
    let hi = clopper_pearson_upper(k, n, 0.005).unwrap();
    let lo = 1.0 - clopper_pearson_upper(n - k, n, 0.005).unwrap();
    (lo <= q && q <= hi, lo, hi)
}

/// Polls and reports until the job finishes; returns (round, attempt,
/// base version) of every task it received.
async fn participate(mut c: TestClient, job_id: &'static str) -> Vec<(u64, u32, u64)> {
    let mut tasks = Vec::new();
    loop {
        match c.get_task(job_id).await.unwrap() {
            get_task_response::Outcome::Task(t) => {
                tasks.push((t.round, t.attempt, t.base_version));
                let nonce = format!("{}-{}", t.round, t.attempt);
                c.submit(&t, &[0.0, 0.0], nonce.as_bytes()).await.unwrap();
            }
            get_task_response::Outcome::Retry(_) => {
                tokio::time::sleep(Duration::from_millis(8)).await;
            }
            get_task_response::Outcome::Finished(_) => return tasks,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_rounds_include_a_fixed_tenant_at_rate_q_over_grpc() {
    const N: usize = 20;
    const Q: f64 = 0.25;
    const ROUNDS: u64 = 200;
    let h = Harness::start_with(|c| {
        c.rate_limits.enabled = false;
        c.poll_interval_ms = 10;
    })
    .await;
    let clients = h.clients(N).await;
    let mut spec = job("poisson", 2, Q);
    spec.population = Some(N as u64);
    spec.min_clients = 5;
    spec.rounds = ROUNDS;
    spec.disable_noise = true;
    spec.round_deadline_ms = 3_000;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let started = std::time::Instant::now();
    let runs: Vec<_> = clients
        .into_iter()
        .map(|c| tokio::spawn(participate(c, "poisson")))
        .collect();
    let mut tasks = Vec::new();
    for r in runs {
        tasks.push(
            tokio::time::timeout(Duration::from_secs(180), r)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let elapsed = started.elapsed();
    let done = admin.job("poisson").unwrap();
    assert_eq!(done.state, v1::JobState::Completed as i32, "{done:?}");
    assert_eq!(done.rounds_completed, ROUNDS);

    // Every attempt was released; tasks carry no count: attempt 1 of every
    // round, trained on the previous round's version.
    let attempts = h.running().store().attempts("poisson").unwrap();
    assert_eq!(attempts.len() as u64, ROUNDS);
    assert!(
        attempts
            .iter()
            .all(|a| a.state == fedsec_coordinator::store::AttemptState::Committed)
    );
    for (r, a, base) in tasks.iter().flatten() {
        assert_eq!((*a, *base), (1, r - 1), "round {r}");
    }
    let below = attempts.iter().filter(|a| a.selected < 5).count();
    assert!(
        below > 20,
        "cohorts below min_clients are released ({below})"
    );

    // A fixed tenant's inclusion rate in released rounds is q; so is the
    // pooled rate (N·R independent draws), which is where the 1.26·q of a
    // size-conditioned cohort shows (z ≈ 9).
    let infos = admin.clients().await.unwrap();
    let rounds_of = |id: &str| {
        infos
            .iter()
            .find(|c| c.client_id == id)
            .unwrap()
            .rounds_participated
    };
    let fixed = rounds_of("c000");
    assert_eq!(fixed, tasks[0].len() as u64, "c000 reported every task");
    let (ok, lo, hi) = in_99_interval(fixed, ROUNDS, Q);
    assert!(
        ok,
        "c000 in {fixed} of {ROUNDS} rounds: 99 % interval [{lo:.3}, {hi:.3}] misses q = {Q}"
    );
    let pooled: u64 = infos.iter().map(|c| c.rounds_participated).sum();
    let trials = ROUNDS * N as u64;
    let (ok, lo, hi) = in_99_interval(pooled, trials, Q);
    assert!(
        ok,
        "{pooled} inclusions in {trials}: rate {:.4}, 99 % interval [{lo:.4}, {hi:.4}] misses q = {Q}",
        pooled as f64 / trials as f64
    );
    let ledger = admin.ledger("poisson").await.unwrap();
    let reported: u64 = ledger.iter().map(|e| u64::from(e.participants)).sum();
    assert_eq!(reported, pooled);
    eprintln!(
        "{ROUNDS} rounds over gRPC in {:.1} s; c000 in {fixed}, pooled rate {:.4}",
        elapsed.as_secs_f64(),
        pooled as f64 / trials as f64
    );
}

#[tokio::test]
async fn two_certificates_of_one_tenant_are_one_selection_and_one_submission() {
    let h = Harness::start().await;
    let ep = h.endpoint();
    // Tenant "acme" holds two client certificates; "other" holds one.
    let mut acme1 = TestClient::connect(&h.pki, "acme", "acme-1", &ep);
    let mut acme2 = TestClient::connect(&h.pki, "acme", "acme-2", &ep);
    let mut other = TestClient::connect(&h.pki, "other", "other-1", &ep);
    for c in [&mut acme1, &mut acme2, &mut other] {
        c.register().await.unwrap();
    }
    let mut spec = job("unit", 3, 1.0);
    spec.population = Some(2);
    spec.rounds = 2;
    spec.disable_noise = true;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let (_, w0) = acme1.get_model("unit", 0).await;

    // Both identities of the selected tenant get the task …
    let t1 = acme1.wait_task("unit", T).await;
    let t2 = acme2.wait_task("unit", T).await;
    assert_eq!((t1.round, t1.attempt), (t2.round, t2.attempt));
    // … but the tenant contributes one update to the round.
    acme1.submit(&t1, &[0.5, 0.0, 0.0], b"a").await.unwrap();
    let e = acme2.submit(&t2, &[0.0, 0.5, 0.0], b"b").await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(
        e.message().contains("tenant already submitted this round"),
        "{}",
        e.message()
    );
    // Its other identity is told so, and the sender's retry stays idempotent.
    match acme2.get_task("unit").await.unwrap() {
        get_task_response::Outcome::Retry(r) => {
            assert!(r.reason.contains("already received"), "{}", r.reason);
        }
        other => panic!("expected retry, got {other:?}"),
    }
    assert!(
        !acme1
            .submit(&t1, &[0.5, 0.0, 0.0], b"a")
            .await
            .unwrap()
            .newly_accepted
    );
    // The round closes when both tenants are in: the cohort counts tenants.
    let t3 = other.wait_task("unit", T).await;
    other.submit(&t3, &[0.0, 0.0, 0.5], b"c").await.unwrap();
    admin
        .wait_for_job("unit", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let ledger = admin.ledger("unit").await.unwrap();
    assert_eq!(ledger[0].participants, 2);
    let (header, w1) = acme1.get_model("unit", 0).await;
    for (i, d) in [0.5f32, 0.0, 0.5].iter().enumerate() {
        // Denominator q × population = 2; acme2's update is not in the sum.
        assert!((w1[i] - (w0[i] + d / 2.0)).abs() < 1e-6, "{i}");
    }
    let receipt = header.receipt.unwrap();
    assert!(receipt.neighbouring.contains("one tenant"), "{receipt:?}");
    let infos = admin.clients().await.unwrap();
    let rounds = |id: &str| {
        infos
            .iter()
            .find(|c| c.client_id == id)
            .unwrap()
            .rounds_participated
    };
    assert_eq!(
        (rounds("acme-1"), rounds("acme-2"), rounds("other-1")),
        (1, 0, 1)
    );

    // Round 2: the second identity may send the tenant's update instead;
    // then the first is refused.
    let t = acme2
        .wait_task_after("unit", (t1.round, t1.attempt), T)
        .await;
    let t_other = acme1.wait_task("unit", T).await;
    assert_eq!((t.round, t_other.round), (2, 2));
    acme2.submit(&t, &[0.1, 0.0, 0.0], b"d").await.unwrap();
    let e = acme1
        .submit(&t_other, &[0.1, 0.0, 0.0], b"e")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn the_denominator_is_the_declared_population_and_drift_is_warned() {
    let h = Harness::start().await;
    // Two tenants register; the job is sized for four.
    let mut clients = h.clients(2).await;
    let mut spec = job("pop", 3, 1.0);
    spec.population = Some(4);
    spec.min_clients = 4;
    spec.rounds = 1;
    spec.disable_noise = true;
    spec.round_deadline_ms = 2_000;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let (_, w0) = clients[0].get_model("pop", 0).await;
    for c in &mut clients {
        let t = c.wait_task("pop", T).await;
        c.submit(&t, &[0.4, 0.0, -0.4], b"n").await.unwrap();
    }
    let job = admin
        .wait_for_job("pop", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    assert_eq!(job.expected_cohort, 4.0, "q × declared population");
    assert_eq!(job.registered_tenants, 2);
    assert_eq!(job.config.as_ref().unwrap().population, 4);
    let (_, w1) = clients[0].get_model("pop", 0).await;
    for (i, d) in [0.4f32, 0.0, -0.4].iter().enumerate() {
        // Sum 2·d over the fixed 4, not over the 2 registered or reporting.
        let expected = w0[i] + 2.0 * d / 4.0;
        assert!(
            (w1[i] - expected).abs() < 1e-6,
            "{i}: {} vs {expected}",
            w1[i]
        );
    }
    // The drift (2 of 4: −50 % > 20 %) was warned once: metric and audit.
    let metrics = h.running().metrics();
    assert_eq!(metrics.population_drift_warnings("pop"), 1);
    let text = metrics.encode();
    assert!(text.contains("fedsec_population{job=\"pop\"} 4"), "{text}");
    assert!(
        text.contains("fedsec_population_drift{job=\"pop\"} -0.5"),
        "{text}"
    );
    let events = admin.audit_events(Some("pop"), 50).await.unwrap();
    let drift: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "population_drift")
        .collect();
    assert_eq!(drift.len(), 1, "{events:?}");
    assert!(
        drift[0].detail.contains("2 tenant(s) registered"),
        "{drift:?}"
    );
}

#[tokio::test]
async fn close_at_deadline_keeps_publication_times_independent_of_the_cohort() {
    let h = Harness::start().await;
    let mut clients = h.clients(1).await;
    let mut spec = job("timing", 3, 1.0);
    spec.population = Some(1);
    spec.min_clients = 1;
    spec.rounds = 1;
    spec.disable_noise = true;
    spec.round_deadline_ms = 700;
    spec.close_at_deadline = true;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    // The whole cohort reports at once; the round still runs to its deadline.
    let t = clients[0].wait_task("timing", T).await;
    clients[0].submit(&t, &[0.1, 0.0, 0.0], b"n").await.unwrap();
    admin
        .wait_for_job("timing", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let a = &h.running().store().attempts("timing").unwrap()[0];
    let lasted = a.closed_unix_ms.unwrap() - a.opened_unix_ms;
    assert!(
        lasted >= 690,
        "closed after {lasted} ms, before its deadline"
    );
    assert_eq!(a.accepted, 1);
}
