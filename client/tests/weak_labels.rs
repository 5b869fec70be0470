//! A tenant with logs and no labels contributes from day one: its sessions
//! take silver labels from the weak labeller, it trains on them when
//! selected, and its clipped update reaches a real coordinator over loopback
//! mutual TLS (one round, q = 1), while a tenant with ground truth next to it
//! trains on that as before.

#![allow(clippy::unwrap_used)]

mod support;

use fedsec_client::ledger::Ledger;
use fedsec_client::{DataSource, Event, LabelledLog, PrivacyPolicy, RunOutcome};
use fedsec_proto::v1;
use support::{Harness, Recorder, T, builder, job, state_dir, tenant_logs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_with_logs_only_trains_on_silver_labels_and_submits() {
    let h = Harness::start().await;
    let logs = tenant_logs(&h.dir.path().join("logs"), 2, 23);
    // Tenant 0: the log alone (its labels file is not even named).
    let logs_only = LabelledLog {
        log: logs[0].log.clone(),
        labels: None,
    };
    let mut runs = Vec::new();
    let mut recorders = Vec::new();
    let mut ledgers = Vec::new();
    let mut handles = Vec::new();
    for (i, files) in [logs_only, logs[1].clone()].into_iter().enumerate() {
        let p = builder(
            &h.endpoint(),
            h.pki
                .client_tls(&format!("tenant-{i}"), &format!("client-{i}"))
                .unwrap(),
            DataSource::Files(vec![files]),
            PrivacyPolicy::new(50.0, 1e-5),
            &state_dir(h.dir.path(), &format!("c{i}")),
            i as u64,
        )
        .job("weak")
        .build()
        .unwrap();
        recorders.push(Recorder::start(p.subscribe()));
        ledgers.push(p.ledger_path());
        handles.push(p.handle());
        runs.push(tokio::spawn(p.run(std::future::pending())));
    }
    let admin = h.running().admin();
    let until = tokio::time::Instant::now() + T;
    while admin.clients().await.unwrap().len() < 2 {
        assert!(
            tokio::time::Instant::now() < until,
            "clients did not register"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    admin.create_job(job("weak", 1.0, 1.0, 1, 2)).await.unwrap();
    let done = admin
        .wait_for_job("weak", T, |j| {
            j.state == v1::JobState::Completed as i32 || j.state == v1::JobState::Failed as i32
        })
        .await
        .unwrap();
    assert_eq!(done.state, v1::JobState::Completed as i32, "{done:?}");
    for r in runs {
        assert!(matches!(
            r.await.unwrap().unwrap(),
            RunOutcome::JobFinished { .. }
        ));
    }
    for (i, rec) in recorders.iter().enumerate() {
        let events = rec.settled().await;
        let loaded: usize = events
            .iter()
            .map(|e| match e {
                Event::DataLoaded { added, .. } => *added,
                _ => 0,
            })
            .sum();
        assert!(loaded >= 50, "tenant {i} loaded {loaded} sessions");
        let trained = events.iter().find_map(|e| match e {
            Event::Trained { report, .. } => Some(report.clone()),
            _ => None,
        });
        let report = trained.unwrap_or_else(|| panic!("tenant {i} did not train: {events:?}"));
        assert!(report.examples >= 20, "{report:?}");
        assert!(
            events.iter().any(|e| matches!(e, Event::Submitted { .. })),
            "tenant {i} did not submit: {events:?}"
        );
        let ledger = Ledger::read(&ledgers[i]).unwrap();
        assert_eq!(ledger.entries.len(), 1, "tenant {i}'s ledger");
        let (train, holdout) = handles[i].data_counts();
        assert_eq!(train + holdout, loaded);
    }
    // The coordinator accepted both updates in its one round.
    let attempts = h.running().store().attempts("weak").unwrap();
    assert!(!attempts.is_empty());
    let entries = admin.ledger("weak").await.unwrap();
    assert_eq!(entries.len(), 1);
}
