//! The receipts' accounted sensitivity reveals no count of tenants (issue 13).
//!
//! C′ includes the rounding bound of the coordinator's `f64` sum, which
//! grows with the number of contributions it covers. An older coordinator
//! sized it from the tenants selectable when the round was planned, so the
//! C′ on every published receipt revealed how many tenants had registered.
//! It is now sized from the public, enforced `limits.max_tenants` (plus a
//! job's inserted canaries):
//! - two jobs identical but for the number of registered tenants publish
//!   the same C′ (and ε), equal to C + grid + rounding(max_tenants);
//! - `Register` of a new tenant past the cap is refused (`RESOURCE_EXHAUSTED`,
//!   `tenant_capacity`), audited and counted, also under concurrency; more
//!   identities of an admitted tenant still register;
//! - a store holding more tenants than the cap refuses to start, naming the key.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_coordinator::Coordinator;
use fedsec_privacy::{GaussianNoise, PrivacyReceipt};
use fedsec_proto::v1;
use support::{Harness, TestClient, job, tenant_of, test_config};

const T: Duration = Duration::from_secs(20);

/// Starts a coordinator with `tenants` registered tenants and `max_tenants`
/// (`None`: the default), runs one round of the same job (nobody reports:
/// it is released at its deadline), and returns the published receipt.
async fn receipt_with(tenants: usize, max_tenants: Option<u64>) -> PrivacyReceipt {
    let mut h = Harness::start_with(|c| {
        if let Some(m) = max_tenants {
            c.limits.max_tenants = m;
        }
    })
    .await;
    let mut clients = h.clients(tenants).await;
    let mut spec = job("cprime", 4, 0.5);
    spec.population = Some(4);
    spec.rounds = 1;
    spec.round_deadline_ms = 200;
    spec.noise_multiplier = Some(2.0);
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    admin
        .wait_for_job("cprime", T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    let (header, _) = clients[0].get_model("cprime", 1).await;
    let parsed: PrivacyReceipt = serde_json::from_str(&header.receipt.unwrap().json).unwrap();
    parsed.verify().unwrap();
    h.shutdown().await;
    parsed
}

#[tokio::test]
async fn receipts_state_the_same_sensitivity_whatever_the_number_of_registered_tenants() {
    let few = receipt_with(2, None).await;
    let many = receipt_with(7, None).await;
    assert_eq!(few.rounds.len(), 1);
    assert_eq!(many.rounds.len(), 1);
    let (c_few, c_many) = (few.rounds[0].sensitivity, many.rounds[0].sensitivity);
    assert_eq!(
        c_few, c_many,
        "C′ must not depend on how many tenants registered (2 vs 7)"
    );
    assert_eq!(few.epsilon_pld, many.epsilon_pld);
    // C′ = C + the sampler's grid inflation + the f64 sum's rounding over
    // limits.max_tenants (default 10⁶) contributions: 2.2e-4 relative.
    let grid = fedsec_privacy::DiscreteGaussianNoise::default().sensitivity_inflation(4);
    let rounding = |n| fedsec_privacy::accumulation_inflation(1.0, n);
    assert_eq!(c_few, 1.0 + (grid + rounding(1_000_000)));
    assert!((2.2e-4..2.3e-4).contains(&rounding(1_000_000)));
    // C′ follows the public key, not the registry.
    let capped = receipt_with(2, Some(10)).await;
    assert_eq!(capped.rounds[0].sensitivity, 1.0 + (grid + rounding(10)));
    assert!(capped.rounds[0].sensitivity < c_few);
}

#[tokio::test]
async fn registration_past_max_tenants_is_refused_and_a_larger_store_refuses_to_start() {
    let mut h = Harness::start_with(|c| c.limits.max_tenants = 3).await;
    // Six new tenants register at once: exactly three are admitted.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let mut c = h.client(&format!("c{i:03}")).await;
        tasks.push(tokio::spawn(async move {
            let r = c.register().await;
            (c, r)
        }));
    }
    let (mut clients, mut results) = (Vec::new(), Vec::new());
    for t in tasks {
        let (c, r) = t.await.unwrap();
        clients.push(c);
        results.push(r);
    }
    let admitted: Vec<usize> = (0..6).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(admitted.len(), 3, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.code(), tonic::Code::ResourceExhausted, "{r:?}");
        assert!(r.message().contains("limits.max_tenants = 3"), "{r:?}");
    }
    // A refused tenant stays refused; another identity of an admitted
    // tenant registers (it adds no tenant).
    let refused = (0..6).find(|i| !admitted.contains(i)).unwrap();
    let e = clients[refused].register().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    let first = &clients[admitted[0]].id;
    let mut second = TestClient::connect(
        &h.pki,
        &tenant_of(first),
        &format!("{first}-b"),
        &h.endpoint(),
    );
    second.register().await.unwrap();
    assert_eq!(h.running().admin().clients().await.unwrap().len(), 4);
    // Each refusal is counted and audited.
    let audit = h.running().store().audit_events(None, 1000).unwrap();
    let refusals = audit
        .iter()
        .filter(|e| e.event.kind == "update_rejected" && e.event.detail.contains("tenant_capacity"))
        .count();
    assert_eq!(refusals, 4, "{audit:?}");
    let metrics = h.running().metrics().encode();
    assert!(
        metrics.contains("reason=\"tenant_capacity\"} 4"),
        "{metrics}"
    );
    h.shutdown().await;

    // The store now holds 3 tenants: a limit of 2 refuses to start, naming
    // the key; the limit it was run with starts.
    let mut config = test_config(h.dir.path());
    config.limits.max_tenants = 2;
    let err = Coordinator::start_with_tls(config, h.pki.server_tls().clone())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("limits.max_tenants"), "{err}");
    assert!(err.to_string().contains("holds 3"), "{err}");
    h.reopen(|c| c.limits.max_tenants = 3).await;
    assert_eq!(h.running().admin().clients().await.unwrap().len(), 4);
    h.shutdown().await;
}
