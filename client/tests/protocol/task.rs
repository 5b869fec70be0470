//! What a task may ask: client-side noise after clipping, a task served again
//! with another base version is a new charge, and a task that would expose
//! a few sessions is refused before training.

use std::time::Duration;

use crate::support::{Recorder, state_dir};
use fedsec_client::ledger::{EntryStatus, Ledger};
use fedsec_client::{Event, RunOutcome, SkipReason};
use fedsec_detector::train::TrainConfig;

use crate::scripted::{honest, run_against, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_noise_mode_adds_the_tasks_noise_after_clipping() {
    let mut script = honest();
    script.client_noise_stddev = 0.5;
    let f = run_against(script).await;
    let s = f.script.lock().unwrap();
    assert_eq!(s.uploads.len(), 1);
    // Clipped to C = 0.05, then N(0, 0.5²) per coordinate over 52 values:
    // the norm is about 0.5·√52 ≈ 3.6, far above C.
    let norm = fedsec_privacy::l2_norm(&s.uploads[0].values).unwrap();
    assert!(norm > 1.5 && norm < 5.0, "{norm}");
    let trained = f
        .recorder
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::Trained { report, .. } => Some(report),
            _ => None,
        })
        .unwrap();
    assert_eq!(trained.client_noise_stddev, 0.5);
    assert_eq!(f.ledger.entries[0].client_noise_stddev, 0.5);
    assert_eq!(f.ledger.entries[0].status, EntryStatus::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_served_again_with_another_base_version_is_a_new_ledger_charge() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path(), "again");
    let mut script = honest();
    let spec = script.spec.clone().unwrap();
    script.serve_again = Some(spec.init_weights(77));
    let served = serve(script, &state).await;

    // First process: trains and uploads round 1 attempt 1 once; the same
    // task served again (now on version 1) is not trained again in-process.
    let p = served.participant(&state);
    let mut rx = p.subscribe();
    let rec = Recorder::start(p.subscribe());
    let run = tokio::spawn(p.run(std::future::pending()));
    crate::support::wait_for(&mut rx, "the first upload", |e| {
        matches!(e, Event::Submitted { .. })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.count(|e| matches!(e, Event::Trained { .. })), 1);
    run.abort();
    let _ = run.await;
    let first = Ledger::read(&state.join(fedsec_client::ledger::LEDGER_FILE)).unwrap();
    assert_eq!(first.entries.len(), 1);

    // Restarted, it is served (job, round 1, attempt 1) on version 1: that
    // is another contribution, so it is recorded — and charged — again.
    let p = served.participant(&state);
    let rec = Recorder::start(p.subscribe());
    let outcome = tokio::time::timeout(Duration::from_secs(60), p.run(std::future::pending()))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, RunOutcome::JobFinished { .. }));
    rec.settled().await;
    let ledger = Ledger::read(&state.join(fedsec_client::ledger::LEDGER_FILE)).unwrap();
    assert_eq!(ledger.entries.len(), 2, "{:?}", ledger.entries);
    let (a, b) = (&ledger.entries[0], &ledger.entries[1]);
    assert_eq!((a.round, a.attempt, b.round, b.attempt), (1, 1, 1, 1));
    assert_eq!((a.base_version, b.base_version), (0, 1));
    assert_ne!(a.nonce, b.nonce);
    assert_ne!(a.update_sha256, b.update_sha256);
    assert!(
        ledger
            .entries
            .iter()
            .all(|e| e.status == EntryStatus::Accepted)
    );
    // The second entry's ε is two unamplified Gaussian steps (z = 1).
    use fedsec_privacy::{Accountant, Mechanism, PldAccountant};
    let two = PldAccountant
        .epsilon(
            &[(
                Mechanism {
                    sampling_rate: 1.0,
                    noise_multiplier: 1.0,
                },
                2,
            )],
            1e-5,
        )
        .unwrap();
    assert_eq!(b.epsilon_after, Some(two));
    {
        let s = served.script.lock().unwrap();
        assert_eq!(s.uploads.len(), 2);
        assert_ne!(s.uploads[0].nonce, s.uploads[1].nonce);
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_would_expose_a_few_sessions_is_refused_before_training() {
    // batch_size 1 and one step: the update would be one session's gradient.
    let mut script = honest();
    script.training = Some(TrainConfig {
        epochs: 1,
        batch_size: 1,
        learning_rate: 0.5,
        max_steps: 1,
        ..TrainConfig::default()
    });
    script.finish_after_download = true;
    let f = run_against(script).await;
    let reason = f
        .recorder
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::Skipped { reason, .. } => Some(reason),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        reason,
        SkipReason::BatchSizeBelowFloor {
            batch_size: 1,
            floor: 16
        }
    );
    assert_eq!(f.recorder.count(|e| matches!(e, Event::Trained { .. })), 0);
    assert!(f.script.lock().unwrap().uploads.is_empty());
    assert!(f.ledger.entries.is_empty());
}
