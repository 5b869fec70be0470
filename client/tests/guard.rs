//! The tenant-side guard against a real coordinator: a round that would
//! take the tenant past its ε cap is skipped (with the numbers) while the job
//! goes on without it, and a task whose noise multiplier is below the
//! tenant's floor is refused before any training or upload.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use fedsec_client::ledger::Ledger;
use fedsec_client::{DataSource, Event, PrivacyPolicy, RunOutcome, SkipReason};
use fedsec_privacy::{Accountant, Mechanism, PldAccountant};
use fedsec_proto::v1;
use support::{Harness, Recorder, T, builder, job, state_dir, tenant_logs, wait_for};

fn gaussian_rounds(z: f64, rounds: u64) -> f64 {
    PldAccountant
        .epsilon(
            &[(
                Mechanism {
                    sampling_rate: 1.0,
                    noise_multiplier: z,
                },
                rounds,
            )],
            1e-5,
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_past_the_tenant_cap_is_skipped_and_the_job_goes_on() {
    let h = Harness::start().await;
    let logs = tenant_logs(&h.dir.path().join("logs"), 2, 21);
    let (one, two) = (gaussian_rounds(1.0, 1), gaussian_rounds(1.0, 2));
    let cap = (one + two) / 2.0;
    let policies = [
        PrivacyPolicy::new(cap, 1e-5),
        PrivacyPolicy::new(1000.0, 1e-5),
    ];
    let mut runs = Vec::new();
    let mut recorders = Vec::new();
    let mut ledgers = Vec::new();
    for (i, (files, policy)) in logs.iter().zip(policies).enumerate() {
        let p = builder(
            &h.endpoint(),
            h.pki
                .client_tls(&format!("tenant-g{i}"), &format!("client-{i}"))
                .unwrap(),
            DataSource::Files(vec![files.clone()]),
            policy,
            &state_dir(h.dir.path(), &format!("c{i}")),
            i as u64,
        )
        .job("capped")
        .build()
        .unwrap();
        recorders.push(Recorder::start(p.subscribe()));
        ledgers.push(p.ledger_path());
        runs.push(tokio::spawn(p.run(std::future::pending())));
    }
    let admin = h.running().admin();
    let until = tokio::time::Instant::now() + T;
    while admin.clients().await.unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut spec = job("capped", 1.0, 1.0, 3, 2);
    spec.round_deadline_ms = 1_500;
    admin.create_job(spec).await.unwrap();
    let done = admin
        .wait_for_job("capped", T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    assert_eq!(done.rounds_completed, 3);
    for r in runs {
        assert!(matches!(
            r.await.unwrap().unwrap(),
            RunOutcome::JobFinished { .. }
        ));
    }
    // The capped tenant joined round 1 only, with ε = one Gaussian round…
    let capped = Ledger::read(&ledgers[0]).unwrap();
    assert_eq!(capped.entries.len(), 1);
    assert_eq!(capped.entries[0].round, 1);
    assert_eq!(capped.entries[0].epsilon_after, Some(one));
    // …and skipped rounds 2 and 3 with the numbers.
    let skips: Vec<(u64, f64, f64)> = recorders[0]
        .settled()
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::Skipped {
                task,
                reason:
                    SkipReason::EpsilonCap {
                        epsilon_after, cap, ..
                    },
            } => Some((task.round, epsilon_after, cap)),
            _ => None,
        })
        .collect();
    assert_eq!(
        skips.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![2, 3],
        "{skips:?}"
    );
    for (_, eps, c) in &skips {
        assert_eq!(*c, cap);
        assert!((eps - two).abs() <= 1e-9 * two, "{eps} vs {two}");
        assert!(*eps > cap);
    }
    assert_eq!(
        recorders[0].count(|e| matches!(e, Event::Trained { .. })),
        1,
        "skipped rounds are not trained"
    );
    // The other tenant carried the job.
    assert_eq!(Ledger::read(&ledgers[1]).unwrap().entries.len(), 3);
    let coord = admin.ledger("capped").await.unwrap();
    let participants: Vec<u32> = coord.iter().map(|e| e.participants).collect();
    assert_eq!(participants, vec![2, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_below_the_noise_floor_is_refused_and_shutdown_is_prompt() {
    let h = Harness::start().await;
    let logs = tenant_logs(&h.dir.path().join("logs"), 1, 31);
    let mut policy = PrivacyPolicy::new(1000.0, 1e-5);
    policy.min_noise_multiplier = 0.5;
    let p = builder(
        &h.endpoint(),
        h.pki.client_tls("tenant-z", "client-z").unwrap(),
        DataSource::Files(logs),
        policy,
        &state_dir(h.dir.path(), "z"),
        3,
    )
    .job("thin-noise")
    .build()
    .unwrap();
    let ledger = p.ledger_path();
    let mut rx = p.subscribe();
    let rec = Recorder::start(p.subscribe());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(p.run(async move {
        let _ = stop_rx.await;
    }));
    wait_for(&mut rx, "registration", |e| {
        matches!(e, Event::Registered { .. })
    })
    .await;
    let admin = h.running().admin();
    admin
        .create_job(job("thin-noise", 1.0, 0.3, 2, 1))
        .await
        .unwrap();
    let e = wait_for(&mut rx, "the refusal", |e| {
        matches!(e, Event::Skipped { .. })
    })
    .await;
    match e {
        Event::Skipped { task, reason } => {
            assert_eq!((task.job_id.as_str(), task.round), ("thin-noise", 1));
            assert_eq!(
                reason,
                SkipReason::NoiseMultiplierBelowFloor {
                    noise_multiplier: 0.3,
                    floor: 0.5
                }
            );
            assert!(reason.to_string().contains("below the tenant's floor"));
        }
        _ => unreachable!(),
    }
    // Nothing was trained, recorded or sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rec.count(|e| matches!(
            e,
            Event::Trained { .. } | Event::Recorded { .. } | Event::Submitted { .. }
        )),
        0
    );
    assert!(
        !ledger.exists() || Ledger::read(&ledger).unwrap().entries.is_empty(),
        "no ledger entry"
    );
    assert_eq!(admin.job("thin-noise").unwrap().rounds_completed, 0);
    // Shutdown is observed promptly.
    let t0 = Instant::now();
    stop_tx.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(outcome, RunOutcome::Shutdown);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}
