//! Per-identity rate limits over the real server and real mTLS: a client
//! flooding `GetTask` and `SubmitUpdate` gets `RESOURCE_EXHAUSTED` with a
//! retry-after hint, is audited once per window (not per refusal) and
//! counted in the metrics, while well-behaved clients are never limited and
//! every accepted update — including the flooder's retried one — counts.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_coordinator::RejectReason;
use fedsec_coordinator::error::RETRY_AFTER_MS_METADATA;
use fedsec_proto::v1::{self, get_task_response};
use support::{Harness, TestClient, job};
use tonic::Code;

const T: Duration = Duration::from_secs(20);

/// Polls the way the real client does: at the `retry_after_ms` the
/// coordinator suggests. Panics if this well-behaved client is ever limited.
async fn polite_task(c: &mut TestClient, job_id: &str) -> v1::Task {
    let until = tokio::time::Instant::now() + T;
    loop {
        match c.get_task(job_id).await {
            Ok(get_task_response::Outcome::Task(t)) => return t,
            Ok(get_task_response::Outcome::Retry(r)) => {
                tokio::time::sleep(Duration::from_millis(r.retry_after_ms)).await;
            }
            Ok(other) => panic!("{}: unexpected {other:?}", c.id),
            Err(e) => panic!("{}: a polite client was refused: {e:?}", c.id),
        }
        assert!(tokio::time::Instant::now() < until, "{}: no task", c.id);
    }
}

fn retry_after(status: &tonic::Status) -> Duration {
    let ms: u64 = status
        .metadata()
        .get(RETRY_AFTER_MS_METADATA)
        .expect("retry-after metadata")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        status.message().contains(&format!("retry after {ms} ms")),
        "{status:?}"
    );
    Duration::from_millis(ms)
}

#[tokio::test]
async fn a_flooding_client_is_limited_while_others_and_their_updates_are_not() {
    let h = Harness::start_with(|c| {
        c.poll_interval_ms = 200;
        // GetTask: 2 polls per 200 ms poll interval (10/s), burst 10.
        c.rate_limits.get_task_per_poll_interval = 2.0;
        c.rate_limits.get_task_burst = 10;
        // SubmitUpdate: 20/min (one per 3 s, so a slow machine does not
        // refill a token between the stale uploads below), burst 3.
        c.rate_limits.submit_update_per_minute = 20.0;
        c.rate_limits.submit_update_burst = 3;
    })
    .await;
    let mut clients = h.clients(3).await;
    let mut flooder = clients.pop().unwrap();
    let flooder_tenant = support::tenant_of(&flooder.id);
    let mut spec = job("rl", 4, 1.0);
    spec.rounds = 1;
    spec.min_clients = 3;
    spec.population = Some(3);
    spec.round_deadline_ms = 20_000;
    spec.disable_noise = true;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let (_, w0) = clients[0].get_model("rl", 0).await;

    // The flooder polls as fast as it can while the others poll politely.
    let flood = async {
        let (mut ok, mut limited) = (0u32, 0u32);
        let mut task = None;
        for _ in 0..150 {
            match flooder.get_task("rl").await {
                Ok(get_task_response::Outcome::Task(t)) => {
                    ok += 1;
                    task = Some(t);
                }
                Ok(_) => ok += 1,
                Err(e) => {
                    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                    assert!(e.message().contains("GetTask"), "{e:?}");
                    assert!(e.message().contains(&flooder_tenant), "{e:?}");
                    let wait = retry_after(&e);
                    assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
                    limited += 1;
                }
            }
        }
        (ok, limited, task)
    };
    let (mut c0, mut c1) = {
        let mut it = clients.into_iter();
        (it.next().unwrap(), it.next().unwrap())
    };
    let polite = async {
        let t0 = polite_task(&mut c0, "rl").await;
        let t1 = polite_task(&mut c1, "rl").await;
        assert!(
            c0.submit(&t0, &[0.1; 4], b"a")
                .await
                .unwrap()
                .newly_accepted
        );
        assert!(
            c1.submit(&t1, &[0.2; 4], b"b")
                .await
                .unwrap()
                .newly_accepted
        );
        t0
    };
    let ((ok, limited, task), t0) = tokio::join!(flood, polite);
    assert!(limited >= 50, "only {limited} of 150 flood polls limited");
    assert!(ok >= 10, "the burst is served ({ok})");
    let task = match task {
        Some(t) => t,
        None => {
            tokio::time::sleep(Duration::from_millis(200)).await;
            polite_task(&mut flooder, "rl").await
        }
    };
    assert_eq!((task.round, task.attempt), (t0.round, t0.attempt));

    // The flooder burns its SubmitUpdate burst on stale uploads...
    let mut stale = task.clone();
    stale.attempt += 1;
    for _ in 0..3 {
        let e = flooder.submit(&stale, &[0.3; 4], b"x").await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    }
    // ...so its real upload is refused before anything is read or claimed...
    let e = flooder.submit(&task, &[0.3; 4], b"c").await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("SubmitUpdate"), "{e:?}");
    let wait = retry_after(&e);
    assert!(wait <= Duration::from_secs(3), "{wait:?}");
    // ...and accepted when retried after the hint, in the same round.
    tokio::time::sleep(wait).await;
    let r = flooder.submit(&task, &[0.3; 4], b"c").await.unwrap();
    assert!(r.newly_accepted);

    // All three updates count: exact mean over the fixed denominator 3.
    let done = admin
        .wait_for_job("rl", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    assert_eq!(done.rounds_completed, 1);
    let ledger = admin.ledger("rl").await.unwrap();
    assert_eq!(ledger[0].participants, 3);
    let (_, w1) = c0.get_model("rl", 0).await;
    for (a, b) in w0.iter().zip(&w1) {
        assert!(((b - a) - 0.2).abs() < 1e-6, "{a} -> {b}");
    }

    // Counted every time, audited once per identity, call and window.
    let m = h.running().metrics();
    assert_eq!(m.rate_limited_count("GetTask"), u64::from(limited));
    assert_eq!(m.rate_limited_count("SubmitUpdate"), 1);
    assert_eq!(
        m.rejections(RejectReason::RateLimited),
        u64::from(limited) + 1
    );
    let text = m.encode();
    assert!(
        text.contains(&format!(
            "fedsec_rate_limited_total{{rpc=\"GetTask\"}} {limited}"
        )),
        "{text}"
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events: Vec<_> = admin
            .audit_events(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "rate_limited")
            .collect();
        if events.len() >= 2 || tokio::time::Instant::now() > until {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e.client_id == flooder.id));
    assert!(events.iter().any(|e| e.detail.contains("GetTask")));
    assert!(events.iter().any(|e| e.detail.contains("SubmitUpdate")));

    // Admins have their own bucket: unaffected by the clients' floods.
    let mut grpc = h.admin_grpc("admin");
    for _ in 0..20 {
        grpc.list_jobs(v1::ListJobsRequest {}).await.unwrap();
    }
}

#[tokio::test]
async fn disabled_limits_never_refuse() {
    let h = Harness::start_with(|c| {
        c.rate_limits.enabled = false;
        c.rate_limits.get_task_burst = 1;
        c.rate_limits.get_task_per_poll_interval = 0.001;
    })
    .await;
    let mut clients = h.clients(1).await;
    for _ in 0..50 {
        clients[0].get_task("").await.unwrap();
    }
    assert_eq!(h.running().metrics().rate_limited_count("GetTask"), 0);
}
