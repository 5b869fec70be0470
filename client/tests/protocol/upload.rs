//! Uploads: transient failures retried with the same nonce, rate limits
//! honoured, definitive refusals not retried, and the ledger entry written
//! before the first byte (and neither lost nor doubled by a crash).

use std::collections::VecDeque;
use std::time::Duration;

use crate::support::{Recorder, state_dir};
use fedsec_client::ledger::{EntryStatus, Ledger};
use fedsec_client::{Event, RunOutcome};
use tonic::Status;

use crate::scripted::{CLIP, honest, run_against, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_upload_failures_are_retried_with_the_same_nonce() {
    let mut script = honest();
    script.upload_answers = VecDeque::from([
        Status::unavailable("coordinator restarting"),
        Status::unavailable("coordinator restarting"),
    ]);
    let f = run_against(script).await;
    assert!(matches!(f.outcome, RunOutcome::JobFinished { .. }));
    let s = f.script.lock().unwrap();
    assert_eq!(s.uploads.len(), 3);
    let nonce = &s.uploads[0].nonce;
    assert_eq!(nonce.len(), 16);
    assert!(s.uploads.iter().all(|u| &u.nonce == nonce), "same nonce");
    assert!(
        s.uploads.iter().all(|u| u.values == s.uploads[0].values),
        "same update"
    );
    // One download for the task (retries do not download again), one look
    // for a final model when the job finished; the update is clipped to C,
    // honestly flagged.
    assert_eq!(s.model_downloads, 2);
    let u = &s.uploads[0];
    let norm = fedsec_privacy::l2_norm(&u.values).unwrap();
    assert!(norm <= CLIP, "{norm}");
    let trained = f
        .recorder
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::Trained { report, .. } => Some(report),
            _ => None,
        })
        .unwrap();
    assert_eq!(u.within_clip, trained.update_norm <= CLIP);
    assert!(
        trained.clipped,
        "lr 0.5 for 2 epochs moves more than C = {CLIP}"
    );
    // Recorded before the first byte went out, with that nonce.
    let before = u.ledger_at_upload.as_ref().unwrap();
    assert_eq!(before.entries.len(), 1);
    assert_eq!(before.entries[0].status, EntryStatus::Recorded);
    assert_eq!(before.entries[0].nonce, hex::encode(nonce));
    // Accepted afterwards; retries were reported.
    assert_eq!(f.ledger.entries.len(), 1);
    assert_eq!(f.ledger.entries[0].status, EntryStatus::Accepted);
    let submitted = f.recorder.events().into_iter().find_map(|e| match e {
        Event::Submitted { attempts, .. } => Some(attempts),
        _ => None,
    });
    assert_eq!(submitted, Some(3));
    assert_eq!(
        f.recorder.count(|e| matches!(
            e,
            Event::Retrying {
                operation: "SubmitUpdate",
                ..
            }
        )),
        2
    );
    // The model used for scoring is the verified one.
    assert_eq!(f.model.unwrap().weights, s.weights);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_upload_waits_as_long_as_the_coordinator_asks() {
    let limited = |ms: &'static str| {
        let mut s = Status::resource_exhausted("rate_limited: SubmitUpdate");
        s.metadata_mut()
            .insert(fedsec_proto::RETRY_AFTER_MS_METADATA, ms.parse().unwrap());
        s
    };
    let mut script = honest();
    // The test timing backs off 15–30 ms after a first failure, at most 300 ms.
    script.upload_answers = VecDeque::from([limited("250"), limited("3600000")]);
    let f = run_against(script).await;
    assert!(matches!(f.outcome, RunOutcome::JobFinished { .. }));
    assert_eq!(f.script.lock().unwrap().uploads.len(), 3);
    let delays: Vec<u64> = f
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Retrying {
                operation: "SubmitUpdate",
                delay_ms,
                ..
            } => Some(delay_ms),
            _ => None,
        })
        .collect();
    // The hint when it is longer than the backoff; capped at backoff_max.
    assert_eq!(delays, vec![250, 300]);
    assert_eq!(f.ledger.entries[0].status, EntryStatus::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definitive_refusal_is_not_retried_and_still_counts() {
    let mut script = honest();
    script.upload_answers = VecDeque::from([Status::permission_denied(
        "client \"client-s\" was not selected for round 1 attempt 1",
    )]);
    let f = run_against(script).await;
    let s = f.script.lock().unwrap();
    assert_eq!(s.uploads.len(), 1, "not retried");
    let rejected = f.recorder.events().into_iter().find_map(|e| match e {
        Event::SubmitRejected { message, .. } => Some(message),
        _ => None,
    });
    assert!(rejected.unwrap().contains("not selected"));
    assert_eq!(f.ledger.entries.len(), 1);
    assert_eq!(f.ledger.entries[0].status, EntryStatus::Rejected);
    assert!(f.ledger.entries[0].detail.contains("not selected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_after_recording_neither_loses_nor_doubles_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_dir(dir.path(), "crash");
    let mut script = honest();
    // The first upload fails, so the first process is mid-retry when it dies.
    script.upload_answers = VecDeque::from([Status::unavailable("busy")]);
    let served = serve(script, &state).await;

    let p = served.participant(&state);
    let mut rx = p.subscribe();
    let run = tokio::spawn(p.run(std::future::pending()));
    crate::support::wait_for(&mut rx, "the ledger entry", |e| {
        matches!(e, Event::Recorded { .. })
    })
    .await;
    // The process "dies" right after recording (no shutdown, no cleanup).
    run.abort();
    let _ = run.await;
    let after_crash = Ledger::read(&state.join(fedsec_client::ledger::LEDGER_FILE)).unwrap();
    assert_eq!(after_crash.entries.len(), 1, "recorded before the upload");

    // A new process on the same state directory serves the same task again.
    let p = served.participant(&state);
    let rec = Recorder::start(p.subscribe());
    let outcome = tokio::time::timeout(Duration::from_secs(60), p.run(std::future::pending()))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, RunOutcome::JobFinished { .. }));
    rec.settled().await;
    let ledger = Ledger::read(&state.join(fedsec_client::ledger::LEDGER_FILE)).unwrap();
    assert_eq!(ledger.entries.len(), 1, "not recorded twice");
    assert_eq!(ledger.entries[0].status, EntryStatus::Accepted);
    assert_eq!(ledger.entries[0].nonce, after_crash.entries[0].nonce);
    {
        let s = served.script.lock().unwrap();
        assert!(!s.uploads.is_empty());
        let nonce = hex::encode(&s.uploads[0].nonce);
        assert!(
            s.uploads.iter().all(|u| hex::encode(&u.nonce) == nonce),
            "both processes used the recorded nonce"
        );
        assert_eq!(nonce, ledger.entries[0].nonce);
    }
    assert_eq!(rec.count(|e| matches!(e, Event::Submitted { .. })), 1);
    served.stop().await;
}
