//! The coordinator is stopped (gracefully, then by a crash) and restarted
//! mid-job on the same data directory and port; the participants keep
//! running, reconnect, re-register and carry on, and the job finishes with
//! every client's ledger matching the coordinator's.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_client::ledger::Ledger;
use fedsec_client::{DataSource, Event, PrivacyPolicy, RunOutcome};
use fedsec_proto::v1;
use support::{Harness, Recorder, T, builder, check_ledger_against, job, state_dir, tenant_logs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_carry_on_through_a_stop_and_a_crash_of_the_coordinator() {
    let mut h = Harness::start().await;
    let logs = tenant_logs(&h.dir.path().join("logs"), 3, 5);
    let mut runs = Vec::new();
    let mut recorders = Vec::new();
    let mut ledgers = Vec::new();
    for (i, files) in logs.iter().enumerate() {
        let p = builder(
            &h.endpoint(),
            h.pki
                .client_tls(&format!("tenant-r{i}"), &format!("client-{i}"))
                .unwrap(),
            DataSource::Files(vec![files.clone()]),
            PrivacyPolicy::new(100.0, 1e-5),
            &state_dir(h.dir.path(), &format!("c{i}")),
            i as u64,
        )
        .job("restart")
        .build()
        .unwrap();
        recorders.push(Recorder::start(p.subscribe()));
        ledgers.push(p.ledger_path());
        runs.push(tokio::spawn(p.run(std::future::pending())));
    }
    let admin = h.running().admin();
    let until = tokio::time::Instant::now() + T;
    while admin.clients().await.unwrap().len() < 3 {
        assert!(
            tokio::time::Instant::now() < until,
            "clients did not register"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut spec = job("restart", 1.0, 1.0, 5, 3);
    spec.min_clients = 3;
    admin.create_job(spec).await.unwrap();

    // After round 1: a graceful stop (the open round is abandoned).
    admin
        .wait_for_job("restart", T, |j| j.rounds_completed >= 1)
        .await
        .unwrap();
    h.stop().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.restart().await;

    // After round 3: a crash (no shutdown at all).
    let admin = h.running().admin();
    admin
        .wait_for_job("restart", T, |j| j.rounds_completed >= 3)
        .await
        .unwrap();
    drop(h.running.take());
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.restart().await;

    let admin = h.running().admin();
    let done = admin
        .wait_for_job("restart", T, |j| {
            j.state == v1::JobState::Completed as i32 || j.state == v1::JobState::Failed as i32
        })
        .await
        .unwrap();
    assert_eq!(done.state, v1::JobState::Completed as i32, "{done:?}");
    assert_eq!(done.rounds_completed, 5);
    for r in runs {
        assert!(matches!(
            r.await.unwrap().unwrap(),
            RunOutcome::JobFinished { .. }
        ));
    }
    let coord = admin.ledger("restart").await.unwrap();
    let rounds: Vec<u64> = coord.iter().map(|e| e.charge.unwrap().round).collect();
    assert_eq!(rounds, vec![1, 2, 3, 4, 5], "gap-free");
    let attempts = h.running().store().attempts("restart").unwrap();
    assert!(
        attempts
            .iter()
            .any(|a| a.state == fedsec_coordinator::store::AttemptState::Abandoned),
        "the stops abandoned at least one attempt"
    );
    for (i, path) in ledgers.iter().enumerate() {
        let file = Ledger::read(path).unwrap();
        // q = 1 and three tenants: every committed round has every client.
        let mut joined = check_ledger_against(&file, &coord, &attempts);
        joined.sort_unstable();
        assert_eq!(joined, vec![1, 2, 3, 4, 5], "client {i}");
        // Contributions to attempts that never committed stay in the
        // tenant's ledger (they count against its budget).
        assert!(file.entries.len() >= 5);
        // The outage was seen and retried, and the client registered again.
        let ev = recorders[i].settled().await;
        assert!(
            ev.iter().any(|e| matches!(e, Event::Retrying { .. })),
            "client {i} retried"
        );
        let registrations = ev
            .iter()
            .filter(|e| matches!(e, Event::Registered { .. }))
            .count();
        assert!(registrations >= 2, "client {i} registered {registrations}×");
    }
}
