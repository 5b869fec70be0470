//! The update screen end to end over loopback mTLS: a hostile client with a
//! valid certificate sends a boosted update (or, once a published direction
//! exists, a flipped one within the clip norm). With policy `exclude` it is
//! left out of the sum and the honest round still releases the exact mean of
//! the honest updates over the fixed denominator; with `quarantine` its
//! identity is also quarantined through the audited path; with `log` it is
//! only logged (WARN, target `fedsec::screen`) and re-clipped into the sum.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fedsec_coordinator::config::ScreenPolicyKind;
use fedsec_coordinator::error::RejectReason;
use fedsec_proto::v1::{self, get_task_response};
use support::{Harness, TestClient, job};

const T: Duration = Duration::from_secs(20);

/// Captures the `fedsec::screen` events of this test process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn install() -> Self {
        let c = Self::default();
        let w = c.clone();
        // nextest runs each test in its own process; under `cargo test` a
        // second install fails and that test reads the first one's buffer.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("fedsec::screen=warn"))
            .with_writer(move || w.clone())
            .with_ansi(false)
            .try_init();
        c
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Three tenants, q = 1, no noise (the published step is the exact sum
/// over the fixed denominator 3), 2 rounds; c002 is the attacker.
async fn setup(
    id: &str,
    policy: ScreenPolicyKind,
    min_cosine: f64,
) -> (Harness, Vec<TestClient>, Vec<f32>) {
    let h = Harness::start().await;
    let clients = h.clients(3).await;
    let mut spec = job(id, 4, 1.0);
    spec.population = Some(3);
    spec.disable_noise = true;
    spec.rounds = 2;
    spec.round_deadline_ms = 3_000;
    spec.clipping.clip_norm = 1.0;
    spec.screen.policy = policy;
    spec.screen.min_cosine = min_cosine;
    h.running().admin().create_job(spec).await.unwrap();
    let mut c0 = TestClient::connect(&h.pki, "tenant-c000", "c000", &h.endpoint());
    let (_, w0) = c0.get_model(id, 0).await;
    (h, clients, w0)
}

const HONEST: [[f32; 4]; 2] = [[0.3, -0.4, 0.0, 0.0], [0.0, 0.2, 0.1, 0.0]];
/// Norm 100 = 100·C: a model-replacement boost.
const BOOSTED: [f32; 4] = [60.0, 80.0, 0.0, 0.0];

fn assert_step(w0: &[f32], w1: &[f32], sum: &[f64; 4], denominator: f64) {
    for i in 0..4 {
        let expected = (f64::from(w0[i]) + sum[i] / denominator) as f32;
        assert!(
            (w1[i] - expected).abs() <= 1e-6 * expected.abs().max(1.0),
            "coordinate {i}: published {} expected {expected}",
            w1[i]
        );
    }
}

fn honest_sum() -> [f64; 4] {
    let mut s = [0.0; 4];
    for u in HONEST {
        for i in 0..4 {
            s[i] += f64::from(u[i]);
        }
    }
    s
}

/// Round 1: the honest two report, the attacker sends `BOOSTED`.
async fn round_one(
    clients: &mut [TestClient],
    id: &str,
) -> (v1::Task, Result<v1::SubmitUpdateResponse, tonic::Status>) {
    let mut task = None;
    for (c, u) in clients.iter_mut().zip(&HONEST) {
        let t = c.wait_task(id, T).await;
        assert!(c.submit(&t, u, b"n").await.unwrap().newly_accepted);
        task = Some(t);
    }
    let t = clients[2].wait_task(id, T).await;
    let r = clients[2].submit(&t, &BOOSTED, b"evil").await;
    (task.unwrap(), r)
}

#[tokio::test]
async fn policy_exclude_leaves_a_hostile_update_out_and_the_honest_round_releases() {
    let logs = Captured::install();
    let id = "screen-exclude";
    let (h, mut clients, w0) = setup(id, ScreenPolicyKind::Exclude, -0.5).await;
    let admin = h.running().admin();
    let (_, r) = round_one(&mut clients, id).await;
    let status = r.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("update screen"), "{status:?}");
    assert!(
        status.message().contains("norm_ratio 100.0000 > 1.01"),
        "{status:?}"
    );
    // Every selected tenant is in (2 accepted + 1 excluded): the round
    // closes and releases the honest sum over the fixed denominator 3.
    admin
        .wait_for_job(id, T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let (header, w1) = clients[0].get_model(id, 0).await;
    assert_eq!(header.version, 1);
    assert_step(&w0, &w1, &honest_sum(), 3.0);
    let ledger = admin.ledger(id).await.unwrap();
    assert_eq!(ledger[0].participants, 2);
    assert_eq!(ledger[0].rejected, 1, "counted once, race-free");
    assert!(
        ledger[0].note.contains("1 update(s) excluded"),
        "{:?}",
        ledger[0].note
    );
    let m = h.running().metrics();
    assert_eq!(m.updates_screened(id, "excluded"), 1);
    assert!(m.rejections(RejectReason::Screened) >= 1);

    // Round 2: the published direction now exists. The attacker stays
    // within the clip norm but sends the flipped direction (0.9·C): the
    // cosine rule (min_cosine = -0.5 for this job) fires.
    let dir: Vec<f32> = w1.iter().zip(&w0).map(|(a, b)| a - b).collect();
    let n = support::norm(&dir) as f32;
    let flipped: Vec<f32> = dir.iter().map(|x| -0.9 * x / n).collect();
    let t = clients[2].wait_task_after(id, (1, 1), T).await;
    assert_eq!(t.round, 2, "the excluded client is still selected");
    let status = clients[2].submit(&t, &flipped, b"flip").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("cosine -1.0000 < -0.5"),
        "{status:?}"
    );
    // An honest update along the published direction passes.
    let t0 = clients[0].wait_task_after(id, (1, 1), T).await;
    let along: Vec<f32> = dir.iter().map(|x| 0.5 * x / n).collect();
    assert!(
        clients[0]
            .submit(&t0, &along, b"n2")
            .await
            .unwrap()
            .newly_accepted
    );
    assert_eq!(m.updates_screened(id, "excluded"), 2);

    // Not quarantined under `exclude`.
    let c2 = admin
        .clients()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.client_id == "c002")
        .unwrap();
    assert_eq!(c2.status, v1::ClientStatus::Active as i32);
    // The WARN events name the job, round, client, tenant, statistic and values.
    let text = logs.text();
    assert!(text.contains("WARN"), "{text}");
    for needle in [
        "fedsec::screen",
        "job=screen-exclude",
        "round=1",
        "client=c002",
        "tenant=tenant-c002",
        "statistic=norm_ratio",
        "statistic=cosine",
        "outcome=\"excluded\"",
    ] {
        assert!(text.contains(needle), "{needle} missing in {text}");
    }
    assert!(
        !text.contains("client=c000"),
        "honest updates are not flagged: {text}"
    );
}

#[tokio::test]
async fn policy_quarantine_excludes_and_quarantines_through_the_audited_path() {
    let id = "screen-quarantine";
    let (h, mut clients, w0) = setup(id, ScreenPolicyKind::Quarantine, -1.0).await;
    let admin = h.running().admin();
    let (_, r) = round_one(&mut clients, id).await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::PermissionDenied);
    admin
        .wait_for_job(id, T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let (_, w1) = clients[0].get_model(id, 0).await;
    assert_step(&w0, &w1, &honest_sum(), 3.0);
    let c2 = admin
        .clients()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.client_id == "c002")
        .unwrap();
    assert_eq!(c2.status, v1::ClientStatus::Quarantined as i32);
    assert!(c2.status_reason.contains("update screen"), "{c2:?}");
    assert!(c2.status_reason.contains("norm_ratio"), "{c2:?}");
    let events = admin.audit_events(None, 100).await.unwrap();
    let q = events
        .iter()
        .find(|e| e.kind == "client_quarantined" && e.client_id == "c002")
        .expect("an audited quarantine");
    assert!(q.detail.starts_with("by update-screen"), "{q:?}");
    assert_eq!(h.running().metrics().updates_screened(id, "quarantined"), 1);
    // The quarantined identity is refused from now on.
    let e = clients[2].get_task(id).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
}

#[tokio::test]
async fn policy_log_only_logs_and_the_update_is_reclipped_into_the_sum() {
    let id = "screen-log";
    let (h, mut clients, w0) = setup(id, ScreenPolicyKind::Log, -1.0).await;
    let admin = h.running().admin();
    let (_, r) = round_one(&mut clients, id).await;
    assert!(r.unwrap().newly_accepted, "policy log keeps the update");
    admin
        .wait_for_job(id, T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let (_, w1) = clients[0].get_model(id, 0).await;
    // Re-clipped to C = 1: BOOSTED / 100.
    let mut sum = honest_sum();
    for i in 0..4 {
        sum[i] += f64::from(BOOSTED[i]) / 100.0;
    }
    assert_step(&w0, &w1, &sum, 3.0);
    let ledger = admin.ledger(id).await.unwrap();
    assert_eq!(ledger[0].participants, 3);
    assert_eq!(ledger[0].note, "");
    let m = h.running().metrics();
    assert_eq!(m.updates_screened(id, "logged"), 1);
    assert_eq!(m.updates_screened(id, "excluded"), 0);
    assert_eq!(m.rejections(RejectReason::Screened), 0);
    assert!(matches!(
        clients[2].get_task(id).await.unwrap(),
        get_task_response::Outcome::Task(_) | get_task_response::Outcome::Retry(_)
    ));
}
