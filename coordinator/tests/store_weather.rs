//! Store faults are weather (issue 16), route 1 of 3: faults injected in the
//! store layer ([`Injected`]) of a real coordinator over loopback mTLS.
//! Routes 2 and 3 (a real `SQLITE_FULL` from `max_page_count`, a real full
//! filesystem) are in `store_full.rs`.
//!
//! Before issue 16 any store error failed the job: memory said FAILED while
//! the database said RUNNING, and bound clients were told "finished".

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use fedsec_coordinator::store::{JobState, LedgerKind, Store, StoreError};
use fedsec_proto::v1::{self, get_task_response};
use support::{Harness, job, play_round};

const T: Duration = Duration::from_secs(20);

fn disk_full() -> Option<StoreError> {
    Some(StoreError::Unavailable(
        "database or disk is full (injected)".into(),
    ))
}

/// Attack: the disk fills for a while exactly when rounds commit, then
/// again (a fault reported *after* a commit landed), then when the job
/// records its completion. Bound: the job is shown STALLED (Admin, metric,
/// GetTask tells bound clients to come back), resumes by itself, completes
/// all 3 rounds; the ledger holds each round exactly once (nothing charged
/// twice or lost) and memory and the store agree on the final state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_store_faults_pause_the_job_which_resumes_and_charges_each_round_once() {
    let (h, store) = Harness::start_injected().await;
    let admin = h.running().admin();
    let mut clients = h.clients(2).await;
    let mut spec = job("weather", 4, 1.0);
    spec.population = Some(2);
    spec.disable_noise = true;
    spec.rounds = 3;
    admin.create_job(spec).await.unwrap();

    // 1. The disk is full when round 1 commits: the write is refused.
    let full = Arc::new(AtomicBool::new(true));
    let refused = Arc::new(AtomicU32::new(0));
    {
        let (full, refused) = (full.clone(), refused.clone());
        store.before("commit_round", move || {
            full.load(Ordering::SeqCst).then(|| {
                refused.fetch_add(1, Ordering::SeqCst);
                disk_full()
            })?
        });
    }
    let at = play_round(&mut clients, "weather", (0, 0), T).await;
    assert_eq!(at, (1, 1));
    let stalled = admin
        .wait_for_job("weather", T, |j| {
            j.store_fault.as_ref().is_some_and(|f| f.retries >= 3)
        })
        .await
        .unwrap();
    assert_eq!(stalled.state, v1::JobState::Stalled as i32, "{stalled:?}");
    assert_eq!(
        stalled.rounds_completed, 0,
        "nothing published before the commit"
    );
    let fault = stalled.store_fault.unwrap();
    assert!(fault.error.contains("disk is full"), "{fault:?}");
    assert!(fault.next_retry_unix_ms >= fault.since_unix_ms);
    let text = h.running().metrics().encode();
    assert!(
        text.contains("fedsec_job_store_fault{job=\"weather\"} 1"),
        "{text}"
    );
    // Bound clients are told to come back, not that the job finished.
    match clients[0].get_task("weather").await.unwrap() {
        get_task_response::Outcome::Retry(r) => {
            assert!(r.reason.contains("store"), "{r:?}");
        }
        other => panic!("expected retry while the store is down, got {other:?}"),
    }
    assert_eq!(
        store.job("weather").unwrap().unwrap().state,
        JobState::Running,
        "the store still says RUNNING"
    );
    full.store(false, Ordering::SeqCst);
    let resumed = admin
        .wait_for_job("weather", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    assert!(resumed.store_fault.is_none(), "{resumed:?}");
    assert_eq!(resumed.state, v1::JobState::Running as i32);
    let text = h.running().metrics().encode();
    assert!(
        text.contains("fedsec_job_store_fault{job=\"weather\"} 0"),
        "{text}"
    );
    assert!(refused.load(Ordering::SeqCst) >= 3);

    // 2. A fault reported after round 2's commit landed: the retry finds
    // the commit in the ledger instead of committing (charging) again.
    let once = Arc::new(AtomicBool::new(true));
    {
        let once = once.clone();
        store.clear("commit_round");
        store.after("commit_round", move || {
            once.swap(false, Ordering::SeqCst).then(disk_full)?
        });
    }
    let at = play_round(&mut clients, "weather", at, T).await;
    assert_eq!(at, (2, 1));
    admin
        .wait_for_job("weather", T, |j| {
            j.rounds_completed == 2 && j.store_fault.is_none()
        })
        .await
        .unwrap();
    assert!(!once.load(Ordering::SeqCst), "the fault fired");
    store.clear("commit_round");

    // 3. The disk is full when the job records its completion.
    let full = Arc::new(AtomicBool::new(true));
    {
        let full = full.clone();
        store.before("set_job_state", move || {
            full.load(Ordering::SeqCst).then(disk_full)?
        });
    }
    play_round(&mut clients, "weather", at, T).await;
    admin
        .wait_for_job("weather", T, |j| {
            j.rounds_completed == 3 && j.state == v1::JobState::Stalled as i32
        })
        .await
        .unwrap();
    match clients[1].get_task("weather").await.unwrap() {
        get_task_response::Outcome::Retry(_) => {}
        other => panic!("a stalled job is not finished: {other:?}"),
    }
    full.store(false, Ordering::SeqCst);
    let done = admin
        .wait_for_job("weather", T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    assert!(done.store_fault.is_none());
    assert_eq!(
        store.job("weather").unwrap().unwrap().state,
        JobState::Completed,
        "memory and the store agree"
    );

    // Nothing charged twice, nothing lost.
    let ledger = store.ledger("weather").unwrap();
    let rounds: Vec<(u64, u64, u64)> = ledger
        .iter()
        .map(|e| {
            assert_eq!(e.kind, LedgerKind::Round);
            (e.seq, e.charge.unwrap().round, e.model_version)
        })
        .collect();
    assert_eq!(rounds, [(1, 1, 1), (2, 2, 2), (3, 3, 3)]);
    assert!(ledger.iter().all(|e| e.participants == 2), "{ledger:?}");
    let attempts = store.attempts("weather").unwrap();
    assert_eq!(attempts.len(), 3, "one attempt per round: {attempts:?}");
    let events = admin.audit_events(Some("weather"), 100).await.unwrap();
    let recovered = events
        .iter()
        .filter(|e| e.kind == "job_store_recovered")
        .count();
    assert!(recovered >= 2, "{events:?}");
    assert!(events.iter().all(|e| e.kind != "job_failed"), "{events:?}");
}

/// Attack: the opening of a round is refused after the attempt row was
/// written (the worst case: the store holds an open attempt memory never
/// saw). Bound: the stray attempt is abandoned on recovery, a fresh
/// attempt opens and the round commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opening_refused_after_the_write_is_abandoned_and_the_round_reopens() {
    let (h, store) = Harness::start_injected().await;
    let admin = h.running().admin();
    let mut clients = h.clients(1).await;
    let once = Arc::new(AtomicBool::new(true));
    {
        let once = once.clone();
        store.after("open_attempt", move || {
            once.swap(false, Ordering::SeqCst).then(disk_full)?
        });
    }
    let mut spec = job("reopen", 4, 1.0);
    spec.population = Some(1);
    spec.disable_noise = true;
    spec.rounds = 1;
    admin.create_job(spec).await.unwrap();
    let at = play_round(&mut clients, "reopen", (0, 0), T).await;
    assert_eq!(at, (1, 2), "the first attempt was never served");
    admin
        .wait_for_job("reopen", T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap();
    let attempts = store.attempts("reopen").unwrap();
    let states: Vec<_> = attempts.iter().map(|a| (a.attempt, a.state)).collect();
    assert_eq!(states.len(), 2, "{attempts:?}");
    assert!(
        attempts
            .iter()
            .all(|a| a.state != fedsec_coordinator::store::AttemptState::Open),
        "no attempt left open: {attempts:?}"
    );
    assert_eq!(store.ledger("reopen").unwrap().len(), 1);
}
