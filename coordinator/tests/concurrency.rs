//! 200 clients on their own mTLS connections submit concurrently into one
//! round; every update is accepted and the published mean is theirs.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Harness, TestClient, job, tenant_of};

const T: Duration = Duration::from_secs(60);
const N: usize = 200;
const DIM: u32 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_submissions_in_one_round() {
    let h = Harness::start_with(|c| c.limits.max_concurrent_uploads = 8).await;
    let ep = h.endpoint();
    let mut clients: Vec<TestClient> = (0..N)
        .map(|i| {
            TestClient::connect(
                &h.pki,
                &tenant_of(&format!("c{i:03}")),
                &format!("c{i:03}"),
                &ep,
            )
        })
        .collect();
    for c in &mut clients {
        c.register().await.unwrap();
    }
    let mut spec = job("many", DIM, 1.0);
    spec.population = Some(N as u64);
    spec.rounds = 1;
    spec.min_clients = N as u32;
    spec.disable_noise = true;
    spec.round_deadline_ms = 60_000;
    spec.clipping.clip_norm = 1e6;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let (_, w0) = clients[0].get_model("many", 0).await;

    // Everyone fetches the task first, then all uploads start together.
    let mut tasks = Vec::with_capacity(N);
    for c in &mut clients {
        tasks.push(c.wait_task("many", T).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(N));
    let uploads: Vec<_> = clients
        .into_iter()
        .zip(tasks)
        .enumerate()
        .map(|(i, (mut c, t))| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                let update: Vec<f32> = (0..DIM)
                    .map(|j| ((i + j as usize) % 7) as f32 * 0.01)
                    .collect();
                barrier.wait().await;
                c.submit(&t, &update, format!("n{i}").as_bytes()).await
            })
        })
        .collect();
    for (i, u) in uploads.into_iter().enumerate() {
        let r = u
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("client {i}: {e:?}"));
        assert!(r.newly_accepted);
    }
    let job = admin
        .wait_for_job("many", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    assert_eq!(job.expected_cohort, N as f64);
    let ledger = admin.ledger("many").await.unwrap();
    assert_eq!(ledger[0].participants, N as u32);
    assert_eq!(ledger[0].rejected, 0);
    let mut c = TestClient::connect(&h.pki, &tenant_of("c000"), "c000", &ep);
    let (_, w1) = c.get_model("many", 0).await;
    for j in 0..DIM as usize {
        let sum: f64 = (0..N)
            .map(|i| ((i + j) % 7) as f64 * f64::from(0.01f32))
            .sum();
        let expected = (f64::from(w0[j]) + sum / N as f64) as f32;
        assert!(
            (w1[j] - expected).abs() < 1e-5,
            "{j}: {} vs {expected}",
            w1[j]
        );
    }
    let infos = admin.clients().await.unwrap();
    assert_eq!(infos.len(), N);
    assert!(infos.iter().all(|c| c.rounds_participated == 1));
}
