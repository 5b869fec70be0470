//! Field bounds and what refusals may store, over a real server with mTLS:
//! hostile calls with maximal fields cost a bounded amount of database and
//! log; an identity's audit rows per hour are capped; the audit log keeps
//! to its retention.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fedsec_coordinator::error::RETRY_AFTER_MS_METADATA;
use fedsec_proto::v1::{GetModelRequest, GetTaskRequest, RegisterRequest, SubmitUpdateRequest};
use support::{Harness, header_msg, job, trailer_msg};
use tonic::Code;

/// Bytes written to the log (the binary's human format, level `info`).
#[derive(Clone)]
struct Counter(Arc<AtomicU64>);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logical size of the database (pages × page size, as a fresh
/// connection sees it: WAL frames included).
fn db_bytes(dir: &std::path::Path) -> u64 {
    let conn = rusqlite::Connection::open(dir.join("coordinator.db")).unwrap();
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    u64::try_from(pages * size).unwrap()
}

/// Attack: 1,000 `SubmitUpdate` calls with fields as large as a message
/// allows (a ~1 MiB `job_id`, one of control characters, a ~1 MiB nonce, a
/// ~1 MiB digest), plus `GetTask`/`GetModel` with ~1 MiB job ids and
/// `Register` with ~1 MiB software strings, with rate limits and the row
/// budget off (every rejection is logged and audited: the worst case).
/// Bound: database and log together grow by at most 1 MB (checked every
/// 100 calls, so the old code fails at the first check). Then the audit
/// table keeps to `limits.audit_max_rows` after a restart. (Before: each
/// ~1 MiB job id was copied into the audit table, the log and the status:
/// 40 calls → +329 MB database, +320–480 MB log.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_maximal_hostile_calls_add_at_most_1_mb_to_database_and_log() {
    let logged = Arc::new(AtomicU64::new(0));
    let counter = Counter(logged.clone());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || counter.clone())
        .try_init();
    let mut h = Harness::start_with(|c| c.rate_limits.enabled = false).await;
    let mut c = h.clients(1).await.pop().unwrap();
    let mut spec = job("j", 6, 1.0);
    // One round, open for the whole test: nothing is released. The
    // population is the one registered tenant, so no population_drift
    // audit event joins the rows counted below.
    spec.round_deadline_ms = 3_600_000;
    spec.population = Some(1);
    h.running().admin().create_job(spec).await.unwrap();
    let task = fedsec_proto::v1::Task {
        job_id: "j".into(),
        round: 7,
        attempt: 1,
        ..Default::default()
    };
    let big = "A".repeat(1_000_000);
    let controls = "\n\r\u{1b}[2J".repeat(140_000);
    let (db0, log0) = (db_bytes(h.dir.path()), logged.load(Ordering::Relaxed));
    const BOUND: u64 = 1_000_000;
    for i in 0..1000usize {
        let messages: Vec<SubmitUpdateRequest> = match i % 4 {
            0 => {
                let mut t = task.clone();
                t.job_id.clone_from(&big);
                vec![header_msg(&t, 6, b"n")]
            }
            1 => {
                let mut t = task.clone();
                t.job_id.clone_from(&controls);
                vec![header_msg(&t, 6, b"n")]
            }
            2 => vec![header_msg(&task, 6, big.as_bytes())],
            _ => vec![
                header_msg(&task, 6, b"n"),
                trailer_msg(big.as_bytes().to_vec()),
            ],
        };
        let e = c.submit_raw(messages).await.unwrap_err();
        assert!(
            e.message().len() <= 512,
            "a {}-byte status message",
            e.message().len()
        );
        if i % 10 == 0 {
            let e = c
                .grpc
                .get_task(GetTaskRequest {
                    job_id: big.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(e.message().len() <= 512);
            let e = c
                .grpc
                .get_model(GetModelRequest {
                    job_id: controls.clone(),
                    version: 0,
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument);
            assert!(!e.message().contains('\n'));
            c.grpc
                .register(RegisterRequest {
                    software: big.clone(),
                })
                .await
                .unwrap();
        }
        if (i + 1) % 100 == 0 {
            let db = db_bytes(h.dir.path()).saturating_sub(db0);
            let log = logged.load(Ordering::Relaxed) - log0;
            assert!(
                db + log <= BOUND,
                "after {} hostile calls: +{db} bytes database, +{log} bytes log (bound {BOUND} together)",
                i + 1
            );
        }
    }
    eprintln!(
        "measured: 1,000 maximal hostile calls added {} bytes of database and {} bytes of log",
        db_bytes(h.dir.path()).saturating_sub(db0),
        logged.load(Ordering::Relaxed) - log0
    );
    let listed = h.running().admin().clients().await.unwrap();
    assert_eq!(listed[0].software.len(), 128, "software cut to 128 bytes");
    let events = h
        .running()
        .admin()
        .audit_events(None, 10_000)
        .await
        .unwrap();
    assert!(
        events.len() >= 1000,
        "every rejection audited: {}",
        events.len()
    );
    let rejected: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "update_rejected")
        .collect();
    assert!(rejected.len() >= 1000);
    assert!(
        rejected
            .iter()
            .all(|e| e.detail.len() <= 512 && e.job_id.len() <= 64)
    );

    // Retention: restarted with a cap of 1,000 rows, the oldest go.
    h.shutdown().await;
    h.reopen(|c| c.limits.audit_max_rows = 1_000).await;
    let events = h
        .running()
        .admin()
        .audit_events(None, 10_000)
        .await
        .unwrap();
    assert!(events.len() <= 1_001, "{} audit events kept", events.len());
}

/// Attack: one identity makes call after call that is rejected (each would
/// store an audit event). Bound: `rate_limits.audit_rows_per_hour` (5 here)
/// events are stored; the next call is answered `RESOURCE_EXHAUSTED` with a
/// retry-after hint and stores nothing, as are its later `SubmitUpdate` and
/// `Register` calls before they read anything; another identity is
/// unaffected. (Before: every rejection was stored.)
#[tokio::test]
async fn an_identitys_audit_rows_per_hour_are_capped() {
    let h = Harness::start_with(|c| c.rate_limits.audit_rows_per_hour = 5).await;
    let mut cs = h.clients(2).await;
    let mut other = cs.pop().unwrap();
    let mut noisy = cs.pop().unwrap();
    let mut spec = job("j", 6, 1.0);
    // One round, open for the whole test: nothing is released.
    spec.round_deadline_ms = 3_600_000;
    h.running().admin().create_job(spec).await.unwrap();
    let stale = fedsec_proto::v1::Task {
        job_id: "j".into(),
        round: 9,
        attempt: 1,
        ..Default::default()
    };
    let upload = || vec![header_msg(&stale, 6, b"n")];
    for _ in 0..5 {
        let e = noisy.submit_raw(upload()).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    }
    for _ in 0..3 {
        let e = noisy.submit_raw(upload()).await.unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("audit events"), "{e:?}");
        let ms: u64 = e
            .metadata()
            .get(RETRY_AFTER_MS_METADATA)
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(ms > 1_000, "retry after {ms} ms");
    }
    let e = noisy.register().await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let stored = h
        .running()
        .admin()
        .audit_events(Some("j"), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.client_id == noisy.id)
        .count();
    assert_eq!(stored, 5);
    // Another identity still gets its rejections (and audit rows).
    let e = other.submit_raw(upload()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
