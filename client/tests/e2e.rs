//! End to end: a real coordinator and five participants in one process,
//! over loopback mutual TLS, training three rounds on generated tenant logs.
//! Every client's ledger matches the coordinator's ledger for the rounds it
//! joined, and the guard's amplified ε is the coordinator's own ε.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;

use fedsec_client::ledger::Ledger;
use fedsec_client::{Basis, DataSource, Event, PrivacyPolicy, RunOutcome};
use fedsec_proto::v1;
use support::{Harness, Recorder, T, builder, check_ledger_against, job, state_dir, tenant_logs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_clients_three_rounds_ledgers_match_the_coordinator() {
    let h = Harness::start().await;
    let logs = tenant_logs(&h.dir.path().join("logs"), 5, 11);
    let mut runs = Vec::new();
    let mut handles = Vec::new();
    let mut recorders = Vec::new();
    let mut ledgers = Vec::new();
    for (i, files) in logs.iter().enumerate() {
        let state = state_dir(h.dir.path(), &format!("c{i}"));
        let p = builder(
            &h.endpoint(),
            h.pki
                .client_tls(&format!("tenant-{i}"), &format!("client-{i}"))
                .unwrap(),
            DataSource::Files(vec![files.clone()]),
            // These tenants trust the coordinator's sampling, so the guard
            // can be checked against the coordinator's own ε.
            PrivacyPolicy {
                trust_coordinator_sampling: true,
                ..PrivacyPolicy::new(50.0, 1e-5)
            },
            &state,
            i as u64,
        )
        .job("e2e")
        .build()
        .unwrap();
        handles.push(p.handle());
        recorders.push(Recorder::start(p.subscribe()));
        ledgers.push(p.ledger_path());
        runs.push(tokio::spawn(p.run(std::future::pending())));
    }
    let admin = h.running().admin();
    // Everyone registered before the job starts, so q applies to all five.
    let until = tokio::time::Instant::now() + T;
    while admin.clients().await.unwrap().len() < 5 {
        assert!(
            tokio::time::Instant::now() < until,
            "clients did not register"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut spec = job("e2e", 0.8, 1.0, 3, 5);
    spec.min_clients = 2;
    admin.create_job(spec).await.unwrap();
    let done = admin
        .wait_for_job("e2e", T, |j| {
            j.state == v1::JobState::Completed as i32 || j.state == v1::JobState::Failed as i32
        })
        .await
        .unwrap();
    assert_eq!(done.state, v1::JobState::Completed as i32, "{done:?}");
    assert_eq!(done.rounds_completed, 3);
    for r in runs {
        match r.await.unwrap().unwrap() {
            RunOutcome::JobFinished {
                job_id,
                state,
                final_version,
            } => {
                assert_eq!(job_id, "e2e");
                assert_eq!(state, "COMPLETED");
                assert_eq!(final_version, done.current_version);
            }
            other => panic!("{other:?}"),
        }
    }

    // The coordinator's ledger, by round.
    let coord: BTreeMap<u64, v1::LedgerEntry> = admin
        .ledger("e2e")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.charge.unwrap().round, e))
        .collect();
    assert_eq!(coord.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);

    let coord_entries: Vec<v1::LedgerEntry> = coord.values().cloned().collect();
    let attempts = h.running().store().attempts("e2e").unwrap();
    let mut accepted_per_round: BTreeMap<u64, u32> = BTreeMap::new();
    for (i, path) in ledgers.iter().enumerate() {
        let file = Ledger::read(path).unwrap();
        let identity = file.identity.clone().unwrap();
        assert_eq!(identity.client_id, format!("client-{i}"));
        assert!(file.entries.iter().all(|e| e.job_id == "e2e"));
        for round in check_ledger_against(&file, &coord_entries, &attempts) {
            *accepted_per_round.entry(round).or_default() += 1;
        }
        // The guard's numbers: on the amplified basis its ε is the
        // coordinator's own ε after that round (same accountant, same δ);
        // otherwise the participation bound is the smaller one.
        for ev in recorders[i].settled().await {
            if let Event::Recorded {
                task,
                epsilon,
                basis,
            } = ev
            {
                let Some(c) = coord.get(&task.round) else {
                    continue;
                };
                if c.attempt != task.attempt {
                    continue;
                }
                if basis == Basis::Amplified {
                    let rel = (epsilon - c.epsilon_pld).abs() / c.epsilon_pld;
                    assert!(rel < 1e-9, "{epsilon} vs {}", c.epsilon_pld);
                } else {
                    assert!(epsilon <= c.epsilon_pld * (1.0 + 1e-9));
                }
            }
        }
        // Every client saw data, trained when selected, and holds the final model.
        let trained = recorders[i].count(|e| matches!(e, Event::Trained { .. }));
        let submitted = recorders[i].count(|e| matches!(e, Event::Submitted { .. }));
        assert!(trained >= submitted);
        assert!(recorders[i].count(|e| matches!(e, Event::DataLoaded { .. })) >= 1);
        let m = handles[i].model().unwrap();
        assert_eq!(
            (m.job_id.as_str(), m.version),
            ("e2e", done.current_version)
        );
    }
    // Each round's accepted reports are exactly the clients' accepted entries.
    for (round, c) in &coord {
        assert_eq!(
            accepted_per_round.get(round).copied().unwrap_or(0),
            c.participants,
            "round {round}"
        );
    }
    // All clients hold the same final weights, and can score with them.
    let w0 = handles[0].model().unwrap().weights.clone();
    for hd in &handles[1..] {
        assert_eq!(hd.model().unwrap().weights, w0);
    }
    let p = handles[0]
        .score(&[0.0; fedsec_detector::features::NUM_FEATURES])
        .unwrap();
    assert!(p[0] > 0.0 && p[0] < 1.0);
    // Holdout reports were produced from local data.
    let holdout_seen = recorders.iter().any(|r| {
        r.events().iter().any(|e| {
            matches!(e, Event::Trained { report, .. } if report.holdout.as_ref().is_some_and(|h| h.examples > 0))
        })
    });
    assert!(holdout_seen);
}
